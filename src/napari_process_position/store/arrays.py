"""The one way this package opens an array with tensorstore.

Workers, output probes, previews and the widget's input layers all open
arrays here. numpy-free and zarr-free: spawned workers import this.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import Any

__all__ = ["open_array", "open_array_once", "selection", "tensorstore_spec"]

#: Handles that tasks of a run opened in this process, newest last (a few runs' worth).
_handles: OrderedDict[tuple[str, str, int | None, bool, str], Any] = OrderedDict()
_handles_lock = threading.Lock()
_HANDLES_KEPT = 16

#: Context of arrays opened for writing: no fsync after each file (tensorstore's default
#: syncs every shard it writes, ~15 ms for an 8 MiB one). A file is still written under a
#: temporary name and renamed into place, so a killed job cannot leave a torn one; only
#: a power cut or kernel crash could lose what the page cache held, as with zarr-python
#: (what iohub writes with), which never syncs. Resume compares each file's size and
#: mtime with its completion record's before trusting a volume.
WRITE_CONTEXT: dict[str, Any] = {"file_io_sync": False}


def tensorstore_spec(array_path: str | os.PathLike[str], zarr_format: int | None) -> dict[str, Any]:
    """Return the tensorstore spec of the Zarr array at ``array_path``.

    Parameters
    ----------
    array_path
        The array's folder (``plate.zarr/A/1/0/0``).
    zarr_format
        3 (OME-Zarr 0.5) or 2 (OME-Zarr 0.4).

    Returns
    -------
    dict
        The spec, for ``tensorstore.open``.
    """
    return {
        "driver": "zarr3" if zarr_format == 3 else "zarr",
        "kvstore": {"driver": "file", "path": os.fspath(array_path)},
    }


def open_array(
    array_path: str | os.PathLike[str],
    zarr_format: int | None,
    *,
    write: bool = False,
    axes: str = "tczyx",
) -> Any:
    """Open an existing Zarr array with tensorstore.

    Parameters
    ----------
    array_path, zarr_format
        See :func:`tensorstore_spec`.
    write
        Open for writing too (reading is always possible), without an fsync
        after each file (see :data:`WRITE_CONTEXT`).
    axes
        The axes the array has, in TCZYX order (``"czyx"``, ``"zyx"``): the
        array is seen as TCZYX all the same, each missing axis of length 1.

    Returns
    -------
    tensorstore.TensorStore
        The opened array.

    Raises
    ------
    ValueError
        tensorstore cannot open it (callers turn this into their own error,
        naming the store).
    """
    import tensorstore as ts

    spec = tensorstore_spec(array_path, zarr_format)
    if write:
        spec["context"] = WRITE_CONTEXT
    array = ts.open(spec, read=True, write=write, open=True).result()
    if axes == "tczyx":
        return array
    return array[tuple(slice(None) if a in axes else ts.newaxis for a in "tczyx")]


def open_array_once(
    array_path: str | os.PathLike[str],
    zarr_format: int | None,
    *,
    write: bool = False,
    axes: str = "tczyx",
    run_id: str = "",
) -> Any:
    """:func:`open_array`, reusing the handle an earlier task of the same run opened here.

    A worker (a thread or a process) then opens each array once per run
    instead of once per task. Handles hold no data (tensorstore's cache pool
    is off by default), only the array's metadata, which a run does not
    change; a new run (another ``run_id``) opens the arrays anew. With no
    ``run_id`` the array is opened every time.
    """
    if not run_id:
        return open_array(array_path, zarr_format, write=write, axes=axes)
    key = (run_id, os.fspath(array_path), zarr_format, write, axes)
    with _handles_lock:
        handle = _handles.get(key)
        if handle is not None:
            _handles.move_to_end(key)
            return handle
    handle = open_array(array_path, zarr_format, write=write, axes=axes)
    with _handles_lock:
        _handles[key] = handle
        while len(_handles) > _HANDLES_KEPT:
            _handles.popitem(last=False)
    return handle


def selection(group: int | tuple[int, ...] | list[int] | slice) -> int | list[int] | slice:
    """Return a channel group as tensorstore indexes it (a tuple becomes a list)."""
    return list(group) if isinstance(group, tuple) else group
