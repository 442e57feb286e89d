"""How many CPUs this process may really use."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

__all__ = ["available_cpus"]

log = logging.getLogger(__name__)

_CGROUP_ROOT = Path("/sys/fs/cgroup")


def _slurm_cpus() -> int | None:
    value = os.environ.get("SLURM_CPUS_PER_TASK", "").strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    if value:
        log.warning("ignoring SLURM_CPUS_PER_TASK=%r: not a positive integer", value)
    return None


def _cgroup_cpus(cgroup_root: Path) -> int | None:
    """CPU quota of the cgroup v2 this process is in, rounded up, or None."""
    candidates = []
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            # cgroup v2 line: "0::/some/path"
            if line.startswith("0::"):
                rel = line[3:].strip().lstrip("/")
                candidates.append(cgroup_root / rel / "cpu.max")
    except OSError:
        pass
    candidates.append(cgroup_root / "cpu.max")
    limits = []
    for path in candidates:
        try:
            quota, period = path.read_text().split()[:2]
        except (OSError, ValueError):
            continue
        if quota == "max":
            continue
        try:
            limits.append(max(1, math.ceil(int(quota) / int(period))))
        except (ValueError, ZeroDivisionError):
            continue
    return min(limits) if limits else None


def _affinity_cpus() -> int | None:
    try:
        return len(os.sched_getaffinity(0)) or None
    except (AttributeError, OSError):
        return None


def available_cpus(cgroup_root: str | os.PathLike[str] | None = None) -> int:
    """Return the number of CPUs this process may use.

    The smallest of these limits wins: ``SLURM_CPUS_PER_TASK`` (the job's
    allocation, while ``os.cpu_count()`` reports the whole node), the cgroup
    v2 CPU quota (``cpu.max``, as set by containers and SLURM), and the
    process's CPU affinity; ``os.cpu_count()`` when none applies.

    Parameters
    ----------
    cgroup_root
        Where the cgroup v2 hierarchy is mounted; ``/sys/fs/cgroup`` by
        default. Tests point it at a fake tree.

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
    root = Path(cgroup_root) if cgroup_root is not None else _CGROUP_ROOT
    limits = [n for n in (_slurm_cpus(), _cgroup_cpus(root), _affinity_cpus()) if n is not None]
    return max(1, min(limits)) if limits else max(1, os.cpu_count() or 1)
