"""The widget's controller: the state of runs and previews, and every decision about them.

Qt-free (an import-linter contract). The view (:mod:`.view`) asks it to run,
cancel or preview and tells it what changed; it starts background jobs
through a :class:`Launcher`, receives their typed events (:mod:`.events`) on
the main thread, drops those of a run or preview that is no longer current
(by id), and hands volumes to a :class:`Sink` that does all layer work. With
a launcher that runs jobs at once and a sink of plain arrays it runs
synchronously, which is how tests drive it without Qt.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any, Literal, Protocol

import numpy as np

from napari_process_position.batch.config import RunConfig
from napari_process_position.batch.run import BatchRun
from napari_process_position.core.budget import available_cpus
from napari_process_position.core.errors import (
    InvalidArgumentError,
    ProcessPositionError,
    TransformError,
)
from napari_process_position.core.transform_ref import check_picklable
from napari_process_position.engine.pool import ProcessPool
from napari_process_position.store.layout import OutputLayout, PositionInfo
from napari_process_position.transforms import TransformSpec, get_transform
from napari_process_position.widget.events import (
    Failed,
    PreviewDone,
    PreviewLayout,
    PreviewVolume,
    Region,
    RunEnded,
    RunPrepared,
    VolumeFinished,
)
from napari_process_position.widget.helpers import seconds_text
from napari_process_position.widget.jobs import (
    PreviewJob,
    Run,
    preview_events,
    run_events,
    settings_key,
    warm_pool,
)

__all__ = ["Controller", "Launcher", "Sink", "State", "ViewPort"]

State = Literal["idle", "running", "cancelling", "previewing"]

#: Wait this long after the last change before a live preview starts (a spin box scrolled).
PREVIEW_DEBOUNCE_MS = 120


class Launcher(Protocol):
    """Runs jobs off the main thread and calls back on it (napari thread workers, in the widget)."""

    def start(
        self,
        job: Callable[..., Any],
        *args: Any,
        on_event: Callable[[Any], None] | None = None,
        on_finished: Callable[[], None] | None = None,
    ) -> Any:
        """Start ``job(*args)``; a generator's items go to ``on_event``; returns a handle."""

    def stop(self, handle: Any) -> None:
        """Ask a started job to stop (a generator stops at its next item)."""

    def call_later(self, ms: int, callback: Callable[[], None]) -> Any:
        """Call ``callback`` on the main thread in ``ms`` milliseconds; returns a handle."""

    def cancel_call(self, handle: Any) -> None:
        """Cancel a ``call_later``."""

    @property
    def busy(self) -> bool:
        """True while a started job has not finished."""


class ViewPort(Protocol):
    """What the controller reads from the form and shows in it."""

    def current_config(self) -> RunConfig:
        """Return the run the form describes."""

    def preview_options(self) -> tuple[bool, bool, str]:
        """``(live, region only, Z range text)``."""

    def show_status(self, text: str, error: bool = False) -> None:
        """Show a status line (and a notification when it is an error)."""

    def set_busy(self, busy: bool) -> None:
        """Run disabled and Cancel enabled while busy; the reverse otherwise."""

    def show_progress(self, done: int, total: int) -> None:
        """Show how many volumes are done."""


class Sink(Protocol):
    """Does all layer work: inputs, outputs, copying volumes in, refreshes, the time slider."""

    def show_inputs(
        self,
        info: PositionInfo,
        times: list[int] | None = None,
        limits: dict[int, tuple[float, float]] | None = None,
        *,
        now: bool = False,
    ) -> bool:
        """Show a position's channels (``times`` only); True when a layer changes."""

    def outputs(self, layout: OutputLayout, display: str, output: str | None, source: str) -> Any:
        """Zero-filled output layers for ``layout`` (reused where they can be)."""

    def existing_outputs(self, layout: OutputLayout, display: str, source: str) -> Any | None:
        """Return the output layers of ``layout`` if they all exist already."""

    def put(
        self,
        outputs: Any,
        index: int,
        t: int,
        volume: np.ndarray,
        *,
        where: tuple[slice, slice, slice] | None = None,
        limits: tuple[float, float] | None = None,
        valid: Callable[[], bool],
        shown: Callable[[], None] | None = None,
        follow: bool = True,
    ) -> None:
        """Copy ``volume`` into output ``index`` at time ``t``; ``shown()`` once it is on screen."""

    def when_shown(self, callback: Callable[[], None]) -> None:
        """Call back once every volume handed over is copied in and refreshed."""

    def drop_pending(self) -> None:
        """Forget the volumes not copied in yet."""

    def follow(self, outputs: Any, t: int) -> None:
        """Show time ``t`` of the outputs (moves the time slider)."""

    def alive(self, outputs: Any) -> bool:
        """Tell whether every layer of ``outputs`` is in the viewer."""

    def ids(self, outputs: Any) -> frozenset[str]:
        """Identify the layers of ``outputs`` (for what they are known to hold)."""

    def layer_ids(self) -> set[str]:
        """Identify every layer in the viewer."""

    def input_time_on_screen(self, info: PositionInfo, channels: list[int]) -> int:
        """Return the input time point the time slider shows."""

    def preview_region(self, info: PositionInfo, z_text: str) -> tuple[Region, str]:
        """Return the region to preview in the input's voxels, and where it came from."""

    def rectangle_drawn(self) -> bool:
        """Tell whether the region layer holds a rectangle."""

    def offer_region_layer(self) -> None:
        """Add a Shapes layer to draw the preview region in, if there is none."""


class Controller:
    """The state of the widget's runs and previews (see the module docstring).

    Parameters
    ----------
    view, sink, launcher
        The form, the layers and the background (see the protocols).
    """

    def __init__(self, view: ViewPort, sink: Sink, launcher: Launcher) -> None:
        self.view = view
        self.sink = sink
        self.launcher = launcher
        self.info: PositionInfo | None = None
        self.specs: dict[str, TransformSpec] = {}
        self.callables: dict[str, Callable[..., Any]] = {}
        self.pool: ProcessPool | None = None
        self.current: Run | None = None
        self.last: Run | None = None
        self.closed = False
        self._cancelling: Run | None = None
        self._generations = itertools.count(1)
        self._preview_generation = 0
        self.preview_job: PreviewJob | None = None
        self.last_preview_job: PreviewJob | None = None
        self._preview_timer: Any = None
        self._preview_requested_at: float | None = None
        self.previews_started = 0
        self.previews_dropped = 0
        #: Output time index -> (signature, layer ids) of what the output layers hold there.
        self._computed: dict[int, tuple[tuple[Any, ...], frozenset[str]]] = {}

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
        if self.preview_job is not None:
            return "previewing"
        return "idle"

    def spec(self, name: str) -> TransformSpec:
        """Return the transform of that name (added ones included)."""
        return self.specs.get(name) or get_transform(name)

    def mode(self, config: RunConfig) -> str:
        """Return ``serial``, ``threads`` or ``processes``."""
        if config.num_workers <= 1:
            return "serial"
        return "threads" if config.use_threads else "processes"

    # -- the process pool --------------------------------------------------------------
    def ensure_pool(self, workers: int, warm: bool, transform: str | None = None) -> ProcessPool:
        """Return the process pool of ``workers`` workers (a new one when the count changed)."""
        workers = min(workers, available_cpus())
        pool = self.pool
        if pool is not None and pool.num_workers != workers:
            pool.shutdown(wait=False)
            pool = None
        if pool is None:
            pool = self.pool = ProcessPool(workers)
        if warm and not pool.processes():
            spec = self.specs.get(transform or "")
            # The workers import the chosen transform now too, not in the first task.
            self.launcher.start(warm_pool, pool, spec.ref if spec else None)
        return pool

    def close_pool(self) -> None:
        """Cancel any run and preview, and stop the process pool (when the viewer closes)."""
        self.stop_previews(forget=False)
        if self.current is not None:
            self.cancel(rewarm=False)
        self.sink.drop_pending()  # (no more background reads for the time slider either)
        pool, self.pool = self.pool, None
        if pool is not None:
            pool.kill()

    # -- running -----------------------------------------------------------------------
    def run(self) -> Run | None:
        """Start a run of the form's settings (what the Run button does)."""
        if self.current is not None or self.closed:
            return None
        try:
            config = self.view.current_config()
        except (ValueError, ProcessPositionError) as exc:
            self.view.show_status(f"cannot run: {exc}", error=True)
            return None
        pool = None
        if self.mode(config) == "processes" and available_cpus() > 1:
            func = self.callables.get(config.transform)
            try:
                if func is not None:
                    check_picklable(func, config.params)
            except TransformError as exc:
                self.view.show_status(str(exc), error=True)
                return None
            pool = self.ensure_pool(config.num_workers, warm=False)
        self.stop_previews()  # a preview's late result must not land in the run's layers
        run = Run(config, pool)
        self.current = run
        self.view.set_busy(True)
        self.view.show_progress(0, 1)
        self.view.show_status(f"Starting {self.spec(config.transform).display_name}…")
        run.worker = self.launcher.start(
            run_events,
            run,
            on_event=lambda event: self._on_run_event(run, event),
            on_finished=lambda: self._on_run_job_finished(run),
        )
        return run

    def cancel(self, rewarm: bool = True) -> None:
        """Cancel the run in flight (what the Cancel button does); its results are dropped."""
        run = self.current
        if run is None:
            return
        run.cancel()
        self.launcher.stop(getattr(run, "worker", None))
        self._cancelling = run
        if run.pool is not None and run.pool is self.pool:
            # The engine stops (kills) the cancelled run's workers from its own thread;
            # the next run gets a fresh pool, warmed now, so the two never share one.
            self.pool = None
            if rewarm and not self.closed and self.mode(run.config) == "processes":
                self.ensure_pool(run.config.num_workers, warm=True, transform=run.config.transform)
        self.sink.drop_pending()
        self._finish(run, "cancelled", f"Cancelled after {run.done}/{run.total or '?'} volumes.")

    def _on_run_event(self, run: Run, event: Any) -> None:
        if run is not self.current:
            return  # a cancelled or replaced run: drop its stale results
        if isinstance(event, RunPrepared):
            self._on_prepared(run, event.batch, event.input_limits)
        elif isinstance(event, VolumeFinished):
            self._on_volume(run, event)
        elif isinstance(event, RunEnded):
            self._on_end(run, event.batch)
        elif isinstance(event, Failed):
            self._on_failed(run, event.error)

    def _on_prepared(self, run: Run, batch: BatchRun, limits: dict[int, Any]) -> None:
        run.prepared_at = time.perf_counter()
        run.total = batch.total
        key = batch.keys[0]
        info = batch.inputs[key]
        display = batch.spec.display_name
        self.sink.show_inputs(info, batch.times, limits)
        run.outputs = self.sink.outputs(batch.layouts[key], display, batch.config.output, info.path)
        self.view.show_progress(0, batch.total)
        self.view.show_status(
            f"0/{batch.total} volumes · running {display} ({self._mode_text(batch.config)})"
        )

    def _mode_text(self, config: RunConfig) -> str:
        mode = self.mode(config)
        return mode if mode == "serial" else f"{config.num_workers} {mode}"

    def _on_volume(self, run: Run, event: VolumeFinished) -> None:
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
            )
        run.shown_times.add(t)
        self.view.show_progress(run.done, run.total)
        if run.total:
            elapsed = time.perf_counter() - run.started
            rate = run.done / elapsed if elapsed > 0 else 0.0
            text = f"{run.done}/{run.total} volumes · {rate:.2f}/s"
            if 0 < run.done < run.total and rate > 0:
                text += f" · ETA {seconds_text((run.total - run.done) / rate)}"
            self.view.show_status(text)

    def _on_end(self, run: Run, batch: BatchRun) -> None:
        if batch.cancelled:
            self._finish(run, "cancelled", f"Cancelled after {run.done}/{run.total} volumes.")
            return
        summary = batch.summaries.get(batch.keys[0])
        elapsed = time.perf_counter() - run.started
        counts = []
        if summary is not None:
            for what in ("preview", "written", "skipped", "resumed"):
                n = getattr(summary, what)
                if n:
                    counts.append(f"{n} {what}")
        where = f" into {batch.config.output}" if batch.config.output else " (preview, in memory)"
        text = (
            f"Done: {run.done}/{run.total} volumes in {seconds_text(elapsed)}{where}; "
            f"{', '.join(counts) or 'nothing to do'}."
        )
        # The run ends once the volumes it delivered are in their layers.
        run.ending = True
        self.sink.when_shown(lambda: self._finish(run, "done", text))

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
        run.ending = True
        self.sink.when_shown(lambda: self._finish(run, "failed", text, error=True))

    def _on_run_job_finished(self, run: Run) -> None:
        if self._cancelling is run:
            self._cancelling = None
        if run is self.current and not run.ending:
            self.sink.when_shown(
                lambda: self._finish(
                    run, "cancelled", f"Stopped after {run.done}/{run.total} volumes."
                )
            )

    def _finish(self, run: Run, outcome: str, text: str, error: bool = False) -> None:
        if run is not self.current:
            return
        run.outcome = outcome
        run.finished_at = time.perf_counter()
        self.current = None
        self.last = run
        self.view.show_progress(run.done, max(1, run.total))
        self.view.show_status(text, error=error)
        self.view.set_busy(False)  # (shows the above at once)
        if outcome in ("done", "failed") and self.info is not None and run.outputs is not None:
            # Remember which time points a finished run filled (live preview skips them).
            signature = (settings_key(run.config, self.info), None)
            ids = self.sink.ids(run.outputs)
            self._computed = dict.fromkeys(run.shown_times, (signature, ids))

    @property
    def last_run(self) -> dict[str, Any]:
        """Timings and counts of the latest run (for benchmarks and tests)."""
        run = self.current or self.last
        return run.stats() if run is not None else {}

    # -- previews ----------------------------------------------------------------------
    @property
    def last_preview(self) -> dict[str, Any]:
        """Timings of the latest preview shown (for benchmarks and tests)."""
        job = self.last_preview_job
        info: dict[str, Any] = {"started": self.previews_started, "dropped": self.previews_dropped}
        if job is None:
            return info
        info.update(
            generation=job.generation,
            time_index=job.time_index,
            region=job.region_used,
            region_source=job.region_source if job.region_used is not None else None,
            note=job.note,
            requested=job.requested,
            started_at=job.started,
            shown=job.shown_at,
            compute_s=job.compute_s,
            error=job.error,
        )
        return info

    def preview(self) -> None:
        """Compute the volume on screen now with the current settings (the Preview button)."""
        self._preview_requested_at = time.perf_counter()
        self._cancel_preview_timer()
        self._start_preview(force=True)

    def request_preview(self) -> None:
        """Preview again once changes pause (live preview only): a setting changed."""
        live, _region, _z = self.view.preview_options()
        if not live or self.current is not None or self.closed:
            return
        self._preview_requested_at = time.perf_counter()
        self._cancel_preview_timer()  # debounced: the timer restarts
        self._preview_timer = self.launcher.call_later(PREVIEW_DEBOUNCE_MS, self._start_preview)

    def request_region_preview(self) -> None:
        """Preview again: the region (rectangle, Z range) changed."""
        if self.view.preview_options()[1]:
            self.request_preview()

    def request_view_preview(self) -> None:
        """Preview again: the field of view changed (the region while no rectangle is drawn)."""
        if self.view.preview_options()[1] and not self.sink.rectangle_drawn():
            self.request_preview()

    def live_toggled(self) -> None:
        """Start or stop live previews (the live box was ticked or unticked)."""
        if self.view.preview_options()[0]:
            self.request_preview()
        else:
            self.stop_previews(forget=False)

    def region_toggled(self) -> None:
        """Region on: offer a Shapes layer to draw the rectangle in."""
        if self.view.preview_options()[1]:
            self.sink.offer_region_layer()
        self.request_preview()

    def stop_previews(self, forget: bool = True) -> None:
        """Drop the preview in flight (and, with ``forget``, what the layers hold)."""
        self._cancel_preview_timer()
        self._preview_generation = next(self._generations)
        self.preview_job = None
        if forget:
            self._computed.clear()

    def _cancel_preview_timer(self) -> None:
        if self._preview_timer is not None:
            self.launcher.cancel_call(self._preview_timer)
            self._preview_timer = None

    def is_current_preview(self, generation: int) -> bool:
        """Tell whether preview ``generation`` is the one wanted (read from its job's thread)."""
        return self._preview_generation == generation

    def _start_preview(self, force: bool = False) -> None:
        self._preview_timer = None
        requested = self._preview_requested_at or time.perf_counter()
        self._preview_requested_at = None
        if self.current is not None or self.closed:
            return
        try:
            job = self._plan_preview(requested, force)
        except (ValueError, ProcessPositionError) as exc:
            self.view.show_status(f"cannot preview: {exc}")
            return
        if job is None:
            return
        self.preview_job = job
        self.previews_started += 1
        self.launcher.start(
            preview_events,
            job,
            self.is_current_preview,
            on_event=lambda event: self._on_preview_event(job, event),
        )

    def _plan_preview(self, requested: float, force: bool) -> PreviewJob | None:
        """Return the next preview to compute, or None when the layers show it already."""
        config = self.view.current_config()
        info = self.info
        if info is None:  # (current_config checks it too)
            raise InvalidArgumentError("choose an OME-Zarr plate or position first")
        spec = self.spec(config.transform)
        channels = list(config.channels or range(info.shape[1]))
        times = list(config.times or range(info.shape[0]))
        time_index = self.sink.input_time_on_screen(info, channels)
        if time_index not in times:
            raise InvalidArgumentError(
                f"the time point on screen ({time_index}) is not among the selected time "
                f"points ({','.join(map(str, times))})"
            )
        _live, region_on, z_text = self.view.preview_options()
        region, source = self.sink.preview_region(info, z_text) if region_on else (None, None)
        signature = (settings_key(config, info), region)
        out_index = times.index(time_index)
        job = self.preview_job
        if (
            not force
            and job is not None
            and job.signature == signature
            and job.out_index == out_index
            and (job.outputs is None or self.sink.alive(job.outputs))
        ):
            return None  # that very preview is being computed or copied in
        held = self._computed.get(out_index)
        if (
            not force
            and held is not None
            and held[0] == signature
            and held[1] <= self.sink.layer_ids()
        ):
            self.stop_previews(forget=False)  # whatever is in flight is stale now
            return None
        generation = next(self._generations)
        self._preview_generation = generation
        return PreviewJob(
            generation,
            config,
            info,
            spec,
            channels,
            times,
            time_index,
            out_index,
            region,
            source,
            signature,
            requested,
        )

    def _on_preview_event(self, job: PreviewJob, event: Any) -> None:
        if job.generation != self._preview_generation or self.current is not None:
            if isinstance(event, PreviewVolume):
                self.previews_dropped += 1  # stale: a newer change or a run replaced it
            return
        if isinstance(event, PreviewLayout):
            self._on_preview_layout(job, event)
        elif isinstance(event, PreviewVolume):
            self._on_preview_volume(job, event)
        elif isinstance(event, Failed):
            exc = event.error
            job.error = str(exc) or type(exc).__name__
            if not isinstance(exc, ProcessPositionError):
                job.error = f"{type(exc).__name__}: {job.error}"
            self.last_preview_job = job
            self.preview_job = None
            self.view.show_status(f"Preview failed: {job.error}")
        elif isinstance(event, PreviewDone) and len(job.shown) == len(job.channels):
            self.preview_job = None  # (else when its last volume is in its layer)

    def _on_preview_layout(self, job: PreviewJob, event: PreviewLayout) -> None:
        job.region_used, job.note, job.layout = event.region, event.note, event.layout
        display = job.spec.display_name
        outputs = self.sink.existing_outputs(event.layout, display, job.info.path)
        job.fresh = outputs is None
        if outputs is None:
            outputs = self.sink.outputs(event.layout, display, None, job.info.path)
            self._computed.clear()
        job.outputs = outputs
        # Inputs show the selected time points, so that they share the outputs' first axis.
        all_times = job.times == list(range(job.info.shape[0]))
        if self.sink.show_inputs(job.info, None if all_times else job.times):
            self.sink.follow(outputs, job.out_index)

    def _on_preview_volume(self, job: PreviewJob, event: PreviewVolume) -> None:
        result = event.result
        job.compute_s += result.read_s + result.compute_s
        volume = result.volume
        if volume is None:  # an empty input volume: a run shows zeros there
            shape = tuple(s.stop - s.start for s in result.where)
            volume = np.zeros(shape, np.dtype(job.layout.dtype))
        index = event.channel
        self.sink.put(
            job.outputs,
            index,
            job.out_index,
            volume,
            where=result.where,
            limits=event.limits if job.fresh else None,
            valid=lambda: job.generation == self._preview_generation,
            shown=lambda: self._on_preview_shown(job, index),
            follow=False,
        )

    def _on_preview_shown(self, job: PreviewJob, index: int) -> None:
        job.shown.add(index)
        if len(job.shown) < len(job.channels):
            return
        job.shown_at = time.perf_counter()
        self.last_preview_job = job
        if self.preview_job is job:
            self.preview_job = None
        self._computed[job.out_index] = (job.signature, self.sink.ids(job.outputs))
        what = f"t={job.time_index}"
        if job.region_used is not None:
            z, y, x = job.region_used
            z_text = f"z {z[0]}-{z[1] - 1}, " if z is not None else ""
            what += f", {z_text}y {y[0]}-{y[1] - 1}, x {x[0]}-{x[1] - 1} ({job.region_source})"
        text = (
            f"Preview of {what}: {job.spec.display_name} in "
            f"{seconds_text(job.shown_at - job.requested)}"
        )
        if job.note:
            text += f" ({job.note})"
        self.view.show_status(text + ". Run processes every selected time point.")

    # -- closing -----------------------------------------------------------------------
    def close(self) -> None:
        """Drop previews, cancel the run, kill the pool: the widget is gone."""
        self.closed = True
        self._preview_generation = next(self._generations)  # drops previews in flight
        self._cancel_preview_timer()
        run = self.current
        if run is not None:
            run.cancel()
            self.launcher.stop(getattr(run, "worker", None))
            self.current = None
        pool, self.pool = self.pool, None
        if pool is not None:
            pool.kill()
