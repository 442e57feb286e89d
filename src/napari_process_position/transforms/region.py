"""Regions with a margin: what a region preview reads, and what it crops off again."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from napari_process_position.core.errors import InvalidArgumentError

__all__ = ["region_with_margin"]


def _as_bounds(item: Any, size: int, axis: str) -> tuple[int, int]:
    if item is None:
        return 0, size
    if isinstance(item, slice):
        if item.step not in (None, 1):
            raise InvalidArgumentError(f"a region's {axis} slice must have step 1, not {item.step}")
        start, stop, _ = item.indices(size)
    else:
        start, stop = (int(v) for v in item)
        start, stop = max(0, start), min(size, stop)
    if stop <= start:
        raise InvalidArgumentError(f"the region is empty along {axis} ({start}:{stop} of {size})")
    return start, stop


def region_with_margin(
    zyx_shape: Sequence[int],
    region: Sequence[slice | tuple[int, int] | None],
    margin: Sequence[int | None],
) -> tuple[tuple[slice, slice, slice], tuple[slice, slice, slice]]:
    """Grow a ZYX region by a margin, clipped to the volume.

    Parameters
    ----------
    zyx_shape
        Shape of the whole volume.
    region
        Per axis a ``slice``, a ``(start, stop)`` pair, or ``None`` (whole axis).
    margin
        Per axis voxels of context, ``None`` meaning the whole axis: what
        :meth:`TransformSpec.margin` returns.

    Returns
    -------
    read, crop
        ``read`` are the slices of the volume to read and transform; ``crop``
        are the slices of the transform's output (relative to ``read``) that
        hold ``region``.

    Examples
    --------
    >>> region_with_margin((16, 128, 128), [None, (40, 60), (0, 10)], (0, 4, 4))
    ((slice(0, 16, None), slice(36, 64, None), slice(0, 14, None)), \
(slice(0, 16, None), slice(4, 24, None), slice(0, 10, None)))
    """
    if len(zyx_shape) != 3 or len(region) != 3 or len(margin) != 3:
        raise InvalidArgumentError("zyx_shape, region and margin each need three entries (z, y, x)")
    read: list[slice] = []
    crop: list[slice] = []
    for size, item, pad, axis in zip(zyx_shape, region, margin, "zyx", strict=True):
        start, stop = _as_bounds(item, int(size), axis)
        if pad is None:
            lo, hi = 0, int(size)
        else:
            if pad < 0:
                raise InvalidArgumentError(f"a margin must be >= 0, not {pad} along {axis}")
            lo, hi = max(0, start - int(pad)), min(int(size), stop + int(pad))
        read.append(slice(lo, hi))
        crop.append(slice(start - lo, stop - lo))
    return (read[0], read[1], read[2]), (crop[0], crop[1], crop[2])
