"""The layer sink: every napari layer operation of the widget, spread over the event loop.

Work arrives from the controller as requests (show these inputs, make these
outputs, copy this volume in) and is done on the main thread by a short timer,
a little per turn of the event loop, so the window never waits long:

- at most **one layer change per turn** (adding a layer costs napari a full
  window update); output layers are **reused** across runs (renamed, given new
  data) rather than removed and added again;
- volumes are copied into their layers for at most :data:`.helpers.COPY_BUDGET_S`
  per turn, and a layer is refreshed only when its **visible slice changed**
  (:class:`.copier.VolumeCopier`, which also keeps, rather than copies, a volume
  that a run wrote to the store its layers view lazily);
- following the newest time point never reads from disk on the main thread
  (:class:`.follow.TimeFollower`: the slices it would show are read by a
  background job first). In 3D the slider is not moved.
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_process_position.core.errors import InvalidArgumentError
from napari_process_position.store.layout import OutputLayout, PositionInfo
from napari_process_position.widget import layers, multiscale, region
from napari_process_position.widget.copier import (
    REFRESH_INTERVAL_MS,
    THUMBNAIL_IDLE_S,
    PendingVolume,
    VolumeCopier,
)
from napari_process_position.widget.events import OnScreen, Region, Shown
from napari_process_position.widget.follow import TimeFollower
from napari_process_position.widget.layers import Outputs, layer_meta

if TYPE_CHECKING:
    import napari

    from napari_process_position.widget.ports import Launcher

__all__ = ["COPY_BUDGET_S", "LayerSink"]

#: Main-thread time spent copying finished volumes into layers per turn of the event loop.
COPY_BUDGET_S = 0.015


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
        self._copier = VolumeCopier(viewer)
        self._waiting: list[Callable[[], None]] = []
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
        self._copier.clear()
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
        self._copier.add(
            PendingVolume(
                outputs, index, t, volume, where, limits, valid, shown, follow, stored, read_back
            )
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
        self._copier.drop_copies()
        self._follower.clear()

    def flush(self) -> None:
        """Do every queued change and copy now, and refresh (the last turn of a run)."""
        while self._changes:
            self._changes.popleft()[1]()
        self._follow_newest(self._copier.copy(budget_s=math.inf))
        self._copier.refresh(final=True)
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
            self._follow_newest(self._copier.copy(COPY_BUDGET_S))
        now = time.perf_counter()
        if self._copier.refresh_due(now):
            self._copier.refresh()
        else:  # (a refresh and a slider move each make napari redraw: not in one turn)
            self._follower.step(now)
        idle_s = self._copier.idle_s()
        if not (self._changes or self._copier.copying or self._copier.refreshing):
            if self._copier.thumbnails_stale and (self._waiting or idle_s >= THUMBNAIL_IDLE_S):
                self._copier.update_thumbnails()
            self._call_waiting()
        if self._changes or self._copier.copying:
            self._schedule(0)
        elif self._copier.refreshing:
            self._schedule(REFRESH_INTERVAL_MS - idle_s * 1000)
        elif self._follower.pending:
            self._schedule(self._follower.wait_ms())
        elif self._copier.thumbnails_stale:
            self._schedule((THUMBNAIL_IDLE_S - idle_s) * 1000)

    def _call_waiting(self) -> None:
        waiting, self._waiting = self._waiting, []
        for callback in waiting:
            callback()

    # -- the time axis -------------------------------------------------------------------
    def _follow_newest(self, newest: tuple[Outputs, int] | None) -> None:
        """Aim the time slider at the newest volume copied in (None: no new one asks for it)."""
        if newest is not None:
            self._follower.target = newest

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
        self._copier.clear()
        self._waiting.clear()
