"""Built-in transforms. Each takes a ZYX or CZYX array and returns one of the same rank."""

from __future__ import annotations

import math
from typing import Annotated, Literal

import numpy as np

from ._registry import transform

__all__ = [
    "binning",
    "convert_dtype",
    "gaussian_blur",
    "max_projection",
    "mean_projection",
    "median_filter",
    "soft_magnitude",
]


def _per_volume(czyx: np.ndarray, func) -> np.ndarray:
    """Apply ``func`` to each ZYX volume of a CZYX block (or to a ZYX block)."""
    if czyx.ndim == 3:
        return func(czyx)
    return np.stack([func(v) for v in czyx])


@transform(display_name="Gaussian blur", same_shape=True)
def gaussian_blur(
    czyx: np.ndarray,
    sigma_z: Annotated[float, {"min": 0.0, "max": 50.0, "step": 0.1}] = 1.0,
    sigma_y: Annotated[float, {"min": 0.0, "max": 50.0, "step": 0.1}] = 2.0,
    sigma_x: Annotated[float, {"min": 0.0, "max": 50.0, "step": 0.1}] = 2.0,
) -> np.ndarray:
    """Smooth each volume with a Gaussian (sigma in voxels per axis)."""
    from scipy import ndimage

    sigma = (sigma_z, sigma_y, sigma_x)
    return _per_volume(czyx, lambda v: ndimage.gaussian_filter(v, sigma, output=v.dtype))


@transform(display_name="Median denoise", same_shape=True)
def median_filter(
    czyx: np.ndarray,
    size_z: Annotated[int, {"min": 1, "max": 15}] = 1,
    size_yx: Annotated[int, {"min": 1, "max": 15}] = 3,
) -> np.ndarray:
    """Remove salt-and-pepper noise with a median filter (window in voxels)."""
    from scipy import ndimage

    size = (size_z, size_yx, size_yx)
    return _per_volume(czyx, lambda v: ndimage.median_filter(v, size=size))


def _binned_shape(zyx, bin_z: int = 1, bin_y: int = 2, bin_x: int = 2, **_):
    return (zyx[0] // bin_z, zyx[1] // bin_y, zyx[2] // bin_x)


def _binned_scale(scale, bin_z: int = 1, bin_y: int = 2, bin_x: int = 2, **_):
    return (scale[0] * bin_z, scale[1] * bin_y, scale[2] * bin_x)


def _binned_dtype(dtype, method: str = "mean", **_):
    return np.dtype(dtype) if method == "mean" else np.dtype("float32")


@transform(display_name="Binning", output_zyx_shape=_binned_shape, output_scale=_binned_scale,
           output_dtype=_binned_dtype)
def binning(
    czyx: np.ndarray,
    bin_z: Annotated[int, {"min": 1, "max": 16}] = 1,
    bin_y: Annotated[int, {"min": 1, "max": 16}] = 2,
    bin_x: Annotated[int, {"min": 1, "max": 16}] = 2,
    method: Literal["mean", "sum"] = "mean",
) -> np.ndarray:
    """Bin voxels by integer factors (mean keeps the dtype, sum gives float32); edges that do not fill a bin are dropped."""
    factors = (bin_z, bin_y, bin_x)
    if min(factors) < 1:
        raise ValueError(f"bin factors must be at least 1, not {factors}")

    def one(v: np.ndarray) -> np.ndarray:
        shape = [n // f for n, f in zip(v.shape, factors, strict=True)]
        if min(shape) < 1:
            raise ValueError(f"bin factors {factors} are larger than the volume {v.shape}")
        trimmed = v[: shape[0] * bin_z, : shape[1] * bin_y, : shape[2] * bin_x]
        blocks = trimmed.reshape(shape[0], bin_z, shape[1], bin_y, shape[2], bin_x)
        summed = blocks.sum(axis=(1, 3, 5), dtype=np.float64)
        if method == "sum":
            return summed.astype(np.float32)
        mean = summed / math.prod(factors)
        if v.dtype.kind in "ui":
            return np.rint(mean).astype(v.dtype)
        return mean.astype(v.dtype)

    return _per_volume(czyx, one)


def _projected_shape(zyx, **_):
    return (1, zyx[1], zyx[2])


def _projected_scale(scale, **_):
    return (scale[0], scale[1], scale[2])


@transform(display_name="Max projection", output_zyx_shape=_projected_shape,
           output_scale=_projected_scale)
def max_projection(czyx: np.ndarray) -> np.ndarray:
    """Maximum intensity projection along Z (keeps a Z axis of length 1)."""
    return czyx.max(axis=-3, keepdims=True)


@transform(display_name="Mean projection", output_zyx_shape=_projected_shape,
           output_scale=_projected_scale, output_dtype="float32")
def mean_projection(czyx: np.ndarray) -> np.ndarray:
    """Mean intensity projection along Z, as float32 (keeps a Z axis of length 1)."""
    return czyx.mean(axis=-3, keepdims=True, dtype=np.float64).astype(np.float32)


def _converted_dtype(dtype, dtype_out: str = "float32", **_):
    return np.dtype(dtype_out)


@transform(display_name="Convert dtype", output_dtype=_converted_dtype)
def convert_dtype(
    czyx: np.ndarray,
    dtype_out: Literal["float32", "uint16", "uint8"] = "float32",
    scale: float = 1.0,
    offset: float = 0.0,
) -> np.ndarray:
    """Compute ``x * scale + offset`` and store as another dtype (integers are clipped and rounded)."""
    out = czyx.astype(np.float64) * scale + offset
    target = np.dtype(dtype_out)
    if target.kind in "ui":
        info = np.iinfo(target)
        out = np.clip(np.rint(out), info.min, info.max)
    return out.astype(target)


def _float_dtype(dtype, **_):
    return np.dtype(dtype) if np.dtype(dtype).kind == "f" else np.dtype("float32")


@transform(display_name="Soft magnitude", same_shape=True, output_dtype=_float_dtype)
def soft_magnitude(czyx: np.ndarray, offset: float = 0.5) -> np.ndarray:
    """``sqrt(x*x + 1) - offset``, element-wise: the reference workload of the benchmarks."""
    out = np.multiply(czyx, czyx, dtype=np.float32 if czyx.dtype.kind != "f" else czyx.dtype)
    out += 1
    np.sqrt(out, out=out)
    out -= offset
    return out
