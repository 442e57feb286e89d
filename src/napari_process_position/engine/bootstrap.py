"""Why a worker process could not start, told to the process that started it.

A worker that fails while starting exits, and its caller only sees a worker
that died (``BrokenProcessPool``), which reads like running out of memory.
Two causes are known and common, and for those the worker leaves a note for
its parent, whose error then names the real cause and the fix:

- A script that calls :func:`process_single_position` (or makes a process
  pool) at its top level, without ``if __name__ == "__main__":``: a spawned
  worker starts by importing the caller's main module, so each worker would
  start workers itself while it is still starting, which multiprocessing
  forbids.
- A memory limit below what a worker maps to start (numpy, tensorstore).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import sys
import tempfile
import time

from napari_process_position.core.errors import UsageError

__all__ = [
    "GUARD_ADVICE",
    "forget_startup_failure",
    "leave_note",
    "refuse_while_bootstrapping",
    "startup_failure",
]

GUARD_ADVICE = (
    "spawned worker processes import the script again, so put the call under "
    '`if __name__ == "__main__":` (Python\'s multiprocessing rule for spawn)'
)


def _note_path(parent_pid: int) -> str:
    return os.path.join(tempfile.gettempdir(), f"npp-unguarded-main-{parent_pid}")


def leave_note(reason: str) -> None:
    """Tell the process that started this one why it cannot start (best effort)."""
    with contextlib.suppress(OSError), open(_note_path(os.getppid()), "w") as fh:
        fh.write(reason)


def refuse_while_bootstrapping() -> None:
    """In a worker that is still importing its caller's script: leave a note, then refuse.

    Raises
    ------
    UsageError
        Naming the script and the fix (the worker's own stderr shows it).
    """
    # (multiprocessing's own flag for "this process is still starting": what its
    # check before starting a process reads too)
    if not getattr(mp.current_process(), "_inheriting", False):
        return
    # (the script runs as __mp_main__ while it is imported; its parent is our caller)
    main = sys.modules.get("__mp_main__") or sys.modules.get("__main__")
    script = os.path.abspath(getattr(main, "__file__", None) or "the main module")
    leave_note(
        f"{script} calls process_single_position (or starts a process pool) at its top "
        f"level; {GUARD_ADVICE}"
    )
    raise UsageError(f"{script} starts worker processes at its top level: {GUARD_ADVICE}")


def startup_failure(wait: float = 0.0) -> str | None:
    """Return why a worker of this process could not start, if one said so.

    Parameters
    ----------
    wait
        Look again for up to this many seconds (a worker that failed in its
        initializer ends normally, and may be seen gone before its note is).
    """
    path = _note_path(os.getpid())
    deadline = time.monotonic() + wait
    while True:
        try:
            with open(path, encoding="utf-8") as fh:
                return fh.read().strip() or None
        except OSError:
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.05)


def forget_startup_failure() -> None:
    """Forget a note left by an earlier pool's worker (a new pool starts afresh)."""
    with contextlib.suppress(OSError):
        os.remove(_note_path(os.getpid()))
