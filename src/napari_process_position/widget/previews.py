"""Previews: compute the time point on screen with the form's settings, once or live.

Part of the controller (Qt-free): it owns the preview in flight and the
previews' ids (generations), drops results of a preview that a newer change
or a run made stale, debounces live previews, and remembers which time point
of the output layers holds what, so that an unchanged request computes nothing.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from napari_process_position.batch.config import RunConfig
from napari_process_position.batch.plan import all_if_none
from napari_process_position.core.durations import seconds_text
from napari_process_position.core.errors import InvalidArgumentError, ProcessPositionError
from napari_process_position.store.layout import PositionInfo
from napari_process_position.transforms import TransformSpec
from napari_process_position.widget.events import (
    Failed,
    PreviewDone,
    PreviewLayout,
    PreviewVolume,
)
from napari_process_position.widget.jobs import PreviewJob, preview_events, settings_key
from napari_process_position.widget.ports import Launcher, OutputLayers, Sink, ViewPort

__all__ = ["PREVIEW_DEBOUNCE_MS", "Previews"]

#: Wait this long after the last change before a live preview starts (a spin box scrolled).
PREVIEW_DEBOUNCE_MS = 120

#: What the output layers hold at one time index: (settings signature, layer ids).
Held = tuple[tuple[Any, ...], frozenset[str]]


class Previews:
    """The widget's previews (see the module docstring).

    Parameters
    ----------
    view, sink, launcher
        As the controller's.
    blocked
        Tells whether previews must wait (a run is in flight, or the widget closed).
    info
        The input position chosen in the form (None before one is).
    spec
        Finds a transform by name (added ones included).
    config
        The run the form describes (built from the form's model).
    """

    def __init__(
        self,
        view: ViewPort,
        sink: Sink,
        launcher: Launcher,
        blocked: Callable[[], bool],
        info: Callable[[], PositionInfo | None],
        spec: Callable[[str], TransformSpec],
        config: Callable[[], RunConfig],
    ) -> None:
        self.view = view
        self.sink = sink
        self.launcher = launcher
        self._blocked = blocked
        self._info = info
        self._spec = spec
        self._config = config
        self._generations = itertools.count(1)
        self._generation = 0
        self.job: PreviewJob | None = None
        self.last_job: PreviewJob | None = None
        self._timer: Any = None
        self._requested_at: float | None = None
        self.started = 0
        self.dropped = 0
        #: Output time index -> what the output layers hold there.
        self._computed: dict[int, Held] = {}

    def remember(self, times: set[int], held: Held) -> None:
        """Remember the time points a run filled in the output layers (previews skip them)."""
        self._computed = dict.fromkeys(times, held)

    def close(self) -> None:
        """Drop the preview in flight and any pending one (the widget is gone)."""
        self._generation = next(self._generations)
        self._cancel_timer()
        self.job = None

    def stats(self) -> dict[str, Any]:
        """Return timings of the latest preview shown (for benchmarks and tests)."""
        job = self.last_job
        info: dict[str, Any] = {"started": self.started, "dropped": self.dropped}
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
        self._requested_at = time.perf_counter()
        self._cancel_timer()
        self._start(force=True)

    def request(self) -> None:
        """Preview again once changes pause (live preview only): a setting changed."""
        live, _region, _z = self.view.preview_options()
        if not live or self._blocked():
            return
        self._requested_at = time.perf_counter()
        self._cancel_timer()  # debounced: the timer restarts
        self._timer = self.launcher.call_later(PREVIEW_DEBOUNCE_MS, self._start)

    def request_for_region(self) -> None:
        """Preview again: the region (rectangle, Z range) changed."""
        if self.view.preview_options()[1]:
            self.request()

    def request_for_view(self) -> None:
        """Preview again: the field of view changed (the region while no rectangle is drawn)."""
        if self.view.preview_options()[1] and not self.sink.rectangle_drawn():
            self.request()

    def live_toggled(self) -> None:
        """Start or stop live previews (the live box was ticked or unticked)."""
        if self.view.preview_options()[0]:
            self.request()
        else:
            self.stop(forget=False)

    def region_toggled(self) -> None:
        """Region on: offer a Shapes layer to draw the rectangle in."""
        if self.view.preview_options()[1]:
            self.sink.offer_region_layer()
        self.request()

    def stop(self, forget: bool = True) -> None:
        """Drop the preview in flight (and, with ``forget``, what the layers hold)."""
        self._cancel_timer()
        self._generation = next(self._generations)
        self.job = None
        if forget:
            self._computed.clear()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self.launcher.cancel_call(self._timer)
            self._timer = None

    def is_current(self, generation: int) -> bool:
        """Tell whether preview ``generation`` is the one wanted (read from its job's thread)."""
        return self._generation == generation

    def _start(self, force: bool = False) -> None:
        self._timer = None
        requested = self._requested_at or time.perf_counter()
        self._requested_at = None
        if self._blocked():
            return
        try:
            job = self._plan(requested, force)
        except (ValueError, ProcessPositionError) as exc:
            self.view.show_status(f"cannot preview: {exc}")
            return
        if job is None:
            return
        self.job = job
        self.started += 1
        self.launcher.start(
            preview_events,
            job,
            self.is_current,
            on_event=lambda event: self._on_event(job, event),
        )

    def _plan(self, requested: float, force: bool) -> PreviewJob | None:
        """Return the next preview to compute, or None when the layers show it already."""
        config = self._config()
        info = self._info()
        if info is None:  # (the config checks it too)
            raise InvalidArgumentError("choose an OME-Zarr plate or position first")
        spec = self._spec(config.transform)
        channels = all_if_none(config.channels, info.shape[1])
        times = all_if_none(config.times, info.shape[0])
        if not self.sink.inputs_shown(info, channels):  # (removed by the user, say)
            self.sink.show_inputs(info, now=True)
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
        job = self.job
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
            self.stop(forget=False)  # whatever is in flight is stale now
            return None
        generation = next(self._generations)
        self._generation = generation
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

    def _on_event(self, job: PreviewJob, event: Any) -> None:
        if job.generation != self._generation or self._blocked():
            if isinstance(event, PreviewVolume):
                self.dropped += 1  # stale: a newer change or a run replaced it
            return
        if isinstance(event, PreviewLayout):
            self._on_layout(job, event)
        elif isinstance(event, PreviewVolume):
            self._on_volume(job, event)
        elif isinstance(event, Failed):
            exc = event.error
            job.error = str(exc) or type(exc).__name__
            if not isinstance(exc, ProcessPositionError):
                job.error = f"{type(exc).__name__}: {job.error}"
            self.last_job = job
            self.job = None
            self.view.show_status(f"Preview failed: {job.error}")
        elif isinstance(event, PreviewDone) and len(job.shown) == len(job.channels):
            self.job = None  # (else when its last volume is in its layer)

    def _on_layout(self, job: PreviewJob, event: PreviewLayout) -> None:
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

    def _on_volume(self, job: PreviewJob, event: PreviewVolume) -> None:
        result, layout, outputs = event.result, job.layout, job.outputs
        if layout is None or outputs is None:  # pragma: no cover - its layout comes first
            return
        job.compute_s += result.read_s + result.compute_s
        volume = result.volume
        if volume is None:  # an empty input volume: a run shows zeros there
            shape = tuple(s.stop - s.start for s in result.where)
            volume = np.zeros(shape, np.dtype(layout.dtype))
        index = event.channel
        self.sink.put(
            outputs,
            index,
            job.out_index,
            volume,
            where=result.where,
            limits=event.limits if job.fresh else None,
            valid=lambda: job.generation == self._generation,
            shown=lambda: self._on_shown(job, outputs, index),
            follow=False,
        )

    def _on_shown(self, job: PreviewJob, outputs: OutputLayers[Any], index: int) -> None:
        job.shown.add(index)
        if len(job.shown) < len(job.channels):
            return
        job.shown_at = time.perf_counter()
        self.last_job = job
        if self.job is job:
            self.job = None
        self._computed[job.out_index] = (job.signature, self.sink.ids(outputs))
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
