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
only when its identity is the one the current run would write, it lists
exactly the files of its volume and the metadata file (each inside the output
array's folder), and every listed file is unchanged: other settings, a deleted
or truncated shard, or an array created anew all make the volume run again, and
so does a record that lists other files (none, only the metadata, a file
elsewhere), cannot be read, or is a folder (see :class:`ResumeCheck`). Standard
library only, since spawned workers import it.
"""

from __future__ import annotations

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
    "writers_dir",
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
    levels
        The grids of the pyramid levels a run writes beside this array (level
        1, 2, ...: arrays in the same position folder). A record then lists
        their files too, with keys relative to this array (``../1/c/0/0/0/0/0``).
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
    levels: tuple[ChunkGrid, ...] = ()
    axes: str = "tczyx"

    @property
    def root(self) -> str:
        """The folder every file a record lists must be in: the array's, or its position's."""
        return os.path.dirname(self.array_path) if self.levels else self.array_path

    def _level_keys(self, level: ChunkGrid, keys: Iterable[str]) -> list[str]:
        rel = os.path.relpath(level.array_path, self.array_path).replace(os.sep, "/")
        return [f"{rel}/{key}" for key in keys]

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
        """Return what a record of volume (t, c) lists: its files and the array's metadata.

        With pyramid levels, also each level's files of the volume and its metadata.
        """
        channels = list(channels)
        files = [*self.volume_files(t, channels), self.meta_file]
        for level in self.levels:
            files += self._level_keys(level, [*level.volume_files(t, channels), level.meta_file])
        return files

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


def writers_dir(root: str | os.PathLike[str]) -> str:
    """Folder of the writer locks of the store at ``root``: beside its records, never removed.

    Example: ``/data/out.zarr`` -> ``/data/.process-position-progress/out.zarr.writers``.
    """
    return _store_records(os.path.realpath(os.fspath(root))) + ".writers"


def remove_store_records(root: str | os.PathLike[str]) -> None:
    """Forget every record of the store at ``root`` (it is being replaced)."""
    shutil.rmtree(_store_records(os.path.realpath(os.fspath(root))), ignore_errors=True)


# -- reading and writing records -------------------------------------------------------


def record_name(t_out: int, channel_label: str) -> str:
    """File name of the record of output volume (t, channel group)."""
    return f"t{t_out}_c{channel_label.replace(':', '-')}.done"


def remove(progress_dir: str, name: str) -> None:
    """Forget a record (before its volume is rewritten); a folder in its place goes too."""
    path = os.path.join(progress_dir, name)
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
    except OSError:
        # A folder where the record goes (EISDIR on Linux, EPERM on macOS): it is no
        # record, and it would stop the new one from being written.
        if not (os.path.isdir(path) and not os.path.islink(path)):
            raise
        shutil.rmtree(path)


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
    if os.path.isdir(final) and not os.path.islink(final):
        remove(progress_dir, name)
    os.replace(tmp, final)


#: A record bigger than this is not one this package wrote (one holds a few file names).
MAX_RECORD_BYTES = 1 << 20


class _Unreadable(Exception):
    """A record is there but cannot be used; the message says why."""


def _read(path: str) -> dict[str, Any] | None:
    """Return a record's data; None when there is none; _Unreadable when it is unusable."""
    if os.path.isdir(path):
        raise _Unreadable("is a folder, not a record")
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_RECORD_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _Unreadable(f"cannot be read ({exc.strerror or exc})") from exc
    if len(raw) > MAX_RECORD_BYTES:
        raise _Unreadable(f"is larger than {MAX_RECORD_BYTES} bytes")
    try:
        data = json.loads(raw.decode("utf-8"))
    except ValueError as exc:
        raise _Unreadable("is not valid JSON") from exc
    if not isinstance(data, dict):
        raise _Unreadable("is not a JSON object")
    if data.get("format") != RECORD_FORMAT:
        raise _Unreadable(f"has format {data.get('format')!r}, not {RECORD_FORMAT}")
    return data


def _load(path: str) -> dict[str, Any] | None:
    try:
        return _read(path)
    except _Unreadable:
        return None


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
    untrusted
        Name -> why a record cannot be trusted at all: unreadable, a folder, or
        not listing exactly the files of its volume inside the output store.
    """

    done: set[str] = field(default_factory=set)
    other_settings: dict[str, str] = field(default_factory=dict)
    changed: set[str] = field(default_factory=set)
    untrusted: dict[str, str] = field(default_factory=dict)


def _inside(path: str, folder: str) -> bool:
    real, top = os.path.realpath(path), os.path.realpath(folder)
    return real != top and os.path.commonpath([real, top]) == top


def _listing_problem(files: Any, required: Sequence[str] | None, grid: ChunkGrid | None) -> str:
    """Why a record's ``files`` cannot vouch for its volume ("" when they can)."""
    if grid is None or required is None:
        return "its volume's files are not known"
    if not isinstance(files, dict) or not all(
        value is None
        or (isinstance(value, list) and len(value) == 2 and all(type(v) is int for v in value))
        for value in files.values()
    ):
        return "lists its files in an unknown form"
    if set(files) != set(required):
        return "does not list exactly the files of its volume"
    if any(not _inside(grid.path_of(key), grid.root) for key in files):
        return "lists a file outside the output store"
    if files.get(grid.meta_file) is None:
        return "does not list the array's metadata file"
    return ""


def check(
    progress_dir: str,
    expected: Mapping[str, Mapping[str, Any]],
    grid: ChunkGrid | None,
    required: Mapping[str, Sequence[str]] | None = None,
) -> ResumeCheck:
    """Look at the records of ``expected`` (name -> identity the run would write).

    A record is trusted only when it lists exactly ``required[name]`` (the
    files of its volume and the array's metadata file, each inside the
    array's folder), and each file is there with the recorded size and
    modification time (a file recorded as absent, for a volume left at the
    fill value, must still be absent). Without ``required`` no record is
    trusted.
    """
    result = ResumeCheck()
    if not os.path.isdir(progress_dir):
        return result
    for name, identity in expected.items():
        try:
            data = _read(os.path.join(progress_dir, name))
        except _Unreadable as exc:
            result.untrusted[name] = str(exc)
            continue
        if data is None:
            continue
        stored = data.get("identity")
        if stored != dict(identity):
            stored = stored if isinstance(stored, dict) else {}
            differs = next((k for k in _REASONS if stored.get(k) != identity.get(k)), "run")
            result.other_settings[name] = _REASONS[differs]
            continue
        files = data.get("files")
        problem = _listing_problem(files, None if required is None else required.get(name), grid)
        if problem:
            result.untrusted[name] = problem
            continue
        if grid is None or not isinstance(files, dict) or grid.stat(list(files)) != files:
            result.changed.add(name)
            continue
        result.done.add(name)
    return result
