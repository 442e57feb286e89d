"""Plate and well metadata in their plain, common form, read without the models.

Listing a plate (``process-position positions``) otherwise imports yaozarrs's
pydantic models, which costs a fresh interpreter more than reading the plate.
Most plates are written in one plain form: rows and columns of alphanumeric
names, wells with a ``row/column`` path and two indices into them, plain
acquisitions, fields of view with an alphanumeric path (and an acquisition).
:func:`plain_plate_wells` and :func:`plain_well_images` recognise exactly that
form (a subset of what the models accept) and return the paths the models
would give; for anything else (a key the models would check that this module
does not, a value of another type, a duplicate, an index out of range, a path
outside the specification's characters) they return None and the caller
validates with the models as before, so invalid metadata is refused, and
warned about, as it was.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["plain_plate_wells", "plain_well_images"]

_NAME = re.compile(r"[A-Za-z0-9]+")
_WELL_PATH = re.compile(r"[A-Za-z0-9]+/[A-Za-z0-9]+")
#: Keys of the group attributes that the models read (anything else they ignore).
_CHECKED_TOP = frozenset({"uri", "bioformats2raw.layout", "bioformats2raw_layout"})
_PLATE_KEYS = frozenset(
    {"acquisitions", "columns", "rows", "wells", "field_count", "name", "version"}
)
_ACQUISITION_KEYS = frozenset(
    {"id", "name", "description", "maximumfieldcount", "starttime", "endtime"}
)


def _is_index(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _version_ok(attrs: Mapping[str, Any], block: Mapping[str, Any], zarr_format: int) -> bool:
    """Tell whether the version the models check is absent or exactly the expected one.

    (v0.5 checks the ``ome`` object's and ignores one inside the plate or well block.)
    """
    if zarr_format == 3:
        return attrs.get("version", "0.5") == "0.5"
    return block.get("version", "0.4") == "0.4"


def _acquisitions_ok(items: Any) -> bool:
    if items is None:
        return True
    if not isinstance(items, list):
        return False
    for item in items:
        if not isinstance(item, dict) or not set(item) <= _ACQUISITION_KEYS:
            return False
        if not _is_index(item.get("id")):
            return False
        if any(
            item.get(k) is not None and not _is_index(item[k]) for k in ("starttime", "endtime")
        ):
            return False
        most = item.get("maximumfieldcount")
        if most is not None and not (_is_index(most) and most > 0):
            return False
        if any(not isinstance(item.get(k, ""), (str, type(None))) for k in ("name", "description")):
            return False
    return True


def _names(items: Any) -> list[str] | None:
    """Names of a plain rows/columns list (each ``{"name": <alphanumeric>}``, all different)."""
    if not isinstance(items, list) or not items:
        return None
    names = []
    for item in items:
        if not isinstance(item, dict) or set(item) != {"name"}:
            return None
        name = item["name"]
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            return None
        names.append(name)
    return names if len(set(names)) == len(names) else None


def plain_plate_wells(attrs: Mapping[str, Any], zarr_format: int) -> list[str] | None:
    """Return the well paths of plate attributes in the plain form, or None for any other form.

    Parameters
    ----------
    attrs
        The plate group's OME attributes (v0.5: the ``ome`` object).
    zarr_format
        3 (OME-Zarr 0.5) or 2 (0.4).
    """
    plate = attrs.get("plate")
    if not isinstance(plate, dict) or _CHECKED_TOP.intersection(attrs):
        return None
    if not set(plate) <= _PLATE_KEYS or not _version_ok(attrs, plate, zarr_format):
        return None
    if not _acquisitions_ok(plate.get("acquisitions")):
        return None
    count = plate.get("field_count")
    if count is not None and not (_is_index(count) and count > 0):
        return None
    if not isinstance(plate.get("name", ""), (str, type(None))):
        return None
    rows, columns = _names(plate.get("rows")), _names(plate.get("columns"))
    wells = plate.get("wells")
    if rows is None or columns is None or not isinstance(wells, list) or not wells:
        return None
    paths = []
    seen = set()
    for well in wells:
        if not isinstance(well, dict) or set(well) != {"path", "rowIndex", "columnIndex"}:
            return None
        path, row, column = well["path"], well["rowIndex"], well["columnIndex"]
        if not isinstance(path, str) or not _WELL_PATH.fullmatch(path):
            return None
        if not (_is_index(row) and row < len(rows) and _is_index(column) and column < len(columns)):
            return None
        if (path, row, column) in seen:
            return None
        seen.add((path, row, column))
        paths.append(path)
    return paths


def plain_well_images(attrs: Mapping[str, Any], zarr_format: int) -> list[str] | None:
    """Return the image paths of well attributes in the plain form, or None for any other form.

    Parameters
    ----------
    attrs
        The well group's OME attributes (v0.5: the ``ome`` object).
    zarr_format
        3 (OME-Zarr 0.5) or 2 (0.4).
    """
    well = attrs.get("well")
    if not isinstance(well, dict) or _CHECKED_TOP.intersection(attrs):
        return None
    if not set(well) <= {"images", "version"} or not _version_ok(attrs, well, zarr_format):
        return None
    images = well.get("images")
    if not isinstance(images, list) or not images:
        return None
    paths = []
    for image in images:
        if not isinstance(image, dict) or not {"path"} <= set(image) <= {"path", "acquisition"}:
            return None
        acquisition = image.get("acquisition")
        if acquisition is not None and not (
            isinstance(acquisition, int) and not isinstance(acquisition, bool)
        ):
            return None
        path = image["path"]
        if not isinstance(path, str) or not _NAME.fullmatch(path):
            return None
        paths.append(path)
    return paths if len(set(paths)) == len(paths) else None
