"""The layer sink: every napari layer operation of the widget, spread over the event loop.

Work arrives from the controller as requests (show these inputs, make these
outputs, copy this volume in) and is done on the main thread by a short timer,
a little per turn of the event loop, so the window never waits long:

- at most **one layer change per turn** (adding a layer costs napari a full
  window update); output layers are **reused** across runs (renamed, given new
  data) rather than removed and added again;
- volumes are copied into their layers a slab of Z planes at a time, for at
  most :data:`COPY_BUDGET_S` per turn;
- a layer is refreshed only when its **visible slice changed**, at most every
  :data:`REFRESH_INTERVAL_MS`, without recomputing its thumbnail (that is done
  once, when the run is shown); in 3D at most one layer per turn (each refresh
  uploads a whole volume);
- following the newest time point never reads the input from disk on the main
  thread: its slices are read by a background job first (:func:`.jobs.read_inputs`),
  and the input layers serve them from memory (:class:`CachedInput`). In 3D the
  slider is not moved (that would upload every layer's volume at once).
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_process_position.core.errors import InvalidArgumentError
from napari_process_position.store.colors import channel_color
from napari_process_position.store.layout import OutputLayout, PositionInfo
from napari_process_position.widget.events import Region
from napari_process_position.widget.helpers import (
    COPY_BUDGET_S,
    COPY_SLAB_BYTES,
    FOLLOW_INTERVAL_MS,
    METADATA_KEY,
    REFRESH_INTERVAL_MS,
    layer_meta,
    parse_z_range,
)
from napari_process_position.widget.jobs import input_limits, read_inputs

if TYPE_CHECKING:
    import napari
    from napari.layers import Image

    from napari_process_position.widget.controller import Launcher

__all__ = ["REGION_LAYER_NAME", "CachedInput", "LayerSink", "Outputs"]

#: The Shapes layer whose newest rectangle is the preview region.
REGION_LAYER_NAME = "preview region"
#: Tolerance, in pixels, for rectangle corners that should fall on a pixel centre.
_EPS = 1e-3
#: Input slices kept in memory per input layer (the newest ones).
_CACHE_SLICES = 4


class CachedInput:
    """An input layer's data: one channel's TZYX volumes, lazy, served from memory when read.

    napari slices it as it slices any array; a slice read ahead of time by a
    background job (:meth:`keep`) is served from memory, anything else is read
    from the store (by napari, on the main thread, as for any lazy array).
    """

    def __init__(self, info: PositionInfo, channel: int, times: list[int] | None) -> None:
        self.info = info
        self.channel = channel
        self.times = times
        self._source = info.open_array()[:, channel]
        n_t = len(times) if times is not None else info.shape[0]
        self.shape = (n_t, *info.volume_shape)
        self.dtype = np.dtype(info.dtype)
        self.ndim = 4
        self._cache: collections.OrderedDict[tuple[int, Any], np.ndarray] = (
            collections.OrderedDict()
        )

    def input_time(self, t: int) -> int:
        """Return the input time point that index ``t`` of this layer shows."""
        return int(self.times[t]) if self.times is not None else int(t)

    def keep(self, t: int, where: tuple[Any, ...], data: np.ndarray) -> None:
        """Hold ``data``, the slice ``[t, *where]`` of this layer, in memory."""
        self._cache[(int(t), where)] = data
        self._cache.move_to_end((int(t), where))
        while len(self._cache) > _CACHE_SLICES:
            self._cache.popitem(last=False)

    def has(self, t: int, where: tuple[Any, ...]) -> bool:
        """Tell whether the slice ``[t, *where]`` is in memory."""
        return (int(t), where) in self._cache

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        head = key[0]
        if isinstance(head, (int, np.integer)):
            t = int(head)
            rest = key[1:]
            for (held_t, where), data in self._cache.items():
                if held_t != t:
                    continue
                if where == ():  # a whole volume
                    return data[rest] if rest else data
                if len(rest) >= len(where) and tuple(int(i) for i in rest[: len(where)]) == where:
                    inner = rest[len(where) :]
                    return data[inner] if inner else data
            return np.asarray(self._source[(self.input_time(t), *rest)].read().result())
        if isinstance(head, slice) and self.times is not None:
            picked = list(range(self.shape[0]))[head]
            key = ([self.times[i] for i in picked], *key[1:])
        return np.asarray(self._source[key].read().result())

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return np.asarray(self[:], dtype=dtype)


@dataclass(eq=False)
class Outputs:
    """The output layers of one run or preview; a slot is None until its layer is made."""

    names: list[str]
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    scale: tuple[float, ...]
    meta: list[dict[str, Any]]
    layers: list[Image | None] = field(default_factory=list)

    def ready(self, index: int) -> bool:
        """Tell whether the layer of output ``index`` exists."""
        return self.layers[index] is not None


@dataclass(eq=False)
class _Copy:
    """A volume waiting to be copied into output ``index`` at time ``t``."""

    outputs: Outputs
    index: int
    t: int
    volume: np.ndarray
    where: tuple[slice, slice, slice] | None
    limits: tuple[float, float] | None
    valid: Callable[[], bool]
    shown: Callable[[], None] | None
    follow: bool
    z0: int = 0


class LayerSink:
    """All layer work of the widget (see the module docstring).

    Parameters
    ----------
    viewer
        The viewer to show layers in.
    launcher
        Runs background reads (the controller's launcher).
    follow
        Tells whether the view's "follow newest time point" box is ticked.
    """

    def __init__(
        self,
        viewer: napari.viewer.Viewer,
        launcher: Launcher,
        follow: Callable[[], bool],
        parent: Any = None,
    ) -> None:
        from qtpy.QtCore import QTimer

        self._viewer = viewer
        self._launcher = launcher
        self._follow_enabled = follow
        #: Layer changes to make, one per turn: (what they are for, the change).
        self._changes: collections.deque[tuple[str, Callable[[], None]]] = collections.deque()
        self._copies: collections.deque[_Copy] = collections.deque()
        #: Layer id -> (layer, time indices changed since its last refresh, shown callbacks).
        self._dirty: dict[str, tuple[Image, set[int], list[Callable[[], None]]]] = {}
        self._waiting: list[Callable[[], None]] = []
        self._follow_to: tuple[Outputs, int] | None = None
        self._reading: int | None = None
        self._stale_thumbnails: dict[str, Image] = {}
        self._last_refresh = 0.0
        self._last_follow = 0.0
        self._timer = QTimer(parent)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._turn)
        self.closed = False

    # -- input layers ------------------------------------------------------------------
    def show_inputs(
        self,
        info: PositionInfo,
        times: list[int] | None = None,
        limits: dict[int, tuple[float, float]] | None = None,
        *,
        now: bool = False,
    ) -> bool:
        """Show every channel of a position as a lazy layer (only ``times``, when given).

        A run shows the selected time points only, so that the input and the
        output layers share their first axis. Layers of another position are
        reused (renamed, given the new data), one per turn, or all at once with
        ``now`` (a position picked in the form: the layers are there when it
        returns). Returns True when a layer changes.
        """
        if times is not None and list(times) == list(range(info.shape[0])):
            times = None
        self._drop_changes("input")  # superseded: decided again from the layers as they are
        inputs = self._inputs()
        changed = False
        for c, name in enumerate(info.channel_names):
            meta = {"role": "input", "path": info.path, "channel": c, "times": times}
            layer = self._find_input(info, name) or (inputs[c] if c < len(inputs) else None)
            if layer is not None and layer_meta(layer) == meta:
                continue
            changed = True
            clim = (limits or {}).get(c)
            self._changes.append(
                ("input", partial(self._set_input, info, c, name, meta, layer, clim))
            )
        for layer in inputs[len(info.channel_names) :]:  # a position with fewer channels
            changed = True
            self._changes.append(("input", partial(self._remove, layer)))
        if now:
            for kind, change in list(self._changes):
                if kind == "input":
                    change()
            self._drop_changes("input")
        self._schedule(0)
        return changed

    def _set_input(
        self,
        info: PositionInfo,
        c: int,
        name: str,
        meta: dict[str, Any],
        layer: Image | None,
        clim: tuple[float, float] | None,
    ) -> None:
        data = CachedInput(info, c, meta["times"])
        if clim is None and (layer is None or layer_meta(layer).get("path") != info.path):
            clim = input_limits(info, [c], 0).get(c, (0.0, 1.0))
        scale = (info.scale[0], *info.scale[2:])
        if layer is None or not self._has(layer):
            self._viewer.add_image(
                data,
                name=name,
                scale=scale,
                contrast_limits=clim,
                metadata={METADATA_KEY: meta},
                colormap=channel_color(c, info.shape[1]).colormap,
                blending="additive",
                axis_labels=("t", "z", "y", "x"),
            )
            return
        layer.metadata = {**layer.metadata, METADATA_KEY: meta}
        layer.name = name
        layer.data = data
        if not np.allclose(layer.scale, scale):
            layer.scale = scale
        if clim is not None:
            layer.contrast_limits_range = clim
            layer.contrast_limits = clim

    def _inputs(self) -> list[Image]:
        found = [layer for layer in self._viewer.layers if layer_meta(layer).get("role") == "input"]
        return sorted(found, key=lambda layer: layer_meta(layer).get("channel", 0))

    def _find_input(self, info: PositionInfo, name: str) -> Image | None:
        """Find the input layer of that name, or a sample-data layer of that channel."""
        from napari_process_position.widget.sample_data import SOURCE_KEY

        for layer in self._viewer.layers:
            meta = layer_meta(layer)
            if layer.name == name and meta.get("role") == "input" and meta.get("path") == info.path:
                return layer  # type: ignore[no-any-return]
        for layer in self._viewer.layers:
            source = (layer.metadata or {}).get(SOURCE_KEY) or {}
            same = source and Path(source["store"], source["position"]) == Path(info.path)
            if same and layer.name == name:
                return layer  # type: ignore[no-any-return]
        return None

    def input_time_on_screen(self, info: PositionInfo, channels: list[int]) -> int:
        """Return the input time point the slider shows (through an input layer of ``info``)."""
        layer = None
        for c in channels:
            layer = self._find_input(info, info.channel_names[c])
            if layer is not None:
                break
        if layer is None:
            self.show_inputs(info, now=True)
            layer = self._find_input(info, info.channel_names[channels[0]])
            if layer is None:  # pragma: no cover - show_inputs adds them
                raise InvalidArgumentError(f"cannot show {info.path}")
        index = self._time_on_screen(layer)
        shown_times = layer_meta(layer).get("times")
        return int(shown_times[index]) if shown_times else index

    # -- output layers -----------------------------------------------------------------
    def _names(self, layout: OutputLayout, display: str) -> list[str]:
        return [f"{channel} [{display}]" for channel in layout.channel_names]

    def outputs(
        self, layout: OutputLayout, display: str, output: str | None, source: str
    ) -> Outputs:
        """Zero-filled output layers, one per output channel; existing ones are reused.

        ``output`` is the store written (None for a preview), ``source`` the
        input position. The layers are made (or renamed and given their new
        data) one per turn; volumes for a layer not made yet wait for it.
        """
        names = self._names(layout, display)
        meta = [
            {"role": "output", "output": output, "channel": i, "input": source}
            for i in range(len(names))
        ]
        outputs = Outputs(
            names,
            (layout.shape[0], *layout.shape[2:]),
            np.dtype(layout.dtype),
            (layout.scale[0], *layout.scale[2:]),
            meta,
            [None] * len(names),
        )
        # A new run or preview replaces what was pending for the old layers.
        self._drop_changes("output")
        self._copies.clear()
        self._dirty.clear()
        self._follow_to = None
        existing = sorted(
            (layer for layer in self._viewer.layers if layer_meta(layer).get("role") == "output"),
            key=lambda layer: (layer.name not in names, layer_meta(layer).get("channel", 0)),
        )
        by_name = {layer.name: layer for layer in existing}
        spare = [layer for layer in existing if layer.name not in names]
        for i, name in enumerate(names):
            layer = by_name.get(name) or (spare.pop(0) if spare else None)
            self._changes.append(("output", partial(self._set_output, outputs, i, layer)))
        for layer in spare:  # an earlier output with more channels
            self._changes.append(("output", partial(self._remove, layer)))
        self._schedule(0)
        return outputs

    def _set_output(self, outputs: Outputs, i: int, layer: Image | None) -> None:
        data = np.zeros(outputs.shape, outputs.dtype)  # calloc: pages appear as volumes do
        meta = {METADATA_KEY: outputs.meta[i]}
        if layer is None or not self._has(layer):
            layer = self._viewer.add_image(
                data,
                name=outputs.names[i],
                scale=outputs.scale,
                contrast_limits=(0.0, 1.0),
                metadata=meta,
                colormap=channel_color(i, len(outputs.names)).colormap,
                blending="additive",
                axis_labels=("t", "z", "y", "x"),
            )
        else:
            layer.name = outputs.names[i]
            if layer.metadata.get(METADATA_KEY) != meta[METADATA_KEY]:
                layer.metadata = meta
            if not np.allclose(layer.scale, outputs.scale):
                layer.scale = outputs.scale
            layer.data = data  # the previous run's array is released
            layer.colormap = channel_color(i, len(outputs.names)).colormap
        outputs.layers[i] = layer

    def existing_outputs(self, layout: OutputLayout, display: str, source: str) -> Outputs | None:
        """Return the output layers of this layout and input if all exist (shape and dtype)."""
        shape = (layout.shape[0], *layout.shape[2:])
        layers = []
        for name in self._names(layout, display):
            layer = self._find_output(name)
            if (
                layer is None
                or layer_meta(layer).get("input") != source
                or layer.data.shape != shape
                or np.dtype(layer.data.dtype) != np.dtype(layout.dtype)
            ):
                return None
            layers.append(layer)
        return Outputs(
            self._names(layout, display),
            shape,
            np.dtype(layout.dtype),
            (layout.scale[0], *layout.scale[2:]),
            [layer_meta(layer) for layer in layers],
            layers,
        )

    def _find_output(self, name: str) -> Image | None:
        for layer in self._viewer.layers:
            if layer.name == name and layer_meta(layer).get("role") == "output":
                return layer  # type: ignore[no-any-return]
        return None

    def _drop_changes(self, kind: str) -> None:
        self._changes = collections.deque(c for c in self._changes if c[0] != kind)

    def _remove(self, layer: Image) -> None:
        if self._has(layer):
            self._viewer.layers.remove(layer)

    def alive(self, outputs: Outputs) -> bool:
        """Tell whether every layer of ``outputs`` is (or is about to be) in the viewer."""
        return all(layer is None or self._has(layer) for layer in outputs.layers)

    def ids(self, outputs: Outputs) -> frozenset[str]:
        """Return the layers' ids (a layer not made yet counts as missing)."""
        return frozenset(layer.unique_id for layer in outputs.layers if layer is not None)

    def layer_ids(self) -> set[str]:
        """Ids of every layer in the viewer."""
        return {layer.unique_id for layer in self._viewer.layers}

    # -- volumes in ----------------------------------------------------------------------
    def put(
        self,
        outputs: Outputs,
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
        """Queue ``volume`` for output ``index`` at time ``t``; ``shown()`` once on screen."""
        self._copies.append(_Copy(outputs, index, t, volume, where, limits, valid, shown, follow))
        self._schedule(0)

    def when_shown(self, callback: Callable[[], None]) -> None:
        """Call back once every queued change and volume is in and refreshed."""
        self._waiting.append(callback)
        self._schedule(0)

    def drop_pending(self) -> None:
        """Forget the volumes not copied in yet (a cancelled run's)."""
        self._copies.clear()
        self._follow_to = None

    def flush(self) -> None:
        """Do every queued change and copy now, and refresh (the last turn of a run)."""
        while self._changes:
            self._changes.popleft()[1]()
        self._copy(budget_s=math.inf)
        self._refresh(final=True)
        self._call_waiting()

    # -- the turn of the event loop ----------------------------------------------------
    def _schedule(self, ms: float) -> None:
        if self.closed or self._timer.isActive():
            return
        self._timer.start(int(max(0.0, ms)))

    def _turn(self) -> None:
        """One turn's share of the work: one layer change, some copies, due refreshes."""
        if self.closed:
            return
        if self._changes:
            self._changes.popleft()[1]()
        else:
            self._copy(COPY_BUDGET_S)
        now = time.perf_counter()
        if self._dirty and (now - self._last_refresh) * 1000 >= REFRESH_INTERVAL_MS:
            self._refresh()
        self._maybe_follow(now)
        if not (self._changes or self._copies or self._dirty):
            self._call_waiting()
        if self._changes or self._copies:
            self._schedule(0)
        elif self._dirty:
            self._schedule(REFRESH_INTERVAL_MS - (time.perf_counter() - self._last_refresh) * 1000)
        elif self._follow_to is not None:
            self._schedule(FOLLOW_INTERVAL_MS - (time.perf_counter() - self._last_follow) * 1000)

    def _copy(self, budget_s: float) -> None:
        """Copy queued volumes for about ``budget_s`` seconds, a slab of Z planes at a time."""
        deadline = time.perf_counter() + budget_s
        blocked: list[_Copy] = []
        while self._copies:
            item = self._copies.popleft()
            layer = (
                item.outputs.layers[item.index] if item.index < len(item.outputs.layers) else None
            )
            if not item.valid() or (layer is not None and not self._has(layer)):
                continue  # a cancelled run's volume, a stale preview's, or its layer is gone
            if layer is None:
                blocked.append(item)  # its layer is made in a coming turn
                continue
            volume = item.volume
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
                self._copies.appendleft(item)
            else:
                if item.limits is not None:
                    layer.contrast_limits_range = item.limits
                    layer.contrast_limits = item.limits
                entry = self._dirty.setdefault(layer.unique_id, (layer, set(), []))
                entry[1].add(item.t)
                if item.shown is not None:
                    entry[2].append(item.shown)
                if item.follow:
                    self._follow_to = (item.outputs, item.t)
            if time.perf_counter() > deadline:
                break
        self._copies.extendleft(reversed(blocked))

    def _refresh(self, final: bool = False) -> None:
        """Refresh the layers whose visible slice changed (in 3D one a turn, but the last)."""
        self._last_refresh = time.perf_counter()
        three_d = self._viewer.dims.ndisplay == 3
        for key in list(self._dirty):
            layer, times, shown = self._dirty.pop(key)
            if not self._has(layer):
                continue
            if self._time_on_screen(layer) in times:
                layer.refresh(thumbnail=False, highlight=False, extent=False)
                self._stale_thumbnails[key] = layer
                for callback in shown:
                    callback()
                if three_d and not final:
                    break  # one volume's texture upload per turn
            else:  # not on screen: nothing to redraw; it shows when the slider gets there
                for callback in shown:
                    callback()
        if final or not self._dirty:
            for layer in self._stale_thumbnails.values():
                if self._has(layer):
                    layer.refresh(
                        thumbnail=True, highlight=False, extent=False, data_displayed=False
                    )
            self._stale_thumbnails.clear()

    def _call_waiting(self) -> None:
        waiting, self._waiting = self._waiting, []
        for callback in waiting:
            callback()

    # -- the time axis -------------------------------------------------------------------
    def follow(self, outputs: Outputs, t: int) -> None:
        """Show time ``t`` of ``outputs``: moves the time slider once its inputs are read."""
        self._follow_to = (outputs, t)
        self._last_follow = 0.0
        self._schedule(0)

    def _maybe_follow(self, now: float) -> None:
        if self._follow_to is None or (now - self._last_follow) * 1000 < FOLLOW_INTERVAL_MS:
            return
        if self._viewer.dims.ndisplay == 3 or not self._follow_enabled():
            self._follow_to = None
            return
        outputs, t = self._follow_to
        layer = next((layer for layer in outputs.layers if layer is not None), None)
        if layer is None or not self._has(layer):
            return
        if self._time_on_screen(layer) == t:
            self._follow_to = None
            return
        missing = self._unread_inputs(layer, t)
        if missing:
            if self._reading is None:  # read them in the background, then move
                self._reading = t
                info = missing[0][0].info
                requests = [(data.input_time(t), data.channel, where) for data, where in missing]
                self._launcher.start(
                    read_inputs,
                    info,
                    requests,
                    on_event=partial(self._keep_input, t, missing),
                    on_finished=self._inputs_read,
                )
            return
        self._follow_to = None
        self._last_follow = now
        self._move_to(layer, t)

    def _unread_inputs(self, layer: Image, t: int) -> list[tuple[CachedInput, tuple[int, ...]]]:
        """List the input slices that the slider's move to ``t`` would read from disk."""
        step = self._viewer.dims.current_step
        z_axis = self._time_axis(layer) + 1
        z = int(step[z_axis]) if z_axis < len(step) else 0
        missing: list[tuple[CachedInput, tuple[int, ...]]] = []
        for other in self._viewer.layers:
            data = getattr(other, "data", None)
            if isinstance(data, CachedInput) and other.visible and not data.has(t, (z,)):
                missing.append((data, (min(z, data.shape[1] - 1),)))
        return missing

    def _keep_input(
        self, t: int, missing: list[tuple[CachedInput, tuple[int, ...]]], item: Any
    ) -> None:
        t_in, channel, where, array = item
        for data, wanted in missing:
            if data.channel == channel and wanted == where and data.input_time(t) == t_in:
                data.keep(t, where, array)

    def _inputs_read(self) -> None:
        self._reading = None
        self._last_follow = 0.0
        self._schedule(0)

    def _time_axis(self, layer: Image) -> int:
        return int(self._viewer.dims.ndim - layer.ndim)

    def _move_to(self, layer: Image, t: int) -> None:
        axis = self._time_axis(layer)
        world_t = layer.scale[0] * t + layer.translate[0]
        step = self._viewer.dims.range[axis].step or 1.0
        start = self._viewer.dims.range[axis].start
        self._viewer.dims.set_current_step(axis, round((world_t - start) / step))

    def _time_on_screen(self, layer: Image) -> int:
        world_t = self._viewer.dims.point[self._time_axis(layer)]
        shown = round((world_t - layer.translate[0]) / (layer.scale[0] or 1.0))
        return int(min(max(shown, 0), layer.data.shape[0] - 1))

    def _has(self, layer: Image) -> bool:
        # By id: a plugin widget sees layers through napari's proxies, new at each access.
        return any(other.unique_id == layer.unique_id for other in self._viewer.layers)

    # -- the preview region --------------------------------------------------------------
    def offer_region_layer(self) -> None:
        """Add a Shapes layer to draw the preview region in, if there is none."""
        if not any(self._is_region_layer(layer) for layer in self._viewer.layers):
            layer = self._viewer.add_shapes(
                ndim=2,
                name=REGION_LAYER_NAME,
                edge_color="yellow",
                face_color="transparent",
                edge_width=0.5,
            )
            layer.mode = "add_rectangle"

    @staticmethod
    def _is_region_layer(layer: Any) -> bool:
        from napari.layers import Shapes

        return bool(layer.name == REGION_LAYER_NAME and isinstance(layer, Shapes))

    def _rectangle(self) -> tuple[Any, np.ndarray] | None:
        """Return the newest rectangle of the region layer: (layer, vertices in data coords)."""
        for layer in reversed(list(self._viewer.layers)):
            if not self._is_region_layer(layer):
                continue
            for kind, vertices in zip(
                reversed(layer.shape_type), reversed(layer.data), strict=True
            ):
                if kind == "rectangle":
                    return layer, np.asarray(vertices, dtype=float)
        return None

    def rectangle_drawn(self) -> bool:
        """Tell whether the region layer holds a rectangle."""
        return self._rectangle() is not None

    def preview_region(self, info: PositionInfo, z_text: str) -> tuple[Region, str]:
        """Return the region to preview in the input's voxels, and where it came from."""
        z_size, y_size, x_size = info.volume_shape
        z = parse_z_range(z_text, z_size)
        reference = self._find_input(info, info.channel_names[0])
        found = self._rectangle()
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

    def close(self) -> None:
        """Stop the timer and drop everything pending (the widget is gone)."""
        from napari_process_position.widget.qt import deleted

        self.closed = True
        if not deleted(self._timer):
            self._timer.stop()
        self._changes.clear()
        self._copies.clear()
        self._dirty.clear()
        self._waiting.clear()
