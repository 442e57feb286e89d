"""Completion records for resume: one small file per finished output (t, c) volume.

Records live beside the output store, never inside it: for a position
``/data/out.zarr/A/1/0`` they are in ``/data/.process-position-progress/out.zarr/A/1/0/``
(iohub keeps its own in ``.iohub-progress`` the same way). Listing or copying a
finished plate shows no trace of them, and a copy does not carry records that
would make a resume against it skip work.

A record is written only after the volume's data is stored. It says what made
the volume (the run's identity digest, and the input and output time and
channels in clear) and lists the files holding it with their size and
modification time, plus the array's metadata file. Resume trusts a record
only when its identity is the one the current run would write and every
listed file is unchanged: other settings, a deleted or truncated shard, or an
array created anew all make the volume run again. Standard library only,
since spawned workers import it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "RECORDS_DIR_NAME",
    "RECORD_FORMAT",
    "ChunkGrid",
    "ResumeCheck",
    "check",
    "lock_path",
    "record",
    "record_name",
    "records_dir",
    "remove",
    "remove_store_records",
    "restat",
    "store_root",
]

RECORDS_DIR_NAME = ".process-position-progress"
#: Version of the record format; records of other versions are not trusted.
RECORD_FORMAT = 2


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
    meta_file
        The array's metadata file (``zarr.json`` or ``.zarray``): recreating
        the array changes it, so records of the old array are not trusted.
    axes
        The axes the array has (``"czyx"`` for an image without time); shape
        and grid are TCZYX all the same, with 1 for a missing axis.
    """

    array_path: str
    shape: tuple[int, ...]
    grid: tuple[int, ...]
    prefix: str
    separator: str
    meta_file: str = "zarr.json"
    axes: str = "tczyx"

    def row_files(self, time_row: int, channels: Iterable[int]) -> list[str]:
        """Keys of the files of grid row ``time_row`` (``t // grid[0]``) for ``channels``."""
        per_axis = [
            range(math.ceil(n / g)) for n, g in zip(self.shape[2:], self.grid[2:], strict=True)
        ]
        keys = set()
        for c in channels:
            head = (time_row, c // self.grid[1])
            for z in per_axis[0]:
                for y in per_axis[1]:
                    for x in per_axis[2]:
                        idx = tuple(
                            i
                            for i, a in zip((*head, z, y, x), "tczyx", strict=True)
                            if a in self.axes
                        )
                        keys.add(self.prefix + self.separator.join(str(i) for i in idx))
        return sorted(keys)

    def volume_files(self, t: int, channels: Iterable[int]) -> list[str]:
        """Keys of the files holding volume (t, c) for each channel."""
        return self.row_files(t // self.grid[0], channels)

    def row_times(self, time_row: int) -> range:
        """Return the time points of the array that grid row ``time_row`` holds."""
        size = self.grid[0]
        return range(time_row * size, min((time_row + 1) * size, self.shape[0]))

    def record_files(self, t: int, channels: Iterable[int]) -> list[str]:
        """Return what a record of volume (t, c) lists: its files and the array's metadata."""
        return [*self.volume_files(t, channels), self.meta_file]

    def path_of(self, key: str) -> str:
        """Absolute path of the file with key ``key``."""
        return os.path.join(self.array_path, *key.split("/"))

    def stat(self, keys: Sequence[str]) -> dict[str, list[int] | None]:
        """Size and mtime of each file; None for a file that is absent (all fill value)."""
        out: dict[str, list[int] | None] = {}
        for key in keys:
            try:
                st = os.stat(self.path_of(key))
            except FileNotFoundError:
                out[key] = None
            else:
                out[key] = [st.st_size, st.st_mtime_ns]
        return out


# -- where records live ------------------------------------------------------------


def _is_zarr_group(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "zarr.json")) or os.path.isfile(
        os.path.join(path, ".zgroup")
    )


def store_root(position_path: str | os.PathLike[str]) -> str:
    """Return the outermost Zarr group holding ``position_path`` (its plate, or itself)."""
    root = os.path.realpath(os.fspath(position_path))
    parent = os.path.dirname(root)
    while parent != root and _is_zarr_group(parent):
        root, parent = parent, os.path.dirname(parent)
    return root


def _store_records(root: str) -> str:
    return os.path.join(os.path.dirname(root), RECORDS_DIR_NAME, os.path.basename(root))


def records_dir(position_path: str | os.PathLike[str]) -> str:
    """Folder of the completion records of a position, beside its store.

    Examples
    --------
    ``/data/out.zarr/A/1/0`` -> ``/data/.process-position-progress/out.zarr/A/1/0``;
    a store that is a single position, ``/data/fov.zarr`` ->
    ``/data/.process-position-progress/fov.zarr``.
    """
    position = os.path.realpath(os.fspath(position_path))
    root = store_root(position)
    relative = os.path.relpath(position, root)
    base = _store_records(root)
    return base if relative == "." else os.path.join(base, relative)


def lock_path(root: str | os.PathLike[str]) -> str:
    """Return the lock file that serialises metadata changes of the store at ``root``."""
    return _store_records(os.path.realpath(os.fspath(root))) + ".lock"


def remove_store_records(root: str | os.PathLike[str]) -> None:
    """Forget every record of the store at ``root`` (it is being replaced)."""
    shutil.rmtree(_store_records(os.path.realpath(os.fspath(root))), ignore_errors=True)


# -- reading and writing records -------------------------------------------------------


def record_name(t_out: int, channel_label: str) -> str:
    """File name of the record of output volume (t, channel group)."""
    return f"t{t_out}_c{channel_label.replace(':', '-')}.done"


def remove(progress_dir: str, name: str) -> None:
    """Forget a record (before its volume is rewritten)."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(progress_dir, name))


def record(
    progress_dir: str,
    name: str,
    *,
    identity: Mapping[str, Any],
    status: str,
    files: Mapping[str, list[int] | None],
) -> None:
    """Write a record atomically (write a temporary file, then rename it)."""
    os.makedirs(progress_dir, exist_ok=True)
    final = os.path.join(progress_dir, name)
    tmp = f"{final}.{os.getpid()}.{threading.get_ident()}.tmp"
    data = {"format": RECORD_FORMAT, "identity": dict(identity), "status": status}
    data["files"] = dict(files)
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
    os.replace(tmp, final)


def _load(path: str) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != RECORD_FORMAT:
        return None
    return data


def restat(
    progress_dir: str,
    name: str,
    before: Mapping[str, list[int] | None],
    after: Mapping[str, list[int] | None],
) -> None:
    """Carry a valid record over a rewrite of its files that kept its data.

    Used when a shard shared with volumes outside the task is rewritten with
    their data preserved: a record whose files were ``before`` now lists
    ``after``; any other record is left as it is (and stays untrusted).
    """
    path = os.path.join(progress_dir, name)
    data = _load(path)
    if data is None or data.get("files") != dict(before):
        return
    record(progress_dir, name, identity=data["identity"], status=data["status"], files=after)


#: Why a record was not trusted, by the first field that differs.
_REASONS = {
    "run": "the transform, its parameters, the resume token, the input or the output layout",
    "input_time": "the input time point",
    "input_channels": "the input channels",
    "output_time": "the output time point",
    "output_channels": "the output channels",
}


@dataclass
class ResumeCheck:
    """What a look at the records found.

    Attributes
    ----------
    done
        Names of trusted records.
    other_settings
        Name -> what differs in a record made by other settings (the first
        difference found: ``"the input time point"``, ...).
    changed
        Names of records whose files changed since (deleted, truncated, rewritten).
    """

    done: set[str] = field(default_factory=set)
    other_settings: dict[str, str] = field(default_factory=dict)
    changed: set[str] = field(default_factory=set)


def check(
    progress_dir: str,
    expected: Mapping[str, Mapping[str, Any]],
    grid: ChunkGrid | None,
) -> ResumeCheck:
    """Look at the records of ``expected`` (name -> identity the run would write)."""
    result = ResumeCheck()
    if not os.path.isdir(progress_dir):
        return result
    for name, identity in expected.items():
        data = _load(os.path.join(progress_dir, name))
        if data is None:
            continue
        stored = data.get("identity")
        if stored != dict(identity):
            stored = stored if isinstance(stored, dict) else {}
            differs = next((k for k in _REASONS if stored.get(k) != identity.get(k)), "run")
            result.other_settings[name] = _REASONS[differs]
            continue
        files = data.get("files")
        if not isinstance(files, dict) or (grid is not None and grid.stat(list(files)) != files):
            result.changed.add(name)
            continue
        result.done.add(name)
    return result
