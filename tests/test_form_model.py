"""The form's model and its intents (the controller's, Qt-free): the one source of a run.

The view sends these intents when a control changes and renders the model's
signals; here they are sent directly, and the run is built from the model
alone. The stores and the transforms are real.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import random_tczyx
from napari_process_position.core.errors import InvalidArgumentError, TransformNotFoundError
from napari_process_position.store.create import write_empty_plate
from napari_process_position.store.layout import OutputLayout
from napari_process_position.store.metadata import read_position
from napari_process_position.widget.controller import Controller
from napari_process_position.widget.form import FormModel
from napari_process_position.widget.form_controller import FormController
from test_controller import ArraySink, RecordingView, StepLauncher

SCALE = "npp_test_transforms:scale_offset"


@pytest.fixture(scope="module")
def plate(tmp_path_factory):
    """A/1/0 holds DAPI, GFP, RFP; B/1/0 holds GFP, Cy5 (positions need not agree)."""
    path = tmp_path_factory.mktemp("form") / "in.zarr"
    names = {"A/1/0": ("DAPI", "GFP", "RFP"), "B/1/0": ("GFP", "Cy5")}
    data = {key: random_tczyx((4, len(n), 2, 8, 8), "uint16", seed=3) for key, n in names.items()}
    layouts = {key: OutputLayout(data[key].shape, "<u2", (1.0,) * 5, names[key]) for key in names}
    store = write_empty_plate(path, layouts)
    for key, array in data.items():
        read_position(store.position_path(key), key).open_array(write=True).write(array).result()
    return path


def recorded(model: FormModel) -> list[tuple[str, object]]:
    """Record every change the model signals, as (field, new value)."""
    changes: list[tuple[str, object]] = []
    model.events.all.connect(lambda info: changes.append((info.signal.name, info.args[0])))
    return changes


def test_intents_change_the_model_and_the_run_is_built_from_it(plate) -> None:
    form = FormController()
    changes = recorded(form.model)
    with pytest.raises(InvalidArgumentError, match="choose an OME-Zarr plate"):
        form.config()
    store = form.choose_input(plate)
    assert store is not None and form.info is not None and form.info.key == "A/1/0"
    assert form.model.channels == (0, 1, 2), "every channel of the first position"
    form.choose_transform(SCALE)
    assert form.model.params == {"factor": 2.0, "offset": 1.0}, "the transform's defaults"
    form.set_params({"factor": 3.0, "offset": 0.5})
    form.set_channels([2, 0])
    form.set_times("1-2")
    form.set_output(str(plate.parent / "out.zarr"))
    form.set_overwrite(True)
    form.set_pyramid_levels("auto")
    form.set_workers(3)
    form.set_threads(False)
    assert [name for name, _ in changes] == [
        "channels",
        "transform",  # (with its parameters: one change, signalled once both are set)
        "params",
        "params",
        "channels",
        "times",
        "output",
        "overwrite",
        "pyramid_levels",
        "num_workers",
        "use_threads",
    ]
    config, note = form.run_settings()
    assert note is None and config.pyramid_levels == "auto"
    assert config.input == str(plate)
    assert config.positions == ["A/1/0"]
    assert config.transform == SCALE and config.params == {"factor": 3.0, "offset": 0.5}
    assert config.channels == [0, 2] and config.times == [1, 2]
    assert config.output == str(plate.parent / "out.zarr") and config.overwrite
    assert config.num_workers == 3 and not config.use_threads and not config.auto_workers
    form.set_auto_workers(True)
    assert form.config().auto_workers
    form.set_times("0-9")
    with pytest.raises(ValueError, match="does not exist"):
        form.config()


def test_pyramid_levels_are_used_for_a_five_axis_output(plate) -> None:
    form = FormController()
    form.choose_input(plate)
    form.choose_transform(SCALE)
    form.set_pyramid_levels("2")
    config, note = form.run_settings()
    assert config.pyramid_levels == 1 and "need an output store" in (note or "")
    form.set_output(str(plate.parent / "levels.zarr"))
    config, note = form.run_settings()
    assert config.pyramid_levels == 2 and note is None


def test_a_position_keeps_the_channels_of_the_same_names(plate) -> None:
    form = FormController()
    form.choose_input(plate)
    form.set_channels([1, 2])  # GFP, RFP
    form.choose_position("B/1/0")
    assert form.model.channels == (0,), "GFP is channel 0 there; RFP is not there"
    form.set_channels([1])  # Cy5: not in A/1/0
    form.choose_position("A/1/0")
    assert form.model.channels == (0, 1, 2), "no name kept: every channel"
    assert form.choose_position("A/1/0") is form.info, "the same position is not read again"


def test_choosing_a_transform_and_adding_one(plate) -> None:
    form = FormController()
    with pytest.raises(TransformNotFoundError):
        form.choose_transform("no_such_transform")
    assert form.model.transform is None and form.model.params == {}
    seen = []
    form.model.events.transform.connect(lambda name: seen.append((name, set(form.model.params))))
    form.model.events.params.connect(
        lambda params: seen.append((form.model.transform, set(params)))
    )
    form.choose_transform("gaussian_blur")
    assert set(form.model.params) == {"sigma_z", "sigma_y", "sigma_x"}
    blur = ("gaussian_blur", {"sigma_z", "sigma_y", "sigma_x"})
    assert seen == [blur, blur], "each signal sees the transform with its own parameters"
    name = form.add_transform("npp_test_transforms:fail_on_time")
    assert form.model.transform == name == "npp_test_transforms:fail_on_time"
    assert "bad_time" in form.model.params
    labels = {n: label for label, n in form.transform_choices([])}
    assert labels[name].endswith("(custom)")
    form.choose_transform(None)
    assert form.model.params == {}


def test_the_compared_positions_are_run_when_the_model_says_so(plate) -> None:
    picks = ["A/1/0", "B/1/0"]
    form = FormController(compared=lambda: picks)
    form.choose_input(plate)
    form.choose_transform(SCALE)
    assert form.positions() is None and form.config().positions == ["A/1/0"]
    form.set_run_compared(True)
    assert form.positions() == picks and form.config().positions == picks
    picks.clear()
    assert form.positions() is None, "nothing compared: the form's position"


def test_the_controller_reacts_to_the_model(plate) -> None:
    view, sink, launcher = RecordingView(), ArraySink(), StepLauncher()
    controller = Controller(view, sink, launcher)
    controller.form.choose_input(plate)
    assert sink.inputs == [(str(plate / "A" / "1" / "0"), None)], "a chosen position is shown"
    controller.form.choose_transform(SCALE)
    view.live = True
    for change in (
        lambda: controller.form.set_params({"factor": 4.0, "offset": 0.0}),
        lambda: controller.form.set_channels([0]),
        lambda: controller.form.set_times("0"),
        lambda: controller.form.choose_position("B/1/0"),
    ):
        launcher.timers.clear()
        change()
        assert len(launcher.timers) == 1, "a live preview is requested"
    launcher.timers.clear()
    controller.form.set_output(None)  # unchanged: no signal, nothing requested
    controller.form.set_workers(2)
    assert launcher.timers == []
    controller.close()
    controller.form.set_threads(False)  # (a closed controller warms no pool)
    assert controller.pool is None


def test_the_model_and_its_intents_import_no_qt() -> None:
    code = (
        "import sys\n"
        "import napari_process_position.widget.form_controller\n"
        "loaded = {'qtpy', 'napari', 'magicgui', 'PyQt5', 'PyQt6'} & set(sys.modules)\n"
        "print(sorted(loaded))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
