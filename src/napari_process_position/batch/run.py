"""Run a RunConfig: pick positions, size and create the output, stream every position.

The command line and the widget both come through here, so a preview and a
batch run of the same config compute the same thing.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import logging
import math
import queue
import threading
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

from napari_process_position.batch.config import RunConfig
from napari_process_position.core.errors import ProcessPositionError, UsageError
from napari_process_position.core.tasks import Result
from napari_process_position.engine.pool import ProcessPool
from napari_process_position.engine.run import PositionRun
from napari_process_position.engine.stream import stream_position
from napari_process_position.store.layout import OutputLayout, PositionInfo, StoreInfo
from napari_process_position.store.locks import WriterLock
from napari_process_position.transforms import TransformSpec

__all__ = ["BatchRun", "PositionSummary"]

log = logging.getLogger(__name__)


@dataclass
class PositionSummary:
    """Counts and time of one position's run."""

    key: str
    total: int = 0
    written: int = 0
    preview: int = 0
    skipped: int = 0
    resumed: int = 0
    error: str | None = None
    seconds: float = 0.0

    @property
    def failed(self) -> int:
        """Volumes not completed because the position failed or was cancelled."""
        return self.total - self.written - self.preview - self.skipped - self.resumed


@dataclass
class BatchRun:
    """A prepared run of a :class:`RunConfig` over one or more positions.

    Iterate it for ``(position_key, Result)`` pairs as volumes finish; each
    Result's ``output_time_index`` is the index into ``times`` and its
    ``output_channels`` is ``(i,)``, the index into ``channels``; ``layouts``
    gives each position's output shape, dtype, scale and channel names
    (also for a preview without output, where Results carry the volume). A
    failing position is recorded in ``summaries`` and the run goes on with
    the next; ``errors`` lists them, and ``failed`` is True at the end when
    any position failed. ``cancel()`` may be called from any thread.

    When the config names a Dask cluster (``dask_scheduler``, ``dask_local``
    or ``slurm``) and no executor was given, :func:`prepare` connects to it
    (or starts it) before writing anything, and the end of the iteration (or
    :meth:`close`) disconnects and stops what it started; :meth:`start`
    says where the tasks run. With a process pool or
    an executor, several positions are in flight at once so that workers do
    not idle at the end of each position; Results of different positions
    then interleave.
    """

    config: RunConfig
    spec: TransformSpec
    params: dict[str, Any]
    store: StoreInfo
    keys: list[str]
    inputs: dict[str, PositionInfo]
    output_paths: dict[str, str | None]
    layouts: dict[str, OutputLayout]
    channels: list[int]
    times: list[int]
    pool: ProcessPool | None = None
    executor: cf.Executor | None = None
    stop_on_error: bool = False
    #: Lower the workers' CPU priority by this much (the widget's runs: the window stays smooth).
    niceness: int = 0
    summaries: dict[str, PositionSummary] = field(default_factory=dict)
    cancelled: bool = False
    #: Set when the run cannot go on (the Dask cluster was lost); later positions are not started.
    fatal_error: str | None = None
    #: The Dask session this run opened (None when not on Dask or not started yet).
    dask: Any = None
    #: For ``num_workers: auto``: how many workers were picked, and which budget decided.
    workers_reason: str | None = None
    #: The output positions' writer locks (:func:`.prepare.lock_output`), released by close().
    writer_lock: WriterLock | None = None
    _cancel: threading.Event = field(default_factory=threading.Event)
    _runs: set[PositionRun] = field(default_factory=set)
    _runs_lock: threading.Lock = field(default_factory=threading.Lock)
    _owned_pool: bool = False
    _owns_dask: bool = False
    _cancel_wait: float = 0.0
    _unlocked: bool = False

    @property
    def total(self) -> int:
        """(t, c) volumes over all positions."""
        return len(self.keys) * self.volumes_per_position

    @property
    def volumes_per_position(self) -> int:
        """(t, c) volumes of one position."""
        return len(self.times) * len(self.channels)

    @property
    def errors(self) -> list[str]:
        """One line per failed position."""
        lines = [
            f"{s.key}: {s.error}"
            for s in self.summaries.values()
            if s.error and s.error != "cancelled"
        ]
        if self.fatal_error and not any(self.fatal_error in line for line in lines):
            lines.append(self.fatal_error)
        return lines

    @property
    def failed(self) -> bool:
        """True when a position failed."""
        return bool(self.fatal_error) or any(
            s.error and s.error != "cancelled" for s in self.summaries.values()
        )

    @property
    def not_started(self) -> list[str]:
        """Positions that never started (after a cancel or a lost cluster)."""
        return [k for k in self.keys if k not in self.summaries]

    def cancel(self, wait: float = 0.0) -> None:
        """Stop: nothing more is started; tasks in flight get up to ``wait`` seconds to finish."""
        self._cancel_wait = wait
        self._cancel.set()
        with self._runs_lock:
            runs = list(self._runs)
        for run in runs:
            run.cancel(wait)

    # -- where the tasks run ---------------------------------------------------------
    def start(self) -> str:
        """Connect to (or start) the configured executor now; return where tasks run.

        Iterating calls this too. Raises :class:`~._dask.DaskUnavailableError`
        or :class:`~._dask.DaskClusterError` when Dask is missing or unreachable.
        """
        if self.executor is None and self.config.uses_dask and self.dask is None:
            from napari_process_position.batch.dask import open_session

            self.dask = open_session(self.config)
            self.executor = self.dask.executor
            self._owns_dask = True
            log.info("running on %s", self.dask.description)
        if self.dask is not None:
            link = self.dask.dashboard_link
            return self.dask.description + (f"; dashboard {link}" if link else "")
        if self.executor is not None:
            return f"executor {type(self.executor).__name__}"
        return self.config.describe_executor()

    def attach_dask(self, session: Any) -> None:
        """Run on this Dask session (made by :func:`.dask.open_session`) and close it at the end."""
        self.dask, self._owns_dask = session, True
        self.executor = session.executor

    def close(self) -> None:
        """Release the output's writer locks and what :meth:`start` opened (Dask)."""
        lock, self.writer_lock = self.writer_lock, None
        if lock is not None:
            lock.release()
            self._unlocked = True
        if not self._owns_dask:
            return
        session, self.dask = self.dask, None
        self._owns_dask = False
        if session is not None:
            if self.executor is session.executor:
                self.executor = None
            session.close()

    def _slots(self) -> int:
        """Tasks that can run at once on the executor or pool."""
        if self.executor is not None:
            slots = getattr(self.executor, "slots", None)
            if callable(slots):
                if self.dask is not None:
                    return int(self.dask.slots())
                return int(slots())
            return max(1, int(getattr(self.executor, "_max_workers", 0) or self.config.num_workers))
        if self.pool is not None:
            return self.pool.num_workers
        return max(1, self.config.num_workers)

    def _concurrency(self) -> int:
        """Positions in flight at once."""
        if len(self.keys) <= 1 or self.volumes_per_position == 0:
            return 1
        if self.executor is None and self.pool is None:
            return 1  # serial or threads: one position at a time
        per_position = self.volumes_per_position
        return min(len(self.keys), max(2, math.ceil(self._slots() / per_position) + 1))

    # -- running -------------------------------------------------------------------
    def __iter__(self) -> Iterator[tuple[str, Result]]:
        if self._unlocked:
            raise UsageError(
                "this run has ended and released its output; call prepare_run() again to rerun"
            )
        try:
            self.start()
            limit = self.config.memory_limit_bytes
            mode_processes = (
                self.executor is None
                and not self.config.use_threads
                and (self.config.num_workers > 1 or limit is not None)
            )
            if mode_processes and self.pool is None and (len(self.keys) > 1 or limit):
                # One pool for every position: spawn is paid once. With a memory limit
                # even one worker is a process (the limit cannot apply to this one).
                from napari_process_position.core.budget import available_cpus

                workers = min(self.config.num_workers, available_cpus())
                if workers > 1 or limit:
                    self.pool = ProcessPool(workers, memory_limit_bytes=limit)
                    self._owned_pool = True
            elif self.pool is not None and limit and self.pool.memory_limit_bytes != limit:
                log.warning(
                    "memory_limit %s is not applied: the given process pool has its own limit (%s)",
                    self.config.memory_limit,
                    self.pool.memory_limit_bytes or "none",
                )
            concurrency = self._concurrency()
            if concurrency <= 1:
                for key in self.keys:
                    if self._should_stop():
                        break
                    yield from self._run_position(key)
            else:
                yield from self._interleaved(concurrency)
        finally:
            if self._owned_pool and self.pool is not None:
                if self._cancel.is_set():
                    self.pool.kill()
                else:
                    self.pool.shutdown()
                self.pool = None
            self.close()

    def _should_stop(self) -> bool:
        if self._cancel.is_set():
            self.cancelled = True
            return True
        return self.fatal_error is not None

    def _interleaved(self, concurrency: int) -> Iterator[tuple[str, Result]]:
        """Run ``concurrency`` positions at a time, each in its own thread; merge their Results."""
        items: queue.Queue[Any] = queue.Queue(maxsize=max(16, 4 * self._slots()))
        pending = iter(self.keys)
        pending_lock = threading.Lock()
        stop = threading.Event()
        finished = object()

        def put(item: Any) -> bool:
            while not stop.is_set():
                try:
                    items.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def drive() -> None:
            try:
                while not stop.is_set() and not self._should_stop():
                    with pending_lock:
                        key = next(pending, None)
                    if key is None:
                        break
                    with contextlib.closing(self._run_position(key)) as results:
                        for item in results:
                            if not put(item):
                                return
            except BaseException as exc:  # re-raised in the consumer
                put(_Failure(exc))
            finally:
                put(finished)

        threads = [
            threading.Thread(target=drive, name=f"npp-positions-{i}", daemon=True)
            for i in range(concurrency)
        ]
        for thread in threads:
            thread.start()
        done = 0
        try:
            while done < len(threads):
                try:
                    item = items.get(timeout=0.2)
                except queue.Empty:
                    continue
                if item is finished:
                    done += 1
                elif isinstance(item, _Failure):
                    raise item.exc
                else:
                    yield item
        finally:
            if done < len(threads):  # left early: stop the positions still running
                stop.set()
                with self._runs_lock:
                    runs = list(self._runs)
                for run in runs:
                    run.cancel()
            for thread in threads:
                thread.join(timeout=30)

    def _run_position(self, key: str) -> Generator[tuple[str, Result], None, None]:
        summary = self.summaries[key] = PositionSummary(key, total=self.volumes_per_position)
        start = time.perf_counter()
        n_out = len(self.channels)
        run: PositionRun | None = None
        try:
            run = stream_position(
                self.spec.ref if self._needs_ref() else self.spec.func,
                self.inputs[key].path,
                self.output_paths[key],
                input_channel_indices=[[c] for c in self.channels],
                output_channel_indices=[[i] for i in range(n_out)],
                input_time_indices=self.times,
                output_time_indices=list(range(len(self.times))),
                num_workers=self._slots() if self.executor is not None else self.config.num_workers,
                use_threads=self.config.use_threads,
                memory_limit_bytes=self.config.memory_limit_bytes,
                executor=self.executor,
                pool=self.pool if not self.config.use_threads else None,
                resume=self.config.resume,
                params=self.params,
                niceness=self.niceness,
                pyramid_levels=self.layouts[key].levels,
                input_info=self.inputs[key],
            )
            with self._runs_lock:
                self._runs.add(run)
            if self._cancel.is_set():
                run.cancel(self._cancel_wait)
            for result in run:
                setattr(summary, result.status, getattr(summary, result.status) + 1)
                yield key, result
            if run.cancelled:
                self.cancelled = True
                summary.error = "cancelled"
            else:
                self._verify(run, summary)
        except ProcessPositionError as exc:
            self._record_failure(key, summary, exc)
            if self.stop_on_error:
                raise
        except Exception as exc:  # an executor or cluster failure: report it with the key
            log.debug("position %s failed", key, exc_info=True)
            self._record_failure(key, summary, exc, f"{type(exc).__name__}: {exc}")
            if self.stop_on_error:
                raise
        finally:
            if run is not None:
                with self._runs_lock:
                    self._runs.discard(run)
            summary.seconds = time.perf_counter() - start

    def _record_failure(
        self, key: str, summary: PositionSummary, exc: BaseException, text: str | None = None
    ) -> None:
        lost = getattr(self.executor, "lost", None)
        if lost:
            # The cluster itself went away: no later position can run either.
            self.fatal_error = self.fatal_error or (
                f"{lost}; completed volumes are kept, rerun with --resume when the cluster is back"
            )
            summary.error = "stopped: the Dask cluster was lost"
        else:
            summary.error = text or str(exc)
        log.error("position %s failed: %s", key, summary.error)

    def _verify(self, run: PositionRun, summary: PositionSummary) -> None:
        """Check that every (t, c) of a finished position is recorded on disk: no silent gap."""
        if run.output is None:
            missing = summary.failed
        else:
            missing = len(run.expected_records().keys() - run.check_records().done)
        if missing:
            summary.error = (
                f"{missing} of {summary.total} volumes have no completion record "
                "after the run; rerun with --resume to complete them"
            )

    def _needs_ref(self) -> bool:
        # Workers in other processes import the transform by reference.
        return (
            self.executor is not None
            or self.config.uses_dask
            or (
                not self.config.use_threads
                and (self.config.num_workers > 1 or self.config.memory_limit is not None)
            )
        )


@dataclass
class _Failure:
    exc: BaseException
