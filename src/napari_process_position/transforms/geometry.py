"""Transforms that change the shape: binning, projections along Z, light-sheet deskew."""

from __future__ import annotations

import math
from typing import Annotated, Literal

import numpy as np

from napari_process_position.core.errors import TransformParameterError
from napari_process_position.transforms.common import cast_like, float_dtype, per_volume
from napari_process_position.transforms.decorator import transform

__all__ = ["binning", "deskew", "max_projection", "mean_projection"]


# -- binning ---------------------------------------------------------------------------------


def _binned_shape(zyx, bin_z: int = 1, bin_y: int = 2, bin_x: int = 2, **_):
    return (zyx[0] // bin_z, zyx[1] // bin_y, zyx[2] // bin_x)


def _binned_scale(scale, bin_z: int = 1, bin_y: int = 2, bin_x: int = 2, **_):
    return (scale[0] * bin_z, scale[1] * bin_y, scale[2] * bin_x)


def _binned_dtype(dtype, method: str = "mean", **_):
    return np.dtype(dtype) if method == "mean" else np.dtype("float32")


@transform(
    display_name="Binning",
    output_zyx_shape=_binned_shape,
    output_scale=_binned_scale,
    output_dtype=_binned_dtype,
)
def binning(
    czyx: np.ndarray,
    bin_z: Annotated[int, {"min": 1, "max": 16}] = 1,
    bin_y: Annotated[int, {"min": 1, "max": 16}] = 2,
    bin_x: Annotated[int, {"min": 1, "max": 16}] = 2,
    method: Literal["mean", "sum"] = "mean",
) -> np.ndarray:
    """Bin voxels by integer factors per axis, by mean (keeps the dtype) or sum (float32).

    Parameters
    ----------
    bin_z, bin_y, bin_x
        Bin factors; trailing voxels that do not fill a whole bin are dropped.
    method
        ``mean`` keeps the input dtype (integers rounded to nearest); ``sum``
        gives float32 (exact up to 2**24).

    Notes
    -----
    The voxel size (scale) grows by the bin factors.
    """
    factors = (bin_z, bin_y, bin_x)
    if min(factors) < 1:
        raise TransformParameterError(f"bin factors must be at least 1, not {factors}")
    if method not in ("mean", "sum"):
        raise TransformParameterError(f"method must be 'mean' or 'sum', not {method!r}")

    def one(v: np.ndarray) -> np.ndarray:
        shape = [n // f for n, f in zip(v.shape, factors, strict=True)]
        if min(shape) < 1:
            raise TransformParameterError(
                f"bin factors {factors} are larger than the volume {v.shape}"
            )
        trimmed = v[: shape[0] * bin_z, : shape[1] * bin_y, : shape[2] * bin_x]
        blocks = trimmed.reshape(shape[0], bin_z, shape[1], bin_y, shape[2], bin_x)
        summed = blocks.sum(axis=(1, 3, 5), dtype=np.float64)
        if method == "sum":
            return summed.astype(np.float32)
        return cast_like(summed / math.prod(factors), v.dtype)

    return per_volume(czyx, one)


# -- projections -----------------------------------------------------------------------------


def _projected_shape(zyx, **_):
    return (1, zyx[1], zyx[2])


def _projected_scale(scale, **_):
    return (scale[0], scale[1], scale[2])


@transform(
    display_name="Max projection", output_zyx_shape=_projected_shape, output_scale=_projected_scale
)
def max_projection(czyx: np.ndarray) -> np.ndarray:
    """Maximum intensity projection along Z, in the input dtype (keeps a Z axis of length 1)."""
    return czyx.max(axis=-3, keepdims=True)


@transform(
    display_name="Mean projection",
    output_zyx_shape=_projected_shape,
    output_scale=_projected_scale,
    output_dtype="float32",
)
def mean_projection(czyx: np.ndarray) -> np.ndarray:
    """Mean intensity projection along Z, as float32 (keeps a Z axis of length 1)."""
    return czyx.mean(axis=-3, keepdims=True, dtype=np.float64).astype(np.float32)


# -- deskew ----------------------------------------------------------------------------------


def _scan_range(
    n_scan: int, n_rows: int, scan_angle: float, px_to_scan_ratio: float, keep_overhang: bool
) -> tuple[float, int]:
    """First scan coordinate (in pixels) and number of output samples along the scan."""
    if not 0 < scan_angle < 180:
        raise TransformParameterError(
            f"scan_angle must be between 0 and 180 degrees, not {scan_angle}"
        )
    if not px_to_scan_ratio > 0:
        raise TransformParameterError(f"px_to_scan_ratio must be > 0, not {px_to_scan_ratio}")
    shear = (n_rows - 1) * math.cos(math.radians(scan_angle))
    length = (n_scan - 1) / px_to_scan_ratio
    if keep_overhang:
        start, stop = min(0.0, shear), length + max(0.0, shear)
    else:
        start, stop = max(0.0, shear), length + min(0.0, shear)
    count = math.floor(stop - start + 1e-9) + 1
    if count < 1:
        raise TransformParameterError(
            f"the scan ({n_scan} steps = {length:.1f} px) is shorter than the sheet's footprint "
            f"({abs(shear):.1f} px) at {scan_angle} degrees, so no output without overhang; "
            "set keep_overhang=True"
        )
    return start, count


def _deskewed_shape(
    zyx, scan_angle: float = 30.0, px_to_scan_ratio: float = 0.4, keep_overhang: bool = True, **_
):
    count = _scan_range(zyx[0], zyx[1], scan_angle, px_to_scan_ratio, keep_overhang)[1]
    return (zyx[1], count, zyx[2])


def _deskewed_scale(scale, scan_angle: float = 30.0, **_):
    return (scale[1] * abs(math.sin(math.radians(scan_angle))), scale[1], scale[2])


@transform(
    display_name="Deskew (light sheet)",
    output_zyx_shape=_deskewed_shape,
    output_scale=_deskewed_scale,
)
def deskew(
    czyx: np.ndarray,
    scan_angle: Annotated[float, {"min": 1.0, "max": 179.0, "step": 0.5}] = 30.0,
    px_to_scan_ratio: Annotated[float, {"min": 0.01, "max": 100.0, "step": 0.01}] = 0.4,
    keep_overhang: bool = True,
) -> np.ndarray:
    """Deskew stage-scanned light-sheet volumes: input Z is the scan, output Z the height.

    Parameters
    ----------
    scan_angle
        Angle in degrees between the light sheet and the scan direction;
        beyond 90 the sheet leans the other way.
    px_to_scan_ratio
        Camera pixel size divided by the scan step.
    keep_overhang
        Keep the triangular margins that only part of the sheet covered
        (filled with 0); without, keep only where every row has data.

    Notes
    -----
    Input axes are (scan step, row along the tilted sheet, column). Camera
    row ``y`` of scan step ``k`` lies at scan position ``k / ratio + y cos(angle)``
    pixels and height ``y sin(angle)`` pixels. The output is (height, scan
    position, column) on a grid of one pixel along the scan, one row in height:
    output ``[y, u, x]`` is the input at scan step ``(u + u0 - y cos(angle)) * ratio``,
    linearly interpolated between steps, 0 outside the scanned range.
    The output scale is (row pixel x sin(angle), row pixel, column pixel).
    Integer input is rounded back to its dtype.
    """

    def one(raw: np.ndarray) -> np.ndarray:
        n_scan, n_rows, _ = raw.shape
        start, count = _scan_range(n_scan, n_rows, scan_angle, px_to_scan_ratio, keep_overhang)
        cos = math.cos(math.radians(scan_angle))
        rows = np.arange(n_rows, dtype=np.float64)[:, None]
        position = start + np.arange(count, dtype=np.float64)[None, :]
        step = (position - rows * cos) * px_to_scan_ratio  # (rows, count), fractional scan step
        tol = 1e-6
        valid = (step >= -tol) & (step <= n_scan - 1 + tol)
        step = np.clip(step, 0, n_scan - 1)
        low = np.minimum(np.floor(step).astype(np.intp), max(n_scan - 2, 0))
        high = np.minimum(low + 1, n_scan - 1)
        dtype = float_dtype(raw.dtype)
        weight = (step - low).astype(dtype)
        by_row = np.moveaxis(raw, 1, 0)  # (rows, scan, column)
        row_index = np.arange(n_rows)[:, None]
        out = by_row[row_index, low].astype(dtype)  # (rows, count, column)
        upper = by_row[row_index, high].astype(dtype)
        upper -= out
        upper *= weight[..., None]
        out += upper
        out[~valid] = 0
        return cast_like(out, raw.dtype)

    return per_volume(czyx, one)
