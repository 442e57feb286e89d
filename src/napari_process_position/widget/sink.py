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
- the output layers of a run that writes a store are lazy views of it
  (:class:`.cached_array.CachedArray`): a finished volume, read back by the
  run's job, is not copied in; the layer keeps the slice on screen (the whole
  volume in 3D) and is refreshed;
- following the newest time point never reads from disk on the main thread:
  the slices it would show are read by a background job first
  (:func:`.jobs.read_slices`), and the layers serve them from memory. In 3D the
  slider is not moved (that would upload every layer's volume at once).
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_process_position.core.errors import InvalidArgumentError
from napari_process_position.store.layout import OutputLayout, PositionInfo
from napari_process_position.widget import layers, multiscale, region
from napari_process_position.widget.events import OnScreen, Region, Shown
from napari_process_position.widget.follow import TimeFollower
from napari_process_position.widget.helpers import (
    COPY_BUDGET_S,
    COPY_SLAB_BYTES,
    REFRESH_INTERVAL_MS,
    layer_meta,
)
from napari_process_position.widget.layers import Outputs

if TYPE_CHECKING:
    import napari
    from napari.layers import Image

    from napari_process_position.widget.ports import Launcher

__all__ = ["THUMBNAIL_IDLE_S", "LayerSink"]

#: Thumbnails are recomputed once no volume has come in for this long (or a run ends).
THUMBNAIL_IDLE_S = 1.0


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
    #: The volume is in the layer's store already (a run's): keep what is on screen.
    stored: bool = False
    #: What was read back of a stored volume (``volume`` is the first of them).
    read_back: tuple[Shown, ...] = ()
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
        self._follower = TimeFollower(viewer, launcher, follow, lambda: self._schedule(0))
        #: Layer changes to make, one per turn: (what they are for, the change).
        self._changes: collections.deque[tuple[str, Callable[[], None]]] = collections.deque()
        self._copies: collections.deque[_Copy] = collections.deque()
        #: Layer id -> (layer, time indices changed since its last refresh, shown callbacks).
        self._dirty: dict[str, tuple[Image, set[int], list[Callable[[], None]]]] = {}
        self._waiting: list[Callable[[], None]] = []
        self._stale_thumbnails: dict[str, Image] = {}
        self._last_refresh = 0.0
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
        inputs = layers.input_layers(self._viewer)
        changed = False
        for c, name in enumerate(info.channel_names):
            meta = {"role": "input", "path": info.path, "channel": c, "times": times}
            layer = layers.find_input(self._viewer, info, name) or (
                inputs[c] if c < len(inputs) else None
            )
            if layer is not None and layer_meta(layer) == meta:
                continue
            changed = True
            clim = (limits or {}).get(c)
            self._changes.append(
                ("input", partial(layers.set_input, self._viewer, info, c, name, meta, layer, clim))
            )
        for layer in inputs[len(info.channel_names) :]:  # a position with fewer channels
            changed = True
            self._changes.append(("input", partial(layers.remove, self._viewer, layer)))
        if now:
            for kind, change in list(self._changes):
                if kind == "input":
                    change()
            self._drop_changes("input")
        self._schedule(0)
        return changed

    def inputs_shown(self, info: PositionInfo, channels: list[int]) -> bool:
        """Tell whether a layer shows one of ``channels`` of ``info`` (adds nothing)."""
        return layers.shown_input(self._viewer, info, channels) is not None

    def input_time_on_screen(self, info: PositionInfo, channels: list[int]) -> int:
        """Return the input time point the slider shows, through an input layer (adds nothing).

        Raises
        ------
        InvalidArgumentError
            No layer shows ``channels`` of ``info``: :meth:`show_inputs` first.
        """
        layer = layers.shown_input(self._viewer, info, channels)
        if layer is None:
            raise InvalidArgumentError(f"no layer shows {info.path}: show its channels first")
        return layers.input_time(self._viewer, layer)

    # -- output layers -----------------------------------------------------------------
    def outputs(
        self,
        layout: OutputLayout,
        display: str,
        output: str | None,
        source: str,
        *,
        store: PositionInfo | None = None,
    ) -> Outputs:
        """Output layers, one per output channel; existing ones are reused.

        ``output`` is the store written (None for a preview), ``source`` the input
        position, ``store`` the output position written (the layers are lazy views of
        it, else zeros in memory). Layers are made (or renamed and given new data) one
        per turn; volumes for a layer not made yet wait for it.
        """
        outputs = layers.new_outputs(layout, display, output, source, store)
        # A new run or preview replaces what was pending for the old layers.
        self._drop_changes("output")
        self._copies.clear()
        self._dirty.clear()
        self._follower.clear()
        reused, spare = layers.reusable_outputs(
            self._viewer, outputs.names, bool(store and store.levels > 1)
        )
        for layer in spare:  # an earlier output with more channels, or levels (or none)
            self._changes.append(("output", partial(layers.remove, self._viewer, layer)))
        for i, layer in enumerate(reused):
            outputs.adding += layer is None
            self._changes.append(
                ("output", partial(layers.set_output, self._viewer, outputs, i, layer))
            )
        self._schedule(0)
        return outputs

    def existing_outputs(self, layout: OutputLayout, display: str, source: str) -> Outputs | None:
        """Return the output layers of this layout and input if all exist (shape and dtype)."""
        return layers.existing_outputs(self._viewer, layout, display, source)

    def _drop_changes(self, kind: str) -> None:
        self._changes = collections.deque(c for c in self._changes if c[0] != kind)

    def alive(self, outputs: Outputs) -> bool:
        """Tell whether every layer of ``outputs`` is (or is about to be) in the viewer."""
        return all(layer is None or layers.has(self._viewer, layer) for layer in outputs.layers)

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
        stored: bool = False,
        read_back: tuple[Shown, ...] = (),
    ) -> None:
        """Queue ``volume`` for output ``index`` at time ``t``; ``shown()`` once on screen.

        ``stored``: the volume is in the output store already (a run's); a layer
        over that store keeps only the slices on screen (``read_back``), nothing is copied.
        """
        self._copies.append(
            _Copy(outputs, index, t, volume, where, limits, valid, shown, follow, stored, read_back)
        )
        self._schedule(0)

    def on_screen(self, outputs: Outputs | None) -> tuple[OnScreen, ...]:
        """Return what the output layers show of a time point (a level's plane, or volume)."""
        made = [layer for layer in outputs.layers if layer is not None] if outputs else []
        store = outputs.store if outputs is not None else None
        return multiscale.on_screen(self._viewer, store, made[0] if made else None)

    def when_shown(self, callback: Callable[[], None]) -> None:
        """Call back once every queued change and volume is in and refreshed."""
        self._waiting.append(callback)
        self._schedule(0)

    def drop_pending(self) -> None:
        """Forget the volumes not copied in yet (a cancelled run's)."""
        self._copies.clear()
        self._follower.clear()

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
        else:  # (a refresh and a slider move each make napari redraw: not in one turn)
            self._follower.step(now)
        idle_s = time.perf_counter() - self._last_refresh
        if not (self._changes or self._copies or self._dirty):
            if self._stale_thumbnails and (self._waiting or idle_s >= THUMBNAIL_IDLE_S):
                self._update_thumbnails()
            self._call_waiting()
        if self._changes or self._copies:
            self._schedule(0)
        elif self._dirty:
            self._schedule(REFRESH_INTERVAL_MS - idle_s * 1000)
        elif self._follower.pending:
            self._schedule(self._follower.wait_ms())
        elif self._stale_thumbnails:
            self._schedule((THUMBNAIL_IDLE_S - idle_s) * 1000)

    def _copy(self, budget_s: float) -> None:
        """Copy queued volumes for about ``budget_s`` seconds, a slab of Z planes at a time."""
        deadline = time.perf_counter() + budget_s
        blocked: list[_Copy] = []
        while self._copies:
            item = self._copies.popleft()
            layer = (
                item.outputs.layers[item.index] if item.index < len(item.outputs.layers) else None
            )
            if not item.valid() or (layer is not None and not layers.has(self._viewer, layer)):
                continue  # a cancelled run's volume, a stale preview's, or its layer is gone
            if layer is None:
                blocked.append(item)  # its layer is made in a coming turn
                continue
            volume, z0, z1 = item.volume, item.z0, len(item.volume)
            if item.stored and not isinstance(layer.data, np.ndarray):
                multiscale.keep_on_screen(self._viewer, layer, item.t, volume, item.read_back)
            else:  # a slab of planes (into a region, for a region preview)
                per_plane = max(1, volume[0].nbytes if volume.ndim else 1)
                z1 = min(len(volume), z0 + max(1, COPY_SLAB_BYTES // per_plane))
                wz, wy, wx = item.where or (slice(0, None), slice(None), slice(None))
                box = (slice(wz.start + z0, wz.start + z1), wy, wx)
                multiscale.write(layer, item.t, box, volume[z0:z1], z1 == len(volume))
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
                    self._follower.target = (item.outputs, item.t)
            if time.perf_counter() > deadline:
                break
        self._copies.extendleft(reversed(blocked))

    def _refresh(self, final: bool = False) -> None:
        """Refresh the layers whose visible slice changed (in 3D one a turn, but the last)."""
        self._last_refresh = time.perf_counter()
        three_d = self._viewer.dims.ndisplay == 3
        for key in list(self._dirty):
            layer, times, shown = self._dirty.pop(key)
            if not layers.has(self._viewer, layer):
                continue
            if layers.time_on_screen(self._viewer, layer) in times:
                layer.refresh(thumbnail=False, highlight=False, extent=False)
                self._stale_thumbnails[key] = layer
                for callback in shown:
                    callback()
                if three_d and not final:
                    break  # one volume's texture upload per turn
            else:  # not on screen: nothing to redraw; it shows when the slider gets there
                for callback in shown:
                    callback()
        if final:
            self._update_thumbnails()

    def _update_thumbnails(self) -> None:
        """Recompute the thumbnails of the layers refreshed without one, once.

        A thumbnail costs a zoom of the slice, in 3D a max over the volume: it is
        done when a run ends or volumes stop coming, not for every volume.
        """
        for layer in self._stale_thumbnails.values():
            if layers.has(self._viewer, layer):
                layer.refresh(thumbnail=True, highlight=False, extent=False, data_displayed=False)
        self._stale_thumbnails.clear()

    def _call_waiting(self) -> None:
        waiting, self._waiting = self._waiting, []
        for callback in waiting:
            callback()

    # -- the time axis -------------------------------------------------------------------
    def stop_following(self) -> None:
        """Forget a pending move of the time slider (a run ended: the slider is the user's)."""
        self._follower.clear()

    def follow(self, outputs: Outputs, t: int) -> None:
        """Show time ``t`` of ``outputs``: moves the time slider once its inputs are read."""
        self._follower.request(outputs, t)
        self._schedule(0)

    # -- the preview region --------------------------------------------------------------
    def offer_region_layer(self) -> None:
        """Add a Shapes layer to draw the preview region in, if there is none."""
        region.offer_region_layer(self._viewer)

    def rectangle_drawn(self) -> bool:
        """Tell whether the region layer holds a rectangle."""
        return region.newest_rectangle(self._viewer) is not None

    def preview_region(self, info: PositionInfo, z_text: str) -> tuple[Region, str]:
        """Return the region to preview in the input's voxels, and where it came from."""
        reference = layers.find_input(self._viewer, info, info.channel_names[0])
        return region.preview_region(self._viewer, reference, info, z_text)

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
