"""How many CPUs this process may really use."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

from napari_process_position.core.cgroups import cgroup_dirs, read_int

__all__ = ["available_cpus"]

log = logging.getLogger(__name__)


def _slurm_cpus() -> int | None:
    value = os.environ.get("SLURM_CPUS_PER_TASK", "").strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    if value:
        log.warning("ignoring SLURM_CPUS_PER_TASK=%r: not a positive integer", value)
    return None


def _quota(quota: int, period: int) -> int | None:
    if quota <= 0 or period <= 0:  # -1: no quota (cgroup v1)
        return None
    return max(1, math.ceil(quota / period))


def _dir_cpus(folder: Path) -> int | None:
    """Return the CPU quota a cgroup folder sets: v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``."""
    try:
        fields = (folder / "cpu.max").read_text().split()
    except OSError:
        fields = []
    if len(fields) >= 2 and fields[0] != "max":
        try:
            return _quota(int(fields[0]), int(fields[1]))
        except ValueError:
            return None
    quota = read_int(folder / "cpu.cfs_quota_us")
    period = read_int(folder / "cpu.cfs_period_us")
    if quota is not None and period is not None:
        return _quota(quota, period)
    return None


def _cgroup_cpus(cgroup_root: Path | None, proc_cgroup: Path | None) -> int | None:
    """Return the smallest CPU quota of this cgroup and its parents (v2, v1), or None."""
    limits = [
        n for n in map(_dir_cpus, cgroup_dirs("cpu", cgroup_root, proc_cgroup)) if n is not None
    ]
    return min(limits) if limits else None


def _affinity_cpus() -> int | None:
    try:
        return len(os.sched_getaffinity(0)) or None
    except (AttributeError, OSError):
        return None


def _process_cpus() -> int | None:
    """``os.process_cpu_count()`` (Python 3.13+: affinity, and ``-X cpu_count``)."""
    count = getattr(os, "process_cpu_count", None)
    return count() if callable(count) else None


def available_cpus(
    cgroup_root: str | os.PathLike[str] | None = None,
    proc_cgroup: str | os.PathLike[str] | None = None,
) -> int:
    """Return the number of CPUs this process may use.

    The smallest of these limits wins: ``SLURM_CPUS_PER_TASK`` (the job's
    allocation, while ``os.cpu_count()`` reports the whole node), the CPU
    quota of the process's cgroup and of every parent cgroup (v2
    ``cpu.max``, v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``, as set by
    containers and SLURM), the process's CPU affinity, and
    ``os.process_cpu_count()`` where Python has it (3.13); ``os.cpu_count()``
    when none applies.

    Parameters
    ----------
    cgroup_root
        Where the cgroup hierarchies are mounted; ``/sys/fs/cgroup`` by
        default. Tests point it at a fake tree.
    proc_cgroup
        The file naming this process's cgroups; ``/proc/self/cgroup`` by default.

    Returns
    -------
    int
        At least 1.

    Notes
    -----
    Never raises: an unreadable or malformed limit (a cgroup file that is not
    a number) is ignored.

    Examples
    --------
    >>> available_cpus() >= 1
    True
    """
    root = Path(cgroup_root) if cgroup_root is not None else None
    proc = Path(proc_cgroup) if proc_cgroup is not None else None
    found = (_slurm_cpus(), _cgroup_cpus(root, proc), _affinity_cpus(), _process_cpus())
    limits = [n for n in found if n is not None]
    return max(1, min(limits)) if limits else max(1, os.cpu_count() or 1)
