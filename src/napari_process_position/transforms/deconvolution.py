"""Richardson-Lucy deconvolution with a Gaussian point-spread function."""

from __future__ import annotations

from typing import Annotated

import numpy as np

from napari_process_position.core.errors import TransformParameterError
from napari_process_position.transforms.common import per_volume, scipy_radius
from napari_process_position.transforms.decorator import transform

__all__ = ["richardson_lucy"]


def _rl_margin(
    iterations: int = 10,
    psf_sigma_z: float = 1.5,
    psf_sigma_y: float = 1.0,
    psf_sigma_x: float = 1.0,
    **_,
):
    # Each iteration blurs twice, so information travels two kernel radii per iteration.
    return tuple(2 * iterations * scipy_radius(s) for s in (psf_sigma_z, psf_sigma_y, psf_sigma_x))


@transform(
    display_name="Deconvolution (Richardson-Lucy)",
    same_shape=True,
    output_dtype="float32",
    margin=_rl_margin,
)
def richardson_lucy(
    czyx: np.ndarray,
    iterations: Annotated[int, {"min": 1, "max": 500}] = 10,
    psf_sigma_z: Annotated[float, {"min": 0.0, "max": 20.0, "step": 0.1}] = 1.5,
    psf_sigma_y: Annotated[float, {"min": 0.0, "max": 20.0, "step": 0.1}] = 1.0,
    psf_sigma_x: Annotated[float, {"min": 0.0, "max": 20.0, "step": 0.1}] = 1.0,
) -> np.ndarray:
    """Deconvolve each volume by Richardson-Lucy iterations with a Gaussian PSF, as float32.

    Parameters
    ----------
    iterations
        Number of iterations; more sharpens more and amplifies noise more.
    psf_sigma_z, psf_sigma_y, psf_sigma_x
        Standard deviation of the Gaussian point-spread function in voxels
        (FWHM = 2.355 sigma).

    Notes
    -----
    The estimate starts at the (non-negative part of the) image and is
    updated as ``estimate *= H(image / H(estimate))``, where ``H`` blurs
    with the PSF (the Gaussian is symmetric, so it is its own mirror), with
    mirrored edges and the kernel cut at 4 sigma. The margin a region needs
    is 2 x iterations x the kernel radius per axis; with it a region
    preview equals the same region of a full run.
    """
    from scipy import ndimage

    sigma = (psf_sigma_z, psf_sigma_y, psf_sigma_x)
    if iterations < 1:
        raise TransformParameterError(f"iterations must be at least 1, not {iterations}")
    if min(sigma) < 0:
        raise TransformParameterError(f"PSF sigmas must be >= 0, not {sigma}")
    tiny = np.float32(1e-12)

    def one(volume: np.ndarray) -> np.ndarray:
        observed = np.maximum(volume.astype(np.float32), 0)
        estimate = observed.copy()
        blurred = np.empty_like(observed)
        correction = np.empty_like(observed)
        for _ in range(iterations):
            ndimage.gaussian_filter(estimate, sigma, output=blurred, mode="reflect")
            np.maximum(blurred, tiny, out=blurred)
            np.divide(observed, blurred, out=blurred)
            ndimage.gaussian_filter(blurred, sigma, output=correction, mode="reflect")
            estimate *= correction
        return estimate

    return per_volume(czyx, one)
