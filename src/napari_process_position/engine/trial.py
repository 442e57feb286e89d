"""A trial of one task: plan it as a run does, run it in a fresh worker, measure it.

What ``process-position estimate`` and ``--workers auto`` measure
(:func:`measure_first_volume`): the first non-empty (t, c) volume of a
position, into a scratch output beside the real one (the same file system,
so writing costs what it will). The task is planned as a run plans it
(:func:`.plan.position_tasks`; no run resumes a scratch output, so it
carries no resume identity), runs in a one-worker :class:`.pool.ProcessPool`
under :func:`.measure.measure_task` (which workers import; this module,
which plans, stays out of them), and its failures are mapped as a run maps
them (:mod:`.failures`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from napari_process_position.core.apply import is_empty
from napari_process_position.core.errors import InvalidStoreError
from napari_process_position.engine.failures import task_error, worker_died_error
from napari_process_position.engine.measure import TaskMeasure, measure_task
from napari_process_position.engine.plan import position_tasks
from napari_process_position.engine.pool import ProcessPool
from napari_process_position.store.create import create_output_position
from napari_process_position.store.layout import OmeVersion, OutputLayout, PositionInfo

__all__ = ["Measurement", "measure_first_volume"]


@dataclass(frozen=True)
class Measurement:
    """One task measured in a fresh worker process.

    Attributes
    ----------
    position, time_index, channel
        The (t, c) measured, of the position measured.
    task
        The worker's figures (time, baseline, peak above it).
    startup_seconds
        Starting the worker process and importing the transform.
    volume_disk_bytes
        What the written volume takes on disk (compressed).
    """

    position: str
    time_index: int
    channel: int
    task: TaskMeasure
    startup_seconds: float
    volume_disk_bytes: int


def measure_first_volume(
    transform: str,
    input_info: PositionInfo,
    layout: OutputLayout,
    *,
    times: Sequence[int],
    channels: Sequence[int],
    params: dict[str, Any],
    name: str,
    beside: str | None = None,
    version: OmeVersion = "0.5",
    inner_threads: int = 1,
    memory_limit_bytes: int | None = None,
) -> Measurement:
    """Measure the task of the first non-empty (t, c) volume of a position in a fresh worker.

    Parameters
    ----------
    transform, params, name
        A reference worker processes can import, its parameters and its name.
    input_info
        The input position.
    layout
        What the position's output holds (``channels``' names, in order).
    times, channels
        The selected input time points and channels; the first non-empty
        volume among them is measured (an empty one is skipped, as a run skips it).
    beside
        The run's output: the scratch output goes beside it when its folder
        can be written (its file system), else into the temporary folder.
    version
        The scratch output's OME-Zarr version.
    inner_threads
        BLAS/OpenMP threads of the worker, as a run gives each worker.
    memory_limit_bytes
        The worker's memory limit (None: none).

    Returns
    -------
    Measurement

    Raises
    ------
    TransformError
        The transform failed, or ran out of memory (under the limit).
    WorkerDiedError
        The worker was killed (out of memory) or crashed.
    InvalidStoreError
        Every selected volume of the position is empty.
    """
    parent = _scratch_parent(beside)
    t, c = _first_volume(input_info, times, channels)
    one = replace(
        layout,
        shape=(1, 1, *layout.shape[2:]),
        channel_names=(layout.channel_names[list(channels).index(c)],),
        levels=1,
    )
    scratch = Path(tempfile.mkdtemp(prefix=".npp-estimate-", dir=parent))
    try:
        output = create_output_position(scratch / "estimate.zarr", one, version=version)
        # Into output channel 0 and time 0 of the scratch output, planned as a run plans it.
        (task,) = position_tasks(input_info, output, [[c]], [[0]], [t], [0])
        pool = ProcessPool(1, inner_threads, memory_limit_bytes=memory_limit_bytes)
        try:
            start = time.perf_counter()
            pool.warm(transform)
            startup = time.perf_counter() - start
            try:
                measured = pool.executor.submit(measure_task, task, transform, params).result()
            except BrokenProcessPool as exc:
                raise worker_died_error(
                    [task], pool.exit_codes(settle=1.0), memory_limit_bytes
                ) from exc
            except Exception as exc:
                raise task_error(
                    task, exc, transform=name, memory_limit=memory_limit_bytes
                ) from exc
        finally:
            pool.shutdown()
        disk = _disk_bytes(Path(output.path) / "0")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return Measurement(input_info.key, t, c, measured, startup, disk)


def _first_volume(
    info: PositionInfo, times: Sequence[int], channels: Sequence[int]
) -> tuple[int, int]:
    """Find the first non-empty (t, c) of a position (an empty one is skipped)."""
    source = info.open_array()
    for t in times:
        for c in channels:
            if not is_empty(source[t][[c]].read().result()):
                return t, c
    raise InvalidStoreError(
        f"{info.path}: every selected volume is empty (all zeros or NaN); "
        "there is nothing to measure"
    )


def _scratch_parent(output: str | None) -> str | None:
    """Beside the output when it has a folder (its file system), else the temporary folder."""
    if output:
        parent = Path(output).expanduser().resolve().parent
        if parent.is_dir() and os.access(parent, os.W_OK):
            return str(parent)
    return None


def _disk_bytes(array_dir: Path) -> int:
    metadata = {"zarr.json", ".zarray", ".zattrs", ".zgroup"}
    return sum(
        p.stat().st_size for p in array_dir.rglob("*") if p.is_file() and p.name not in metadata
    )
