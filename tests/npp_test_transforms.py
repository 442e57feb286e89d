"""Transforms used by the tests. Module level, so spawned workers can import them."""

from __future__ import annotations

import os
import time

import numpy as np


def scale_offset(czyx, factor: float = 2.0, offset: float = 1.0):
    """A transform with parameters: ``x * factor + offset`` in float32."""
    return czyx.astype(np.float32) * factor + offset


def soft_magnitude(czyx):
    """``sqrt(x*x + 1) - 0.5``, the benchmark's reference workload."""
    x = czyx.astype(np.float32)
    return np.sqrt(x * x + 1) - 0.5


def time_aware(czyx, input_time_index: int, gain: float = 1.0):
    """Uses the engine-injected time index, as registration transforms do."""
    return czyx * gain + input_time_index


def keep_dtype_blur(czyx):
    """A small neighbourhood mean in the input dtype (exercises integer output)."""
    x = czyx.astype(np.float64)
    out = (x + np.roll(x, 1, axis=-1) + np.roll(x, -1, axis=-1)) / 3
    if np.issubdtype(czyx.dtype, np.integer):
        return np.rint(out).astype(czyx.dtype)
    return out.astype(czyx.dtype)


def sum_channels(czyx):
    """CZYX -> 1ZYX: the sum over the channel group."""
    return czyx.astype(np.float32).sum(axis=0, keepdims=True)


def fail_on_time(czyx, input_time_index: int, bad_time: int = 1):
    """Raises on one time point only."""
    if input_time_index == bad_time:
        raise ValueError(f"deliberate failure at t={input_time_index}")
    return czyx


def die_on_time(czyx, input_time_index: int, bad_time: int = 1):
    """Ends its worker process abruptly, as an OOM kill would."""
    if input_time_index == bad_time:
        os._exit(3)
    return czyx


def slow(czyx, seconds: float = 0.5):
    """Sleeps, then returns the input: for cancel and kill tests."""
    time.sleep(seconds)
    return czyx


def hold_copies(czyx, copies: int = 6, seconds: float = 0.0):
    """Holds ``copies`` float64 copies of the volume at once (a known peak), returns the first.

    ``seconds``: how long to hold them (for a memory monitor to notice).
    """
    held = []
    for i in range(copies):
        copy = czyx.astype(np.float64)
        copy += i
        held.append(copy)
    time.sleep(seconds)
    return held[0].astype(np.float32)


def allocate(czyx, gib: float = 4.0):
    """Asks for ``gib`` GiB of address space at once (untouched): fails under a memory limit."""
    block = np.empty(int(gib * 2**30), dtype=np.uint8)
    return czyx + (block.size > 0)


def returns_none(czyx):
    """A broken transform."""
    return None


def wrong_shape(czyx):
    """A broken transform: drops a dimension."""
    return czyx[..., 0]


def blas_threads(czyx):
    """Fills the volume with the BLAS thread limit the worker runs under."""
    from threadpoolctl import threadpool_info

    counts = [info["num_threads"] for info in threadpool_info() if info.get("user_api") == "blas"]
    return np.full(czyx.shape, max(counts) if counts else -1, dtype=np.float32)


def counting(czyx, log_dir: str, factor: float = 2.0):
    """``x * factor`` in float32, leaving one file per call in ``log_dir`` (works in processes)."""
    os.makedirs(log_dir, exist_ok=True)
    with open(os.path.join(log_dir, f"{os.getpid()}-{time.perf_counter_ns()}"), "w"):
        pass
    return czyx.astype(np.float32) * factor


def apply_flat(czyx, flat: np.ndarray):
    """Divide by a flat-field image (an array parameter), as flat-field correction does."""
    return czyx.astype(np.float32) / flat


def raises_value_error(czyx):
    """A transform that rejects its input, as a user's own check would."""
    raise ValueError("this volume is not what I expected")


def report_niceness(czyx):
    """Returns the CPU niceness of the thread that ran it, in every voxel."""
    import os
    import threading

    nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    return np.full(czyx.shape, nice, np.float32)
