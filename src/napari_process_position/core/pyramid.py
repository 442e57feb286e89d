"""Pyramid levels of a volume: 2x mean downsampling over Z, Y and X, as iohub 0.3.11 does.

iohub's ``Position.compute_pyramid(levels=N, method="mean")`` derives level k
from level k - 1 (a cascade). With its default backend (zarrs-python, the
numpy path of ``iohub.core.downsample.downsample_block``) an axis of odd size
is edge-padded (its last plane repeated) to an even size, each 2x2x2 block is
averaged in float64 (float32 for float32 data) and the mean is cast back to
the dtype, which truncates towards zero for integers. Level k has shape
``ceil(n / 2)`` per spatial axis of level k - 1. iohub's tensorstore backend
averages only the voxels present at an odd edge and rounds integer means, so
it differs there; we match the default. numpy only: spawned workers import it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["AUTO_MAX_YX", "auto_levels", "downsample_mean", "level_shapes", "pyramid"]

#: ``--pyramid-levels auto`` adds levels until Y and X are at most this.
AUTO_MAX_YX = 512


def level_shapes(zyx: Sequence[int], levels: int) -> list[tuple[int, int, int]]:
    """Return the ZYX shape of levels 0..levels-1 (each ``ceil(n / 2)`` of the one before).

    Examples
    --------
    >>> level_shapes((5, 64, 63), 3)
    [(5, 64, 63), (3, 32, 32), (2, 16, 16)]
    """
    z, y, x = (int(n) for n in zyx)
    shapes = [(z, y, x)]
    for _ in range(1, levels):
        z, y, x = math.ceil(z / 2), math.ceil(y / 2), math.ceil(x / 2)
        shapes.append((z, y, x))
    return shapes


def auto_levels(zyx: Sequence[int], max_yx: int = AUTO_MAX_YX) -> int:
    """Return how many levels make the last level's Y and X at most ``max_yx``.

    Examples
    --------
    >>> auto_levels((48, 2048, 2048)), auto_levels((10, 512, 300)), auto_levels((1, 513, 10))
    (3, 1, 2)
    """
    levels = 1
    y, x = int(zyx[1]), int(zyx[2])
    while y > max_yx or x > max_yx:
        y, x = math.ceil(y / 2), math.ceil(x / 2)
        levels += 1
    return levels


def _unsigned_mean(data: np.ndarray) -> np.ndarray:
    """Return iohub's mean of uint8 or uint16 (even axes), several times faster.

    Eight such values sum exactly in uint32 (and in iohub's float64), dividing by
    8 is exact there, and the cast truncates: so ``sum >> 3`` is the same value.
    X pairs are summed as the two halves of each 64-bit word.
    """
    acc = np.add(data[..., 0::2, :, :], data[..., 1::2, :, :], dtype=np.uint32)
    acc = acc[..., 0::2, :] + acc[..., 1::2, :]
    words = np.ascontiguousarray(acc).view(np.uint64)
    total = (words & 0xFFFFFFFF) + (words >> 32)
    total >>= 3
    return total.astype(data.dtype)


def downsample_mean(volume: np.ndarray) -> np.ndarray:
    """Halve the last three axes (Z, Y, X) of ``volume`` by a 2x2x2 mean, as iohub does.

    Leading axes (a channel axis) are kept. An odd axis is edge-padded first,
    so the result has ``ceil(n / 2)`` along each of the three axes.
    """
    data = np.asarray(volume)
    lead = data.ndim - 3
    pad = [(0, 0)] * lead + [(0, n % 2) for n in data.shape[lead:]]
    if any(after for _, after in pad):
        data = np.pad(data, pad, mode="edge")
    if data.dtype.kind == "u" and data.dtype.itemsize <= 2:
        return _unsigned_mean(data)
    # iohub's own expression, so float sums round the same way.
    shape: list[int] = list(data.shape[:lead])
    for n in data.shape[lead:]:
        shape += [n // 2, 2]
    axes = tuple(lead + 2 * i + 1 for i in range(3))
    return data.reshape(shape).mean(axis=axes).astype(data.dtype)  # type: ignore[no-any-return]


def pyramid(volume: np.ndarray, levels: int) -> list[np.ndarray]:
    """Return levels 1..levels-1 of ``volume`` (ZYX or CZYX), each from the one before."""
    out: list[np.ndarray] = []
    current = volume
    for _ in range(1, levels):
        current = downsample_mean(current)
        out.append(current)
    return out
