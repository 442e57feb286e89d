"""available_cpus(): SLURM_CPUS_PER_TASK, cgroup v2 cpu.max and affinity, and worker capping."""

from __future__ import annotations

import logging
import os

import pytest

import npp_test_transforms as tt
from conftest import random_tczyx, write_plate
from napari_process_position import available_cpus, stream_position


@pytest.fixture
def no_cgroup(tmp_path, monkeypatch):
    """A fake cgroup root with no CPU limit, and no SLURM variable."""
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    (tmp_path / "cg").mkdir()
    (tmp_path / "cg" / "cpu.max").write_text("max 100000\n")
    return tmp_path / "cg"


def test_affinity_is_the_default_limit(no_cgroup):
    assert available_cpus(no_cgroup) == len(os.sched_getaffinity(0))


def test_slurm_cpus_per_task(no_cgroup, monkeypatch):
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    assert available_cpus(no_cgroup) == 1
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "not-a-number")
    assert available_cpus(no_cgroup) == len(os.sched_getaffinity(0))


def test_slurm_larger_than_affinity_is_capped(no_cgroup, monkeypatch):
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "128")
    assert available_cpus(no_cgroup) == len(os.sched_getaffinity(0))


def test_cgroup_quota(tmp_path, monkeypatch):
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    root = tmp_path / "cg"
    root.mkdir()
    (root / "cpu.max").write_text("150000 100000\n")  # 1.5 CPUs -> 2
    assert available_cpus(root) == min(2, len(os.sched_getaffinity(0)))
    (root / "cpu.max").write_text("50000 100000\n")  # half a CPU -> 1
    assert available_cpus(root) == 1


def test_affinity_limit(no_cgroup, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert available_cpus(no_cgroup) == 1


def test_workers_are_capped_and_logged(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    data = random_tczyx((4, 1, 2, 8, 8), "float32", empty=(), nan=())
    src = write_plate(tmp_path / "in.zarr", {"A/1/0": data})
    with caplog.at_level(logging.INFO, logger="napari_process_position"):
        run = stream_position(tt.scale_offset, src / "A/1/0", num_workers=8)
    assert run.num_workers == 1 and run.mode == "serial"
    assert "instead of 8" in caplog.text
    monkeypatch.delenv("SLURM_CPUS_PER_TASK")
    run = stream_position(tt.scale_offset, src / "A/1/0", num_workers=64, use_threads=True)
    assert run.num_workers <= min(4, available_cpus())


def test_inner_threads_times_workers_within_budget(tmp_path, monkeypatch):
    data = random_tczyx((4, 1, 2, 8, 8), "float32", empty=(), nan=())
    src = write_plate(tmp_path / "in.zarr", {"A/1/0": data})
    run = stream_position(tt.scale_offset, src / "A/1/0", num_workers=2, use_threads=True)
    assert run.num_workers * run.inner_threads <= available_cpus()


def test_process_workers_limit_blas_threads(tmp_path, monkeypatch):
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    if available_cpus() < 2:
        pytest.skip("needs 2 CPUs to run 2 process workers")
    data = random_tczyx((2, 1, 2, 4, 4), "float32", empty=(), nan=())
    src = write_plate(tmp_path / "in.zarr", {"A/1/0": data})
    run = stream_position(tt.blas_threads, src / "A/1/0", num_workers=2)
    values = {float(r.volume.max()) for r in run}
    assert values and max(values) >= 1
    assert max(values) <= available_cpus() // 2
