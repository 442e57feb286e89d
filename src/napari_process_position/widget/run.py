"""Running: one press of Run, streamed from a thread worker, cancelled at once.

The widget builds a :class:`RunConfig` exactly as the command line does and
hands it to :func:`_runner.prepare`; the run itself streams in a napari
``thread_worker`` generator (:func:`stream`). Each finished (t, c) volume
reaches the main thread through the worker's ``yielded`` signal and is queued
for copying into its output layer. Results of a run that is no longer current
(cancelled, replaced) are recognised by their :class:`Run` and dropped. In
process mode a :class:`ProcessPool` is kept warm between runs.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.qt.threading import thread_worker
from napari.utils.notifications import show_error

from napari_process_position.batch.config import RunConfig
from napari_process_position.batch.prepare import prepare_run
from napari_process_position.batch.run import BatchRun
from napari_process_position.core.budget import available_cpus
from napari_process_position.core.errors import ProcessPositionError, TransformError
from napari_process_position.core.transform_ref import check_picklable
from napari_process_position.engine.pool import ProcessPool
from napari_process_position.store.layout import PositionInfo
from napari_process_position.store.metadata import read_position
from napari_process_position.widget.helpers import REFRESH_INTERVAL_MS, display_limits, seconds_text
from napari_process_position.widget.layers import Copy, input_limits
from napari_process_position.widget.qt import ClosingGeneratorWorker, room_for_one_more_thread

if TYPE_CHECKING:
    import collections

    from magicgui.widgets import CheckBox, Label, ProgressBar, PushButton, SpinBox, Widget
    from napari.layers import Image
    from qtpy.QtCore import QTimer

    from napari_process_position.store.layout import OutputLayout
    from napari_process_position.transforms import TransformSpec

__all__ = ["Run", "RunMixin", "stream", "warm_pool"]

_run_ids = itertools.count(1)


@dataclass(eq=False)
class Run:
    """One press of Run: its id, its config and what the main thread knows of it."""

    config: RunConfig
    pool: ProcessPool | None
    id: int = field(default_factory=lambda: next(_run_ids))
    cancel_event: threading.Event = field(default_factory=threading.Event)
    batch: BatchRun | None = None
    worker: Any = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    started: float = field(default_factory=time.perf_counter)
    prepared_at: float | None = None
    first_shown_at: float | None = None
    finished_at: float | None = None
    total: int = 0
    done: int = 0
    layers: list[Image] = field(default_factory=list)
    clim_set: set[int] = field(default_factory=set)
    shown_times: set[int] = field(default_factory=set)
    outcome: str = "running"
    ending: tuple[str, str, bool] | None = None

    def attach(self, batch: BatchRun) -> None:
        """Hold the prepared batch (cancelled at once when the run was cancelled meanwhile)."""
        with self.lock:
            self.batch = batch
        if self.cancel_event.is_set():
            batch.cancel()

    def cancel(self) -> None:
        """Cancel the run from any thread."""
        self.cancel_event.set()
        with self.lock:
            batch = self.batch
        if batch is not None:
            batch.cancel()


def stream(run: Run) -> Iterator[tuple[Any, ...]]:
    """Prepare the run, then yield each finished volume (the body of the thread worker).

    Everything slow (checking the config, probing the transform, creating the
    output, reading written volumes back, contrast statistics) happens here,
    off the main thread. Errors are yielded, not raised, so the widget
    reports them once, in its own words.
    """
    try:
        batch = prepare_run(run.config, pool=run.pool)
        batch.stop_on_error = True
        key = batch.keys[0]
        run.attach(batch)
        limits = input_limits(batch.inputs[key], batch.channels, batch.times[0])
        yield ("prepared", batch, limits)
        reader = None
        seen: set[int] = set()
        for key, result in batch:
            out_c = result.output_channels
            index = out_c[0] if isinstance(out_c, tuple) else int(out_c)  # type: ignore[arg-type]
            volume = result.volume
            if volume is None and result.status in ("written", "resumed"):
                if reader is None:
                    reader = read_position(str(batch.output_paths[key])).open_array()
                volume = reader[result.output_time_index, index].read().result()
            elif volume is not None and volume.ndim == 4:
                volume = volume[0]
            limits_c = None
            if volume is not None and index not in seen:
                seen.add(index)
                limits_c = display_limits(volume)
            yield ("result", result, index, volume, limits_c)
        yield ("end", batch)
    except Exception as exc:  # reported by the widget, with the (t, c) when known
        yield ("error", exc)


def warm_pool(pool: ProcessPool, transform_ref: str | None) -> None:
    """Start a pool's processes and import the transform in them (run in a thread worker)."""
    with contextlib.suppress(Exception):  # a pool stopped while warming is fine
        pool.warm(transform_ref)


class RunMixin:
    """Run, cancel and the process pool of :class:`ProcessPositionWidget`."""

    _current: Run | None
    _last: Run | None
    _pool: ProcessPool | None
    _workers: set[Any]
    _closed: bool
    _closing: bool
    _specs: dict[str, TransformSpec]
    _callables: dict[str, Callable[..., Any]]
    _settings: list[Widget]
    _pending: collections.deque[Copy]
    _status_timer: QTimer
    _last_status: float
    num_workers: SpinBox
    use_threads: CheckBox
    transform: Any
    run_button: PushButton
    cancel_button: PushButton
    progress: ProgressBar
    status: Label

    if TYPE_CHECKING:

        def current_config(self) -> RunConfig: ...  # noqa: D102
        def _flush(self, final: bool = False) -> None: ...
        def _schedule_flush(self) -> None: ...
        def _show_inputs(
            self,
            info: PositionInfo,
            times: list[int] | None = None,
            limits: dict[int, tuple[float, float]] | None = None,
        ) -> bool: ...
        def _make_outputs(
            self, layout: OutputLayout, display: str, output: str | None, source: str
        ) -> list[Image]: ...
        def _stop_previews(self, forget: bool = True) -> None: ...
        def _run_done(self, run: Run) -> None: ...

    # -- process pool ------------------------------------------------------------------
    def _mode(self) -> str:
        if int(self.num_workers.value) <= 1:
            return "serial"
        return "threads" if self.use_threads.value else "processes"

    def _on_mode_changed(self, *_: Any) -> None:
        if self._mode() == "processes" and not self._current and not self._closed:
            self._ensure_pool(warm=True)

    def _ensure_pool(self, warm: bool) -> ProcessPool:
        workers = min(int(self.num_workers.value), available_cpus())
        pool = self._pool
        if pool is not None and pool.num_workers != workers:
            pool.shutdown(wait=False)
            pool = None
        if pool is None:
            pool = self._pool = ProcessPool(workers)
        if warm and not pool.processes():
            spec = self._specs.get(self.transform.value or "")
            # The workers import the chosen transform now too, not in the first task.
            worker = thread_worker(warm_pool, start_thread=False)(pool, spec.ref if spec else None)
            self._start_worker(worker)
        return pool

    def _start_worker(self, worker: Any, on_finished: Callable[[], None] | None = None) -> None:
        """Start a thread worker, tracked in ``_workers`` until it ends."""
        self._workers.add(worker)
        widget_ref = weakref.ref(self)

        def finished() -> None:
            # Qt holds these connections, unseen by Python's garbage collector: drop
            # them, or the finished worker would keep the widget (and the viewer) alive.
            for name in ("yielded", "errored", "finished"):
                with contextlib.suppress(TypeError, RuntimeError, AttributeError):
                    getattr(worker, name).disconnect()
            widget = widget_ref()
            if widget is not None:
                widget._workers.discard(worker)
            if on_finished is not None:
                on_finished()

        worker.finished.connect(finished)
        room_for_one_more_thread()
        worker.start()

    # -- running -------------------------------------------------------------------------
    def _set_busy(self, busy: bool) -> None:
        self.run_button.enabled = not busy
        self.cancel_button.enabled = busy
        for widget in self._settings:
            widget.enabled = not busy

    def _set_status(self, text: str) -> None:
        self.status.value = text

    def _report_error(self, text: str) -> None:
        self._set_status(text)
        show_error(text)

    def _on_run(self, *_: Any) -> None:
        if self._current is not None or self._closed:
            return
        try:
            config = self.current_config()
        except (ValueError, ProcessPositionError) as exc:
            self._report_error(f"cannot run: {exc}")
            return
        pool = None
        if config.num_workers > 1 and not config.use_threads and available_cpus() > 1:
            func = self._callables.get(config.transform)
            try:
                if func is not None:
                    check_picklable(func, config.params)
            except TransformError as exc:
                self._report_error(str(exc))
                return
            pool = self._ensure_pool(warm=False)
        self._stop_previews()  # a preview's late result must not land in the run's layers
        run = Run(config, pool)
        self._current = run
        self._set_busy(True)
        self.progress.max = 1
        self._set_progress(0)
        self._set_status(f"Starting {self._spec_display(config.transform)}…")
        worker = thread_worker(stream, worker_class=ClosingGeneratorWorker, start_thread=False)(run)
        run.worker = worker
        worker.yielded.connect(partial(self._on_event, run))
        worker.errored.connect(partial(self._on_worker_errored, run))
        widget_ref = weakref.ref(self)

        def finished() -> None:
            widget = widget_ref()
            if widget is not None:
                widget._on_worker_finished(run)
            run.worker = None

        self._start_worker(worker, finished)

    def _spec_display(self, name: str) -> str:
        spec = self._specs.get(name)
        return spec.display_name if spec is not None else name

    def _on_event(self, run: Run, event: tuple[Any, ...]) -> None:
        if run is not self._current:
            return  # a cancelled or replaced run: drop its stale results
        kind = event[0]
        if kind == "prepared":
            self._on_prepared(run, event[1], event[2])
        elif kind == "result":
            self._on_result(run, *event[1:])
        elif kind == "end":
            self._on_end(run, event[1])
        elif kind == "error":
            self._on_failed(run, event[1])

    def _on_prepared(
        self, run: Run, batch: BatchRun, limits: dict[int, tuple[float, float]]
    ) -> None:
        run.prepared_at = time.perf_counter()
        run.total = batch.total
        self.progress.max = max(1, batch.total)
        key = batch.keys[0]
        info = batch.inputs[key]
        layout = batch.layouts[key]
        display = batch.spec.display_name
        self._show_inputs(info, batch.times, limits)
        run.layers = self._make_outputs(layout, display, batch.config.output, info.path)
        self._set_status(f"0/{batch.total} volumes · running {display} ({self._mode_text(batch)})")

    def _mode_text(self, batch: BatchRun) -> str:
        cfg = batch.config
        if cfg.num_workers <= 1:
            return "serial"
        return f"{cfg.num_workers} {'threads' if cfg.use_threads else 'processes'}"

    def _on_result(
        self,
        run: Run,
        result: Any,
        index: int,
        volume: np.ndarray | None,
        limits: tuple[float, float] | None,
    ) -> None:
        run.done += 1
        t = int(result.output_time_index)
        if volume is not None and index < len(run.layers):
            # Copied by _flush, a few at a time: Qt delivers queued results in one
            # batch, and copying them all at once would block the event loop.
            first = limits is not None and index not in run.clim_set
            run.clim_set.add(index)
            self._pending.append(
                Copy(
                    run.layers[index],
                    t,
                    volume,
                    None,
                    limits if first else None,
                    valid=lambda: run.outcome != "cancelled",
                )
            )
        run.shown_times.add(t)
        self._schedule_flush()
        # The labels and the bar repaint the window: their own event, at most every 100 ms.
        if not self._status_timer.isActive():
            wait = REFRESH_INTERVAL_MS - (time.perf_counter() - self._last_status) * 1000
            self._status_timer.start(int(max(0.0, wait)))

    def _set_progress(self, value: int) -> None:
        # QProgressBar.setValue repaints synchronously, which with napari's OpenGL
        # canvas in the window means a full window redraw inside our handler; let
        # Qt paint it with the next update instead.
        bar = self.progress.native
        bar.setUpdatesEnabled(False)
        try:
            self.progress.value = min(value, int(self.progress.max))
        finally:
            bar.setUpdatesEnabled(True)
        bar.update()

    def _update_status(self) -> None:
        self._last_status = time.perf_counter()
        if self._current is not None:
            self._update_progress(self._current)

    def _update_progress(self, run: Run) -> None:
        self._set_progress(run.done)
        if run.total:
            elapsed = time.perf_counter() - run.started
            rate = run.done / elapsed if elapsed > 0 else 0.0
            text = f"{run.done}/{run.total} volumes · {rate:.2f}/s"
            if 0 < run.done < run.total and rate > 0:
                text += f" · ETA {seconds_text((run.total - run.done) / rate)}"
            self._set_status(text)

    def _on_end(self, run: Run, batch: BatchRun) -> None:
        summary = batch.summaries.get(batch.keys[0])
        elapsed = time.perf_counter() - run.started
        if batch.cancelled:
            self._finish(run, "cancelled", f"Cancelled after {run.done}/{run.total} volumes.")
            return
        counts = []
        if summary is not None:
            for what in ("preview", "written", "skipped", "resumed"):
                n = getattr(summary, what)
                if n:
                    counts.append(f"{n} {what}")
        where = f" into {batch.config.output}" if batch.config.output else " (preview, in memory)"
        self._finish_when_shown(
            run,
            "done",
            f"Done: {run.done}/{run.total} volumes in {seconds_text(elapsed)}"
            f"{where}; {', '.join(counts) or 'nothing to do'}.",
        )

    def _on_failed(self, run: Run, exc: BaseException) -> None:
        message = str(exc) or type(exc).__name__
        if not isinstance(exc, ProcessPositionError):
            message = f"{type(exc).__name__}: {message}"
        where = ""
        t_index = getattr(exc, "time_index", None)
        c_index = getattr(exc, "channel_index", None)
        if t_index is not None and f"t={t_index}" not in message:
            where = f" (t={t_index}, c={c_index})"
        text = f"Failed after {run.done}/{run.total or '?'} volumes{where}: {message}"
        self._finish_when_shown(run, "failed", text, error=True)

    def _finish_when_shown(self, run: Run, outcome: str, text: str, error: bool = False) -> None:
        """End the run once the volumes it delivered are in their layers (copied bit by bit)."""
        if self._pending and run is self._current:
            run.ending = (outcome, text, error)
            self._schedule_flush()
            return
        self._flush(final=True)
        self._finish(run, outcome, text)
        if error:
            show_error(text)

    def _on_worker_errored(self, run: Run, exc: BaseException) -> None:
        # Only a bug in this package gets here (the generator yields its errors).
        if run is self._current:
            self._on_failed(run, exc)

    def _on_worker_finished(self, run: Run) -> None:
        if run is self._current and run.ending is None:  # ended without saying how
            self._finish(run, "cancelled", f"Stopped after {run.done}/{run.total} volumes.")

    def _finish(self, run: Run, outcome: str, text: str) -> None:
        run.outcome = outcome
        run.finished_at = time.perf_counter()
        self._current = None
        self._last = run
        self._set_busy(False)
        self._status_timer.stop()
        self._set_progress(run.done)
        self._set_status(text)
        self._run_done(run)

    def _on_cancel(self, *_: Any) -> None:
        run = self._current
        if run is None:
            return
        run.cancel()
        if run.worker is not None:
            run.worker.quit()
        if run.pool is not None and run.pool is self._pool:
            # The engine stops (kills) the cancelled run's workers from its own thread;
            # the next run gets a fresh pool, warmed now, so the two never share one.
            self._pool = None
            if not (self._closed or self._closing) and self._mode() == "processes":
                self._ensure_pool(warm=True)
        self._flush()
        self._finish(run, "cancelled", f"Cancelled after {run.done}/{run.total or '?'} volumes.")
