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


# -- fake cgroup trees: parents, cgroup v1, the process's own cgroup file ---------------------


def _tree(tmp_path, files: dict[str, str], proc: str):
    """A fake /sys/fs/cgroup (files relative to it) and a fake /proc/self/cgroup."""
    root = tmp_path / "sys-fs-cgroup"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    root.mkdir(exist_ok=True)
    proc_file = tmp_path / "proc-self-cgroup"
    proc_file.write_text(proc)
    return root, proc_file


@pytest.fixture
def one_cpu_free(monkeypatch):
    """No SLURM variable, and an affinity of 64 CPUs, so that only the cgroups limit."""
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)))
    if hasattr(os, "process_cpu_count"):
        monkeypatch.setattr(os, "process_cpu_count", lambda: 64)


def test_v2_quota_of_a_parent_cgroup(tmp_path, one_cpu_free):
    root, proc = _tree(
        tmp_path,
        {
            "cgroup.controllers": "cpu memory\n",
            "job.slice/cpu.max": "300000 100000\n",  # the job: 3 CPUs
            "job.slice/step/cpu.max": "max 100000\n",  # its step: no limit of its own
            "job.slice/step/task/cpu.max": "max 100000\n",
        },
        "0::/job.slice/step/task\n",
    )
    assert available_cpus(root, proc) == 3
    (root / "job.slice/step/cpu.max").write_text("150000 100000\n")  # tighter, in between
    assert available_cpus(root, proc) == 2


def test_v2_quota_of_the_own_cgroup_beats_a_looser_parent(tmp_path, one_cpu_free):
    root, proc = _tree(
        tmp_path,
        {"a/cpu.max": "800000 100000\n", "a/b/cpu.max": "100000 100000\n"},
        "0::/a/b\n",
    )
    assert available_cpus(root, proc) == 1


def test_v1_cfs_quota(tmp_path, one_cpu_free):
    root, proc = _tree(
        tmp_path,
        {
            "cpu,cpuacct/cpu.cfs_quota_us": "-1\n",
            "cpu,cpuacct/cpu.cfs_period_us": "100000\n",
            "cpu,cpuacct/slurm/uid_1/job_7/cpu.cfs_quota_us": "400000\n",
            "cpu,cpuacct/slurm/uid_1/job_7/cpu.cfs_period_us": "100000\n",
            "memory/slurm/uid_1/job_7/memory.limit_in_bytes": "1073741824\n",
        },
        "12:memory:/slurm/uid_1/job_7\n4:cpu,cpuacct:/slurm/uid_1/job_7\n1:name=systemd:/\n",
    )
    assert available_cpus(root, proc) == 4
    (root / "cpu,cpuacct/cpu.cfs_quota_us").write_text("250000\n")  # the root is tighter
    assert available_cpus(root, proc) == 3
    (root / "cpu,cpuacct/cpu.cfs_quota_us").write_text("-1\n")
    (root / "cpu,cpuacct/slurm/uid_1/job_7/cpu.cfs_quota_us").write_text("-1\n")
    assert available_cpus(root, proc) == 64  # no quota anywhere: the affinity


def test_v1_in_a_container_reads_the_mount_itself(tmp_path, one_cpu_free):
    """In a container /proc/self/cgroup names the host's path; the mount is the container's."""
    root, proc = _tree(
        tmp_path,
        {"cpu/cpu.cfs_quota_us": "200000\n", "cpu/cpu.cfs_period_us": "100000\n"},
        "3:cpu:/docker/0123abcd\n",
    )
    assert available_cpus(root, proc) == 2


def test_hybrid_hierarchy_reads_the_unified_mount(tmp_path, one_cpu_free):
    root, proc = _tree(
        tmp_path,
        {"unified/user.slice/cpu.max": "200000 100000\n", "cpu/cpu.cfs_quota_us": "-1\n"},
        "0::/user.slice\n2:cpu:/\n",
    )
    assert available_cpus(root, proc) == 2


def test_malformed_cgroup_files_are_ignored(tmp_path, one_cpu_free):
    root, proc = _tree(
        tmp_path,
        {
            "a/cpu.max": "lots 100000\n",
            "cpu/cpu.cfs_quota_us": "x\n",
            "cpu/cpu.cfs_period_us": "0\n",
        },
        "0::/a\n2:cpu:/\nnot a line\n",
    )
    assert available_cpus(root, proc) == 64
    assert available_cpus(root, tmp_path / "no-such-file") == 64


def test_process_cpu_count_is_a_limit(no_cgroup, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    monkeypatch.setattr(os, "process_cpu_count", lambda: 3, raising=False)
    assert available_cpus(no_cgroup) == 3
