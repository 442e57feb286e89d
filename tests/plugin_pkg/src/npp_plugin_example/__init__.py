"""Example transforms a third-party package registers with napari-process-position."""

from __future__ import annotations

from typing import Annotated

import numpy as np

from napari_process_position.transforms import transform


@transform(display_name="Invert (plug-in)", same_shape=True, output_dtype="float32", margin=0)
def invert(
    czyx: np.ndarray,
    maximum: Annotated[float, {"min": 0.0, "max": 65535.0}] = 4095.0,
) -> np.ndarray:
    """Compute ``maximum - x``: bright becomes dark, as float32."""
    return (np.float32(maximum) - czyx.astype(np.float32)).astype(np.float32)


def add_offset(czyx: np.ndarray, offset: float = 10.0) -> np.ndarray:
    """Add a constant (an undecorated transform: the engine probes its output)."""
    return czyx.astype(np.float32) + np.float32(offset)
