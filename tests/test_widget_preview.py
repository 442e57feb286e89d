"""Parameter widgets, live preview and region preview, driven as a user would.

Run headless: ``xvfb-run -a pytest tests/test_widget_preview.py``.
"""

from __future__ import annotations

import sys
import time
import typing
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")


from napari_process_position.store.metadata import read_position
from napari_process_position.transforms import get_transform, list_transforms

sys.path.insert(0, str(Path(__file__).parent))
import test_widget
from test_widget import engine_output, output_layers, run, set_mode
from widget_helpers import ref

# The fixtures of the widget tests: a demo plate, and the widget opened from the manifest.
demo = test_widget.demo
widget = test_widget.widget

pytestmark = [
    pytest.mark.gui,
    pytest.mark.filterwarnings("error:Private attribute access"),
]

REGION = "preview region"


def raw_volume(demo: Path, key: str, t: int, c: int) -> np.ndarray:
    """The input (1, Z, Y, X) block of one (t, c), as a worker reads it."""
    info = read_position(demo / key)
    source = info.open_array()
    return source[t, [c]].read().result()


def shown_previews(w) -> int:
    """How many previews have reached the screen so far (their generation)."""
    return w.last_preview.get("generation", 0) if w.last_preview.get("shown") else 0


def wait_for_preview(qtbot, w, after: int, timeout: float = 30.0) -> dict:
    """Wait until a preview newer than generation ``after`` is on screen; return its record."""
    qtbot.waitUntil(
        lambda: shown_previews(w) > after or bool(w.last_preview.get("error")),
        timeout=int(timeout * 1000),
    )
    assert not w.last_preview.get("error"), w.last_preview["error"]
    return w.last_preview


def show_time(w, index: int) -> None:
    """Move the time slider to index ``index`` of the layers' first axis."""
    w.viewer.dims.set_current_step(0, index)


# -- parameter widgets (item 4) -----------------------------------------------------------


def _split(hint):
    options = {}
    if typing.get_origin(hint) is typing.Annotated:
        hint, *extras = typing.get_args(hint)
        for extra in extras:
            if isinstance(extra, dict):
                options.update(extra)
    return hint, options


@pytest.mark.parametrize(
    "name", [spec.name for spec in list_transforms() if spec.source == "built-in"]
)
def test_parameter_widgets_follow_the_signature(widget, name):
    from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox, SpinBox

    w = widget
    w.transform.value = name
    spec = get_transform(name)
    hints = spec.type_hints()
    params = spec.parameters()
    assert [p.name for p in w.transform_params] == [p.name for p in params]
    for param in params:
        box = w.transform_params[param.name]
        base, options = _split(hints.get(param.name, param.annotation))
        if typing.get_origin(base) is typing.Literal:
            assert isinstance(box, ComboBox), (name, param.name)
            assert box.choices == typing.get_args(base)
        elif base is bool:
            assert isinstance(box, CheckBox), (name, param.name)
        elif base in (int, float):
            assert isinstance(box, FloatSpinBox if base is float else SpinBox), (name, param.name)
            # Annotated ranges are honoured; an unannotated number is not capped at 0..999.
            assert box.min == options.get("min", box.min) and box.min < 1000
            assert box.max == options.get("max", box.max) and box.max >= options.get("max", 1e6)
            if "step" in options:
                assert box.step == options["step"]
        else:  # no built-in has another kind of parameter
            pytest.fail(f"{name}.{param.name}: unexpected annotation {base!r}")
        assert box.value == param.default, (name, param.name)
    # The form's parameters are what a run gets, and they pass the transform's own checks.
    params_now = w.current_config().params
    assert params_now == spec.defaults()
    assert spec.check_params(params_now) == spec.defaults()


# -- live preview (item 5) ------------------------------------------------------------------


def test_live_preview_recomputes_the_volume_on_screen(widget, qtbot, demo, tmp_path):
    w = widget
    w.transform.value = "gaussian_blur"
    w.times.value = "0,2"
    show_time(w, 2)  # the inputs show every time point until the first preview or run
    assert not output_layers(w)
    before = shown_previews(w)
    w.live.value = True
    w.transform_params.sigma_y.value = 3.0
    info = wait_for_preview(qtbot, w, before)
    assert info.get("time_index") == 2 and info["region"] is None, (info, w.status.value)
    assert "Preview of t=2" in w.status.value

    spec = get_transform("gaussian_blur")
    params = spec.check_params(w.current_config().params)
    layers = output_layers(w)
    assert [layer.name for layer in layers] == [
        "Nuclei [Gaussian blur]",
        "Membrane [Gaussian blur]",
    ]
    for c, layer in enumerate(layers):
        assert layer.data.shape == (2, 8, 64, 64)
        expected = np.asarray(spec.func(raw_volume(demo, "A/1/0", 2, c), **params))[0]
        np.testing.assert_array_equal(layer.data[1], expected.astype(layer.data.dtype))
        assert not layer.data[0].any()  # only the volume on screen was computed
        assert layer.contrast_limits[1] > 100  # from the data, not from zeros

    # Moving to the other time point computes that one too; moving back needs nothing.
    before = shown_previews(w)
    show_time(w, 0)
    wait_for_preview(qtbot, w, before)
    assert all(layer.data[0].any() for layer in layers)
    started = w.last_preview["started"]
    show_time(w, 1)
    qtbot.wait(400)
    assert w.last_preview["started"] == started

    # Run is still a full run, and it gives what the preview showed.
    preview = np.array(layers[0].data)
    set_mode(w, "threads")
    assert run(qtbot, w)["outcome"] == "done", w.status.value
    full = engine_output(demo, tmp_path, w)
    np.testing.assert_array_equal(output_layers(w)[0].data, full[:, 0])
    np.testing.assert_array_equal(preview, full[:, 0])

    # Another position: its volume on screen, in fresh layers (no volumes of the last one).
    show_time(w, 0)  # (t=0: the new position's inputs show every time point again)
    qtbot.wait(300)
    before = shown_previews(w)
    w.position.value = "B/1/0"
    wait_for_preview(qtbot, w, before)
    t_shown = w.last_preview["time_index"]
    index = [0, 2].index(t_shown)
    for c, layer in enumerate(output_layers(w)):
        expected = np.asarray(spec.func(raw_volume(demo, "B/1/0", t_shown, c), **params))[0]
        np.testing.assert_array_equal(layer.data[index], expected)
        assert not layer.data[1 - index].any()


def test_live_preview_drops_stale_results(widget, qtbot, demo):
    w = widget
    w.add_transform(ref("slow_at_time"))  # slow on t=1, the time point on screen
    w.channels.value = [0, 1]
    show_time(w, 1)
    w.live.value = True
    p = w.transform_params
    # Changes within the debounce interval start one preview, with the last values.
    started = w.last_preview["started"]
    p.factor.value, p.delay.value = 9.0, 0.0
    p.factor.value = 4.0
    before = shown_previews(w)
    wait_for_preview(qtbot, w, before)
    assert w.last_preview["started"] == started + 1
    np.testing.assert_array_equal(
        output_layers(w)[0].data[1], raw_volume(demo, "A/1/0", 1, 0)[0].astype(np.float32) * 4
    )

    # A slow preview, then a quick one: the quick one finishes first and stays on screen;
    # the slow one finishes later and its result is dropped.
    dropped = w.last_preview["dropped"]
    p.delay.value, p.factor.value = 1.5, 3.0
    qtbot.waitUntil(lambda: w.last_preview["started"] == started + 2, timeout=30_000)
    p.delay.value, p.factor.value = 0.0, 5.0
    before = shown_previews(w)
    wait_for_preview(qtbot, w, before)
    assert w.last_preview["started"] == started + 3
    slow_still_running = time.perf_counter()
    assert w.wait_for_background(20)
    assert time.perf_counter() - slow_still_running > 0.5  # it really was still computing
    qtbot.wait(50)
    assert w.last_preview["dropped"] == dropped + 1
    for c, layer in enumerate(output_layers(w)):
        expected = raw_volume(demo, "A/1/0", 1, c)[0].astype(np.float32) * 5
        np.testing.assert_array_equal(layer.data[1], expected)
    assert "Preview of t=1" in w.status.value


def test_preview_button_and_errors(widget, qtbot, demo):
    w = widget
    w.transform.value = "median_filter"
    w.channels.value = [1]
    show_time(w, 2)
    w.transform_params.size_yx.value = 5
    qtbot.wait(300)
    assert w.last_preview["started"] == 0 and not output_layers(w)  # live is off
    w.preview_button.clicked()
    wait_for_preview(qtbot, w, 0)
    (layer,) = output_layers(w)
    spec = get_transform("median_filter")
    expected = spec.func(raw_volume(demo, "A/1/0", 2, 1), **spec.check_params({"size_yx": 5}))
    np.testing.assert_array_equal(layer.data[2], expected[0])

    # A time point that is not selected, or a failing transform, is said in the status line.
    w.times.value = "0-1"
    w.preview_button.clicked()
    assert "not among the selected time points" in w.status.value
    w.times.value = "all"
    w.add_transform(ref("explode_at"))
    show_time(w, 1)
    w.preview_button.clicked()
    qtbot.waitUntil(lambda: bool(w.last_preview.get("error")), timeout=30_000)
    assert "synthetic failure" in w.status.value and not w.running


# -- region preview (item 6) ----------------------------------------------------------------


def add_rectangle(w, rows: tuple[int, int], cols: tuple[int, int], scale=(0.65, 0.65)):
    """A rectangle over pixel rows/cols (inclusive) of the input, in a Shapes layer of ``scale``.

    With ``scale`` equal to the input's pixel size the vertices are in the input's data
    coordinates; with scale 1 they are world coordinates.
    """
    factor = np.array([0.65, 0.65]) / np.array(scale)
    corners = np.array([[rows[0], cols[0]], [rows[1], cols[1]]], dtype=float) * factor
    existing = [layer for layer in w.viewer.layers if layer.name == REGION]
    if existing:
        existing[0].add_rectangles(corners)
        return existing[0]
    return w.viewer.add_shapes(corners, shape_type="rectangle", name=REGION, scale=scale)


@pytest.mark.parametrize(
    "name, params",
    [
        ("gaussian_blur", {"sigma_y": 2.5}),
        ("median_filter", {"size_z": 3}),
        ("richardson_lucy", {"iterations": 4}),
        ("subtract_background", {"radius": 6}),
    ],
)
def test_region_preview_equals_the_same_region_of_a_full_run(
    widget, qtbot, demo, tmp_path, name, params
):
    w = widget
    w.position.value = "A/2/0"
    w.transform.value = name
    for key, value in params.items():
        w.transform_params[key].value = value
    w.times.value = "0,2"
    w.z_range.value = "2-5"
    add_rectangle(w, rows=(10, 29), cols=(20, 50))
    assert w.viewer.layers[REGION].ndim == 2
    w.region.value = True
    show_time(w, 2)
    w.preview_button.clicked()
    info = wait_for_preview(qtbot, w, 0)
    assert info["region"] == ((2, 6), (10, 30), (20, 51)) and info["note"] is None
    assert info["region_source"] == "rectangle" and info["time_index"] == 2

    full = engine_output(demo, tmp_path, w)  # the engine's full run, same settings
    inside = (slice(2, 6), slice(10, 30), slice(20, 51))
    for c, layer in enumerate(output_layers(w)):
        np.testing.assert_array_equal(layer.data[1][inside], full[1, c][inside])
        outside = np.ones(layer.data.shape[1:], bool)
        outside[inside] = False
        assert not layer.data[1][outside].any() and not layer.data[0].any()


def test_region_from_world_coordinates_and_the_newest_rectangle(widget, qtbot, demo, tmp_path):
    w = widget
    w.transform.value = "gaussian_blur"
    w.channels.value = [0]
    shapes = add_rectangle(w, rows=(0, 5), cols=(0, 5), scale=(1.0, 1.0))  # world coordinates
    add_rectangle(w, rows=(40, 63), cols=(33, 47), scale=(1.0, 1.0))  # the newest: used
    assert len(shapes.data) == 2
    show_time(w, 0)
    w.region.value = True
    w.live.value = True
    info = wait_for_preview(qtbot, w, 0)
    assert info["region"] == (None, (40, 64), (33, 48))
    (layer,) = output_layers(w)
    full = engine_output(demo, tmp_path, w)
    np.testing.assert_array_equal(layer.data[0][:, 40:, 33:48], full[0, 0][:, 40:, 33:48])
    assert not layer.data[0][:, :40].any()

    # Moving the rectangle recomputes (live); the previous region's values stay.
    before = shown_previews(w)
    shapes.data = [shapes.data[0] + 13]  # 13 µm = 20 pixels on: pixels 20..25
    info = wait_for_preview(qtbot, w, before)
    assert info["region"] == (None, (20, 26), (20, 26))
    np.testing.assert_array_equal(layer.data[0][:, 20:26, 20:26], full[0, 0][:, 20:26, 20:26])
    np.testing.assert_array_equal(layer.data[0][:, 40:, 33:48], full[0, 0][:, 40:, 33:48])


@pytest.mark.parametrize(
    "name, why", [("binning", "changes the volume's shape"), ("flat_field", "declares no margin")]
)
def test_region_preview_falls_back_to_the_whole_volume(widget, qtbot, demo, tmp_path, name, why):
    w = widget
    w.transform.value = name
    add_rectangle(w, rows=(10, 29), cols=(20, 50))
    w.region.value = True
    show_time(w, 2)
    w.preview_button.clicked()
    info = wait_for_preview(qtbot, w, 0)
    assert info["region"] is None and why in info["note"]
    assert why in w.status.value
    full = engine_output(demo, tmp_path, w)
    for c, layer in enumerate(output_layers(w)):
        np.testing.assert_array_equal(layer.data[2], full[2, c])


def test_region_is_the_field_of_view_without_a_rectangle(make_napari_viewer, qtbot, demo, tmp_path):
    from napari_process_position.widget import ProcessPositionWidget

    viewer = make_napari_viewer(show=True, strict_qt="raise")
    w = ProcessPositionWidget(viewer)
    viewer.window.add_dock_widget(w, name="Process position")
    w.input_path.value = str(demo)
    w.transform.value = "gaussian_blur"
    w.channels.value = [1]
    viewer.dims.set_current_step(0, 0)
    camera = getattr(viewer, "scene", viewer).camera
    camera.center = (14.0, 26.0)  # world units (µm), not pixels
    camera.zoom *= 5
    qtbot.wait(300)  # the canvas draws, and the layers learn what is in view
    w.region.value = True  # adds an empty Shapes layer to draw in: no rectangle yet
    assert viewer.layers[REGION].mode == "add_rectangle"
    w.preview_button.clicked()
    info = wait_for_preview(qtbot, w, 0)
    assert info["region_source"] == "view" and info["time_index"] == 0
    _, (y0, y1), (x0, x1) = info["region"]
    centre = (round(14.0 / 0.65), round(26.0 / 0.65))
    assert y0 < centre[0] < y1 and x0 < centre[1] < x1
    assert (y1 - y0) < 64 and (x1 - x0) < 64  # zoomed in: part of the image
    (layer,) = output_layers(w)
    full = engine_output(demo, tmp_path, w)
    np.testing.assert_array_equal(layer.data[0, :, y0:y1, x0:x1], full[0, 0, :, y0:y1, x0:x1])
    assert not layer.data[0, :, :, x1:].any()
    w.close_pool()
    assert w.wait_for_background(10)


# -- layers over the output store (#17) ------------------------------------------------------


def test_a_run_s_layers_are_lazy_views_of_its_output_store(widget, qtbot, demo, tmp_path):
    """No layer holds the run's array: napari shows the store, and a preview stays in memory."""
    w = widget
    w.transform.value = "gaussian_blur"
    w.output_path.value = tmp_path / "out.zarr"
    set_mode(w, "serial")
    assert run(qtbot, w)["outcome"] == "done", w.status.value
    store = read_position(tmp_path / "out.zarr" / "A" / "1" / "0").open_array()
    written = store.read().result()
    np.testing.assert_array_equal(written, engine_output(demo, tmp_path, w))
    t, z = (int(step) for step in w.viewer.dims.current_step[:2])
    for c, layer in enumerate(output_layers(w)):
        assert not isinstance(layer.data, np.ndarray), "a layer holds an in-memory array"
        assert layer.data.shape == written[:, c].shape
        # It holds what is on screen (a plane or a few), not the channel's volumes.
        assert layer.data.held_bytes() <= 4 * written[0, c, 0].nbytes
        np.testing.assert_array_equal(np.asarray(layer._data_view), written[t, c, z])
        np.testing.assert_array_equal(np.asarray(layer.data), written[:, c])
        assert layer.contrast_limits[1] > 100  # from the data

    # A preview over the run's layers shows its volume; the store keeps the run's.
    before = shown_previews(w)
    w.transform_params.sigma_y.value = 3.0
    w.preview_button.clicked()
    wait_for_preview(qtbot, w, before)
    spec = get_transform("gaussian_blur")
    params = spec.check_params(w.current_config().params)
    for c, layer in enumerate(output_layers(w)):
        expected = np.asarray(spec.func(raw_volume(demo, "A/1/0", t, c), **params))[0]
        np.testing.assert_array_equal(layer.data[t], expected.astype(layer.data.dtype))
        other = (t + 1) % written.shape[0]  # the run's, from the store
        np.testing.assert_array_equal(layer.data[other], written[other, c])
    np.testing.assert_array_equal(store.read().result(), written)

    # In 3D the layers are redrawn from whole volumes, read back from the store.
    w.viewer.dims.ndisplay = 3
    w.overwrite.value = True
    assert run(qtbot, w)["outcome"] == "done", w.status.value
    written = store.read().result()  # (sigma_y 3 now)
    t = int(w.viewer.dims.current_step[0])
    for c, layer in enumerate(output_layers(w)):
        assert layer.data.held_bytes() <= 4 * written[0, c].nbytes
        np.testing.assert_array_equal(np.asarray(layer._data_view), written[t, c])
        np.testing.assert_array_equal(np.asarray(layer.data), written[:, c])


# -- the time point on screen is a query ------------------------------------------------------


def test_the_time_on_screen_is_asked_without_adding_a_layer(make_napari_viewer, demo):
    from qtpy.QtCore import QObject

    from napari_process_position.core.errors import InvalidArgumentError
    from napari_process_position.widget.qt import QtLauncher
    from napari_process_position.widget.sink import LayerSink

    viewer = make_napari_viewer()
    parent = QObject()
    sink = LayerSink(viewer, QtLauncher(parent), follow=lambda: False, parent=parent)
    info = read_position(demo / "A" / "1" / "0", "A/1/0")
    assert not sink.inputs_shown(info, [0, 1])
    with pytest.raises(InvalidArgumentError, match="show its channels first"):
        sink.input_time_on_screen(info, [0, 1])
    assert len(viewer.layers) == 0, "a query adds no layer"
    sink.show_inputs(info, [0, 2], now=True)  # (a run's inputs: the selected time points)
    assert len(viewer.layers) == info.shape[1] and sink.inputs_shown(info, [1])
    viewer.dims.set_current_step(0, 1)
    assert sink.input_time_on_screen(info, [1]) == 2, "index 1 of the time points 0 and 2"
    assert len(viewer.layers) == info.shape[1]
    sink.close()


def test_a_preview_shows_the_inputs_it_reads_the_time_point_from(widget, qtbot):
    w = widget
    w.transform.value = "gaussian_blur"
    names = [layer.name for layer in w.viewer.layers]
    assert names == ["Nuclei", "Membrane"]
    w.viewer.layers.clear()  # the user removed the input layers
    before = shown_previews(w)
    w.preview()
    wait_for_preview(qtbot, w, before)
    assert {"Nuclei", "Membrane"} <= {layer.name for layer in w.viewer.layers}
