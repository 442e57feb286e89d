"""How much memory this process may still use, and how many workers fit in it.

The budget is the smallest headroom of every limit that applies: the cgroup
v2 ``memory.max`` of the process's cgroup and of each parent, the cgroup v1
``memory.limit_in_bytes``, the SLURM job's ``SLURM_MEM_PER_NODE`` or
``SLURM_MEM_PER_CPU`` (MiB, as SLURM sets them), and the machine's
``MemAvailable``. Headroom is what is not used yet: a cgroup's limit minus
its working set (usage less inactive file cache, which the kernel reclaims
before it kills), SLURM's limit minus this process's resident memory,
``MemAvailable`` as the kernel reports it.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from napari_process_position.core.cgroups import cgroup_dirs, read_int, read_stat
from napari_process_position.core.sizes import size_text

__all__ = [
    "ALLOCATOR_SLACK",
    "LARGE_BLOCK",
    "MAX_MMAP_THRESHOLD",
    "SAFETY_MARGIN",
    "MemoryBudget",
    "WorkerChoice",
    "choose_workers",
    "large_blocks_unmapped",
    "memory_budget",
    "memory_budgets",
    "rss_bytes",
    "set_malloc_thresholds",
    "trim_heap",
    "unmap_large_blocks",
]

#: Each task is counted as its measured peak times this (a volume that compresses
#: differently, a transform whose work depends on the data).
SAFETY_MARGIN = 1.25

#: A worker that has run a few tasks holds more than its first task needed: glibc keeps
#: freed blocks under its mmap threshold (at most 32 MiB each) for reuse instead of
#: returning them. Each worker is counted with up to this much more (its task's peak at
#: most): measured, a worker's resident peak grew by about one 8 MiB-volume task's peak
#: over its first eight tasks, then stayed.
ALLOCATOR_SLACK = 64 * 2**20

#: cgroup v1 writes "no limit" as a number near 2**63.
_UNLIMITED = 2**60

MEMINFO = Path("/proc/meminfo")


@dataclass(frozen=True)
class MemoryBudget:
    """One memory limit that applies to this process, and what is left under it.

    Attributes
    ----------
    available
        Bytes that can still be allocated under this limit now.
    source
        Which limit it is, in words (``SLURM_MEM_PER_NODE=4000``).
    limit
        The limit itself in bytes (None for ``MemAvailable``).
    """

    available: int
    source: str
    limit: int | None = None


def rss_bytes() -> int:
    """Return this process's resident memory now, in bytes (0 when it cannot be read).

    Returns
    -------
    int
    """
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return 0


def trim_heap() -> bool:
    """Give the heap memory freed by this process back to the system (glibc's ``malloc_trim``).

    glibc keeps what threads free in per-thread heaps: a long-lived process
    (napari) that ran tasks in threads keeps the peak of their volumes resident
    after they are freed, until it trims. Elsewhere (no glibc) this does nothing.

    Returns
    -------
    bool
        True when memory was given back.
    """
    import ctypes

    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError, TypeError):
        return False
    return bool(trim(0))


#: glibc's starting mmap threshold: blocks of at least this many bytes are mapped apart
#: from the heap, and given back to the system when freed.
LARGE_BLOCK = 128 * 2**10
#: glibc's upper bound for its dynamic mmap threshold (blocks larger are always mapped).
MAX_MMAP_THRESHOLD = 32 * 2**20

#: ``mallopt``'s parameter numbers (glibc's ``M_TRIM_THRESHOLD`` and ``M_MMAP_THRESHOLD``).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def set_malloc_thresholds(mmap_threshold: int, trim_threshold: int) -> bool:
    """Fix glibc's mmap threshold and trim threshold in this process (``mallopt``).

    Either one set turns glibc's dynamic threshold off for good. Elsewhere (no
    glibc) this does nothing.

    Returns
    -------
    bool
        True when both were set.
    """
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold))) and bool(
        mallopt(_M_TRIM_THRESHOLD, int(trim_threshold))
    )


def unmap_large_blocks(threshold: int = LARGE_BLOCK) -> bool:
    """Keep blocks of ``threshold`` bytes and more out of glibc's heaps, in this process.

    glibc maps a large block apart and unmaps it when freed, but once a block
    under 32 MiB that was mapped apart is freed, it raises that threshold to the
    block's size: from then on such blocks (tensorstore's chunk buffers, a read
    plane) come from per-thread heaps, which keep them resident after they are
    freed. In napari a run in threads peaked 0.8-1.4 GiB above the same run from
    the command line (#17: a 10.7 GB position of 1 GiB volumes; 0.2 GiB with the
    threshold fixed). Blocks already in a heap stay there.

    Returns
    -------
    bool
        True when the thresholds were set.
    """
    return set_malloc_thresholds(threshold, threshold)


@contextlib.contextmanager
def large_blocks_unmapped(enabled: bool = True) -> Iterator[None]:
    """Within the block, keep blocks of 128 KiB and more out of glibc's heaps (see above).

    For a run of large volumes in a long-lived process (the widget's): its
    volumes' temporaries are mapped apart anyway, and what it frees goes back
    at once instead of staying in the heaps. A fixed threshold that low makes
    smaller arrays pay page faults anew (numpy passes over a 2 MiB array ran
    20x slower here), so afterwards the thresholds go up to glibc's upper
    values, as a long-lived process reaches by itself (:func:`trim_heap` then
    gives back what the heaps hold). ``enabled=False`` changes nothing.
    """
    if not enabled:
        yield
        return
    unmap_large_blocks()
    try:
        yield
    finally:
        set_malloc_thresholds(MAX_MMAP_THRESHOLD, 2 * MAX_MMAP_THRESHOLD)


def _cgroup_budgets(cgroup_root: Path | None, proc_cgroup: Path | None) -> list[MemoryBudget]:
    budgets = []
    for folder in cgroup_dirs("memory", cgroup_root, proc_cgroup):
        if (folder / "memory.max").exists():  # v2
            limit = read_int(folder / "memory.max")
            usage = read_int(folder / "memory.current")
            inactive = read_stat(folder / "memory.stat").get("inactive_file", 0)
            name = "memory.max"
        else:  # v1
            limit = read_int(folder / "memory.limit_in_bytes")
            usage = read_int(folder / "memory.usage_in_bytes")
            inactive = read_stat(folder / "memory.stat").get("total_inactive_file", 0)
            name = "memory.limit_in_bytes"
        if limit is None or limit >= _UNLIMITED:
            continue
        used = max(0, (usage or 0) - inactive)
        budgets.append(MemoryBudget(max(0, limit - used), f"cgroup {name} of {folder}", limit))
    return budgets


def _slurm_budget() -> MemoryBudget | None:
    per_node = os.environ.get("SLURM_MEM_PER_NODE", "").strip()
    per_cpu = os.environ.get("SLURM_MEM_PER_CPU", "").strip()
    if per_node.isdigit() and int(per_node) > 0:
        limit, source = int(per_node) * 2**20, f"SLURM_MEM_PER_NODE={per_node}"
    elif per_cpu.isdigit() and int(per_cpu) > 0:
        cpus_text = (
            os.environ.get("SLURM_CPUS_ON_NODE") or os.environ.get("SLURM_CPUS_PER_TASK") or ""
        )
        if cpus_text.strip().isdigit():
            cpus = int(cpus_text)
        else:
            from napari_process_position.core.budget import available_cpus

            cpus = available_cpus()
        limit = int(per_cpu) * 2**20 * max(1, cpus)
        source = f"SLURM_MEM_PER_CPU={per_cpu} x {cpus} CPUs"
    else:
        return None
    return MemoryBudget(max(0, limit - rss_bytes()), source, limit)


def _meminfo_budget(meminfo: Path) -> MemoryBudget | None:
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return MemoryBudget(int(line.split()[1]) * 1024, "MemAvailable of this machine")
    except (OSError, ValueError, IndexError):
        return None
    return None


def memory_budgets(
    cgroup_root: str | os.PathLike[str] | None = None,
    proc_cgroup: str | os.PathLike[str] | None = None,
    meminfo: str | os.PathLike[str] | None = None,
) -> list[MemoryBudget]:
    """Return every memory limit that applies to this process, with its headroom.

    Parameters
    ----------
    cgroup_root, proc_cgroup
        The cgroup mount and the process's cgroup file (tests give fake ones).
    meminfo
        The ``/proc/meminfo`` to read.

    Returns
    -------
    list of MemoryBudget
        Possibly empty (no limit can be read: not Linux).

    Notes
    -----
    Never raises: an unreadable or malformed limit is ignored.
    """
    root = Path(cgroup_root) if cgroup_root is not None else None
    proc = Path(proc_cgroup) if proc_cgroup is not None else None
    budgets = _cgroup_budgets(root, proc)
    for extra in (_slurm_budget(), _meminfo_budget(Path(meminfo) if meminfo else MEMINFO)):
        if extra is not None:
            budgets.append(extra)
    return budgets


def memory_budget(
    cgroup_root: str | os.PathLike[str] | None = None,
    proc_cgroup: str | os.PathLike[str] | None = None,
    meminfo: str | os.PathLike[str] | None = None,
) -> MemoryBudget | None:
    """Return the tightest memory limit of :func:`memory_budgets` (None when none is known).

    Returns
    -------
    MemoryBudget or None

    Notes
    -----
    Never raises.
    """
    budgets = memory_budgets(cgroup_root, proc_cgroup, meminfo)
    return min(budgets, key=lambda b: b.available) if budgets else None


@dataclass(frozen=True)
class WorkerChoice:
    """How many workers fit, and the one line that says why.

    Attributes
    ----------
    workers
        At least 1.
    by_cpus, by_memory
        What each budget alone allows (``by_memory`` None when no memory
        budget is known).
    per_worker
        Bytes counted for each worker: the task's peak times
        :data:`SAFETY_MARGIN`, plus up to :data:`ALLOCATOR_SLACK`, plus a
        process worker's own baseline.
    reason
        ``workers: 1 (memory: 512 MiB budget, 330 MiB per task)``.
    """

    workers: int
    by_cpus: int
    by_memory: int | None
    per_worker: int
    reason: str

    def given(self, asked: int, tasks: int) -> WorkerChoice:
        """Return the choice when ``asked`` workers are given (``--workers N``) instead.

        Capped by the CPUs and the tasks; the reason notes a count beyond what
        fits the memory.
        """
        workers = max(1, min(asked, self.by_cpus, tasks))
        note = ""
        if self.by_memory is not None and workers > max(1, self.by_memory):
            note = f"; more than the {self.by_memory} that fit the memory"
        reason = f"workers: {workers} (given: --workers {asked}{note})"
        return WorkerChoice(workers, self.by_cpus, self.by_memory, self.per_worker, reason)


def choose_workers(
    cpus: int,
    budget: MemoryBudget | None,
    task_peak: int,
    *,
    use_threads: bool,
    worker_baseline: int = 0,
    tasks: int | None = None,
) -> WorkerChoice:
    """Return the largest worker count that fits both the CPUs and the memory.

    Parameters
    ----------
    cpus
        CPUs available (:func:`available_cpus`).
    budget
        The memory budget (:func:`memory_budget`), or None when unknown.
    task_peak
        Peak memory one task holds above its worker's baseline, in bytes.
    use_threads
        Threads share this process: each worker adds one task's peak.
        Processes each add their own baseline too.
    worker_baseline
        A spawned worker's own resident memory before its first task.
    tasks
        The number of tasks, when fewer workers would do.

    Returns
    -------
    WorkerChoice

    Raises
    ------
    ValueError
        ``cpus`` below 1 (a programming error; :func:`available_cpus` never returns it).
    """
    if cpus < 1:
        raise ValueError(f"cpus must be at least 1, not {cpus}")
    task_peak = max(0, task_peak)
    per_worker = math.ceil(task_peak * SAFETY_MARGIN) + min(task_peak, ALLOCATOR_SLACK)
    kind = "task"
    if not use_threads:
        per_worker += max(0, worker_baseline)
        kind = "worker process"
    per_worker = max(1, per_worker)
    by_memory = budget.available // per_worker if budget is not None else None
    workers = cpus if by_memory is None else min(cpus, by_memory)
    if by_memory is not None and by_memory < cpus:
        reason = (
            f"memory: {size_text(budget.available if budget else 0)} budget, "
            f"{size_text(per_worker)} per {kind}; {budget.source if budget else ''}"
        )
        if by_memory < 1:
            reason += "; even one may not fit"
    else:
        memory = (
            f"memory fits {by_memory} at {size_text(per_worker)} per {kind}"
            if by_memory is not None
            else "memory budget unknown"
        )
        reason = f"CPUs: {cpus} available; {memory}"
    if tasks is not None and 0 < tasks < max(1, workers):
        workers = tasks
        reason = f"tasks: {tasks} to run; {reason}"
    workers = max(1, workers)
    return WorkerChoice(workers, cpus, by_memory, per_worker, f"workers: {workers} ({reason})")
