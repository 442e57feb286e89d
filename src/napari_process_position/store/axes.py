"""Which axes an image may have: t, c, z, y, x in this order, any of t, c, z left out.

The specification allows 2 to 5 axes; ngio and Fractal write ``c, z, y, x``
for most HCS images and ``t, z, y, x`` or ``z, y, x`` elsewhere. Such an image
is processed as TCZYX with each missing axis of length 1. Names are compared
in lower case (iohub writes ``T, C, Z, Y, X``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from napari_process_position.core.errors import InvalidStoreError

__all__ = ["AXIS_TYPES", "check_axes"]

#: The type each axis must have (when its metadata gives one).
AXIS_TYPES = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}

_EXAMPLES = "czyx, tzyx, zyx, tcyx, cyx, yx"


def _is_subsequence(names: tuple[str, ...]) -> bool:
    order = "tczyx"
    positions = [order.index(n) if n in order else -1 for n in names]
    return (
        min(positions, default=-1) >= 0
        and positions == sorted(set(positions))
        and names[-2:] == ("y", "x")
    )


def check_axes(root: Path, multiscale: Mapping[str, Any]) -> str:
    """Return an image's axes (``"tczyx"``, ``"czyx"``, ...) after checking what we need.

    Beyond the specification: the axes are an ordered subset of TCZYX ending
    in y, x, of the expected types, and every scale and translation (of each
    level and of the multiscale itself) is one number per axis.

    Raises
    ------
    InvalidStoreError
        Other axes, or a transformation that is not one number per axis; the
        message quotes what was found.
    """
    axes = multiscale.get("axes")
    if not isinstance(axes, list) or not axes:
        raise InvalidStoreError(f"{root}: multiscales metadata has no axes")
    names = tuple(str(a.get("name", "")).lower() if isinstance(a, dict) else str(a) for a in axes)
    types = tuple(a.get("type") if isinstance(a, dict) else None for a in axes)
    expected = f"expected t/c/z/y/x in this order, any of t, c, z left out ({_EXAMPLES})"
    if not _is_subsequence(names):
        raise InvalidStoreError(f"{root}: axes are {'/'.join(names)}, {expected}")
    if any(t not in (None, AXIS_TYPES[n]) for n, t in zip(names, types, strict=True)):
        raise InvalidStoreError(
            f"{root}: axes are {'/'.join(names)} of types {', '.join(str(t) for t in types)}, "
            f"expected {', '.join(AXIS_TYPES[n] for n in names)}"
        )
    places = [
        (f"dataset {d.get('path', '?')!r}" if isinstance(d, dict) else "a dataset", d)
        for d in multiscale.get("datasets") or []
    ]
    count = {2: "two", 3: "three", 4: "four", 5: "five"}.get(len(names), str(len(names)))
    for where, holder in [*places, ("the multiscale", multiscale)]:
        found = holder.get("coordinateTransformations") if isinstance(holder, dict) else None
        for transform in found if isinstance(found, list) else []:
            for kind in ("scale", "translation"):
                values = transform.get(kind) if isinstance(transform, dict) else None
                if values is not None and (
                    not isinstance(values, list)
                    or len(values) != len(names)
                    or not all(
                        isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
                    )
                ):
                    raise InvalidStoreError(
                        f"{root}: the {kind} of {where} is not {count} numbers: {values!r}"
                    )
    return "".join(names)
