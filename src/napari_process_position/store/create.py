"""Creating empty output stores: plates of positions, or one position on its own.

The plate, well and image attributes are built with yaozarrs's models of
the OME-Zarr specification (v0.4 or v0.5), so what we write validates; the
arrays are created with zarr. Each output (t, c) volume owns its files: one
shard per volume in v0.5 (smaller chunks inside for fast partial reads),
chunks that never span two volumes in v0.4, so concurrent tasks never write
the same file.
"""

from __future__ import annotations

import copy
import functools
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
from napari_process_position.store.colors import channel_color
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
    "create_output_position",
    "image_attrs",
    "plate_attrs",
    "well_attrs",
    "write_empty_plate",
]

#: Largest chunk we write into a v0.4 (Zarr v2) array; blosc refuses more than 2 GiB.
_V04_MAX_CHUNK_BYTES = 512 * 1024**2
#: Target inner chunk of a v0.5 shard (one shard = one (t, c) volume).
_V05_INNER_CHUNK_ZYX = (16, 256, 256)
#: Output compression. lz4 with bit-shuffle writes float32 volumes 1.6-2.5x faster
#: than iohub's zstd level 1 at the same size (benchmarks/bench_io.py); writing
#: dominates a run's time, and every OME-Zarr reader decodes it.
_BLOSC: tuple[Literal["lz4"], int] = ("lz4", 5)


def _models(version: OmeVersion) -> Any:
    from yaozarrs import v04, v05

    return v05 if version == "0.5" else v04


# -- attributes ------------------------------------------------------------------------------


def image_attrs(layout: OutputLayout, version: OmeVersion, name: str) -> dict[str, Any]:
    """Return the OME attributes of an output position: multiscales and omero.

    Axis names are lower case (``t, c, z, y, x``), as the specification's
    examples, ome-zarr-py, ngff-zarr and ngio write them: ngio and
    ngff-zarr's validator refuse upper-case names, and iohub reads both.

    Examples
    --------
    >>> layout = OutputLayout((2, 1, 4, 8, 8), "<u2", (1.0, 1.0, 2.0, 0.5, 0.5), ("GFP",))
    >>> image_attrs(layout, "0.5", "0")["multiscales"][0]["axes"][0]
    {'name': 't', 'type': 'time', 'unit': 'second'}
    """
    try:
        attrs = copy.deepcopy(_named_image_attrs(layout, version))
    except TypeError:  # a layout of lists (unhashable): no cache
        attrs = _image_attrs(layout, version, _NAME)
    # The name is all that differs between the positions of a plate (thousands of them,
    # each a round of the models otherwise).
    attrs["multiscales"][0]["name"] = name
    attrs["omero"]["name"] = name
    return attrs


#: The name an image's attributes are built with, then replaced (a string, so the key stays).
_NAME = "name"


@functools.lru_cache(maxsize=16)
def _named_image_attrs(layout: OutputLayout, version: OmeVersion) -> dict[str, Any]:
    return _image_attrs(layout, version, _NAME)


def _image_attrs(layout: OutputLayout, version: OmeVersion, name: str) -> dict[str, Any]:
    m = _models(version)
    kept = layout.axes  # the input's axes: "tczyx", or fewer ("czyx", "zyx", ...)
    units = dict(zip("tczyx", layout.units, strict=True))
    axes = [
        m.TimeAxis(name="t", unit=units["t"])
        if a == "t"
        else m.ChannelAxis(name="c")
        if a == "c"
        else m.SpaceAxis(name=a, unit=units[a])
        for a in kept
    ]
    # Level k: Z, Y and X scaled by 2**k and the translation as level 0's, as iohub's
    # initialize_pyramid writes them; the translation only when there is one.
    datasets = []
    for k in range(layout.levels):
        level_scale = [float(s) * (2**k if i >= 2 else 1) for i, s in enumerate(layout.scale)]
        transforms: list[Any] = [m.ScaleTransformation(scale=on_axes(level_scale, kept))]
        if any(layout.translation):
            translation = [float(t) for t in on_axes(layout.translation, kept)]
            transforms.append(m.TranslationTransformation(translation=translation))
        datasets.append(m.Dataset(path=str(k), coordinateTransformations=transforms))
    shared = [
        m.ScaleTransformation(scale=on_axes(values, kept))
        if kind == "scale"
        else m.TranslationTransformation(translation=on_axes(values, kept))
        for kind, values in layout.shared_transforms
    ]
    multiscale = m.Multiscale(
        name=name, axes=axes, datasets=datasets, coordinateTransformations=shared or None
    )
    dtype = np.dtype(layout.dtype)
    lo, hi = (
        (float(np.iinfo(dtype).min), float(np.iinfo(dtype).max))
        if dtype.kind in "ui"
        else (0.0, 1.0)
    )
    n_channels = len(layout.channel_names)
    channels = [
        m.OmeroChannel(
            active=True,
            coefficient=1.0,
            color=channel_color(i, n_channels).hex,
            family="linear",
            inverted=False,
            label=label,
            window=m.OmeroWindow(start=lo, end=hi, min=lo, max=hi),
        )
        for i, label in enumerate(layout.channel_names)
    ]
    rdefs = m.OmeroRenderingDefs(
        defaultT=0, defaultZ=layout.shape[2] // 2, model="color", projection="normal"
    )
    omero = m.Omero(version=version, id=0, name=name, channels=channels, rdefs=rdefs)
    attrs = m.Image(multiscales=[multiscale], omero=omero).model_dump(
        mode="json", exclude_none=True
    )
    attrs.pop("version", None)  # v0.5 keeps it beside the attributes, under "ome"
    # As iohub writes it (and readers of both versions expect it): the version of the multiscale.
    attrs["multiscales"][0]["version"] = version
    return attrs


def plate_attrs(keys: Sequence[str], version: OmeVersion) -> dict[str, Any]:
    """Return the plate attributes of a plate holding the positions ``keys`` (``"A/1/0"``)."""
    m = _models(version)
    rows: list[str] = []
    cols: list[str] = []
    wells: list[str] = []
    for key in keys:
        row, col, _ = key.split("/")
        rows += [row] if row not in rows else []
        cols += [col] if col not in cols else []
        wells += [f"{row}/{col}"] if f"{row}/{col}" not in wells else []
    fields: dict[str, Any] = {
        "acquisitions": [m.Acquisition(id=0)],
        "rows": [m.Row(name=r) for r in rows],
        "columns": [m.Column(name=c) for c in cols],
        "wells": [
            m.PlateWell(
                path=w,
                rowIndex=rows.index(w.split("/")[0]),
                columnIndex=cols.index(w.split("/")[1]),
            )
            for w in wells
        ],
    }
    if version == "0.4":
        fields["field_count"] = max(sum(1 for k in keys if k.startswith(w + "/")) for w in wells)
        fields["version"] = "0.4"
    attrs = m.Plate(plate=m.PlateDef(**fields)).model_dump(mode="json", exclude_none=True)
    attrs.pop("version", None)
    attrs["plate"]["version"] = version  # as iohub writes it, in both versions
    return attrs


def well_attrs(fields_of_view: Sequence[str], version: OmeVersion) -> dict[str, Any]:
    """Return the well attributes of a well holding the fields of view ``fields_of_view``."""
    m = _models(version)
    images = [m.FieldOfView(path=f, acquisition=0) for f in fields_of_view]
    well = m.WellDef(images=images, **({"version": "0.4"} if version == "0.4" else {}))
    attrs = m.Well(well=well).model_dump(mode="json", exclude_none=True)
    attrs.pop("version", None)
    return attrs


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
        root = replace_store(path, lambda at: _write_plate(at, layouts, version, made))
    elif root.exists():
        if not exist_ok:
            raise existing_output_error(path)
        return _extend_plate(root, layouts)
    else:
        _write_plate(root, layouts, version, made)
    return open_store(root)


def _write_plate(
    root: Path, layouts: dict[str, OutputLayout], version: OmeVersion, made: str
) -> None:
    _write_group(root, plate_attrs(list(layouts), version), version, made)
    for well, fovs in _wells(list(layouts)).items():
        if group_attrs(root / well.split("/")[0]) is None:
            _write_group(root / well.split("/")[0], {}, version)
        _write_group(root / well, well_attrs(fovs, version), version)
    made_arrays: dict[Any, Path] = {}
    for key, layout in layouts.items():
        _write_position(root / key, layout, version, key.split("/")[-1], None, made_arrays)


def _extend_plate(root: Path, layouts: dict[str, OutputLayout]) -> StoreInfo:
    existing = open_store(root)
    for key, layout in layouts.items():
        if key in existing.position_keys:
            differences = layout_differences(
                read_position(existing.position_path(key), key), layout
            )
            if differences:
                raise OutputExistsError(
                    f"{root}/{key} cannot hold this run's output: {'; '.join(differences)}. "
                    "Use --overwrite (overwrite=True) to replace it, or another output path"
                )
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
