"""The comparison's layers: the picked positions as tiles, each input beside its output.

One image layer per channel for the inputs and one per channel for the
outputs, each showing an array of the comparison's :class:`.tiles.TileCanvas`
(so a channel has one contrast setting across every tile: wells compare
fairly), and a points layer that names each tile by its position key. The
comparison's workers write the tiles into the canvas; here the layers are
added (one per turn of the event loop) and refreshed. While a comparison is
shown the other layers are hidden, and shown again when it ends.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import QTimer

from napari_process_position.store.colors import channel_color
from napari_process_position.widget.compare_job import CompareJob, TileReady
from napari_process_position.widget.tiles import TileCanvas, TileGrid

if TYPE_CHECKING:
    import napari

__all__ = ["COMPARE_TAG", "Mosaic"]

#: Rounds of refreshes start at most this often while tiles arrive (as a run's status paints).
REFRESH_PERIOD_MS = 100

#: Metadata key that marks the comparison's layers.
COMPARE_TAG = "npp_compare"


class Mosaic:
    """Shows comparisons in a napari viewer (the controller's :class:`~.compare.MosaicPort`)."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self.viewer = viewer
        self.inputs: list[Any] = []
        self.outputs: list[Any] = []
        self.labels: Any = None
        self.canvas: TileCanvas | None = None
        self._hidden: list[Any] = []
        self._to_add: list[Callable[[], None]] = []
        self._limits: dict[tuple[str, int], tuple[float, float]] = {}
        self._focus: int | None = None
        self._refresh_due = False
        self._to_refresh: list[Any] = []
        self._stale = False
        self._round_started = 0.0

    @property
    def grid(self) -> TileGrid | None:
        """Where the tiles are (None without a comparison)."""
        return self.canvas.grid if self.canvas is not None else None

    @property
    def settled(self) -> bool:
        """True once every layer is added and every tile written so far is refreshed."""
        return not self._to_add and not self._refresh_due

    # -- the port --------------------------------------------------------------------------
    def begin(
        self, job: CompareJob, canvas: TileCanvas, channel_names: list[str], title: str
    ) -> None:
        """Show ``canvas``: its layers are added one per turn (the same canvas: kept)."""
        if canvas is self.canvas and self._alive():
            return  # a live change: the workers overwrite the tiles in place
        self._remove_layers()
        self._hide_others()
        self.canvas = canvas
        self._limits = {}
        self._focus = None
        grid = canvas.grid
        for i, name in enumerate(channel_names):
            color = channel_color(i, len(channel_names)).colormap
            for kind, data, scale, shift in (
                ("input", canvas.inputs[i], grid.in_scale, 0.0),
                ("output", canvas.outputs[i], grid.out_scale, grid.inner),
            ):
                self._to_add.append(
                    partial(self._add_image, kind, i, data, f"compare {kind} {name}", scale,
                            shift, color)
                )  # fmt: skip
        self._to_add.append(partial(self._add_labels, list(job.keys), title))
        # Adding a layer is napari's dearest call: one per turn keeps the window moving.
        QTimer.singleShot(0, self._add_next)

    def _add_next(self) -> None:
        if not self._to_add:
            return
        self._to_add.pop(0)()
        if self._to_add:
            QTimer.singleShot(0, self._add_next)
        else:
            self.viewer.layers.selection.active = self.outputs[0]  # its contrast, not labels'
            self.viewer.reset_view()

    def _add_image(
        self,
        kind: str,
        channel: int,
        data: Any,
        name: str,
        scale: tuple[float, ...],
        shift: float,
        color: Any,
    ) -> None:
        layer = self.viewer.add_image(
            data,
            name=name,
            contrast_limits=self._limits.get((kind, channel), (0.0, 1.0)),  # (no scan of zeros)
            scale=scale,
            translate=(0.0, 0.0, shift),
            colormap=color,
            blending="additive",
            metadata={COMPARE_TAG: {"kind": kind, "channel": channel}},
        )
        (self.inputs if kind == "input" else self.outputs).append(layer)

    def _add_labels(self, keys: list[str], title: str) -> None:
        grid = self.canvas.grid  # type: ignore[union-attr]
        corners = np.array([grid.origin(i) for i in range(grid.n)], dtype=float)
        corners[:, 0] -= grid.label_room  # the label above the images
        self.labels = self.viewer.add_points(
            corners,
            name=f"compare positions ({title})",
            size=0.0,
            features={"key": keys},
            text={"string": "{key}", "anchor": "upper_left", "color": "white", "size": 9},
            metadata={COMPARE_TAG: {"kind": "labels"}},
        )

    def tile(self, tile: TileReady) -> None:
        """One tile is in the canvas: set each channel's contrast once, refresh soon."""
        for kind, limits, layers in (
            ("input", tile.input_limits, self.inputs),
            ("output", tile.limits, self.outputs),
        ):
            for i, found in limits.items():
                if (kind, i) in self._limits:
                    continue
                # One contrast per channel, from the first tile that has data: later
                # tiles are shown against it, so a dim well looks dim.
                self._limits[(kind, i)] = found
                if i < len(layers):
                    layers[i].contrast_limits = found
        self._stale = True
        if not self._refresh_due:
            self._refresh_due = True
            QTimer.singleShot(self._wait_ms(), self._refresh_next)

    def _wait_ms(self) -> int:
        """Milliseconds until the next round of refreshes may start (at most one per period).

        Each round redraws every mosaic (napari puts a plane together and uploads
        it): done for every tile, it would take the cores from the workers.
        """
        since = (time.perf_counter() - self._round_started) * 1000
        return max(0, int(REFRESH_PERIOD_MS - since))

    def _refresh_next(self) -> None:
        """Refresh one layer per turn; tiles that land meanwhile wait for the next round."""
        if not self._to_refresh and self._stale:
            self._stale = False
            self._round_started = time.perf_counter()
            self._to_refresh = [*self.inputs, *self.outputs]
        if self._to_refresh:
            layer = self._to_refresh.pop(0)
            if layer in self.viewer.layers:
                layer.refresh()
        if self._to_refresh:
            QTimer.singleShot(0, self._refresh_next)
        elif self._stale:
            QTimer.singleShot(self._wait_ms(), self._refresh_next)
        else:
            self._refresh_due = False

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
        self._to_add = []
        with contextlib.suppress(RuntimeError):  # (a viewer being closed: its canvas is gone)
            self._remove_layers()
            for layer in self._hidden:
                if layer in self.viewer.layers:
                    layer.visible = True
        self._hidden = []
        self.canvas = None

    # -- helpers ---------------------------------------------------------------------------
    def layers(self) -> list[Any]:
        """Every layer of the comparison."""
        return [*self.inputs, *self.outputs, *([self.labels] if self.labels is not None else [])]

    def _alive(self) -> bool:
        layers = self.layers()
        pending = bool(self._to_add)
        return (pending or bool(layers)) and all(layer in self.viewer.layers for layer in layers)

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
