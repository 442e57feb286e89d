"""Run a position's tasks on an executor and yield each Result as it finishes.

Serial for one worker, threads, spawned processes, or any
``concurrent.futures.Executor`` (Dask's, for instance). A bounded number of
tasks is in flight, so memory stays near workers x volume size however many
(t, c) volumes there are. A dead worker, a failing transform and a cancel
each end the run promptly, with completed output intact.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Literal

from napari_process_position.core import records as _progress
from napari_process_position.core.errors import UsageError, WorkerDiedError
from napari_process_position.core.tasks import Result, Task
from napari_process_position.core.transform_ref import TransformRef, portable, transform_name
from napari_process_position.engine.failures import (
    is_failed,
    looks_like_dead_worker,
    task_error,
    worker_died_error,
)
from napari_process_position.engine.pool import ProcessPool
from napari_process_position.engine.shared import from_shared, release, sharing_available
from napari_process_position.engine.worker import lower_priority, run_task, run_task_shared
from napari_process_position.store.layout import PositionInfo

__all__ = ["Mode", "PositionRun"]

log = logging.getLogger(__name__)

Mode = Literal["serial", "threads", "processes", "executor"]


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
        niceness: int = 0,
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
        self.niceness = niceness
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

    # -- iteration ---------------------------------------------------------------
    def __iter__(self) -> Iterator[Result]:
        if self._started:
            raise UsageError("a PositionRun can be iterated only once; call stream_position again")
        self._started = True
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
        grid = self.tasks[0].output_grid or self.output.chunk_grid  # with the levels written
        required = {
            task.record_name(t): grid.record_files(t, task.output_channel_list())
            for task in self.tasks
            for t in task.output_time_indices
        }
        return _progress.check(self.tasks[0].progress_dir, self.expected_records(), grid, required)

    def _trusted_records(self) -> set[str]:
        found = self.check_records()
        if found.other_settings:
            reasons = Counter(found.other_settings.values())
            log.warning(
                "resume: %d of %d volumes of %s were made by other settings (%s); computing "
                "them again",
                len(found.other_settings),
                self.total,
                self.output.path if self.output else "the output",
                "; ".join(f"{reason} differs for {n}" for reason, n in reasons.items()),
            )
        if found.untrusted:
            why = Counter(found.untrusted.values())
            log.warning(
                "resume: %d of %d completion records of %s cannot be trusted (%s); computing "
                "those volumes again",
                len(found.untrusted),
                self.total,
                self.output.path if self.output else "the output",
                "; ".join(f"{n} {reason}" for reason, n in why.items()),
            )
        if found.changed:
            log.info(
                "resume: %d volumes changed on disk since they were recorded (deleted, "
                "truncated or rewritten); computing them again",
                len(found.changed),
            )
        return found.done

    def _task_error(self, task: Task, exc: BaseException) -> BaseException:
        limit = self._pool.memory_limit_bytes if self._pool is not None else None
        return task_error(
            task,
            exc,
            transform=transform_name(self.transform),
            transform_errors=self.transform_errors,
            memory_limit=limit if self.mode == "processes" else None,
        )

    def _run_serial(self, todo: list[Task]) -> Iterator[Result]:
        for task in todo:
            if self._cancel.is_set():
                self.cancelled = True
                return
            try:
                results = run_task(task, self._sent, self.params)
            except Exception as exc:
                error = self._task_error(task, exc)
                if error is exc:
                    raise
                raise error from exc
            yield from results

    def _run_parallel(self, todo: list[Task]) -> Iterator[Result]:
        owned: cf.Executor | None = None
        limits = None
        if self.mode == "threads":
            owned = cf.ThreadPoolExecutor(
                self.num_workers,
                thread_name_prefix="npp-worker",
                initializer=lower_priority,
                initargs=(self.niceness,),
            )
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
                    self.num_workers,
                    self.inner_threads,
                    memory_limit_bytes=self.memory_limit_bytes,
                    niceness=self.niceness,
                )
                self._owned_pool = True
            executor = pool.executor
        elif self._executor is not None:
            executor = self._executor
        else:  # pragma: no cover - stream_position sets the executor of "executor" mode
            raise UsageError(f"a {self.mode} run has no executor")
        pending: dict[cf.Future[list[Result]], Task] = {}
        queue = list(reversed(todo))
        clean_exit = False
        # Preview volumes from worker processes come back through shared memory.
        share = None
        if self.mode == "processes" and self.output is None and sharing_available():
            share = self._pool.share_token if self._pool is not None else None
        try:
            while queue or pending:
                if self._cancel.is_set():
                    self.cancelled = True
                    yield from self._drain(pending)
                    return
                while queue and len(pending) < self.max_in_flight:
                    task = queue.pop()
                    try:
                        if share is not None:
                            future = executor.submit(
                                run_task_shared, task, self._sent, self.params, share
                            )
                        else:
                            future = executor.submit(run_task, task, self._sent, self.params)
                    except BrokenProcessPool as exc:
                        # A worker died while the caller held the last volume: the pool
                        # refuses this task (it never ran) before a pending one says why.
                        raise self._worker_died(task, pending, ran=False) from exc
                    pending[future] = task
                finished, _ = cf.wait(pending, timeout=0.1, return_when=cf.FIRST_COMPLETED)
                if self.mode == "processes" and self._pool is not None:
                    self._pool.processes()  # (remembers the workers, for a death's exit status)
                # Completed volumes first: when a worker dies, what finished alongside it is
                # still reported (it is written and recorded) before the error is raised.
                for future in sorted(finished, key=is_failed):
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
                        if looks_like_dead_worker(exc):
                            raise self._worker_died(task, pending) from exc
                        error = self._task_error(task, exc)
                        if error is exc:
                            raise
                        raise error from exc
                    yield from from_shared(results)
            clean_exit = True
        finally:
            for future in pending:
                if not future.cancel() and share is not None:
                    future.add_done_callback(_release_unreceived)
            if limits is not None:
                limits.restore_original_limits()
            if owned is not None:
                owned.shutdown(wait=False, cancel_futures=True)
            if self.mode == "processes" and self._pool is not None:
                if self._cancel.is_set() or (not clean_exit and self._pool.is_broken()):
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
                yield from from_shared(results)
        if pending:
            log.warning(
                "stopped %d task(s) still running after the wait: %s",
                len(pending),
                "; ".join(t.label for t in pending.values()),
            )

    def _worker_died(
        self, task: Task, pending: dict[cf.Future[list[Result]], Task], *, ran: bool = True
    ) -> WorkerDiedError:
        """Return the dead-worker error: ``task`` broke first (``ran`` False: it was refused)."""
        others = [t for f, t in pending.items() if not f.done() or is_failed(f)]
        in_flight = others if others and not ran else [task, *others]
        pool = self._pool
        codes = pool.exit_codes(settle=1.0) if pool is not None else {}
        # A pool brings its own limit; on an executor (Dask) the run says what its workers have.
        limit = pool.memory_limit_bytes if pool is not None else self.memory_limit_bytes
        known = pool.startup_failure if pool is not None else None
        return worker_died_error(in_flight, codes, limit, known)


def _release_unreceived(future: cf.Future[list[Result]]) -> None:
    """Remove the shared files of a task whose results nobody will read (a stopped run's)."""
    if not future.cancelled() and future.exception() is None:
        release(future.result())
