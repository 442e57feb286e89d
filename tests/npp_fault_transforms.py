"""Transforms for the fault and bad-transform tests. Module level, so spawned workers import them.

Each fault transform behaves normally unless a flag file exists, so a run
that failed and the resumed run use the same parameters (the same resume
token) and an uninterrupted run gives the reference output.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np


def affine(czyx):
    """The reference computation: ``2 x + 1`` in float32."""
    return czyx.astype(np.float32) * 2 + 1


def _mark(flag_dir: str, name: str, text: str = "") -> None:
    path = Path(flag_dir) / name
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def announce(czyx, input_time_index: int, flag_dir: str, victim: int = -1, seconds: float = 0.0):
    """``affine``, leaving ``start_t<t>`` (holding the pid) in ``flag_dir`` when it begins.

    When ``flag_dir/armed`` exists and ``t == victim``, it writes ``victim.pid``
    and sleeps a minute, waiting to be killed.
    """
    _mark(flag_dir, f"start_t{input_time_index}", str(os.getpid()))
    if input_time_index == victim and (Path(flag_dir) / "armed").exists():
        _mark(flag_dir, "victim.pid", str(os.getpid()))
        time.sleep(60)
    if seconds:
        time.sleep(seconds)
    return affine(czyx)


def hog(czyx, input_time_index: int, flag_dir: str, victim: int = 1, gib: float = 3.0):
    """``affine``; at ``t == victim`` (while armed) it first reserves ``gib`` GiB.

    ``np.empty`` only reserves address space, so without a memory limit this
    costs no real memory; under ``RLIMIT_AS`` it raises MemoryError.
    """
    if input_time_index == victim and (Path(flag_dir) / "armed").exists():
        block = np.empty(int(gib * 2**30), np.uint8)
        del block
    return affine(czyx)


# -- bad transforms ---------------------------------------------------------------------------


def returns_none(czyx):
    """Forgets to return."""
    np.sqrt(czyx)


def drops_a_dimension(czyx):
    """Returns YX (a max projection without keepdims) instead of CZYX."""
    return czyx.max(axis=(0, 1))


def shape_varies(czyx, input_time_index: int):
    """Crops a row at t=1 only: the shape differs between tasks."""
    return czyx[..., : czyx.shape[-2] - (input_time_index == 1), :]


def to_complex(czyx):
    """An FFT without taking the magnitude."""
    return np.fft.fftn(czyx, axes=(-2, -1)).astype(np.complex64)


def to_object(czyx):
    """A list of per-channel arrays of different shapes."""
    return np.array([czyx[0], czyx[0, :1]], dtype=object)


def to_bool(czyx):
    """A threshold mask."""
    return czyx > np.median(czyx)


def with_nan(czyx, input_time_index: int):
    """Float output with a NaN and an inf at one voxel of every volume."""
    out = czyx.astype(np.float32)
    out[..., 0, 0, 0] = np.nan
    out[..., 0, 0, 1] = np.inf if input_time_index % 2 else -np.inf
    return out


def nan_in_ints(czyx):
    """Divides the input by itself: NaN where the input is 0, else 1."""
    x = czyx.astype(np.float32)
    with np.errstate(invalid="ignore"):
        return x / x


def raises(czyx, input_time_index: int, bad_time: int = 1):
    """Raises on one time point."""
    if input_time_index == bad_time:
        raise RuntimeError(f"deconvolution diverged at t={input_time_index}")
    return affine(czyx)


def slow(czyx, seconds: float = 5.0):
    """Sleeps, then returns ``affine``."""
    time.sleep(seconds)
    return affine(czyx)


def inf_in_ints(czyx):
    """Infinite where the input is 0 (a division by the input)."""
    x = czyx.astype(np.float32)
    return np.where(x == 0, np.inf, x)
