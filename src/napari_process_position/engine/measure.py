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
from typing import Any

from napari_process_position.core.peak import PeakMeter
from napari_process_position.core.tasks import Result, Task
from napari_process_position.core.transform_ref import TransformRef, resolve_transform
from napari_process_position.engine.worker import run_task

__all__ = ["REPEAT_BELOW_S", "TaskMeasure", "measure_task"]

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
