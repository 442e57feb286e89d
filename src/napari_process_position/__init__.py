"""Preview a transform on one OME-Zarr position in napari, then run it in batch.

The public API is what ``__all__`` lists; every other module is internal.
Importing the package imports nothing else: each name loads its module on
first use, so a spawned worker, which unpickles
``napari_process_position.engine.worker.run_task``, loads only what it needs,
and no name here imports Qt (the napari widget lives in
``napari_process_position.widget`` and is loaded by napari).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from napari_process_position.core.version import package_version

__version__ = package_version()

_ERRORS = "napari_process_position.core.errors"

#: Public name -> the module that defines it.
_LAZY = {
    # running
    "process_single_position": "napari_process_position.engine.dropin",
    "stream_position": "napari_process_position.engine.stream",
    "PositionRun": "napari_process_position.engine.position_run",
    "ProcessPool": "napari_process_position.engine.pool",
    "Result": "napari_process_position.core.tasks",
    "RunConfig": "napari_process_position.batch.config",
    "prepare_run": "napari_process_position.batch.prepare",
    "run_config": "napari_process_position.batch.prepare",  # deprecated: prepare_run
    "BatchRun": "napari_process_position.batch.batch_run",
    "available_cpus": "napari_process_position.core.budget",
    # stores
    "create_output_plate": "napari_process_position.batch.prepare",
    "open_store": "napari_process_position.store.metadata",
    "read_position": "napari_process_position.store.metadata",
    "PositionInfo": "napari_process_position.store.layout",
    "StoreInfo": "napari_process_position.store.layout",
    # transforms
    "transform": "napari_process_position.transforms",
    "get_transform": "napari_process_position.transforms",
    "list_transforms": "napari_process_position.transforms",
    "TransformSpec": "napari_process_position.transforms",
    # errors
    "ProcessPositionError": _ERRORS,
    "CancelledRunError": _ERRORS,
    "ConfigError": _ERRORS,
    "DaskClusterError": _ERRORS,
    "DaskUnavailableError": _ERRORS,
    "IndexOutOfRangeError": _ERRORS,
    "InputReadError": _ERRORS,
    "InvalidArgumentError": _ERRORS,
    "InvalidStoreError": _ERRORS,
    "OutputExistsError": _ERRORS,
    "OutputInUseError": _ERRORS,
    "OutputWriteError": _ERRORS,
    "PositionNotFoundError": _ERRORS,
    "StoreNotFoundError": _ERRORS,
    "TransformError": _ERRORS,
    "TransformNotFoundError": _ERRORS,
    "TransformParameterError": _ERRORS,
    "UsageError": _ERRORS,
    "WorkerDiedError": _ERRORS,
}

__all__ = [
    "BatchRun",
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
    "PositionInfo",
    "PositionNotFoundError",
    "PositionRun",
    "ProcessPool",
    "ProcessPositionError",
    "Result",
    "RunConfig",
    "StoreInfo",
    "StoreNotFoundError",
    "TransformError",
    "TransformNotFoundError",
    "TransformParameterError",
    "TransformSpec",
    "UsageError",
    "WorkerDiedError",
    "__version__",
    "available_cpus",
    "create_output_plate",
    "get_transform",
    "list_transforms",
    "open_store",
    "prepare_run",
    "process_single_position",
    "read_position",
    "stream_position",
    "transform",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:  # the module protocol: hasattr() and getattr(..., default) rely on it
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # pragma: no cover
    from napari_process_position.batch.batch_run import BatchRun
    from napari_process_position.batch.config import RunConfig
    from napari_process_position.batch.prepare import create_output_plate, prepare_run
    from napari_process_position.batch.prepare import run_config as run_config
    from napari_process_position.core.budget import available_cpus
    from napari_process_position.core.errors import (
        CancelledRunError,
        ConfigError,
        DaskClusterError,
        DaskUnavailableError,
        IndexOutOfRangeError,
        InputReadError,
        InvalidArgumentError,
        InvalidStoreError,
        OutputExistsError,
        OutputInUseError,
        OutputWriteError,
        PositionNotFoundError,
        ProcessPositionError,
        StoreNotFoundError,
        TransformError,
        TransformNotFoundError,
        TransformParameterError,
        UsageError,
        WorkerDiedError,
    )
    from napari_process_position.core.tasks import Result
    from napari_process_position.engine.dropin import process_single_position
    from napari_process_position.engine.pool import ProcessPool
    from napari_process_position.engine.position_run import PositionRun
    from napari_process_position.engine.stream import stream_position
    from napari_process_position.store.layout import PositionInfo, StoreInfo
    from napari_process_position.store.metadata import open_store, read_position
    from napari_process_position.transforms import (
        TransformSpec,
        get_transform,
        list_transforms,
        transform,
    )
