"""Engine correctness: every execution mode, dtype and index form against a numpy reference."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import npp_test_transforms as tt
from conftest import random_tczyx, read_array, tree_digest, write_plate
from napari_process_position import (
    ProcessPool,
    TransformError,
    WorkerDiedError,
    process_single_position,
    stream_position,
)
from napari_process_position.store.create import write_empty_plate
from napari_process_position.store.layout import OutputLayout

MODES = {
    "serial": {"num_workers": 1, "use_threads": False},
    "threads": {"num_workers": 2, "use_threads": True},
    "processes": {"num_workers": 2, "use_threads": False},
}

# (name, func, input channels, output channels, input times, output times,
#  output C, output T, out dtype)
CASES = [
    ("defaults", tt.scale_offset, None, None, None, None, 2, 3, "float32"),
    ("int-channels-zyx", tt.keep_dtype_blur, [0, 1], None, None, None, 2, 3, "same"),
    ("list-group", tt.sum_channels, [[0, 1]], [[1]], None, None, 2, 3, "float32"),
    ("slice-group", tt.scale_offset, [slice(0, 2)], [slice(0, 2)], [0, 2], None, 2, 3, "float32"),
    ("swapped-and-shifted", tt.time_aware, [[0], [1]], [[1], [0]], [0, 1], [2, 3], 2, 4, "float32"),
]


def _block(data: np.ndarray, t: int, group):
    if isinstance(group, int):
        return data[t, group]
    if isinstance(group, slice):
        return data[t, group]
    return data[t, list(group)]


def _empty(block: np.ndarray) -> bool:
    vols = [block] if block.ndim == 3 else list(block)
    return any((not np.any(v)) or (v.dtype.kind == "f" and np.isnan(v).all()) for v in vols)


def reference(func, data, out_shape, out_dtype, in_c, out_c, in_t, out_t, **kwargs):
    """What process_single_position must produce, computed directly with numpy."""
    out = np.zeros(out_shape, out_dtype)
    in_c = in_c if in_c is not None else [[c] for c in range(data.shape[1])]
    out_c = out_c if out_c is not None else in_c
    in_t = in_t if in_t is not None else list(range(data.shape[0]))
    out_t = out_t if out_t is not None else in_t
    takes_t = "input_time_index" in func.__code__.co_varnames
    for gi, go in zip(in_c, out_c, strict=True):
        for ti, to in zip(in_t, out_t, strict=True):
            block = _block(data, ti, gi)
            if _empty(block):
                continue
            extra = {"input_time_index": ti} if takes_t else {}
            result = np.asarray(func(block, **kwargs, **extra))
            target = out[to]
            if isinstance(go, (int, slice)):
                target[go] = result
            else:
                target[list(go)] = result
    return out


def _make(tmp_path: Path, dtype: str, out_c: int, out_t: int, out_dtype: str, version="0.5"):
    data = random_tczyx((3, 2, 4, 16, 24), dtype, seed=7)
    src = write_plate(tmp_path / "in.zarr", {"A/1/0": data}, version=version)
    od = dtype if out_dtype == "same" else out_dtype
    layout = OutputLayout(
        shape=(out_t, out_c, 4, 16, 24),
        dtype=np.dtype(od).str,
        scale=(1, 1, 2, 0.5, 0.5),
        channel_names=("a", "b")[:out_c],
    )
    write_empty_plate(tmp_path / "out.zarr", {"A/1/0": layout}, version=version)
    return data, src / "A/1/0", tmp_path / "out.zarr/A/1/0", np.dtype(od)


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_matches_numpy_reference(tmp_path, mode, dtype, case):
    _name, func, in_c, out_c, in_t, out_t, n_c, n_t, out_dtype = case
    data, src, dst, od = _make(tmp_path, dtype, n_c, n_t, out_dtype)
    before = tree_digest(tmp_path / "in.zarr")
    process_single_position(
        func,
        src,
        dst,
        input_channel_indices=in_c,
        output_channel_indices=out_c,
        input_time_indices=in_t,
        output_time_indices=out_t,
        **MODES[mode],
    )
    expected = reference(func, data, (n_t, n_c, 4, 16, 24), od, in_c, out_c, in_t, out_t)
    got = read_array(dst)
    assert got.dtype == od
    np.testing.assert_array_equal(got, expected)
    assert tree_digest(tmp_path / "in.zarr") == before, "the input store was modified"


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_kwargs_are_forwarded_and_v04_output(tmp_path, version):
    data, src, dst, od = _make(tmp_path, "uint16", 2, 3, "float32", version=version)
    process_single_position(tt.scale_offset, src, dst, factor=-3.0, offset=0.25)
    expected = reference(
        tt.scale_offset,
        data,
        (3, 2, 4, 16, 24),
        od,
        None,
        None,
        None,
        None,
        factor=-3.0,
        offset=0.25,
    )
    np.testing.assert_array_equal(read_array(dst), expected)


def test_stream_yields_in_completion_order_with_timings(tmp_path):
    data = random_tczyx((4, 2, 4, 16, 16), "float32", seed=1, empty=(), nan=())
    src = write_plate(tmp_path / "in.zarr", {"A/1/0": data})
    run = stream_position(tt.scale_offset, src / "A/1/0", num_workers=2, use_threads=True)
    assert run.total == 8
    seen = {}
    for result in run:
        assert result.status == "preview"
        assert result.read_s >= 0 and result.compute_s >= 0
        c = result.input_channels[0]
        seen[(result.input_time_index, c)] = result.volume
    assert len(seen) == 8
    for (t, c), volume in seen.items():
        np.testing.assert_array_equal(volume, tt.scale_offset(data[t, [c]]))


def test_empty_volumes_are_skipped(tmp_path):
    data = random_tczyx((3, 2, 4, 8, 8), "float32", empty=((1, 0),), nan=((2, 1),))
    src = write_plate(tmp_path / "in.zarr", {"A/1/0": data})
    statuses = {
        (r.input_time_index, r.input_channels): r.status
        for r in stream_position(tt.scale_offset, src / "A/1/0")
    }
    assert statuses[(1, (0,))] == "skipped"
    assert statuses[(2, (1,))] == "skipped"
    assert sum(s == "skipped" for s in statuses.values()) == 2
    # A group is skipped when any of its channels is empty (iohub's rule).
    groups = {
        r.input_time_index: r.status
        for r in stream_position(tt.sum_channels, src / "A/1/0", input_channel_indices=[[0, 1]])
    }
    assert groups == {0: "preview", 1: "skipped", 2: "skipped"}


def test_skip_resets_stale_output_to_fill(tmp_path):
    _data, src, dst, _od = _make(tmp_path, "float32", 2, 3, "float32")
    # Pretend an earlier run left data where the input is now empty.
    import zarr

    arr = zarr.open_array(dst / "0", mode="r+")
    arr[1, 0] = 5.0
    process_single_position(tt.scale_offset, src, dst)
    assert not np.any(read_array(dst)[1, 0])


def test_fixture_plates_interop(fixture_copy, tmp_path):
    """iohub-written v0.4 uint16 and v0.5 float32 plates read and process correctly."""
    for name in ("iohub_v04_uint16.zarr", "iohub_v05_float32.zarr"):
        plate = fixture_copy(name)
        from napari_process_position import open_store, read_position

        store = open_store(plate)
        assert store.kind == "plate" and len(store.position_keys) >= 3
        info = read_position(store.position_path("A/1/0"))
        assert info.channel_names == ("GFP", "mCherry")
        assert info.scale == (1.0, 1.0, 2.0, 0.65, 0.65)
        data = read_array(info.path)
        results = list(stream_position(tt.scale_offset, info.path, num_workers=2, use_threads=True))
        by_tc = {(r.input_time_index, r.input_channels[0]): r for r in results}
        for (t, c), r in by_tc.items():
            if _empty(data[t, [c]]):
                assert r.status == "skipped"
            else:
                np.testing.assert_array_equal(r.volume, tt.scale_offset(data[t, [c]]))
        assert any(r.status == "skipped" for r in results), "fixtures hold empty volumes"


def test_transform_error_names_task_and_cancels_pending(tmp_path):
    data = random_tczyx((6, 1, 2, 8, 8), "float32", empty=(), nan=())
    src = write_plate(tmp_path / "in.zarr", {"A/1/0": data})
    for mode in ("serial", "threads", "processes"):
        run = stream_position(
            tt.fail_on_time, src / "A/1/0", bad_time=1, max_in_flight=2, **MODES[mode]
        )
        with pytest.raises(TransformError) as info:
            list(run)
        assert "t=1, c=0" in str(info.value)
        assert "deliberate failure" in str(info.value)
        assert info.value.time_index == 1
        assert isinstance(info.value.__cause__, ValueError)


def test_worker_death_raises_promptly(tmp_path):
    data = random_tczyx((6, 1, 2, 8, 8), "float32", empty=(), nan=())
    src = write_plate(tmp_path / "in.zarr", {"A/1/0": data})
    start = time.perf_counter()
    with pytest.raises(WorkerDiedError) as info:
        list(stream_position(tt.die_on_time, src / "A/1/0", num_workers=2, bad_time=2))
    assert time.perf_counter() - start < 30
    message = str(info.value)
    assert "worker process died" in message and "t=2, c=0" in message
    assert "memory" in message


def test_unpicklable_transform_in_process_mode_is_explained(tmp_path):
    data = random_tczyx((2, 1, 2, 8, 8), "float32", empty=(), nan=())
    src = write_plate(tmp_path / "in.zarr", {"A/1/0": data})
    with pytest.raises(TransformError, match=r"lambda|nested|module"):
        stream_position(lambda x: x, src / "A/1/0", num_workers=2)
    # Threads take it.
    assert (
        len(list(stream_position(lambda x: x, src / "A/1/0", num_workers=2, use_threads=True))) == 2
    )


@pytest.mark.parametrize("mode", ["serial", "threads", "processes"])
def test_cancel_from_another_thread(tmp_path, mode):
    data = random_tczyx((20, 1, 2, 8, 8), "float32", empty=(), nan=())
    write_plate(tmp_path / "in.zarr", {"A/1/0": data})
    layout = OutputLayout((20, 1, 2, 8, 8), "<f4", (1,) * 5, ("a",))
    write_empty_plate(tmp_path / "out.zarr", {"A/1/0": layout})
    run = stream_position(
        tt.slow, tmp_path / "in.zarr/A/1/0", tmp_path / "out.zarr/A/1/0", seconds=0.3, **MODES[mode]
    )
    got = []
    timer = threading.Timer(0.5, run.cancel)
    for result in run:
        if not got:  # cancel from another thread once work is flowing
            timer.start()
            start = time.perf_counter()
        got.append(result)
    elapsed = time.perf_counter() - start
    timer.join()
    assert run.cancelled
    assert 0 < len(got) < 20
    # Cancel lands long before the rest would have run (20 x 0.3 s, on 1 or 2 workers), even
    # on a loaded machine (how fast: benchmarks/bench_widget_responsiveness.py).
    assert elapsed < 5
    # Everything reported as written is really there.
    out = read_array(tmp_path / "out.zarr/A/1/0")
    for r in got:
        np.testing.assert_array_equal(out[r.output_time_index, 0], data[r.input_time_index, 0])


def test_warm_pool_is_reused_across_runs(tmp_path):
    data = random_tczyx((4, 1, 2, 8, 8), "float32", empty=(), nan=())
    src = write_plate(tmp_path / "in.zarr", {"A/1/0": data})
    with ProcessPool(2) as pool:
        pids = set(pool.warm())
        for _ in range(2):
            results = list(stream_position(tt.scale_offset, src / "A/1/0", pool=pool))
            assert len(results) == 4
            assert {int(r.worker.split()[1]) for r in results} <= pids
        assert {p.pid for p in pool.processes()} == pids


def test_resume_skips_completed_and_recomputes_after_param_change(tmp_path):
    data, src, dst, od = _make(tmp_path, "float32", 2, 3, "float32")
    process_single_position(tt.scale_offset, src, dst, factor=2.0)
    statuses = [
        r.status for r in stream_position(tt.scale_offset, src, dst, resume=True, factor=2.0)
    ]
    assert set(statuses) == {"resumed"}
    # Different parameters: nothing is trusted.
    statuses = [
        r.status for r in stream_position(tt.scale_offset, src, dst, resume=True, factor=3.0)
    ]
    assert "resumed" not in statuses
    expected = reference(
        tt.scale_offset, data, (3, 2, 4, 16, 24), od, None, None, None, None, factor=3.0
    )
    np.testing.assert_array_equal(read_array(dst), expected)


class CountingExecutor(__import__("concurrent.futures").futures.ThreadPoolExecutor):
    """A thread pool that records the most futures ever outstanding."""

    def __init__(self, workers):
        super().__init__(workers)
        self.outstanding = 0
        self.peak = 0
        self._lock = threading.Lock()

    def submit(self, fn, *args, **kwargs):
        with self._lock:
            self.outstanding += 1
            self.peak = max(self.peak, self.outstanding)
        future = super().submit(fn, *args, **kwargs)

        def done(_):
            with self._lock:
                self.outstanding -= 1

        future.add_done_callback(done)
        return future


def test_any_executor_and_bounded_in_flight(tmp_path):
    data = random_tczyx((10, 2, 2, 8, 8), "float32", empty=(), nan=())
    src = write_plate(tmp_path / "in.zarr", {"A/1/0": data})
    with CountingExecutor(4) as executor:
        run = stream_position(
            tt.slow, src / "A/1/0", executor=executor, num_workers=2, seconds=0.02
        )
        assert run.mode == "executor" and run.max_in_flight == 4
        results = list(run)
    assert len(results) == 20
    assert 1 < executor.peak <= 4, "in-flight tasks must stay bounded (about 2 x workers)"


def test_cancel_in_process_mode_stops_the_workers(tmp_path):
    psutil = pytest.importorskip("psutil")
    data = random_tczyx((20, 1, 2, 8, 8), "float32", empty=(), nan=())
    src = write_plate(tmp_path / "in.zarr", {"A/1/0": data})
    run = stream_position(tt.slow, src / "A/1/0", num_workers=2, seconds=5.0)
    threading.Timer(2.0, run.cancel).start()
    start = time.perf_counter()
    assert list(run) == []
    assert time.perf_counter() - start < 2.0 + 1.5, "cancel must not wait for the 5 s tasks"

    def workers():
        # multiprocessing's resource tracker lives as long as we do; it is not a worker.
        alive = []
        for p in psutil.Process().children(recursive=True):
            try:
                if p.status() != psutil.STATUS_ZOMBIE and "resource_tracker" not in " ".join(
                    p.cmdline()
                ):
                    alive.append(p)
            except psutil.NoSuchProcess:
                pass
        return alive

    deadline = time.time() + 3
    while time.time() < deadline and workers():
        time.sleep(0.05)
    assert not workers()


def test_edited_transform_file_is_reloaded(tmp_path):
    from napari_process_position.core.transform_ref import resolve_transform

    helper = tmp_path / "helper_mod_npp.py"
    helper.write_text("OFFSET = 10\n")
    script = tmp_path / "mine.py"
    script.write_text("import helper_mod_npp\n\ndef f(x):\n    return x + helper_mod_npp.OFFSET\n")
    ref = f"{script}:f"
    assert resolve_transform(ref)(1) == 11  # a module beside the file is importable
    script.write_text(
        "import helper_mod_npp\n\ndef f(x):\n    return x + 2 * helper_mod_npp.OFFSET\n"
    )
    os.utime(script, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert resolve_transform(ref)(1) == 21


def test_strict_dtype_refuses_unsafe_casts(tmp_path):
    _data, src, dst, _od = _make(tmp_path, "uint16", 2, 3, "same")
    with pytest.raises(TransformError, match=r"returned float32 .* stores uint16"):
        list(stream_position(tt.scale_offset, src, dst, strict_dtype=True))
    # Without it, values are cast as numpy (and iohub) cast them.
    list(stream_position(tt.scale_offset, src, dst))
    assert read_array(dst).dtype == np.uint16


@pytest.mark.skipif(not hasattr(os, "getpriority"), reason="no thread priorities here")
@pytest.mark.parametrize("mode", ["threads", "processes"])
def test_niceness_lowers_the_workers_priority_only(tmp_path, mode):
    data = random_tczyx((2, 1, 2, 8, 8), "float32", empty=(), nan=())
    src = write_plate(tmp_path / "in.zarr", {"A/1/0": data})
    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    for niceness, expected in ((0, base), (5, min(19, base + 5))):
        run = stream_position(tt.report_niceness, src / "A/1/0", niceness=niceness, **MODES[mode])
        seen = {float(r.volume.flat[0]) for r in run}
        assert seen == {float(expected)}
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base
