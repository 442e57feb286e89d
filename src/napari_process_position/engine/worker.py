"""The function a worker runs for one task: read, check, transform, write, record.

Writing and recording are :mod:`.task_write`'s. This module is what a spawned
worker process imports, so it imports only numpy, tensorstore, the standard
library, this package's ``core`` and the zarr-free parts of ``store`` (plus the
transform's own module); never Qt, napari, zarr, pydantic or the rest of the
engine (tests/test_import_contract.py).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from napari_process_position.core import records as _progress
from napari_process_position.core.apply import apply_transform, is_empty
from napari_process_position.core.errors import InputReadError, TransformError
from napari_process_position.core.sizes import size_text
from napari_process_position.core.tasks import Result, Task, channel_label
from napari_process_position.core.transform_ref import (
    TransformRef,
    resolve_transform,
    transform_name,
)
from napari_process_position.engine.bootstrap import leave_note
from napari_process_position.engine.shared import to_shared
from napari_process_position.engine.task_write import store_volumes
from napari_process_position.store.arrays import open_array_once, selection

__all__ = [
    "init_worker",
    "lower_priority",
    "memory_limit",
    "run_task",
    "run_task_shared",
    "warm_up",
]


_thread_limits: Any = None
#: The memory limit (bytes of address space) this worker runs under, for messages.
memory_limit: int | None = None


def _watch_parent(parent_pid: int, interval_s: float = 0.5) -> None:
    """End this worker when the process that started it is gone (it was SIGKILLed).

    A pool worker otherwise keeps waiting on its task queue forever, holding
    memory on a shared node.
    """
    while True:
        time.sleep(interval_s)
        if os.getppid() != parent_pid:
            os._exit(70)


def init_worker(
    inner_threads: int | None,
    memory_limit_bytes: int | None = None,
    parent_pid: int | None = None,
    niceness: int = 0,
) -> None:
    """Process-pool initializer: limits, priority, signals, and warm imports.

    - BLAS/OpenMP threads are capped at ``inner_threads``.
    - ``memory_limit_bytes`` caps the worker's address space
      (``RLIMIT_AS``): an allocation beyond it raises ``MemoryError`` in the
      transform, which the run reports as out of memory with the (t, c),
      instead of the kernel's OOM killer ending the worker (or the whole job).
    - SIGINT and SIGTERM are ignored: Ctrl-C in a terminal and a scheduler's
      SIGTERM reach every process of the group, and the caller decides how
      to stop (let the volumes in flight finish, then stop the workers).
    - The worker ends itself when its parent process is gone.
    - ``niceness`` > 0 lowers the worker's CPU priority (a GUI's workers: the
      window's thread keeps its share of the cores).
    """
    global _thread_limits
    lower_priority(niceness)
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError, OSError):  # not the main thread
            signal.signal(signum, signal.SIG_IGN)
    if parent_pid is not None:
        threading.Thread(
            target=_watch_parent, args=(parent_pid,), name="npp-parent-watch", daemon=True
        ).start()
    if inner_threads:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(inner_threads)
        try:
            from threadpoolctl import threadpool_limits

            _thread_limits = threadpool_limits(limits=inner_threads)
        except ImportError:  # pragma: no cover - threadpoolctl is a dependency
            pass
    import tensorstore  # noqa: F401  (import once, now, not in the first task)

    if memory_limit_bytes:
        _limit_memory(int(memory_limit_bytes))


def _limit_memory(limit: int) -> None:
    """Cap this worker's address space at ``limit`` bytes, if it can start under it at all.

    The cap is set once the worker's libraries are imported. Under a cap
    below what they mapped the worker could not even load a transform: it
    leaves a note for its parent (whose error says so) and exits.
    """
    global memory_limit
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    started = startup_bytes()
    if started is not None and limit < started * 1.25:
        reason = (
            f"the memory limit of {size_text(limit)} is below what a worker needs to start: "
            f"it maps {size_text(started)} of address space before any task (numpy, "
            "tensorstore; the limit caps virtual memory, which is larger than resident memory). "
            f"Give --memory-limit (memory_limit) at least {size_text(int(started * 1.25))} plus "
            "what a task needs, or none"
        )
        leave_note(reason)
        os._exit(1)  # quietly: the parent's error tells the user, once
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    memory_limit = limit


def startup_bytes() -> int | None:
    """Return this process's address space in bytes (Linux's VmSize), or None elsewhere."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


def lower_priority(niceness: int) -> None:
    """Lower the calling thread's CPU priority by ``niceness`` (Linux: per thread; else nothing).

    On Linux a thread is a task of its own: ``setpriority`` on its native id
    changes that thread only, and in a pool initializer the whole worker.
    """
    if niceness <= 0:
        return
    with contextlib.suppress(AttributeError, OSError):
        current = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), min(19, current + niceness))


def warm_up(hold_s: float = 0.0, transform: TransformRef | None = None) -> int:
    """Do nothing, so that a pool starts its processes ahead of the first real task.

    Holding the worker a moment makes the pool hand the next warm-up to
    another process, so every process gets started and initialised. With a
    transform, its module is imported now rather than in the first task.
    """
    if transform is not None:
        resolve_transform(transform)
    if hold_s:
        time.sleep(hold_s)
    return os.getpid()


def _read(source: Any, task: Task, t_in: int, selection: Any) -> np.ndarray:
    try:
        return source[t_in][selection].read().result()  # type: ignore[no-any-return]
    except Exception as exc:
        raise InputReadError(
            f"reading t={t_in}, c={channel_label(task.input_channels)} from "
            f"{task.input_array} failed: {exc}"
        ) from exc


def run_task(
    task: Task,
    transform: TransformRef,
    params: dict[str, Any],
) -> list[Result]:
    """Run one task and report one :class:`Result` per time point.

    Reads each input block, skips blocks that are empty (all zeros or all
    NaN in some channel; their output is left at the fill value), applies
    the transform, and either stores the results in the output array (the
    task's files are written whole, never read back: see :mod:`..store.shards`)
    or, for a preview without output, returns them. Every input block is
    read before anything is written, so a run in place reads the input.
    Completion records are written only after the data is stored, so resume
    never trusts a partial write.
    """
    func = _load_transform(transform, task)
    name = getattr(func, "__name__", None) or transform_name(transform)
    worker = f"pid {os.getpid()} / {threading.current_thread().name}"
    source = open_array_once(
        task.input_array, task.input_zarr_format, axes=task.input_axes, run_id=task.run_id
    )
    target = None
    if task.output_array is not None:
        target = open_array_once(
            task.output_array,
            task.output_zarr_format,
            write=True,
            axes=task.output_axes,
            run_id=task.run_id,
        )
    c_in = selection(task.input_channels)
    expected = task.expected_block_shape()
    timings: list[tuple[int, int, str, float, float]] = []
    volumes: dict[int, np.ndarray | None] = {}
    results: list[Result] = []
    for t_in, t_out in zip(task.input_time_indices, task.output_time_indices, strict=True):
        if task.progress_dir is not None:
            _progress.remove(task.progress_dir, task.record_name(t_out))
        start = time.perf_counter()
        block = _read(source, task, t_in, c_in)
        read_done = time.perf_counter()
        array: np.ndarray | None = None
        if not is_empty(block):
            array = apply_transform(
                func,
                block,
                params,
                name=name,
                time_index=t_in,
                channels=task.input_channels,
                source=os.path.dirname(task.input_array),
                expected_shape=expected,
                output_dtype=task.output_dtype,
                strict_dtype=task.strict_dtype,
            )
        del block
        computed = time.perf_counter()
        status = "skipped" if array is None else ("written" if target is not None else "preview")
        if target is None:
            results.append(
                Result(
                    task.index,
                    t_in,
                    t_out,
                    task.input_channels,
                    task.output_channels,
                    status,  # type: ignore[arg-type]
                    array,
                    read_done - start,
                    computed - read_done,
                    0.0,
                    worker,
                )
            )
        else:
            volumes[t_out] = array
            timings.append((t_in, t_out, status, read_done - start, computed - read_done))
    if target is None:
        return results
    write_s = store_volumes(target, task, volumes)
    return [
        Result(
            task.index,
            t_in,
            t_out,
            task.input_channels,
            task.output_channels,
            status,  # type: ignore[arg-type]
            None,
            read_s,
            compute_s,
            write_s,
            worker,
        )
        for t_in, t_out, status, read_s, compute_s in timings
    ]


def run_task_shared(
    task: Task, transform: TransformRef, params: dict[str, Any], owner: str
) -> list[Result]:
    """Run one task in a pool worker; its preview volumes go back through shared memory.

    See :mod:`.shared`: ``owner`` is the pool's token.
    """
    return to_shared(run_task(task, transform, params), owner)


def _load_transform(transform: TransformRef, task: Task) -> Callable[..., Any]:
    """Resolve the transform in this worker; an import failure names it and the task."""
    try:
        return resolve_transform(transform)
    except Exception as exc:
        where = "this worker process" if _in_pool_worker() else "this process"
        text = str(exc)
        if memory_limit and (isinstance(exc, MemoryError) or "failed to map segment" in text):
            error = TransformError(
                f"transform {transform_name(transform)!r} cannot be loaded under the memory "
                f"limit of {size_text(memory_limit)} ({type(exc).__name__}: {text}): importing "
                "its libraries needs more address space than the limit leaves (the limit caps "
                f"virtual memory; a worker maps {size_text(startup_bytes() or 0)} now). Raise "
                "--memory-limit (memory_limit), or give none",
                time_index=task.input_time_indices[0],
                channel_index=task.input_channels,
            )
            error.complete = True  # type: ignore[attr-defined]
            raise error from None
        error = TransformError(
            f"transform {transform_name(transform)!r} cannot be loaded in {where} "
            f"(pid {os.getpid()}) for {task.label}: {type(exc).__name__}: {exc}. Worker "
            "processes import a transform by its module name: define it in an importable "
            "module or a .py file (pass 'module:function' or 'file.py:function'), or use threads",
            time_index=task.input_time_indices[0],
            channel_index=task.input_channels,
        )
        error.complete = True  # type: ignore[attr-defined]
        raise error from None


def _in_pool_worker() -> bool:
    import multiprocessing

    return multiprocessing.parent_process() is not None
