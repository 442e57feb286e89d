"""Live and region previews: the volume on screen, recomputed when a setting changes.

With "live" on, a change of a parameter, the transform, the channels, the
time point on screen or the preview region recomputes the current time
point's volume of each selected channel, in a thread worker (threads, not
processes: nothing to spawn or pickle, so the wait is the transform's
compute). Changes are debounced (:data:`PREVIEW_DEBOUNCE_MS`), and every new
preview raises a generation counter: a result whose generation is no longer
the current one is dropped, and a stale worker stops at the next channel.
The Preview button computes the same once, with live off. Run stays a
separate, full run.

"region only" limits a preview to the newest rectangle of the Shapes layer
named :data:`REGION_LAYER_NAME` (else the field of view) and the Z range;
:func:`_preview.preview_volume` pads it by the transform's margin, so the
result equals the same region of a full run, and it is written where it
belongs in the output layers (the rest is left as it was). A transform that
changes the shape or declares no margin falls back to the whole volume.
"""

from __future__ import annotations

import itertools
import math
import time
import weakref
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.qt.threading import thread_worker
from qtpy.QtCore import QTimer

from napari_process_position.batch.config import RunConfig
from napari_process_position.core.errors import InvalidArgumentError, ProcessPositionError
from napari_process_position.store.layout import OutputLayout, PositionInfo
from napari_process_position.transforms import TransformSpec, get_transform
from napari_process_position.widget.helpers import (
    COPY_BUDGET_S,
    layer_meta,
    parse_z_range,
    seconds_text,
)
from napari_process_position.widget.layers import Copy
from napari_process_position.widget.preview_job import (
    PreviewJob,
    Region,
    compute_preview,
    settings_key,
)
from napari_process_position.widget.qt import ClosingGeneratorWorker

if TYPE_CHECKING:
    import collections

    import napari
    from magicgui.widgets import CheckBox, LineEdit, PushButton
    from napari.layers import Image

    from napari_process_position.widget.run import Run

__all__ = ["PREVIEW_DEBOUNCE_MS", "REGION_LAYER_NAME", "PreviewMixin"]

#: Wait this long after the last change before computing (a spin box being scrolled).
PREVIEW_DEBOUNCE_MS = 120
#: The Shapes layer whose newest rectangle is the preview region.
REGION_LAYER_NAME = "preview region"
#: Tolerance, in pixels, for rectangle corners that should fall on a pixel centre.
_EPS = 1e-3


def _is_shapes(layer: Any) -> bool:
    from napari.layers import Shapes

    return isinstance(layer, Shapes)


class PreviewMixin:
    """Live and region previews of :class:`ProcessPositionWidget`."""

    _viewer: napari.viewer.Viewer
    _info: PositionInfo | None
    _current: Run | None
    _closed: bool
    _specs: dict[str, TransformSpec]
    _pending: collections.deque[Copy]
    live: CheckBox
    region: CheckBox
    z_range: LineEdit
    times: LineEdit
    preview_button: PushButton

    if TYPE_CHECKING:

        def current_config(self) -> RunConfig: ...  # noqa: D102
        def _set_status(self, text: str) -> None: ...
        def _start_worker(
            self, worker: Any, on_finished: Callable[[], None] | None = None
        ) -> None: ...
        def _find_input(self, info: PositionInfo, name: str) -> Image | None: ...
        def _has_layer(self, layer: Image) -> bool: ...
        def _show_inputs(
            self,
            info: PositionInfo,
            times: list[int] | None = None,
            limits: dict[int, tuple[float, float]] | None = None,
        ) -> bool: ...
        def _existing_outputs(
            self, layout: OutputLayout, display: str, source: str
        ) -> list[Image] | None: ...
        def _make_outputs(
            self, layout: OutputLayout, display: str, output: str | None, source: str
        ) -> list[Image]: ...
        def _copy_pending(self, budget_s: float) -> None: ...
        def _schedule_flush(self) -> None: ...
        def _follow(self, layer: Image, t: int) -> bool: ...
        def _time_on_screen(self, layer: Image) -> int: ...

    def _init_preview(self, parent: Any) -> None:
        self._generations = itertools.count(1)
        self._preview_generation = 0
        self._preview_job: PreviewJob | None = None
        self._last_preview_job: PreviewJob | None = None
        self._preview_requested_at: float | None = None
        self._preview_started = 0
        self._preview_dropped = 0
        #: Output time index -> (signature, layer ids) of what the output layers hold there.
        self._computed: dict[int, tuple[tuple[Any, ...], frozenset[str]]] = {}
        #: Shapes layers named REGION_LAYER_NAME whose data events are connected, by id.
        self._region_layers: dict[str, Any] = {}
        self._preview_timer = QTimer(parent)
        self._preview_timer.setSingleShot(True)
        self._preview_timer.setInterval(PREVIEW_DEBOUNCE_MS)
        self._preview_timer.timeout.connect(self._start_preview)

    # -- public ------------------------------------------------------------------------
    @property
    def last_preview(self) -> dict[str, Any]:
        """Timings of the latest preview shown (for benchmarks and tests)."""
        job = self._last_preview_job
        info: dict[str, Any] = {"started": self._preview_started, "dropped": self._preview_dropped}
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
        self._preview_timer.stop()
        self._start_preview(force=True)

    # -- triggers ----------------------------------------------------------------------
    def _on_live_toggled(self, *_: Any) -> None:
        if self.live.value:
            self._request_preview()
        else:
            self._stop_previews(forget=False)

    def _request_preview(self, *_: Any) -> None:
        """Preview again once changes pause (live only): a setting changed."""
        if not self.live.value or self._current is not None or self._closed:
            return
        self._preview_requested_at = time.perf_counter()
        self._preview_timer.start()  # restarts: debounced

    def _on_region_toggled(self, *_: Any) -> None:
        """Region on: offer a Shapes layer to draw the rectangle in, if there is none."""
        if self.region.value and not any(
            layer.name == REGION_LAYER_NAME and _is_shapes(layer) for layer in self._viewer.layers
        ):
            layer = self._viewer.add_shapes(
                ndim=2,
                name=REGION_LAYER_NAME,
                edge_color="yellow",
                face_color="transparent",
                edge_width=0.5,
            )
            layer.mode = "add_rectangle"
        self._request_preview()

    def _request_region_preview(self, *_: Any) -> None:
        if self.region.value:
            self._request_preview()

    def _request_view_preview(self, *_: Any) -> None:
        # The field of view is the region only while no rectangle is drawn.
        if self.region.value and self._region_rectangle() is None:
            self._request_preview()

    def _watch_region_layer(self, layer: Any) -> None:
        if layer.name == REGION_LAYER_NAME and _is_shapes(layer):
            if layer.unique_id not in self._region_layers:
                self._region_layers[layer.unique_id] = layer
                layer.events.data.connect(self._request_region_preview)
            self._request_region_preview()

    def _stop_previews(self, forget: bool = True) -> None:
        """Drop the preview in flight (and, with ``forget``, what the layers are known to hold)."""
        self._preview_timer.stop()
        self._preview_generation = next(self._generations)
        self._preview_job = None
        if forget:
            self._computed.clear()

    # -- planning (main thread) --------------------------------------------------------
    def _start_preview(self, force: bool = False) -> None:
        requested = self._preview_requested_at or time.perf_counter()
        self._preview_requested_at = None
        if self._current is not None or self._closed:
            return
        try:
            job = self._plan_preview(requested, force)
        except (ValueError, ProcessPositionError) as exc:
            self._set_status(f"cannot preview: {exc}")
            return
        if job is None:
            return
        self._preview_job = job
        self._preview_started += 1
        widget_ref = weakref.ref(self)

        def is_current(generation: int) -> bool:
            widget = widget_ref()
            return widget is not None and widget._preview_generation == generation

        worker = thread_worker(
            compute_preview, worker_class=ClosingGeneratorWorker, start_thread=False
        )(job, is_current)
        worker.yielded.connect(partial(self._on_preview_event, job))
        self._start_worker(worker)

    def _plan_preview(self, requested: float, force: bool) -> PreviewJob | None:
        """Return the next preview to compute, or None when the layers show it already."""
        config = self.current_config()
        info = self._info
        if info is None:  # (current_config checks it too)
            raise InvalidArgumentError("choose an OME-Zarr plate or position first")
        spec = self._specs.get(config.transform) or get_transform(config.transform)
        channels = list(config.channels or range(info.shape[1]))
        times = list(config.times or range(info.shape[0]))
        time_index = self._input_time_on_screen(info, channels)
        if time_index not in times:
            raise InvalidArgumentError(
                f"the time point on screen ({time_index}) is not among the selected time "
                f"points ({self.times.value})"
            )
        region, source = self._preview_region(info) if self.region.value else (None, None)
        signature = (settings_key(config, info), region)
        out_index = times.index(time_index)
        job = self._preview_job
        if (
            not force
            and job is not None
            and job.signature == signature
            and job.out_index == out_index
            and all(self._has_layer(layer) for layer in job.layers)
        ):
            return None  # that very preview is being computed or copied in
        held = self._computed.get(out_index)
        if not force and held is not None and held[0] == signature:
            ids = {layer.unique_id for layer in self._viewer.layers}
            if held[1] <= ids:
                self._stop_previews(forget=False)  # whatever is in flight is stale now
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

    def _input_time_on_screen(self, info: PositionInfo, channels: list[int]) -> int:
        """Return the input time point the slider shows (through an input layer of ``info``)."""
        layer = None
        for c in channels:
            layer = self._find_input(info, info.channel_names[c])
            if layer is not None:
                break
        if layer is None:
            self._show_inputs(info)
            layer = self._find_input(info, info.channel_names[channels[0]])
            if layer is None:  # pragma: no cover - _show_inputs adds them
                raise InvalidArgumentError(f"cannot show {info.path}")
        index = self._time_on_screen(layer)
        shown_times = layer_meta(layer).get("times")
        return int(shown_times[index]) if shown_times else index

    def _region_rectangle(self) -> tuple[Any, np.ndarray] | None:
        """Return the newest rectangle of the region layer: (layer, vertices in its data coords)."""
        for layer in reversed(list(self._viewer.layers)):
            if layer.name != REGION_LAYER_NAME or not _is_shapes(layer):
                continue
            for kind, vertices in zip(
                reversed(layer.shape_type), reversed(layer.data), strict=True
            ):
                if kind == "rectangle":
                    return layer, np.asarray(vertices, dtype=float)
        return None

    def _preview_region(self, info: PositionInfo) -> tuple[Region, str]:
        """Return the region to preview in the input's voxels, and where it came from."""
        z_size, y_size, x_size = info.volume_shape
        z = parse_z_range(self.z_range.value, z_size)
        reference = self._find_input(info, info.channel_names[0])
        found = self._region_rectangle()
        if found is not None and reference is not None:
            shapes, vertices = found
            world_ndim = self._viewer.dims.ndim
            corners = []
            for vertex in vertices:
                world = np.asarray(shapes.data_to_world(vertex), dtype=float)
                full = np.array(self._viewer.dims.point, dtype=float)
                full[world_ndim - len(world) :] = world
                corners.append(np.asarray(reference.world_to_data(full), dtype=float)[-2:])
            low, high = np.min(corners, axis=0), np.max(corners, axis=0)
            # The pixels whose centres lie inside the rectangle.
            y = (max(0, math.ceil(low[0] - _EPS)), min(y_size, math.floor(high[0] + _EPS) + 1))
            x = (max(0, math.ceil(low[1] - _EPS)), min(x_size, math.floor(high[1] + _EPS) + 1))
            if y[1] <= y[0] or x[1] <= x[0]:
                raise InvalidArgumentError(
                    f"the newest rectangle in {REGION_LAYER_NAME!r} lies outside the volume"
                )
            return (z, y, x), "rectangle"
        y, x = (0, y_size), (0, x_size)
        if reference is not None:
            visible = np.asarray(reference.corner_pixels)
            if visible.shape[1] >= 2 and np.any(visible[1, -2:] > visible[0, -2:]):
                # Inclusive data indices of the visible part, clipped to the data.
                y = (int(visible[0, -2]), min(y_size, int(visible[1, -2]) + 1))
                x = (int(visible[0, -1]), min(x_size, int(visible[1, -1]) + 1))
        return (z, y, x), "view"

    # -- results (main thread) ---------------------------------------------------------
    def _on_preview_event(self, job: PreviewJob, event: tuple[Any, ...]) -> None:
        kind = event[0]
        if job.generation != self._preview_generation or self._current is not None:
            if kind == "volume":
                self._preview_dropped += 1  # stale: a newer change or a run replaced it
            return
        if kind == "layout":
            self._on_preview_layout(job, *event[1:])
        elif kind == "volume":
            self._on_preview_volume(job, *event[1:])
        elif kind == "error":
            exc = event[1]
            job.error = str(exc) or type(exc).__name__
            if not isinstance(exc, ProcessPositionError):
                job.error = f"{type(exc).__name__}: {job.error}"
            self._last_preview_job = job
            self._preview_job = None
            self._set_status(f"Preview failed: {job.error}")
        elif kind == "done" and len(job.shown) == len(job.channels):
            self._preview_job = None  # (else when its last volume is in its layer)

    def _on_preview_layout(
        self, job: PreviewJob, layout: OutputLayout, region: Region | None, note: str | None
    ) -> None:
        job.region_used, job.note = region, note
        display = job.spec.display_name
        layers = self._existing_outputs(layout, display, job.info.path)
        job.fresh = layers is None
        if layers is None:
            layers = self._make_outputs(layout, display, None, job.info.path)
            self._computed.clear()
        job.layers = layers
        # Inputs show the selected time points, so that they share the outputs' first axis.
        all_times = job.times == list(range(job.info.shape[0]))
        if self._show_inputs(job.info, None if all_times else job.times):
            self._follow(layers[0], job.out_index)

    def _on_preview_volume(
        self, job: PreviewJob, index: int, result: Any, limits: tuple[float, float] | None
    ) -> None:
        job.compute_s += result.read_s + result.compute_s
        layer = job.layers[index]
        volume = result.volume
        if volume is None:  # an empty input volume: a run shows zeros there
            shape = tuple(s.stop - s.start for s in result.where)
            volume = np.zeros(shape, layer.data.dtype)
        self._pending.append(
            Copy(
                layer,
                job.out_index,
                volume,
                result.where,
                limits if job.fresh else None,
                valid=lambda: job.generation == self._preview_generation,
                done=partial(self._on_preview_copied, job, index),
            )
        )
        # Copied now (within the budget), the rest by the flush timer.
        self._copy_pending(COPY_BUDGET_S)
        self._schedule_flush()

    def _on_preview_copied(self, job: PreviewJob, index: int, copy: Copy) -> None:
        layer = job.layers[index]
        if self._time_on_screen(layer) == job.out_index:
            layer.refresh()
        job.shown.add(index)
        if len(job.shown) < len(job.layers):
            return
        job.shown_at = time.perf_counter()
        self._last_preview_job = job
        if self._preview_job is job:
            self._preview_job = None
        self._computed[job.out_index] = (
            job.signature,
            frozenset(layer.unique_id for layer in job.layers),
        )
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
        self._set_status(text + ". Run processes every selected time point.")

    def _run_done(self, run: Run) -> None:
        """Remember which time points a finished run filled (live preview skips them)."""
        if run.outcome not in ("done", "failed") or self._info is None:
            return
        signature = (settings_key(run.config, self._info), None)
        ids = frozenset(layer.unique_id for layer in run.layers)
        self._computed = dict.fromkeys(run.shown_times, (signature, ids))
