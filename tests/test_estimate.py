"""estimate and --workers auto: one real task measured in a worker, against known footprints."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import numpy as np
import pytest

from conftest import TESTS, random_tczyx, read_array, write_plate
from napari_process_position import RunConfig, available_cpus
from napari_process_position.batch.estimate import estimate_run
from napari_process_position.batch.prepare import prepare_run
from napari_process_position.core.memory import ALLOCATOR_SLACK, SAFETY_MARGIN, rss_bytes

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "napari_process_position.cli"]
HOLD = f"{TESTS / 'npp_test_transforms.py'}:hold_copies"
ALLOCATE = f"{TESTS / 'npp_test_transforms.py'}:allocate"
SHAPE = (2, 2, 32, 256, 256)  # float32: 8 MiB a volume, 16 MiB in float64
F64_VOLUME = 32 * 256 * 256 * 8


@pytest.fixture(scope="module")
def plate(tmp_path_factory):
    path = tmp_path_factory.mktemp("estimate") / "in.zarr"
    data = random_tczyx(SHAPE, "float32", empty=(), nan=())
    return write_plate(path, {"A/1/0": data, "A/2/0": data + 1})


@pytest.fixture
def no_slurm(monkeypatch):
    for name in ("SLURM_MEM_PER_NODE", "SLURM_MEM_PER_CPU", "SLURM_CPUS_PER_TASK"):
        monkeypatch.delenv(name, raising=False)


def _config(plate, **changes):
    return RunConfig(input=str(plate), transform=HOLD, **changes)


def test_peak_is_what_the_transform_holds(plate, no_slurm):
    """6 and 12 float64 copies: each peak, and the difference, within 0.8x-1.6x of the copies."""
    six = estimate_run(_config(plate, params={"copies": 6}))
    twelve = estimate_run(_config(plate, params={"copies": 12}))
    for estimate, copies in ((six, 6), (twelve, 12)):
        ratio = estimate.measurement.task.peak_above / (copies * F64_VOLUME)
        assert 0.8 <= ratio <= 1.6, (copies, ratio)
    extra = twelve.measurement.task.peak_above - six.measurement.task.peak_above
    assert 0.8 <= extra / (6 * F64_VOLUME) <= 1.6
    # a spawned worker holds numpy and tensorstore before any task
    assert 20 * 2**20 < six.measurement.task.baseline < 1024 * 2**20


def test_figures_of_the_whole_selection(plate, no_slurm):
    estimate = estimate_run(_config(plate, params={"copies": 2}, num_workers=2))
    report = estimate.to_json()
    assert report["volumes"] == 8 and report["positions"] == 2
    assert report["volumes_per_position"] == 4
    assert report["workers"] == min(2, available_cpus())
    assert report["volume_bytes"] == F64_VOLUME // 2  # float32 output
    assert report["output_bytes"] == 8 * F64_VOLUME // 2
    assert 0 < report["output_disk_bytes"] <= report["output_bytes"] * 1.1
    assert report["seconds_per_volume"] > 0
    for key in ("cpus", "mem_gb", "time_minutes"):
        assert isinstance(report[key], int) and report[key] >= 1
    per_position = estimate.position_memory_bytes
    task = estimate.measurement.task
    per_worker = task.baseline + int(np.ceil(task.peak_above * SAFETY_MARGIN))
    per_worker += min(task.peak_above, ALLOCATOR_SLACK)
    assert per_position == report["main_baseline_bytes"] + report["workers"] * per_worker
    assert report["mem_gb"] == max(1, -(-per_position // 2**30))
    assert report["advice"].startswith("advice: ")


def test_cli_text_ends_with_resources_and_json_has_the_figures(plate, tmp_path, no_slurm):
    args = [*CLI, "estimate", str(plate), str(tmp_path / "out.zarr"), "-t", HOLD, "-p", "copies=2"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[-1].startswith("RESOURCES:")
    resources = json.loads(lines[-1].removeprefix("RESOURCES:"))
    assert set(resources) == {"cpus", "mem_gb", "time_minutes"}
    assert all(isinstance(v, int) and v >= 1 for v in resources.values())
    assert any(line.startswith("advice: ") for line in lines)
    assert not (tmp_path / "out.zarr").exists()  # the output itself is not written
    assert [p.name for p in tmp_path.iterdir()] == []  # and the scratch output is gone
    proc = subprocess.run([*args, "--json"], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    for key in (
        "task_peak_bytes",
        "seconds_per_volume",
        "volumes",
        "positions",
        "workers",
        "cpus",
        "mem_gb",
        "time_minutes",
    ):
        assert key in report
    assert report["volumes"] == 8 and report["positions"] == 2


def test_workers_auto_picks_every_cpu_when_memory_is_plentiful(plate, tmp_path, no_slurm, caplog):
    config = _config(plate, params={"copies": 2}, output=str(tmp_path / "o.zarr"))
    config = config.model_copy(update={"num_workers": 1})
    auto = RunConfig.from_yaml(config.to_yaml().replace("num_workers: 1", "num_workers: auto"))
    assert auto.auto_workers
    with caplog.at_level(logging.INFO, logger="napari_process_position"):
        batch = prepare_run(auto)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("workers:")]
    assert len(lines) == 1, lines
    assert batch.config.num_workers == available_cpus() and not batch.config.auto_workers
    assert lines[0].startswith(f"workers: {available_cpus()} (CPUs: ")
    if available_cpus() == 2:  # this project's 2-core machine
        assert batch.config.num_workers == 2
    results = list(batch)
    assert len(results) == 8 and not batch.failed
    expected = random_tczyx(SHAPE, "float32", empty=(), nan=())
    np.testing.assert_array_equal(read_array(tmp_path / "o.zarr/A/1/0"), expected)
    # the output records the settings as given: num_workers auto
    assert RunConfig.load(tmp_path / "o.zarr").auto_workers


@pytest.mark.parametrize("use_threads", [True, False])
def test_workers_auto_picks_one_when_slurm_memory_fits_one_task(
    plate, tmp_path, no_slurm, monkeypatch, caplog, use_threads
):
    if available_cpus() < 2:
        pytest.skip("needs 2 CPUs for the memory budget to be what decides")
    measured = estimate_run(_config(plate, params={"copies": 12}, use_threads=use_threads))
    per_worker = measured.choice.per_worker  # task peak with margin (+ a process's baseline)
    room = rss_bytes() + int(1.5 * per_worker)  # room for one, not two
    monkeypatch.setenv("SLURM_MEM_PER_NODE", str(room // 2**20))
    config = _config(
        plate,
        params={"copies": 12},
        output=str(tmp_path / "o.zarr"),
        num_workers="auto",
        use_threads=use_threads,
    )
    with caplog.at_level(logging.INFO, logger="napari_process_position"):
        batch = prepare_run(config)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("workers:")]
    assert batch.config.num_workers == 1, lines
    assert len(lines) == 1 and lines[0].startswith("workers: 1 (memory: ")
    assert "SLURM_MEM_PER_NODE" in lines[0]
    batch.close()


def test_given_workers_above_the_memory_fit_are_reported(plate, no_slurm, monkeypatch):
    monkeypatch.setenv("SLURM_MEM_PER_NODE", str(rss_bytes() // 2**20 + 1))
    estimate = estimate_run(_config(plate, params={"copies": 2}, num_workers=2))
    assert "more than the 0 that fit the memory" in estimate.choice.reason
