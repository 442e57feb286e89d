"""Every error this package raises, in one hierarchy.

Each is a :class:`ProcessPositionError` and also the built-in exception that
fits, so code that catches ``ValueError``, ``KeyError``, ``OSError`` or
``FileNotFoundError`` (as it would around iohub) keeps working. Messages
quote the bad value and what would be accepted.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CancelledRunError",
    "ConfigError",
    "DaskClusterError",
    "DaskUnavailableError",
    "IndexOutOfRangeError",
    "InputReadError",
    "InvalidArgumentError",
    "InvalidStoreError",
    "OutputExistsError",
    "OutputInUseError",
    "OutputWriteError",
    "PositionNotFoundError",
    "ProcessPositionError",
    "StoreNotFoundError",
    "TransformError",
    "TransformNotFoundError",
    "TransformParameterError",
    "UsageError",
    "WorkerDiedError",
]


class ProcessPositionError(Exception):
    """Base class of every error raised by napari-process-position."""


class _PlainMessage:
    """Show the message as given (``KeyError`` and ``OSError`` would quote or unpack it)."""

    def __str__(self) -> str:
        args = getattr(self, "args", ())
        return str(args[0]) if args else ""


# -- arguments and configuration ---------------------------------------------------------


class InvalidArgumentError(ProcessPositionError, ValueError, TypeError):
    """An argument has a bad value or the wrong type (a ``ValueError`` and a ``TypeError``)."""


class IndexOutOfRangeError(InvalidArgumentError, IndexError):
    """A time or channel index is outside the array.

    Also an ``IndexError`` and a ``ValueError``: iohub raises ``ValueError``
    for a time index beyond the data, so code written for it keeps working.
    """


class ConfigError(ProcessPositionError, ValueError):
    """A run configuration is invalid; the message names the field."""


# -- stores ---------------------------------------------------------------------------------


class InvalidStoreError(ProcessPositionError, ValueError):
    """A path is not a readable OME-Zarr store, or its metadata is unusable."""


class StoreNotFoundError(_PlainMessage, InvalidStoreError, FileNotFoundError):
    """A store or position folder does not exist (also a ``FileNotFoundError``, as with iohub)."""


class PositionNotFoundError(_PlainMessage, ProcessPositionError, KeyError):
    """A position key does not exist in the store."""


class OutputExistsError(ProcessPositionError, FileExistsError):
    """The output exists and neither overwrite nor resume was asked for, or it cannot hold it."""


class OutputInUseError(ProcessPositionError, RuntimeError):
    """Another run is writing the output (or one of its positions); the message names it.

    One run writes an output position at a time: a second one refuses before it
    creates, replaces or writes anything (or, asked to, waits for the first).
    """


class InputReadError(ProcessPositionError, OSError):
    """A volume of the input could not be read (missing or damaged chunk, I/O error)."""


class OutputWriteError(ProcessPositionError, OSError):
    """A volume could not be written (disk full, permission denied, I/O error)."""


# -- transforms -----------------------------------------------------------------------------


class TransformNotFoundError(_PlainMessage, ProcessPositionError, LookupError):
    """No transform is registered under a name, or a ``module:function`` fails to import."""


class TransformError(ProcessPositionError, RuntimeError):
    """A transform raised or returned something that cannot be stored.

    Attributes
    ----------
    time_index, channel_index
        The input (t, c) of the task that failed.
    """

    def __init__(self, message: str, time_index: Any = None, channel_index: Any = None) -> None:
        super().__init__(message)
        self.time_index = time_index
        self.channel_index = channel_index


class TransformParameterError(TransformError, TypeError, ValueError):
    """A transform parameter is unknown, missing, of the wrong type or out of range.

    A :class:`TransformError`, and also a ``TypeError`` and a ``ValueError``.
    """


# -- running --------------------------------------------------------------------------------


class WorkerDiedError(ProcessPositionError, RuntimeError):
    """A worker process ended abruptly (killed, out of memory, crashed)."""


class CancelledRunError(ProcessPositionError, RuntimeError):
    """The run was cancelled before it finished."""


class UsageError(ProcessPositionError, RuntimeError):
    """An object was used in a way it does not support (a run iterated twice, say)."""


class DaskUnavailableError(ProcessPositionError, ImportError):
    """Dask (or dask-jobqueue) is needed for this run but is not installed."""


class DaskClusterError(ProcessPositionError, RuntimeError):
    """The Dask cluster cannot be reached, or was lost during the run."""
