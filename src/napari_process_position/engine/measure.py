"""Run one task in a worker and measure it: wall time and peak memory above the worker's baseline.

What ``process-position estimate`` and ``--workers auto`` run in a spawned
worker process, as a run's process workers are started (the same
initializer, the same :func:`~.worker.run_task`). A fresh process has
nothing else going on, so its resident memory before the task is a process
worker's own footprint, and its peak above that is what the task needs
(:class:`~napari_process_position.core.peak.PeakMeter`). Like
:mod:`.worker`, it imports no zarr, pydantic, click, rich, yaml or Dask.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from napari_process_position.core.peak import PeakMeter
from napari_process_position.core.tasks import Result, Task
from napari_process_position.core.transform_ref import TransformRef, resolve_transform
from napari_process_position.engine.worker import run_task

if TYPE_CHECKING:
    from napari_process_position.store.layout import PositionInfo

__all__ = ["REPEAT_BELOW_S", "TaskMeasure", "WorkerMeasure", "measure_in_worker", "measure_task"]

#: A first run shorter than this is run again and the second one measured.
REPEAT_BELOW_S = 5.0


@dataclass(frozen=True)
class TaskMeasure:
    """What one task cost in a worker process.

    Attributes
    ----------
    results
        The task's Results (its volumes are written).
    seconds
        Wall time of the task (read, transform, write, record).
    baseline
        The worker's resident bytes just before the measured run.
    peak_above
        Its peak resident bytes during the run, above ``baseline``.
    method
        How the peak was taken (``VmHWM``: the kernel's mark; ``sampled``).
    runs
        1, or 2 when a short first run (imports, caches) was repeated.
    pid
        The worker's process id.
    first_seconds
        Wall time of the first run (with what a worker does once); ``seconds``
        when it was not repeated.
    """

    results: list[Result]
    seconds: float
    baseline: int
    peak_above: int
    method: str
    runs: int
    pid: int
    first_seconds: float = 0.0


def _trim() -> bool:
    """Return freed heap memory to the system (glibc); False where there is no malloc_trim."""
    try:
        import ctypes

        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        return False
    return True


def _measured(task: Task, transform: TransformRef, params: dict[str, Any]) -> TaskMeasure:
    with PeakMeter() as meter:
        start = time.perf_counter()
        results = run_task(task, transform, params)
        seconds = time.perf_counter() - start
    return TaskMeasure(
        results, seconds, meter.baseline, meter.peak_above, meter.method, 1, os.getpid()
    )


def measure_task(task: Task, transform: TransformRef, params: dict[str, Any]) -> TaskMeasure:
    """Run ``task`` and measure it; a short first run is repeated and the second one kept.

    The transform's module is imported before the baseline is taken (a
    worker imports it once). A first run shorter than :data:`REPEAT_BELOW_S`
    also pays for what a worker does once (libraries a transform imports on
    first call, caches), so it is run again, into the same volume, and the
    second run is the one reported. Between the two, glibc's ``malloc_trim``
    hands back what the allocator kept of the first run's freed blocks
    (below its mmap threshold it keeps them), so that the second run's rise
    is all it needs; without glibc the peak is the higher of the two runs
    above the baseline before the first.

    Parameters
    ----------
    task
        A planned task (into a scratch output: it is written).
    transform, params
        As for :func:`~.worker.run_task`.

    Returns
    -------
    TaskMeasure

    Raises
    ------
    Exception
        Whatever :func:`~.worker.run_task` raises (a transform's error, ``MemoryError``).
    """
    resolve_transform(transform)
    first = _measured(task, transform, params)
    if first.seconds >= REPEAT_BELOW_S:
        return replace(first, first_seconds=first.seconds)
    trimmed = _trim()
    second = _measured(task, transform, params)
    if trimmed:
        return TaskMeasure(
            second.results,
            second.seconds,
            second.baseline,
            second.peak_above,
            second.method,
            2,
            second.pid,
            first.seconds,
        )
    peak = max(first.baseline + first.peak_above, second.baseline + second.peak_above)
    return TaskMeasure(
        second.results,
        second.seconds,
        first.baseline,
        max(0, peak - first.baseline),
        second.method,
        2,
        second.pid,
        first.seconds,
    )


@dataclass(frozen=True)
class WorkerMeasure:
    """One task measured in a fresh worker process, and what starting that worker cost.

    Attributes
    ----------
    task
        The task's figures (:class:`TaskMeasure`).
    startup_seconds
        Starting the worker process and importing the transform in it.
    """

    task: TaskMeasure
    startup_seconds: float


def measure_in_worker(
    transform: TransformRef,
    input_info: PositionInfo,
    output: PositionInfo | str,
    *,
    time_index: int,
    channel: int,
    params: dict[str, Any],
    name: str,
    inner_threads: int = 1,
    memory_limit_bytes: int | None = None,
) -> WorkerMeasure:
    """Run the (t, c) task of one position in a fresh spawned worker and measure it.

    The task is planned as a run plans it (:func:`.stream.position_run`, into
    output channel 0 and time 0 of ``output``, which it writes), and runs in a
    one-worker :class:`~.pool.ProcessPool` as a run's workers run it; its
    failures are the run's (:func:`.failures.task_error`,
    :func:`.failures.worker_died_error`). What ``estimate`` and
    ``--workers auto`` measure.

    Parameters
    ----------
    transform
        A reference worker processes can import (``module:function``).
    input_info
        The input position's metadata.
    output
        A scratch output position of one time point and one channel.
    time_index, channel
        The input volume measured.
    params, name
        The transform's parameters and name (for messages).
    inner_threads
        BLAS/OpenMP threads of the worker, as a run gives each worker.
    memory_limit_bytes
        The worker's memory limit (None: none).

    Returns
    -------
    WorkerMeasure

    Raises
    ------
    TransformError
        The transform failed, or ran out of memory (under the limit).
    WorkerDiedError
        The worker was killed (out of memory) or crashed.
    """
    from concurrent.futures.process import BrokenProcessPool

    from napari_process_position.core.transform_ref import portable
    from napari_process_position.engine.failures import task_error, worker_died_error
    from napari_process_position.engine.pool import ProcessPool
    from napari_process_position.engine.stream import position_run

    ref = portable(transform)
    run = position_run(
        transform,
        input_info,
        output,
        input_channel_indices=[[channel]],
        output_channel_indices=[[0]],
        input_time_indices=[time_index],
        output_time_indices=[0],
        params=params,
    )
    task = run.tasks[0]
    pool = ProcessPool(1, inner_threads, memory_limit_bytes=memory_limit_bytes)
    try:
        start = time.perf_counter()
        pool.warm(ref)
        startup = time.perf_counter() - start
        try:
            measured = pool.executor.submit(measure_task, task, ref, params).result()
        except BrokenProcessPool as exc:
            raise worker_died_error(
                [task], pool.exit_codes(settle=1.0), memory_limit_bytes
            ) from exc
        except Exception as exc:
            raise task_error(task, exc, transform=name, memory_limit=memory_limit_bytes) from exc
    finally:
        pool.shutdown()
    return WorkerMeasure(measured, startup)
