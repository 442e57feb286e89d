"""The comparison's canvas: every picked position's input and output, one mosaic per channel.

Tiles are laid out row by row, each with the input on the left and the output
on the right, in world units (so a transform that bins or crops still lines
up), with room above for the position's key. A comparison's workers hand each
tile to the canvas as it is computed, off the main thread; the canvas keeps
the volumes as they are (a :class:`MosaicArray` puts together the slice
napari asks for), so the mosaic's layers only need a refresh and the memory
held is the tiles' own. Tiles are handed over under a lock and checked against
the comparison's generation, so a stale comparison never replaces a newer
one's tile. Qt-free.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from napari_process_position.store.layout import OutputLayout, PositionInfo

__all__ = ["TileCanvas", "TileGrid"]


class TileGrid:
    """Where each tile goes, in world units and in the canvas's pixels.

    Parameters
    ----------
    n
        Number of tiles.
    info
        One of the input positions (they all have its volume shape and scale).
    layout
        The output of one position.
    """

    def __init__(self, n: int, info: PositionInfo, layout: OutputLayout) -> None:
        self.n = n
        self.cols = max(1, math.ceil(math.sqrt(n)))
        self.rows = math.ceil(n / self.cols)
        self.in_shape = tuple(int(s) for s in info.volume_shape)
        self.out_shape = tuple(int(s) for s in layout.shape[2:])
        self.in_scale = tuple(float(s) for s in info.scale[2:])
        self.out_scale = tuple(float(s) for s in layout.scale[2:])
        in_h, in_w = (self.in_shape[i] * self.in_scale[i] for i in (1, 2))
        out_h, out_w = (self.out_shape[i] * self.out_scale[i] for i in (1, 2))
        gap = 0.06 * max(in_h, in_w)
        #: The output's X offset within a tile (world units).
        self.inner = in_w + gap / 2
        #: Room above each tile's images for its label (world units).
        self.label_room = 1.5 * gap
        #: A tile's height and width (world units).
        self.cell = (max(in_h, out_h) + 2.5 * gap, in_w + gap / 2 + out_w + gap)

    def origin(self, index: int) -> tuple[float, float]:
        """Return the top left corner of the tile's images, world Y and X."""
        row, col = divmod(index, self.cols)
        return row * self.cell[0] + self.label_room, col * self.cell[1]

    def pixel(self, index: int, scale: Sequence[float]) -> tuple[int, int]:
        """Return the tile's top left pixel in a canvas at ``scale`` (ZYX)."""
        y, x = self.origin(index)
        return round(y / scale[1]), round(x / scale[2])

    def canvas_shape(self, zyx: Sequence[int], scale: Sequence[float]) -> tuple[int, int, int]:
        """Return the shape of a canvas of volumes ``zyx`` at ``scale``, the last tile included."""
        y, _ = self.pixel((self.rows - 1) * self.cols, scale)  # the last row
        _, x = self.pixel(min(self.n, self.cols) - 1, scale)  # the last column
        return (int(zyx[0]), y + int(zyx[1]), x + int(zyx[2]))


class MosaicArray:
    """A ZYX array-like over tiles held apart: napari slices it, it assembles what is asked.

    Each tile's volume is kept as it was computed (no copy into a big array,
    no memory for the gaps); a slice of the mosaic is put together from the
    tiles it crosses, zeros elsewhere.

    Parameters
    ----------
    shape
        The mosaic's ZYX shape.
    dtype
        Its pixel type.
    origins
        Tile index -> its top left pixel (Y, X).
    """

    def __init__(
        self, shape: tuple[int, int, int], dtype: Any, origins: dict[int, tuple[int, int]]
    ) -> None:
        self.shape = shape
        self.dtype = np.dtype(dtype)
        self.ndim = 3
        self.origins = origins
        self.tiles: dict[int, np.ndarray] = {}

    @property
    def nbytes(self) -> int:
        """Bytes of the tiles held."""
        return sum(tile.nbytes for tile in self.tiles.values())

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        key = (*key, *(slice(None),) * (3 - len(key)))
        ranges, squeeze, steps = [], [], []
        for axis, index in enumerate(key):
            if isinstance(index, (int, np.integer)):
                i = int(index) + (self.shape[axis] if index < 0 else 0)
                ranges.append((i, i + 1))
                squeeze.append(True)
                steps.append(1)
            else:
                start, stop, step = index.indices(self.shape[axis])
                ranges.append((start, max(start, stop)))
                squeeze.append(False)
                steps.append(step)
        (z0, z1), (y0, y1), (x0, x1) = ranges
        out = np.zeros((z1 - z0, y1 - y0, x1 - x0), dtype=self.dtype)
        for index, tile in tuple(self.tiles.items()):  # (workers add tiles meanwhile)
            ty, tx = self.origins[index]
            ys, ye = max(y0, ty), min(y1, ty + tile.shape[1])
            xs, xe = max(x0, tx), min(x1, tx + tile.shape[2])
            zs, ze = z0, min(z1, tile.shape[0])
            if ys < ye and xs < xe and zs < ze:
                out[zs - z0 : ze - z0, ys - y0 : ye - y0, xs - x0 : xe - x0] = tile[
                    zs:ze, ys - ty : ye - ty, xs - tx : xe - tx
                ]
        if any(step != 1 for step in steps):
            out = out[:: steps[0], :: steps[1], :: steps[2]]
        return out[tuple(0 if one else slice(None) for one in squeeze)]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return np.asarray(self[:], dtype=dtype)


class TileCanvas:
    """One input and one output mosaic per channel, each holding every tile (see the module).

    Parameters
    ----------
    grid
        Where the tiles go.
    channels
        Number of channels compared.
    in_dtype, out_dtype
        The input's and the output's pixel types.
    signature
        What the canvas was made for; a comparison with the same one reuses it.
    """

    def __init__(
        self,
        grid: TileGrid,
        channels: int,
        in_dtype: Any,
        out_dtype: Any,
        signature: tuple[Any, ...] = (),
    ) -> None:
        self.grid = grid
        self.signature = signature
        in_origins = {i: grid.pixel(i, grid.in_scale) for i in range(grid.n)}
        out_origins = {i: grid.pixel(i, grid.out_scale) for i in range(grid.n)}
        in_shape = grid.canvas_shape(grid.in_shape, grid.in_scale)
        out_shape = grid.canvas_shape(grid.out_shape, grid.out_scale)
        self.inputs = [MosaicArray(in_shape, in_dtype, in_origins) for _ in range(channels)]
        self.outputs = [MosaicArray(out_shape, out_dtype, out_origins) for _ in range(channels)]
        self._lock = threading.Lock()
        #: ("input" or "output", channel) -> the contrast limits found (one per channel).
        self.limits: dict[tuple[str, int], tuple[float, float]] = {}

    def needs_limits(self, kind: str, channel: int) -> bool:
        """Tell whether a channel's contrast limits are still to be found."""
        return (kind, channel) not in self.limits

    def found_limits(self, kind: str, channel: int, limits: tuple[float, float]) -> None:
        """Keep the first contrast limits found for a channel (later ones are ignored)."""
        with self._lock:
            self.limits.setdefault((kind, channel), limits)

    @property
    def nbytes(self) -> int:
        """Bytes the canvas holds."""
        return sum(a.nbytes for a in (*self.inputs, *self.outputs))

    def put(
        self,
        index: int,
        channel: int,
        source: np.ndarray,
        result: np.ndarray | None,
        still_wanted: Callable[[], bool],
    ) -> bool:
        """Hold tile ``index``'s input and output of ``channel`` (zeros for a None output).

        Returns False, keeping nothing, when ``still_wanted()`` says the
        comparison is stale (checked under the lock that orders writes).
        """
        grid = self.grid
        if result is None:
            result = np.zeros(grid.out_shape, dtype=self.outputs[channel].dtype)
        with self._lock:
            if not still_wanted():
                return False
            self.inputs[channel].tiles[index] = source
            self.outputs[channel].tiles[index] = result
            return True

    def tile_input(self, index: int, channel: int) -> np.ndarray:
        """Return tile ``index``'s input volume of ``channel``."""
        return self.inputs[channel].tiles[index]

    def tile_output(self, index: int, channel: int) -> np.ndarray:
        """Return tile ``index``'s output volume of ``channel``."""
        return self.outputs[channel].tiles[index]
