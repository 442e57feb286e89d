"""Writing empty output stores: a plate of positions, or one position on its own.

:func:`write_nodes` writes the groups and empty arrays :func:`.nodes.output_nodes`
makes of an output's layouts: a whole new store, or what a joined one lacks.
Which of the two a run does, and replacing an output, is decided in
:mod:`.output`; :func:`write_empty_plate` and :func:`create_output_position`
are the direct calls for callers that only want an empty store.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Literal

import numpy as np

from napari_process_position.core.errors import InvalidArgumentError
from napari_process_position.store.layout import (
    OmeVersion,
    OutputLayout,
    PositionInfo,
    StoreInfo,
)
from napari_process_position.store.metadata import open_store, read_position
from napari_process_position.store.nodes import (
    ArrayNode,
    OutputNodes,
    image_attrs,
    output_nodes,
    plate_attrs,
    well_attrs,
)
from napari_process_position.store.paths import check_path_text
from napari_process_position.store.provenance import (
    PROVENANCE_KEY,
    creation_mark,
    record_settings,
)
from napari_process_position.store.replace import existing_output_error, replace_store

__all__ = [
    "create_output_position",
    "image_attrs",
    "join_output",
    "joined_nodes",
    "plate_attrs",
    "well_attrs",
    "write_empty_plate",
    "write_nodes",
    "write_output",
]

#: Output compression. lz4 with bit-shuffle writes float32 volumes 1.6-2.5x faster
#: than iohub's zstd level 1 at the same size (benchmarks/bench_io.py); writing
#: dominates a run's time, and every OME-Zarr reader decodes it.
_BLOSC: tuple[Literal["lz4"], int] = ("lz4", 5)


def write_output(
    root: Path,
    layouts: dict[str, OutputLayout],
    version: OmeVersion,
    *,
    plate: bool = True,
    made: str = "output",
    name: str | None = None,
) -> None:
    """Write a new store at ``root``: a plate of ``layouts``, or (``plate`` False) one position.

    ``made`` marks the store's root as this package's (``"output"``,
    ``"demo"``: what lets overwrite replace it); ``name`` names a single
    position's image (default: the folder's name).
    """
    write_nodes(root, output_nodes(layouts, version, plate=plate, name=name or root.name), made)


def join_output(root: Path, layouts: dict[str, OutputLayout]) -> None:
    """Join the plate at ``root``: check the positions it has, add those it lacks.

    Nothing is written when every position is there.

    Raises
    ------
    OutputExistsError
        A position cannot hold its layout, or ``root`` is not a plate.
    """
    write_nodes(root, joined_nodes(root, layouts, "0.5", plate=True), None)


def joined_nodes(
    root: Path, layouts: dict[str, OutputLayout], version: OmeVersion, *, plate: bool
) -> OutputNodes:
    """Return what joining the output at ``root`` writes: the positions it lacks (maybe none).

    Reads the positions of ``layouts`` the output has (each must hold its
    layout); a joined plate keeps its own OME-Zarr version. The caller holds
    the plate's lock when other jobs may be joining it too.

    Raises
    ------
    OutputExistsError
        A position cannot hold its layout, or ``root`` is not a plate.
    """
    joined = open_store(root) if plate else None
    found = {
        k: read_position(os.path.join(root, *k.split("/")), k) if plate else read_position(root)
        for k in layouts
        if joined is None or k in joined.position_keys
    }
    return output_nodes(layouts, version, plate=plate, name=root.name, found=found, joined=joined)


# -- writing nodes -----------------------------------------------------------------------------


def write_nodes(
    root: Path,
    nodes: OutputNodes,
    made: str | None,
    settings: dict[str, Any] | None = None,
) -> None:
    """Write ``nodes`` under ``root``, then the settings that made the output.

    ``made`` marks the root of a new store as this package's; ``settings``
    (plain JSON data) are recorded in the root unless it already says the
    same (:func:`.provenance.record_settings`), so a joined output that has
    every position and the same settings gets nothing written.

    A new group gets its metadata file written directly (as zarr-python
    writes it; a big plate has thousands of groups, and zarr's round trip
    through its event loop cost milliseconds each). An array identical to one
    written before copies its metadata files (an empty array is its metadata
    alone) instead of asking zarr again.
    """
    zarr_format: Literal[2, 3] = 3 if nodes.version == "0.5" else 2
    for group in nodes.groups:
        path = root / group.path
        ours = {PROVENANCE_KEY: creation_mark(made)} if made and not group.path else {}
        if group.merge:
            _merge_attrs(path, group.attrs, zarr_format)
            continue
        if group.if_absent and path.exists():
            continue
        document = (
            {"ome": {"version": "0.5", **group.attrs}, **ours}
            if zarr_format == 3
            else group.attrs | ours
        )
        if path.exists():  # replaced through zarr (mode="w" also clears what was inside)
            import zarr

            zarr.open_group(str(path), mode="w", zarr_format=zarr_format).attrs.put(document)
            continue
        path.mkdir(parents=True)
        if zarr_format == 3:
            _write_json(
                path / "zarr.json",
                {"attributes": document, "zarr_format": 3, "node_type": "group"},
            )
        else:
            _write_json(path / ".zgroup", {"zarr_format": 2})
            _write_json(path / ".zattrs", document)
    written: dict[Any, Path] = {}
    for array in nodes.arrays:
        target = root / array.path
        same = (array.shape, array.dtype, array.chunks, array.shards, array.dimension_names)
        earlier = written.get(same)
        if earlier is not None and not target.exists():
            target.mkdir()
            for item in earlier.iterdir():
                if item.is_file():
                    shutil.copyfile(item, target / item.name)
            continue
        _create_array(target, array, zarr_format)
        written[same] = target
    if settings is not None:
        record_settings(root, settings)


def _write_json(path: Path, document: dict[str, Any]) -> None:
    path.write_text(json.dumps(document, indent=2), encoding="utf-8")


def _merge_attrs(path: Path, attrs: dict[str, Any], zarr_format: Literal[2, 3]) -> None:
    import zarr

    group = zarr.open_group(str(path), mode="a", zarr_format=zarr_format)
    # update, not put: other keys (how the plate was made, a user's own) stay.
    group.attrs.update({"ome": {"version": "0.5", **attrs}} if zarr_format == 3 else attrs)


def _create_array(path: Path, array: ArrayNode, zarr_format: int) -> None:
    """Create one level's empty array: one shard, or chunks, per (t, c) volume."""
    import zarr

    if zarr_format == 3:
        from zarr.codecs import BloscCodec

        zarr.create_array(
            store=str(path),
            shape=array.shape,
            dtype=np.dtype(array.dtype),
            chunks=array.chunks,
            shards=array.shards,
            compressors=BloscCodec(cname=_BLOSC[0], clevel=_BLOSC[1], shuffle="bitshuffle"),
            fill_value=0,
            dimension_names=tuple(array.dimension_names),
            zarr_format=3,
            overwrite=True,
        )
    else:
        from numcodecs import Blosc

        zarr.create_array(
            store=str(path),
            shape=array.shape,
            dtype=np.dtype(array.dtype),
            chunks=array.chunks,
            compressors=Blosc(cname=_BLOSC[0], clevel=_BLOSC[1], shuffle=Blosc.BITSHUFFLE),
            fill_value=0,
            zarr_format=2,
            chunk_key_encoding={"name": "v2", "separator": "/"},
            overwrite=True,
        )


# -- direct calls ------------------------------------------------------------------------------


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
        root = replace_store(path, lambda at: write_output(at, layouts, version, made=made))
    elif root.exists():
        if not exist_ok:
            raise existing_output_error(path)
        join_output(root, layouts)
    else:
        write_output(root, layouts, version, made=made)
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
    write_output(root, {"": layout}, version, plate=False, name=name)
    return read_position(root)
