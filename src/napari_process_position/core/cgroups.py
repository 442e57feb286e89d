"""Where this process's cgroup limits are: its own cgroup and every parent, v2 or v1."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CGROUP_ROOT", "PROC_CGROUP", "cgroup_dirs", "read_int", "read_stat"]

#: Where the cgroup hierarchies are mounted.
CGROUP_ROOT = Path("/sys/fs/cgroup")
#: The file naming this process's cgroups.
PROC_CGROUP = Path("/proc/self/cgroup")


def _unified_mount(root: Path) -> Path:
    """Return the cgroup v2 mount: the root, or ``unified`` beside v1 controllers (hybrid)."""
    if not (root / "cgroup.controllers").exists() and (root / "unified").is_dir():
        return root / "unified"
    return root


def _up(mount: Path, relative: str) -> list[Path]:
    """``mount/relative`` and each of its parents up to ``mount``, those that exist."""
    parts = [p for p in relative.strip().split("/") if p and p != ".."]
    dirs = []
    for i in range(len(parts), -1, -1):
        folder = mount.joinpath(*parts[:i])
        if folder.is_dir():
            dirs.append(folder)
    return dirs


def cgroup_dirs(
    controller: str,
    cgroup_root: str | os.PathLike[str] | None = None,
    proc_cgroup: str | os.PathLike[str] | None = None,
) -> list[Path]:
    """Return the cgroup folders whose ``controller`` limits apply to this process.

    Innermost first: the process's own cgroup (from ``/proc/self/cgroup``),
    then each parent up to the mount point, for the cgroup v2 hierarchy and
    for a cgroup v1 hierarchy of ``controller``. A limit anywhere on that
    path applies, so callers take the smallest. In a container the path
    named may not exist under the mount (the container's cgroup is the
    mount's root); the mount itself is then the only folder.

    Parameters
    ----------
    controller
        ``"cpu"`` or ``"memory"`` (the v1 hierarchy's name).
    cgroup_root
        Where the hierarchies are mounted (``/sys/fs/cgroup``); tests give a fake tree.
    proc_cgroup
        The file listing this process's cgroups (``/proc/self/cgroup``).

    Returns
    -------
    list of Path
        Existing folders, innermost first, without repeats; the root alone
        when ``/proc/self/cgroup`` cannot be read.

    Notes
    -----
    Never raises: unreadable files are treated as absent.
    """
    root = Path(cgroup_root) if cgroup_root is not None else CGROUP_ROOT
    try:
        lines = Path(proc_cgroup or PROC_CGROUP).read_text().splitlines()
    except OSError:
        lines = []
    found: list[Path] = []
    for line in lines:
        parts = line.strip().split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, relative = parts
        if hierarchy == "0" and controllers == "":
            mounts = [_unified_mount(root)]
        elif controller in controllers.split(","):
            mounts = [root / controllers, root / controller]
        else:
            continue
        for mount in mounts:
            if mount.is_dir():
                found.extend(d for d in _up(mount, relative) if d not in found)
                break
    return found or [root]


def read_int(path: Path) -> int | None:
    """Return the integer a cgroup file holds, or None (absent, ``max``, not a number).

    Returns
    -------
    int or None
    """
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def read_stat(path: Path) -> dict[str, int]:
    """Return a ``key value`` file (``memory.stat``) as a mapping; empty when unreadable.

    Returns
    -------
    dict of str to int
    """
    out: dict[str, int] = {}
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            out[key] = int(value)
    return out
