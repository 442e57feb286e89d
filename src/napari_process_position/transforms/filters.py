"""Neighbourhood filters: Gaussian blur, median, background subtraction, flat-field.

Each takes a ZYX or CZYX array. Integer inputs come back in their own dtype
(rounded to nearest) unless the transform says otherwise; ``flat_field``
always returns float32.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import numpy as np

from napari_process_position.core.errors import TransformParameterError
from napari_process_position.transforms.common import (
    cast_like,
    float_dtype,
    per_volume,
    scipy_radius,
)
from napari_process_position.transforms.decorator import transform

__all__ = ["flat_field", "gaussian_blur", "median_filter", "subtract_background"]


def _leading(czyx: np.ndarray) -> tuple[int, ...]:
    """Zeros for the axes in front of ZYX (no filtering across channels)."""
    return (0,) * (czyx.ndim - 3)


# -- Gaussian blur ---------------------------------------------------------------------------


def _gaussian_margin(sigma_z: float = 1.0, sigma_y: float = 2.0, sigma_x: float = 2.0, **_):
    return (scipy_radius(sigma_z), scipy_radius(sigma_y), scipy_radius(sigma_x))


@transform(display_name="Gaussian blur", same_shape=True, margin=_gaussian_margin)
def gaussian_blur(
    czyx: np.ndarray,
    sigma_z: Annotated[float, {"min": 0.0, "max": 50.0, "step": 0.1}] = 1.0,
    sigma_y: Annotated[float, {"min": 0.0, "max": 50.0, "step": 0.1}] = 2.0,
    sigma_x: Annotated[float, {"min": 0.0, "max": 50.0, "step": 0.1}] = 2.0,
) -> np.ndarray:
    """Smooth each volume with a Gaussian (sigma in voxels per axis, 0 leaves an axis alone).

    Parameters
    ----------
    sigma_z, sigma_y, sigma_x
        Standard deviation of the Gaussian in voxels along Z, Y and X.

    Notes
    -----
    Computed in float32 (float64 for float64 input) with mirrored edges and
    the kernel cut at 4 sigma; integer input is rounded back to its dtype.
    """
    from scipy import ndimage

    if min(sigma_z, sigma_y, sigma_x) < 0:
        raise TransformParameterError(f"sigmas must be >= 0, not {(sigma_z, sigma_y, sigma_x)}")
    work = czyx.astype(float_dtype(czyx.dtype), copy=False)
    sigma = (*_leading(czyx), sigma_z, sigma_y, sigma_x)
    out = ndimage.gaussian_filter(work, sigma, mode="reflect")
    return cast_like(out, czyx.dtype)


# -- median ----------------------------------------------------------------------------------


def _median_margin(size_z: int = 1, size_yx: int = 3, **_):
    return (size_z // 2, size_yx // 2, size_yx // 2)


@transform(display_name="Median denoise", same_shape=True, margin=_median_margin)
def median_filter(
    czyx: np.ndarray,
    size_z: Annotated[int, {"min": 1, "max": 15}] = 1,
    size_yx: Annotated[int, {"min": 1, "max": 15}] = 3,
) -> np.ndarray:
    """Remove salt-and-pepper noise with a median filter (window in voxels).

    Parameters
    ----------
    size_z
        Window length along Z (1 filters each plane on its own).
    size_yx
        Window length along Y and X; odd sizes keep the image centred.

    Notes
    -----
    Mirrored edges; the output has the input's dtype (a median is one of the inputs).
    """
    from scipy import ndimage

    if size_z < 1 or size_yx < 1:
        raise TransformParameterError(
            f"window sizes must be >= 1, not size_z={size_z}, size_yx={size_yx}"
        )
    size = (*(1,) * (czyx.ndim - 3), size_z, size_yx, size_yx)
    return ndimage.median_filter(czyx, size=size, mode="reflect")


# -- background subtraction ------------------------------------------------------------------


def _disk_half_widths(radius: int) -> list[tuple[int, int]]:
    """``(dy, half_width)`` rows of a disk of ``radius`` (``dy >= 0``; rows are symmetric)."""
    return [(dy, math.isqrt(radius * radius - dy * dy)) for dy in range(radius + 1)]


def _extreme_fill(dtype: np.dtype, minimum: bool):
    if dtype.kind == "f":
        return np.inf if minimum else -np.inf
    info = np.iinfo(dtype)
    return info.max if minimum else info.min


def _flat_disk(x: np.ndarray, radius: int, minimum: bool) -> np.ndarray:
    """Grey erosion (``minimum``) or dilation of each YX plane by a flat disk.

    Pixels outside the plane are ignored. A disk is a stack of rows, and a
    minimum over a row is a 1-D running minimum (O(1) per pixel in scipy),
    so this costs about 2 x radius passes whatever the disk's area.
    """
    from scipy import ndimage

    running = ndimage.minimum_filter1d if minimum else ndimage.maximum_filter1d
    combine = np.minimum if minimum else np.maximum
    fill = _extreme_fill(x.dtype, minimum)
    n_y = x.shape[-2]
    out = np.full_like(x, fill)
    for dy, half in _disk_half_widths(radius):
        if dy >= n_y:
            break
        row = running(x, size=2 * half + 1, axis=-1, mode="constant", cval=fill)
        # out[y] = op(out[y], row[y + dy]) and op(out[y], row[y - dy])
        combine(out[..., : n_y - dy, :], row[..., dy:, :], out=out[..., : n_y - dy, :])
        if dy:
            combine(out[..., dy:, :], row[..., : n_y - dy, :], out=out[..., dy:, :])
    return out


def _ball_rings(radius: int) -> list[tuple[float, list[tuple[int, int]]]]:
    """Offsets of a disk grouped by distance: ``(ball height, [(dy, dx), ...])`` per ring."""
    rings: dict[int, list[tuple[int, int]]] = {}
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            d2 = dy * dy + dx * dx
            if d2 <= radius * radius:
                rings.setdefault(d2, []).append((dy, dx))
    return [(math.sqrt(radius * radius - d2), offsets) for d2, offsets in sorted(rings.items())]


def _rolling_ball(x: np.ndarray, radius: int) -> np.ndarray:
    """Background under a ball of ``radius`` rolled beneath each YX plane (float ``x``).

    The background is the grey opening by the ball: the ball's lowest centre
    height at every position (an erosion), then the upper envelope of the
    balls placed there (a dilation). Radius and heights are both in pixel
    units, as in ImageJ; pixels outside the plane do not touch the ball.
    Offsets at the same distance share a height, so each ring costs one
    pass per offset plus two.
    """
    rings = _ball_rings(radius)
    n_y, n_x = x.shape[-2:]
    pad = [(0, 0)] * (x.ndim - 2) + [(radius, radius), (radius, radius)]
    tmp = np.empty_like(x)

    def sweep(source: np.ndarray, fill: float, minimum: bool) -> np.ndarray:
        padded = np.pad(source, pad, constant_values=fill)
        out = np.full_like(x, fill)
        pick = np.minimum if minimum else np.maximum

        def view(dy: int, dx: int) -> np.ndarray:
            return padded[..., radius + dy : radius + dy + n_y, radius + dx : radius + dx + n_x]

        for height, offsets in rings:
            first, *rest = offsets
            if rest:
                pick(view(*first), view(*rest[0]), out=tmp)
                for offset in rest[1:]:
                    pick(tmp, view(*offset), out=tmp)
            else:
                tmp[...] = view(*first)
            step = x.dtype.type(-height if minimum else height)
            np.add(tmp, step, out=tmp)
            pick(out, tmp, out=out)
        return out

    centres = sweep(x, np.inf, minimum=True)
    return sweep(centres, -np.inf, minimum=False)


def _rolling_ball_planes(x: np.ndarray, radius: int) -> np.ndarray:
    """:func:`_rolling_ball` over a few planes at a time, so each pass stays in cache."""
    planes = x.reshape(-1, *x.shape[-2:])
    step = max(1, (1 << 18) // max(1, planes.shape[1] * planes.shape[2]))
    out = np.empty_like(planes)
    for start in range(0, planes.shape[0], step):
        out[start : start + step] = _rolling_ball(planes[start : start + step], radius)
    return out.reshape(x.shape)


def _background_margin(radius: int = 15, **_):
    return (0, 2 * radius, 2 * radius)


@transform(display_name="Background subtraction", same_shape=True, margin=_background_margin)
def subtract_background(
    czyx: np.ndarray,
    radius: Annotated[int, {"min": 1, "max": 200}] = 15,
    method: Literal["rolling_ball", "tophat"] = "rolling_ball",
) -> np.ndarray:
    """Subtract a rolling-ball or top-hat background from each Z plane (radius in pixels).

    Parameters
    ----------
    radius
        Ball or disk radius in pixels; make it larger than the largest object to keep.
    method
        ``rolling_ball``: the background is the surface a ball of this radius
        (heights in intensity units, as in ImageJ) traces when rolled beneath
        the plane. ``tophat``: white top-hat, i.e. the background is the
        grey opening by a flat disk; exact integer arithmetic and faster for
        large radii.

    Notes
    -----
    The result is never negative and keeps the input's dtype (rolling-ball
    results are rounded for integer input). Each YX plane is processed on
    its own; the rolling ball costs about 2 x pi x radius^2 passes over the
    volume, so keep radius well under 50 for large data or use ``tophat``.
    """
    if radius < 1:
        raise TransformParameterError(f"radius must be at least 1 pixel, not {radius}")
    if method == "tophat":
        opened = _flat_disk(_flat_disk(czyx, radius, minimum=True), radius, minimum=False)
        return czyx - opened  # the opening never exceeds the image: no underflow
    if method != "rolling_ball":
        raise TransformParameterError(f"method must be 'rolling_ball' or 'tophat', not {method!r}")
    work = czyx.astype(float_dtype(czyx.dtype))
    background = _rolling_ball_planes(work, radius)
    np.subtract(work, background, out=work)
    np.maximum(work, 0, out=work)
    return cast_like(work, czyx.dtype)


# -- flat-field ------------------------------------------------------------------------------


@transform(display_name="Flat-field correction", same_shape=True, output_dtype="float32")
def flat_field(
    czyx: np.ndarray,
    sigma: Annotated[float, {"min": 1.0, "max": 2000.0, "step": 1.0}] = 32.0,
    dark: Annotated[float, {"min": 0.0, "max": 1e6, "step": 1.0}] = 0.0,
) -> np.ndarray:
    """Divide each volume by its heavily smoothed mean plane (the illumination), as float32.

    Parameters
    ----------
    sigma
        Gaussian sigma in pixels for the illumination estimate; larger than the objects.
    dark
        Camera offset subtracted before the division.

    Notes
    -----
    The illumination profile is the Z mean of ``volume - dark``, blurred in
    Y and X with mirrored edges and scaled to mean 1, so the corrected
    volume keeps its mean intensity. Every output voxel depends on the whole
    volume (no region margin).
    """
    from scipy import ndimage

    if sigma <= 0:
        raise TransformParameterError(f"sigma must be > 0, not {sigma}")

    def one(volume: np.ndarray) -> np.ndarray:
        work = volume.astype(np.float32)
        if dark:
            work -= np.float32(dark)
        plane = work.mean(axis=0, dtype=np.float64).astype(np.float32)
        profile = ndimage.gaussian_filter(plane, sigma, mode="reflect")
        mean = float(profile.mean(dtype=np.float64))
        if not mean > 0 or profile.min() <= 0:
            raise TransformParameterError(
                f"the smoothed illumination is not positive everywhere (min {profile.min():.3g}); "
                f"is the dark offset {dark} above the signal?"
            )
        profile /= np.float32(mean)
        work /= profile
        return work

    return per_volume(czyx, one)
