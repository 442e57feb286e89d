"""The napari widget, driven as a user would: real viewer, real stores, real workers.

Run headless: ``xvfb-run -a pytest tests/test_widget.py``.
"""

from __future__ import annotations

import contextlib
import gc
import sys
import threading
import time
import weakref
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

import psutil

from napari_process_position.batch.prepare import prepare_run
from napari_process_position.core.budget import available_cpus
from napari_process_position.store.demo import make_demo_plate
from napari_process_position.store.metadata import read_position
from napari_process_position.widget import ProcessPositionWidget

sys.path.insert(0, str(Path(__file__).parent))
from widget_helpers import ref

pytestmark = [
    pytest.mark.gui,
    # A plugin widget gets the viewer through napari's public-only proxy: no private access.
    pytest.mark.filterwarnings("error:Private attribute access"),
]

SHAPE = (3, 2, 8, 64, 64)
MODES = {"serial": (1, True), "threads": (2, True), "processes": (2, False)}


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("widget") / "demo.zarr"
    make_demo_plate(path, shape=SHAPE)
    return path


def _pool_processes() -> list[psutil.Process]:
    """Live pool worker processes (spawned by multiprocessing; not its resource tracker)."""
    out = []
    for child in psutil.Process().children(recursive=True):
        try:
            cmd = " ".join(child.cmdline())
            worker = "multiprocessing" in cmd and "resource_tracker" not in cmd
            if worker and child.status() != psutil.STATUS_ZOMBIE:
                out.append(child)
        except psutil.NoSuchProcess:
            continue
    return out


# Generous bounds for what a loaded machine may delay (CI shares its 2 cores); how fast
# these happen is the widget benchmark's business
# (benchmarks/bench_widget_responsiveness.py), not a test's.
SETTLE_S = 30.0


def wait_for(qtbot, condition, timeout: float = SETTLE_S) -> None:
    """Process Qt events until ``condition()`` holds, failing after ``timeout`` seconds."""
    qtbot.waitUntil(condition, timeout=int(timeout * 1000))


def leftovers(qtbot, timeout: float = SETTLE_S) -> list[str]:
    """Wait for runs, thread workers, pool processes and engine threads to end; name what stays.

    A pool process that is still alive after ``timeout`` is killed here, so that it is
    reported once, by the test that left it, and cannot fail every later test's teardown.
    """
    from superqt.utils._qthreading import WorkerBase

    found = []
    waits = {
        "napari thread workers": lambda: list(WorkerBase._worker_set),
        "pool processes": _pool_processes,
        "engine threads": _engine_threads,
    }
    deadline = time.monotonic() + timeout
    for what, alive in waits.items():
        left = max(0.5, deadline - time.monotonic())
        try:
            wait_for(qtbot, lambda alive=alive: not alive(), timeout=left)
        except qtbot.TimeoutError:
            found.append(f"{what} alive {timeout:.0f} s after the widget closed: {alive()}")
    for proc in _pool_processes():
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    return found


@pytest.fixture
def widget(make_napari_viewer, qtbot, demo):
    viewer = make_napari_viewer(strict_qt="raise")
    # Opened as napari opens it from the Plugins menu (through the manifest).
    dock, w = viewer.window.add_plugin_dock_widget("napari-process-position", "Process position")
    assert isinstance(w, ProcessPositionWidget)
    w.input_path.value = str(demo)
    # A weak proxy: pytest keeps fixture values until after napari's leak check, and a
    # live widget would keep the closed viewer's Qt objects alive.
    yield weakref.proxy(w)
    # Nothing may outlive the test: runs, detached workers, pool processes.
    w.close_pool()
    problems = [] if w.wait_for_background(SETTLE_S) else ["a detached run did not end"]
    problems += leftovers(qtbot)
    # Drop every reference to the viewer before failing: a failure's traceback keeps this
    # frame, and a viewer kept alive would fail napari's leak check in later tests too.
    del w, dock, viewer
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


def _engine_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("npp-worker")]


def set_mode(w: ProcessPositionWidget, mode: str) -> None:
    w.num_workers.value, w.use_threads.value = MODES[mode]


def run(qtbot, w: ProcessPositionWidget, timeout: float = 60.0) -> dict:
    assert not w.running
    w.run_button.clicked()
    qtbot.waitUntil(lambda: not w.running, timeout=int(timeout * 1000))
    return w.last_run


def engine_output(demo: Path, tmp_path: Path, w: ProcessPositionWidget) -> np.ndarray:
    """What the engine writes for the widget's current settings (serial, into a store)."""
    config = w.current_config().model_copy(
        update={"output": str(tmp_path / "reference.zarr"), "num_workers": 1}
    )
    batch = prepare_run(config)
    for _ in batch:
        pass
    assert not batch.failed, batch.errors
    info = read_position(batch.output_paths[batch.keys[0]])
    return info.open_array().read().result()


def output_layers(w: ProcessPositionWidget) -> list:
    return [layer for layer in w.viewer.layers if layer.name.endswith("]")]


# -- the form ----------------------------------------------------------------------------


def test_children_and_choices(widget, demo):
    w = widget
    for name in (
        "input_path",
        "position",
        "transform",
        "transform_params",
        "channels",
        "times",
        "num_workers",
        "use_threads",
        "output_path",
        "run_button",
        "cancel_button",
        "progress",
        "status",
        "follow",
    ):
        assert w[name] is getattr(w, name)
    assert w.position.choices == ("A/1/0", "A/2/0", "B/1/0")
    assert w.channels.value == [0, 1]
    assert w.num_workers.max == available_cpus()
    assert not w.cancel_button.enabled and w.run_button.enabled

    w.transform.value = "gaussian_blur"
    sigma = w.transform_params.sigma_y
    assert [p.name for p in w.transform_params] == ["sigma_z", "sigma_y", "sigma_x"]
    assert (sigma.min, sigma.max) == (0.0, 50.0)
    w.transform.value = "binning"
    assert w.transform_params.method.choices == ("mean", "sum")
    assert w.transform_params.bin_y.max == 16
    # Engine-injected parameters are not offered; unannotated numbers are not capped at 999.
    name = w.add_transform(ref("time_offset"))
    assert w.transform.value == name
    assert [p.name for p in w.transform_params] == ["gain"]
    assert w.transform_params.gain.min < -1e6

    # Bad settings are reported, not run.
    w.times.value = "0-7"
    w.run_button.clicked()
    assert not w.running and "does not exist: there are 3 (0 to 2)" in w.status.value
    w.times.value = "all"

    # Defaults survive the spin boxes exactly (no rounding to two decimals).
    name = w.add_transform(ref("fine_gain"))
    assert w.transform_params.gain.value == 0.00125
    assert w.current_config().params == {"gain": 0.00125}

    # A position path works as the input too, and napari's reset_choices keeps the choices.
    w.input_path.value = str(demo / "A" / "2" / "0")
    assert w.position.choices == ("0",)
    w.reset_choices()
    assert w.position.choices == ("0",) and w.channels.choices == (0, 1)


def test_the_times_field_reads_ranges_as_the_command_line_does(widget):
    """The widget's times field goes through the one range parser (core.ranges)."""
    from napari_process_position.core.ranges import parse_ranges

    assert parse_ranges("all", "time point", 5) is None
    assert parse_ranges(" ", "time point", 5) is None
    assert parse_ranges("0-2,4", "time point", 5) == [0, 1, 2, 4]
    for bad in ("5", "1,1", "3-1", "x"):
        with pytest.raises(ValueError):
            parse_ranges(bad, "time point", 5)
    widget.times.value = "0-1"
    assert widget.current_config().times == [0, 1]
    widget.times.value = "1,1"
    with pytest.raises(ValueError, match="repeat"):
        widget.current_config()


# -- runs ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", list(MODES))
def test_run_matches_engine(widget, qtbot, demo, tmp_path, mode):
    w = widget
    w.position.value = "A/2/0"
    w.transform.value = "gaussian_blur"
    w.transform_params.sigma_y.value = 1.5
    w.times.value = "0,2"
    set_mode(w, mode)
    w.run_button.clicked()
    assert w.running and not w.run_button.enabled and w.cancel_button.enabled
    assert not w.transform.enabled  # settings are frozen while a run is in flight
    qtbot.waitUntil(lambda: not w.running, timeout=60_000)
    assert w.run_button.enabled and not w.cancel_button.enabled
    assert w.last_run["outcome"] == "done", w.status.value
    assert w.status.value.startswith("Done: 4/4")

    expected = engine_output(demo, tmp_path, w)
    layers = output_layers(w)
    assert [layer.name for layer in layers] == [
        "Nuclei [Gaussian blur]",
        "Membrane [Gaussian blur]",
    ]
    for i, layer in enumerate(layers):
        assert layer.data.shape == (2, 8, 64, 64)
        np.testing.assert_array_equal(layer.data, expected[:, i])
        # Contrast limits come from the data, not from the preallocated zeros.
        assert layer.contrast_limits[1] > 100
    inputs = [layer for layer in w.viewer.layers if not layer.name.endswith("]")]
    assert [layer.name for layer in inputs] == ["Nuclei", "Membrane"]
    raw = read_position(demo / "A" / "2" / "0").open_array()
    np.testing.assert_array_equal(np.asarray(inputs[1].data), raw[[0, 2], 1].read().result())
    assert tuple(inputs[0].scale) == (1.0, 2.0, 0.65, 0.65)
    if mode == "serial":  # follow: the slider is on the last finished time point
        assert w.viewer.dims.current_step[0] == 1


def test_run_with_output_writes_the_store(widget, qtbot, demo, tmp_path):
    w = widget
    w.transform.value = "binning"
    w.channels.value = [1]
    w.output_path.value = tmp_path / "out.zarr"
    set_mode(w, "threads")
    assert run(qtbot, w)["outcome"] == "done", w.status.value
    written = read_position(tmp_path / "out.zarr" / "A" / "1" / "0").open_array().read().result()
    (layer,) = output_layers(w)
    assert layer.name == "Membrane [Binning]" and layer.data.shape == (3, 8, 32, 32)
    np.testing.assert_array_equal(layer.data, written[:, 0])
    np.testing.assert_array_equal(written, engine_output(demo, tmp_path, w))
    assert tuple(layer.scale) == (1.0, 2.0, 1.3, 1.3)

    # Running again into the same output needs the overwrite box.
    assert run(qtbot, w)["outcome"] == "failed"
    assert "already exists" in w.status.value
    w.overwrite.value = True
    assert run(qtbot, w)["outcome"] == "done", w.status.value


def test_overwrite_refuses_what_the_package_did_not_write(widget, qtbot, tmp_path):
    """The replace box replaces only our outputs; a folder of someone's files stays as it was."""
    from conftest import path_snapshot

    w = widget
    folder = tmp_path / "somewhere"
    (folder / "Documents").mkdir(parents=True)
    (folder / "Documents/thesis.txt").write_text("five years of work\n")
    (folder / "notes.txt").write_text("remember the milk\n")
    before = path_snapshot(folder)
    w.transform.value = "gaussian_blur"
    w.output_path.value = folder
    w.overwrite.value = True
    set_mode(w, "threads")
    assert run(qtbot, w)["outcome"] == "failed"
    assert (
        f"{folder} is not an output of process-position (it holds 2 files, e.g. "
        "Documents/thesis.txt); remove it yourself or choose another output"
    ) in w.status.value
    assert path_snapshot(folder) == before
    assert not output_layers(w)


def test_rerun_replaces_layers(widget, qtbot, demo, tmp_path):
    w = widget
    w.transform.value = "gaussian_blur"
    set_mode(w, "threads")
    run(qtbot, w)
    n_layers = len(w.viewer.layers)
    first = output_layers(w)
    old = weakref.ref(first[0].data)

    w.transform_params.sigma_x.value = 4.0
    assert run(qtbot, w)["outcome"] == "done"
    assert len(w.viewer.layers) == n_layers
    again = output_layers(w)
    assert [a is b for a, b in zip(again, first, strict=True)] == [True, True]
    np.testing.assert_array_equal(again[0].data, engine_output(demo, tmp_path, w)[:, 0])
    gc.collect()
    assert old() is None, "the previous run's array is still referenced"

    # Another transform replaces the output layers instead of piling them up.
    w.transform.value = "max_projection"
    assert run(qtbot, w)["outcome"] == "done"
    assert len(w.viewer.layers) == n_layers
    assert [layer.name for layer in output_layers(w)] == [
        "Nuclei [Max projection]",
        "Membrane [Max projection]",
    ]
    assert output_layers(w)[0].data.shape == (3, 1, 64, 64)


def test_saved_settings_run_from_the_cli_give_the_preview(widget, qtbot, demo, tmp_path):
    from click.testing import CliRunner

    from napari_process_position.batch.config import RunConfig
    from napari_process_position.cli import main

    w = widget
    w.position.value = "B/1/0"
    w.transform.value = "median_filter"
    w.times.value = "1-2"
    set_mode(w, "threads")
    assert run(qtbot, w)["outcome"] == "done", w.status.value
    preview = [np.array(layer.data) for layer in output_layers(w)]

    w.output_path.value = tmp_path / "batch.zarr"
    saved = w.save_config(tmp_path / "run")
    assert saved.suffix == ".yaml" and "process-position run --config" in w.status.value
    config = RunConfig.load(saved)
    assert config.positions is None and config.times == [1, 2]
    result = CliRunner().invoke(main, ["run", "--config", str(saved), "--no-progress"])
    assert result.exit_code == 0, result.output
    written = read_position(tmp_path / "batch.zarr" / "B" / "1" / "0").open_array().read().result()
    for i, volume in enumerate(preview):  # the batch run gives exactly the preview
        np.testing.assert_array_equal(written[:, i], volume)


# -- cancel and failures ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", list(MODES))
def test_cancel_frees_the_widget_at_once(widget, qtbot, mode):
    w = widget
    w.add_transform(ref("slow_scale"))
    w.transform_params.delay.value = 1.5
    set_mode(w, mode)
    w.run_button.clicked()
    qtbot.waitUntil(lambda: w.last_run.get("prepared") is not None, timeout=30_000)
    before = {p.pid for p in _pool_processes()}
    assert bool(before) == (mode == "processes")
    w.cancel_button.clicked()
    assert not w.running and w.run_button.enabled and not w.cancel_button.enabled
    assert w.last_run["outcome"] == "cancelled"
    assert "Cancelled" in w.status.value
    # The run itself ends: process workers are killed; a thread cannot be, so in serial and
    # threads mode the volume being computed finishes in the background and its result is
    # dropped. (How fast: benchmarks/bench_widget_responsiveness.py measures cancel.)
    done = w.last_run["done"]
    if mode == "processes":
        wait_for(qtbot, lambda: not before & {p.pid for p in _pool_processes()})
    elif mode == "threads":
        wait_for(qtbot, lambda: not w.busy_in_background)
    assert w.wait_for_background(10)
    assert w.last_run["done"] == done  # stale results were dropped
    # And the widget runs again right away.
    w.transform_params.delay.value = 0.0
    assert run(qtbot, w)["outcome"] == "done", w.status.value


@pytest.mark.parametrize("mode", ["serial", "processes"])
def test_failing_transform_reports_t_and_c(widget, qtbot, mode):
    from napari.utils.notifications import notification_manager

    w = widget
    w.add_transform(ref("explode_at"))
    w.channels.value = [0]
    set_mode(w, mode)
    seen = []
    notification_manager.notification_ready.connect(seen.append)
    try:
        assert run(qtbot, w)["outcome"] == "failed"
    finally:
        notification_manager.notification_ready.disconnect(seen.append)
    assert "Failed" in w.status.value
    assert "t=1, c=0" in w.status.value and "synthetic failure" in w.status.value
    assert any("synthetic failure" in str(n.message) for n in seen)
    assert w.run_button.enabled and not w.cancel_button.enabled
    (layer,) = output_layers(w)
    if mode == "serial":  # t=0 finished before t=1 failed: it stays on screen
        assert layer.data[0].any() and not layer.data[2].any()


def test_dead_worker_is_reported(widget, qtbot):
    w = widget
    w.add_transform(ref("die_at"))
    set_mode(w, "processes")
    assert run(qtbot, w)["outcome"] == "failed"
    assert "worker process died" in w.status.value
    assert w.run_button.enabled
    # The next run gets working processes again.
    w.add_transform(ref("time_offset"))
    assert run(qtbot, w)["outcome"] == "done", w.status.value


def test_unpicklable_transform_in_process_mode(widget, qtbot, monkeypatch):
    import __main__

    def made_in_console(czyx, gain: float = 2.0):
        return czyx * gain

    made_in_console.__module__ = "__main__"
    made_in_console.__qualname__ = "made_in_console"
    monkeypatch.setattr(__main__, "made_in_console", made_in_console, raising=False)
    monkeypatch.delattr(__main__, "__file__", raising=False)
    w = widget
    w.add_transform(made_in_console)
    set_mode(w, "processes")
    w.run_button.clicked()
    assert not w.running
    assert "interactive session" in w.status.value and "threads" in w.status.value
    set_mode(w, "threads")  # threads can run it
    assert run(qtbot, w)["outcome"] == "done", w.status.value


def test_pool_is_reused_and_closed_with_the_viewer(widget, qtbot):
    w = widget
    w.transform.value = "max_projection"
    set_mode(w, "processes")
    assert run(qtbot, w)["outcome"] == "done", w.status.value
    pids = {p.pid for p in _pool_processes()}
    assert len(pids) == 2
    assert run(qtbot, w)["outcome"] == "done"
    assert {p.pid for p in _pool_processes()} == pids  # warm pool, no new spawn
    w.viewer.close()
    wait_for(qtbot, lambda: not _pool_processes())


@pytest.mark.parametrize("when", ["warm", "warming"])
def test_closing_the_dock_widget_stops_the_pool(make_napari_viewer, qtbot, demo, cpu_hog, when):
    """Under load, and while the workers are still starting (a race once leaked them)."""
    viewer = make_napari_viewer(strict_qt="raise")
    w = ProcessPositionWidget(viewer)
    viewer.window.add_dock_widget(w, name="Process position")
    w.input_path.value = str(demo)
    set_mode(w, "processes")  # warms a pool in the background
    if when == "warm":
        wait_for(qtbot, lambda: len(_pool_processes()) == 2, timeout=60)
    viewer.window.remove_dock_widget(w.native)
    wait_for(qtbot, lambda: not w.busy_in_background)
    qtbot.wait(2000)  # a warm-up that outlived the close would have started workers by now
    wait_for(qtbot, lambda: not _pool_processes())


def test_sample_data_becomes_the_input(make_napari_viewer, qtbot):
    from napari_process_position.widget.sample_data import demo_plate

    layers = demo_plate(shape=(2, 2, 4, 32, 32))
    assert [meta["name"] for _, meta, kind in layers] == ["Nuclei", "Membrane"]
    viewer = make_napari_viewer(strict_qt="raise")
    w = ProcessPositionWidget(viewer)
    viewer.window.add_dock_widget(w, name="Process position")
    for data, meta, kind in layers:
        assert kind == "image" and data.ndim == 4
        viewer.add_image(data, **meta)
    assert tuple(viewer.layers[0].scale[1:]) == (2.0, 0.65, 0.65)
    # The widget takes the sample's store as its input and reuses its layers.
    wait_for(qtbot, lambda: w.position.value == "A/1/0")
    assert [layer.name for layer in viewer.layers] == ["Nuclei", "Membrane"]
    w.num_workers.value = 1
    assert run(qtbot, w)["outcome"] == "done", w.status.value
    assert len(viewer.layers) == 4


def test_sample_data_through_the_plugin_manifest(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-process-position", "demo_plate")
    assert [layer.name for layer in viewer.layers] == ["Nuclei", "Membrane"]
    assert viewer.layers[0].data.shape == (5, 16, 128, 128)


@pytest.mark.parametrize("case", ["plain folder", "bad axes"])
def test_bad_store_is_a_notification_and_nothing_is_written(widget, tmp_path, case):
    import zarr
    from napari.utils.notifications import notification_manager

    if case == "plain folder":
        bad = tmp_path / "not-a-store"
        bad.mkdir()
        expected = "not a Zarr store"
    else:
        bad = tmp_path / "zyx.zarr"
        group = zarr.open_group(str(bad), mode="w", zarr_format=3)
        group.attrs["ome"] = {
            "version": "0.5",
            "multiscales": [
                {"axes": [{"name": n, "type": "space"} for n in "xyz"], "datasets": [{"path": "0"}]}
            ],
        }
        expected = "expected t/c/z/y/x"
    before = sorted(p.name for p in tmp_path.rglob("*"))
    seen = []
    notification_manager.notification_ready.connect(seen.append)
    try:
        widget.input_path.value = bad
    finally:
        notification_manager.notification_ready.disconnect(seen.append)
    assert expected in widget.status.value
    assert any(expected in str(n.message) for n in seen)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_auto_workers_measures_then_runs(widget, qtbot, demo, tmp_path):
    w = widget
    w.transform.value = "gaussian_blur"
    set_mode(w, "threads")
    w.auto_workers.value = True
    assert not w.num_workers.enabled, "the count is decided by the measurement"
    config = w.current_config()
    assert config.auto_workers
    assert run(qtbot, w, timeout=120)["outcome"] == "done", w.status.value
    # The summary says how many workers the measurement chose, and which budget decided.
    assert "Workers: " in w.status.value, w.status.value
    full = engine_output(demo, tmp_path, w)
    for c, layer in enumerate(output_layers(w)):
        np.testing.assert_array_equal(layer.data, full[:, c])
    w.auto_workers.value = False
    assert w.num_workers.enabled
