"""Locks beside an output store: one writer per output position, and its metadata changes.

Two kinds, both ``flock`` locks on small files in the store's records folder
(``/data/.process-position-progress/out.zarr.lock`` and ``….writers/``), never
inside the zarr hierarchy:

- :func:`plate_lock` serialises changes of a store's metadata (jobs that join a
  plate and add their positions).
- :func:`hold_output` is taken by a run for as long as it writes: a shared lock
  on the output and an exclusive lock on each output position it writes, or an
  exclusive lock on the whole output when it replaces it (``overwrite``) or the
  output is a single position. A second run that needs one of them refuses at
  once, naming the holder (pid and host, written into the lock file), or waits
  when asked. The kernel releases a ``flock`` when its holder dies, so a crashed
  run's locks are taken over at once; a lock file is never deleted (deleting a
  held lock's file would let a second run lock a new file of the same name).

On a file system without ``flock`` (some cluster file systems) a warning says
so and the run goes on unlocked.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from napari_process_position.core import records as _progress
from napari_process_position.core.errors import OutputInUseError

__all__ = ["WriterLock", "hold_output", "plate_lock"]

log = logging.getLogger(__name__)

#: The output-wide lock in a store's writers folder; position locks are under ``positions/``.
OUTPUT_LOCK = "output.lock"
_HOLDER_BYTES = 512


@contextlib.contextmanager
def plate_lock(root: Path) -> Iterator[None]:
    """Hold an exclusive lock on the store's lock file, beside it (serialises metadata changes)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory locks, no concurrent jobs
        yield
        return
    path = _progress.lock_path(root)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:  # e.g. a file system without locks
            log.warning(
                "cannot lock %s (%s); make the plate with `process-position init-output` "
                "before starting concurrent jobs",
                root,
                exc,
            )
        yield
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _close_all(fds: list[tuple[int, bool]]) -> None:
    """Release locks: forget the holder of exclusive ones, then close (the kernel unlocks)."""
    while fds:
        fd, exclusive = fds.pop()
        with contextlib.suppress(OSError):
            if exclusive:
                os.ftruncate(fd, 0)
            os.close(fd)


class WriterLock:
    """The locks a run holds on the output positions it writes (see :func:`hold_output`).

    :meth:`release` frees them (a :class:`~..batch.batch_run.BatchRun` does when it
    ends, fails or is cancelled); so does the end of the process, however it ends.
    """

    def __init__(self, output: str) -> None:
        self.output = output
        self._fds: list[tuple[int, bool]] = []
        self._finalizer = weakref.finalize(self, _close_all, self._fds)

    @property
    def held(self) -> bool:
        """True while any lock is held."""
        return bool(self._fds)

    def release(self) -> None:
        """Release every lock (idempotent)."""
        self._finalizer()


def _holder_text() -> str:
    return f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%H:%M:%S')}"


def _read_holder(path: str) -> str:
    try:
        with open(path, "rb") as fh:
            raw = fh.read(_HOLDER_BYTES)
    except OSError:
        return ""
    text = raw.decode("utf-8", "replace")
    return "".join(ch for ch in text if ch.isprintable()).strip()


def _held_by_someone(path: str) -> bool:
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # (also releases the probe's own lock)
    return False


def _describe_holder(writers: str, path: str) -> str:
    """Who holds ``path``: its own note, or for the output lock a busy position's."""
    if os.path.basename(path) == OUTPUT_LOCK:
        for folder, _, names in os.walk(os.path.join(writers, "positions")):
            for name in sorted(names):
                candidate = os.path.join(folder, name)
                if _held_by_someone(candidate):
                    text = _read_holder(candidate)
                    if text:
                        return text
    return _read_holder(path) or "pid and host unknown"


def _forget_crashed(writers: str, what: str) -> None:
    """Clear the notes left in position locks (held whole, they are those of runs that died)."""
    for folder, _, names in os.walk(os.path.join(writers, "positions")):
        for name in names:
            path = os.path.join(folder, name)
            left = _read_holder(path)
            if left:
                log.warning(
                    "%s: taking over the lock of a run that ended without releasing it (%s)",
                    what,
                    left,
                )
                with contextlib.suppress(OSError):
                    os.truncate(path, 0)


def _flock(fd: int, mode: int, wait: bool | float, on_busy: Callable[[bool], None]) -> None:
    """Lock ``fd``; when busy, call ``on_busy(final)`` and wait as ``wait`` says."""
    import fcntl

    deadline = None if wait is True else time.monotonic() + float(wait)
    told = False
    while True:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if deadline is not None and time.monotonic() >= deadline:
                on_busy(True)  # raises
            if not told:
                on_busy(False)
                told = True
            if deadline is None:
                fcntl.flock(fd, mode)
                return
            time.sleep(0.1)


def _acquire(
    lock: WriterLock, writers: str, path: str, what: str, *, exclusive: bool, wait: bool | float
) -> None:
    import fcntl

    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:  # a read-only place: creating the output will say so
        log.debug("no writer lock at %s: %s", path, exc)
        return

    def on_busy(final: bool) -> None:
        holder = _describe_holder(writers, path)
        if final:
            raise OutputInUseError(
                f"{what} is being written by another run ({holder}); wait for it to end, "
                "or pass --wait (wait=True) to start when it does"
            )
        log.warning("waiting for the run writing %s to end (%s)", what, holder)

    try:
        _flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH, wait, on_busy)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):  # pragma: no cover - as above
            raise
        log.warning(
            "cannot lock %s (%s): this file system has no locks, so nothing stops a second run "
            "from writing %s at the same time",
            path,
            exc.strerror or exc,
            what,
        )
        return
    except BaseException:
        os.close(fd)
        raise
    if exclusive:  # (a shared holder leaves no note: the positions it writes name it)
        left = _read_holder(path)
        if left:
            log.warning(
                "%s: taking over the lock of a run that ended without releasing it (%s)", what, left
            )
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, _holder_text().encode(), 0)
    lock._fds.append((fd, exclusive))


def hold_output(
    output: str | os.PathLike[str],
    keys: Sequence[str] | None,
    *,
    replace: bool = False,
    wait: bool | float = False,
) -> WriterLock:
    """Lock the output positions a run is about to write, for as long as it writes.

    Parameters
    ----------
    output
        The output store (a plate, or a single position).
    keys
        The position keys the run writes into a plate ``output``; None when
        ``output`` is itself the position.
    replace
        The run replaces the whole output (overwrite): no other run may be
        writing any part of it.
    wait
        When another run holds a lock: False refuses at once, True waits for
        it to end, a number waits up to that many seconds, then refuses.

    Returns
    -------
    WriterLock
        Held until :meth:`WriterLock.release` (or the end of the process).

    Raises
    ------
    OutputInUseError
        Another run holds one of the locks (and ``wait`` did not outlast it):
        the message names it (pid and host).
    """
    out = os.path.realpath(os.fspath(output))
    lock = WriterLock(out)
    try:
        import fcntl  # noqa: F401
    except ImportError:  # pragma: no cover - Windows: no flock
        return lock
    positions = [out] if keys is None else [os.path.join(out, *k.split("/")) for k in keys]
    root = _progress.store_root(out)
    relative = sorted({os.path.relpath(p, root) for p in positions})
    whole = replace or "." in relative
    writers = _progress.writers_dir(root)
    try:
        _acquire(
            lock,
            writers,
            os.path.join(writers, OUTPUT_LOCK),
            root,
            exclusive=whole,
            wait=wait,
        )
        if whole:
            _forget_crashed(writers, root)
        else:
            for rel in relative:
                path = os.path.join(writers, "positions", *rel.split(os.sep)) + ".lock"
                what = f"position {rel.replace(os.sep, '/')} of {root}"
                _acquire(lock, writers, path, what, exclusive=True, wait=wait)
    except BaseException:
        lock.release()
        raise
    return lock
