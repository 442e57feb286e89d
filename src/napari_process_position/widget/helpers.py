"""Constants and small Qt-free helpers of the widget: text parsing, contrast limits, durations."""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_process_position.core.durations import seconds_text  # re-exported: the widget's name
from napari_process_position.core.errors import InvalidArgumentError
from napari_process_position.core.ranges import parse_ranges

__all__ = [
    "CONTRAST_MIN_PIXELS",
    "COPY_BUDGET_S",
    "COPY_SLAB_BYTES",
    "FOLLOW_INTERVAL_MS",
    "METADATA_KEY",
    "REFRESH_INTERVAL_MS",
    "contrast_level",
    "display_limits",
    "layer_meta",
    "parse_z_range",
    "seconds_text",
]

#: Layers are refreshed at most this often (20 times a second).
REFRESH_INTERVAL_MS = 50
#: Main-thread time spent copying finished volumes into layers per event ...
COPY_BUDGET_S = 0.015
#: ... in slabs of Z planes of about this size.
COPY_SLAB_BYTES = 4 << 20
#: The follow option moves the time slider (re-slicing every layer) at most this often.
FOLLOW_INTERVAL_MS = 500
#: Contrast limits are computed from the coarsest level with at least this many Y*X pixels.
CONTRAST_MIN_PIXELS = 256 * 256
#: Marks the layers this widget made, in ``layer.metadata``.
METADATA_KEY = "napari_process_position"


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


def contrast_level(info: Any) -> int:
    """Return the level of position ``info`` to compute contrast limits from: a small one."""
    for level in range(info.levels - 1, 0, -1):
        y, x = info.level_grids[level - 1].shape[3:]
        if int(y) * int(x) >= CONTRAST_MIN_PIXELS:
            return level
    return 0


def layer_meta(layer: Any) -> dict[str, Any]:
    """Return what this widget recorded about a layer (empty for other layers)."""
    return (getattr(layer, "metadata", None) or {}).get(METADATA_KEY) or {}
