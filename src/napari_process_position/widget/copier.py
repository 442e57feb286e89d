"""Volumes into their output layers, and the refreshes that put them on screen.

The layer sink (:mod:`.sink`) owns the turn of the event loop and gives the
:class:`VolumeCopier` its share of it; the copier keeps what that share works
through, so that a turn stays short:

- volumes are copied into their layers a slab of Z planes at a time
  (:data:`.helpers.COPY_SLAB_BYTES`), for at most a given budget per turn;
- a volume already in the store under a lazy layer (a run's) is not copied:
  the layer keeps the slices on screen that the run's job read back
  (:func:`.multiscale.keep_on_screen`);
- a layer is refreshed only when its **visible slice changed**, at most every
  :data:`.helpers.REFRESH_INTERVAL_MS`, without recomputing its thumbnail; in
  3D one layer per turn (each refresh uploads a whole volume);
- thumbnails are recomputed once, when volumes stop coming for
  :data:`THUMBNAIL_IDLE_S` or a run ends.

Qt-free: the sink's timer calls it.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from napari_process_position.widget import layers, multiscale
from napari_process_position.widget.events import Shown
from napari_process_position.widget.layers import Outputs

if TYPE_CHECKING:
    import napari
    from napari.layers import Image

__all__ = [
    "COPY_SLAB_BYTES",
    "REFRESH_INTERVAL_MS",
    "THUMBNAIL_IDLE_S",
    "PendingVolume",
    "VolumeCopier",
]

#: Layers are refreshed at most this often (20 times a second).
REFRESH_INTERVAL_MS = 50
#: Finished volumes are copied into their layers in slabs of Z planes of about this size.
COPY_SLAB_BYTES = 4 << 20

#: Thumbnails are recomputed once no volume has come in for this long (or a run ends).
THUMBNAIL_IDLE_S = 1.0


@dataclass(eq=False)
class PendingVolume:
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
    #: The first Z plane not copied in yet.
    z0: int = 0


class VolumeCopier:
    """Copies queued volumes into their layers and refreshes them (see the module docstring).

    Parameters
    ----------
    viewer
        The viewer that holds the output layers.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self._viewer = viewer
        self._copies: collections.deque[PendingVolume] = collections.deque()
        #: Layer id -> (layer, time indices changed since its last refresh, shown callbacks).
        self._dirty: dict[str, tuple[Image, set[int], list[Callable[[], None]]]] = {}
        self._stale_thumbnails: dict[str, Image] = {}
        self._last_refresh = 0.0

    @property
    def copying(self) -> bool:
        """True while a volume waits to be copied in."""
        return bool(self._copies)

    @property
    def refreshing(self) -> bool:
        """True while a layer waits for its refresh."""
        return bool(self._dirty)

    @property
    def thumbnails_stale(self) -> bool:
        """True while a refreshed layer's thumbnail is not recomputed yet."""
        return bool(self._stale_thumbnails)

    def idle_s(self) -> float:
        """Return the seconds since the last refresh."""
        return time.perf_counter() - self._last_refresh

    def refresh_due(self, now: float) -> bool:
        """Tell whether a layer waits for its refresh and the interval has passed."""
        return bool(self._dirty) and (now - self._last_refresh) * 1000 >= REFRESH_INTERVAL_MS

    def add(self, item: PendingVolume) -> None:
        """Queue ``item`` behind the volumes already waiting."""
        self._copies.append(item)

    def drop_copies(self) -> None:
        """Forget the volumes not copied in yet (a cancelled run's)."""
        self._copies.clear()

    def clear(self) -> None:
        """Forget the volumes not copied in and the refreshes not done (new layers replace them)."""
        self._copies.clear()
        self._dirty.clear()

    def copy(self, budget_s: float) -> tuple[Outputs, int] | None:
        """Copy queued volumes for about ``budget_s`` seconds, a slab of Z planes at a time.

        Returns the newest time point to follow (the last volume copied in whole
        that asks for it), or None.
        """
        deadline = time.perf_counter() + budget_s
        newest: tuple[Outputs, int] | None = None
        blocked: list[PendingVolume] = []
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
                    newest = (item.outputs, item.t)
            if time.perf_counter() > deadline:
                break
        self._copies.extendleft(reversed(blocked))
        return newest

    def refresh(self, final: bool = False) -> None:
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
            self.update_thumbnails()

    def update_thumbnails(self) -> None:
        """Recompute the thumbnails of the layers refreshed without one, once.

        A thumbnail costs a zoom of the slice, in 3D a max over the volume: it is
        done when a run ends or volumes stop coming, not for every volume.
        """
        for layer in self._stale_thumbnails.values():
            if layers.has(self._viewer, layer):
                layer.refresh(thumbnail=True, highlight=False, extent=False, data_displayed=False)
        self._stale_thumbnails.clear()
