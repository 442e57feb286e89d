"""napari sample data: one position of the demo plate, one layer per channel.

The plate is written to a temporary folder (removed when Python exits), so
the layers are backed by a real OME-Zarr store: the layers' metadata names
it, and the Process position widget picks it up as its input.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["SOURCE_KEY", "demo_plate", "sample_source"]

#: Key in ``layer.metadata`` with the store and position a sample layer comes from.
SOURCE_KEY = "napari_process_position_source"


def sample_source(layer: Any) -> tuple[str, str | None] | None:
    """Return the store and position a sample-data layer came from (None for other layers)."""
    source = (getattr(layer, "metadata", None) or {}).get(SOURCE_KEY)
    return (source["store"], source.get("position")) if source else None


def _temporary_folder() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="napari-process-position-demo-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def demo_plate(
    shape: tuple[int, int, int, int, int] = (5, 2, 16, 128, 128),
) -> list[tuple[Any, dict[str, Any], str]]:
    """Write the demo plate to a temporary folder and return position A/1/0 as layers.

    Returns
    -------
    list of (data, metadata, "image")
        napari LayerData tuples, one per channel, lazily read (tensorstore),
        with the voxel size as scale.
    """
    from napari_process_position.store.colors import channel_color
    from napari_process_position.store.demo import make_demo_plate
    from napari_process_position.store.metadata import read_position

    store = make_demo_plate(_temporary_folder() / "demo.zarr", shape=shape, positions=("A/1/0",))
    key = store.position_keys[0]
    info = read_position(store.position_path(key), key)
    source = info.open_array()
    scale = (info.scale[0], *info.scale[2:])
    layers = []
    for c, name in enumerate(info.channel_names):
        layers.append(
            (
                source[:, c],
                {
                    "name": name,
                    "scale": scale,
                    "colormap": channel_color(c, info.shape[1]).colormap,
                    "blending": "additive",
                    "contrast_limits": (100.0, 1600.0 if c == 0 else 800.0),
                    "metadata": {SOURCE_KEY: {"store": store.path, "position": key}},
                },
                "image",
            )
        )
    return layers
