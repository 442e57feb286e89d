"""An exclusive lock on a store's metadata, held by jobs that change it."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from napari_process_position.core import records as _progress

__all__ = ["plate_lock"]

log = logging.getLogger(__name__)


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
