"""Comparing positions in a real viewer: a 3x3 comparison of a demo plate, tile by tile.

Run headless: ``xvfb-run -a pytest tests/test_widget_compare.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_process_position import stream_position
from napari_process_position.store.demo import make_demo_plate
from napari_process_position.transforms import get_transform
from napari_process_position.widget.compare_controls import COMPARED_POSITIONS
from napari_process_position.widget.mosaic import COMPARE_TAG

sys.path.insert(0, str(Path(__file__).parent))
import test_widget
from test_widget import wait_for

#: test_widget's viewer-and-widget fixture (it opens ``demo``, here the 3x3 plate).
widget = test_widget.widget

pytestmark = [pytest.mark.gui, pytest.mark.filterwarnings("error:Private attribute access")]

KEYS = tuple(f"{r}/{c}/0" for r in "ABC" for c in "123")
SHAPE = (2, 2, 6, 40, 48)


@pytest.fixture(scope="module")
def plate(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("compare") / "plate.zarr"
    make_demo_plate(path, shape=SHAPE, positions=KEYS)
    return path


@pytest.fixture(scope="module")
def demo(plate) -> Path:
    """The input test_widget's ``widget`` fixture opens: here the 3x3 plate."""
    return plate


def _expected(plate: Path, key: str, t: int) -> dict[int, np.ndarray]:
    """Channel -> the blurred volume at ``t``, as the engine computes it for that position."""
    found = {}
    run = stream_position(
        get_transform("gaussian_blur").func,
        plate / key,
        None,
        input_channel_indices=[[0], [1]],
        input_time_indices=[t],
        params={"sigma_y": 1.5, "sigma_x": 1.5},
    )
    for result in run:
        found[result.output_channels[0]] = result.volume[0]
    return found


def _layers(viewer, kind: str) -> list:
    return [
        layer
        for layer in viewer.layers
        if (layer.metadata or {}).get(COMPARE_TAG, {}).get("kind") == kind
    ]


def test_a_3x3_comparison_shows_each_position_s_input_and_output(widget, qtbot, plate) -> None:
    viewer = widget.viewer
    widget.transform.value = "gaussian_blur"
    params = {p.name: p for p in widget.transform_params}
    params["sigma_y"].value = params["sigma_x"].value = 1.5
    viewer.dims.set_current_step(0, 1)  # t = 1
    widget.compare_pick.value = "one field per well"
    assert widget.compare_positions.value == ", ".join(KEYS)
    widget.compare_button.clicked()
    comparison = widget.controller.comparison
    wait_for(qtbot, lambda: comparison.stats()["done"] is not None and widget._mosaic.settled)
    assert "compared 9 positions at t=1" in widget.status.value
    inputs, outputs = _layers(viewer, "input"), _layers(viewer, "output")
    assert len(inputs) == len(outputs) == 2  # one layer per channel: one contrast across tiles
    labels = _layers(viewer, "labels")[0]
    assert list(labels.features["key"]) == list(KEYS)
    # The other layers are hidden while comparing.
    assert all(
        not layer.visible for layer in viewer.layers if layer not in (*inputs, *outputs, labels)
    )
    grid = widget._mosaic.grid
    assert (grid.rows, grid.cols) == (3, 3)
    for index, key in enumerate(KEYS):
        expected = _expected(plate, key, 1)
        y, x = grid.pixel(index, grid.out_scale)
        for c, layer in enumerate(outputs):
            tile = layer.data[:, y : y + SHAPE[3], x : x + SHAPE[4]]
            np.testing.assert_array_equal(tile, expected[c])
        yi, xi = grid.pixel(index, grid.in_scale)
        source = np.asarray(
            widget.controller.comparison._infos[key].open_array()[1].read().result()
        )
        for c, layer in enumerate(inputs):
            np.testing.assert_array_equal(
                layer.data[:, yi : yi + SHAPE[3], xi : xi + SHAPE[4]], source[c]
            )
    # Stepping through the tiles moves the view to each in turn.
    assert comparison.step(1) == 0
    y0, _x0 = grid.origin(0)
    assert viewer.scene.camera.center[-2] == pytest.approx(y0 + grid.cell[0] / 2)
    assert comparison.step(4) == 4
    assert comparison.step(-5) == 8
    # The keys do the same: PageDown on the canvas steps on (wrapping to the first tile).
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QWidget

    window = widget.native.window()
    canvas = next(w for w in window.findChildren(QWidget) if type(w).__name__.startswith("Canvas"))
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key.Key_PageDown)
    assert widget._mosaic.focused() == 0
    qtbot.keyClick(canvas, Qt.Key.Key_PageUp)
    assert widget._mosaic.focused() == 8
    # End: the tiles go and the other layers come back.
    widget.compare_end.clicked()
    assert not _layers(viewer, "input") and not _layers(viewer, "labels")
    assert all(layer.visible for layer in viewer.layers)


def test_live_comparison_follows_a_parameter_and_saving_keeps_the_picks(
    widget, qtbot, plate, tmp_path
) -> None:
    widget.transform.value = "gaussian_blur"
    widget.compare_positions.value = "A/*/0"
    widget.compare_live.value = True
    widget.compare_button.clicked()
    comparison = widget.controller.comparison
    wait_for(qtbot, lambda: comparison.stats()["done"] is not None and widget._mosaic.settled)
    first = comparison.generation
    params = {p.name: p for p in widget.transform_params}
    params["sigma_y"].value = params["sigma_x"].value = 1.5
    wait_for(
        qtbot, lambda: comparison.generation > first and comparison.stats()["done"] is not None
    )
    outputs = _layers(widget.viewer, "output")
    grid = widget._mosaic.grid
    for index, key in enumerate(["A/1/0", "A/2/0", "A/3/0"]):
        y, x = grid.pixel(index, grid.out_scale)
        expected = _expected(plate, key, 0)
        np.testing.assert_array_equal(
            outputs[0].data[:, y : y + SHAPE[3], x : x + SHAPE[4]], expected[0]
        )
    widget.run_for.value = COMPARED_POSITIONS
    assert widget.controller.form.positions() == comparison.picks
    saved = widget.save_config(tmp_path / "batch.yaml", widget.controller.form.positions())
    assert "A/1/0" in saved.read_text() and "B/1/0" not in saved.read_text()
    widget.compare_end.clicked()


def test_run_for_the_compared_positions_writes_them_and_shows_the_form_s(
    widget, qtbot, plate, tmp_path
) -> None:
    from napari_process_position.store.metadata import open_store, read_position

    widget.transform.value = "gaussian_blur"
    widget.position.value = "B/2/0"
    widget.compare_positions.value = "A/1/0, B/2/0, C/3/0"
    widget.compare_positions.native.editingFinished.emit()
    widget.run_for.value = COMPARED_POSITIONS
    widget.run_button.clicked()  # no output: refused, in one line
    assert "without an output" in widget.status.value and not widget.running
    out = tmp_path / "three.zarr"
    widget.output_path.value = str(out)
    widget.run_button.clicked()
    wait_for(qtbot, lambda: widget.last_run.get("outcome") == "done")
    assert list(open_store(out).position_keys) == ["A/1/0", "B/2/0", "C/3/0"]
    assert "3 positions" in widget.status.value
    assert widget.last_run["total"] == 3 * SHAPE[0] * SHAPE[1]
    # The layers show the form's position, read back from the store.
    written = np.asarray(read_position(str(out / "B/2/0")).open_array()[1, 0].read().result())
    layer = next(lyr for lyr in widget.viewer.layers if "Gaussian" in lyr.name)
    np.testing.assert_array_equal(np.asarray(layer.data[1]), written)
