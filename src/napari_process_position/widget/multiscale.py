"""Multiscale layers: a position's resolution levels as napari shows them.

A position whose multiscale has further levels (a run's ``--pyramid-levels``,
or an input written by ome-zarr-py, ngff-zarr or ngio) is shown as a napari
multiscale layer: a list of lazy arrays, level 0 first, each a
:class:`LevelArray` over one level's array. napari picks the level that fits
the canvas in 2D and the coarsest one in 3D, and reads only that; the layer's
scale is level 0's, napari derives the others from the shapes.

What a layer shows of a time point is an :class:`OnScreen` (a level, and a Z
plane of it or the whole volume): a run reads those slices of a finished
volume back off the main thread and the layer keeps them (:func:`keep_on_screen`),
as the time follower does before the slider moves (:func:`slices_to_read`).
Qt-free.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from napari_process_position.core.pyramid import pyramid
from napari_process_position.store.layout import PositionInfo
from napari_process_position.widget.cached_array import CachedArray
from napari_process_position.widget.events import OnScreen, Shown

if TYPE_CHECKING:
    import napari
    from napari.layers import Image

__all__ = [
    "LevelArray",
    "channel_data",
    "keep_on_screen",
    "level_arrays",
    "level_plane",
    "on_screen",
    "slices_to_read",
    "write",
]


class LevelArray(CachedArray):
    """One level of a multiscale layer: a :class:`CachedArray` napari may slice in two steps.

    napari first takes the tile on screen with every non-displayed axis whole
    (``data[:, :, y0:y1, x0:x1]``), then the point. A plain :class:`CachedArray`
    would read all time points and planes of the tile at the first step; this
    one returns a lazy :class:`_Window` instead, read at the second.
    """

    def __getitem__(self, key: Any) -> Any:
        whole_t = isinstance(key, tuple) and len(key) == self.ndim and key[0] == slice(None)
        if whole_t and all(isinstance(k, slice) for k in key):
            return _Window(self, key)
        return super().__getitem__(key)


class _Window:
    """A lazy box of a :class:`LevelArray` (slices with step 1), read when indexed."""

    def __init__(self, base: LevelArray, box: tuple[slice, ...]) -> None:
        self._base = base
        self._box = [range(n)[s] for s, n in zip(box, base.shape, strict=True)]
        self.shape = tuple(len(r) for r in self._box)
        self.dtype = base.dtype
        self.ndim = len(self.shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (self.ndim - len(key))
        inner: list[Any] = []
        for index, span in zip(key, self._box, strict=True):
            picked = span[index]
            if isinstance(picked, range):
                picked = slice(picked.start, picked.stop) if picked.step == 1 else list(picked)
            inner.append(picked)
        return CachedArray.__getitem__(self._base, tuple(inner))

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return np.asarray(self[:], dtype=dtype)


def level_arrays(info: PositionInfo, channel: int, times: list[int] | None) -> list[LevelArray]:
    """Return one lazy array per resolution level of channel ``channel``, level 0 first."""
    return [LevelArray(info, channel, times, level) for level in range(info.levels)]


def channel_data(info: PositionInfo, channel: int, times: list[int] | None) -> Any:
    """Return a layer's data for ``channel``: multiscale (a list) when ``info`` has levels."""
    if info.levels > 1:
        return level_arrays(info, channel, times)
    return CachedArray(info, channel, times)


def level_plane(z: float, n0: int, n_level: int) -> int:
    """Return the Z index of level-0 plane ``z`` in a level of ``n_level`` planes, as napari does.

    Examples
    --------
    >>> level_plane(5, 10, 5), level_plane(7, 10, 3), level_plane(9, 10, 3)
    (2, 2, 2)
    """
    point = np.clip(float(z) / (n0 / n_level), 0, n_level - 1)
    return int(np.round(point))


def _z_sizes(info: PositionInfo) -> list[int]:
    return [int(info.shape[2])] + [int(g.shape[2]) for g in info.level_grids]


def on_screen(
    viewer: napari.viewer.Viewer, store: PositionInfo | None, layer: Image | None
) -> tuple[OnScreen, ...]:
    """Return what an output layer over ``store`` shows of each time point (see the module).

    In 3D the whole volume of the coarsest level; in 2D the plane on screen of
    the level napari draws and of the coarsest level (napari's thumbnail reads
    it); before ``layer`` exists, of every level (napari picks one as it draws).
    """
    dims = viewer.dims
    levels = store.levels if store is not None else 1
    if dims.ndisplay == 3:
        return (OnScreen(levels - 1, None),)
    z = int(dims.current_step[dims.ndim - 3]) if dims.ndim >= 3 else 0
    if store is None or levels == 1:
        return (OnScreen(0, z),)
    if layer is not None and layer.multiscale:
        picked = dict.fromkeys((int(layer.data_level), levels - 1))
    else:
        picked = dict.fromkeys(range(levels))
    sizes = _z_sizes(store)
    return tuple(OnScreen(k, level_plane(z, sizes[0], sizes[k])) for k in picked)


def _arrays(layer: Image) -> list[CachedArray]:
    data = layer.data
    if layer.multiscale:
        return [level for level in data if isinstance(level, CachedArray)]
    return [data] if isinstance(data, CachedArray) else []


def slices_to_read(viewer: napari.viewer.Viewer, layer: Image) -> list[tuple[CachedArray, int]]:
    """Return the arrays of ``layer`` napari reads in 2D, and the Z plane of each it would show."""
    arrays = _arrays(layer)
    if not arrays:
        return []
    step = viewer.dims.current_step
    z_axis = int(viewer.dims.ndim - layer.ndim) + 1
    z = int(step[z_axis]) if z_axis < len(step) else 0
    if len(arrays) == 1:
        return [(arrays[0], min(z, arrays[0].shape[1] - 1))]
    n0 = arrays[0].shape[1]
    picked = dict.fromkeys((int(layer.data_level), len(arrays) - 1))
    return [(arrays[k], level_plane(z, n0, arrays[k].shape[1])) for k in picked]


def keep_on_screen(
    viewer: napari.viewer.Viewer, layer: Image, t: int, volume: np.ndarray, shown: tuple[Shown, ...]
) -> None:
    """Have ``layer`` (over a store) hold what it shows at ``t``: the slices read back.

    Without any (``shown`` empty), ``volume`` is level 0's whole volume: the
    layer holds it in 3D, the plane on screen in 2D (a copy: the volume is released).
    """
    arrays = _arrays(layer)
    for item in shown:
        if item.level < len(arrays):
            where = () if item.plane is None else (item.plane,)
            arrays[item.level].keep(t, where, item.data)
    if shown or not arrays:
        return
    if viewer.dims.ndisplay == 3:
        arrays[0].keep(t, (), volume)
        return
    z = min(slices_to_read(viewer, layer)[0][1], len(volume) - 1)
    arrays[0].keep(t, (z,), np.array(volume[z]))


def write(layer: Image, t: int, key: tuple[Any, ...], value: np.ndarray, last: bool) -> None:
    """Write ``value`` into ``layer.data[t, *key]`` (a preview's volume, in memory).

    A multiscale layer gets it in level 0; with the ``last`` slab of the volume,
    the other levels are derived from it as a run writes them (2x mean, as iohub).
    """
    if not layer.multiscale:
        layer.data[(t, *key)] = value
        return
    arrays = _arrays(layer)
    arrays[0][(t, *key)] = value
    if last and len(arrays) > 1:
        for array, level in zip(arrays[1:], pyramid(arrays[0][t], len(arrays)), strict=True):
            array.replace(t, level)
