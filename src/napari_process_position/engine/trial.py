"""A trial of one task: plan it as a run does, run it in a fresh worker, measure it.

What ``process-position estimate`` and ``--workers auto`` measure: the task is
planned as a run plans it (:func:`.stream.position_tasks`), runs in a
one-worker :class:`.pool.ProcessPool` under :func:`.measure.measure_task`
(which workers import; this module, which plans, stays out of them), and its
failures are mapped as a run maps them (:mod:`.failures`).
"""

from __future__ import annotations

import time
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from napari_process_position.engine.failures import task_error, worker_died_error
from napari_process_position.engine.measure import TaskMeasure, measure_task
from napari_process_position.engine.pool import ProcessPool
from napari_process_position.engine.stream import position_tasks
from napari_process_position.store.layout import PositionInfo
from napari_process_position.store.metadata import read_position

__all__ = ["WorkerMeasure", "measure_in_worker"]


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
    transform: str,
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

    Into output channel 0 and time 0 of ``output``, which it writes.

    Parameters
    ----------
    transform
        A reference worker processes can import (``module:function``, ``file.py:function``).
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
    out_info = read_position(output) if isinstance(output, str) else output
    (task,) = position_tasks(
        transform, input_info, out_info, [[channel]], [[0]], [time_index], [0], params=params
    )
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
            raise task_error(task, exc, transform=name, memory_limit=memory_limit_bytes) from exc
    finally:
        pool.shutdown()
    return WorkerMeasure(measured, startup)
