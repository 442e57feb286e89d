"""The errors this package raises.

Every error is a :class:`ProcessPositionError`; most are also a built-in
exception, so callers that already catch ``ValueError`` or ``KeyError`` keep
working.
"""

from __future__ import annotations

__all__ = [
    "CancelledRunError",
    "IndexOutOfRangeError",
    "InputReadError",
    "InvalidStoreError",
    "OutputExistsError",
    "OutputWriteError",
    "PositionNotFoundError",
    "ProcessPositionError",
    "StoreNotFoundError",
    "TransformError",
    "TransformNotFoundError",
    "WorkerDiedError",
]


class ProcessPositionError(Exception):
    """Base class of every error raised by napari-process-position."""


class InvalidStoreError(ProcessPositionError, ValueError):
    """A path is not a readable OME-Zarr store, or its metadata is unusable."""


class StoreNotFoundError(InvalidStoreError, FileNotFoundError):
    """A store or position folder does not exist (also a ``FileNotFoundError``, as with iohub)."""

    def __str__(self) -> str:  # OSError would format (errno, strerror) pairs
        return str(self.args[0]) if self.args else ""


class IndexOutOfRangeError(ProcessPositionError, IndexError, ValueError):
    """A time or channel index is outside the array.

    Both an ``IndexError`` and a ``ValueError``: iohub raises ``ValueError``
    for a time index beyond the data, so code written for it keeps working.
    """


class PositionNotFoundError(ProcessPositionError, KeyError):
    """A position key does not exist in the store."""

    def __str__(self) -> str:  # KeyError quotes its message; we want plain text
        return str(self.args[0]) if self.args else ""


class OutputExistsError(ProcessPositionError, FileExistsError):
    """The output store exists and neither overwrite nor resume was asked for."""


class TransformNotFoundError(ProcessPositionError, LookupError):
    """No transform is registered under a name, or a ``module:function`` fails to import."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class TransformError(ProcessPositionError, RuntimeError):
    """A transform raised or returned something that cannot be stored.

    Attributes
    ----------
    time_index, channel_index
        The input (t, c) of the task that failed.
    """

    def __init__(self, message: str, time_index=None, channel_index=None) -> None:
        super().__init__(message)
        self.time_index = time_index
        self.channel_index = channel_index


class WorkerDiedError(ProcessPositionError, RuntimeError):
    """A worker process ended abruptly (killed, out of memory, crashed)."""


class CancelledRunError(ProcessPositionError, RuntimeError):
    """The run was cancelled before it finished."""


class InputReadError(ProcessPositionError, OSError):
    """A volume of the input could not be read (missing or damaged chunk, I/O error)."""


class OutputWriteError(ProcessPositionError, OSError):
    """A volume could not be written (disk full, permission denied, I/O error)."""
