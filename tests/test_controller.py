"""The widget's controller, driven synchronously without Qt: runs, cancel, previews, stale results.

The launcher here holds each started job and runs it one event at a time when
the test says so; the sink keeps plain numpy arrays; the view records what it
is told, and the form is set through the controller's intents, as the view
sets it. The stores, the engine and the transforms are the real ones.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import npp_test_transforms as tt
from conftest import random_tczyx, write_plate
from napari_process_position.store.metadata import read_position
from napari_process_position.widget.controller import Controller
from napari_process_position.widget.ports import OutputLayers


class Job:
    def __init__(self, job, args, on_event, on_finished):
        self.job = job
        self.args = args
        result = job(*args)
        self.items = result if inspect.isgenerator(result) else iter(())
        self.on_event = on_event
        self.on_finished = on_finished
        self.done = False
        self.stopped = False

    def step(self) -> bool:
        """Deliver the next event; False (and the finished callback) once there is none."""
        if self.done:
            return False
        try:
            item = next(self.items)
        except StopIteration:
            self.done = True
            if self.on_finished is not None:
                self.on_finished()
            return False
        if self.on_event is not None:
            self.on_event(item)
        return True

    def finish(self) -> None:
        while self.step():
            pass


class StepLauncher:
    """Holds started jobs; the test delivers their events (the main thread's turn)."""

    def __init__(self) -> None:
        self.jobs: list[Job] = []
        self.timers: list[tuple[int, Callable[[], None]]] = []

    def start(self, job, *args, on_event=None, on_finished=None):
        handle = Job(job, args, on_event, on_finished)
        self.jobs.append(handle)
        return handle

    def stop(self, handle) -> None:
        if handle is not None:
            handle.stopped = True

    def call_later(self, ms, callback):
        entry = (ms, callback)
        self.timers.append(entry)
        return entry

    def cancel_call(self, handle) -> None:
        if handle in self.timers:
            self.timers.remove(handle)

    @property
    def busy(self) -> bool:
        return any(not job.done for job in self.jobs)

    def fire_timers(self) -> None:
        timers, self.timers = self.timers, []
        for _ms, callback in timers:
            callback()

    def finish_all(self) -> None:
        while any(not job.done for job in self.jobs):
            for job in list(self.jobs):
                job.finish()


class ArraySink:
    """Output "layers" as numpy arrays, filled at once."""

    def __init__(self) -> None:
        self.t_on_screen = 0
        self.inputs: list[tuple[str, Any]] = []  # (position, times) of each show_inputs
        self.puts = 0
        self.made = 0
        self.arrays: dict[str, np.ndarray] = {}
        self.region = None
        self.stores: list[Any] = []

    def show_inputs(self, info, times=None, limits=None, *, now=False):
        self.inputs.append((info.path, times))
        return True

    def shows_inputs_of(self, path) -> bool:
        return any(shown == path for shown, _times in self.inputs)

    def outputs(self, layout, display, output, source, *, store=None):
        self.made += 1
        self.stores.append(store)
        shape = (layout.shape[0], *layout.shape[2:])
        names = [f"{c} [{display}]" for c in layout.channel_names]
        for name in names:
            self.arrays[name] = np.zeros(shape, layout.dtype)
        return self._outputs(layout, names, store)

    def _outputs(self, layout, names, store=None):
        shape = (layout.shape[0], *layout.shape[2:])
        meta = [{"channel": i} for i in range(len(names))]
        arrays = [self.arrays[name] for name in names]
        return OutputLayers(names, shape, np.dtype(layout.dtype), (1.0,) * 4, meta, arrays, 0)

    def existing_outputs(self, layout, display, source):
        names = [f"{c} [{display}]" for c in layout.channel_names]
        shape = (layout.shape[0], *layout.shape[2:])
        if all(n in self.arrays and self.arrays[n].shape == shape for n in names):
            return self._outputs(layout, names)
        return None

    def put(
        self,
        outputs,
        index,
        t,
        volume,
        *,
        where=None,
        limits=None,
        valid,
        shown=None,
        follow=True,
        stored=False,
        read_back=(),
    ):
        if not valid():
            return
        self.puts += 1
        target = self.arrays[outputs.names[index]]
        if where is None:
            target[t] = volume
        else:
            target[(t, *where)] = volume
        if shown is not None:
            shown()

    def when_shown(self, callback):
        callback()

    def on_screen(self, outputs):
        from napari_process_position.widget.events import OnScreen

        return (OnScreen(0, None),)  # (whole volumes, as in 3D)

    def drop_pending(self):
        pass

    def follow(self, outputs, t):
        pass

    def stop_following(self):
        self.stopped_following = getattr(self, "stopped_following", 0) + 1

    def alive(self, outputs):
        return all(name in self.arrays for name in outputs.names)

    def ids(self, outputs):
        return frozenset(outputs.names)

    def layer_ids(self):
        return set(self.arrays)

    def inputs_shown(self, info, channels):
        return self.shows_inputs_of(info.path)

    def input_time_on_screen(self, info, channels):
        if not self.shows_inputs_of(info.path):
            raise AssertionError("asked for the time on screen before showing the inputs")
        return self.t_on_screen

    def preview_region(self, info, z_text):
        return self.region, "rectangle"

    def rectangle_drawn(self):
        return self.region is not None

    def offer_region_layer(self):
        pass


class RecordingView:
    def __init__(self) -> None:
        self.statuses: list[tuple[str, bool]] = []
        self.busy: list[bool] = []
        self.progress: list[tuple[int, int]] = []
        self.live = False
        self.region = False

    def preview_options(self):
        return self.live, self.region, "all"

    def show_status(self, text, error=False):
        self.statuses.append((text, error))

    def set_busy(self, busy):
        self.busy.append(busy)

    def show_progress(self, done, total):
        self.progress.append((done, total))


@pytest.fixture
def plate(tmp_path):
    data = random_tczyx((3, 2, 4, 16, 16), "float32", seed=11, empty=(), nan=())
    store = write_plate(tmp_path / "in.zarr", {"A/1/0": data})
    return store, data


def choose(controller: Controller, store, key: str, **settings: Any) -> None:
    """Set the form through the controller's intents, as the view sends them."""
    form = controller.form
    form.choose_input(store)
    form.choose_position(key)
    form.choose_transform(settings.get("transform", TRANSFORM))
    form.set_params(settings.get("params", {"factor": 3.0, "offset": 0.5}))
    if settings.get("channels") is not None:
        form.set_channels(settings["channels"])
    form.set_output(settings.get("output"))
    form.set_workers(settings.get("num_workers", 2))
    form.set_threads(settings.get("use_threads", True))


def make(plate, **settings):
    store, _data = plate
    view, sink, launcher = RecordingView(), ArraySink(), StepLauncher()
    controller = Controller(view, sink, launcher)
    choose(controller, store, "A/1/0", **settings)
    return controller, view, sink, launcher


TRANSFORM = "npp_test_transforms:scale_offset"


def layer_name(c: int) -> str:
    return f"ch{c} [{TRANSFORM}]"


def expected(data, t, c, factor=3.0, offset=0.5):
    return tt.scale_offset(data[t, [c]], factor, offset)[0]


def test_a_run_streams_every_volume_and_ends_idle(plate):
    controller, view, sink, launcher = make(plate)
    assert controller.state == "idle"
    run = controller.run()
    assert run is not None and controller.state == "running"
    assert view.busy == [True]
    launcher.finish_all()
    assert controller.state == "idle"
    assert view.busy[-1] is False
    assert controller.last_run["outcome"] == "done"
    _store, data = plate
    for c in range(2):
        layer = sink.arrays[layer_name(c)]
        for t in range(3):
            np.testing.assert_array_equal(layer[t], expected(data, t, c))
    text, error = view.statuses[-1]
    assert text.startswith("Done: 6/6 volumes") and not error
    assert view.progress[-1] == (6, 6)
    assert sink.stopped_following == 1, "the slider is the user's once the run ends"


def test_run_is_refused_while_one_is_in_flight(plate):
    controller, _view, _sink, launcher = make(plate)
    first = controller.run()
    assert controller.run() is None
    assert len(launcher.jobs) == 1 and controller.current is first


def test_cancel_drops_the_stale_results_of_the_cancelled_run(plate):
    controller, view, sink, launcher = make(plate)
    controller.run()
    prepare = launcher.jobs[0]
    prepare.step()  # prepared: the layers are added, then its volumes stream
    prepare.finish()
    job = launcher.jobs[1]
    job.step()  # one volume
    assert sink.puts == 1
    controller.cancel()
    assert job.stopped
    assert controller.state == "cancelling"  # its job has not ended yet
    assert view.busy[-1] is False  # Run is enabled again at once
    job.finish()  # the job's late volumes arrive: all dropped
    assert sink.puts == 1
    assert controller.state == "idle"
    assert controller.last_run["outcome"] == "cancelled"
    assert "Cancelled after 1/6 volumes" in view.statuses[-1][0]


class LayersLater(ArraySink):
    """A sink whose layers are in the viewer only when the test says so."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting: list[Callable[[], None]] = []

    def when_shown(self, callback):
        self.waiting.append(callback)

    def show(self) -> None:
        waiting, self.waiting = self.waiting, []
        for callback in waiting:
            callback()


def test_a_run_streams_once_its_layers_are_in_the_viewer(plate, tmp_path):
    store, _data = plate
    view, sink, launcher = RecordingView(), LayersLater(), StepLauncher()
    controller = Controller(view, sink, launcher)
    choose(controller, store, "A/1/0", output=str(tmp_path / "out.zarr"))
    run = controller.run()
    prepare = launcher.jobs[0]
    prepare.finish()
    assert run.batch is not None and run.batch.writer_lock is not None
    assert len(launcher.jobs) == 1 and sink.puts == 0, "no volume before the layers exist"
    assert controller.state == "running"
    sink.show()
    (stream,) = launcher.jobs[1:]
    stream.finish()
    sink.show()  # (the run ends once its volumes are in their layers)
    assert sink.puts == 6 and controller.last_run["outcome"] == "done"
    assert run.batch.writer_lock is None, "the streamed run released the output's locks"


def test_a_run_cancelled_before_it_streams_releases_its_output(plate, tmp_path):
    store, _data = plate
    view, sink, launcher = RecordingView(), LayersLater(), StepLauncher()
    controller = Controller(view, sink, launcher)
    out = str(tmp_path / "out.zarr")
    choose(controller, store, "A/1/0", output=out)
    run = controller.run()
    launcher.jobs[0].finish()  # prepared; its layers are not in yet
    controller.cancel()
    assert run.batch.writer_lock is None, "cancelled before streaming: the locks go at once"
    assert controller.state == "idle" and controller.last_run["outcome"] == "cancelled"
    sink.show()  # the layers arrive late: nothing streams
    assert not any(job.args == (run,) and job is not launcher.jobs[0] for job in launcher.jobs)
    assert sink.puts == 0
    controller.form.set_overwrite(True)
    again = controller.run()  # the output is free for the next run
    launcher.finish_all()
    sink.show()
    launcher.finish_all()
    sink.show()
    assert again is not None and controller.last_run["outcome"] == "done", view.statuses[-1]


def test_a_run_cancelled_while_it_is_prepared_releases_its_output(plate, tmp_path):
    store, _data = plate
    view, sink, launcher = RecordingView(), LayersLater(), StepLauncher()
    controller = Controller(view, sink, launcher)
    out = tmp_path / "out.zarr"
    choose(controller, store, "A/1/0", output=str(out))
    run = controller.run()
    controller.cancel()  # before its job has prepared anything
    assert controller.state == "cancelling"
    launcher.jobs[0].finish()  # the prepared run arrives for a run that is no longer current
    assert controller.state == "idle" and run.batch is None and sink.made == 0
    assert out.exists(), "it was prepared (the output made) before the cancel reached it"
    closed = [job.job.__self__ for job in launcher.jobs[1:] if job.job.__name__ == "close"]
    assert len(closed) == 1 and closed[0].writer_lock is None, "its output's locks are released"
    controller.form.set_overwrite(True)
    again = controller.run()  # its output's locks were released: the next run takes them
    launcher.finish_all()
    sink.show()
    launcher.finish_all()
    sink.show()
    assert again is not None and controller.last_run["outcome"] == "done", view.statuses[-1]


def test_a_failing_transform_is_reported_once_with_its_time_point(plate):
    controller, view, _sink, launcher = make(
        plate, transform="npp_test_transforms:fail_on_time", params={"bad_time": 1}
    )
    controller.run()
    launcher.finish_all()
    errors = [text for text, error in view.statuses if error]
    assert len(errors) == 1
    assert "deliberate failure at t=1" in errors[0]
    assert errors[0].startswith("Failed after")
    assert controller.state == "idle" and controller.last_run["outcome"] == "failed"


def test_bad_settings_do_not_start_a_run(plate):
    controller, view, _sink, launcher = make(plate)
    controller.form.set_channels([])
    assert controller.run() is None
    assert launcher.jobs == []
    assert view.statuses[-1] == ("cannot run: select at least one channel", True)


def test_preview_computes_the_time_point_on_screen(plate):
    controller, view, sink, launcher = make(plate)
    sink.t_on_screen = 2
    controller.previews.preview()
    assert controller.state == "previewing"
    launcher.finish_all()
    assert controller.state == "idle"
    _store, data = plate
    for c in range(2):
        layer = sink.arrays[layer_name(c)]
        np.testing.assert_array_equal(layer[2], expected(data, 2, c))
        assert not layer[0].any(), "only the time point on screen is computed"
    stats = controller.last_preview
    assert stats["time_index"] == 2 and stats["error"] is None
    assert view.statuses[-1][0].startswith(f"Preview of t=2: {TRANSFORM} in")


def test_live_preview_is_debounced_and_skips_what_the_layers_hold(plate):
    controller, view, sink, launcher = make(plate)
    view.live = True
    for _ in range(5):  # a spin box scrolled: five changes, one preview
        controller.previews.request()
    assert len(launcher.timers) == 1
    launcher.fire_timers()
    launcher.finish_all()
    assert controller.previews.started == 1
    controller.previews.request()  # nothing changed: the layers hold it
    launcher.fire_timers()
    assert controller.previews.started == 1
    controller.form.set_params({"factor": 5.0, "offset": 0.5})  # (a live preview is requested)
    assert len(launcher.timers) == 1
    launcher.fire_timers()
    launcher.finish_all()
    assert controller.previews.started == 2
    _store, data = plate
    np.testing.assert_array_equal(sink.arrays[layer_name(1)][0], expected(data, 0, 1, factor=5.0))


def test_a_newer_change_drops_the_stale_preview(plate):
    controller, _view, sink, launcher = make(plate)
    controller.previews.preview()
    old = launcher.jobs[0]
    old.step()  # its layout only
    controller.form.set_params({"factor": 7.0, "offset": 0.0})
    controller.previews.preview()
    new = launcher.jobs[1]
    new.finish()
    old.finish()  # the stale preview stops at its next channel, or its volumes are dropped
    _store, data = plate
    np.testing.assert_array_equal(
        sink.arrays[layer_name(0)][0], expected(data, 0, 0, factor=7.0, offset=0.0)
    )
    assert controller.last_preview["generation"] == new.args[0].generation
    assert controller.state == "idle"


def test_a_run_drops_the_preview_in_flight(plate):
    controller, _view, sink, launcher = make(plate)
    controller.previews.preview()
    preview = launcher.jobs[0]
    preview.step()  # layout
    controller.run()
    puts_before = sink.puts
    preview.finish()  # its volume must not land in the run's layers
    assert sink.puts == puts_before
    launcher.finish_all()  # (the run prepares, then streams)
    assert controller.last_run["outcome"] == "done"


def test_region_preview_gives_the_full_preview_s_numbers_there(plate):
    blur = {"transform": "gaussian_blur", "params": {}}
    controller, _view, sink, launcher = make(plate, **blur)
    controller.previews.preview()
    launcher.finish_all()
    (name,) = [n for n in sink.arrays if n.startswith("ch0 ")]
    full = sink.arrays[name][0].copy()

    controller, view, sink, launcher = make(plate, **blur)
    view.region = True
    sink.region = (None, (2, 10), (4, 12))
    controller.previews.preview()
    launcher.finish_all()
    assert controller.last_preview["note"] is None
    assert controller.last_preview["region"] == (None, (2, 10), (4, 12))
    layer = sink.arrays[name][0]
    np.testing.assert_allclose(layer[:, 2:10, 4:12], full[:, 2:10, 4:12], rtol=1e-6)
    outside = layer.copy()
    outside[:, 2:10, 4:12] = 0
    assert not outside.any(), "only the region is computed"
    assert full[:, :2].any()


def test_the_controller_side_imports_no_qt():
    code = (
        "import sys\n"
        "import napari_process_position.widget.controller\n"
        "import napari_process_position.widget.previews\n"
        "import napari_process_position.widget.jobs\n"
        "loaded = {'qtpy', 'napari', 'magicgui', 'PyQt5', 'PyQt6'} & set(sys.modules)\n"
        "print(sorted(loaded))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_cached_array_serves_kept_planes_for_points_and_one_plane_slabs(plate):
    from napari_process_position.widget.cached_array import CachedArray

    store, data = plate
    info = read_position(str(store / "A/1/0"), "A/1/0")
    layer_data = CachedArray(info, 1, [0, 2])  # the layer shows input times 0 and 2
    assert layer_data.shape == (2, 4, 16, 16)
    np.testing.assert_array_equal(layer_data[1, 3], data[2, 1, 3])  # from the store
    np.testing.assert_array_equal(layer_data[1:2, 3:4], data[2:3, 1, 3:4])
    kept = np.full((16, 16), -1.0, np.float32)  # unlike anything in the store
    layer_data.keep(1, (3,), kept)
    np.testing.assert_array_equal(layer_data[1, 3], kept)
    np.testing.assert_array_equal(layer_data[1:2, 3:4], kept[np.newaxis, np.newaxis])
    np.testing.assert_array_equal(layer_data[1, 3, 2:5], kept[2:5])
    np.testing.assert_array_equal(layer_data[0, 3], data[0, 1, 3])  # not kept: read


def test_cached_array_holds_written_regions_in_memory_and_leaves_the_store(plate):
    from napari_process_position.widget.cached_array import CachedArray

    store, data = plate
    info = read_position(str(store / "A/1/0"), "A/1/0")
    layer_data = CachedArray(info, 0, None)
    layer_data[1, :, 2:5, 3:7] = -2.0  # (a region preview over a run's layer)
    expected = data[:, 0].copy()
    expected[1, :, 2:5, 3:7] = -2.0
    np.testing.assert_array_equal(np.asarray(layer_data), expected)
    np.testing.assert_array_equal(layer_data[1, 2], expected[1, 2])
    assert layer_data.held_bytes() == expected[1].nbytes  # one volume, not the array
    np.testing.assert_array_equal(info.open_array()[:, 0].read().result(), data[:, 0])


def test_cached_array_keeps_a_bounded_number_of_bytes(plate, monkeypatch):
    from napari_process_position.widget import cached_array

    store, _data = plate
    info = read_position(str(store / "A/1/0"), "A/1/0")
    layer_data = cached_array.CachedArray(info, 0, None)
    volume = np.zeros((4, 16, 16), np.float32)
    monkeypatch.setattr(cached_array, "CACHE_BYTES", volume.nbytes)
    layer_data.keep(0, (), volume)
    layer_data.keep(1, (), volume + 1)
    assert not layer_data.has(0, ()) and layer_data.has(1, ())
    assert layer_data.held_bytes() == volume.nbytes
    monkeypatch.setattr(cached_array, "CACHE_BYTES", 1)  # the newest is always kept
    layer_data.keep(2, (), volume + 2)
    assert layer_data.has(2, ()) and layer_data.held_bytes() == volume.nbytes


def test_a_run_with_an_output_hands_its_store_to_the_layers(plate, tmp_path):
    controller, _view, sink, launcher = make(plate, output=str(tmp_path / "out.zarr"))
    controller.run()
    launcher.finish_all()
    assert controller.last_run["outcome"] == "done"
    (store,) = sink.stores
    assert store is not None and store.path == str(tmp_path / "out.zarr" / "A" / "1" / "0")


def test_a_run_without_an_output_that_would_not_fit_in_memory_is_refused(plate, monkeypatch):
    from napari_process_position.core.memory import MemoryBudget
    from napari_process_position.widget import jobs

    tight = MemoryBudget(available=20_000, source="a test's budget")  # the run needs 24 KiB
    monkeypatch.setattr(jobs, "memory_budget", lambda: tight)
    controller, view, sink, launcher = make(plate)
    controller.run()
    launcher.finish_all()
    assert controller.state == "idle" and controller.last_run["outcome"] == "failed"
    assert sink.made == 0 and sink.puts == 0, "nothing was computed or shown"
    text, error = view.statuses[-1]
    assert error and "every volume stays in memory: 24 KiB" in text
    assert "a test's budget" in text and "choose an output store" in text


def test_the_in_memory_check_passes_what_fits_and_unknown_budgets():
    from napari_process_position.core.memory import MemoryBudget
    from napari_process_position.store.layout import OutputLayout
    from napari_process_position.widget.jobs import check_in_memory

    layout = OutputLayout((2, 1, 4, 16, 16), "uint16", (1.0,) * 5, ("a",))  # 4 KiB
    check_in_memory(layout, MemoryBudget(available=8192, source="x"))
    with pytest.raises(ValueError, match="4 KiB"):
        check_in_memory(layout, MemoryBudget(available=8191, source="x"))
