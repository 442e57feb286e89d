"""Pyramid levels in the widget (#17): the control, and multiscale layers over the stores.

Run headless: ``xvfb-run -a pytest tests/test_widget_multiscale.py``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_process_position.core.pyramid import pyramid
from napari_process_position.store.metadata import read_position
from napari_process_position.transforms import get_transform
from napari_process_position.widget.form_controller import FormController
from napari_process_position.widget.multiscale import level_plane

sys.path.insert(0, str(Path(__file__).parent))
import test_widget
from test_widget import output_layers, run, set_mode

demo = test_widget.demo
widget = test_widget.widget

pytestmark = [
    pytest.mark.gui,
    pytest.mark.filterwarnings("error:Private attribute access"),
]


def _level(position: Path, k: int) -> np.ndarray:
    """Level ``k`` of a position, read with zarr-python (an independent reader)."""
    import zarr

    return zarr.open_array(os.path.join(position, str(k)), mode="r")[...]


def _input_layers(w) -> list:
    return [layer for layer in w.viewer.layers if not layer.name.endswith("]")]


def test_a_run_with_pyramid_levels_shows_multiscale_layers_over_the_store(
    widget, qtbot, demo, tmp_path
):
    w = widget
    w.transform.value = "gaussian_blur"
    assert not w.pyramid_levels.enabled, "pyramid levels without an output store"
    w.output_path.value = tmp_path / "out.zarr"
    assert w.pyramid_levels.enabled
    w.pyramid_levels.value = "3"
    assert w.current_config().pyramid_levels == 3
    set_mode(w, "threads")
    assert run(qtbot, w)["outcome"] == "done", w.status.value
    position = tmp_path / "out.zarr" / "A" / "1" / "0"
    assert read_position(position).levels == 3
    levels = [_level(position, k) for k in range(3)]
    t, z = (int(step) for step in w.viewer.dims.current_step[:2])
    for c, layer in enumerate(output_layers(w)):
        assert layer.multiscale and len(layer.data) == 3
        for k, data in enumerate(layer.data):
            # Nothing full-size in memory: at most a few planes of each level.
            assert not isinstance(data, np.ndarray), f"level {k} is an in-memory array"
            assert data.held_bytes() <= 4 * levels[k][0, c, 0].nbytes
        shown = layer.data_level
        zk = level_plane(z, levels[0].shape[2], levels[shown].shape[2])
        np.testing.assert_array_equal(np.asarray(layer._data_view), levels[shown][t, c, zk])
        for k, data in enumerate(layer.data):
            np.testing.assert_array_equal(np.asarray(data), levels[k][:, c])
        assert layer.contrast_limits[1] > 100

    # A preview over the run's layers shows its volume at every level (in memory, derived
    # as a run derives them); the store keeps the run's.
    from test_widget_preview import raw_volume, shown_previews, wait_for_preview

    before = shown_previews(w)
    w.transform_params.sigma_y.value = 3.0
    w.preview_button.clicked()
    wait_for_preview(qtbot, w, before)
    spec = get_transform("gaussian_blur")
    params = spec.check_params(w.current_config().params)
    for c, layer in enumerate(output_layers(w)):
        volume = np.asarray(spec.func(raw_volume(demo, "A/1/0", t, c), **params))[0]
        volume = volume.astype(levels[0].dtype)
        for k, expected in enumerate([volume, *pyramid(volume, 3)]):
            np.testing.assert_array_equal(layer.data[k][t], expected)
            other = (t + 1) % levels[k].shape[0]  # the run's, from the store
            np.testing.assert_array_equal(layer.data[k][other], levels[k][other, c])
    for k in range(3):
        np.testing.assert_array_equal(_level(position, k), levels[k])

    # In 3D napari draws the coarsest level: only its volumes are read back for the layers.
    w.viewer.dims.ndisplay = 3
    w.overwrite.value = True
    assert run(qtbot, w)["outcome"] == "done", w.status.value
    levels = [_level(position, k) for k in range(3)]
    t = int(w.viewer.dims.current_step[0])
    for c, layer in enumerate(output_layers(w)):
        assert layer.data_level == 2
        assert layer.data[0].held_bytes() == 0, "full-resolution volumes read back"
        assert 0 < layer.data[2].held_bytes() <= 4 * levels[2][0, c].nbytes
        np.testing.assert_array_equal(np.asarray(layer._data_view), levels[2][t, c])
        np.testing.assert_array_equal(np.asarray(layer.data[2]), levels[2][:, c])

    # The output as the input: the input layers are multiscale too.
    w.viewer.dims.ndisplay = 2
    w.input_path.value = tmp_path / "out.zarr"
    qtbot.waitUntil(lambda: all(layer.multiscale for layer in _input_layers(w)), timeout=10_000)
    inputs = _input_layers(w)
    assert len(inputs) == 2
    for c, layer in enumerate(inputs):
        assert len(layer.data) == 3
        for k, data in enumerate(layer.data):
            np.testing.assert_array_equal(np.asarray(data), levels[k][:, c])


def test_zoomed_out_a_run_reads_back_the_level_napari_draws(widget, qtbot, tmp_path):
    """A large image zoomed out: napari draws a small level, and that level's plane is kept."""
    from conftest import random_tczyx, write_plate

    w = widget
    data = random_tczyx((3, 1, 4, 1024, 1024), "uint16", seed=8, empty=(), nan=())
    write_plate(tmp_path / "big.zarr", {"A/1/0": data}, channel_names=("GFP",))
    w.input_path.value = tmp_path / "big.zarr"
    w.transform.value = "gaussian_blur"
    w.output_path.value = tmp_path / "out.zarr"
    w.pyramid_levels.value = "3"
    w.viewer.window.show()  # (napari picks a 2D level when its canvas draws)
    qtbot.waitUntil(lambda: len(_input_layers(w)) == 1, timeout=10_000)
    w.viewer.reset_view()
    camera = getattr(w.viewer, "scene", w.viewer).camera  # (napari >= 0.9: viewer.scene)
    camera.zoom = camera.zoom / 2
    set_mode(w, "serial")
    assert run(qtbot, w)["outcome"] == "done", w.status.value
    (layer,) = output_layers(w)
    qtbot.waitUntil(lambda: layer.data_level > 0, timeout=10_000)
    position = tmp_path / "out.zarr" / "A" / "1" / "0"
    level = layer.data_level
    stored = _level(position, level)
    t, z = (int(step) for step in w.viewer.dims.current_step[:2])
    zk = level_plane(z, data.shape[2], stored.shape[2])
    # The plane on screen of the level napari draws was read off the main thread and kept
    # (read back with its volume, or before the slider followed it).
    assert layer.data[level].has(t, (zk,))
    assert layer.data[0].held_bytes() <= layer.data[0].shape[2] * layer.data[0].shape[3] * 2
    np.testing.assert_array_equal(np.asarray(layer._data_view), stored[t, 0, zk])


def test_pyramid_levels_need_an_output_store(widget, qtbot, tmp_path):
    w = widget
    w.transform.value = "gaussian_blur"
    w.output_path.value = tmp_path / "out.zarr"
    w.pyramid_levels.value = "auto"
    assert w.current_config().pyramid_levels == "auto"
    w.output_path.value = None
    assert not w.pyramid_levels.enabled
    config, note = w.run_settings()
    assert config.pyramid_levels == 1 and "need an output store" in note
    w.times.value = "0"
    assert run(qtbot, w)["outcome"] == "done", w.status.value
    assert "pyramid levels not written" in w.status.value.lower()
    names = [layer.name for layer in output_layers(w)]
    assert not any(layer.multiscale for layer in output_layers(w))
    # The next run writes levels: its multiscale layers replace those (same names).
    w.output_path.value = tmp_path / "out.zarr"
    w.pyramid_levels.value = "2"  # ('auto' writes none for 64 x 64 planes)
    assert run(qtbot, w)["outcome"] == "done", w.status.value
    assert [layer.name for layer in output_layers(w)] == names
    assert all(layer.multiscale for layer in output_layers(w))
    w.pyramid_levels.value = "zero"
    w.run_button.clicked()
    assert not w.running  # refused, as the command line refuses it
    assert w.status.value.startswith("cannot run:"), w.status.value
    assert "pyramid_levels" in w.status.value and "'auto'" in w.status.value


def test_pyramid_levels_are_not_written_for_an_output_without_five_axes(tmp_path):
    """A CZYX input (ome-zarr-py's) gives a CZYX output: the run writes no levels, and says why."""
    pytest.importorskip("ome_zarr")
    import zarr
    from ome_zarr.format import FormatV05
    from ome_zarr.writer import write_image

    czyx = np.random.default_rng(5).integers(1, 4000, size=(2, 4, 32, 32)).astype("uint16")
    group = zarr.open_group(str(tmp_path / "in.zarr"), mode="w", zarr_format=3)
    write_image(czyx, group, axes="czyx", fmt=FormatV05(), scale_factors=[2])
    form = FormController()  # (the widget's form, set through its intents)
    form.choose_input(tmp_path / "in.zarr")
    form.choose_transform("gaussian_blur")
    form.set_output(str(tmp_path / "out.zarr"))
    form.set_pyramid_levels("3")
    config, note = form.run_settings()
    assert config.pyramid_levels == 1
    assert note is not None and "c/z/y/x" in note
    form.set_pyramid_levels("1")
    config, note = form.run_settings()
    assert config.pyramid_levels == 1 and note is None
