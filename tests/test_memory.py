"""Memory budgets (fake cgroup trees, SLURM variables, /proc/meminfo), sizes, choose_workers."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import numpy as np
import pytest

from napari_process_position.core.errors import InvalidArgumentError
from napari_process_position.core.memory import (
    SAFETY_MARGIN,
    MemoryBudget,
    choose_workers,
    memory_budget,
    memory_budgets,
    rss_bytes,
)
from napari_process_position.core.peak import PeakMeter
from napari_process_position.core.sizes import parse_size, size_text

MiB, GiB = 2**20, 2**30


@pytest.fixture
def no_slurm(monkeypatch):
    for name in ("SLURM_MEM_PER_NODE", "SLURM_MEM_PER_CPU", "SLURM_CPUS_ON_NODE"):
        monkeypatch.delenv(name, raising=False)


def _tree(tmp_path, files: dict[str, str], proc: str, meminfo_kb: int = 64 * 2**20):
    root = tmp_path / "cg"
    root.mkdir()
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (tmp_path / "cgroup").write_text(proc)
    (tmp_path / "meminfo").write_text(
        f"MemTotal:       {2 * meminfo_kb} kB\nMemFree: 1 kB\nMemAvailable:   {meminfo_kb} kB\n"
    )
    return root, tmp_path / "cgroup", tmp_path / "meminfo"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8GB", 8 * 10**9),
        ("8gb", 8 * 10**9),
        ("512MiB", 512 * MiB),
        ("2G", 2 * 10**9),
        ("1.5 GiB", int(1.5 * GiB)),
        ("1000000", 10**6),
        (4096, 4096),
        ("64k", 64000),
        ("3Ki", 3072),
    ],
)
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["", "GB", "8 lots", "-1GB", "0", "1e9", True, "8GBB"])
def test_parse_size_refuses_with_the_value_and_examples(bad):
    with pytest.raises(InvalidArgumentError) as info:
        parse_size(bad, "--memory-limit")
    assert "--memory-limit" in str(info.value)


def test_size_text():
    assert size_text(512 * MiB) == "512 MiB" and size_text(3 * GiB // 2) == "1.5 GiB"


def test_v2_memory_max_of_a_parent_less_its_working_set(tmp_path, no_slurm):
    root, proc, meminfo = _tree(
        tmp_path,
        {
            "cgroup.controllers": "memory\n",
            "job/memory.max": f"{4 * GiB}\n",
            "job/memory.current": f"{3 * GiB}\n",
            "job/memory.stat": f"anon 1\ninactive_file {GiB}\nactive_file 5\n",
            "job/step/memory.max": "max\n",
            "job/step/memory.current": f"{GiB}\n",
        },
        "0::/job/step\n",
    )
    budgets = memory_budgets(root, proc, meminfo)
    assert [b.limit for b in budgets] == [4 * GiB, None]  # 'max' is no limit
    tight = memory_budget(root, proc, meminfo)
    # 4 GiB limit, 3 GiB used of which 1 GiB reclaimable cache: 2 GiB left
    assert tight.available == 2 * GiB and "memory.max" in tight.source and "job" in tight.source


def test_v1_memory_limit_in_bytes(tmp_path, no_slurm):
    root, proc, meminfo = _tree(
        tmp_path,
        {
            "memory/memory.limit_in_bytes": "9223372036854771712\n",  # unlimited
            "memory/slurm/job_3/memory.limit_in_bytes": f"{GiB}\n",
            "memory/slurm/job_3/memory.usage_in_bytes": f"{300 * MiB}\n",
            "memory/slurm/job_3/memory.stat": f"cache 5\ntotal_inactive_file {100 * MiB}\n",
        },
        "7:memory:/slurm/job_3\n0::/\n",
    )
    tight = memory_budget(root, proc, meminfo)
    assert tight.available == GiB - 200 * MiB and "limit_in_bytes" in tight.source


def test_slurm_mem_per_node_and_per_cpu(tmp_path, no_slurm, monkeypatch):
    root, proc, meminfo = _tree(tmp_path, {}, "0::/\n")
    assert memory_budget(root, proc, meminfo).source == "MemAvailable of this machine"
    monkeypatch.setenv("SLURM_MEM_PER_NODE", "2000")  # MiB, as SLURM writes it
    tight = memory_budget(root, proc, meminfo)
    assert tight.limit == 2000 * MiB and tight.source == "SLURM_MEM_PER_NODE=2000"
    assert 0 < tight.available <= 2000 * MiB - rss_bytes() + 64 * MiB
    monkeypatch.delenv("SLURM_MEM_PER_NODE")
    monkeypatch.setenv("SLURM_MEM_PER_CPU", "1000")
    monkeypatch.setenv("SLURM_CPUS_ON_NODE", "3")
    assert memory_budget(root, proc, meminfo).limit == 3000 * MiB


def test_meminfo_is_the_machine_budget(tmp_path, no_slurm):
    root, proc, meminfo = _tree(tmp_path, {}, "0::/\n", meminfo_kb=123456)
    assert memory_budget(root, proc, meminfo) == MemoryBudget(
        123456 * 1024, "MemAvailable of this machine"
    )


def test_choose_workers_threads_share_processes_add_their_baseline():
    budget = MemoryBudget(1000 * MiB, "test")
    threads = choose_workers(8, budget, 200 * MiB, use_threads=True)
    assert threads.workers == 3  # 1000 / (200 * 1.25 + 64)
    assert threads.reason == "workers: 3 (memory: 1000 MiB budget, 314 MiB per task; test)"
    processes = choose_workers(8, budget, 200 * MiB, use_threads=False, worker_baseline=150 * MiB)
    assert processes.workers == 2  # 1000 / (314 + 150)
    small = choose_workers(8, budget, 10 * MiB, use_threads=True)
    assert small.per_worker == int(10 * MiB * SAFETY_MARGIN) + 10 * MiB  # slack: its own peak
    assert "per worker process" in processes.reason
    roomy = choose_workers(2, MemoryBudget(64 * GiB, "test"), 200 * MiB, use_threads=True)
    assert roomy.workers == 2 and roomy.reason.startswith("workers: 2 (CPUs: 2 available")
    none_fit = choose_workers(4, MemoryBudget(100 * MiB, "test"), 200 * MiB, use_threads=True)
    assert none_fit.workers == 1 and "even one may not fit" in none_fit.reason
    few_tasks = choose_workers(8, None, 200 * MiB, use_threads=True, tasks=3)
    assert few_tasks.workers == 3
    assert SAFETY_MARGIN > 1


def test_peak_meter_sees_numpy_buffers():
    n = 96 * MiB // 8
    with PeakMeter() as meter:
        held = [np.ones(n) for _ in range(2)]  # 192 MiB, every page touched
        del held
    assert 0.9 < meter.peak_above / (192 * MiB) < 1.3


_MMAPPED_AFTER = """
import ctypes, sys
import numpy as np
from napari_process_position.core.memory import large_blocks_unmapped, unmap_large_blocks

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
        "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2

def mapped_apart():
    # Larger than all the free space the heaps hold: a block the heaps can serve from
    # what they hold never asks for an mmap, whatever the threshold.
    info = libc.mallinfo2()
    nbytes = max(2 * 2**20, info.fordblks + 2**20)
    if nbytes >= RAISED:
        print("skip: the heaps hold", info.fordblks, "free bytes")
        sys.exit(0)
    block = np.ones(nbytes, np.uint8)  # (touched, so it is really allocated)
    after = libc.mallinfo2().hblks
    del block
    return after - info.hblks

RAISED = 31 * 2**20
big = np.ones(RAISED, np.uint8)
del big  # freeing a mapped block under 32 MiB raises glibc's threshold to its size
if sys.argv[1] == "fix":
    assert unmap_large_blocks()
    print(mapped_apart())
elif sys.argv[1] in ("within", "off"):
    with large_blocks_unmapped(sys.argv[1] == "within"):
        print(mapped_apart())
    print(mapped_apart())  # after: glibc's upper thresholds, heaped again
else:
    print(mapped_apart())
"""


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="glibc's allocator only",
)
def test_unmap_large_blocks_keeps_freed_buffers_out_of_the_heap():
    """After a freed 31 MiB block smaller ones are heaped; unmap_large_blocks maps them apart."""
    # glibc's own defaults: a Dask nanny started earlier in this process set
    # MALLOC_TRIM_THRESHOLD_ in os.environ, which turns the dynamic threshold off
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_"))}
    said = {}
    for case in ("plain", "fix", "within", "off"):
        out = subprocess.run(
            [sys.executable, "-c", _MMAPPED_AFTER, case],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        )
        if out.stdout.startswith("skip"):
            pytest.skip(out.stdout.strip())
        said[case] = [int(n) for n in out.stdout.split()]
    assert said["plain"] == [0]  # glibc raised its threshold: the 2 MiB block was heaped
    assert said["fix"] == [1]  # a fixed threshold: mapped apart, so unmapped when freed
    assert said["within"] == [1, 0]  # mapped apart within the block, heaped after it
    assert said["off"] == [0, 0]
