"""The command line, end to end: real stores, real subprocesses, one clear line on bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import TESTS, random_tczyx, read_array, tree_digest, write_plate
from napari_process_position.cli import main

CLI = [sys.executable, "-m", "napari_process_position.cli"]


@pytest.fixture(scope="module")
def plate(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "in.zarr"
    data = {
        k: random_tczyx((3, 2, 4, 16, 16), "uint16", seed=i)
        for i, k in enumerate(["A/1/0", "A/2/0", "B/1/0"])
    }
    return write_plate(path, data, channel_names=("GFP", "RFP"))


def invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_positions_and_transforms_lists(plate):
    result = invoke("positions", plate)
    assert result.exit_code == 0
    assert result.output.split() == ["A/1/0", "A/2/0", "B/1/0"]
    result = invoke("transforms")
    assert result.exit_code == 0
    lines = result.output.strip().splitlines()
    names = [line.split("(")[0] for line in lines]
    assert {"gaussian_blur", "binning", "max_projection", "soft_magnitude"} <= set(names)
    blur = next(line for line in lines if line.startswith("gaussian_blur("))
    assert "sigma_y=2.0" in blur and "Gaussian" in blur


def test_run_writes_plate_with_same_keys(plate, tmp_path):
    out = tmp_path / "out.zarr"
    result = invoke(
        "run",
        plate,
        out,
        "-t",
        "gaussian_blur",
        "-p",
        "sigma_y=1.5",
        "--workers",
        "2",
        "--threads",
        "--no-progress",
    )
    assert result.exit_code == 0, result.output
    assert invoke("positions", out).output.split() == ["A/1/0", "A/2/0", "B/1/0"]
    from scipy import ndimage

    src = read_array(plate / "A/2/0")
    got = read_array(out / "A/2/0")
    # gaussian_blur filters in float32 and rounds once to the input dtype.
    blurred = ndimage.gaussian_filter(src[1, 0].astype(np.float32), (1.0, 1.5, 2.0))
    expected = np.clip(np.rint(blurred), 0, np.iinfo(src.dtype).max).astype(src.dtype)
    np.testing.assert_array_equal(got[1, 0], expected)


def test_run_selection_binning_changes_shape_and_scale(plate, tmp_path):
    out = tmp_path / "bin.zarr"
    result = invoke(
        "run",
        plate,
        out,
        "-t",
        "binning",
        "-p",
        "bin_y=2",
        "-p",
        "bin_x=4",
        "--position",
        "A/*",
        "--channels",
        "1",
        "--times",
        "0,2",
        "--no-progress",
    )
    assert result.exit_code == 0, result.output
    from napari_process_position import open_store, read_position

    assert open_store(out).position_keys == ("A/1/0", "A/2/0")
    info = read_position(out / "A/1/0")
    assert info.shape == (2, 1, 4, 8, 4)
    assert info.channel_names == ("RFP",)
    assert info.scale[2:] == (2.0, 1.0, 2.0)


def test_config_round_trip_and_flags_override(plate, tmp_path):
    cfg = tmp_path / "run.yaml"
    out = tmp_path / "a.zarr"
    result = invoke(
        "run",
        plate,
        out,
        "-t",
        "soft_magnitude",
        "--position",
        "B/1/0",
        "--save-config",
        cfg,
        "--no-progress",
    )
    assert result.exit_code == 0, result.output
    text = cfg.read_text()
    assert "soft_magnitude" in text and "B/1/0" in text
    out2 = tmp_path / "b.zarr"
    result = invoke(
        "run",
        "--config",
        cfg,
        "--no-progress",
        "--workers",
        "2",
        "--threads",
        str(plate),
        str(out2),
    )
    assert result.exit_code == 0, result.output
    assert read_array(out / "B/1/0").tobytes() == read_array(out2 / "B/1/0").tobytes()
    schema = json.loads(invoke("run", "--show-schema").output)
    assert "transform" in schema["properties"]


def _bad_axes_store(tmp_path: Path) -> Path:
    import zarr

    root = tmp_path / "zyx.zarr"
    group = zarr.open_group(str(root), mode="w", zarr_format=3)
    group.attrs["ome"] = {
        "version": "0.5",
        "multiscales": [
            {
                "axes": [{"name": n, "type": "space"} for n in "xyz"],
                "datasets": [
                    {
                        "path": "0",
                        "coordinateTransformations": [{"type": "scale", "scale": [1, 1, 1]}],
                    }
                ],
            }
        ],
    }
    group.create_array("0", shape=(2, 4, 4), dtype="uint8")
    return root


BAD = {
    "missing path": (
        lambda p, t: ["run", t / "nope.zarr", t / "o.zarr", "-t", "gaussian_blur"],
        "does not exist",
    ),
    "not a zarr": (
        lambda p, t: ["run", t, t / "o.zarr", "-t", "gaussian_blur"],
        "not a Zarr store",
    ),
    "zarr not ome": (
        lambda p, t: ["run", _bare(t), t / "o.zarr", "-t", "gaussian_blur"],
        "not OME-Zarr",
    ),
    "missing position": (
        lambda p, t: ["run", p, t / "o.zarr", "-t", "gaussian_blur", "--position", "C/3/0"],
        "C/3/0",
    ),
    "bad axes": (
        lambda p, t: ["run", _bad_axes_store(t), t / "o.zarr", "-t", "gaussian_blur"],
        "expected t/c/z/y/x",
    ),
    "unknown transform": (
        lambda p, t: ["run", p, t / "o.zarr", "-t", "deblurify"],
        "unknown transform 'deblurify'",
    ),
    "unknown parameter": (
        lambda p, t: ["run", p, t / "o.zarr", "-t", "gaussian_blur", "-p", "radius=3"],
        "no parameter 'radius'",
    ),
    "wrong type": (
        lambda p, t: ["run", p, t / "o.zarr", "-t", "gaussian_blur", "-p", "sigma_y=big"],
        "expects float",
    ),
    "bad choice": (
        lambda p, t: ["run", p, t / "o.zarr", "-t", "binning", "-p", "method=max"],
        "one of 'mean', 'sum'",  # the one parameter coercer (transforms.params)
    ),
    "output is input": (lambda p, t: ["run", p, p, "-t", "gaussian_blur"], "is the input"),
    "channel out of range": (
        lambda p, t: ["run", p, t / "o.zarr", "-t", "gaussian_blur", "--channels", "7"],
        "channel 7",
    ),
}


def _bare(tmp_path: Path) -> Path:
    import zarr

    zarr.open_group(str(tmp_path / "bare.zarr"), mode="w")
    return tmp_path / "bare.zarr"


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_clear_line(plate, tmp_path, case):
    build, expected = BAD[case]
    before = tree_digest(plate)
    proc = subprocess.run(
        [*CLI, *map(str, build(plate, tmp_path))], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and expected in lines[0], lines[0]
    assert not (tmp_path / "o.zarr").exists(), "nothing may be written on bad input"
    assert tree_digest(plate) == before


def test_existing_output_is_refused_and_untouched(plate, tmp_path):
    out = tmp_path / "out.zarr"
    assert invoke("run", plate, out, "-t", "max_projection", "--no-progress").exit_code == 0
    before = tree_digest(out)
    proc = subprocess.run(
        [*CLI, "run", str(plate), str(out), "-t", "gaussian_blur"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0 and "already exists" in proc.stderr and "--overwrite" in proc.stderr
    assert tree_digest(out) == before
    assert (
        invoke("run", plate, out, "-t", "gaussian_blur", "--overwrite", "--no-progress").exit_code
        == 0
    )
    assert read_position_shape(out) == (3, 2, 4, 16, 16)


def read_position_shape(out: Path):
    from napari_process_position import read_position

    return read_position(out / "A/1/0").shape


def test_resume_after_sigkill_of_the_caller(tmp_path):
    """Kill the whole run (caller and workers) mid-way; resume gives the uninterrupted result."""
    data = random_tczyx((12, 2, 4, 16, 16), "float32", seed=11, empty=((3, 1),), nan=())
    src = write_plate(tmp_path / "in.zarr", {"A/1/0": data})
    transform = f"{TESTS / 'npp_test_transforms.py'}:slow"
    out = tmp_path / "out.zarr"
    args = [
        *CLI,
        "-v",
        "run",
        str(src),
        str(out),
        "-t",
        transform,
        "-p",
        "seconds=0.15",
        "-w",
        "2",
        "--processes",
        "--no-progress",
    ]
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    # Beside the plate (which the run has not created yet), never inside it.
    progress = tmp_path / ".process-position-progress" / "out.zarr/A/1/0"
    deadline = time.time() + 60
    while time.time() < deadline:
        if progress.exists() and len(list(progress.glob("*.done"))) >= 5:
            break
        time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("the run made no progress: " + proc.stderr.read().decode()[-2000:])
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    done_before = len(list(progress.glob("*.done")))
    assert done_before < 24
    result = subprocess.run([*args, "--resume"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    expected = data.copy()
    expected[3, 1] = 0
    np.testing.assert_array_equal(read_array(out / "A/1/0"), expected)
    # The resumed run really skipped the completed volumes.
    assert result.stderr.count(": resumed") >= done_before - 2


def test_gui_without_napari_message_is_covered_by_help():
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("demo-data", "positions", "transforms", "run", "gui"):
        assert command in result.output


def test_no_progress_prints_a_line_per_volume_only_with_verbose(plate, tmp_path):
    quiet = invoke("run", plate, tmp_path / "q.zarr", "-t", "max_projection", "--no-progress")
    assert quiet.exit_code == 0, quiet.output
    assert ": written" not in quiet.output
    loud = invoke("-v", "run", plate, tmp_path / "v.zarr", "-t", "max_projection", "--no-progress")
    assert loud.exit_code == 0, loud.output
    assert "A/1/0 t=0, c=0: written" in loud.output


def test_summary_of_many_positions_is_compact_unless_asked():
    from rich.console import Console

    from napari_process_position.batch.batch_run import PositionSummary
    from napari_process_position.cli.summary import print_summary

    summaries = [
        PositionSummary(f"A/{i // 16 + 1}/{i % 16}", total=2, written=2, seconds=0.01 * (i % 7))
        for i in range(1536)
    ]
    summaries[100] = PositionSummary("G/7/4", total=2, written=1, error="boom")
    compact = Console(record=True, width=100)
    print_summary(compact, summaries)
    text = compact.export_text()
    assert len(text.splitlines()) < 40, text
    assert "1536 positions" in text and "3071 volumes written" in text and "1 failed" in text
    assert "G/7/4" in text  # every position that did not complete is listed
    full = Console(record=True, width=100)
    print_summary(full, summaries, full=True)
    assert len(full.export_text().splitlines()) > 1536
