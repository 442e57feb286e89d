"""Replacing an output: only what this package wrote, and the old one removed last.

``--overwrite`` (``overwrite=True``) may replace an output plate or position
this package created, a demo plate it wrote, or an empty folder; anything
else at the path (a folder of other files, a plain file, a Zarr or OME-Zarr
store another tool wrote) is refused before anything is written or deleted.
A replacement is built under a temporary name beside the old store; the old
one is moved aside, the new one renamed into place, and only then is the old
one deleted, so a refused or failed replacement leaves the old store as it
was. A new store is built the same way, and renamed into place only where
nothing is (:func:`place_new_store`).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from napari_process_position.core.errors import InvalidStoreError, OutputExistsError
from napari_process_position.core.records import remove_store_records
from napari_process_position.store.metadata import group_attrs
from napari_process_position.store.provenance import written_here

__all__ = [
    "building_beside",
    "check_replaceable",
    "existing_output_error",
    "place_new_store",
    "replace_store",
]

log = logging.getLogger(__name__)

#: Files counted, at most, to describe a folder that is not ours (a raw plate has millions).
_MAX_COUNTED = 10_000


def _named(path: str | os.PathLike[str]) -> tuple[str, Path]:
    """Return the path as the user gave it (absolute), and where it leads (links resolved)."""
    given = os.path.abspath(os.path.expanduser(os.fspath(path)))
    real = Path(os.path.realpath(given))
    shown = given if str(real) == given else f"{given} (a link to {real})"
    return shown, real


def _zarr_kind(path: Path) -> str | None:
    """Say what kind of Zarr store ``path`` is, or return None when it is none."""
    if (path / ".zarray").is_file():
        return "a Zarr array"
    try:
        found = group_attrs(path)
    except InvalidStoreError:
        return "a Zarr store whose metadata cannot be read"
    if found is None:
        return None
    attrs = found[1]
    if "plate" in attrs:
        return "an OME-Zarr plate"
    if "multiscales" in attrs:
        return "an OME-Zarr image"
    if "bioformats2raw.layout" in attrs:
        return "an OME-Zarr collection (bioformats2raw)"
    return "a Zarr store"


def _raise(exc: OSError) -> None:
    raise exc


def _folder_contents(path: Path) -> str:
    """Say what a folder holds: ``it holds 2 files, e.g. Documents/thesis.txt``."""
    files: list[str] = []
    folders = 0
    for root, dirs, names in os.walk(path, onerror=_raise):
        dirs.sort()
        folders += len(dirs)
        files += sorted(os.path.relpath(os.path.join(root, n), path) for n in names)
        if len(files) >= _MAX_COUNTED:
            return f"it holds more than {_MAX_COUNTED} files, e.g. {min(files)}"
    if files:
        count = f"{len(files)} file" + ("s" if len(files) > 1 else "")
        return f"it holds {count}, e.g. {min(files)}"
    return f"it holds {folders} empty folder" + ("s" if folders > 1 else "")


def _what_is_there(path: Path) -> str:
    try:
        owner = next((p for p in path.parents if written_here(p)), None)
        if owner is not None:
            return f"it is inside the output {owner}, not a whole output"
        if not path.is_dir():
            if path.is_file():
                size = path.stat().st_size
                return f"it is a file of {size} byte" + ("s" if size != 1 else "")
            return "it is not a folder"
        kind = _zarr_kind(path)
        if kind is not None:
            return f"it is {kind} that process-position did not write"
        return _folder_contents(path)
    except OSError as exc:
        return f"it cannot be read: {exc.strerror or exc}"


def _is_ours(path: Path) -> bool:
    """Tell whether ``path`` is an empty folder or a store whose root carries our entry."""
    try:
        return path.is_dir() and (not any(path.iterdir()) or written_here(path))
    except OSError:  # a folder we may not list is not one we may delete
        return False


def check_replaceable(path: str | os.PathLike[str]) -> None:
    """Refuse to replace ``path`` unless it is absent or this package wrote it.

    Replaceable: nothing at ``path``, an empty folder, or a store whose root
    carries this package's provenance (an output it created, a demo plate).
    Links are followed: what decides is what the path leads to.

    Raises
    ------
    OutputExistsError
        Anything else is there; the message says what, and what to do.
    """
    shown, real = _named(path)
    if not os.path.lexists(real) or _is_ours(real):
        return
    raise OutputExistsError(
        f"{shown} is not an output of process-position ({_what_is_there(real)}); "
        "remove it yourself or choose another output"
    )


def existing_output_error(
    path: str | os.PathLike[str], *, resumable: bool = True
) -> OutputExistsError:
    """Return the error for an output that exists, when neither overwrite nor resume is set.

    It suggests ``--overwrite`` only for a store that may be replaced, and
    ``--resume`` only when ``resumable``.
    """
    shown, real = _named(path)
    if _is_ours(real):
        resume = " or --resume (resume=True) to continue it" if resumable else ""
        return OutputExistsError(
            f"{shown} already exists; use --overwrite (overwrite=True) to replace it{resume}"
        )
    return OutputExistsError(
        f"{shown} already exists and is not an output of process-position "
        f"({_what_is_there(real)}); choose another output"
    )


@contextlib.contextmanager
def building_beside(root: Path) -> Iterator[Path]:
    """Yield a fresh hidden path beside ``root`` to build under; whatever is left there goes."""
    tmp = root.parent / f".{root.name}.creating-{uuid.uuid4().hex[:12]}"
    try:
        yield tmp
    finally:
        if os.path.lexists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


def place_new_store(path: Path, build: Callable[[Path], object], *, may_join: bool) -> bool:
    """Build a new store with ``build(folder)`` beside ``path``, then rename it into place.

    Jobs that start together never see a half-built store, and never both
    write its metadata: the first rename wins.

    Returns
    -------
    bool
        False when a store is at ``path`` (there before, or another run's
        rename won meanwhile) and ``may_join`` is set: the caller joins it.

    Raises
    ------
    OutputExistsError
        A store is at ``path`` and ``may_join`` is not set (checked before
        anything is built, and again at the rename).
    OSError
        The new store cannot be built or renamed.
    """
    if path.exists():
        if not may_join:
            raise existing_output_error(path)
        return False
    with building_beside(path) as tmp:
        build(tmp)
        try:
            os.rename(tmp, path)
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY) or not path.exists():
                raise
            if not may_join:
                raise OutputExistsError(
                    f"{path} was created by another run meanwhile; use --resume to join it"
                ) from exc
            return False
    return True


def replace_store(path: str | os.PathLike[str], build: Callable[[Path], object]) -> Path:
    """Build a store with ``build(folder)`` and put it at ``path``, in place of what was there.

    What is at ``path`` must be replaceable (:func:`check_replaceable`); it is
    checked before anything is built and again before the swap. The old store
    is moved aside, the new one renamed into place, and the old one deleted
    last, so an error at any step leaves the old store as it was. The
    completion records of the old store are forgotten.

    Returns
    -------
    Path
        Where the new store is (``path`` with links resolved).

    Raises
    ------
    OutputExistsError
        What is at ``path`` is not this package's to replace.
    OSError
        The new store cannot be built or moved into place.
    """
    check_replaceable(path)
    root = _named(path)[1]
    with building_beside(root) as tmp:
        build(tmp)
        check_replaceable(path)  # a long build: nobody put something else there meanwhile
        if not os.path.lexists(root):
            os.rename(tmp, root)
        else:
            aside = root.parent / f".{root.name}.replaced-{uuid.uuid4().hex[:12]}"
            os.rename(root, aside)
            try:
                os.rename(tmp, root)
            except OSError:
                os.rename(aside, root)
                raise
            shutil.rmtree(aside, ignore_errors=True)
            if os.path.lexists(aside):
                log.warning("could not delete all of %s, the replaced output; remove it", aside)
    remove_store_records(root)
    return root
