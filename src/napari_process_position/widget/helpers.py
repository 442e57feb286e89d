"""Constants and small Qt-free helpers of the widget: text parsing, contrast limits, durations."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "COPY_BUDGET_S",
    "COPY_SLAB_BYTES",
    "FOLLOW_INTERVAL_MS",
    "METADATA_KEY",
    "REFRESH_INTERVAL_MS",
    "display_limits",
    "layer_meta",
    "parse_times",
    "parse_z_range",
    "seconds_text",
]

#: At most one refresh per layer in this many milliseconds.
REFRESH_INTERVAL_MS = 100
#: Main-thread time spent copying finished volumes into layers per event ...
COPY_BUDGET_S = 0.025
#: ... in slabs of Z planes of about this size.
COPY_SLAB_BYTES = 4 << 20
#: The follow option moves the time slider (re-slicing every layer) at most this often.
FOLLOW_INTERVAL_MS = 500
#: Marks the layers this widget made, in ``layer.metadata``.
METADATA_KEY = "napari_process_position"


def parse_times(text: str, n_times: int) -> list[int] | None:
    """Time points from ``"all"``, ``""`` (None: all) or ``"0-3,7"`` (inclusive ranges).

    Raises
    ------
    ValueError
        Unreadable text, an index outside ``0 .. n_times - 1``, or a repeat.
    """
    text = (text or "").strip().lower()
    if text in ("", "all", "*"):
        return None
    times: list[int] = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        try:
            if "-" in part[1:]:
                start_text, _, stop_text = part.partition("-") if part[0] != "-" else ("", "", "")
                start, stop = int(start_text), int(stop_text)
                if stop < start:
                    raise ValueError
                times.extend(range(start, stop + 1))
            else:
                times.append(int(part))
        except ValueError:
            raise ValueError(
                f"cannot read the time points {text!r}: write 'all', or indices and inclusive "
                "ranges such as '0-3,7'"
            ) from None
    bad = [t for t in times if not 0 <= t < n_times]
    if bad:
        raise ValueError(
            f"time point {bad[0]} does not exist: the position has {n_times} (0 to {n_times - 1})"
        )
    repeated = sorted({t for t in times if times.count(t) > 1})
    if repeated:
        raise ValueError(f"time points repeat: {repeated}")
    if not times:
        raise ValueError(f"{text!r} selects no time point")
    return times


def parse_z_range(text: str, n_z: int) -> tuple[int, int] | None:
    """Z planes ``(start, stop)`` from ``"all"``/``""`` (None), ``"5"`` or ``"4-9"`` (inclusive).

    Raises
    ------
    ValueError
        Unreadable text, or planes outside ``0 .. n_z - 1``.
    """
    text = (text or "").strip().lower().replace(" ", "")
    if text in ("", "all", "*"):
        return None
    try:
        if "-" in text[1:]:
            start_text, _, stop_text = text.partition("-")
            start, last = int(start_text), int(stop_text)
        else:
            start = last = int(text)
    except ValueError:
        raise ValueError(
            f"cannot read the Z range {text!r}: write 'all', a plane such as '5', or an "
            "inclusive range such as '4-9'"
        ) from None
    if not 0 <= start <= last < n_z:
        raise ValueError(f"Z range {text!r} is not within the {n_z} planes (0 to {n_z - 1})")
    return start, last + 1


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


def layer_meta(layer: Any) -> dict[str, Any]:
    """Return what this widget recorded about a layer (empty for other layers)."""
    return (getattr(layer, "metadata", None) or {}).get(METADATA_KEY) or {}


def seconds_text(seconds: float) -> str:
    """``"4.2 s"``, ``"3 min 07 s"`` or ``"1 h 02 min"``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
