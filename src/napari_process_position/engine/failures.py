"""What a failed task becomes: the error a run raises, naming the (t, c) and the cause.

A transform's own exception becomes a :class:`TransformError` (or stays
itself, for the iohub drop-in); a worker that died becomes a
:class:`WorkerDiedError` listing the volumes in flight and what most likely
killed it.
"""

from __future__ import annotations

import concurrent.futures as cf
import signal
from collections.abc import Iterable
from typing import Any, Literal

from napari_process_position.core.apply import raised_by_transform
from napari_process_position.core.errors import (
    InputReadError,
    OutputWriteError,
    TransformError,
    WorkerDiedError,
)
from napari_process_position.core.sizes import size_text
from napari_process_position.core.tasks import Task
from napari_process_position.engine.bootstrap import startup_failure

__all__ = ["is_failed", "looks_like_dead_worker", "size_text", "task_error", "worker_died_error"]


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def is_failed(future: cf.Future[Any]) -> bool:
    """Tell whether a done future was cancelled or raised."""
    return future.cancelled() or future.exception(timeout=0) is not None


def looks_like_dead_worker(exc: BaseException) -> bool:
    """Tell whether an executor's error means its worker died (Dask's ``KilledWorker``)."""
    return type(exc).__name__ == "KilledWorker"


def task_error(
    task: Task,
    exc: BaseException,
    *,
    transform: str,
    transform_errors: Literal["wrap", "raise"] = "wrap",
    memory_limit: int | None = None,
) -> BaseException:
    """Return the error to raise for a task that raised ``exc``.

    Parameters
    ----------
    task
        The task that failed.
    exc
        What it raised (in this process, or pickled back from a worker).
    transform
        The transform's name, for the message.
    transform_errors
        ``"raise"``: an exception the transform itself raised is returned as it
        is (its note names the transform and the (t, c)), as iohub raises it.
    memory_limit
        The workers' memory limit, to explain a ``MemoryError``.

    Returns
    -------
    BaseException
        ``exc`` itself, or a :class:`TransformError`, :class:`InputReadError`
        or :class:`OutputWriteError` whose message is complete.
    """
    if transform_errors == "raise" and raised_by_transform(exc):
        return exc
    if isinstance(exc, (InputReadError, OutputWriteError)):
        return type(exc)(str(exc))
    if isinstance(exc, TransformError) and getattr(exc, "complete", False):
        # The worker's own check (a result that cannot be stored, a transform it
        # cannot load): its message already names the transform and the (t, c).
        return TransformError(str(exc), exc.time_index, exc.channel_index)
    cause = exc.__cause__
    details = str(cause) if cause is not None and type(cause).__name__ == "_RemoteTraceback" else ""
    times = task.input_time_indices
    time_index = times[0] if len(times) == 1 else times
    if memory_limit and isinstance(exc, ImportError) and "failed to map segment" in str(exc):
        error = TransformError(
            f"transform {transform!r} could not load a library on {task.label} under the "
            f"workers' memory limit of {size_text(memory_limit)} ({type(exc).__name__}: {exc}); "
            "the limit caps virtual memory (address space), which libraries map generously. "
            "Raise --memory-limit (memory_limit), or give none",
            time_index=time_index,
            channel_index=task.input_channels,
        )
    elif isinstance(exc, MemoryError):
        where = (
            f"the worker's memory limit of {size_text(memory_limit)}"
            if memory_limit
            else "the memory available"
        )
        text = f" ({exc})" if str(exc) else ""
        error = TransformError(
            f"transform {transform!r} ran out of memory on {task.label}: MemoryError{text}; it "
            f"needed more than {where}. Use fewer workers, a smaller region or more memory; "
            "completed volumes are kept, so rerun with resume",
            time_index=time_index,
            channel_index=task.input_channels,
        )
    else:
        error = TransformError(
            f"transform {transform!r} failed on {task.label}: {type(exc).__name__}: {exc}",
            time_index=time_index,
            channel_index=task.input_channels,
        )
    error.details = details  # type: ignore[attr-defined]
    return error


def worker_died_error(
    in_flight: Iterable[Task],
    exit_codes: dict[int, int | None],
    memory_limit: int | None = None,
    known_startup_failure: str | None = None,
) -> WorkerDiedError:
    """Return the error for a worker that died while ``in_flight`` tasks ran.

    Parameters
    ----------
    in_flight
        The task whose future broke first, then the others not completed.
    exit_codes
        Pid -> exit code of the pool's workers (empty on an executor that
        does not tell).
    memory_limit
        The workers' memory limit, if any.
    known_startup_failure
        Why the pool's workers could not start, as the pool kept it (used when
        no worker's note is there: a run sharing the pool started new workers).

    Returns
    -------
    WorkerDiedError
        Naming the dead worker's exit (``killed by SIGKILL``), the volumes in
        flight, the likely cause and what to do.
    """
    labels = [t.label for t in in_flight]
    dead = {pid: code for pid, code in exit_codes.items() if code not in (None, 0)}
    # (a worker whose initializer failed ends with code 0: look a moment for its note)
    reason = startup_failure(wait=0.0 if dead else 1.0) or known_startup_failure
    if reason is not None:
        return WorkerDiedError(f"the worker processes could not start: {reason}")
    codes = ""
    killed = False
    if dead:
        codes = " (" + ", ".join(f"pid {pid} {_exit_text(c)}" for pid, c in dead.items()) + ")"
        killed = any(code == -signal.SIGKILL for code in dead.values())
    shown = "; ".join(labels[:6]) + (f" and {len(labels) - 6} more" if len(labels) > 6 else "")
    cause = (
        "The usual cause is running out of memory (the kernel's or the job's OOM killer "
        "sends SIGKILL; see `dmesg` or the job's log)"
        if killed or not codes
        else "The usual cause is running out of memory (the kernel or the job's memory limit "
        "killed it)"
    )
    if memory_limit:
        cause += (
            f" (the workers run under a memory limit of {size_text(memory_limit)}; native code "
            "that cannot allocate under it aborts instead of raising MemoryError)"
        )
    return WorkerDiedError(
        f"a worker process died{codes} while these tasks were in flight: {shown}. "
        f"{cause}, or a crash in native code. Try fewer workers, threads instead of "
        "processes, or more memory; completed volumes are kept, so rerun with resume."
    )
