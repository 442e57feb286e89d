"""Transforms: the registry, the built-in set, and region helpers for previews."""

from napari_process_position.core.errors import TransformParameterError
from napari_process_position.transforms._region import region_with_margin
from napari_process_position.transforms._registry import (
    ENTRY_POINT_GROUP,
    INJECTED_PARAMETERS,
    Margin,
    TransformMeta,
    TransformSpec,
    get_transform,
    list_transforms,
    transform,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "INJECTED_PARAMETERS",
    "Margin",
    "TransformMeta",
    "TransformParameterError",
    "TransformSpec",
    "get_transform",
    "list_transforms",
    "region_with_margin",
    "transform",
]
