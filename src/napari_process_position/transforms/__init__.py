"""Transforms: the registry, the built-in set, and region helpers for previews."""

from ._region import region_with_margin
from ._registry import (
    ENTRY_POINT_GROUP,
    INJECTED_PARAMETERS,
    Margin,
    TransformMeta,
    TransformParameterError,
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
