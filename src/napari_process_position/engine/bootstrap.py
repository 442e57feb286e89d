"""A script without ``if __name__ == "__main__":``, seen from both sides of a spawn.

A spawned worker starts by importing the caller's main module. A script that
calls :func:`process_single_position` (or makes a process pool) at its top
level makes each worker do the same while it is still starting, which
multiprocessing forbids: the worker exits with code 1, and the caller would
only see a worker that died. The worker leaves a note for its parent here,
and the parent's error then names the real cause and the fix.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import sys
import tempfile

from napari_process_position.core.errors import UsageError

__all__ = ["GUARD_ADVICE", "refuse_while_bootstrapping", "unguarded_script"]

GUARD_ADVICE = (
    "spawned worker processes import the script again, so put the call under "
    '`if __name__ == "__main__":` (Python\'s multiprocessing rule for spawn)'
)


def _note_path(parent_pid: int) -> str:
    return os.path.join(tempfile.gettempdir(), f"npp-unguarded-main-{parent_pid}")


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
    script = getattr(main, "__file__", None) or "the main module"
    with contextlib.suppress(OSError), open(_note_path(os.getppid()), "w") as fh:
        fh.write(os.path.abspath(script))
    raise UsageError(f"{script} starts worker processes at its top level: {GUARD_ADVICE}")


def unguarded_script(parent_pid: int | None = None) -> str | None:
    """Return the script a worker of this process found unguarded (and forget the note)."""
    path = _note_path(os.getpid() if parent_pid is None else parent_pid)
    try:
        with open(path, encoding="utf-8") as fh:
            script = fh.read().strip()
    except OSError:
        return None
    with contextlib.suppress(OSError):
        os.remove(path)
    return script or None
