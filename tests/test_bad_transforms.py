"""Bad transforms: each failure names the transform, the (t, c) and what was expected.

A transform that raises, and cancelling a slow one, are in tests/test_engine.py
(``test_transform_error_names_task_and_cancels_pending``, ``test_cancel_from_another_thread``,
``test_cancel_in_process_mode_stops_the_workers``); here they are checked through the
command line.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from click.testing import CliRunner

import npp_fault_transforms as ft
from conftest import TESTS, random_tczyx, read_array, tree_digest, write_plate
from napari_process_position import ProcessPool, TransformError, stream_position
from napari_process_position.cli import main
from napari_process_position.core.records import records_dir
from napari_process_position.store.create import write_empty_plate
from napari_process_position.store.layout import OutputLayout

CLI = [sys.executable, "-m", "napari_process_position.cli"]
FT = f"{TESTS / 'npp_fault_transforms.py'}"
SHAPE = (3, 1, 4, 16, 16)


@pytest.fixture(scope="module")
def pool():
    with ProcessPool(2) as pool:
        pool.warm()
        yield pool


@pytest.fixture
def plate(tmp_path):
    data = random_tczyx(SHAPE, "uint16", seed=3, empty=(), nan=())
    data[1, 0, 0, 0, 0] = 0  # one zero voxel (not an empty volume): x / x is NaN there
    src = write_plate(tmp_path / "in.zarr", {"A/1/0": data})
    return data, src


def _output(tmp_path: Path, dtype: str, name: str = "out.zarr") -> Path:
    layout = OutputLayout(SHAPE, np.dtype(dtype).str, (1,) * 5, ("a",))
    write_empty_plate(tmp_path / name, {"A/1/0": layout})
    return tmp_path / name / "A/1/0"


def _records(position: Path) -> set[str]:
    folder = Path(records_dir(position))
    return {p.name for p in folder.glob("*.done")} if folder.exists() else set()


# (transform, the input t it fails on, what the message must say)
BAD_RESULTS = {
    "returns None": (
        ft.returns_none,
        0,
        ["returned None", "expected an array of shape (1, 4, 16, 16)"],
    ),
    "drops a dimension": (
        ft.drops_a_dimension,
        0,
        ["returned shape (16, 16)", "expects (1, 4, 16, 16) (CZYX)"],
    ),
    "shape differs between tasks": (
        ft.shape_varies,
        1,
        ["returned shape (1, 4, 15, 16)", "expects (1, 4, 16, 16)"],
    ),
    "complex": (ft.to_complex, 0, ["dtype complex64", "integers or floats", "np.abs"]),
    "object": (ft.to_object, 0, ["dtype object", "integers or floats"]),
}


@pytest.mark.parametrize("mode", ["serial", "processes"])
@pytest.mark.parametrize("case", list(BAD_RESULTS))
def test_result_that_cannot_be_stored(plate, tmp_path, pool, case, mode):
    func, bad_t, expected = BAD_RESULTS[case]
    _, src = plate
    before = tree_digest(src)
    dst = _output(tmp_path, "float32")
    extra = {"pool": pool} if mode == "processes" else {}
    got = []
    with pytest.raises(TransformError) as info:
        for result in stream_position(func, src / "A/1/0", dst, max_in_flight=1, **extra):
            got.append(result)
    message = str(info.value)
    assert message.startswith(f"transform {func.__name__!r} ") and f"t={bad_t}, c=0" in message, (
        message
    )
    for text in expected:
        assert text in message, message
    assert message.count("transform") <= 2, f"the message is not wrapped twice: {message}"
    assert info.value.time_index == bad_t
    assert f"t{bad_t}_c0.done" not in _records(dst)
    # What came before the bad volume was written.
    assert {r.input_time_index for r in got} == set(range(bad_t))
    assert tree_digest(src) == before


def test_bool_result_is_stored_as_zeros_and_ones(plate, tmp_path):
    data, src = plate
    dst = _output(tmp_path, "uint8")
    list(stream_position(ft.to_bool, src / "A/1/0", dst))
    got = read_array(dst)
    for t in range(SHAPE[0]):
        np.testing.assert_array_equal(got[t], ft.to_bool(data[t]).astype(np.uint8))


def test_nan_and_inf_are_stored_as_they_are_in_a_float_output(plate, tmp_path, pool):
    data, src = plate
    dst = _output(tmp_path, "float32")
    list(stream_position(ft.with_nan, src / "A/1/0", dst, pool=pool))
    got = read_array(dst)
    for t in range(SHAPE[0]):
        want = ft.with_nan(data[t], t)
        assert np.isnan(got[t, 0, 0, 0, 0]) and np.isinf(got[t, 0, 0, 0, 1])
        np.testing.assert_array_equal(got[t], want)  # NaN == NaN here


@pytest.mark.parametrize(
    "func, what", [(ft.nan_in_ints, "NaN"), (ft.inf_in_ints, "infinite values")]
)
def test_nan_or_inf_into_an_integer_output_is_refused(plate, tmp_path, pool, func, what):
    """A cast would store garbage (NaN becomes 0 or -2**31); the run stops instead."""
    _data, src = plate
    dst = _output(tmp_path, "uint16")
    with pytest.raises(TransformError) as info:
        list(stream_position(func, src / "A/1/0", dst, pool=pool))
    message = str(info.value)
    assert f"transform {func.__name__!r} returned {what} for t=1, c=0" in message, message
    assert "stores uint16" in message and "np.nan_to_num" in message
    assert "t1_c0.done" not in _records(dst)


# -- transforms a spawned worker cannot import --------------------------------------------------


def test_transform_defined_in_python_c_is_refused_before_anything_runs(plate, tmp_path):
    _data, src = plate
    dst = _output(tmp_path, "float32")
    script = textwrap.dedent(f"""
        import numpy as np
        from napari_process_position import stream_position, TransformError

        def invert(czyx):
            return -czyx.astype(np.float32)

        try:
            list(stream_position(invert, {str(src / "A/1/0")!r}, {str(dst)!r}, num_workers=2))
        except TransformError as exc:
            print("ERROR", exc)
    """)
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("ERROR transform 'invert' is defined in an interactive session")
    assert "file.py:function" in proc.stdout and "threads" in proc.stdout
    assert "Traceback" not in proc.stderr
    assert not _records(dst)


def test_module_that_exists_only_in_the_caller_is_named_not_a_dead_worker(plate, tmp_path, pool):
    """A module built at run time (or deleted since it was imported): workers cannot import it."""
    import types

    _data, src = plate
    dst = _output(tmp_path, "float32")
    module = types.ModuleType("npp_ghost_module")
    exec("def ghost(czyx):\n    return czyx * 2\n", module.__dict__)
    sys.modules["npp_ghost_module"] = module
    try:
        start = time.perf_counter()
        with pytest.raises(TransformError) as info:
            list(stream_position(module.ghost, src / "A/1/0", dst, pool=pool))
        assert time.perf_counter() - start < 10
        # Threads share the caller's modules: the same transform runs there.
        assert (
            len(
                list(
                    stream_position(
                        module.ghost, src / "A/1/0", dst, num_workers=2, use_threads=True
                    )
                )
            )
            == SHAPE[0]
        )
    finally:
        del sys.modules["npp_ghost_module"]
    message = str(info.value)
    assert message.startswith("transform 'ghost' cannot be loaded in this worker process"), message
    assert "No module named 'npp_ghost_module'" in message and "t=" in message and "c=0" in message
    assert "module:function" in message and "threads" in message
    # The pool survived: a crashed queue would have broken it.
    assert len(list(stream_position(ft.affine, src / "A/1/0", dst, pool=pool))) == SHAPE[0]


def test_module_on_a_sys_path_addition_of_the_caller_is_found_by_spawned_workers(plate, tmp_path):
    """Spawn hands the caller's sys.path to its workers, so such a transform works in processes."""
    data, src = plate
    folder = tmp_path / "my_transforms"
    folder.mkdir()
    (folder / "npp_extra_path_mod.py").write_text(
        "import numpy as np\n\ndef tripled(czyx):\n    return czyx.astype(np.float32) * 3\n"
    )
    sys.path.insert(0, str(folder))
    try:
        import npp_extra_path_mod

        results = list(stream_position(npp_extra_path_mod.tripled, src / "A/1/0", num_workers=2))
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("npp_extra_path_mod", None)
    assert {int(r.worker.split()[1]) for r in results} - {os.getpid()}, "ran in worker processes"
    for r in results:
        np.testing.assert_array_equal(r.volume, data[r.input_time_index, [0]] * np.float32(3))


# -- through the command line -----------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_plate(tmp_path_factory):
    data = random_tczyx(SHAPE, "uint16", seed=4, empty=(), nan=())
    return write_plate(tmp_path_factory.mktemp("badcli") / "in.zarr", {"A/1/0": data})


PROBE_FAILURES = {
    "returns_none": "returned None for t=0, c=0; expected a ZYX or CZYX array",
    "drops_a_dimension": (
        "returned 2 dimensions (shape (16, 16)) for t=0, c=0; expected a ZYX or CZYX array"
    ),
    "to_complex": "returned ndarray of dtype complex64 for t=0, c=0",
    "to_object": "returned ndarray of dtype object for t=0, c=0",
}


@pytest.mark.parametrize("name", list(PROBE_FAILURES))
def test_cli_bad_result_found_before_the_output_is_made(cli_plate, tmp_path, name):
    """Sizing the output runs the transform once: a bad result is one line, nothing is written."""
    out = tmp_path / "out.zarr"
    result = CliRunner().invoke(
        main, ["run", str(cli_plate), str(out), "-t", f"{FT}:{name}", "--no-progress"]
    )
    assert isinstance(result.exception, SystemExit | None), result.exception
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert (
        lines[0].startswith(f"error: transform '{FT}:{name}' ") and PROBE_FAILURES[name] in lines[0]
    )
    assert not out.exists()


@pytest.mark.parametrize(
    "name, text",
    [
        ("raises", "failed on t=1, c=0: RuntimeError: deconvolution diverged at t=1"),
        (
            "shape_varies",
            "returned shape (1, 4, 15, 16) for t=1, c=0, but the output expects (1, 4, 16, 16)",
        ),
    ],
)
def test_cli_transform_failing_in_a_worker_is_one_error_line(cli_plate, tmp_path, name, text):
    out = tmp_path / "out.zarr"
    before = tree_digest(cli_plate)
    proc = subprocess.run(
        [
            *CLI,
            "run",
            str(cli_plate),
            str(out),
            "-t",
            f"{FT}:{name}",
            "-w",
            "2",
            "--processes",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr[-3000:]
    assert errors[0].startswith("error: A/1/0: transform ") and text in errors[0], errors[0]
    assert "rerun with --resume" in proc.stderr
    # The failed volume has no record (volumes running beside it may have been stopped too).
    assert "t1_c0.done" not in _records(out / "A/1/0")
    assert tree_digest(cli_plate) == before


def test_cli_ctrl_c_stops_a_slow_transform_promptly(cli_plate, tmp_path):
    """Ctrl-C reaches the whole process group; the run stops at once and says how to resume."""
    out = tmp_path / "out.zarr"
    proc = subprocess.Popen(
        [
            *CLI,
            "run",
            str(cli_plate),
            str(out),
            "-t",
            f"{FT}:slow",
            "-p",
            "seconds=20",
            "-w",
            "2",
            "--processes",
            "--no-progress",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 120  # (the probe that sizes the output takes 20 s)
        workers: list[psutil.Process] = []
        while time.time() < deadline and len(workers) < 2:
            time.sleep(0.1)
            workers = [
                p
                for p in psutil.Process(proc.pid).children()
                if "resource_tracker" not in " ".join(p.cmdline())
            ]
        assert len(workers) >= 2, "the workers did not start"
        time.sleep(1.0)  # both are inside a 20 s task now (the output was sized by a probe)
        os.killpg(proc.pid, signal.SIGINT)
        sent = time.perf_counter()
        _, stderr = proc.communicate(timeout=90)
        elapsed = time.perf_counter() - sent
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, stderr[-3000:]
    # Not waiting for the tasks (19 s left), whatever the machine's load.
    assert elapsed < 12, f"{elapsed:.1f} s from Ctrl-C to exit"
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-3000:]
    assert "--resume" in stderr
    _, alive = psutil.wait_procs(workers, timeout=5)
    assert not alive
