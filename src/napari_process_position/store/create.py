"""Creating empty output stores: plates of positions, or one position on its own.

The plate, well and image attributes come from :mod:`.attrs` (built with the
specification's models, so what we write validates); the arrays are created
with zarr. Each output (t, c) volume owns its files: one
shard per volume in v0.5 (smaller chunks inside for fast partial reads),
chunks that never span two volumes in v0.4, so concurrent tasks never write
the same file.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from napari_process_position.core.errors import InvalidArgumentError, OutputExistsError
from napari_process_position.core.pyramid import level_shapes
from napari_process_position.store.attrs import image_attrs, plate_attrs, well_attrs
from napari_process_position.store.layout import (
    OmeVersion,
    OutputLayout,
    PositionInfo,
    StoreInfo,
    layout_differences,
    on_axes,
)
from napari_process_position.store.metadata import group_attrs, open_store, read_position
from napari_process_position.store.paths import check_path_text
from napari_process_position.store.provenance import PROVENANCE_KEY, creation_mark
from napari_process_position.store.replace import existing_output_error, replace_store

__all__ = [
    "check_fits",
    "create_output_position",
    "extend_plate",
    "image_attrs",
    "plate_attrs",
    "well_attrs",
    "write_empty_plate",
    "write_plate",
]

#: Largest chunk we write into a v0.4 (Zarr v2) array; blosc refuses more than 2 GiB.
_V04_MAX_CHUNK_BYTES = 512 * 1024**2
#: Target inner chunk of a v0.5 shard (one shard = one (t, c) volume).
_V05_INNER_CHUNK_ZYX = (16, 256, 256)
#: Output compression. lz4 with bit-shuffle writes float32 volumes 1.6-2.5x faster
#: than iohub's zstd level 1 at the same size (benchmarks/bench_io.py); writing
#: dominates a run's time, and every OME-Zarr reader decodes it.
_BLOSC: tuple[Literal["lz4"], int] = ("lz4", 5)


# -- groups and arrays -------------------------------------------------------------------------


def _write_json(path: Path, document: dict[str, Any]) -> None:
    path.write_text(json.dumps(document, indent=2), encoding="utf-8")


def _write_group(
    path: Path, attrs: dict[str, Any], version: OmeVersion, made: str | None = None
) -> None:
    """Write a group with OME attributes ``attrs``; ``made`` marks the root of a new store.

    A new folder gets its metadata file written directly (as zarr-python
    writes it; a big plate has thousands of groups, and zarr's round trip
    through its event loop cost milliseconds each); an existing one is
    replaced through zarr (``mode="w"`` also clears what was inside).
    """
    ours = {PROVENANCE_KEY: creation_mark(made)} if made else {}
    document = {"ome": {"version": "0.5", **attrs}, **ours} if version == "0.5" else attrs | ours
    if not path.exists():
        path.mkdir(parents=True)
        if version == "0.5":
            _write_json(
                path / "zarr.json",
                {"attributes": document, "zarr_format": 3, "node_type": "group"},
            )
        else:
            _write_json(path / ".zgroup", {"zarr_format": 2})
            _write_json(path / ".zattrs", document)
        return
    import zarr

    group = zarr.open_group(str(path), mode="w", zarr_format=3 if version == "0.5" else 2)
    group.attrs.put(document)


def _update_group(path: Path, attrs: dict[str, Any], version: OmeVersion) -> None:
    import zarr

    group = zarr.open_group(str(path), mode="a", zarr_format=3 if version == "0.5" else 2)
    # update, not put: other keys (how the plate was made, a user's own) stay.
    group.attrs.update({"ome": {"version": "0.5", **attrs}} if version == "0.5" else attrs)


def _v05_chunks(zyx: Sequence[int]) -> tuple[int, int, int]:
    z, y, x = (min(n, c) for n, c in zip(zyx, _V05_INNER_CHUNK_ZYX, strict=True))
    return (z, y, x)


def _v04_chunks(zyx: Sequence[int], itemsize: int) -> tuple[int, int, int]:
    z, y, x = zyx
    while z > 1 and z * y * x * itemsize > _V04_MAX_CHUNK_BYTES:
        z = math.ceil(z / 2)
    return (z, y, x)


def _create_array(
    path: Path, layout: OutputLayout, version: OmeVersion, zyx: Sequence[int]
) -> None:
    """Create one level's array (ZYX ``zyx``): one shard, or chunks, per (t, c) volume."""
    import zarr

    dtype = np.dtype(layout.dtype)
    kept = layout.axes
    shape = tuple(on_axes((*layout.shape[:2], *zyx), kept))
    if version == "0.5":
        from zarr.codecs import BloscCodec

        inner = _v05_chunks(zyx)
        shard = tuple(math.ceil(n / c) * c for n, c in zip(zyx, inner, strict=True))
        zarr.create_array(
            store=str(path),
            shape=shape,
            dtype=dtype,
            chunks=tuple(on_axes((1, 1, *inner), kept)),
            shards=tuple(on_axes((1, 1, *shard), kept)),
            compressors=BloscCodec(cname=_BLOSC[0], clevel=_BLOSC[1], shuffle="bitshuffle"),
            fill_value=0,
            dimension_names=tuple(kept),
            zarr_format=3,
            overwrite=True,
        )
    else:
        from numcodecs import Blosc

        zarr.create_array(
            store=str(path),
            shape=shape,
            dtype=dtype,
            chunks=tuple(on_axes((1, 1, *_v04_chunks(zyx, dtype.itemsize)), kept)),
            compressors=Blosc(cname=_BLOSC[0], clevel=_BLOSC[1], shuffle=Blosc.BITSHUFFLE),
            fill_value=0,
            zarr_format=2,
            chunk_key_encoding={"name": "v2", "separator": "/"},
            overwrite=True,
        )


def _write_position(
    path: Path,
    layout: OutputLayout,
    version: OmeVersion,
    name: str,
    made: str | None = None,
    made_arrays: dict[Any, Path] | None = None,
) -> None:
    """Write a position's group and its (empty) arrays.

    ``made_arrays`` (shape and settings -> an array made earlier in this
    plate) lets a position copy the metadata of an identical array instead of
    asking zarr again: an empty array is its metadata files alone.
    """
    _write_group(path, image_attrs(layout, version, name), version, made)
    for k, zyx in enumerate(level_shapes(layout.shape[2:], layout.levels)):
        target = path / str(k)
        key = (layout.dtype, layout.axes, tuple(layout.shape[:2]), tuple(zyx), version)
        earlier = made_arrays.get(key) if made_arrays is not None else None
        if earlier is not None and not target.exists():
            target.mkdir()
            for item in earlier.iterdir():
                if item.is_file():
                    shutil.copyfile(item, target / item.name)
            continue
        _create_array(target, layout, version, zyx)
        if made_arrays is not None:
            made_arrays[key] = target


def _wells(keys: Sequence[str]) -> dict[str, list[str]]:
    wells: dict[str, list[str]] = {}
    for key in keys:
        row, col, fov = key.split("/")
        wells.setdefault(f"{row}/{col}", []).append(fov)
    return wells


# -- plates ----------------------------------------------------------------------------------


def write_empty_plate(
    path: str | os.PathLike[str],
    layouts: dict[str, OutputLayout],
    *,
    version: OmeVersion = "0.5",
    overwrite: bool = False,
    exist_ok: bool = False,
    made: str = "output",
) -> StoreInfo:
    """Create an empty plate with one position per key.

    Parameters
    ----------
    path
        The new store's folder.
    layouts
        Position key (``"A/1/0"``) -> its :class:`OutputLayout`.
    version
        ``"0.5"`` (Zarr v3, one shard per (t, c) volume) or ``"0.4"`` (Zarr v2).
    overwrite
        Replace an existing store at ``path``, if this package wrote it (or it
        is an empty folder): the new plate is built beside it, and the old
        one deleted once the new one is in place.
    exist_ok
        Keep an existing store whose positions match ``layouts`` (used by
        resume and by per-position jobs writing into one shared plate);
        positions it lacks are added.
    made
        What the plate is, as its root records it beside the OME attributes
        (``"output"``, ``"demo"``): the mark that lets ``overwrite`` replace it.

    Returns
    -------
    StoreInfo
        The plate.

    Raises
    ------
    InvalidArgumentError
        An unknown version or a key that is not ``row/column/field``.
    OutputExistsError
        ``path`` exists and neither ``overwrite`` nor ``exist_ok`` is set, or
        it exists with positions that cannot hold ``layouts``, or ``overwrite``
        is set but this package did not write what is there.
    """
    if version not in ("0.4", "0.5"):
        raise InvalidArgumentError(f"OME-Zarr version must be '0.4' or '0.5', not {version!r}")
    check_path_text(path, "output path")
    root = Path(path).expanduser().resolve()
    for key in layouts:
        parts = key.split("/")
        if len(parts) != 3 or not all(parts):
            raise InvalidArgumentError(
                f"position key must look like 'A/1/0' (row/column/field), not {key!r}"
            )
    if overwrite:
        root = replace_store(path, lambda at: write_plate(at, layouts, version, made))
    elif root.exists():
        if not exist_ok:
            raise existing_output_error(path)
        return extend_plate(root, layouts)
    else:
        write_plate(root, layouts, version, made)
    return open_store(root)


def write_plate(
    root: Path, layouts: dict[str, OutputLayout], version: OmeVersion, made: str
) -> None:
    """Write a new plate at ``root`` (absent, or replaced whole): its groups and empty arrays."""
    _write_group(root, plate_attrs(list(layouts), version), version, made)
    for well, fovs in _wells(list(layouts)).items():
        if group_attrs(root / well.split("/")[0]) is None:
            _write_group(root / well.split("/")[0], {}, version)
        _write_group(root / well, well_attrs(fovs, version), version)
    made_arrays: dict[Any, Path] = {}
    for key, layout in layouts.items():
        _write_position(root / key, layout, version, key.split("/")[-1], None, made_arrays)


def check_fits(where: str, info: PositionInfo, layout: OutputLayout) -> None:
    """Refuse an existing output position ``info`` (at ``where``) that cannot hold ``layout``.

    Raises
    ------
    OutputExistsError
        The message says what differs.
    """
    differences = layout_differences(info, layout)
    if differences:
        raise OutputExistsError(
            f"{where} cannot hold this run's output: {'; '.join(differences)}. "
            "Use --overwrite (overwrite=True) to replace it, or another output path"
        )


def extend_plate(root: Path, layouts: dict[str, OutputLayout]) -> StoreInfo:
    """Join the plate at ``root``: check the positions it has, add those it lacks.

    Nothing is written when every position is there. Callers that share the
    plate with other jobs hold its lock (:func:`.locks.plate_lock`).

    Raises
    ------
    OutputExistsError
        A position cannot hold its layout, or ``root`` is not a plate.
    """
    existing = open_store(root)
    for key, layout in layouts.items():
        if key in existing.position_keys:
            check_fits(f"{root}/{key}", read_position(existing.position_path(key), key), layout)
    missing = [k for k in layouts if k not in existing.position_keys]
    if not missing:
        return existing  # nothing is written when every position is there
    if existing.kind != "plate":
        raise OutputExistsError(f"{root} exists and is not a plate")
    version: OmeVersion = "0.5" if existing.zarr_format == 3 else "0.4"
    keys = list(existing.position_keys) + missing
    _update_group(root, plate_attrs(keys, version), version)
    for well, fovs in _wells(keys).items():
        if group_attrs(root / well.split("/")[0]) is None:
            _write_group(root / well.split("/")[0], {}, version)
        _update_group(root / well, well_attrs(fovs, version), version)
    made_arrays: dict[Any, Path] = {}
    for key in missing:
        _write_position(root / key, layouts[key], version, key.split("/")[-1], None, made_arrays)
    return open_store(root)


def create_output_position(
    path: str | os.PathLike[str],
    layout: OutputLayout,
    *,
    version: OmeVersion = "0.5",
    name: str | None = None,
) -> PositionInfo:
    """Create an empty single-position store (no plate around it), marked as this package's.

    ``name`` is the image's name in its metadata (default: the folder's name).

    Returns
    -------
    PositionInfo
        The new position.
    """
    check_path_text(path, "output path")
    root = Path(path).expanduser().resolve()
    _write_position(root, layout, version, name or root.name, made="output")
    return read_position(root)
