"""Run a prepared run: stream every position, record what each did.

The command line and the widget both come through here, so a preview and a
batch run of the same config compute the same thing.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Generator, Iterator
from typing import Any

from napari_process_position.batch.config import RunConfig
from napari_process_position.batch.execution import Execution
from napari_process_position.batch.interleave import interleaved
from napari_process_position.batch.prepared import PreparedRun
from napari_process_position.batch.summary import PositionSummary
from napari_process_position.core.errors import ProcessPositionError, UsageError
from napari_process_position.core.tasks import Result
from napari_process_position.engine.pool import ProcessPool
from napari_process_position.engine.position_run import PositionRun
from napari_process_position.engine.stream import position_run
from napari_process_position.store.layout import OutputLayout, PositionInfo, StoreInfo
from napari_process_position.store.locks import WriterLock
from napari_process_position.store.metadata import read_position
from napari_process_position.transforms import TransformSpec

__all__ = ["BatchRun", "PositionSummary"]

log = logging.getLogger(__name__)


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

    It runs one :class:`.prepared.PreparedRun` (``prepared``: the plan, the
    output positions, the :class:`.execution.Execution`), and owns the Dask
    session :func:`prepare_run` opened: the end of the iteration (or
    :meth:`close`) stops what it started. With a process pool or an executor,
    several positions are in flight at once (workers do not idle at the end
    of each position); Results of different positions then interleave.
    ``config``, ``spec``, ``params``, ``store``, ``keys``, ``inputs``,
    ``layouts``, ``channels``, ``times``, ``output_paths``, ``executor``,
    ``dask`` and ``workers_reason`` are read-only views of ``prepared``.
    """

    def __init__(self, prepared: PreparedRun, *, writer_lock: WriterLock | None = None) -> None:
        self.prepared = prepared
        #: Raise a position's failure instead of going on with the next (the widget's runs).
        self.stop_on_error = False
        #: Lower the workers' CPU priority by this much (the widget's runs: a smooth window).
        self.niceness = 0
        self.summaries: dict[str, PositionSummary] = {}
        self.cancelled = False
        #: Set when the run cannot go on (the Dask cluster was lost): no later position starts.
        self.fatal_error: str | None = None
        #: The process pool tasks run on: the given one, or one this run made (and stops).
        self.pool: ProcessPool | None = prepared.execution.pool
        #: The output positions' writer locks (:func:`..store.output.claim_output`), released
        #: by close().
        self.writer_lock = writer_lock
        self._dask = prepared.execution.dask
        self._cancel = threading.Event()
        self._runs: set[PositionRun] = set()
        self._runs_lock = threading.Lock()
        self._outputs: dict[str, PositionInfo] = {}
        self._owned_pool = False
        self._cancel_wait = 0.0
        self._unlocked = False

    # -- what was prepared (read-only) -------------------------------------------------
    @property
    def execution(self) -> Execution:
        """Where the tasks run, how many workers and why."""
        return self.prepared.execution

    @property
    def config(self) -> RunConfig:
        """The settings as run (``num_workers: auto`` resolved)."""
        return self.prepared.config

    @property
    def spec(self) -> TransformSpec:
        """The transform."""
        return self.prepared.spec

    @property
    def params(self) -> dict[str, Any]:
        """The transform's checked parameters."""
        return self.prepared.params

    @property
    def store(self) -> StoreInfo:
        """The input store."""
        return self.prepared.store

    @property
    def keys(self) -> list[str]:
        """The positions, in the order they run."""
        return self.prepared.keys

    @property
    def inputs(self) -> dict[str, PositionInfo]:
        """Position key -> its input metadata (read once, when planned)."""
        return self.prepared.plan.inputs

    @property
    def layouts(self) -> dict[str, OutputLayout]:
        """Position key -> what its output position holds."""
        return self.prepared.plan.layouts

    @property
    def output_paths(self) -> dict[str, str | None]:
        """Position key -> its output position (None: a preview without output)."""
        return self.prepared.output_paths

    @property
    def channels(self) -> list[int]:
        """The selected input channels."""
        return self.prepared.plan.channels

    @property
    def times(self) -> list[int]:
        """The selected input time points."""
        return self.prepared.plan.times

    @property
    def executor(self) -> Any:
        """The executor tasks run on (a given one, or the Dask session's), or None."""
        if self._dask is not None:
            return self._dask.executor
        return self.execution.executor if self.execution.dask is None else None

    @property
    def dask(self) -> Any:
        """The Dask session this run opened (None when not on Dask, or once closed)."""
        return self._dask

    def key_or_first(self, key: str | None) -> str:
        """Return ``key`` when the run has that position, else its first position."""
        return key if key in self.keys else self.keys[0]

    def output_info(self, key: str) -> PositionInfo | None:
        """Return output position ``key``'s metadata, read once per run (None: no output).

        The run's engine starts the position with it; a caller showing the
        output (the widget) should read it here rather than again.
        """
        path = self.prepared.output_path(key)
        if path is None:
            return None
        with self._runs_lock:
            info = self._outputs.get(key)
        if info is None:
            info = read_position(path)
            with self._runs_lock:
                info = self._outputs.setdefault(key, info)
        return info

    @property
    def workers_reason(self) -> str | None:
        """Why the run has this many workers, in words (:attr:`execution`'s reason as data)."""
        return self.execution.reason_text

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
        """Return where the tasks run, in words (a Dask session was opened when prepared)."""
        where = self.execution.describe()
        if self._dask is not None:
            log.info("running on %s", where)
        return where

    def close(self) -> None:
        """Release the output's writer locks and the Dask session the run opened."""
        lock, self.writer_lock = self.writer_lock, None
        if lock is not None:
            lock.release()
            self._unlocked = True
        session, self._dask = self._dask, None
        if session is not None:
            session.close()

    def _slots(self) -> int:
        """Tasks that can run at once on the executor or pool."""
        if self._dask is not None:
            return int(self._dask.slots())
        executor = self.executor
        if executor is not None:
            slots = getattr(executor, "slots", None)
            if callable(slots):
                return int(slots())
            return max(1, int(getattr(executor, "_max_workers", 0) or self.execution.workers))
        if self.pool is not None:
            return self.pool.num_workers
        return max(1, self.execution.workers)

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
            self._own_pool()
            concurrency = self._concurrency()
            if concurrency <= 1:
                for key in self.keys:
                    if self._should_stop():
                        break
                    yield from self._run_position(key)
            else:
                yield from interleaved(
                    self.keys,
                    self._run_position,
                    concurrency=concurrency,
                    queue_size=max(16, 4 * self._slots()),
                    should_stop=self._should_stop,
                    on_leave=self._cancel_runs,
                )
        finally:
            if self._owned_pool and self.pool is not None:
                if self._cancel.is_set():
                    self.pool.kill()
                else:
                    self.pool.shutdown()
                self.pool = None
            self.close()

    def _own_pool(self) -> None:
        """In process mode without a given pool: one pool for every position (spawn paid once)."""
        execution = self.execution
        limit = execution.memory_limit_bytes
        if execution.mode != "processes":
            return
        if self.pool is None and (len(self.keys) > 1 or limit):
            # With a memory limit even one worker is a process (the limit cannot apply here).
            self.pool = ProcessPool(execution.workers, memory_limit_bytes=limit)
            self._owned_pool = True
        elif self.pool is not None and limit and self.pool.memory_limit_bytes != limit:
            log.warning(
                "memory_limit %s is not applied: the given process pool has its own limit (%s)",
                self.config.memory_limit,
                self.pool.memory_limit_bytes or "none",
            )

    def _should_stop(self) -> bool:
        if self._cancel.is_set():
            self.cancelled = True
            return True
        return self.fatal_error is not None

    def _cancel_runs(self) -> None:
        with self._runs_lock:
            runs = list(self._runs)
        for run in runs:
            run.cancel()

    def _run_position(self, key: str) -> Generator[tuple[str, Result], None, None]:
        summary = self.summaries[key] = PositionSummary(key, total=self.volumes_per_position)
        start = time.perf_counter()
        prepared, execution = self.prepared, self.execution
        executor = self.executor
        n_out = len(self.channels)
        run: PositionRun | None = None
        try:
            run = position_run(
                self.spec.ref if execution.in_other_processes else self.spec.func,
                prepared.input(key),
                self.output_info(key),
                input_channel_indices=[[c] for c in self.channels],
                output_channel_indices=[[i] for i in range(n_out)],
                input_time_indices=self.times,
                output_time_indices=list(range(len(self.times))),
                num_workers=self._slots() if executor is not None else execution.workers,
                use_threads=execution.use_threads,
                memory_limit_bytes=execution.memory_limit_bytes,
                executor=executor,
                pool=self.pool if execution.mode == "processes" else None,
                resume=self.config.resume,
                params=self.params,
                niceness=self.niceness,
                pyramid_levels=prepared.layout(key).levels,
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
