"""The widget places input and output layers where the data is: translate as well as scale.

Run headless: ``xvfb-run -a pytest tests/test_widget_geometry.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

sys.path.insert(0, str(Path(__file__).parent))
import test_widget
from test_widget import output_layers, run, set_mode

nz = pytest.importorskip("ngff_zarr")
demo = test_widget.demo
widget = test_widget.widget

pytestmark = [pytest.mark.gui]


def test_input_and_binned_output_overlay_a_translated_czyx_image(widget, qtbot, tmp_path):
    czyx = np.random.default_rng(2).integers(1, 4000, size=(2, 4, 16, 16)).astype("uint16")
    image = nz.to_ngff_image(
        czyx,
        dims=list("czyx"),
        scale={"c": 1.0, "z": 2.0, "y": 0.5, "x": 0.5},
        translation={"c": 0.0, "z": 3.0, "y": 10.0, "x": 20.0},
    )
    nz.to_ngff_zarr(str(tmp_path / "in.zarr"), nz.to_multiscales(image), version="0.5")
    w = widget
    w.input_path.value = str(tmp_path / "in.zarr")
    qtbot.waitUntil(
        lambda: len([la for la in w.viewer.layers if not la.name.endswith("]")]) == 2,
        timeout=30_000,
    )
    inputs = [layer for layer in w.viewer.layers if not layer.name.endswith("]")]
    for layer in inputs:  # no time axis: a slider of one step
        assert layer.data.shape == (1, 4, 16, 16)
        assert tuple(layer.translate) == (0.0, 3.0, 10.0, 20.0)
        assert tuple(layer.scale) == (1.0, 2.0, 0.5, 0.5)
    w.transform.value = "binning"
    w.output_path.value = tmp_path / "out.zarr"
    set_mode(w, "serial")
    assert run(qtbot, w)["outcome"] == "done", w.status.value
    outputs = output_layers(w)
    assert len(outputs) == 2
    for layer in outputs:
        assert layer.data.shape == (1, 4, 8, 8)
        assert tuple(layer.scale) == (1.0, 2.0, 1.0, 1.0)
        # The centre of output voxel 0 is the centre of the 2x2 input voxels it bins.
        assert tuple(layer.translate) == (0.0, 3.0, 10.25, 20.25)
