"""Helpers the built-in transforms share: ZYX/CZYX handling and dtype rules."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from napari_process_position.core.errors import InvalidArgumentError

__all__ = ["cast_like", "float_dtype", "per_volume", "scipy_radius"]


def per_volume(czyx: np.ndarray, func: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Apply ``func`` to a ZYX block, or to each ZYX volume of a CZYX block."""
    if czyx.ndim == 3:
        return func(czyx)
    if czyx.ndim != 4:
        raise InvalidArgumentError(
            f"expected a ZYX or CZYX array, got {czyx.ndim} dimensions {czyx.shape}"
        )
    return np.stack([func(volume) for volume in czyx])


def float_dtype(dtype: np.dtype | type | str) -> np.dtype:
    """Return the dtype to compute in: float64 stays float64, anything else float32."""
    return np.dtype(np.float64) if np.dtype(dtype) == np.float64 else np.dtype(np.float32)


def cast_like(values: np.ndarray, dtype: np.dtype | type | str) -> np.ndarray:
    """Convert computed values to ``dtype``: integers are rounded to nearest and clipped."""
    target = np.dtype(dtype)
    if target.kind in "ui":
        info = np.iinfo(target)
        values = np.clip(np.rint(values), info.min, info.max)
    return values.astype(target, copy=False)


def scipy_radius(sigma: float, truncate: float = 4.0) -> int:
    """Half-width of the kernel ``scipy.ndimage.gaussian_filter`` uses for ``sigma``."""
    return int(truncate * float(sigma) + 0.5)
