"""Batch runs over many positions: preview == batch, failing positions, resume, shared plates."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import TESTS, random_tczyx, read_array, write_plate
from napari_process_position import RunConfig, open_store, read_position
from napari_process_position.batch.prepare import prepare_run
from napari_process_position.core.records import records_dir
from napari_process_position.transforms import get_transform

CLI = [sys.executable, "-m", "napari_process_position.cli"]
KEYS = ["A/1/0", "A/2/0", "B/1/0", "B/2/1"]


def cli(*args, timeout=300, check=True) -> subprocess.CompletedProcess:
    proc = subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def reference(plate: Path, key: str, func, params: dict, channels, times) -> tuple[np.ndarray, set]:
    """Apply the transform to each (t, c) volume directly, no engine: (TCZYX output, skipped)."""
    src = read_array(plate / key)
    out = None
    skipped = set()
    for ti, t in enumerate(times):
        for ci, c in enumerate(channels):
            block = src[t][[c]]
            if not np.any(block) or (block.dtype.kind == "f" and np.isnan(block).all()):
                skipped.add((ti, ci))
                continue
            result = np.asarray(func(block, **params))
            if out is None:
                out = np.zeros((len(times), len(channels), *result.shape[-3:]), result.dtype)
            out[ti, ci] = result.reshape(result.shape[-3:])
    return out, skipped


def assert_matches(out_plate: Path, key: str, expected: np.ndarray, skipped: set) -> None:
    got = read_array(out_plate / key)
    assert got.shape == expected.shape and got.dtype == expected.dtype
    fill = read_position(out_plate / key).fill_value
    for t in range(expected.shape[0]):
        for c in range(expected.shape[1]):
            if (t, c) in skipped:
                assert np.all(got[t, c] == fill), (key, t, c)
            else:
                assert got[t, c].tobytes() == expected[t, c].tobytes(), (key, t, c)


@pytest.fixture(scope="module")
def plate(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("batch") / "in.zarr"
    data = {
        k: random_tczyx((4, 3, 5, 24, 20), "uint16", seed=10 + i, empty=((1, i % 3),))
        for i, k in enumerate(KEYS)
    }
    return write_plate(path, data, channel_names=("DAPI", "GFP", "RFP"))


@pytest.fixture
def transforms_file(tmp_path) -> Path:
    """Transforms in a .py file, referenced as 'file.py:function' (workers load it by path)."""
    path = tmp_path / "batch_transforms.py"
    path.write_text(
        textwrap.dedent("""
        import numpy as np

        def fail_on(czyx, marker: float = 7777.0):
            '''Fails only on data holding the marker value.'''
            if np.any(czyx == marker):
                raise ValueError(f"found the marker value {marker}")
            return np.sqrt(czyx.astype(np.float32)) + 1

        def slow_double(czyx, seconds: float = 0.1):
            import time
            time.sleep(seconds)
            return czyx.astype(np.float32) * 2
    """)
    )
    return path


# -- preview == batch ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("transform", "params"),
    [
        ("gaussian_blur", {"sigma_y": 1.5, "sigma_z": 0.7}),
        ("binning", {"bin_y": 2, "bin_x": 4}),
    ],
)
def test_batch_from_config_reproduces_the_preview_bit_for_bit(plate, tmp_path, transform, params):
    """What the widget previews (output=None, volumes in memory) is what `run --config` writes."""
    preview_config = RunConfig(
        input=str(plate),
        positions=["A/2/0"],
        transform=transform,
        params=params,
        channels=[2, 0],
        times=[3, 0, 2],
        num_workers=2,
        use_threads=True,
    )
    batch_config = preview_config.as_batch(tmp_path / "out.zarr", num_workers=2, use_threads=False)
    config_path = batch_config.save(tmp_path / "run.yaml")
    proc = cli("run", "--config", config_path, "--no-progress")
    assert "done" in proc.stderr

    # Preview every position the batch wrote, the way the widget does: one at a time, no output.
    for key in KEYS:
        preview = prepare_run(preview_config.model_copy(update={"positions": [key]}))
        layout = preview.layouts[key]
        volumes = {}
        skipped = set()
        for got_key, result in preview:
            assert got_key == key
            index = (result.output_time_index, result.output_channels[0])
            if result.status == "skipped":
                skipped.add(index)
            else:
                assert result.status == "preview" and result.volume is not None
                volumes[index] = result.volume
        written = read_array(tmp_path / "out.zarr" / key)
        assert written.shape == tuple(layout.shape)
        assert str(written.dtype) == np.dtype(layout.dtype).name
        fill = read_position(tmp_path / "out.zarr" / key).fill_value
        for (t, c), volume in volumes.items():
            want = volume.reshape(written.shape[2:]).tobytes()
            assert written[t, c].tobytes() == want, (key, t, c)
        for t, c in skipped:
            assert np.all(written[t, c] == fill)
        assert len(volumes) + len(skipped) == layout.shape[0] * layout.shape[1]
        # ... and both equal the transform applied directly.
        spec = get_transform(transform)
        expected, expected_skipped = reference(
            plate, key, spec.func, spec.check_params(params), [2, 0], [3, 0, 2]
        )
        assert skipped == expected_skipped
        assert_matches(tmp_path / "out.zarr", key, expected, expected_skipped)


# -- many positions -----------------------------------------------------------------------


def test_all_positions_interleave_on_a_shared_pool_and_summaries_count(plate, tmp_path):
    config = RunConfig(
        input=str(plate),
        output=str(tmp_path / "out.zarr"),
        transform="soft_magnitude",
        num_workers=2,
    )
    batch = prepare_run(config)
    order = [key for key, _ in batch]
    assert sorted(set(order)) == sorted(KEYS)
    assert len(order) == batch.total == len(KEYS) * 4 * 3
    assert not batch.failed and not batch.errors
    spec = get_transform("soft_magnitude")
    for key in KEYS:
        summary = batch.summaries[key]
        expected, skipped = reference(plate, key, spec.func, {}, [0, 1, 2], [0, 1, 2, 3])
        assert summary.skipped == len(skipped) == 1
        assert summary.written == summary.total - len(skipped)
        assert summary.failed == 0 and summary.seconds > 0
        assert_matches(tmp_path / "out.zarr", key, expected, skipped)
    assert open_store(tmp_path / "out.zarr").position_keys == tuple(KEYS)


def test_a_failing_position_is_reported_with_its_key_and_others_complete(tmp_path, transforms_file):
    data = {
        k: random_tczyx((3, 2, 4, 16, 16), "float32", seed=i, empty=(), nan=())
        for i, k in enumerate(KEYS)
    }
    data["A/2/0"][2, 1, 1, 3, 3] = 7777.0  # only this position's (t=2, c=1) has the marker
    src = write_plate(tmp_path / "in.zarr", data)
    out = tmp_path / "out.zarr"
    transform = f"{transforms_file}:fail_on"
    proc = cli("run", src, out, "-t", transform, "-w", "2", "--processes", check=False)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    error_lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, proc.stderr
    assert "A/2/0" in error_lines[0] and "t=2" in error_lines[0] and "marker" in error_lines[0]
    assert "--resume" in proc.stderr

    from importlib import util

    spec = util.spec_from_file_location("bt", transforms_file)
    module = util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for key in KEYS:
        if key != "A/2/0":
            expected, skipped = reference(src, key, module.fail_on, {}, [0, 1], [0, 1, 2])
            assert_matches(out, key, expected, skipped)

    # Fix the input, resume: only the failed position's missing volumes run.

    arr = read_position(src / "A/2/0").open_array(write=True)
    arr[2, 1, 1, 3, 3] = 1.0
    data["A/2/0"][2, 1, 1, 3, 3] = 1.0
    proc = cli(
        "-v",
        "run",
        src,
        out,
        "-t",
        transform,
        "-w",
        "2",
        "--processes",
        "--resume",
        "--no-progress",
    )
    resumed = {key: proc.stderr.count(f"{key} ") for key in KEYS}
    lines = [line for line in proc.stderr.splitlines() if ": resumed" in line]
    for key in KEYS:
        count = sum(1 for line in lines if key in line)
        assert count == 6 if key != "A/2/0" else count < 6, (key, resumed)
    for key in KEYS:
        expected, skipped = reference(src, key, module.fail_on, {}, [0, 1], [0, 1, 2])
        assert_matches(out, key, expected, skipped)


def test_resume_across_positions_after_sigkill(tmp_path):
    """Kill the whole batch (caller and workers) mid-way; resume equals an uninterrupted run."""
    data = {
        k: random_tczyx((4, 2, 3, 12, 12), "float32", seed=20 + i, empty=(), nan=())
        for i, k in enumerate(KEYS[:3])
    }
    src = write_plate(tmp_path / "in.zarr", data)
    out = tmp_path / "out.zarr"
    transform = f"{TESTS / 'npp_test_transforms.py'}:slow"
    args = [
        *CLI,
        "-v",
        "run",
        str(src),
        str(out),
        "-t",
        transform,
        "-p",
        "seconds=0.12",
        "-w",
        "2",
        "--processes",
        "--no-progress",
    ]
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    records = lambda: list(Path(records_dir(out)).glob("*/*/*/*.done"))  # noqa: E731
    deadline = time.time() + 90
    try:
        while time.time() < deadline and len(records()) < 10:
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    done_before = len(records())
    assert 10 <= done_before < 24, done_before
    result = subprocess.run([*args, "--resume"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count(": resumed") >= done_before - 2
    for key, array in data.items():
        np.testing.assert_array_equal(read_array(out / key), array)


# -- one job per position into one plate ---------------------------------------------------


def _metadata_files(root: Path) -> dict[str, tuple[bytes, int]]:
    names = {"zarr.json", ".zattrs", ".zgroup", ".zarray"}
    out = {}
    for path in root.rglob("*"):
        if path.name in names and ".process-position-progress" not in path.parts:
            # Array metadata and group metadata only (not chunk files).
            out[str(path.relative_to(root))] = (path.read_bytes(), path.stat().st_mtime_ns)
    return out


def _spawn_jobs(args_per_job: list[list[str]]) -> list[subprocess.CompletedProcess]:
    procs = [
        subprocess.Popen(
            [*CLI, *map(str, a)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for a in args_per_job
    ]
    results = []
    try:
        for p in procs:
            stdout, stderr = p.communicate(timeout=300)
            results.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return results


def test_init_output_then_concurrent_per_position_jobs(plate, tmp_path):
    out = tmp_path / "shared.zarr"
    cfg = tmp_path / "job.yaml"
    proc = cli(
        "init-output",
        plate,
        out,
        "-t",
        "gaussian_blur",
        "-p",
        "sigma_y=1.2",
        "--channels",
        "0,2",
        "--save-config",
        cfg,
    )
    assert "4 position(s)" in proc.stdout and "--position KEY" in proc.stdout
    assert open_store(out).position_keys == tuple(KEYS)
    saved = RunConfig.load(cfg)
    assert saved.resume and saved.positions is None and saved.output == str(out)
    before = _metadata_files(out)
    assert any(k.endswith("zarr.json") for k in before) and len(before) >= 1 + 2 + 2 + 4 * 2
    time.sleep(0.05)  # a rewrite would show as a new mtime

    # One job per position, all at once, as a SLURM job array would start them.
    results = _spawn_jobs(
        [["run", "--config", cfg, "--position", key, "-w", "1", "--no-progress"] for key in KEYS]
    )
    for r in results:
        assert r.returncode == 0, r.stderr[-3000:]
    assert _metadata_files(out) == before, "per-position jobs must not rewrite plate metadata"
    spec = get_transform("gaussian_blur")
    for key in KEYS:
        expected, skipped = reference(
            plate, key, spec.func, spec.check_params({"sigma_y": 1.2}), [0, 2], [0, 1, 2, 3]
        )
        assert_matches(out, key, expected, skipped)

    # A job that runs again (requeued) finds its volumes done and rewrites nothing.
    again = cli("-v", "run", "--config", cfg, "--position", "B/1/0", "--no-progress")
    assert again.stderr.count(": resumed") == 4 * 2


def test_concurrent_jobs_without_init_output_still_build_one_plate(plate, tmp_path):
    """Jobs that each create-or-join the plate (--resume) end with every position listed."""
    out = tmp_path / "raced.zarr"
    results = _spawn_jobs(
        [
            [
                "run",
                plate,
                out,
                "-t",
                "max_projection",
                "--position",
                key,
                "--resume",
                "-w",
                "1",
                "--no-progress",
            ]
            for key in KEYS
        ]
    )
    for r in results:
        assert r.returncode == 0, r.stderr[-3000:]
    store = open_store(out)
    assert sorted(store.position_keys) == sorted(KEYS)
    plate_meta = json.loads((out / "zarr.json").read_text())["attributes"]["ome"]["plate"]
    assert sorted(w["path"] for w in plate_meta["wells"]) == ["A/1", "A/2", "B/1", "B/2"]
    well = json.loads((out / "B/2/zarr.json").read_text())["attributes"]["ome"]["well"]
    assert [i["path"] for i in well["images"]] == ["1"]
    assert not list(tmp_path.glob(".raced.zarr.creating-*")), "temporary plates are cleaned up"
    spec = get_transform("max_projection")
    for key in KEYS:
        expected, skipped = reference(plate, key, spec.func, {}, [0, 1, 2], [0, 1, 2, 3])
        assert_matches(out, key, expected, skipped)


def test_init_output_refuses_an_existing_or_different_plate(plate, tmp_path):
    out = tmp_path / "o.zarr"
    cli("init-output", plate, out, "-t", "max_projection")
    before = _metadata_files(out)
    proc = cli("init-output", plate, out, "-t", "max_projection", check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and len(lines) == 1 and "already exists" in lines[0]
    # Joining with --resume checks the layout: same transform is fine, another shape is refused.
    cli("init-output", plate, out, "-t", "max_projection", "--resume")
    proc = cli("run", plate, out, "-t", "binning", "-p", "bin_y=2", "--resume", check=False)
    lines = proc.stderr.strip().splitlines()
    assert (
        proc.returncode != 0 and len(lines) == 1 and "cannot hold this run's output" in lines[0]
    ), proc.stderr
    assert _metadata_files(out) == before
