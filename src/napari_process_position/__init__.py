"""Preview a transform on one OME-Zarr position in napari, then run it in batch.

The engine (everything importable from here) uses no Qt: the napari widget
lives in ``napari_process_position.widget`` and is loaded only by napari.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from napari_process_position.core.version import package_version

__version__ = package_version()

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
# ``napari_process_position.engine.worker.run_task``, loads only what it needs.
_LAZY = {
    "CancelledRunError": "napari_process_position.core.errors",
    "IndexOutOfRangeError": "napari_process_position.core.errors",
    "StoreNotFoundError": "napari_process_position.core.errors",
    "InvalidStoreError": "napari_process_position.core.errors",
    "InputReadError": "napari_process_position.core.errors",
    "OutputWriteError": "napari_process_position.core.errors",
    "OutputExistsError": "napari_process_position.core.errors",
    "PositionNotFoundError": "napari_process_position.core.errors",
    "ProcessPositionError": "napari_process_position.core.errors",
    "TransformError": "napari_process_position.core.errors",
    "TransformNotFoundError": "napari_process_position.core.errors",
    "WorkerDiedError": "napari_process_position.core.errors",
    "available_cpus": "napari_process_position.core.budget",
    "PositionInfo": "napari_process_position.store.metadata",
    "open_store": "napari_process_position.store.metadata",
    "read_position": "napari_process_position.store.metadata",
    "Result": "napari_process_position.core.tasks",
    "Task": "napari_process_position.core.tasks",
    "PositionRun": "napari_process_position.engine.run",
    "ProcessPool": "napari_process_position.engine.pool",
    "process_single_position": "napari_process_position.engine.dropin",
    "stream_position": "napari_process_position.engine.stream",
    "RunConfig": "napari_process_position.batch.config",
    "run_config": "napari_process_position.batch.prepare",
    "get_transform": "napari_process_position.transforms",
    "list_transforms": "napari_process_position.transforms",
    "transform": "napari_process_position.transforms",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # pragma: no cover
    from napari_process_position.batch.config import RunConfig
    from napari_process_position.batch.prepare import run_config
    from napari_process_position.core.budget import available_cpus
    from napari_process_position.core.errors import (
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
    from napari_process_position.core.tasks import Result, Task
    from napari_process_position.engine.dropin import process_single_position
    from napari_process_position.engine.pool import ProcessPool
    from napari_process_position.engine.run import PositionRun
    from napari_process_position.engine.stream import stream_position
    from napari_process_position.store.layout import PositionInfo
    from napari_process_position.store.metadata import open_store, read_position
    from napari_process_position.transforms import get_transform, list_transforms, transform
