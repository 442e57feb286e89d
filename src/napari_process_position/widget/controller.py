"""The widget's controller: the state of runs and previews, and every decision about them.

Qt-free (an import-linter contract). The view (:mod:`.view`) asks it to run,
cancel or preview, and sends the form's intents to :attr:`Controller.form`
(:mod:`.form_controller`), whose model the controller reacts to; it starts background jobs
through a :class:`Launcher`, receives their typed events (:mod:`.events`) on
the main thread, drops those of a run or preview that is no longer current
(by id), and hands volumes to a :class:`Sink` that does all layer work. With
a launcher that runs jobs at once and a sink of plain arrays it runs
synchronously, which is how tests drive it without Qt.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from napari_process_position.batch.batch_run import BatchRun
from napari_process_position.batch.config import RunConfig
from napari_process_position.batch.execution import requested_mode
from napari_process_position.core.budget import available_cpus
from napari_process_position.core.errors import ProcessPositionError, TransformError
from napari_process_position.core.transform_ref import check_picklable
from napari_process_position.engine.pool import ProcessPool
from napari_process_position.store.layout import PositionInfo
from napari_process_position.widget.compare import Comparison, MosaicPort, NoMosaic
from napari_process_position.widget.events import Failed, RunEnded, RunPrepared, VolumeFinished
from napari_process_position.widget.form_controller import FormController
from napari_process_position.widget.jobs import (
    WORKER_NICENESS,
    RunJob,
    prepare_events,
    run_events,
    settings_key,
    warm_pool,
)
from napari_process_position.widget.ports import Launcher, Sink, ViewPort
from napari_process_position.widget.previews import Previews
from napari_process_position.widget.run_status import (
    done_text,
    failed_text,
    progress_text,
    started_text,
)

__all__ = ["Controller", "State"]

State = Literal["idle", "running", "cancelling", "previewing"]


class Controller:
    """The state of the widget's runs and previews (see the module docstring).

    Parameters
    ----------
    view, sink, launcher
        The form, the layers and the background (see the protocols).
    """

    def __init__(
        self,
        view: ViewPort,
        sink: Sink,
        launcher: Launcher,
        mosaic: MosaicPort | None = None,
    ) -> None:
        self.view = view
        self.sink = sink
        self.launcher = launcher
        #: The form's model and selection, and the intents the view sends (Qt-free).
        self.form = FormController(compared=lambda: self.comparison.picks)
        self.pool: ProcessPool | None = None
        self.current: RunJob | None = None
        self.last: RunJob | None = None
        self.closed = False
        self._cancelling: RunJob | None = None
        self.previews = Previews(
            view,
            sink,
            launcher,
            blocked=lambda: self.current is not None or self.closed or self.comparison.active,
            info=lambda: self.info,
            spec=self.form.spec,
            config=self.form.config,
        )
        #: Compare positions of the plate (the widget's mosaic shows them).
        self.comparison = Comparison(
            view,
            launcher,
            mosaic if mosaic is not None else NoMosaic(),
            store=lambda: self.form.selection.store,
            info=lambda: self.info,
            spec=self.form.spec,
            config=self.form.config,
            sink=sink,
            blocked=lambda: self.current is not None or self.closed,
        )
        self._react_to_the_form()

    def _react_to_the_form(self) -> None:
        """React to the form's changes, whoever made them (the view's intents, mostly)."""
        model = self.form.model.events
        for signal in (model.transform, model.params, model.channels):
            signal.connect(self._setting_changed)
        model.times.connect(self.previews.request)
        model.num_workers.connect(self._mode_changed)
        model.use_threads.connect(self._mode_changed)
        self.form.selection.events.info.connect(self._position_chosen)

    def _setting_changed(self) -> None:
        self.previews.request()
        self.comparison.request()

    def _mode_changed(self) -> None:
        model = self.form.model
        idle = self.current is None and not self.closed
        if idle and model.num_workers > 1 and not model.use_threads:  # warm a pool now
            self.ensure_pool(model.num_workers, warm=True, transform=model.transform)

    def _position_chosen(self, info: PositionInfo | None) -> None:
        if info is None:
            return
        try:  # (its layers are there when the intent returns)
            self.sink.show_inputs(info, now=True)
        except Exception as exc:  # unreadable data: say so, keep the form usable
            self.view.show_status(f"cannot show {info.path}: {exc}")
        self.previews.request()

    # -- state -------------------------------------------------------------------------
    @property
    def state(self) -> State:
        """Return ``idle``, ``running``, ``cancelling`` or ``previewing``.

        ``cancelling``: a cancelled run's job is still ending (Run is enabled again).
        """
        if self.current is not None:
            return "running"
        if self._cancelling is not None:
            return "cancelling"
        if self.previews.job is not None:
            return "previewing"
        return "idle"

    @property
    def info(self) -> PositionInfo | None:
        """The input position chosen in the form (None before one is)."""
        return self.form.selection.info

    def mode(self, config: RunConfig) -> str:
        """Return ``serial``, ``threads`` or ``processes`` (batch.execution's one rule)."""
        return requested_mode(
            num_workers=config.num_workers,
            use_threads=config.use_threads,
            memory_limit=config.memory_limit,
        )

    # -- the process pool --------------------------------------------------------------
    def ensure_pool(self, workers: int, warm: bool, transform: str | None = None) -> ProcessPool:
        """Return the process pool of ``workers`` workers (a new one when the count changed)."""
        workers = min(workers, available_cpus())
        pool = self.pool
        if pool is not None and pool.num_workers != workers:
            pool.close(kill=False)  # (a warm-up of it still starting cannot revive it)
            pool = None
        if pool is None:
            pool = self.pool = ProcessPool(workers, niceness=WORKER_NICENESS)
        if warm and not pool.processes():
            spec = self.form.offered(transform)
            # The workers import the chosen transform now too, not in the first task.
            self.launcher.start(warm_pool, pool, spec.ref if spec else None)
        return pool

    def close_pool(self) -> None:
        """Cancel any run and preview, and stop the process pool (when the viewer closes)."""
        self.previews.stop(forget=False)
        if self.current is not None:
            self.cancel(rewarm=False)
        self.sink.drop_pending()  # (no more background reads for the time slider either)
        pool, self.pool = self.pool, None
        if pool is not None:
            pool.close()

    # -- running -----------------------------------------------------------------------
    def run(self) -> RunJob | None:
        """Start a run of the form's settings (what the Run button does)."""
        if self.current is not None or self.closed:
            return None
        try:
            config, note = self.form.run_settings()
        except (ValueError, ProcessPositionError) as exc:
            self.view.show_status(f"cannot run: {exc}", error=True)
            return None
        if len(config.positions or ()) > 1 and config.output is None:
            self.view.show_status(
                f"cannot run {len(config.positions or ())} positions without an output: choose "
                "an output store (the layers show the form's position; the others are written)",
                error=True,
            )
            return None
        pool = None
        if self.mode(config) == "processes" and available_cpus() > 1:
            func = self.form.added_function(config.transform)
            try:
                if func is not None:
                    check_picklable(func, config.params)
            except TransformError as exc:
                self.view.show_status(str(exc), error=True)
                return None
            # ("auto" measures a task first and sizes its own pool; a given pool would decide)
            if not config.auto_workers:
                pool = self.ensure_pool(config.num_workers, warm=False)
        self.previews.stop()  # a preview's late result must not land in the run's layers
        self.comparison.stop()  # (its layers hide the run's)
        run = RunJob(config, pool, note=note, shown_key=self.info.key if self.info else None)
        self.current = run
        self.view.set_busy(True)
        self.view.show_progress(0, 1)
        note_text = f" ({note})" if note else ""
        display = self.form.spec(config.transform).display_name
        self.view.show_status(f"Starting {display}…{note_text}")
        run.worker = self.launcher.start(
            prepare_events,
            run,
            on_event=lambda event: self._on_run_event(run, event),
            on_finished=lambda: self._on_prepare_job_finished(run),
        )
        return run

    def _stream(self, run: RunJob) -> None:
        """Start streaming a prepared run (its output layers are in the viewer now)."""
        if run is not self.current or run.batch is None or run.streaming:
            self._drop_prepared(run)
            return
        run.streaming = True
        run.worker = self.launcher.start(
            run_events,
            run,
            on_event=lambda event: self._on_run_event(run, event),
            on_finished=lambda: self._on_run_job_finished(run),
        )

    def _drop_prepared(self, run: RunJob) -> None:
        """Release a run that was prepared but will not stream (cancelled meanwhile)."""
        if run.batch is not None and not run.streaming:
            self.launcher.start(run.batch.close)  # (a Dask session closes off the main thread)

    def cancel(self, rewarm: bool = True) -> None:
        """Cancel the run in flight (what the Cancel button does); its results are dropped."""
        run = self.current
        if run is None:
            return
        run.cancel()
        self.launcher.stop(getattr(run, "worker", None))
        self._drop_prepared(run)  # (prepared, not streaming yet: nobody else closes it)
        if run.worker is not None:  # (its job is still ending)
            self._cancelling = run
        if run.pool is not None and run.pool is self.pool:
            # The cancelled run's workers are killed off the main thread (the engine would
            # kill them too, but a run cancelled before its first task never reaches the
            # engine); the next run gets a fresh pool, warmed now, so the two never share one.
            self.launcher.start(run.pool.close)
            self.pool = None
            if rewarm and not self.closed and self.mode(run.config) == "processes":
                self.ensure_pool(run.config.num_workers, warm=True, transform=run.config.transform)
        self.sink.drop_pending()
        self._finish(run, "cancelled", f"Cancelled after {run.done}/{run.total or '?'} volumes.")

    def _on_run_event(self, run: RunJob, event: Any) -> None:
        if run is not self.current:
            if isinstance(event, RunPrepared):  # (cancelled while it was prepared)
                self.launcher.start(event.batch.close)
            return  # a cancelled or replaced run: drop its stale results
        if isinstance(event, RunPrepared):
            self._on_prepared(run, event)
        elif isinstance(event, VolumeFinished):
            self._on_volume(run, event)
        elif isinstance(event, RunEnded):
            self._on_end(run, event.batch)
        elif isinstance(event, Failed):
            self._on_failed(run, event.error)

    def _on_prepared(self, run: RunJob, event: RunPrepared) -> None:
        batch, limits = event.batch, event.input_limits
        run.batch = batch  # (the main thread's from now: cancel and close reach it)
        run.prepared_at = time.perf_counter()
        run.total = batch.total
        key = run.key_shown(batch)
        info = batch.inputs[key]
        display = batch.spec.display_name
        self.sink.show_inputs(info, batch.times, limits)
        run.outputs = self.sink.outputs(
            batch.layouts[key], display, batch.config.output, info.path, store=event.output
        )
        run.shown = self.sink.on_screen(run.outputs)
        # The run's workers start once its layers exist (adding them is napari's dearest call).
        self.sink.when_shown(lambda: self._stream(run))
        self.view.show_progress(0, batch.total)
        self.view.show_status(started_text(run, batch, self.mode(batch.config)))

    def _on_volume(self, run: RunJob, event: VolumeFinished) -> None:
        run.done += 1
        t = int(event.result.output_time_index)
        if event.volume is not None and run.outputs is not None:
            first = event.limits is not None and event.channel not in run.clim_set
            run.clim_set.add(event.channel)

            def shown() -> None:
                if run.first_shown_at is None:
                    run.first_shown_at = time.perf_counter()

            self.sink.put(
                run.outputs,
                event.channel,
                t,
                event.volume,
                limits=event.limits if first else None,
                valid=lambda: run.outcome != "cancelled",
                shown=shown,
                stored=event.result.status in ("written", "resumed"),
                read_back=event.shown,
            )
            run.shown = self.sink.on_screen(run.outputs)  # (what the next one is read back for)
        run.shown_times.add(t)
        self.view.show_progress(run.done, run.total)
        if run.total:
            self.view.show_status(progress_text(run, time.perf_counter() - run.started))

    def _on_end(self, run: RunJob, batch: BatchRun) -> None:
        if batch.cancelled:
            self._finish(run, "cancelled", f"Cancelled after {run.done}/{run.total} volumes.")
            return
        text = done_text(run, batch, time.perf_counter() - run.started)
        # The run ends once the volumes it delivered are in their layers.
        run.ending = True
        self.sink.when_shown(lambda: self._finish(run, "done", text))

    def _on_failed(self, run: RunJob, exc: BaseException) -> None:
        text = failed_text(run, exc)
        run.ending = True
        self.sink.when_shown(lambda: self._finish(run, "failed", text, error=True))

    def _on_prepare_job_finished(self, run: RunJob) -> None:
        if run.streaming:
            return  # (the stream's job is the run's now)
        run.worker = None
        if run.batch is None or run is not self.current:  # else it streams next (_stream)
            self._on_run_job_finished(run)

    def _on_run_job_finished(self, run: RunJob) -> None:
        run.worker = None
        if self._cancelling is run:
            self._cancelling = None
        if run is self.current and not run.ending:
            self.sink.when_shown(
                lambda: self._finish(
                    run, "cancelled", f"Stopped after {run.done}/{run.total} volumes."
                )
            )

    def _finish(self, run: RunJob, outcome: str, text: str, error: bool = False) -> None:
        if run is not self.current:
            return
        run.outcome = outcome
        run.finished_at = time.perf_counter()
        self.current = None
        self.sink.stop_following()  # the slider is the user's again
        self.last = run
        self.view.show_progress(run.done, max(1, run.total))
        self.view.show_status(text, error=error)
        self.view.set_busy(False)  # (shows the above at once)
        if outcome in ("done", "failed") and self.info is not None and run.outputs is not None:
            # Remember which time points a finished run filled (live preview skips them).
            signature = (settings_key(run.config, self.info), None)
            ids = self.sink.ids(run.outputs)
            self.previews.remember(run.shown_times, (signature, ids))

    @property
    def last_preview(self) -> dict[str, Any]:
        """Timings of the latest preview shown (for benchmarks and tests)."""
        return self.previews.stats()

    @property
    def last_run(self) -> dict[str, Any]:
        """Timings and counts of the latest run (for benchmarks and tests)."""
        run = self.current or self.last
        return run.stats() if run is not None else {}

    # -- closing -----------------------------------------------------------------------
    def close(self) -> None:
        """Drop previews, cancel the run, kill the pool: the widget is gone."""
        self.closed = True
        self.previews.close()  # drops the preview in flight
        self.comparison.stop()
        run = self.current
        if run is not None:
            run.cancel()
            self.launcher.stop(getattr(run, "worker", None))
            self._drop_prepared(run)
            self.current = None
        pool, self.pool = self.pool, None
        if pool is not None:
            pool.close()
