"""Reading OME-Zarr metadata: plates, wells and positions, v0.4 (Zarr v2) and v0.5 (Zarr v3).

We read the JSON ourselves (so a missing or broken file gets one line naming
it), check what this package needs that the specification leaves open (axes in
TCZYX order, some of t, c, z possibly missing: :mod:`.axes`), and let yaozarrs's
pydantic models of the specification validate the plate, well and image
attributes; the values come from the validated models. Not imported by
spawned workers (pydantic).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from napari_process_position.core.errors import InvalidStoreError, StoreNotFoundError
from napari_process_position.core.records import ChunkGrid
from napari_process_position.store.axes import check_axes
from napari_process_position.store.layout import PositionInfo, StoreInfo, to_tczyx
from napari_process_position.store.plain_image import plain_image
from napari_process_position.store.plain_plate import plain_plate_wells, plain_well_images

__all__ = ["group_attrs", "is_zarr_group", "open_store", "read_position"]


# -- files -------------------------------------------------------------------------------


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


def is_zarr_group(path: str | os.PathLike[str]) -> bool:
    """Tell whether ``path`` is a Zarr group (it holds ``zarr.json`` or ``.zgroup``)."""
    return (Path(path) / "zarr.json").is_file() or (Path(path) / ".zgroup").is_file()


def group_attrs(path: Path) -> tuple[int, dict[str, Any]] | None:
    """Return a group's Zarr format and OME attributes, or None if ``path`` is no Zarr group.

    For Zarr v3 the attributes are those under ``ome``; for v2 the whole ``.zattrs``.

    Raises
    ------
    InvalidStoreError
        A metadata file cannot be read or is not a JSON object.
    """
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
    found = group_attrs(path)
    if found is None:
        raise InvalidStoreError(f"{path} is not a Zarr store (no zarr.json or .zgroup in it)")
    return found


# -- validation by the specification's models ---------------------------------------------


def _models(zarr_format: int) -> Any:
    """Return the yaozarrs models of the OME-Zarr version that a Zarr format holds."""
    from yaozarrs import v04, v05

    return v05 if zarr_format == 3 else v04


def _validated(model: Any, attrs: Mapping[str, Any], where: Path) -> Any:
    """Validate ``attrs`` with a model; a failure is one line naming the field."""
    from pydantic import ValidationError

    try:
        return model.model_validate(dict(attrs))
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field = ".".join(str(part) for part in first["loc"]) or "metadata"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise InvalidStoreError(
            f"{where}: invalid OME-Zarr metadata: {field}: {first['msg']}{more}"
        ) from exc


# -- plates ----------------------------------------------------------------------------------


def _well_keys(root: Path, well_path: str, zarr_format: int) -> list[str]:
    found = group_attrs(root / well_path)
    if found is None:
        raise InvalidStoreError(
            f"{root}: the plate lists well {well_path!r} but {root / well_path} is not a Zarr group"
        )
    meta = found[1].get("well")
    images = meta.get("images") if isinstance(meta, dict) else None
    if not isinstance(images, list):
        raise InvalidStoreError(f"{root / well_path}: well metadata has no list of images")
    for image in images:
        if not isinstance(image, dict) or not image.get("path"):
            raise InvalidStoreError(
                f"{root / well_path}: an image in the well metadata has no path ({image!r})"
            )
    if not images:
        return []
    paths = plain_well_images(found[1], zarr_format)
    if paths is None:
        well = _validated(_models(zarr_format).Well, found[1], root / well_path)
        paths = [str(image.path) for image in well.well.images]
    return [f"{well_path}/{path}" for path in paths]


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
    StoreNotFoundError
        The path does not exist (also a ``FileNotFoundError``).
    InvalidStoreError
        The path is not a Zarr store, or Zarr but not an OME-Zarr plate or
        image, or its metadata breaks the specification.
    """
    root = Path(path).expanduser().resolve()
    zarr_format, attrs = _require_group(root)
    if "plate" in attrs:
        plate = attrs["plate"]
        wells = plate.get("wells") if isinstance(plate, dict) else None
        if not isinstance(wells, list):
            raise InvalidStoreError(f"{root}: plate metadata has no list of wells")
        if not wells:
            raise InvalidStoreError(f"{root}: the plate has no positions")
        for well in wells:
            if not isinstance(well, dict) or not well.get("path"):
                raise InvalidStoreError(f"{root}: a well in the plate metadata has no path")
        well_paths = plain_plate_wells(attrs, zarr_format)
        if well_paths is None:
            validated = _validated(_models(zarr_format).Plate, attrs, root)
            well_paths = [str(well.path) for well in validated.plate.wells]
        keys = [key for path in well_paths for key in _well_keys(root, path, zarr_format)]
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


# -- arrays ----------------------------------------------------------------------------------


def _array_meta(array_path: Path) -> dict[str, Any]:
    try:
        return _parse_array_meta(array_path)
    except InvalidStoreError:
        raise
    except KeyError as exc:
        raise InvalidStoreError(
            f"{array_path}: malformed array metadata (no {exc.args[0]!r})"
        ) from exc
    except (TypeError, ValueError, AttributeError, IndexError) as exc:
        raise InvalidStoreError(f"{array_path}: malformed array metadata ({exc})") from exc


def _dtype(value: Any, array_path: Path) -> str:
    if not isinstance(value, str):
        raise InvalidStoreError(f"{array_path}: unsupported data type {value!r}")
    try:
        return np.dtype(value).str
    except TypeError as exc:
        raise InvalidStoreError(f"{array_path}: unsupported data type {value!r}") from exc


def _parse_array_meta(array_path: Path) -> dict[str, Any]:
    v3 = _read_json(array_path / "zarr.json")
    if v3 is not None:
        if v3.get("node_type") != "array":
            raise InvalidStoreError(f"{array_path} is not a Zarr array")
        chunks = tuple(int(n) for n in v3["chunk_grid"]["configuration"]["chunk_shape"])
        shards = None
        for codec in v3.get("codecs", []):
            if codec.get("name") == "sharding_indexed":
                shards = chunks
                chunks = tuple(int(n) for n in codec["configuration"]["chunk_shape"])
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
            "shape": tuple(int(n) for n in v3["shape"]),
            "chunks": chunks,
            "shards": shards,
            "dtype": _dtype(v3["data_type"], array_path),
            "fill_value": v3.get("fill_value", 0),
            "zarr_format": 3,
        }
    v2 = _read_json(array_path / ".zarray")
    if v2 is not None:
        return {
            "key_prefix": "",
            "key_separator": v2.get("dimension_separator") or ".",
            "shape": tuple(int(n) for n in v2["shape"]),
            "chunks": tuple(int(n) for n in v2["chunks"]),
            "shards": None,
            "dtype": _dtype(v2["dtype"], array_path),
            "fill_value": v2.get("fill_value", 0),
            "zarr_format": 2,
        }
    raise InvalidStoreError(
        f"{array_path} is missing: the position has no array {array_path.name!r} "
        "(no zarr.json or .zarray in it)"
    )


# -- positions -------------------------------------------------------------------------------


def _channel_names(omero: Any, n_channels: int) -> list[str]:
    """Channel labels from the omero metadata (lenient: it is optional and often partial).

    The labels are taken as they are (a partial omero block, with no window
    say, still gives its labels), so no model is needed to read them.
    """
    labels: list[str] = []
    channels = omero.get("channels") if isinstance(omero, dict) else None
    if isinstance(channels, list):
        labels = [str(c.get("label") or "") if isinstance(c, dict) else "" for c in channels]
    if len(labels) != n_channels or not all(labels):
        labels = [
            labels[i] if i < len(labels) and labels[i] else f"channel {i}"
            for i in range(n_channels)
        ]
    return labels


def _level_grids(
    root: Path, paths: list[str], level0: dict[str, Any], axes: str
) -> tuple[ChunkGrid, ...]:
    """Where the pyramid levels' arrays are: level 0's axes, T, C and format (shapes TCZYX).

    Lenient (inputs may carry levels we never write): the levels stop at the
    first one that is missing, malformed or unlike level 0.
    """
    grids: list[ChunkGrid] = []
    lead = len(axes) - 3  # the t and c axes the array has
    for name in paths:
        try:
            meta = _array_meta(root / name)
        except InvalidStoreError:
            break
        shape = meta["shape"]
        if (
            len(shape) != len(axes)
            or shape[:lead] != level0["shape"][:lead]
            or meta["zarr_format"] != level0["zarr_format"]
        ):
            break
        grids.append(
            ChunkGrid(
                os.path.join(str(root), *name.split("/")),
                to_tczyx(shape, axes, 1),
                to_tczyx(meta["shards"] or meta["chunks"], axes, 1),
                meta["key_prefix"],
                meta["key_separator"],
                "zarr.json" if meta["zarr_format"] == 3 else ".zarray",
                axes=axes,
            )
        )
    return tuple(grids)


def read_position(path: str | os.PathLike[str], key: str | None = None) -> PositionInfo:
    """Read a position's metadata.

    Parameters
    ----------
    path
        The position's folder (holding array ``0``).
    key
        Its key in the plate, for messages; the folder name by default.

    Returns
    -------
    PositionInfo

    Raises
    ------
    StoreNotFoundError
        The folder does not exist (also a ``FileNotFoundError``).
    InvalidStoreError
        The metadata is missing or malformed or breaks the specification, the
        axes are not t, c, z, y, x in this order (any of t, c, z may be
        missing), or level 0's array is missing or has another dimensionality.
    """
    root = Path(path).expanduser().resolve()
    if key is not None and not root.exists():
        raise StoreNotFoundError(f"the plate lists position {key!r}, but {root} does not exist")
    zarr_format, attrs = _require_group(root)
    raw = attrs.get("multiscales")
    if not isinstance(raw, list) or not raw or not isinstance(raw[0], dict):
        raise InvalidStoreError(f"{root} has no OME-Zarr 'multiscales' metadata")
    axes = check_axes(root, raw[0])
    image_attrs = {k: v for k, v in attrs.items() if k != "omero"}
    image = plain_image(image_attrs, zarr_format)
    if image is None:
        image = _validated(_models(zarr_format).Image, image_attrs, root)
    multiscale = image.multiscales[0]
    level0 = multiscale.datasets[0]
    array_name = str(level0.path)
    scale: tuple[float, ...] = (1.0,) * 5
    translation: tuple[float, ...] = (0.0,) * 5
    for transform in level0.coordinateTransformations:
        if getattr(transform, "type", None) == "scale":
            scale = to_tczyx([float(v) for v in transform.scale], axes, 1.0)
        elif getattr(transform, "type", None) == "translation":
            translation = to_tczyx([float(v) for v in transform.translation], axes, 0.0)
    meta = _array_meta(root / array_name)
    if len(meta["shape"]) != len(axes):
        raise InvalidStoreError(
            f"{root / array_name}: array has {len(meta['shape'])} dimensions, expected "
            f"{len(axes)} ({axes.upper()})"
        )
    shared = tuple(
        (
            str(t.type),
            to_tczyx([float(v) for v in getattr(t, str(t.type))], axes, float(t.type == "scale")),
        )
        for t in multiscale.coordinateTransformations or ()
        if getattr(t, "type", None) in ("scale", "translation")
    )
    shape = to_tczyx(meta["shape"], axes, 1)
    version = getattr(multiscale, "version", None) or getattr(image, "version", None)
    return PositionInfo(
        level_grids=_level_grids(root, [str(d.path) for d in multiscale.datasets[1:]], meta, axes),
        path=str(root),
        key=key if key is not None else root.name,
        shape=shape,
        dtype=meta["dtype"],
        chunks=to_tczyx(meta["chunks"], axes, 1),
        shards=to_tczyx(meta["shards"], axes, 1) if meta["shards"] else None,
        axes=tuple(axes),
        units=to_tczyx([getattr(a, "unit", None) for a in multiscale.axes], axes, None),
        scale=scale,
        channel_names=tuple(_channel_names(attrs.get("omero"), shape[1])),
        zarr_format=meta["zarr_format"],
        ome_version=str(version or ("0.5" if zarr_format == 3 else "0.4")),
        fill_value=meta["fill_value"],
        array_name=array_name,
        key_prefix=meta["key_prefix"],
        key_separator=meta["key_separator"],
        translation=tuple(translation),
        shared_transforms=shared,
    )
