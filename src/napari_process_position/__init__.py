"""Preview a transform on one OME-Zarr position in napari, then run it in batch.

The engine (everything importable from here) uses no Qt: the napari widget
lives in ``napari_process_position._widget`` and is loaded only by napari.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

try:
    from ._version import version as __version__
except ImportError:  # pragma: no cover - running from a source tree without a build
    __version__ = "0.0.0+unknown"

__all__ = [
    "CancelledRunError",
    "IndexOutOfRangeError",
    "InputReadError",
    "InvalidStoreError",
    "OutputExistsError",
    "OutputWriteError",
    "PositionInfo",
    "PositionNotFoundError",
    "PositionRun",
    "ProcessPool",
    "ProcessPositionError",
    "Result",
    "RunConfig",
    "StoreNotFoundError",
    "Task",
    "TransformError",
    "TransformNotFoundError",
    "WorkerDiedError",
    "__version__",
    "available_cpus",
    "get_transform",
    "list_transforms",
    "open_store",
    "process_single_position",
    "read_position",
    "run_config",
    "stream_position",
    "transform",
]

# Imported lazily so that a spawned worker, which unpickles
# ``napari_process_position._worker.run_task``, loads only what it needs.
_LAZY = {
    "CancelledRunError": "._errors",
    "IndexOutOfRangeError": "._errors",
    "StoreNotFoundError": "._errors",
    "InvalidStoreError": "._errors",
    "InputReadError": "._errors",
    "OutputWriteError": "._errors",
    "OutputExistsError": "._errors",
    "PositionNotFoundError": "._errors",
    "ProcessPositionError": "._errors",
    "TransformError": "._errors",
    "TransformNotFoundError": "._errors",
    "WorkerDiedError": "._errors",
    "available_cpus": "._cpus",
    "PositionInfo": "._store",
    "open_store": "._store",
    "read_position": "._store",
    "Result": "._tasks",
    "Task": "._tasks",
    "PositionRun": "._engine",
    "ProcessPool": "._engine",
    "process_single_position": "._dropin",
    "stream_position": "._engine",
    "RunConfig": "._config",
    "run_config": "._runner",
    "get_transform": ".transforms",
    "list_transforms": ".transforms",
    "transform": ".transforms",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # pragma: no cover
    from ._config import RunConfig
    from ._cpus import available_cpus
    from ._dropin import process_single_position
    from ._engine import PositionRun, ProcessPool, stream_position
    from ._errors import (
        CancelledRunError,
        IndexOutOfRangeError,
        InputReadError,
        InvalidStoreError,
        OutputExistsError,
        OutputWriteError,
        PositionNotFoundError,
        ProcessPositionError,
        StoreNotFoundError,
        TransformError,
        TransformNotFoundError,
        WorkerDiedError,
    )
    from ._runner import run_config
    from ._store import PositionInfo, open_store, read_position
    from ._tasks import Result, Task
    from .transforms import get_transform, list_transforms, transform
