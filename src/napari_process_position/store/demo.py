"""A synthetic plate worth looking at: cells that drift over time, two channels, noise."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from napari_process_position.core.errors import InvalidArgumentError
from napari_process_position.store.create import write_empty_plate
from napari_process_position.store.layout import OutputLayout, StoreInfo
from napari_process_position.store.metadata import open_store, read_position
from napari_process_position.store.paths import check_path_text
from napari_process_position.store.replace import existing_output_error, replace_store

__all__ = [
    "CHANNELS",
    "DEMO_POSITIONS",
    "MAX_DEMO_VOLUME",
    "MAX_DEMO_VOXELS",
    "check_demo_shape",
    "make_demo_plate",
    "synthetic_position",
]

DEMO_POSITIONS = ("A/1/0", "A/2/0", "B/1/0")
CHANNELS = ("Nuclei", "Membrane")


def synthetic_position(
    seed: int = 0,
    shape: tuple[int, int, int, int, int] = (5, 2, 16, 128, 128),
    dtype: str = "uint16",
) -> np.ndarray:
    """Make a TCZYX array of blob-shaped cells that drift a little each time point.

    Channel 0 is bright nuclei; channel 1 a dimmer membrane ring around each.
    Camera-like noise and a slowly varying background make filters visible.
    """
    rng = np.random.default_rng(seed)
    n_t, n_c, n_z, n_y, n_x = shape
    n_cells = max(4, (n_y * n_x) // 900)
    # Cells 8 voxels from the edges (or in the middle of a smaller image).
    low = [n_z * 0.3, min(8.0, n_y / 2), min(8.0, n_x / 2)]
    high = [n_z * 0.7, max(low[1], n_y - 8.0), max(low[2], n_x - 8.0)]
    centres = rng.uniform(low, high, size=(n_cells, 3))
    radii = rng.uniform(4.0, 9.0, size=n_cells)
    drift = rng.normal(0, 1.2, size=(n_cells, 3)) * np.array([0.1, 1.0, 1.0])
    z, y, x = np.meshgrid(np.arange(n_z), np.arange(n_y), np.arange(n_x), indexing="ij")
    background = 100 + 40 * np.sin(y / n_y * np.pi) * np.cos(x / n_x * np.pi / 2)
    out = np.zeros(shape, dtype=np.float32)
    for t in range(n_t):
        nuclei = np.zeros((n_z, n_y, n_x), np.float32)
        membrane = np.zeros_like(nuclei)
        for (cz, cy, cx), r, d in zip(centres, radii, drift, strict=True):
            cz, cy, cx = cz + d[0] * t, cy + d[1] * t, cx + d[2] * t
            dist = np.sqrt(((z - cz) * 2.0) ** 2 + (y - cy) ** 2 + (x - cx) ** 2)
            nuclei += 1500 * np.exp(-((dist / (0.6 * r)) ** 2))
            membrane += 700 * np.exp(-(((dist - r) / 1.5) ** 2))
        for c, signal in enumerate((nuclei, membrane)[:n_c]):
            noisy = rng.poisson(np.maximum(signal + background, 0)).astype(np.float32)
            noisy += rng.normal(0, 5, size=noisy.shape)
            out[t, c] = noisy
    if np.dtype(dtype).kind in "ui":
        info = np.iinfo(dtype)
        return np.clip(np.rint(out), info.min, info.max).astype(dtype)
    return out.astype(dtype)


#: Largest Z*Y*X of a demo volume (the synthesis holds about 80 bytes per voxel at once).
MAX_DEMO_VOLUME = 2**23
#: Largest T*C*Z*Y*X of a demo position (held in memory as float32 before it is written).
MAX_DEMO_VOXELS = 2**27


def check_demo_shape(shape: Sequence[int]) -> tuple[int, int, int, int, int]:
    """Return ``shape`` as a TCZYX tuple a demo position can have, or say why not.

    Raises
    ------
    InvalidArgumentError
        Not five positive integers, or a volume or position larger than
        :data:`MAX_DEMO_VOLUME` / :data:`MAX_DEMO_VOXELS`.
    """
    dims = tuple(shape)
    if len(dims) != 5 or not all(isinstance(n, int) and n >= 1 for n in dims):
        raise InvalidArgumentError(f"a demo shape is five positive integers T,C,Z,Y,X, not {dims}")
    n_t, n_c, n_z, n_y, n_x = dims
    if n_z * n_y * n_x > MAX_DEMO_VOLUME or math.prod(dims) > MAX_DEMO_VOXELS:
        raise InvalidArgumentError(
            f"the demo shape {dims} is too large: at most {MAX_DEMO_VOLUME} voxels per volume "
            f"(Z*Y*X, e.g. 32x512x512) and {MAX_DEMO_VOXELS} per position (T*C*Z*Y*X)"
        )
    return (n_t, n_c, n_z, n_y, n_x)


def make_demo_plate(
    path: str | os.PathLike[str],
    *,
    shape: tuple[int, int, int, int, int] = (5, 2, 16, 128, 128),
    positions: tuple[str, ...] = DEMO_POSITIONS,
    dtype: str = "uint16",
    version: str = "0.5",
    overwrite: bool = False,
) -> StoreInfo:
    """Write a demo HCS plate and return it.

    Parameters
    ----------
    path
        New store folder.
    shape
        TCZYX shape of each position.
    positions
        Position keys.
    dtype, version
        Pixel type and OME-Zarr version.
    overwrite
        Replace an existing store, if this package wrote it (an earlier demo,
        an output) or it is an empty folder; anything else is refused. The
        new plate is written beside it and the old one deleted last.

    Raises
    ------
    OutputExistsError
        ``path`` exists and ``overwrite`` is not set, or it is set but this
        package did not write what is there.
    InvalidArgumentError
        A shape a demo position cannot have (see :func:`check_demo_shape`);
        nothing is written then.
    """
    shape = check_demo_shape(shape)
    layout = OutputLayout(
        shape=shape,
        dtype=np.dtype(dtype).str,
        scale=(1.0, 1.0, 2.0, 0.65, 0.65),
        channel_names=CHANNELS[: shape[1]]
        if shape[1] <= 2
        else tuple(f"Channel {i}" for i in range(shape[1])),
    )

    def write(at: Path) -> None:
        store = write_empty_plate(
            at,
            dict.fromkeys(positions, layout),
            version=version,  # type: ignore[arg-type]
            made="demo",
        )
        for i, key in enumerate(positions):
            info = read_position(Path(store.position_path(key)), key)
            arr = info.open_array(write=True)
            arr.write(synthetic_position(seed=i, shape=shape, dtype=dtype)).result()

    check_path_text(path, "output path")
    root = Path(path).expanduser().resolve()
    if overwrite:
        root = replace_store(path, write)
    elif os.path.lexists(root):
        raise existing_output_error(path, resumable=False)
    else:
        write(root)
    return open_store(root)
