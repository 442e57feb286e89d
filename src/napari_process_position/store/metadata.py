"""OME-Zarr plates and positions: metadata through zarr, volumes through tensorstore.

Reads OME-Zarr v0.4 (Zarr v2) and v0.5 (Zarr v3) plates and single fields of
view; writes v0.5 by default and v0.4 on request. Each output (t, c) volume
owns its files (one shard per volume in v0.5, chunks that never span two
volumes in v0.4), so concurrent tasks never write the same file.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from napari_process_position.core.errors import (
    InvalidStoreError,
    OutputExistsError,
    PositionNotFoundError,
    StoreNotFoundError,
)
from napari_process_position.core.records import ChunkGrid

__all__ = [
    "OmeVersion",
    "OutputLayout",
    "PositionInfo",
    "StoreInfo",
    "create_output_plate",
    "create_output_position",
    "layout_differences",
    "list_positions",
    "open_store",
    "read_position",
    "tensorstore_spec",
]

log = logging.getLogger(__name__)

OmeVersion = Literal["0.4", "0.5"]

#: Largest chunk we write into a v0.4 (Zarr v2) array; blosc refuses more than 2 GiB.
_V04_MAX_CHUNK_BYTES = 512 * 1024**2
#: Target inner chunk of a v0.5 shard (one shard = one (t, c) volume).
_V05_INNER_CHUNK_ZYX = (16, 256, 256)
_TCZYX_TYPES = ("time", "channel", "space", "space", "space")
#: Output compression. lz4 with bit-shuffle writes float32 volumes 1.6-2.5x faster
#: than iohub's zstd level 1 at the same size (benchmarks/bench_io.py); writing
#: dominates a run's time, and every OME-Zarr reader decodes it.
_BLOSC: tuple[Literal["lz4"], int] = ("lz4", 5)


@dataclass(frozen=True)
class PositionInfo:
    """What is known about one position (field of view) without reading pixels.

    Attributes
    ----------
    path
        Absolute path of the position group (the folder holding array ``0``).
    key
        The position's key in its plate (``"A/1/0"``), or its folder name for
        a store that is a single position.
    shape, dtype, chunks, shards
        Of the full-resolution TCZYX array ``0``; ``shards`` is None when the
        array is not sharded.
    axes, units, scale
        Axis names, units (None when absent) and the per-axis scale of level 0.
    channel_names
        From the omero labels, else ``"channel 0"``, ``"channel 1"``, ...
    zarr_format, ome_version
        2 with ``"0.4"``, or 3 with ``"0.5"``.
    fill_value
        The array's fill value: what a skipped (empty) volume reads back as.
    """

    path: str
    key: str
    shape: tuple[int, ...]
    dtype: str
    chunks: tuple[int, ...]
    shards: tuple[int, ...] | None
    axes: tuple[str, ...]
    units: tuple[str | None, ...]
    scale: tuple[float, ...]
    channel_names: tuple[str, ...]
    zarr_format: int
    ome_version: str
    fill_value: Any = 0
    array_name: str = "0"
    key_prefix: str = "c/"
    key_separator: str = "/"

    @property
    def array_path(self) -> str:
        """Path of the full-resolution array (``0`` in stores written by iohub and by us)."""
        return os.path.join(self.path, *self.array_name.split("/"))

    @property
    def chunk_grid(self) -> ChunkGrid:
        """Where the array's files are, for completion records."""
        return ChunkGrid(
            self.array_path,
            self.shape,
            self.shards or self.chunks,
            self.key_prefix,
            self.key_separator,
            "zarr.json" if self.zarr_format == 3 else ".zarray",
        )

    def open_array(self, *, write: bool = False) -> Any:
        """Open the full-resolution array with tensorstore (see :func:`.arrays.open_array`)."""
        from napari_process_position.store.arrays import open_array

        return open_array(self.array_path, self.zarr_format, write=write)

    @property
    def write_grid(self) -> tuple[int, ...]:
        """Shape of one stored file of the array: its shard, else its chunk."""
        return self.shards or self.chunks

    def layout(self) -> dict[str, Any]:
        """Return the array's dtype and layout, as resume records identify an output."""
        return {
            "dtype": self.dtype,
            "shape": list(self.shape),
            "chunks": list(self.chunks),
            "shards": list(self.shards) if self.shards else None,
            "zarr_format": self.zarr_format,
            "fill_value": self.fill_value,
        }

    @property
    def volume_shape(self) -> tuple[int, int, int]:
        """Shape of one ZYX volume."""
        z, y, x = self.shape[2:]
        return (z, y, x)

    @property
    def volume_nbytes(self) -> int:
        """Bytes in one ZYX volume."""
        return int(np.prod(self.volume_shape)) * np.dtype(self.dtype).itemsize


@dataclass(frozen=True)
class StoreInfo:
    """An opened store: a plate with positions, or a single position."""

    path: str
    kind: Literal["plate", "position"]
    position_keys: tuple[str, ...]
    zarr_format: int

    def position_path(self, key: str) -> str:
        """Absolute path of the position ``key``."""
        if self.kind == "position":
            if key not in self.position_keys and key not in ("", "."):
                raise PositionNotFoundError(
                    f"{self.path} is a single position ({self.position_keys[0]!r}); "
                    f"it has no position {key!r}"
                )
            return self.path
        if key not in self.position_keys:
            shown = ", ".join(self.position_keys[:8])
            more = f" and {len(self.position_keys) - 8} more" if len(self.position_keys) > 8 else ""
            raise PositionNotFoundError(
                f"position {key!r} is not in {self.path}; it has {shown}{more}"
            )
        return os.path.join(self.path, *key.split("/"))


# -- reading metadata ---------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InvalidStoreError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidStoreError(
            f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})"
        ) from exc
    if not isinstance(value, dict):
        raise InvalidStoreError(f"{path} does not hold a JSON object")
    return value


def _group_attrs(path: Path) -> tuple[int, dict[str, Any]] | None:
    """Zarr format and OME attributes of a group, or None if ``path`` is no zarr group."""
    v3 = _read_json(path / "zarr.json")
    if v3 is not None:
        if v3.get("node_type") != "group":
            return 3, {}
        attrs = v3.get("attributes") or {}
        return 3, dict(attrs.get("ome") or attrs)
    if (path / ".zgroup").exists():
        return 2, _read_json(path / ".zattrs") or {}
    return None


def _require_group(path: Path) -> tuple[int, dict[str, Any]]:
    if not path.exists():
        raise StoreNotFoundError(f"{path} does not exist")
    if not path.is_dir():
        raise InvalidStoreError(f"{path} is not a folder, so it is not a Zarr store")
    found = _group_attrs(path)
    if found is None:
        raise InvalidStoreError(f"{path} is not a Zarr store (no zarr.json or .zgroup in it)")
    return found


def open_store(path: str | os.PathLike[str]) -> StoreInfo:
    """Open an OME-Zarr store's metadata: an HCS plate or a single position.

    Parameters
    ----------
    path
        The store's folder (``plate.zarr``), or a position inside a plate
        (``plate.zarr/A/1/0``), which is treated as a single position.

    Returns
    -------
    StoreInfo

    Raises
    ------
    InvalidStoreError
        The path is missing, not a Zarr store, or Zarr but not an OME-Zarr
        plate or image.
    """
    root = Path(path).expanduser().resolve()
    zarr_format, attrs = _require_group(root)
    if "plate" in attrs:
        plate = attrs["plate"]
        wells = plate.get("wells") if isinstance(plate, dict) else None
        if not isinstance(wells, list):
            raise InvalidStoreError(f"{root}: plate metadata has no list of wells")
        keys: list[str] = []
        for well in wells:
            well_path = str(well.get("path", "")) if isinstance(well, dict) else ""
            if not well_path:
                raise InvalidStoreError(f"{root}: a well in the plate metadata has no path")
            found = _group_attrs(root / well_path)
            if found is None:
                raise InvalidStoreError(
                    f"{root}: the plate lists well {well_path!r} but {root / well_path} "
                    "is not a Zarr group"
                )
            well_meta = found[1].get("well")
            images = well_meta.get("images") if isinstance(well_meta, dict) else None
            if not isinstance(images, list):
                raise InvalidStoreError(f"{root / well_path}: well metadata has no list of images")
            for image in images:
                image_path = str(image.get("path", "")) if isinstance(image, dict) else ""
                if not image_path:
                    raise InvalidStoreError(
                        f"{root / well_path}: an image in the well metadata has no path ({image!r})"
                    )
                keys.append(f"{well_path}/{image_path}")
        if not keys:
            raise InvalidStoreError(f"{root}: the plate has no positions")
        return StoreInfo(str(root), "plate", tuple(keys), zarr_format)
    if "multiscales" in attrs:
        return StoreInfo(str(root), "position", (root.name,), zarr_format)
    if "well" in attrs:
        raise InvalidStoreError(
            f"{root} is an OME-Zarr well; open its plate, or one of its positions ({root}/0)"
        )
    raise InvalidStoreError(
        f"{root} is a Zarr group but not OME-Zarr: no 'plate' or 'multiscales' metadata"
    )


def _array_meta(array_path: Path) -> dict[str, Any]:
    try:
        return _parse_array_meta(array_path)
    except InvalidStoreError:
        raise
    except KeyError as exc:
        raise InvalidStoreError(
            f"{array_path}: malformed array metadata (no {exc.args[0]!r})"
        ) from None
    except (TypeError, ValueError, AttributeError, IndexError) as exc:
        raise InvalidStoreError(f"{array_path}: malformed array metadata ({exc})") from None


def _parse_array_meta(array_path: Path) -> dict[str, Any]:
    v3 = _read_json(array_path / "zarr.json")
    if v3 is not None:
        if v3.get("node_type") != "array":
            raise InvalidStoreError(f"{array_path} is not a Zarr array")
        shape = tuple(int(n) for n in v3["shape"])
        chunks = tuple(int(n) for n in v3["chunk_grid"]["configuration"]["chunk_shape"])
        shards = None
        for codec in v3.get("codecs", []):
            if codec.get("name") == "sharding_indexed":
                shards = chunks
                chunks = tuple(int(n) for n in codec["configuration"]["chunk_shape"])
        dtype = v3["data_type"]
        if not isinstance(dtype, str):
            raise InvalidStoreError(f"{array_path}: unsupported data type {dtype!r}")
        try:
            np.dtype(dtype)
        except TypeError:
            raise InvalidStoreError(f"{array_path}: unsupported data type {dtype!r}") from None
        encoding = v3.get("chunk_key_encoding") or {}
        separator = (encoding.get("configuration") or {}).get("separator")
        if encoding.get("name", "default") == "default":
            separator = separator or "/"
            prefix = "c" + separator
        else:
            separator, prefix = separator or ".", ""
        return {
            "key_prefix": prefix,
            "key_separator": separator,
            "shape": shape,
            "chunks": chunks,
            "shards": shards,
            "dtype": np.dtype(dtype).str,
            "fill_value": v3.get("fill_value", 0),
            "zarr_format": 3,
        }
    v2 = _read_json(array_path / ".zarray")
    if v2 is not None:
        try:
            np.dtype(v2["dtype"])
        except TypeError:
            raise InvalidStoreError(
                f"{array_path}: unsupported data type {v2['dtype']!r}"
            ) from None
        return {
            "key_prefix": "",
            "key_separator": v2.get("dimension_separator") or ".",
            "shape": tuple(int(n) for n in v2["shape"]),
            "chunks": tuple(int(n) for n in v2["chunks"]),
            "shards": None,
            "dtype": np.dtype(v2["dtype"]).str,
            "fill_value": v2.get("fill_value", 0),
            "zarr_format": 2,
        }
    raise InvalidStoreError(
        f"{array_path} is missing: the position has no array {array_path.name!r} "
        "(no zarr.json or .zarray in it)"
    )


def read_position(path: str | os.PathLike[str], key: str | None = None) -> PositionInfo:
    """Read a position's metadata.

    Parameters
    ----------
    path
        The position's folder (holding array ``0``).
    key
        Its key in the plate, for messages; the folder name by default.

    Raises
    ------
    InvalidStoreError
        The metadata is missing or malformed, the axes are not TCZYX, or
        array ``0`` is missing.
    """
    root = Path(path).expanduser().resolve()
    if key is not None and not root.exists():
        raise StoreNotFoundError(f"the plate lists position {key!r}, but {root} does not exist")
    zarr_format, attrs = _require_group(root)
    ms = attrs.get("multiscales")
    if not isinstance(ms, list) or not ms or not isinstance(ms[0], dict):
        raise InvalidStoreError(f"{root} has no OME-Zarr 'multiscales' metadata")
    multiscale = ms[0]
    ome_version = str(
        multiscale.get("version") or attrs.get("version") or ("0.5" if zarr_format == 3 else "0.4")
    )
    axes_meta = multiscale.get("axes")
    if not isinstance(axes_meta, list) or not axes_meta:
        raise InvalidStoreError(f"{root}: multiscales metadata has no axes")
    names = tuple(
        str(a.get("name", "")).lower() if isinstance(a, dict) else str(a).lower() for a in axes_meta
    )
    types = tuple((a.get("type") if isinstance(a, dict) else None) for a in axes_meta)
    units = tuple((a.get("unit") if isinstance(a, dict) else None) for a in axes_meta)
    expected_types_ok = len(types) == 5 and all(
        t is None or t == e for t, e in zip(types, _TCZYX_TYPES, strict=True)
    )
    if names != ("t", "c", "z", "y", "x") or not expected_types_ok:
        shown = "/".join(names) or "none"
        if names == ("t", "c", "z", "y", "x"):
            shown += " of types " + ", ".join(str(t) for t in types)
        raise InvalidStoreError(
            f"{root}: axes are {shown}, expected t/c/z/y/x (time, channel, space, space, space)"
        )
    datasets = multiscale.get("datasets") or []
    if not datasets or not isinstance(datasets[0], dict):
        raise InvalidStoreError(f"{root}: multiscales metadata lists no datasets")
    level0 = datasets[0]
    array_name = str(level0.get("path", "0"))
    scale = [1.0] * 5
    for transform in level0.get("coordinateTransformations") or []:
        if isinstance(transform, dict) and transform.get("type") == "scale":
            values = transform.get("scale") or []
            if len(values) == 5:
                try:
                    scale = [float(v) for v in values]
                except (TypeError, ValueError):
                    raise InvalidStoreError(
                        f"{root}: the scale of dataset {array_name!r} is not five numbers: "
                        f"{values!r}"
                    ) from None
    meta = _array_meta(root / array_name)
    if len(meta["shape"]) != 5:
        raise InvalidStoreError(
            f"{root / array_name}: array has {len(meta['shape'])} dimensions, expected 5 (TCZYX)"
        )
    n_channels = meta["shape"][1]
    labels: list[str] = []
    omero = attrs.get("omero")
    if isinstance(omero, dict) and isinstance(omero.get("channels"), list):
        labels = [
            str(ch.get("label", "")) if isinstance(ch, dict) else "" for ch in omero["channels"]
        ]
    if len(labels) != n_channels or not all(labels):
        labels = [
            labels[i] if i < len(labels) and labels[i] else f"channel {i}"
            for i in range(n_channels)
        ]
    return PositionInfo(
        path=str(root),
        key=key if key is not None else root.name,
        shape=meta["shape"],
        dtype=meta["dtype"],
        chunks=meta["chunks"],
        shards=meta["shards"],
        axes=names,
        units=units,
        scale=tuple(scale),
        channel_names=tuple(labels),
        zarr_format=meta["zarr_format"],
        ome_version=ome_version,
        fill_value=meta["fill_value"],
        array_name=array_name,
        key_prefix=meta["key_prefix"],
        key_separator=meta["key_separator"],
    )


def list_positions(path: str | os.PathLike[str]) -> list[PositionInfo]:
    """Metadata of every position in a plate (or the one position of a FOV store)."""
    store = open_store(path)
    return [read_position(store.position_path(k), k) for k in store.position_keys]


# -- creating outputs ----------------------------------------------------------


@dataclass(frozen=True)
class OutputLayout:
    """What an output position looks like: shape, dtype, scale and channel names."""

    shape: tuple[int, int, int, int, int]
    dtype: str
    scale: tuple[float, ...]
    channel_names: tuple[str, ...]
    units: tuple[str | None, ...] = ("second", None, "micrometer", "micrometer", "micrometer")

    def with_(self, **changes: Any) -> OutputLayout:
        """Return a copy with some fields changed."""
        return replace(self, **changes)


def layout_differences(info: PositionInfo, layout: OutputLayout) -> list[str]:
    """Say what keeps an existing output position from holding ``layout`` (empty: nothing).

    Examples: ``"it has 2 time points, this run writes 4"``, ``"its channels are
    Nuclei, this run writes Membrane"``.
    """
    found: list[str] = []
    have, want = info.shape, layout.shape
    if have[0] != want[0]:
        found.append(f"it has {have[0]} time points, this run writes {want[0]}")
    if have[1] != want[1]:
        found.append(f"it has {have[1]} channels, this run writes {want[1]}")
    elif tuple(info.channel_names) != tuple(layout.channel_names):
        found.append(
            f"its channels are {', '.join(info.channel_names)}, this run writes "
            f"{', '.join(layout.channel_names)}"
        )
    if have[2:] != want[2:]:
        found.append(f"its volumes are ZYX {have[2:]}, this run writes {tuple(want[2:])}")
    if np.dtype(info.dtype) != np.dtype(layout.dtype):
        found.append(
            f"it stores {np.dtype(info.dtype).name}, this run writes {np.dtype(layout.dtype).name}"
        )
    if not np.allclose(info.scale[2:], layout.scale[2:], rtol=1e-9, atol=0):
        found.append(f"its voxel size is {info.scale[2:]}, this run writes {layout.scale[2:]}")
    return found


def _inner_chunks(zyx: Sequence[int], itemsize: int) -> tuple[int, int, int]:
    chunk = [min(n, c) for n, c in zip(zyx, _V05_INNER_CHUNK_ZYX, strict=True)]
    return (chunk[0], chunk[1], chunk[2])


def _v04_chunks(zyx: Sequence[int], itemsize: int) -> tuple[int, int, int]:
    z, y, x = zyx
    while z > 1 and z * y * x * itemsize > _V04_MAX_CHUNK_BYTES:
        z = math.ceil(z / 2)
    return (z, y, x)


def _axes_meta(units: Sequence[str | None]) -> list[dict[str, Any]]:
    axes = []
    for name, kind, unit in zip("TCZYX", _TCZYX_TYPES, units, strict=True):
        entry: dict[str, Any] = {"name": name, "type": kind}
        if unit:
            entry["unit"] = unit
        axes.append(entry)
    return axes


_COLORS = ("FFFFFF", "00FF00", "FF00FF", "00FFFF", "FFFF00", "FF0000", "0000FF")


def _position_attrs(layout: OutputLayout, version: OmeVersion, name: str) -> dict[str, Any]:
    dtype = np.dtype(layout.dtype)
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        lo, hi = float(info.min), float(info.max)
    else:
        lo, hi = 0.0, 1.0
    multiscales = [
        {
            "version": version,
            "axes": _axes_meta(layout.units),
            "datasets": [
                {
                    "path": "0",
                    "coordinateTransformations": [
                        {"type": "scale", "scale": [float(s) for s in layout.scale]}
                    ],
                }
            ],
            "name": name,
        }
    ]
    if version == "0.4":
        multiscales[0]["version"] = "0.4"
    omero = {
        "version": version,
        "id": 0,
        "name": name,
        "channels": [
            {
                "active": True,
                "coefficient": 1.0,
                "color": _COLORS[i % len(_COLORS)] if len(layout.channel_names) > 1 else "FFFFFF",
                "family": "linear",
                "inverted": False,
                "label": label,
                "window": {"start": lo, "end": hi, "min": lo, "max": hi},
            }
            for i, label in enumerate(layout.channel_names)
        ],
        "rdefs": {
            "defaultT": 0,
            "defaultZ": layout.shape[2] // 2,
            "model": "color",
            "projection": "normal",
        },
    }
    return {"multiscales": multiscales, "omero": omero}


def _write_group(path: Path, attrs: dict[str, Any], version: OmeVersion) -> None:
    import zarr

    if version == "0.5":
        group = zarr.open_group(str(path), mode="w", zarr_format=3)
        group.attrs.put({"ome": {"version": "0.5", **attrs}})
    else:
        group = zarr.open_group(str(path), mode="w", zarr_format=2)
        group.attrs.put(attrs)


def _create_array(path: Path, layout: OutputLayout, version: OmeVersion) -> None:
    import zarr
    from zarr.codecs import BloscCodec

    dtype = np.dtype(layout.dtype)
    zyx = layout.shape[2:]
    if version == "0.5":
        inner = _inner_chunks(zyx, dtype.itemsize)
        shard = tuple(math.ceil(n / c) * c for n, c in zip(zyx, inner, strict=True))
        zarr.create_array(
            store=str(path),
            shape=layout.shape,
            dtype=dtype,
            chunks=(1, 1, *inner),
            shards=(1, 1, *shard),
            compressors=BloscCodec(cname=_BLOSC[0], clevel=_BLOSC[1], shuffle="bitshuffle"),
            fill_value=0,
            dimension_names=("T", "C", "Z", "Y", "X"),
            zarr_format=3,
            overwrite=True,
        )
    else:
        from numcodecs import Blosc

        zarr.create_array(
            store=str(path),
            shape=layout.shape,
            dtype=dtype,
            chunks=(1, 1, *_v04_chunks(zyx, dtype.itemsize)),
            compressors=Blosc(cname=_BLOSC[0], clevel=_BLOSC[1], shuffle=Blosc.BITSHUFFLE),
            fill_value=0,
            zarr_format=2,
            chunk_key_encoding={"name": "v2", "separator": "/"},
            overwrite=True,
        )


def create_output_plate(
    path: str | os.PathLike[str],
    layouts: dict[str, OutputLayout],
    *,
    version: OmeVersion = "0.5",
    overwrite: bool = False,
    exist_ok: bool = False,
) -> StoreInfo:
    """Create an empty output plate with one position per key.

    Parameters
    ----------
    path
        The new store's folder.
    layouts
        Position key (``"A/1/0"``) -> its :class:`OutputLayout`.
    version
        ``"0.5"`` (Zarr v3, one shard per (t, c) volume) or ``"0.4"`` (Zarr v2).
    overwrite
        Delete an existing store at ``path`` first.
    exist_ok
        Keep an existing store whose positions match ``layouts`` (used by
        resume and by per-position jobs writing into one shared plate);
        positions it lacks are added.

    Raises
    ------
    OutputExistsError
        ``path`` exists and neither ``overwrite`` nor ``exist_ok`` is set, or
        it exists with a different layout.
    """
    if version not in ("0.4", "0.5"):
        raise ValueError(f"OME-Zarr version must be '0.4' or '0.5', not {version!r}")
    root = Path(path).expanduser().resolve()
    for key in layouts:
        parts = key.split("/")
        if len(parts) != 3 or not all(parts):
            raise ValueError(f"position key must look like 'A/1/0' (row/column/field), not {key!r}")
    if root.exists():
        if overwrite:
            if root.is_dir():
                shutil.rmtree(root)
            else:
                root.unlink()
        elif exist_ok:
            return _extend_plate(root, layouts, version)
        else:
            raise OutputExistsError(
                f"{root} already exists; use --overwrite (overwrite=True) to replace it or "
                "--resume (resume=True) to continue it"
            )
    _write_plate(root, layouts, version)
    return open_store(root)


def _plate_attrs(keys: Sequence[str], version: OmeVersion) -> dict[str, Any]:
    rows: list[str] = []
    cols: list[str] = []
    wells: list[str] = []
    for key in keys:
        row, col, _ = key.split("/")
        if row not in rows:
            rows.append(row)
        if col not in cols:
            cols.append(col)
        if f"{row}/{col}" not in wells:
            wells.append(f"{row}/{col}")
    plate: dict[str, Any] = {
        "version": version,
        "acquisitions": [{"id": 0}],
        "rows": [{"name": r} for r in rows],
        "columns": [{"name": c} for c in cols],
        "wells": [
            {
                "path": w,
                "rowIndex": rows.index(w.split("/")[0]),
                "columnIndex": cols.index(w.split("/")[1]),
            }
            for w in wells
        ],
    }
    if version == "0.4":
        plate["field_count"] = max(sum(1 for k in keys if k.startswith(w + "/")) for w in wells)
    return {"plate": plate}


def _write_plate(root: Path, layouts: dict[str, OutputLayout], version: OmeVersion) -> None:
    keys = list(layouts)
    _write_group(root, _plate_attrs(keys, version), version)
    wells: dict[str, list[str]] = {}
    for key in keys:
        row, col, fov = key.split("/")
        wells.setdefault(f"{row}/{col}", []).append(fov)
    for well, fovs in wells.items():
        row = well.split("/")[0]
        if not (root / row / ".zgroup").exists() and not (root / row / "zarr.json").exists():
            _write_group(root / row, {}, version)
        _write_group(root / well, _well_attrs(fovs, version), version)
    for key, layout in layouts.items():
        _write_position(root / key, layout, version, key.split("/")[-1])


def _well_attrs(fovs: Sequence[str], version: OmeVersion) -> dict[str, Any]:
    well: dict[str, Any] = {"images": [{"acquisition": 0, "path": f} for f in fovs]}
    if version == "0.4":
        well["version"] = "0.4"
    return {"well": well}


def _write_position(path: Path, layout: OutputLayout, version: OmeVersion, name: str) -> None:
    _write_group(path, _position_attrs(layout, version, name), version)
    _create_array(path / "0", layout, version)


def _extend_plate(root: Path, layouts: dict[str, OutputLayout], version: OmeVersion) -> StoreInfo:
    existing = open_store(root)
    missing = {k: v for k, v in layouts.items() if k not in existing.position_keys}
    for key, layout in layouts.items():
        if key in existing.position_keys:
            info = read_position(existing.position_path(key), key)
            differences = layout_differences(info, layout)
            if differences:
                raise OutputExistsError(
                    f"{root}/{key} cannot hold this run's output: {'; '.join(differences)}. "
                    "Use --overwrite (overwrite=True) to replace it, or another output path"
                )
    if missing:
        if existing.kind != "plate":
            raise OutputExistsError(f"{root} exists and is not a plate")
        fmt_version: OmeVersion = "0.5" if existing.zarr_format == 3 else "0.4"
        all_keys = list(existing.position_keys) + list(missing)
        _write_group_attrs_only(root, _plate_attrs(all_keys, fmt_version), fmt_version)
        wells: dict[str, list[str]] = {}
        for key in all_keys:
            row, col, fov = key.split("/")
            wells.setdefault(f"{row}/{col}", []).append(fov)
        for well, fovs in wells.items():
            row = well.split("/")[0]
            if _group_attrs(root / row) is None:
                _write_group(root / row, {}, fmt_version)
            _write_group_attrs_only(root / well, _well_attrs(fovs, fmt_version), fmt_version)
        for key in missing:
            _write_position(root / key, layouts[key], fmt_version, key.split("/")[-1])
    return open_store(root)


def _write_group_attrs_only(path: Path, attrs: dict[str, Any], version: OmeVersion) -> None:
    import zarr

    group = zarr.open_group(str(path), mode="a", zarr_format=3 if version == "0.5" else 2)
    # update, not put: other keys (how the plate was made, a user's own) stay.
    if version == "0.5":
        group.attrs.update({"ome": {"version": "0.5", **attrs}})
    else:
        group.attrs.update(attrs)


def create_output_position(
    path: str | os.PathLike[str], layout: OutputLayout, *, version: OmeVersion = "0.5"
) -> PositionInfo:
    """Create an empty single-position store (no plate around it)."""
    root = Path(path).expanduser().resolve()
    _write_position(root, layout, version, root.name)
    return read_position(root)


# -- volumes through tensorstore ------------------------------------------------


def tensorstore_spec(info: PositionInfo | str, zarr_format: int | None = None) -> dict[str, Any]:
    """Return the tensorstore spec that opens a position's array ``0``."""
    if isinstance(info, PositionInfo):
        array_path, zarr_format = info.array_path, info.zarr_format
    else:
        array_path = info
    return {
        "driver": "zarr3" if zarr_format == 3 else "zarr",
        "kvstore": {"driver": "file", "path": array_path},
    }
