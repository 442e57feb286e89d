"""napari reader for OME-Zarr positions and plates: one lazy image layer per channel.

Qt-free: it returns napari's LayerData tuples and imports nothing from napari,
so ``process-position gui OUT`` (or File > Open) shows a run's output with its
channel names and voxel size. A position with resolution levels (a run's
``--pyramid-levels``, or a store ome-zarr-py, ngff-zarr or ngio wrote) gives
multiscale layers: napari reads a small level for a zoomed-out or 3D view.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from napari_process_position.core.errors import ProcessPositionError
from napari_process_position.store.colors import channel_color
from napari_process_position.store.layout import PositionInfo
from napari_process_position.store.metadata import open_store, read_position
from napari_process_position.widget.contrast import contrast_level

__all__ = ["LayerData", "layer_data", "napari_get_reader"]

LayerData = tuple[Any, dict[str, Any], str]


def _contrast(source: Any, info: PositionInfo, c: int) -> tuple[float, float]:
    """Contrast limits from the middle plane of the first non-empty time point (of ``source``)."""
    z = int(source.shape[2]) // 2
    for t in range(min(info.shape[0], 4)):
        plane = np.asarray(source[t, c, z].read().result(), dtype=np.float64)
        finite = plane[np.isfinite(plane)]
        if finite.size and finite.max() > finite.min():
            lo, hi = np.percentile(finite, (0.5, 99.8))
            return (float(lo), float(hi if hi > lo else finite.max()))
    return (0.0, 1.0)


def layer_data(path: str | os.PathLike[str], key: str | None = None) -> list[LayerData]:
    """Make lazy layers for position ``path``, or for ``key`` (default: the first) of a plate."""
    store = open_store(path)
    key = key or store.position_keys[0]
    info = read_position(store.position_path(key), key)
    levels = [info.open_level(level) for level in range(info.levels)]
    small = levels[contrast_level(info)]
    scale, translate = info.world()
    prefix = f"{key} " if store.kind == "plate" and len(store.position_keys) > 1 else ""
    layers: list[LayerData] = []
    for c, name in enumerate(info.channel_names):
        layers.append(
            (
                [level[:, c] for level in levels] if len(levels) > 1 else levels[0][:, c],
                {
                    "multiscale": len(levels) > 1,
                    "name": f"{prefix}{name}",
                    "scale": (scale[0], *scale[2:]),
                    "translate": (translate[0], *translate[2:]),
                    "contrast_limits": _contrast(small, info, c),
                    "colormap": channel_color(c, info.shape[1]).colormap,
                    "blending": "additive",
                    "axis_labels": ("t", "z", "y", "x"),
                    "metadata": {"npp_source": {"path": info.path, "key": key, "channel": c}},
                },
                "image",
            )
        )
    return layers


def napari_get_reader(path: str | list[str]) -> Callable[[str], list[LayerData]] | None:
    """Return a reader when ``path`` is an OME-Zarr plate or position we can read, else None."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    try:
        open_store(path)
    except (ProcessPositionError, OSError):
        return None
    return lambda p: layer_data(p[0] if isinstance(p, list) else p)
