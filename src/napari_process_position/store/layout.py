"""What a position looks like: the records the store package reads and writes.

:class:`PositionInfo` (an existing position's array and metadata),
:class:`StoreInfo` (a plate or a single position) and :class:`OutputLayout`
(what an output position will hold). Standard library and numpy only.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from napari_process_position.core.errors import PositionNotFoundError
from napari_process_position.core.records import ChunkGrid

__all__ = [
    "NO_TRANSLATION",
    "TCZYX_TYPES",
    "OmeVersion",
    "OutputLayout",
    "PositionInfo",
    "StoreInfo",
    "Transforms",
    "layout_from",
    "moved_origin",
    "output_axes",
    "to_tczyx",
    "world_geometry",
]

OmeVersion = Literal["0.4", "0.5"]
#: The axis types of a TCZYX image.
TCZYX_TYPES = ("time", "channel", "space", "space", "space")
#: The translation of an image that has none.
NO_TRANSLATION = (0.0, 0.0, 0.0, 0.0, 0.0)
#: Coordinate transformations as ``(("scale", values), ("translation", values), ...)``.
Transforms = tuple[tuple[str, tuple[float, ...]], ...]


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
        Of the full-resolution array as TCZYX (an axis the image lacks has
        length 1 here); ``shards`` is None when the array is not sharded.
    axes
        The axes the image has, lower case, in TCZYX order: ``("c", "z", "y",
        "x")`` for an image without time, say.
    units, scale
        Units (None when absent) and the per-axis scale of level 0, TCZYX.
    channel_names
        From the omero labels, else ``"channel 0"``, ``"channel 1"``, ...
    zarr_format, ome_version
        2 with ``"0.4"``, or 3 with ``"0.5"``.
    fill_value
        The array's fill value: what a skipped (empty) volume reads back as.
    level_grids
        Where the arrays of pyramid levels 1, 2, ... are (the multiscale's
        further datasets, with level 0's axes, T and C; shapes TCZYX as above);
        empty without a pyramid.
    translation
        The per-axis translation of level 0 (zeros when it has none): where
        the centre of voxel 0 sits in physical space.
    shared_transforms
        The multiscale's own coordinate transformations, applied after
        level 0's (rarely written; empty when there are none).
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
    level_grids: tuple[ChunkGrid, ...] = ()
    translation: tuple[float, ...] = NO_TRANSLATION
    shared_transforms: Transforms = ()

    @property
    def levels(self) -> int:
        """Resolution levels in the multiscale: 1 without a pyramid."""
        return 1 + len(self.level_grids)

    def world(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Return the scale and translation from level-0 voxels to physical space."""
        return world_geometry(self.scale, self.translation, self.shared_transforms)

    @property
    def array_axes(self) -> str:
        """The axes the stored array has, as a string (``"tczyx"``, ``"czyx"``, ...)."""
        return "".join(self.axes)

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
            axes=self.array_axes,
        )

    def pyramid_grid(self, levels: int) -> ChunkGrid:
        """Return the chunk grid of a run writing ``levels`` resolution levels (1: level 0 only).

        Raises
        ------
        InvalidArgumentError
            The position has fewer levels, or its levels are not the 2x
            downsamplings over Z, Y and X that a run writes.
        """
        from dataclasses import replace

        from napari_process_position.core.errors import InvalidArgumentError
        from napari_process_position.core.pyramid import level_shapes

        if levels <= 1:
            return self.chunk_grid
        if levels > self.levels:
            raise InvalidArgumentError(
                f"{self.path} has {self.levels} resolution level(s); writing {levels} needs an "
                "output created with them (run --pyramid-levels, RunConfig.pyramid_levels)"
            )
        grids = self.level_grids[: levels - 1]
        for grid, zyx in zip(grids, level_shapes(self.volume_shape, levels)[1:], strict=True):
            if tuple(grid.shape) != (*self.shape[:2], *zyx):
                raise InvalidArgumentError(
                    f"{grid.array_path} has shape {tuple(grid.shape)}, not the 2x downsampling "
                    f"{(*self.shape[:2], *zyx)} of level 0 that a pyramid level holds"
                )
        return replace(self.chunk_grid, levels=grids)

    def open_array(self, *, write: bool = False) -> Any:
        """Open the full-resolution array with tensorstore (see :func:`.arrays.open_array`)."""
        from napari_process_position.store.arrays import open_array

        return open_array(self.array_path, self.zarr_format, write=write, axes=self.array_axes)

    def open_level(self, level: int) -> Any:
        """Open resolution level ``level`` (0: full resolution; see :attr:`level_grids`)."""
        from napari_process_position.store.arrays import open_array

        if level == 0:
            return self.open_array()
        path = self.level_grids[level - 1].array_path
        return open_array(path, self.zarr_format, axes=self.array_axes)

    @property
    def write_grid(self) -> tuple[int, ...]:
        """Shape of one stored file of the array: its shard, else its chunk."""
        return self.shards or self.chunks

    def layout(self, levels: int = 1) -> dict[str, Any]:
        """Return the array's dtype and layout, as resume records identify an output.

        ``levels`` > 1: the run also writes that many resolution levels (their
        shapes and files follow from level 0's).
        """
        pyramid = {"pyramid_levels": levels} if levels > 1 else {}
        return {
            **pyramid,
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


@dataclass(frozen=True)
class OutputLayout:
    """What an output position looks like: shape, dtype, scale, channel names and translation.

    ``levels`` is the number of resolution levels (1: level 0 only; see
    :mod:`napari_process_position.core.pyramid` for the shapes of the others).
    """

    shape: tuple[int, int, int, int, int]
    dtype: str
    scale: tuple[float, ...]
    channel_names: tuple[str, ...]
    units: tuple[str | None, ...] = ("second", None, "micrometer", "micrometer", "micrometer")
    levels: int = 1
    translation: tuple[float, ...] = NO_TRANSLATION
    shared_transforms: Transforms = ()
    #: The axes the output array has (the input's, in TCZYX order); shape, scale and
    #: translation are TCZYX all the same.
    axes: str = "tczyx"

    def world(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Return the scale and translation from output voxels to physical space."""
        return world_geometry(self.scale, self.translation, self.shared_transforms)


def to_tczyx(values: Sequence[Any], axes: str, missing: Any) -> tuple[Any, ...]:
    """Return per-axis ``values`` of the axes ``axes`` as TCZYX, ``missing`` where absent."""
    given = dict(zip(axes, values, strict=True))
    return tuple(given.get(a, missing) for a in "tczyx")


def world_geometry(
    scale: tuple[float, ...], translation: tuple[float, ...], after: Transforms = ()
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Compose a level's scale and translation with the transformations ``after`` it.

    Examples
    --------
    >>> world_geometry((1.0, 2.0), (0.0, 1.0), (("scale", (1.0, 3.0)), ("translation", (0, 5))))
    ((1.0, 6.0), (0.0, 8.0))
    """
    s, t = [float(v) for v in scale], [float(v) for v in translation]
    for kind, values in after:
        if kind == "scale":
            s = [a * float(b) for a, b in zip(s, values, strict=True)]
            t = [a * float(b) for a, b in zip(t, values, strict=True)]
        elif kind == "translation":
            t = [a + float(b) for a, b in zip(t, values, strict=True)]
    return tuple(s), tuple(t)


def moved_origin(
    translation: tuple[float, ...], scale: tuple[float, ...], new_scale: tuple[float, ...]
) -> tuple[float, ...]:
    """Return the translation of an output whose voxels are ``new_scale`` instead of ``scale``.

    A voxel's coordinates are those of its centre. When a transform makes
    voxels ``k`` times larger along an axis (binning, a projection), output
    voxel 0 covers input voxels ``0 .. k-1``, so its centre lies half the
    difference of the voxel sizes further on: ``t + (new - old) / 2``, as
    ngff-zarr places the levels of its pyramids. An axis whose voxel size is
    unchanged keeps its translation.

    Examples
    --------
    >>> moved_origin((0.0, 10.0, 20.0), (1.0, 0.5, 0.5), (1.0, 1.0, 1.0))
    (0.0, 10.25, 20.25)
    """
    return tuple(
        float(t) if n == s else float(t) + (float(n) - float(s)) / 2
        for t, s, n in zip(translation, scale, new_scale, strict=True)
    )


def output_axes(input_axes: str, n_times: int, n_channels: int) -> str:
    """Return the output's axes: the input's, with t or c added when it holds several.

    Examples
    --------
    >>> output_axes("czyx", 1, 2), output_axes("zyx", 1, 2), output_axes("tczyx", 1, 1)
    ('czyx', 'czyx', 'tczyx')
    """
    wanted = (
        set(input_axes) | ({"t"} if n_times > 1 else set()) | ({"c"} if n_channels > 1 else set())
    )
    return "".join(a for a in "tczyx" if a in wanted)


def layout_from(
    info: PositionInfo,
    n_times: int,
    channel_names: Sequence[str],
    *,
    zyx: Sequence[int] | None = None,
    dtype: str | None = None,
    scale: Sequence[float] | None = None,
    levels: int | Literal["auto"] = 1,
) -> OutputLayout:
    """Return what an output position made from input position ``info`` holds.

    ``n_times`` time points and the channels ``channel_names`` of volumes
    ``zyx`` (default: the input's) of ``dtype`` (default: the input's), with
    voxels ``scale`` (TCZYX; default: the input's). The rest comes from the
    input: its units, its coordinate transformations, its translation (moved
    by :func:`moved_origin` when the voxels change size) and its axes (with t
    or c added when the output holds several, :func:`output_axes`).
    ``levels``: resolution levels, a number or ``"auto"`` (the coarsest
    level's Y and X at most 512, :func:`..core.pyramid.auto_levels`).

    Raises
    ------
    InvalidArgumentError
        More than one level for an output whose axes are not t, c, z, y, x.
    """
    from napari_process_position.core.errors import InvalidArgumentError
    from napari_process_position.core.pyramid import auto_levels

    new_scale = tuple(float(s) for s in scale) if scale is not None else tuple(info.scale)
    out_zyx = tuple(int(n) for n in zyx) if zyx is not None else info.volume_shape
    default_units: tuple[str | None, ...] = OutputLayout.__dataclass_fields__["units"].default  # type: ignore[assignment]
    axes = output_axes(info.array_axes, n_times, len(channel_names))
    count = auto_levels(out_zyx) if levels == "auto" else int(levels)
    if count > 1 and axes != "tczyx":
        raise InvalidArgumentError(
            f"pyramid levels are written for outputs with axes t, c, z, y, x; this output has "
            f"{'/'.join(axes)} (the input's); run without --pyramid-levels"
        )
    return OutputLayout(
        shape=(n_times, len(channel_names), *out_zyx),  # type: ignore[arg-type]
        dtype=dtype if dtype is not None else info.dtype,
        scale=new_scale,
        channel_names=tuple(channel_names),
        units=tuple(info.units) if any(info.units) else default_units,
        levels=count,
        translation=(
            moved_origin(info.translation, info.scale, new_scale)
            if scale is not None
            else info.translation
        ),
        shared_transforms=info.shared_transforms,
        axes=axes,
    )
