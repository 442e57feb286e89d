"""The built-in transforms, in the order they are listed.

Each takes a ZYX or CZYX array (the engine passes CZYX for a channel group)
and returns one of the same rank. The functions live in topic modules;
this module gathers them so ``napari_process_position.transforms.builtins:NAME``
names every one of them.
"""

from __future__ import annotations

from napari_process_position.transforms.deconvolution import richardson_lucy
from napari_process_position.transforms.filters import (
    flat_field,
    gaussian_blur,
    median_filter,
    subtract_background,
)
from napari_process_position.transforms.geometry import (
    binning,
    deskew,
    max_projection,
    mean_projection,
)
from napari_process_position.transforms.intensity import (
    convert_dtype,
    rescale_intensity,
    soft_magnitude,
)

__all__ = [
    "binning",
    "convert_dtype",
    "deskew",
    "flat_field",
    "gaussian_blur",
    "max_projection",
    "mean_projection",
    "median_filter",
    "rescale_intensity",
    "richardson_lucy",
    "soft_magnitude",
    "subtract_background",
]
