"""The widget's layers: input layers, output layers, and copying volumes into them.

Finished volumes reach the main thread as whole arrays; copying a large one
into its layer at once would stall the event loop, so copies are queued and
done a slab of Z planes at a time, for at most :data:`COPY_BUDGET_S` per
event. Refreshes of a run's layers are coalesced (at most one per layer per
:data:`REFRESH_INTERVAL_MS`); a preview's copy refreshes its layer at once.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_process_position.store.colors import channel_color
from napari_process_position.store.layout import OutputLayout, PositionInfo
from napari_process_position.widget.helpers import (
    COPY_BUDGET_S,
    COPY_SLAB_BYTES,
    FOLLOW_INTERVAL_MS,
    METADATA_KEY,
    REFRESH_INTERVAL_MS,
    display_limits,
    layer_meta,
)

if TYPE_CHECKING:
    import napari
    from magicgui.widgets import CheckBox
    from napari.layers import Image
    from qtpy.QtCore import QTimer

    from napari_process_position.widget.run import Run

__all__ = ["Copy", "LayersMixin", "input_limits"]


@dataclass(eq=False)
class Copy:
    """A volume waiting to be copied into a layer at time index ``t``.

    ``where`` are the ZYX slices of the layer's volume it fills (None: all of
    it). ``valid()`` is asked before each slab (a cancelled run or a stale
    preview says no); ``done(copy)``, when given, is called once the last
    slab is in, instead of the coalesced refresh.
    """

    layer: Image
    t: int
    volume: np.ndarray
    where: tuple[slice, slice, slice] | None
    limits: tuple[float, float] | None
    valid: Callable[[], bool]
    done: Callable[[Copy], None] | None = None
    z0: int = 0


def input_limits(
    info: PositionInfo, channels: Sequence[int], t: int
) -> dict[int, tuple[float, float]]:
    """Contrast limits of the input channels from one Z plane each (cheap to read)."""
    source = info.open_array()
    z = info.shape[2] // 2
    limits = {}
    for c in channels:
        found = display_limits(source[t, c, z].read().result())
        if found is not None:
            limits[c] = found
    return limits


class LayersMixin:
    """Layer handling of :class:`ProcessPositionWidget` (state set up by its ``__init__``)."""

    _viewer: napari.viewer.Viewer
    _current: Run | None
    _last: Run | None
    _timer: QTimer
    _pending: collections.deque[Copy]
    _dirty: dict[Any, tuple[Image, set[int]]]
    _follow_to: tuple[Image, int] | None
    _last_refresh: float
    _last_follow: float
    follow: CheckBox

    # -- input layers ------------------------------------------------------------------
    def _show_inputs(
        self,
        info: PositionInfo,
        times: list[int] | None = None,
        limits: dict[int, tuple[float, float]] | None = None,
    ) -> bool:
        """Show every channel of a position as a lazy layer (only ``times``, when given).

        A run shows the selected time points only, so that the input and the
        output layers share their first axis. Returns True when a layer changed.
        """
        if times is None or list(times) == list(range(info.shape[0])):
            time_index: Any = slice(None)
            times = None
        else:
            time_index = list(times)
        scale = (info.scale[0], *info.scale[2:])
        source = None
        shown = []
        changed = False
        for c, name in enumerate(info.channel_names):
            meta = {"role": "input", "path": info.path, "channel": c, "times": times}
            layer = self._find_input(info, name)
            if layer is not None and layer.metadata.get(METADATA_KEY) == meta:
                shown.append(layer)
                continue
            if source is None:
                source = info.open_array()
            changed = True
            data = source[time_index, c]
            same_source = layer is not None and layer_meta(layer).get("path") == info.path
            clim = (limits or {}).get(c)
            if clim is None and not same_source:
                clim = input_limits(info, [c], 0).get(c, (0.0, 1.0))
            if layer is None:
                layer = self._viewer.add_image(
                    data,
                    name=name,
                    scale=scale,
                    contrast_limits=clim,
                    metadata={METADATA_KEY: meta},
                    colormap=channel_color(c, info.shape[1]).colormap,
                    blending="additive",
                    axis_labels=("t", "z", "y", "x"),
                )
            else:
                layer.metadata = {**layer.metadata, METADATA_KEY: meta}
                layer.data = data
                if not np.allclose(layer.scale, scale):
                    layer.scale = scale
                if clim is not None:
                    layer.contrast_limits_range = clim
                    layer.contrast_limits = clim
            shown.append(layer)
        # Input layers of another position are replaced, not piled up.
        shown_ids = {layer.unique_id for layer in shown}
        for layer in list(self._viewer.layers):
            if layer_meta(layer).get("role") == "input" and layer.unique_id not in shown_ids:
                self._viewer.layers.remove(layer)
                changed = True
        return changed

    def _find_input(self, info: PositionInfo, name: str) -> Image | None:
        """Find this widget's input layer of that name, or a sample-data layer of that channel."""
        from napari_process_position.widget.sample_data import SOURCE_KEY

        found = self._find_layer(name, "input")
        if found is not None:
            return found
        for layer in self._viewer.layers:
            source = (layer.metadata or {}).get(SOURCE_KEY) or {}
            if (
                source
                and Path(source["store"], source["position"]) == Path(info.path)
                and (layer.name == name)
            ):
                return layer  # type: ignore[no-any-return]
        return None

    def _has_layer(self, layer: Image) -> bool:
        # Compared by id: a plugin widget sees layers through napari's proxies, a new
        # proxy object at each access.
        return any(other.unique_id == layer.unique_id for other in self._viewer.layers)

    def _find_layer(self, name: str, role: str) -> Image | None:
        for layer in self._viewer.layers:
            if layer.name == name and layer_meta(layer).get("role") == role:
                return layer  # type: ignore[no-any-return]
        return None

    # -- output layers -----------------------------------------------------------------
    def _output_names(self, layout: OutputLayout, display: str) -> list[str]:
        return [f"{channel} [{display}]" for channel in layout.channel_names]

    def _make_outputs(
        self, layout: OutputLayout, display: str, output: str | None, source: str
    ) -> list[Image]:
        """One zero-filled output layer per output channel (existing ones get new arrays).

        ``output`` is the store written (None for a preview), ``source`` the input
        position's path.
        """
        shape = (layout.shape[0], *layout.shape[2:])
        dtype = np.dtype(layout.dtype)
        scale = (layout.scale[0], *layout.scale[2:])
        layers = []
        for i, name in enumerate(self._output_names(layout, display)):
            meta = {
                METADATA_KEY: {"role": "output", "output": output, "channel": i, "input": source}
            }
            data = np.zeros(shape, dtype)  # calloc: pages appear as volumes arrive
            layer = self._find_layer(name, "output")
            if layer is None:
                layer = self._viewer.add_image(
                    data,
                    name=name,
                    scale=scale,
                    contrast_limits=(0.0, 1.0),
                    metadata=meta,
                    colormap=channel_color(i, len(layout.channel_names)).colormap,
                    blending="additive",
                    axis_labels=("t", "z", "y", "x"),
                )
            else:
                layer.data = data  # the previous run's array is released
                if not np.allclose(layer.scale, scale):  # each change re-slices the layer
                    layer.scale = scale
                if layer.metadata.get(METADATA_KEY) != meta[METADATA_KEY]:
                    layer.metadata = meta
            layers.append(layer)
        # Output layers of an earlier transform are replaced, not piled up.
        keep = {layer.unique_id for layer in layers}
        for layer in list(self._viewer.layers):
            if layer_meta(layer).get("role") == "output" and layer.unique_id not in keep:
                self._viewer.layers.remove(layer)
        self._dirty.clear()
        self._pending.clear()
        self._follow_to = None
        return layers

    def _existing_outputs(
        self, layout: OutputLayout, display: str, source: str
    ) -> list[Image] | None:
        """Return the output layers of this layout and input if all exist (shape and dtype)."""
        shape = (layout.shape[0], *layout.shape[2:])
        layers = []
        for name in self._output_names(layout, display):
            layer = self._find_layer(name, "output")
            if (
                layer is None
                or layer_meta(layer).get("input") != source
                or layer.data.shape != shape
                or np.dtype(layer.data.dtype) != np.dtype(layout.dtype)
            ):
                return None
            layers.append(layer)
        return layers

    # -- copying volumes in ------------------------------------------------------------
    def _schedule_flush(self) -> None:
        if self._timer.isActive():
            return
        now = time.perf_counter()
        if self._pending:
            wait = 0.0
        elif self._dirty:
            wait = REFRESH_INTERVAL_MS - (now - self._last_refresh) * 1000
        elif self._follow_to is not None:
            wait = FOLLOW_INTERVAL_MS - (now - self._last_follow) * 1000
        else:
            return
        self._timer.start(int(max(0.0, wait)))

    def _copy_pending(self, budget_s: float) -> None:
        """Copy pending volumes into their layers for about ``budget_s`` seconds.

        A large volume is copied a slab of Z planes at a time, so that no single
        event copies more than the budget allows.
        """
        deadline = time.perf_counter() + budget_s
        while self._pending:
            item = self._pending[0]
            layer, volume = item.layer, item.volume
            if not item.valid() or not self._has_layer(layer):
                self._pending.popleft()  # a cancelled run's result, a stale preview, or gone
                continue
            per_plane = max(1, volume[0].nbytes if volume.ndim else 1)
            z0 = item.z0
            z1 = min(len(volume), z0 + max(1, COPY_SLAB_BYTES // per_plane))
            if item.where is None:
                layer.data[item.t, z0:z1] = volume[z0:z1]
            else:
                wz, wy, wx = item.where
                layer.data[item.t, wz.start + z0 : wz.start + z1, wy, wx] = volume[z0:z1]
            if z1 < len(volume):
                item.z0 = z1
            else:
                self._pending.popleft()
                if item.limits is not None:
                    layer.contrast_limits_range = item.limits
                    layer.contrast_limits = item.limits
                if item.done is not None:
                    item.done(item)
                else:
                    self._dirty.setdefault(layer.unique_id, (layer, set()))[1].add(item.t)
                    self._follow_to = (layer, item.t)
            if time.perf_counter() > deadline:
                break

    def _flush(self, final: bool = False) -> None:
        """Copy pending volumes; refresh changed layers (at most every 100 ms); follow."""
        self._copy_pending(COPY_BUDGET_S)
        now = time.perf_counter()
        run = self._current
        ending = run.ending if run is not None and not self._pending else None
        last_call = final or ending is not None
        refresh_due = last_call or (now - self._last_refresh) * 1000 >= REFRESH_INTERVAL_MS
        follow_due = last_call or (now - self._last_follow) * 1000 >= FOLLOW_INTERVAL_MS
        moved = False
        if self._follow_to is not None and follow_due:
            layer, t = self._follow_to
            self._follow_to = None
            if self.follow.value and self._has_layer(layer):
                moved = self._follow(layer, t)  # re-slices every layer
                self._last_follow = now
        if self._dirty and (refresh_due or moved):
            self._last_refresh = now
            dirty, self._dirty = self._dirty, {}
            if not moved:
                for layer, times in dirty.values():
                    if self._shows_any(layer, times):
                        layer.refresh()
            shown = run or self._last
            if shown is not None and shown.first_shown_at is None:
                shown.first_shown_at = time.perf_counter()
        if ending is not None and run is not None and not final:
            run.ending = None
            self._finish_when_shown(run, *ending)
            return
        if not final:
            self._schedule_flush()

    if TYPE_CHECKING:

        def _finish_when_shown(
            self, run: Run, outcome: str, text: str, error: bool = False
        ) -> None: ...

    # -- the time axis -----------------------------------------------------------------
    def _time_axis(self, layer: Image) -> int:
        return int(self._viewer.dims.ndim - layer.ndim)

    def _follow(self, layer: Image, t: int) -> bool:
        """Move the time slider to index ``t`` of ``layer``; True when it moved."""
        axis = self._time_axis(layer)
        world_t = layer.scale[0] * t + layer.translate[0]
        step = self._viewer.dims.range[axis].step or 1.0
        start = self._viewer.dims.range[axis].start
        target = round((world_t - start) / step)
        if self._viewer.dims.current_step[axis] == target:
            return False
        self._viewer.dims.set_current_step(axis, target)
        return True

    def _time_on_screen(self, layer: Image) -> int:
        """Index along the first axis of ``layer`` that the time slider shows."""
        world_t = self._viewer.dims.point[self._time_axis(layer)]
        shown = round((world_t - layer.translate[0]) / (layer.scale[0] or 1.0))
        return int(min(max(shown, 0), layer.data.shape[0] - 1))

    def _shows_any(self, layer: Image, times: set[int]) -> bool:
        return self._time_on_screen(layer) in times
