"""Transforms: the registry, the ``@transform`` decorator, parameters and the built-in set.

Depends on ``core`` only (an import-linter contract). Importing it imports
no pydantic: spawned workers import built-in transforms through it.
"""

from napari_process_position.core.errors import TransformParameterError
from napari_process_position.transforms.decorator import (
    INJECTED_PARAMETERS,
    Margin,
    TransformMeta,
    transform,
)
from napari_process_position.transforms.region import region_with_margin
from napari_process_position.transforms.registry import (
    ENTRY_POINT_GROUP,
    get_transform,
    list_transforms,
)
from napari_process_position.transforms.spec import TransformSpec

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
