"""Contrast limits for the widget's layers: from a volume, or from a small level of the input.

Qt-free: the run's and the comparison's jobs compute them off the main thread,
the reader when it makes a position's layers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from napari_process_position.store.layout import PositionInfo

__all__ = ["CONTRAST_MIN_PIXELS", "contrast_level", "display_limits", "input_limits"]

#: Contrast limits are computed from the coarsest level with at least this many Y*X pixels.
CONTRAST_MIN_PIXELS = 256 * 256


def display_limits(volume: np.ndarray) -> tuple[float, float] | None:
    """Contrast limits from a subsample of a volume: robust percentiles, never zero-width."""
    flat = np.asarray(volume).reshape(-1)
    if flat.size == 0:
        return None
    step = max(1, flat.size // 250_000)
    sample = flat[::step].astype(np.float64, copy=False)
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return None
    lo, hi = np.percentile(sample, [0.1, 99.9])
    if not hi > lo:
        lo, hi = float(sample.min()), float(sample.max())
    if not hi > lo:
        hi = lo + 1.0
    return float(lo), float(hi)


def contrast_level(info: PositionInfo) -> int:
    """Return the level of position ``info`` to compute contrast limits from: a small one."""
    for level in range(info.levels - 1, 0, -1):
        y, x = info.level_grids[level - 1].shape[3:]
        if int(y) * int(x) >= CONTRAST_MIN_PIXELS:
            return level
    return 0


def input_limits(
    info: PositionInfo, channels: Sequence[int], t: int
) -> dict[int, tuple[float, float]]:
    """Contrast limits of the input channels from one Z plane each, of a small level if any."""
    level = contrast_level(info)
    source = info.open_level(level)
    z = int(source.shape[2]) // 2
    limits = {}
    for c in channels:
        found = display_limits(source[t, c, z].read().result())
        if found is not None:
            limits[c] = found
    return limits
