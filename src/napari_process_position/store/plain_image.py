"""Image metadata in its plain, common form, read without the specification's models.

Importing yaozarrs's pydantic models costs a fresh interpreter a quarter of a
second, more than reading a position takes. Most images are written in one
plain form: one multiscale whose axes have the expected types and units, whose
datasets have a path and a scale (optionally a translation) of one number per
axis. :func:`plain_image` recognises exactly that form and returns the values
the models would give; for anything else (an unknown key, a unit outside the
specification's lists, a transform by path, a wrong length) it returns None and
the caller validates with the models as before, so invalid metadata is refused
as it was.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

__all__ = ["plain_image"]

_SPACE_UNITS = frozenset(
    [
        "angstrom",
        "attometer",
        "centimeter",
        "decimeter",
        "exameter",
        "femtometer",
        "foot",
        "gigameter",
        "hectometer",
        "inch",
        "kilometer",
        "megameter",
        "meter",
        "micrometer",
        "mile",
        "millimeter",
        "nanometer",
        "parsec",
        "petameter",
        "picometer",
        "terameter",
        "yard",
        "yoctometer",
        "yottameter",
        "zeptometer",
        "zettameter",
    ]
)
_TIME_UNITS = frozenset(
    [
        "attosecond",
        "centisecond",
        "day",
        "decisecond",
        "exasecond",
        "femtosecond",
        "gigasecond",
        "hectosecond",
        "hour",
        "kilosecond",
        "megasecond",
        "microsecond",
        "millisecond",
        "minute",
        "nanosecond",
        "petasecond",
        "picosecond",
        "second",
        "terasecond",
        "yoctosecond",
        "yottasecond",
        "zeptosecond",
        "zettasecond",
    ]
)
_TYPES = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}


def _numbers(value: Any, n: int) -> bool:
    return (
        isinstance(value, list)
        and len(value) == n
        and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for v in value
        )
    )


def _transforms(value: Any, n: int, scale_required: bool) -> list[SimpleNamespace] | None:
    """Read a scale then an optional translation, each one number per axis; None otherwise."""
    if not isinstance(value, list) or len(value) > 2 or (scale_required and not value):
        return None
    kinds = ["scale", "translation"][: len(value)]
    out = []
    for kind, item in zip(kinds, value, strict=False):
        if not isinstance(item, dict) or set(item) != {"type", kind} or item["type"] != kind:
            return None
        if not _numbers(item[kind], n) or (kind == "scale" and 0 in item[kind]):
            return None
        out.append(SimpleNamespace(**{"type": kind, kind: list(item[kind])}))
    return out


def _axis(value: Any) -> SimpleNamespace | None:
    if not isinstance(value, dict) or not set(value) <= {"name", "type", "unit"}:
        return None
    name, kind, unit = value.get("name"), value.get("type"), value.get("unit")
    if not isinstance(name, str) or _TYPES.get(name.lower()) != kind:
        return None
    allowed = _TIME_UNITS if kind == "time" else _SPACE_UNITS if kind == "space" else frozenset()
    if unit is not None and unit not in allowed:
        return None
    return SimpleNamespace(name=name, type=kind, unit=unit)


def plain_image(attrs: Mapping[str, Any], zarr_format: int) -> Any | None:
    """Return the image's metadata as the models would (``.multiscales[0]...``), or None.

    ``attrs`` are the group's OME attributes without ``omero`` (the ``ome``
    object in Zarr v3, ``.zattrs`` in v2). None means "not the plain form":
    validate with the models.
    """
    version = "0.5" if zarr_format == 3 else "0.4"
    if not set(attrs) <= {"multiscales", "version"}:
        return None
    if attrs.get("version", None if zarr_format == 3 else version) != version:
        return None
    multiscales = attrs.get("multiscales")
    if not isinstance(multiscales, list) or len(multiscales) != 1:
        return None
    ms = multiscales[0]
    keys = {"axes", "datasets", "name", "version", "coordinateTransformations"}
    if not isinstance(ms, dict) or not set(ms) <= keys or not isinstance(ms.get("name", ""), str):
        return None
    if ms.get("version", version) != version or (zarr_format == 2 and "version" not in ms):
        return None
    raw_axes = ms.get("axes")
    if not isinstance(raw_axes, list) or not 2 <= len(raw_axes) <= 5:
        return None
    axes = [_axis(a) for a in raw_axes]
    if any(a is None for a in axes) or len({a.name for a in axes if a}) != len(axes):
        return None
    datasets = ms.get("datasets")
    if not isinstance(datasets, list) or not datasets:
        return None
    levels = []
    for dataset in datasets:
        if not isinstance(dataset, dict) or set(dataset) != {"path", "coordinateTransformations"}:
            return None
        path = dataset["path"]
        transforms = _transforms(dataset["coordinateTransformations"], len(axes), True)
        if not isinstance(path, str) or not path or transforms is None:
            return None
        levels.append(SimpleNamespace(path=path, coordinateTransformations=transforms))
    if len({d.path for d in levels}) != len(levels):
        return None
    shared = None
    if "coordinateTransformations" in ms:
        shared = _transforms(ms["coordinateTransformations"], len(axes), True)
        if shared is None:
            return None
    multiscale = SimpleNamespace(
        axes=axes,
        datasets=levels,
        coordinateTransformations=shared,
        version=ms.get("version"),
    )
    return SimpleNamespace(multiscales=[multiscale], version=attrs.get("version"))
