"""Voxel-wise intensity transforms: convert dtype, rescale intensity, soft magnitude."""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np

from napari_process_position.core.errors import TransformParameterError
from napari_process_position.transforms.common import cast_like, per_volume
from napari_process_position.transforms.decorator import transform

__all__ = ["convert_dtype", "rescale_intensity", "soft_magnitude"]


def _converted_dtype(dtype, dtype_out: str = "float32", **_):
    return np.dtype(dtype_out)


@transform(display_name="Convert dtype", same_shape=True, output_dtype=_converted_dtype, margin=0)
def convert_dtype(
    czyx: np.ndarray,
    dtype_out: Literal["float32", "uint16", "uint8"] = "float32",
    scale: float = 1.0,
    offset: float = 0.0,
) -> np.ndarray:
    """Compute ``x * scale + offset`` and store as another dtype (integers are clipped and rounded).

    Parameters
    ----------
    dtype_out
        Output dtype.
    scale, offset
        The same linear map for every volume, so time points stay comparable.
    """
    out = czyx.astype(np.float64) * scale + offset
    return cast_like(out, dtype_out)


def _rescaled_dtype(dtype, dtype_out: str = "float32", **_):
    return np.dtype(dtype_out)


def _percentiles_in_order(low_percentile: float = 0.1, high_percentile: float = 99.9, **_):
    if not 0 <= low_percentile < high_percentile <= 100:
        raise TransformParameterError(
            "percentiles must satisfy 0 <= low < high <= 100, "
            f"not low={low_percentile}, high={high_percentile}"
        )


@transform(
    display_name="Rescale intensity",
    same_shape=True,
    output_dtype=_rescaled_dtype,
    check=_percentiles_in_order,
)
def rescale_intensity(
    czyx: np.ndarray,
    low_percentile: Annotated[float, {"min": 0.0, "max": 100.0, "step": 0.1}] = 0.1,
    high_percentile: Annotated[float, {"min": 0.0, "max": 100.0, "step": 0.1}] = 99.9,
    dtype_out: Literal["float32", "uint16", "uint8"] = "float32",
) -> np.ndarray:
    """Stretch each volume's percentile range to 0..1 (float32) or the full integer range.

    Parameters
    ----------
    low_percentile, high_percentile
        Percentiles of each volume mapped to the bottom and top of the output
        range; values outside are clipped.
    dtype_out
        ``float32`` gives 0..1; ``uint8``/``uint16`` give 0..255/0..65535.

    Notes
    -----
    Each volume (each time point and channel) is stretched on its own; for
    one mapping across time points use ``convert_dtype`` with a fixed scale
    and offset. A constant volume maps to 0.
    """
    _percentiles_in_order(low_percentile, high_percentile)
    target = np.dtype(dtype_out)
    top = float(np.iinfo(target).max) if target.kind in "ui" else 1.0

    def one(volume: np.ndarray) -> np.ndarray:
        low, high = np.percentile(volume, (low_percentile, high_percentile))
        span = float(high) - float(low)
        out = volume.astype(np.float32)
        if span <= 0:
            return cast_like(np.zeros_like(out), target)
        out -= np.float32(low)
        out *= np.float32(top / span)
        np.clip(out, 0, top, out=out)
        return cast_like(out, target)

    return per_volume(czyx, one)


def _float_dtype(dtype, **_):
    return np.dtype(dtype) if np.dtype(dtype).kind == "f" else np.dtype("float32")


@transform(display_name="Soft magnitude", same_shape=True, output_dtype=_float_dtype, margin=0)
def soft_magnitude(czyx: np.ndarray, offset: float = 0.5) -> np.ndarray:
    """``sqrt(x*x + 1) - offset``, element-wise: the reference workload of the benchmarks.

    Parameters
    ----------
    offset
        Subtracted at the end.

    Notes
    -----
    float32 for integer input; float input keeps its dtype.
    """
    out = np.multiply(czyx, czyx, dtype=np.float32 if czyx.dtype.kind != "f" else czyx.dtype)
    out += 1
    np.sqrt(out, out=out)
    out -= offset
    return out
