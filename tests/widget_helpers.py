"""Transforms for the widget tests, loaded by file path ('widget_helpers.py:name').

Worker processes import this file by its path, so it must stay importable on
its own (numpy and the standard library only).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def ref(name: str) -> str:
    """The 'file.py:function' reference of a transform in this file."""
    return f"{HERE / 'widget_helpers.py'}:{name}"


def slow_scale(czyx: np.ndarray, delay: float = 0.4, factor: float = 2.0) -> np.ndarray:
    """Multiply by ``factor`` after sleeping ``delay`` seconds (a transform that takes time)."""
    deadline = time.monotonic() + delay
    while time.monotonic() < deadline:
        time.sleep(0.01)
    return (czyx.astype(np.float32) * factor).astype(np.float32)


def explode_at(czyx: np.ndarray, input_time_index: int = 0, bad_time: int = 1) -> np.ndarray:
    """Return the input as float32, but raise on time point ``bad_time``."""
    if input_time_index == bad_time:
        raise ValueError(f"synthetic failure at time {input_time_index}")
    return czyx.astype(np.float32) + 1


def time_offset(czyx: np.ndarray, input_time_index: int = 0, gain: float = 1.0) -> np.ndarray:
    """``czyx * gain + t``: depends on the engine-injected time index."""
    return czyx.astype(np.float32) * gain + input_time_index
