"""A spawn-context process pool that can be kept warm and reused across runs."""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import multiprocessing as mp
import os
import threading
import time
from typing import Any

from napari_process_position.core.budget import available_cpus
from napari_process_position.core.errors import CancelledRunError, InvalidArgumentError
from napari_process_position.core.transform_ref import PickledTransform, TransformRef, portable
from napari_process_position.engine.bootstrap import (
    forget_startup_failure,
    refuse_while_bootstrapping,
    startup_failure,
)
from napari_process_position.engine.shared import pool_token, remove_leftovers
from napari_process_position.engine.worker import init_worker, warm_up

__all__ = ["ProcessPool"]


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
    niceness
        Lower the workers' CPU priority by this much (0: as the caller). The
        widget's pools use it so that napari's window keeps its share of the
        cores while the workers compute.

    Notes
    -----
    Workers ignore SIGINT and SIGTERM (the caller decides how to stop:
    :meth:`PositionRun.cancel`) and end themselves when the caller's
    process is gone, so a SIGKILLed caller leaves no workers behind. Since
    workers ignore SIGTERM, the pool itself kills those left when one dies
    or when it is killed or closed: no worker outlives its pool.
    :meth:`close` ends a pool for good (a widget or viewer that closes);
    after :meth:`kill` or :meth:`shutdown` it starts new workers when used.

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
        niceness: int = 0,
    ) -> None:
        refuse_while_bootstrapping()  # a script calling us at its top level, re-imported
        if num_workers < 1:
            raise InvalidArgumentError(f"num_workers must be at least 1, not {num_workers}")
        if memory_limit_bytes is not None and memory_limit_bytes <= 0:
            raise InvalidArgumentError(
                f"memory_limit_bytes must be positive, not {memory_limit_bytes}"
            )
        self.num_workers = int(num_workers)
        self.inner_threads = inner_threads or max(1, available_cpus() // self.num_workers)
        self.memory_limit_bytes = int(memory_limit_bytes) if memory_limit_bytes else None
        self.niceness = max(0, int(niceness))
        self._executor: cf.ProcessPoolExecutor | None = None
        #: Every worker process seen (pid -> Process): a dead one's exit status stays
        #: readable after the executor has forgotten it (Python versions differ there).
        self._seen: dict[int, Any] = {}
        #: Names this pool's shared memory files (preview volumes: see :mod:`.shared`).
        self.share_token = pool_token()
        self._lock = threading.Lock()
        #: Set by :meth:`close`: no executor is ever started again.
        self.closed = False
        #: Why an earlier executor's workers could not start, kept when its note is
        #: forgotten for the next one: a cause in the pool's settings (a memory limit
        #: below a worker's start, an unguarded script) stops every executor alike.
        self.startup_failure: str | None = None

    @property
    def executor(self) -> cf.ProcessPoolExecutor:
        """The live executor, started on first use (and again after a kill).

        Raises
        ------
        CancelledRunError
            The pool was closed (:meth:`close`): a late caller, such as a
            warm-up still starting in a thread, must not start workers that
            nobody would stop.
        """
        with self._lock:
            if self.closed:
                raise CancelledRunError("the process pool was closed; start a new one")
            if self._executor is None or self._broken(self._executor):
                # (another run sharing this pool may still be telling why it broke)
                self.startup_failure = startup_failure() or self.startup_failure
                forget_startup_failure()
                self._executor = cf.ProcessPoolExecutor(
                    max_workers=self.num_workers,
                    mp_context=mp.get_context("spawn"),
                    initializer=init_worker,
                    initargs=(
                        self.inner_threads,
                        self.memory_limit_bytes,
                        os.getpid(),
                        self.niceness,
                    ),
                )
            return self._executor

    @staticmethod
    def _broken(executor: cf.ProcessPoolExecutor) -> bool:
        return bool(
            getattr(executor, "_broken", False) or getattr(executor, "_shutdown_thread", False)
        )

    @staticmethod
    def _broken_by_death(executor: cf.ProcessPoolExecutor) -> bool:
        """Tell whether the executor saw a worker die (not merely a shutdown)."""
        return bool(getattr(executor, "_broken", False))

    def is_broken(self) -> bool:
        """Tell whether the pool has no live executor (never started, killed or broken)."""
        executor = self._executor
        return executor is None or self._broken(executor)

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
            The workers' process ids (empty when the pool was stopped while warming).
        """
        executor = self.executor
        if transform is not None and not isinstance(transform, (str, PickledTransform)):
            transform = portable(transform)
        futures = [executor.submit(warm_up, 0.05, transform) for _ in range(self.num_workers * 2)]
        while True:
            _done, running = cf.wait(futures, timeout=0.2)
            if not running:
                break
            if self._executor is not executor:
                # Killed or shut down meanwhile: some Python versions never settle the
                # futures of a killed pool, so do not wait for them.
                return []
        for future in futures:
            future.result()
        return sorted(p.pid for p in self.processes())

    def processes(self) -> list[Any]:
        """Return the worker processes (multiprocessing.Process objects) currently alive."""
        executor = self._executor
        procs = dict(getattr(executor, "_processes", None) or {})
        self._seen.update(procs)
        return list(procs.values())

    def exit_codes(self, settle: float = 0.0) -> dict[int, int | None]:
        """Pid -> exit code of this pool's workers (None while running), dead ones included.

        A worker's end is seen (its pipe closes) a moment before the kernel
        can report its exit status; ``settle`` waits up to that many seconds
        for the status of workers that have ended.
        """
        self.processes()
        procs = []
        for proc in self._seen.values():
            with contextlib.suppress(ValueError):  # a closed Process object
                proc.sentinel  # noqa: B018
                procs.append(proc)
        if settle:
            from multiprocessing.connection import wait

            deadline = time.monotonic() + settle
            ended = set(wait([p.sentinel for p in procs], timeout=0))
            for proc in procs:
                if proc.sentinel in ended:
                    proc.join(timeout=settle)
                    # The executor's own thread may reap the same child at this moment: our
                    # wait then finds none and the status shows once that thread stores it.
                    while proc.exitcode is None and time.monotonic() < deadline:
                        time.sleep(0.005)
        return {p.pid: p.exitcode for p in procs}

    def kill(self) -> None:
        """Stop the workers at once (SIGKILL) without waiting for their tasks.

        Every process the executor started is killed, including one that a
        concurrent ``submit`` (a warm-up in another thread) was starting at
        that moment: the executor's shutdown waits for a ``submit`` in
        progress, and its process table is read again after it. The pool can
        start new workers afterwards (unless :meth:`close` d).
        """
        with self._lock:
            executor, self._executor = self._executor, None
            seen, self._seen = self._seen, {}
        if executor is None:
            return
        table = getattr(executor, "_processes", None)  # the executor's own live dict
        manager = getattr(executor, "_executor_manager_thread", None)  # (shutdown forgets it)
        _kill_all(seen, table)
        executor.shutdown(wait=False, cancel_futures=True)
        # After shutdown() no submit can start a process: one started meanwhile is here now.
        procs = _kill_all(seen, table)
        for proc in procs:
            with contextlib.suppress(Exception):
                proc.join(timeout=5)
        _forget_manager_thread(manager)
        remove_leftovers(self.share_token)

    def shutdown(self, wait: bool = True) -> None:
        """Let the workers finish what they run, then stop them.

        Should a worker die meanwhile, the others are killed: the executor
        would only send them SIGTERM, which workers ignore (see Notes), and
        they would wait forever on a queue that the dead one left locked.

        Parameters
        ----------
        wait
            Return once every worker has ended; otherwise at once, while a
            background thread sees them end.
        """
        with self._lock:
            executor, self._executor = self._executor, None
            seen, self._seen = self._seen, {}
        if executor is None:
            return
        table = getattr(executor, "_processes", None)
        manager = getattr(executor, "_executor_manager_thread", None)  # (shutdown forgets it)
        executor.shutdown(wait=False, cancel_futures=True)
        procs = _processes_of(seen, table)  # complete now: no submit can start one any more
        watcher = threading.Thread(
            target=_see_workers_end,
            args=(executor, manager, procs, self.share_token),
            name="npp-pool-shutdown",
            daemon=True,
        )
        watcher.start()
        if wait:
            watcher.join()

    def close(self, kill: bool = True) -> None:
        """Stop the workers for good: no later call starts new ones.

        Parameters
        ----------
        kill
            Kill the workers at once (the default: a widget or viewer that
            closes), or let them finish what they run (``False``).
        """
        with self._lock:
            self.closed = True
        if kill:
            self.kill()
        else:
            self.shutdown(wait=False)

    def __enter__(self) -> ProcessPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def _processes_of(seen: dict[int, Any], table: dict[int, Any] | None) -> list[Any]:
    """Return the processes in an executor's live table and in ``seen``."""
    procs: dict[int, Any] = dict(seen)
    for _ in range(3):  # the manager thread may change the table while it is read
        try:
            procs.update(table or {})
            break
        except RuntimeError:
            continue
    return list(procs.values())


def _kill_all(seen: dict[int, Any], table: dict[int, Any] | None) -> list[Any]:
    """SIGKILL every process of an executor's table and of ``seen``; return them."""
    procs = _processes_of(seen, table)
    for proc in procs:
        with contextlib.suppress(Exception):
            proc.kill()
    return procs


def _see_workers_end(
    executor: cf.ProcessPoolExecutor, manager: Any, procs: list[Any], share_token: str
) -> None:
    """Wait for a shut-down pool's workers to end; kill the rest once one dies or it breaks."""
    from multiprocessing.connection import wait

    alive = {}
    for proc in procs:
        with contextlib.suppress(ValueError):  # a closed Process object
            alive[proc.sentinel] = proc
    died = False
    while alive and not died and not ProcessPool._broken_by_death(executor):
        for sentinel in wait(list(alive), timeout=0.5):
            proc = alive.pop(sentinel)
            proc.join(timeout=5)
            died = died or proc.exitcode != 0
    if alive:
        for proc in alive.values():
            with contextlib.suppress(Exception):
                proc.kill()
        for proc in alive.values():
            with contextlib.suppress(Exception):
                proc.join(timeout=5)
        _forget_manager_thread(manager)
    remove_leftovers(share_token)


def _forget_manager_thread(thread: Any) -> None:
    """Let a killed pool's manager thread end, then drop it from the exit hook's list.

    Call it once every worker of the pool is dead. A worker killed while it
    sent a result leaves half a message in the result pipe, and the manager
    thread would wait for the rest forever (and so would interpreter exit,
    which joins it): closing this process's copy of the pipe's writing end,
    the last one open, ends that wait. At interpreter exit concurrent.futures
    also wakes every pool's manager thread through a pipe; for a pool whose
    workers were killed that pipe is already closed, and Python 3.11 then
    prints an OSError traceback after a run that ended cleanly.
    """
    if thread is None:
        return
    thread.join(timeout=2)
    if thread.is_alive():
        writer = getattr(getattr(thread, "result_queue", None), "_writer", None)
        with contextlib.suppress(Exception):
            writer.close()  # type: ignore[union-attr]
        thread.join(timeout=5)
    if not thread.is_alive():
        import concurrent.futures.process as cf_process

        wakeups = getattr(cf_process, "_threads_wakeups", None)
        if wakeups is not None:
            with contextlib.suppress(Exception):
                wakeups.pop(thread, None)
