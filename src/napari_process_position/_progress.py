"""Completion records for resume: one small file per finished output (t, c) volume.

A record is written only after the volume's data is stored, and it lists the
files that hold the volume with their size and modification time. Resume
trusts a record only while every listed file is still there, unchanged: a
chunk or shard deleted or truncated after the run makes that volume run
again. Standard library only, since spawned workers import it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["ChunkGrid", "completed", "record", "record_name", "remove"]

PROGRESS_DIR_NAME = ".process-position-progress"


@dataclass(frozen=True)
class ChunkGrid:
    """Where an array's chunk (or shard) files live and how they are named.

    Attributes
    ----------
    array_path
        The array's folder.
    shape
        The array's shape.
    grid
        The shape of one stored file: the shard shape when sharded, else the chunk shape.
    prefix, separator
        File key = prefix + separator.join(indices): ``("c/", "/")`` for Zarr v3
        default keys, ``("", "/")`` or ``("", ".")`` for Zarr v2.
    """

    array_path: str
    shape: tuple[int, ...]
    grid: tuple[int, ...]
    prefix: str
    separator: str

    def volume_files(self, t: int, channels: Iterable[int]) -> list[str]:
        """Relative keys of the files holding volume (t, c) for each channel."""
        per_axis = [
            range(math.ceil(n / g)) for n, g in zip(self.shape[2:], self.grid[2:], strict=True)
        ]
        keys = []
        for c in channels:
            head = (t // self.grid[0], c // self.grid[1])
            for z in per_axis[0]:
                for y in per_axis[1]:
                    for x in per_axis[2]:
                        idx = (*head, z, y, x)
                        keys.append(self.prefix + self.separator.join(str(i) for i in idx))
        return sorted(set(keys))

    def stat(self, keys: Sequence[str]) -> dict[str, list[int] | None]:
        """Size and mtime of each file; None for a file that is absent (all fill value)."""
        out: dict[str, list[int] | None] = {}
        for key in keys:
            try:
                st = os.stat(os.path.join(self.array_path, *key.split("/")))
            except FileNotFoundError:
                out[key] = None
            else:
                out[key] = [st.st_size, st.st_mtime_ns]
        return out


def record_name(t_out: int, channel_label: str) -> str:
    """File name of the record of output volume (t, channel group)."""
    return f"t{t_out}_c{channel_label.replace(':', '-')}.done"


def remove(progress_dir: str, name: str) -> None:
    """Forget a record (before its volume is rewritten)."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(progress_dir, name))


def record(
    progress_dir: str, name: str, *, token: str, status: str, files: dict[str, list[int] | None]
) -> None:
    """Write a record atomically (write a temporary file, then rename it)."""
    os.makedirs(progress_dir, exist_ok=True)
    final = os.path.join(progress_dir, name)
    tmp = f"{final}.{os.getpid()}.{threading.get_ident()}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump({"token": token, "status": status, "files": files}, fh)
    os.replace(tmp, final)


def completed(progress_dir: str, token: str, grid: ChunkGrid | None) -> set[str]:
    """Names of records that match ``token`` and whose files are unchanged."""
    try:
        entries = [e for e in os.scandir(progress_dir) if e.name.endswith(".done")]
    except FileNotFoundError:
        return set()
    done = set()
    for entry in entries:
        try:
            with open(entry.path, encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict) or data.get("token") != token:
            continue
        files = data.get("files") or {}
        if grid is not None and files and grid.stat(list(files)) != files:
            continue
        done.add(entry.name)
    return done
