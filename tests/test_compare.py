"""Comparing positions, in the controller without Qt: picking, tiles, stale results, live, memory.

The launcher, sink and view are the recording ones of test_controller; the
mosaic records the tiles it is given. The stores, the transform and the jobs
are real.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

import npp_test_transforms as tt
from conftest import random_tczyx, write_plate
from napari_process_position.core.errors import InvalidArgumentError
from napari_process_position.core.memory import MemoryBudget
from napari_process_position.store.metadata import read_position
from napari_process_position.widget.compare_job import (
    CompareJob,
    check_comparison_memory,
)
from napari_process_position.widget.controller import Controller
from test_controller import ArraySink, RecordingView, StepLauncher, choose

TRANSFORM = "npp_test_transforms:scale_offset"
KEYS = [f"{r}/{c}/0" for r in "AB" for c in "123"] + ["C/1/0", "C/1/1", "C/2/0"]


class RecordingMosaic:
    def __init__(self) -> None:
        self.begun: list[tuple[CompareJob, Any]] = []
        self.tiles: dict[int, Any] = {}
        self.arrivals: list[str] = []
        self.focus_at: int | None = None
        self.ended = 0

    def begin(self, job, canvas, channel_names, title):
        self.begun.append((job, canvas))
        self.canvas = canvas
        self.tiles = {}

    def tile(self, tile):
        self.tiles[tile.index] = tile
        self.arrivals.append(tile.key)

    def focus(self, index):
        self.focus_at = index

    def focused(self):
        return self.focus_at

    def end(self):
        self.ended += 1


@pytest.fixture(scope="module")
def plate(tmp_path_factory):
    data = {
        k: random_tczyx((3, 2, 4, 12, 12), "float32", seed=i, empty=(), nan=())
        for i, k in enumerate(KEYS)
    }
    return write_plate(tmp_path_factory.mktemp("compare") / "in.zarr", data), data


def make(plate, key="B/2/0", **settings):
    path, _data = plate
    view, sink, launcher, mosaic = (
        RecordingView(),
        ArraySink(),
        StepLauncher(),
        RecordingMosaic(),
    )
    controller = Controller(view, sink, launcher, mosaic)
    choose(controller, path, key, **settings)
    return SimpleNamespace(
        controller=controller, view=view, sink=sink, launcher=launcher, mosaic=mosaic
    )


def test_picks_typed_and_quick(plate) -> None:
    h = make(plate)
    comparison = h.controller.comparison
    assert comparison.pick(["A/*/0", "C/1/1"]) == ["A/1/0", "A/2/0", "A/3/0", "C/1/1"]
    assert comparison.seed is None
    assert comparison.quick_pick("one field per well") == [k for k in KEYS if k != "C/1/1"]
    assert comparison.quick_pick("a row", "b") == ["B/1/0", "B/2/0", "B/3/0"]
    assert comparison.quick_pick("a column", "2") == ["A/2/0", "B/2/0", "C/2/0"]
    picked = comparison.quick_pick("N at random", "4", seed=3)
    assert len(picked) == 4 and comparison.seed == 3
    assert comparison.quick_pick("N at random", "4", seed=3) == picked
    comparison.quick_pick("N at random", "4")
    assert comparison.seed is not None  # a fresh seed, shown and kept
    with pytest.raises(InvalidArgumentError, match="whole number"):
        comparison.quick_pick("N at random", "many")
    with pytest.raises(InvalidArgumentError, match="no position in row"):
        comparison.quick_pick("a row", "H")


def test_each_tile_is_the_transform_of_its_position_and_the_form_s_comes_first(plate) -> None:
    _path, data = plate
    h = make(plate, key="B/2/0", channels=[1])
    h.sink.t_on_screen = 2
    h.controller.comparison.quick_pick("one field per well")
    h.controller.comparison.start()
    h.launcher.finish_all()
    picks = h.controller.comparison.picks
    assert len(h.mosaic.tiles) == len(picks) == 8  # 8 wells
    # The position the form shows is started first (with 2 workers, A/1/0 beside it).
    order = h.controller.comparison.job.order
    assert [picks[i] for i in order[:2]] == ["B/2/0", "A/1/0"]
    assert sorted(order) == list(range(8))
    for index, tile in h.mosaic.tiles.items():
        key = picks[index]
        assert tile.key == key
        np.testing.assert_array_equal(h.mosaic.canvas.tile_input(index, 0), data[key][2, 1])
        np.testing.assert_array_equal(
            h.mosaic.canvas.tile_output(index, 0), tt.scale_offset(data[key][2, [1]], 3.0, 0.5)[0]
        )
    assert "compared 8 positions at t=2" in h.view.statuses[-1][0]
    stats = h.controller.comparison.stats()
    assert stats["tiles"] == 8 and stats["done"] >= stats["first_tile"] >= stats["requested"]


def test_a_newer_comparison_drops_the_older_one_s_tiles(plate) -> None:
    h = make(plate)
    comparison = h.controller.comparison
    comparison.pick(["A/*/0"])
    comparison.start()
    old = h.launcher.jobs[-1]
    old.step()  # the layout
    old.step()  # one tile
    assert len(h.mosaic.tiles) == 1
    h.controller.form.set_params({"factor": 5.0, "offset": 0.0})
    comparison.start()
    old.finish()  # the stale job's remaining events are dropped
    assert len(h.mosaic.begun) == 1 and len(h.mosaic.tiles) == 1
    h.launcher.finish_all()
    assert len(h.mosaic.begun) == 2
    _path, data = plate
    for index in h.mosaic.tiles:
        key = comparison.picks[index]
        np.testing.assert_array_equal(
            h.mosaic.canvas.tile_output(index, 0), tt.scale_offset(data[key][0, [0]], 5.0, 0.0)[0]
        )


def test_live_recomputes_after_a_pause_and_only_while_comparing(plate) -> None:
    h = make(plate)
    comparison = h.controller.comparison
    comparison.set_live(True)  # nothing to recompute yet
    assert h.launcher.timers == []
    comparison.pick(["C/*"])
    comparison.start()
    h.launcher.finish_all()
    h.sink.t_on_screen = 1
    comparison.request()
    comparison.request()  # debounced: one timer
    assert len(h.launcher.timers) == 1
    h.launcher.fire_timers()
    h.launcher.finish_all()
    assert {tile.key for tile in h.mosaic.tiles.values()} == {"C/1/0", "C/1/1", "C/2/0"}
    assert all("t=1" in s for s, _ in h.view.statuses[-1:])
    # Ending removes the tiles; a previews is no longer blocked.
    comparison.stop()
    assert h.mosaic.ended == 1 and not comparison.active
    comparison.request()
    assert h.launcher.timers == []


def test_stepping_moves_through_the_tiles_and_wraps(plate) -> None:
    h = make(plate)
    comparison = h.controller.comparison
    assert comparison.step(1) is None  # nothing compared yet
    comparison.pick(["A/*/0"])
    comparison.start()
    h.launcher.finish_all()
    assert [comparison.step(1) for _ in range(4)] == [0, 1, 2, 0]
    assert comparison.step(-1) == 2
    assert "A/3/0" in h.view.statuses[-1][0]


def test_a_comparison_that_does_not_fit_in_memory_is_refused(plate) -> None:
    h = make(plate)
    comparison = h.controller.comparison
    comparison.pick(["*"])
    job = comparison._plan()
    layout = type("L", (), {"shape": (1, 2, 4, 12, 12), "dtype": "float32"})()
    needed = 9 * 2 * 2 * (4 * 12 * 12 * 4)
    assert check_comparison_memory(job, layout, MemoryBudget(10**9, "test")) == needed
    with pytest.raises(InvalidArgumentError, match=r"comparing 9 positions .* more than 50%"):
        check_comparison_memory(job, layout, MemoryBudget(needed, "a test limit"))


def test_positions_of_other_sizes_and_runs_in_flight_are_refused(plate, tmp_path) -> None:
    _path, data = plate
    odd = write_plate(
        tmp_path / "odd.zarr",
        {"A/1/0": data["A/1/0"], "A/2/0": np.zeros((3, 2, 4, 8, 8), "float32")},
    )
    h = make((odd, None), key="A/1/0")
    h.controller.comparison.pick(["*"])
    h.controller.comparison.start()
    h.launcher.finish_all()
    assert "positions differ: A/1/0 is 4x12x12 float32, A/2/0 is 4x8x8" in h.view.statuses[-1][0]
    assert h.mosaic.begun == []
    h = make(plate)
    h.controller.comparison.pick(["A/1/0"])
    h.controller.run()
    h.controller.comparison.start()
    assert h.view.statuses[-1][0] == "cannot compare while a run is in flight"
    h.launcher.finish_all()


def test_the_canvas_places_tiles_apart_and_refuses_stale_writes(plate) -> None:
    from napari_process_position.store.layout import OutputLayout
    from napari_process_position.widget.tiles import TileCanvas, TileGrid

    path, data = plate
    info = read_position(str(path / "A/1/0"), "A/1/0")
    # A 2x binned output: half the pixels at twice the scale, lined up in world units.
    binned = OutputLayout(
        shape=(3, 2, 4, 6, 6),
        dtype="float32",
        scale=(1.0, 1.0, 2.0, 1.0, 1.0),
        channel_names=("a", "b"),
    )
    grid = TileGrid(5, info, binned)
    assert (grid.rows, grid.cols) == (2, 3)
    canvas = TileCanvas(grid, 2, info.dtype, binned.dtype)
    for index in range(5):
        assert canvas.put(
            index, 1, data[KEYS[index]][0, 1], np.full((4, 6, 6), index + 1.0), lambda: True
        )
    assert not canvas.put(0, 1, data[KEYS[0]][0, 1] * 0, None, lambda: False)
    for index in range(5):
        np.testing.assert_array_equal(canvas.tile_input(index, 1), data[KEYS[index]][0, 1])
        assert (canvas.tile_output(index, 1) == index + 1).all()
    # Tiles do not overlap: every written value is one tile's.
    dense = np.asarray(canvas.outputs[1])
    assert dense.shape == canvas.outputs[1].shape
    assert dense.sum() == sum((i + 1) * 4 * 36 for i in range(5))
    assert not np.asarray(canvas.inputs[0]).any()  # channel 0 never written
    # napari's slices of the mosaic are those of the dense array.
    mosaic = canvas.inputs[1]
    whole = np.asarray(mosaic)
    for key in [
        (2,),
        (-1, slice(None), slice(3, 30)),
        (slice(1, 3), slice(5, 20)),
        (slice(None), 7),
    ]:
        np.testing.assert_array_equal(mosaic[key], whole[key])
    np.testing.assert_array_equal(mosaic[:, ::2, ::3], whole[:, ::2, ::3])
    in_y, in_x = grid.pixel(4, grid.in_scale)
    out_y, out_x = grid.pixel(4, grid.out_scale)
    assert (in_y * grid.in_scale[1], in_x * grid.in_scale[2]) == pytest.approx(
        (out_y * grid.out_scale[1], out_x * grid.out_scale[2]), abs=1.0
    )


def test_a_region_only_comparison_computes_the_same_region_of_every_tile(plate) -> None:
    h = make(
        plate, transform="gaussian_blur", params={"sigma_z": 0.0, "sigma_y": 1.0, "sigma_x": 1.0}
    )
    h.view.region = True
    h.controller.comparison.pick(["A/*/0"])
    h.controller.comparison.start()  # no rectangle: whole volumes, and the status says so
    h.launcher.finish_all()
    assert "needs a rectangle" in h.view.statuses[-1][0]
    whole = {i: h.mosaic.canvas.tile_output(i, 0).copy() for i in range(3)}
    h.sink.region = (None, (2, 8), (3, 9))
    h.controller.comparison.start()
    h.launcher.finish_all()
    assert "(the region only)" in h.view.statuses[-1][0]
    for i in range(3):
        tile = h.mosaic.canvas.tile_output(i, 0)
        # The region equals the whole volume's computation there (the margin is exact)...
        np.testing.assert_array_equal(tile[:, 2:8, 3:9], whole[i][:, 2:8, 3:9])
        # ...and the rest of the tile is left at zero.
        outside = tile.copy()
        outside[:, 2:8, 3:9] = 0
        assert not outside.any()
