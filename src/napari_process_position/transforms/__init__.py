"""Transforms: the registry and the built-in set."""

from ._registry import (
    ENTRY_POINT_GROUP,
    INJECTED_PARAMETERS,
    TransformMeta,
    TransformSpec,
    get_transform,
    list_transforms,
    transform,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "INJECTED_PARAMETERS",
    "TransformMeta",
    "TransformSpec",
    "get_transform",
    "list_transforms",
    "transform",
]
