"""The OME-Zarr nodes an output is made of: groups with their attributes, arrays with their chunks.

:func:`output_nodes` turns the layouts of a plan into every group and empty
array of a new output (a plate of positions, or one position), or, for an
output being joined, the positions it lacks once those it has are known to
fit (:func:`layout_differences`); :mod:`.create` writes them. Attributes
are built with yaozarrs's models of the specification (v0.4 or v0.5), so
what we write validates; an image's are built once per layout and copied,
with its own name, for each position of a plate (thousands of them, each a
round of the models otherwise). Each output (t, c) volume owns its files:
one shard per volume in v0.5 (smaller chunks inside for fast partial reads),
chunks that never span two volumes in v0.4, so concurrent tasks never write
the same file.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_process_position.core.errors import OutputExistsError
from napari_process_position.core.pyramid import level_shapes
from napari_process_position.store.colors import channel_color
from napari_process_position.store.layout import OmeVersion, OutputLayout, PositionInfo, StoreInfo

__all__ = [
    "ArrayNode",
    "GroupNode",
    "OutputNodes",
    "check_fits",
    "image_attrs",
    "layout_differences",
    "on_axes",
    "output_nodes",
    "plate_attrs",
    "well_attrs",
]

#: Largest chunk we write into a v0.4 (Zarr v2) array; blosc refuses more than 2 GiB.
_V04_MAX_CHUNK_BYTES = 512 * 1024**2
#: Target inner chunk of a v0.5 shard (one shard = one (t, c) volume).
_V05_INNER_CHUNK_ZYX = (16, 256, 256)


@dataclass(frozen=True)
class GroupNode:
    """A group to write, at ``path`` (relative to the store's root; ``""`` is the root).

    ``merge``: merge ``attrs`` into an existing group's attributes (a plate
    joined: how it was made, a user's own keys stay); ``if_absent``: write it
    only when nothing is there yet (a plate's row).
    """

    path: str
    attrs: dict[str, Any]
    merge: bool = False
    if_absent: bool = False


@dataclass(frozen=True)
class ArrayNode:
    """An empty array to write at ``path``: one resolution level of a position.

    ``shape``, ``chunks`` and ``shards`` (v0.5; None in v0.4) are on the
    array's own axes, ``dimension_names``.
    """

    path: str
    shape: tuple[int, ...]
    dtype: str
    chunks: tuple[int, ...]
    shards: tuple[int, ...] | None
    dimension_names: str


@dataclass(frozen=True)
class OutputNodes:
    """What to write into an output: its groups and empty arrays, in OME-Zarr ``version``."""

    version: OmeVersion
    groups: tuple[GroupNode, ...] = ()
    arrays: tuple[ArrayNode, ...] = ()


def on_axes(values: Sequence[Any], axes: str) -> list[Any]:
    """Return the entries of TCZYX ``values`` for the axes ``axes`` (``"czyx"``, ...)."""
    return [v for v, a in zip(values, "tczyx", strict=True) if a in axes]


def output_nodes(
    layouts: dict[str, OutputLayout],
    version: OmeVersion,
    *,
    plate: bool = True,
    name: str | None = None,
    found: Mapping[str, PositionInfo] | None = None,
    joined: StoreInfo | None = None,
) -> OutputNodes:
    """Return what to write for an output of ``layouts``: all of it, or what a joined one lacks.

    Parameters
    ----------
    layouts
        Position key (``"A/1/0"``) -> what it holds. One entry when ``plate``
        is False: the store is that position (named ``name``).
    version
        ``"0.4"`` or ``"0.5"``: of a new output (a joined plate keeps its own).
    found
        When an existing output is joined (None: a new one), the positions of
        ``layouts`` it has: each must be able to hold its layout.
    joined
        The plate being joined, as read (None for a new output, or one that is
        a single position): the positions it lacks are written, its plate and
        well attributes merged, its rows kept. Nothing, when it has them all.

    Returns
    -------
    OutputNodes
        Empty when a joined output already has every position.

    Raises
    ------
    OutputExistsError
        A position the output has cannot hold its layout (the message says
        what differs), or the output lacks positions and is not a plate.
    """
    for key, info in (found or {}).items():
        check_fits(info.path, info, layouts[key])
    if found is not None and joined is None:
        return OutputNodes(version)  # a single position joined: nothing to add
    keys = list(layouts)
    if joined is not None:
        layouts = {k: v for k, v in layouts.items() if k not in joined.position_keys}
        if not layouts:
            return OutputNodes(version)  # nothing is written when every position is there
        if joined.kind != "plate":
            raise OutputExistsError(f"{joined.path} exists and is not a plate")
        version = "0.5" if joined.zarr_format == 3 else "0.4"
        keys = [*joined.position_keys, *layouts]
    groups: list[GroupNode] = []
    if plate:
        merge = joined is not None
        groups.append(GroupNode("", plate_attrs(keys, version), merge=merge))
        wells: dict[str, list[str]] = {}
        for key in keys:
            row, col, fov = key.split("/")
            wells.setdefault(f"{row}/{col}", []).append(fov)
        for well, fovs in wells.items():
            groups.append(GroupNode(well.split("/")[0], {}, if_absent=True))
            groups.append(GroupNode(well, well_attrs(fovs, version), merge=merge))
    arrays: list[ArrayNode] = []
    for key, layout in layouts.items():
        at = key if plate else ""
        image = key.split("/")[-1] if plate else (name or key)
        groups.append(GroupNode(at, image_attrs(layout, version, image)))
        arrays += _level_arrays(at, layout, version)
    return OutputNodes(version, tuple(groups), tuple(arrays))


def layout_differences(info: PositionInfo, layout: OutputLayout) -> list[str]:
    """Say what keeps an existing output position from holding ``layout`` (empty: nothing).

    Examples: ``"it has 2 time points, this run writes 4"``, ``"its channels are
    Nuclei, this run writes Membrane"``.
    """
    found: list[str] = []
    if info.array_axes != layout.axes:
        found.append(f"its axes are {info.array_axes}, this run writes {layout.axes}")
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
    if info.levels != layout.levels:
        found.append(f"it has {info.levels} resolution level(s), this run writes {layout.levels}")
    if not np.allclose(info.translation[2:], layout.translation[2:], rtol=1e-9, atol=1e-12):
        found.append(
            f"its translation is {info.translation[2:]}, this run writes {layout.translation[2:]}"
        )
    return found


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


def _level_arrays(at: str, layout: OutputLayout, version: OmeVersion) -> list[ArrayNode]:
    """Return the arrays of one position: each level, one shard (or chunks) per (t, c) volume."""
    kept = layout.axes
    itemsize = np.dtype(layout.dtype).itemsize
    arrays = []
    for k, zyx in enumerate(level_shapes(layout.shape[2:], layout.levels)):
        if version == "0.5":
            inner = tuple(min(n, c) for n, c in zip(zyx, _V05_INNER_CHUNK_ZYX, strict=True))
            shard = tuple(math.ceil(n / c) * c for n, c in zip(zyx, inner, strict=True))
            chunks, shards = inner, tuple(on_axes((1, 1, *shard), kept))
        else:
            z, y, x = zyx
            while z > 1 and z * y * x * itemsize > _V04_MAX_CHUNK_BYTES:
                z = math.ceil(z / 2)
            chunks, shards = (z, y, x), None
        arrays.append(
            ArrayNode(
                f"{at}/{k}" if at else str(k),
                tuple(on_axes((*layout.shape[:2], *zyx), kept)),
                layout.dtype,
                tuple(on_axes((1, 1, *chunks), kept)),
                shards,
                kept,
            )
        )
    return arrays


def _models(version: OmeVersion) -> Any:
    from yaozarrs import v04, v05

    return v05 if version == "0.5" else v04


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
        hash(layout)
    except TypeError:  # a layout of lists (unhashable): no cache
        attrs = _image_attrs(layout, version, _NAME)
    else:
        attrs = copy.deepcopy(_named_image_attrs(layout, version))
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
