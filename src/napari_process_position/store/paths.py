"""Paths the package writes to: no control characters, and links said out loud.

zarr drops some control characters (a newline, a tab) from a store's path, so
a name typed with a newline inside would be written under the name without it,
an unrelated store. Such a path is refused before anything is read or written.
"""

from __future__ import annotations

import os

from napari_process_position.core.errors import InvalidArgumentError

__all__ = ["check_path_text", "link_target"]


def check_path_text(path: str | os.PathLike[str], what: str = "path") -> None:
    """Refuse a path that holds control characters (newline, tab, ...).

    Raises
    ------
    InvalidArgumentError
        Naming the character and its position.
    """
    text = os.fspath(path)
    for i, char in enumerate(text):
        if ord(char) < 32 or 127 <= ord(char) < 160:  # C0, DEL and C1 control characters
            raise InvalidArgumentError(
                f"the {what} {text!r} holds a control character ({char!r} at position {i}); "
                "give a path without newlines or tabs"
            )


def link_target(path: str | os.PathLike[str]) -> str | None:
    """Return where ``path`` leads when a symbolic link on its way makes it lead elsewhere."""
    given = os.path.abspath(os.path.expanduser(os.fspath(path)))
    real = os.path.realpath(given)
    return real if real != given else None
