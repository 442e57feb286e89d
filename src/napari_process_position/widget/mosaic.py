"""The comparison's layers: the picked positions as tiles, each input beside its output.

One image layer per channel for the inputs and one per channel for the
outputs, each a mosaic of the tiles (so a channel has one contrast setting
across every tile: wells compare fairly), and a points layer that names each
tile by its position key. Tiles are laid out row by row; in each, the input
is on the left and the output on the right, in world units, so a transform
that bins or crops still lines up. While a comparison is shown the other
layers are hidden, and shown again when it ends.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_process_position.store.colors import channel_color
from napari_process_position.store.layout import OutputLayout
from napari_process_position.widget.compare_job import CompareJob, TileReady
from napari_process_position.widget.helpers import display_limits

if TYPE_CHECKING:
    import napari

__all__ = ["COMPARE_TAG", "Mosaic"]

#: Metadata key that marks the comparison's layers.
COMPARE_TAG = "npp_compare"


class _Grid:
    """Where each tile goes, in world units and in each mosaic's pixels."""

    def __init__(self, job: CompareJob, layout: OutputLayout) -> None:
        info = job.infos[0]
        self.n = len(job.keys)
        self.cols = max(1, math.ceil(math.sqrt(self.n)))
        self.rows = math.ceil(self.n / self.cols)
        self.in_shape = tuple(int(s) for s in info.volume_shape)
        self.out_shape = tuple(int(s) for s in layout.shape[2:])
        self.in_scale = tuple(float(s) for s in info.scale[2:])
        self.out_scale = tuple(float(s) for s in layout.scale[2:])
        in_h, in_w = (self.in_shape[i] * self.in_scale[i] for i in (1, 2))
        out_h, out_w = (self.out_shape[i] * self.out_scale[i] for i in (1, 2))
        gap = 0.06 * max(in_h, in_w)
        self.inner = in_w + gap / 2  # the output's x offset within a tile
        # Room above each tile for its label.
        self.cell = (max(in_h, out_h) + 2.5 * gap, in_w + gap / 2 + out_w + gap)
        self.label_room = 1.5 * gap

    def origin(self, index: int) -> tuple[float, float]:
        """Return the top left corner of the tile's images, world Y and X."""
        row, col = divmod(index, self.cols)
        return row * self.cell[0] + self.label_room, col * self.cell[1]

    def mosaic_shape(self, zyx: tuple[int, ...], scale: tuple[float, ...]) -> tuple[int, ...]:
        """Return the shape of a mosaic of volumes ``zyx`` at ``scale``, the last tile included."""
        y, _ = self.pixel((self.rows - 1) * self.cols, scale)  # the last row
        _, x = self.pixel(min(self.n, self.cols) - 1, scale)  # the last column
        return (zyx[0], y + zyx[1], x + zyx[2])

    def pixel(self, index: int, scale: tuple[float, ...], shift: float = 0.0) -> tuple[int, int]:
        y, x = self.origin(index)
        return round(y / scale[1]), round((x + shift) / scale[2])


class Mosaic:
    """Shows comparisons in a napari viewer (the controller's :class:`~.compare.MosaicPort`)."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self.viewer = viewer
        self.inputs: list[Any] = []
        self.outputs: list[Any] = []
        self.labels: Any = None
        self.grid: _Grid | None = None
        self._hidden: list[Any] = []
        self._signature: tuple[Any, ...] | None = None
        self._limits_set: set[int] = set()
        self._input_limits_set: set[int] = set()
        self._focus: int | None = None

    # -- the port --------------------------------------------------------------------------
    def begin(self, job: CompareJob, layout: OutputLayout, channel_names: list[str]) -> None:
        """Make the mosaic layers for ``job`` (reused when the tiles keep their sizes)."""
        signature = (
            job.keys,
            job.channels,
            job.infos[0].volume_shape,
            job.infos[0].dtype,
            tuple(layout.shape[2:]),
            np.dtype(layout.dtype).str,
        )
        if signature == self._signature and self._alive():
            return  # a live change: the tiles are overwritten as they come
        self._remove_layers()
        self._hide_others()
        grid = self.grid = _Grid(job, layout)
        self._limits_set, self._input_limits_set = set(), set()
        n_channels = len(job.channels)
        for i, name in enumerate(channel_names):
            color = channel_color(i, n_channels).colormap
            for kind, zyx, scale, dtype, shift in (
                ("input", grid.in_shape, grid.in_scale, job.infos[0].dtype, 0.0),
                ("output", grid.out_shape, grid.out_scale, layout.dtype, grid.inner),
            ):
                data = np.zeros(grid.mosaic_shape(zyx, scale), dtype=dtype)
                layer = self.viewer.add_image(
                    data,
                    name=f"compare {kind} {name}",
                    scale=scale,
                    translate=(0.0, 0.0, shift),
                    colormap=color,
                    blending="additive",
                    metadata={COMPARE_TAG: {"kind": kind, "channel": i}},
                )
                (self.inputs if kind == "input" else self.outputs).append(layer)
        corners = np.array([grid.origin(i) for i in range(grid.n)], dtype=float)
        corners[:, 0] -= grid.label_room  # the label above the images
        self.labels = self.viewer.add_points(
            corners,
            name="compare positions",
            size=0.0,
            features={"key": list(job.keys)},
            text={
                "string": "{key}",
                "anchor": "upper_left",
                "color": "white",
                "size": 9,
            },
            metadata={COMPARE_TAG: {"kind": "labels"}},
        )
        self._signature = signature
        self._focus = None
        self.viewer.layers.selection.active = self.outputs[0]  # its contrast, not the labels'
        self.viewer.reset_view()

    def tile(self, tile: TileReady) -> None:
        """Copy a position's volumes into its tile, and refresh the layers."""
        grid = self.grid
        if grid is None or not self._alive():
            return
        for i, volume in tile.inputs.items():
            self._put(self.inputs[i], volume, grid.pixel(tile.index, grid.in_scale), grid.in_shape)
        for i, out in tile.outputs.items():
            where = grid.pixel(tile.index, grid.out_scale)
            layer = self.outputs[i]
            if out is None:
                out = np.zeros(grid.out_shape, dtype=layer.data.dtype)
            self._put(layer, out, where, grid.out_shape)
            if i not in self._limits_set and i in tile.limits:
                # One contrast per channel, from the first tile that has data: later tiles
                # are shown against it, so a dim well looks dim.
                layer.contrast_limits = tile.limits[i]
                self._limits_set.add(i)
        for i, volume in tile.inputs.items():
            found = display_limits(volume) if i not in self._input_limits_set else None
            if found is not None:
                self.inputs[i].contrast_limits = found
                self._input_limits_set.add(i)

    @staticmethod
    def _put(layer: Any, volume: np.ndarray, where: tuple[int, int], zyx: tuple[int, ...]) -> None:
        y, x = where
        layer.data[: zyx[0], y : y + zyx[1], x : x + zyx[2]] = volume
        layer.refresh()

    def focus(self, index: int) -> None:
        """Centre the view on tile ``index`` and zoom to it."""
        grid = self.grid
        if grid is None:
            return
        y, x = grid.origin(index)
        center = (y + grid.cell[0] / 2, x + grid.cell[1] / 2)
        self.viewer.reset_view()
        scene = getattr(self.viewer, "scene", None)  # napari >= 0.9; viewer.camera before
        camera = scene.camera if scene is not None else self.viewer.camera
        zoom = camera.zoom * 0.95 * min(grid.rows, grid.cols)
        camera.center = (*camera.center[:-2], *center)
        camera.zoom = zoom
        self._focus = index

    def focused(self) -> int | None:
        """Return the tile the view was last moved to (None before stepping)."""
        return self._focus if self.grid is not None else None

    def end(self) -> None:
        """Remove the comparison's layers and show the layers it hid."""
        self._remove_layers()
        for layer in self._hidden:
            if layer in self.viewer.layers:
                layer.visible = True
        self._hidden = []
        self.grid = None
        self._signature = None

    # -- helpers ---------------------------------------------------------------------------
    def layers(self) -> list[Any]:
        """Every layer of the comparison."""
        return [*self.inputs, *self.outputs, *([self.labels] if self.labels is not None else [])]

    def _alive(self) -> bool:
        layers = self.layers()
        return bool(layers) and all(layer in self.viewer.layers for layer in layers)

    def _hide_others(self) -> None:
        for layer in self.viewer.layers:
            if COMPARE_TAG not in (layer.metadata or {}) and layer.visible:
                layer.visible = False
                self._hidden.append(layer)

    def _remove_layers(self) -> None:
        for layer in self.layers():
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        self.inputs, self.outputs, self.labels = [], [], None
