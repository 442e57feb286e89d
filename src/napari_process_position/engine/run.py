"""Run a position's tasks on an executor and yield each Result as it finishes.

Serial for one worker, threads, spawned processes, or any
``concurrent.futures.Executor`` (Dask's, for instance). A bounded number of
tasks is in flight, so memory stays near workers x volume size however many
(t, c) volumes there are. A dead worker, a failing transform and a cancel
each end the run promptly, with completed output intact.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import logging
import multiprocessing as mp
import os
import pickle
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Literal

from napari_process_position.core import records as _progress
from napari_process_position.core.budget import available_cpus
from napari_process_position.core.errors import (
    InputReadError,
    OutputWriteError,
    TransformError,
    WorkerDiedError,
)
from napari_process_position.core.identity import run_identity
from napari_process_position.core.tasks import Result, Task, plan_tasks
from napari_process_position.engine.worker import (
    PickledTransform,
    TransformRef,
    init_worker,
    run_task,
    warm_up,
)
from napari_process_position.store.metadata import PositionInfo, read_position

__all__ = ["PositionRun", "ProcessPool", "stream_position"]

log = logging.getLogger(__name__)

Mode = Literal["serial", "threads", "processes", "executor"]


class ProcessPool:
    """A spawn-context process pool that can be kept warm and reused across runs.

    Spawn, never fork: tensorstore's threads are not fork-safe, and inside
    napari Qt and other threads are live. Each worker caps its BLAS/OpenMP
    threads so that workers x inner threads stays within the CPU budget.

    Parameters
    ----------
    num_workers
        Number of worker processes.
    inner_threads
        BLAS/OpenMP threads per worker; by default ``available_cpus() //
        num_workers`` (at least 1).
    memory_limit_bytes
        Cap each worker's address space (``RLIMIT_AS``) at this many bytes.
        A transform that allocates beyond it gets a ``MemoryError``, and the
        run stops with "out of memory" and the (t, c), instead of the
        kernel's or the job's OOM killer ending the worker or the whole job.
        Set it below the job's memory divided by the workers. It limits
        virtual memory, which is larger than resident memory (a worker with
        numpy and tensorstore maps about 1 GiB before reading anything), so
        values under about 2 GiB stop workers from working at all.

    Notes
    -----
    Workers ignore SIGINT and SIGTERM (the caller decides how to stop:
    :meth:`PositionRun.cancel`) and end themselves when the caller's
    process is gone, so a SIGKILLed caller leaves no workers behind.

    Examples
    --------
    >>> pool = ProcessPool(2)            # doctest: +SKIP
    >>> for r in stream_position(f, "in.zarr/A/1/0", pool=pool): ...  # doctest: +SKIP
    >>> pool.shutdown()                  # doctest: +SKIP
    """

    def __init__(
        self,
        num_workers: int,
        inner_threads: int | None = None,
        *,
        memory_limit_bytes: int | None = None,
    ) -> None:
        if num_workers < 1:
            raise ValueError(f"num_workers must be at least 1, not {num_workers}")
        if memory_limit_bytes is not None and memory_limit_bytes <= 0:
            raise ValueError(f"memory_limit_bytes must be positive, not {memory_limit_bytes}")
        self.num_workers = int(num_workers)
        self.inner_threads = inner_threads or max(1, available_cpus() // self.num_workers)
        self.memory_limit_bytes = int(memory_limit_bytes) if memory_limit_bytes else None
        self._executor: cf.ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    @property
    def executor(self) -> cf.ProcessPoolExecutor:
        """The live executor, started on first use (and again after a kill)."""
        with self._lock:
            if self._executor is None or self._broken(self._executor):
                self._executor = cf.ProcessPoolExecutor(
                    max_workers=self.num_workers,
                    mp_context=mp.get_context("spawn"),
                    initializer=init_worker,
                    initargs=(self.inner_threads, self.memory_limit_bytes, os.getpid()),
                )
            return self._executor

    @staticmethod
    def _broken(executor: cf.ProcessPoolExecutor) -> bool:
        return bool(
            getattr(executor, "_broken", False) or getattr(executor, "_shutdown_thread", False)
        )

    def warm(self, transform: TransformRef | None = None) -> list[int]:
        """Start every worker process now and wait until each has imported its libraries.

        Parameters
        ----------
        transform
            Also import this transform's module in the workers, so that the
            first task does not pay for it.

        Returns
        -------
        list of int
            The workers' process ids.
        """
        executor = self.executor
        if transform is not None and not isinstance(transform, (str, PickledTransform)):
            transform = portable(transform)
        futures = [executor.submit(warm_up, 0.05, transform) for _ in range(self.num_workers * 2)]
        for future in futures:
            future.result()
        return sorted(p.pid for p in self.processes())

    def processes(self) -> list[Any]:
        """Return the worker processes (multiprocessing.Process objects) currently alive."""
        executor = self._executor
        procs = getattr(executor, "_processes", None) or {}
        return list(procs.values())

    def exit_codes(self, settle: float = 0.0) -> dict[int, int | None]:
        """Pid -> exit code of the current workers (None while running).

        A worker's end is seen (its pipe closes) a moment before the kernel
        can report its exit status; ``settle`` waits up to that many seconds
        for the status of workers that have ended.
        """
        procs = self.processes()
        if settle:
            from multiprocessing.connection import wait

            ended = set(wait([p.sentinel for p in procs], timeout=0))
            for proc in procs:
                if proc.sentinel in ended:
                    proc.join(timeout=settle)
        return {p.pid: p.exitcode for p in procs}

    def kill(self) -> None:
        """Stop the workers at once (SIGKILL) without waiting for their tasks."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is None:
            return
        procs = list((getattr(executor, "_processes", None) or {}).values())
        for proc in procs:
            with contextlib.suppress(Exception):
                proc.kill()
        executor.shutdown(wait=False, cancel_futures=True)
        for proc in procs:
            with contextlib.suppress(Exception):
                proc.join(timeout=2)
        _forget_manager_thread(executor)

    def shutdown(self, wait: bool = True) -> None:
        """Let the workers finish what they run, then stop them."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=wait, cancel_futures=True)

    def __enter__(self) -> ProcessPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def _forget_manager_thread(executor: cf.ProcessPoolExecutor) -> None:
    """Let a killed pool's manager thread end, then drop it from the exit hook's list.

    At interpreter exit concurrent.futures wakes every pool's manager thread
    through a pipe; for a pool whose workers were killed that pipe is already
    closed, and Python 3.11 then prints an OSError traceback after a run that
    ended cleanly with an error message.
    """
    thread = getattr(executor, "_executor_manager_thread", None)
    if thread is None:
        return
    thread.join(timeout=2)
    if not thread.is_alive():
        import concurrent.futures.process as cf_process

        wakeups = getattr(cf_process, "_threads_wakeups", None)
        if wakeups is not None:
            with contextlib.suppress(Exception):
                wakeups.pop(thread, None)


def transform_name(transform: TransformRef) -> str:
    """Return a readable name for a transform reference."""
    if isinstance(transform, str):
        return transform
    if isinstance(transform, PickledTransform):
        return transform.name
    return (
        getattr(transform, "__qualname__", None)
        or getattr(transform, "__name__", None)
        or repr(transform)
    )


def portable(transform: TransformRef) -> TransformRef:
    """Return what to send to worker processes: strings as they are, callables pickled once.

    The worker unpickles the callable inside the task, so a transform it
    cannot import is reported as that, not as a crashed worker.
    """
    if isinstance(transform, (str, PickledTransform)):
        return transform
    return PickledTransform(transform_name(transform), pickle.dumps(transform))


def _check_picklable(transform: TransformRef, params: dict[str, Any]) -> None:
    name = transform_name(transform)
    module = getattr(transform, "__module__", None)
    if module == "__main__":
        import __main__

        if not getattr(__main__, "__file__", None):
            raise TransformError(
                f"transform {name!r} is defined in an interactive session, so worker processes "
                "cannot import it; put it in a .py file and pass 'file.py:function', or use threads"
            )
    try:
        pickle.dumps(transform)
    except Exception as exc:
        raise TransformError(
            f"transform {name!r} cannot be sent to worker processes ({exc}); define it at the "
            "top level of an importable module or a .py file ('module:function' or "
            "'file.py:function'), not as a lambda or a nested function, or use threads"
        ) from exc
    try:
        pickle.dumps(params)
    except Exception as exc:
        raise TransformError(
            f"the parameters of transform {name!r} cannot be sent to worker processes: {exc}"
        ) from exc


class PositionRun:
    """One run over one position: iterate it to get Results as they finish.

    Made by :func:`stream_position`. Iterating starts the work; ``cancel()``
    may be called from any thread and ends the iteration within about 0.1 s
    (after it, ``cancelled`` is True); ``cancel(wait=s)`` first lets the
    tasks already submitted finish for up to ``s`` seconds. Already written
    volumes stay.

    Attributes
    ----------
    tasks
        The planned tasks, each one channel group x one or more time points.
    total
        Number of Results the run yields when it completes.
    num_workers, mode
        The effective worker count (after capping) and execution mode.
    input, output
        Metadata of the input and output positions (output is None for a
        preview).
    """

    def __init__(
        self,
        transform: TransformRef,
        params: dict[str, Any],
        input_info: PositionInfo,
        output_info: PositionInfo | None,
        tasks: list[Task],
        *,
        num_workers: int,
        mode: Mode,
        executor: cf.Executor | None,
        pool: ProcessPool | None,
        resume: bool,
        max_in_flight: int,
        inner_threads: int,
        memory_limit_bytes: int | None = None,
        transform_errors: Literal["wrap", "raise"] = "wrap",
    ) -> None:
        self.transform = transform
        self.transform_errors = transform_errors
        self.params = params
        self.input = input_info
        self.output = output_info
        self.tasks = tasks
        self.num_workers = num_workers
        self.mode = mode
        self.resume = resume
        self.max_in_flight = max_in_flight
        self.inner_threads = inner_threads
        self.memory_limit_bytes = memory_limit_bytes
        self._executor = executor
        self._pool = pool
        self._cancel = threading.Event()
        self._drain_until = 0.0
        self._sent: TransformRef = (
            portable(transform) if mode in ("processes", "executor") else transform
        )
        self._started = False
        self.total = sum(len(t.input_time_indices) for t in tasks)
        self.cancelled = False
        self.started_at: float | None = None

    # -- control ---------------------------------------------------------------
    def cancel(self, wait: float = 0.0) -> None:
        """Stop the run: submit nothing more, drop pending tasks, stop process workers.

        Parameters
        ----------
        wait
            Seconds the tasks already submitted may take to finish: their
            volumes are written and recorded and their Results still yielded
            (a graceful stop, as on SIGTERM). Tasks still running then are
            stopped (process workers are killed; a volume cut short is not
            recorded, so resume redoes it). 0 (the default) stops at once.
            Calling ``cancel()`` again shortens the wait.
        """
        until = time.monotonic() + max(0.0, float(wait))
        if not self._cancel.is_set() or until < self._drain_until:
            self._drain_until = until
        self._cancel.set()

    @property
    def cancel_requested(self) -> bool:
        """True once ``cancel()`` was called."""
        return self._cancel.is_set()

    # -- iteration ---------------------------------------------------------------
    def __iter__(self) -> Iterator[Result]:
        if self._started:
            raise RuntimeError(
                "a PositionRun can be iterated only once; call stream_position again"
            )
        self._started = True
        self.started_at = time.perf_counter()
        todo: list[Task] = []
        resumed: list[Result] = []
        done = self._trusted_records() if self.resume else set()
        for task in self.tasks:
            names = {task.record_name(t) for t in task.output_time_indices}
            if names and names <= done:
                resumed.extend(
                    Result(task.index, ti, to, task.input_channels, task.output_channels, "resumed")
                    for ti, to in zip(
                        task.input_time_indices, task.output_time_indices, strict=True
                    )
                )
            else:
                todo.append(task)
        if resumed:
            log.info("resume: %d of %d volumes were already complete", len(resumed), self.total)
        yield from resumed
        if not todo:
            return
        log.info(
            "running %d tasks of %s with %d %s worker(s)",
            len(todo),
            transform_name(self.transform),
            self.num_workers,
            self.mode,
        )
        if self.mode == "serial":
            yield from self._run_serial(todo)
        else:
            yield from self._run_parallel(todo)

    def expected_records(self) -> dict[str, dict[str, Any]]:
        """Record name -> the identity this run writes into it, for every output volume."""
        expected: dict[str, dict[str, Any]] = {}
        for task in self.tasks:
            for ti, to in zip(task.input_time_indices, task.output_time_indices, strict=True):
                expected[task.record_name(to)] = task.volume_identity(ti, to)
        return expected

    def check_records(self) -> _progress.ResumeCheck:
        """Look at the completion records of this run's output volumes."""
        if self.output is None or not self.tasks or self.tasks[0].progress_dir is None:
            return _progress.ResumeCheck()
        return _progress.check(
            self.tasks[0].progress_dir, self.expected_records(), self.output.chunk_grid
        )

    def _trusted_records(self) -> set[str]:
        found = self.check_records()
        if found.other_settings:
            reasons: dict[str, int] = {}
            for reason in found.other_settings.values():
                reasons[reason] = reasons.get(reason, 0) + 1
            log.warning(
                "resume: %d of %d volumes of %s were made by other settings (%s); computing "
                "them again",
                len(found.other_settings),
                self.total,
                self.output.path if self.output else "the output",
                "; ".join(f"{reason} differs for {n}" for reason, n in reasons.items()),
            )
        if found.changed:
            log.info(
                "resume: %d volumes changed on disk since they were recorded (deleted, "
                "truncated or rewritten); computing them again",
                len(found.changed),
            )
        return found.done

    def _wrap_error(self, task: Task, exc: BaseException) -> BaseException:
        """Return the error to raise for a failed task.

        Ours, or with ``transform_errors="raise"`` the transform's own exception
        (its note names the transform and the (t, c)).
        """
        if self.transform_errors == "raise" and getattr(exc, "npp_transform_error", False):
            return exc
        if isinstance(exc, (InputReadError, OutputWriteError)):
            return type(exc)(str(exc))
        if isinstance(exc, TransformError) and getattr(exc, "complete", False):
            # The worker's own check (a result that cannot be stored, a transform it
            # cannot load): its message already names the transform and the (t, c).
            copy = TransformError(str(exc), exc.time_index, exc.channel_index)
            return copy
        name = transform_name(self.transform)
        cause = exc.__cause__
        details = (
            str(cause) if cause is not None and type(cause).__name__ == "_RemoteTraceback" else ""
        )
        time_index = (
            task.input_time_indices[0]
            if len(task.input_time_indices) == 1
            else task.input_time_indices
        )
        if isinstance(exc, MemoryError):
            limit = self._pool.memory_limit_bytes if self._pool is not None else None
            where = (
                f"the worker's memory limit of {_gib(limit)}"
                if limit and self.mode == "processes"
                else "the memory available"
            )
            text = f" ({exc})" if str(exc) else ""
            error = TransformError(
                f"transform {name!r} ran out of memory on {task.label}: MemoryError{text}; it "
                f"needed more than {where}. Use fewer workers, a smaller region or more memory; "
                "completed volumes are kept, so rerun with resume",
                time_index=time_index,
                channel_index=task.input_channels,
            )
        else:
            error = TransformError(
                f"transform {name!r} failed on {task.label}: {type(exc).__name__}: {exc}",
                time_index=time_index,
                channel_index=task.input_channels,
            )
        error.details = details  # type: ignore[attr-defined]
        return error

    def _run_serial(self, todo: list[Task]) -> Iterator[Result]:
        for task in todo:
            if self._cancel.is_set():
                self.cancelled = True
                return
            try:
                results = run_task(task, self._sent, self.params)
            except Exception as exc:
                error = self._wrap_error(task, exc)
                if error is exc:
                    raise
                raise error from exc
            yield from results

    def _run_parallel(self, todo: list[Task]) -> Iterator[Result]:
        owned: cf.Executor | None = None
        limits = None
        if self.mode == "threads":
            owned = cf.ThreadPoolExecutor(self.num_workers, thread_name_prefix="npp-worker")
            executor: cf.Executor = owned
            try:
                from threadpoolctl import threadpool_limits

                limits = threadpool_limits(limits=self.inner_threads)
            except ImportError:  # pragma: no cover
                limits = None
        elif self.mode == "processes":
            pool = self._pool
            if pool is None:
                pool = self._pool = ProcessPool(
                    self.num_workers, self.inner_threads, memory_limit_bytes=self.memory_limit_bytes
                )
                self._owned_pool = True
            executor = pool.executor
        else:
            assert self._executor is not None
            executor = self._executor
        pending: dict[cf.Future[list[Result]], Task] = {}
        queue = list(reversed(todo))
        clean_exit = False
        try:
            while queue or pending:
                if self._cancel.is_set():
                    self.cancelled = True
                    yield from self._drain(pending)
                    return
                while queue and len(pending) < self.max_in_flight:
                    task = queue.pop()
                    pending[executor.submit(run_task, task, self._sent, self.params)] = task
                finished, _ = cf.wait(pending, timeout=0.1, return_when=cf.FIRST_COMPLETED)
                # Completed volumes first: when a worker dies, what finished alongside it is
                # still reported (it is written and recorded) before the error is raised.
                for future in sorted(finished, key=_failed):
                    task = pending.pop(future)
                    try:
                        results = future.result()
                    except BrokenProcessPool as exc:
                        raise self._worker_died(task, pending) from exc
                    except cf.CancelledError:
                        if self._cancel.is_set():
                            continue
                        raise
                    except Exception as exc:
                        if _looks_like_dead_worker(exc):
                            raise self._worker_died(task, pending) from exc
                        error = self._wrap_error(task, exc)
                        if error is exc:
                            raise
                        raise error from exc
                    yield from results
            clean_exit = True
        finally:
            for future in pending:
                future.cancel()
            if limits is not None:
                limits.restore_original_limits()
            if owned is not None:
                owned.shutdown(wait=False, cancel_futures=True)
            if self.mode == "processes" and self._pool is not None:
                if self._cancel.is_set() or (not clean_exit and _pool_broken(self._pool)):
                    self._pool.kill()
                elif getattr(self, "_owned_pool", False):
                    if clean_exit:
                        self._pool.shutdown(wait=True)
                    else:
                        self._pool.kill()

    def _drain(self, pending: dict[cf.Future[list[Result]], Task]) -> Iterator[Result]:
        """After a cancel with ``wait``: let submitted tasks finish until the deadline."""
        for future in list(pending):
            if future.cancel():
                del pending[future]
        while pending and time.monotonic() < self._drain_until:
            finished, _ = cf.wait(pending, timeout=0.1, return_when=cf.FIRST_COMPLETED)
            for future in finished:
                task = pending.pop(future)
                try:
                    results = future.result()
                except Exception as exc:  # stopping anyway: report it, keep draining the rest
                    log.warning("while stopping, %s did not complete: %s", task.label, exc)
                    continue
                yield from results
        if pending:
            log.warning(
                "stopped %d task(s) still running after the wait: %s",
                len(pending),
                "; ".join(t.label for t in pending.values()),
            )

    def _worker_died(
        self, task: Task, pending: dict[cf.Future[list[Result]], Task]
    ) -> WorkerDiedError:
        in_flight = [task.label] + [
            t.label for f, t in pending.items() if not f.done() or _failed(f)
        ]
        codes = ""
        killed = False
        if self._pool is not None:
            dead = {
                pid: code
                for pid, code in self._pool.exit_codes(settle=1.0).items()
                if code not in (None, 0)
            }
            if dead:
                codes = (
                    " ("
                    + ", ".join(f"pid {pid} {_exit_text(code)}" for pid, code in dead.items())
                    + ")"
                )
                killed = any(code == -signal.SIGKILL for code in dead.values())
        shown = "; ".join(in_flight[:6]) + (
            f" and {len(in_flight) - 6} more" if len(in_flight) > 6 else ""
        )
        cause = (
            "The usual cause is running out of memory (the kernel's or the job's OOM killer "
            "sends SIGKILL; see `dmesg` or the job's log)"
            if killed or not codes
            else "The usual cause is running out of memory (the kernel or the job's memory limit "
            "killed it)"
        )
        limit = self._pool.memory_limit_bytes if self._pool is not None else None
        if limit:
            cause += (
                f" (the workers run under a memory limit of {_gib(limit)}; native code "
                "that cannot allocate under it aborts instead of raising MemoryError)"
            )
        return WorkerDiedError(
            f"a worker process died{codes} while these tasks were in flight: {shown}. "
            f"{cause}, or a crash in native code. Try fewer workers, threads instead of "
            "processes, or more memory; completed volumes are kept, so rerun with resume."
        )


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def _failed(future: cf.Future[Any]) -> bool:
    """Tell whether a done future was cancelled or raised."""
    return future.cancelled() or future.exception(timeout=0) is not None


def _pool_broken(pool: ProcessPool) -> bool:
    executor = pool._executor
    return executor is None or ProcessPool._broken(executor)


def _looks_like_dead_worker(exc: BaseException) -> bool:
    # Dask reports a worker that died repeatedly as KilledWorker.
    return type(exc).__name__ == "KilledWorker"


def _effective_workers(requested: int, n_tasks: int) -> int:
    if requested < 1:
        return 1
    cpus = available_cpus()
    capped = min(requested, cpus, max(1, n_tasks))
    if capped < requested:
        reason = f"{cpus} CPUs available" if capped == cpus else f"{n_tasks} tasks"
        log.info("using %d workers instead of %d (%s)", capped, requested, reason)
    return capped


def stream_position(
    transform: TransformRef,
    input_position_path: str | os.PathLike[str],
    output_position_path: str | os.PathLike[str] | None = None,
    input_channel_indices: Sequence[Any] | None = None,
    output_channel_indices: Sequence[Any] | None = None,
    input_time_indices: Sequence[int] | None = None,
    output_time_indices: Sequence[int] | None = None,
    num_workers: int = 1,
    use_threads: bool = False,
    *,
    executor: cf.Executor | None = None,
    pool: ProcessPool | None = None,
    resume: bool = False,
    resume_token: str | None = None,
    max_in_flight: int | None = None,
    params: dict[str, Any] | None = None,
    strict_dtype: bool = False,
    memory_limit_bytes: int | None = None,
    transform_errors: Literal["wrap", "raise"] = "wrap",
    **kwargs: Any,
) -> PositionRun:
    """Plan a run over one position; iterate the returned run to get Results as they finish.

    Parameters
    ----------
    transform
        ``f(czyx, **params) -> array``: a callable (module level, for
        processes), or a ``"module:function"`` / ``"file.py:function"`` string.
    input_position_path
        The input position (``plate.zarr/A/1/0``).
    output_position_path
        An existing output position to write into, or None for a preview:
        each Result then carries the transformed volume.
    input_channel_indices, output_channel_indices, input_time_indices, output_time_indices
        As in iohub's ``process_single_position``: channel groups (an int
        gives the transform ZYX, a list or slice gives CZYX), default one
        group per channel; time points, default all.
    num_workers
        Workers; 1 or less runs serially in the calling thread. Capped by
        :func:`available_cpus` and by the number of tasks.
    use_threads
        Threads instead of spawned processes.
    executor
        Any ``concurrent.futures.Executor`` to run on instead (e.g. a Dask
        client's); ``num_workers`` then only bounds the tasks in flight.
    pool
        A :class:`ProcessPool` to reuse (kept warm by the caller).
    resume
        Skip (t, c) volumes whose completion record says they were made
        exactly as this run would make them: the same input position, input
        time and channels, transform (and its source), parameters (by value),
        ``resume_token`` and output layout, with their files unchanged since.
        Any other volume is computed.
    resume_token
        The caller's own fingerprint of its settings (iohub's): a record
        made under another token is not trusted.
    max_in_flight
        Tasks submitted but not finished; default twice the workers.
    params, **kwargs
        Parameters passed to the transform.
    strict_dtype
        Raise when a result fits the output dtype only by an unsafe cast
        (float into an integer store); by default values are cast as numpy
        casts them, as iohub does. NaN or infinite values bound for an
        integer output are always refused (a cast would store garbage).
    memory_limit_bytes
        In process mode without a ``pool``: each worker's memory limit (see
        :class:`ProcessPool`). A given pool brings its own.
    transform_errors
        ``"wrap"`` (default): an exception raised by the transform ends the
        run as a :class:`TransformError` naming the transform and the
        (t, c). ``"raise"``: the transform's own exception, of its own type,
        with that as a note (as :func:`process_single_position` does).

    Returns
    -------
    PositionRun

    Raises
    ------
    StoreNotFoundError
        A position folder does not exist (also a ``FileNotFoundError``).
    InvalidStoreError
        A position is not a usable OME-Zarr position.
    IndexOutOfRangeError
        A time or channel index outside the input or output (also a
        ``ValueError`` and an ``IndexError``).
    TransformError
        In process mode, a transform or parameters that cannot be sent to
        worker processes.

    Notes
    -----
    The output may be the input (processing in place, as iohub allows):
    every task reads its input blocks before it writes. The command line
    and the widget refuse an output inside the input.
    """
    all_params = dict(params or {})
    all_params.update(kwargs)
    in_info = read_position(input_position_path)
    out_info = read_position(output_position_path) if output_position_path is not None else None
    identity = ""
    if out_info is not None:
        identity = run_identity(
            transform=transform,
            params=all_params,
            resume_token=resume_token,
            input_array=in_info.array_path,
            output=out_info.layout(),
        )
    tasks = plan_tasks(
        input_array=in_info.array_path,
        input_zarr_format=in_info.zarr_format,
        input_shape=in_info.shape,
        output_array=out_info.array_path if out_info else None,
        output_zarr_format=out_info.zarr_format if out_info else None,
        output_shape=out_info.shape if out_info else None,
        output_dtype=out_info.dtype if out_info else None,
        output_shards=out_info.shards if out_info else None,
        input_channel_indices=input_channel_indices,
        output_channel_indices=output_channel_indices,
        input_time_indices=input_time_indices,
        output_time_indices=output_time_indices,
        progress_dir=_progress.records_dir(out_info.path) if out_info else None,
        identity=identity,
        output_grid=out_info.chunk_grid if out_info else None,
        strict_dtype=strict_dtype,
    )
    mode: Mode
    if executor is not None:
        mode = "executor"
        workers = max(1, num_workers)
    elif pool is not None and not use_threads:
        mode = "processes"
        workers = pool.num_workers
    else:
        workers = _effective_workers(num_workers, len(tasks))
        if workers > 1 and out_info is not None and out_info.write_grid[1] > 1:
            # Tasks of different channels would rewrite the same files.
            log.warning(
                "%s is chunked across %d channels, so tasks of different channels share "
                "files; running serially",
                out_info.array_path,
                out_info.write_grid[1],
            )
            workers = 1
        mode = "serial" if workers <= 1 else ("threads" if use_threads else "processes")
    if mode in ("processes", "executor"):
        _check_picklable(transform, all_params)
    cpus = available_cpus()
    inner = max(1, cpus // max(1, workers)) if mode != "serial" else cpus
    return PositionRun(
        transform,
        all_params,
        in_info,
        out_info,
        tasks,
        num_workers=workers,
        mode=mode,
        executor=executor,
        pool=pool,
        resume=resume,
        max_in_flight=max_in_flight or 2 * workers,
        memory_limit_bytes=memory_limit_bytes,
        inner_threads=pool.inner_threads if pool is not None and mode == "processes" else inner,
        transform_errors=transform_errors,
    )
