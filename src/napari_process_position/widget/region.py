"""The preview region: the newest rectangle of a Shapes layer, or the part of the image in view.

Functions of the viewer, called on the main thread by the layer sink; the
region comes back in the input's voxels, ``(z, y, x)`` with each axis
``(start, stop)``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_process_position.core.errors import InvalidArgumentError
from napari_process_position.core.ranges import parse_ranges
from napari_process_position.store.layout import PositionInfo
from napari_process_position.widget.events import Region

if TYPE_CHECKING:
    import napari
    from napari.layers import Image

__all__ = [
    "REGION_LAYER_NAME",
    "is_region_layer",
    "newest_rectangle",
    "offer_region_layer",
    "preview_region",
]

#: The Shapes layer whose newest rectangle is the preview region.
REGION_LAYER_NAME = "preview region"
#: Tolerance, in pixels, for rectangle corners that should fall on a pixel centre.
_EPS = 1e-3


def parse_z_range(text: str, n_z: int) -> tuple[int, int] | None:
    """Z planes ``(start, stop)`` from ``"all"``/``""`` (None), ``"5"`` or ``"4-9"`` (inclusive).

    Read by the one range parser (:func:`..core.ranges.parse_ranges`); the
    planes must be one unbroken range.

    Raises
    ------
    InvalidArgumentError
        Unreadable text, planes outside ``0 .. n_z - 1``, or a broken range.
    """
    planes = parse_ranges(text, "Z plane", n_z)
    if planes is None:
        return None
    if planes != list(range(planes[0], planes[0] + len(planes))):
        raise InvalidArgumentError(
            f"Z range {text!r}: give one plane such as '5' or one inclusive range such as '4-9'"
        )
    return planes[0], planes[-1] + 1


def is_region_layer(layer: Any) -> bool:
    """Tell whether ``layer`` is the Shapes layer the region is drawn in.

    Returns
    -------
    bool
        True for a Shapes layer named :data:`REGION_LAYER_NAME`.
    """
    from napari.layers import Shapes

    return bool(layer.name == REGION_LAYER_NAME and isinstance(layer, Shapes))


def offer_region_layer(viewer: napari.viewer.Viewer) -> None:
    """Add a Shapes layer to draw the preview region in (in rectangle mode), if there is none."""
    if not any(is_region_layer(layer) for layer in viewer.layers):
        layer = viewer.add_shapes(
            ndim=2,
            name=REGION_LAYER_NAME,
            edge_color="yellow",
            face_color="transparent",
            edge_width=0.5,
        )
        layer.mode = "add_rectangle"


def newest_rectangle(viewer: napari.viewer.Viewer) -> tuple[Any, np.ndarray] | None:
    """Return the newest rectangle of the region layer.

    Returns
    -------
    tuple or None
        ``(the Shapes layer, its vertices in the layer's data coordinates)``,
        or None when no rectangle is drawn.
    """
    for layer in reversed(list(viewer.layers)):
        if not is_region_layer(layer):
            continue
        for kind, vertices in zip(reversed(layer.shape_type), reversed(layer.data), strict=True):
            if kind == "rectangle":
                return layer, np.asarray(vertices, dtype=float)
    return None


def preview_region(
    viewer: napari.viewer.Viewer, reference: Image | None, info: PositionInfo, z_text: str
) -> tuple[Region, str]:
    """Return the region to preview in the input's voxels, and where it came from.

    Parameters
    ----------
    viewer
        The viewer with the region layer (if any).
    reference
        An input layer of ``info``: maps world coordinates to voxels.
    info
        The input position.
    z_text
        The Z range the form holds (``all``, ``10-20``).

    Returns
    -------
    tuple
        ``(region, "rectangle")`` for the pixels whose centres lie in the newest
        rectangle, else ``(region, "view")`` for the part of the image in view.

    Raises
    ------
    InvalidArgumentError
        The rectangle lies outside the volume, or the Z range is invalid.
    """
    z_size, y_size, x_size = info.volume_shape
    z = parse_z_range(z_text, z_size)
    found = newest_rectangle(viewer)
    if found is not None and reference is not None:
        shapes, vertices = found
        world_ndim = viewer.dims.ndim
        corners = []
        for vertex in vertices:
            world = np.asarray(shapes.data_to_world(vertex), dtype=float)
            full = np.array(viewer.dims.point, dtype=float)
            full[world_ndim - len(world) :] = world
            corners.append(np.asarray(reference.world_to_data(full), dtype=float)[-2:])
        low, high = np.min(corners, axis=0), np.max(corners, axis=0)
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
