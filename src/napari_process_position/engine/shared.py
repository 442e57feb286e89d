"""Preview volumes from worker processes through shared memory instead of pickles.

A run without an output store (a preview in napari) hands every computed
volume back to the caller. From a worker process, a pickle of a 64 MB volume
is copied four times (pickled, written to the pipe, read, unpickled) while
the caller's result thread holds the GIL that the window needs. Instead the
worker copies the volume once into a file of its own in ``/dev/shm`` and
sends its name; the caller maps that file, removes its name at once (the
mapping stays valid) and gets an array on the shared pages, without a copy.
The pages are freed when that array is.

A file is named ``npp-<pool token>-<worker pid>-<n>`` (the token is the
caller's pid and the pool's number), so that the caller can remove those it
never received (a cancelled run's, a killed worker's) when it stops that pool:
:func:`remove_leftovers`. Where there is no ``/dev/shm`` (not
Linux), or for a small volume, the volume travels as a pickle, as before.
"""

from __future__ import annotations

import atexit
import dataclasses
import itertools
import mmap
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_process_position.core.tasks import Result

__all__ = [
    "MIN_SHARED_BYTES",
    "SharedVolume",
    "from_shared",
    "pool_token",
    "release",
    "remove_leftovers",
    "sharing_available",
    "to_shared",
]

#: Where shared memory files live (a tmpfs on Linux).
SHM_DIR = Path("/dev/shm")
#: Below this, a pickle costs as little as a file: the volume travels as a pickle.
MIN_SHARED_BYTES = 1 << 20
_PREFIX = "npp-"
_counter = itertools.count()
_pools = itertools.count(1)
_cleanup_registered = False


@dataclass(frozen=True)
class SharedVolume:
    """A volume in a shared memory file: what a worker sends instead of the array."""

    name: str
    shape: tuple[int, ...]
    dtype: str


def sharing_available() -> bool:
    """Tell whether this machine has a shared memory folder to put volumes in.

    Returns
    -------
    bool
        True on Linux (``/dev/shm`` is a writable folder).
    """
    return SHM_DIR.is_dir() and os.access(SHM_DIR, os.W_OK)


def _share(volume: np.ndarray, owner: str) -> SharedVolume:
    """Copy ``volume`` into a new shared memory file named for ``owner`` and this process."""
    name = f"{_PREFIX}{owner}-{os.getpid()}-{next(_counter)}"
    path = SHM_DIR / name
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.ftruncate(fd, volume.nbytes)
        with mmap.mmap(fd, volume.nbytes) as buffer:
            target: np.ndarray = np.ndarray(volume.shape, volume.dtype, buffer=buffer)
            target[...] = volume
            del target
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)
    return SharedVolume(name, tuple(volume.shape), volume.dtype.str)


def to_shared(results: Iterable[Result], owner: str) -> list[Result]:
    """Put the results' volumes into shared memory (in a worker process).

    Parameters
    ----------
    results
        A task's results; those holding a volume of at least
        :data:`MIN_SHARED_BYTES` are changed.
    owner
        The token of the pool the worker belongs to (:func:`pool_token`).

    Returns
    -------
    list of Result
        The results, each large volume replaced by a :class:`SharedVolume`.
        On any error in sharing, the volumes are left as they are.
    """
    results = list(results)
    shared: list[Result] = []
    try:
        for result in results:
            volume = result.volume
            if isinstance(volume, np.ndarray) and volume.nbytes >= MIN_SHARED_BYTES:
                handle: Any = _share(np.ascontiguousarray(volume), owner)
                result = dataclasses.replace(result, volume=handle)
            shared.append(result)
    except OSError:  # /dev/shm full: send the pickles instead
        release(shared)
        return results
    return shared


def from_shared(results: Iterable[Result]) -> list[Result]:
    """Map the shared volumes of a worker's results (in the caller), each without a copy.

    Parameters
    ----------
    results
        Results as a worker sent them.

    Returns
    -------
    list of Result
        The results with arrays in place of :class:`SharedVolume` handles;
        the files' names are gone, their pages are freed with the arrays.
    """
    out = []
    for result in results:
        handle = result.volume
        if isinstance(handle, SharedVolume):
            result = dataclasses.replace(result, volume=_attach(handle))
        out.append(result)
    return out


def _attach(handle: SharedVolume) -> np.ndarray:
    path = SHM_DIR / handle.name
    fd = os.open(path, os.O_RDWR)
    try:
        dtype = np.dtype(handle.dtype)
        size = int(np.prod(handle.shape, dtype=np.int64)) * dtype.itemsize
        buffer = mmap.mmap(fd, size)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    # The array holds the mapping; both go when the array does.
    return np.frombuffer(buffer, dtype=dtype).reshape(handle.shape)


def release(results: Iterable[Result]) -> None:
    """Remove the shared files of results that will not be received (a stopped run's).

    Parameters
    ----------
    results
        Results as a worker sent them; volumes that are arrays are left alone.
    """
    for result in results:
        handle = result.volume
        if isinstance(handle, SharedVolume):
            (SHM_DIR / handle.name).unlink(missing_ok=True)


def pool_token() -> str:
    """Return a new token for a pool of this process: its pid and a number.

    Returns
    -------
    str
        ``<pid>.<n>``, unique among this process's pools.
    """
    global _cleanup_registered
    if not _cleanup_registered:
        # Files of tasks still running when a pool was let go without waiting.
        atexit.register(remove_leftovers, f"{os.getpid()}.")
        _cleanup_registered = True
    return f"{os.getpid()}.{next(_pools)}"


def remove_leftovers(owner: str) -> int:
    """Remove the shared files made for pool ``owner`` that nobody received.

    Parameters
    ----------
    owner
        The pool's token (:func:`pool_token`), or the pid and a dot: every
        pool of that process.

    Returns
    -------
    int
        How many files were removed.
    """
    removed = 0
    if not SHM_DIR.is_dir():
        return 0
    for path in SHM_DIR.glob(
        f"{_PREFIX}{owner}*" if owner.endswith(".") else f"{_PREFIX}{owner}-*"
    ):
        try:
            path.unlink()
            removed += 1
        except OSError:
            continue
    return removed
