"""A run's output store: refused before anything is written, then created, replaced or joined.

The one place that decides what happens to an output: :func:`check_output`
refuses one the run may not make (before the transform is imported),
:func:`make_output` creates a new output from the plan's layouts, replaces
one this package wrote (``overwrite``), or joins one (``resume``, several
jobs writing into one plate), and records the settings that made it. The
caller hands values (the path, the layouts, the flags), not its settings.

A new plate is built under a temporary name and renamed into place, so jobs
that start together never see a half-written plate: the first rename wins,
the others join it. Joining changes metadata only under the plate's lock.
Overwrite replaces only an output this package wrote (:mod:`.replace`).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

from napari_process_position.core.errors import (
    InvalidStoreError,
    OutputExistsError,
    OutputWriteError,
    ProcessPositionError,
)
from napari_process_position.core.records import store_root
from napari_process_position.core.version import package_version
from napari_process_position.store.create import join_output, write_output
from napari_process_position.store.layout import OmeVersion, OutputLayout
from napari_process_position.store.locks import WriterLock, hold_output, plate_lock
from napari_process_position.store.provenance import (
    read_provenance,
    same_settings,
    write_provenance,
)
from napari_process_position.store.replace import (
    building_beside,
    check_replaceable,
    existing_output_error,
    replace_store,
)

__all__ = ["check_output", "claim_output", "make_output", "output_root"]


def output_root(output: str | os.PathLike[str]) -> Path:
    """Return where an output goes: the path given, absolute, links resolved."""
    return Path(output).expanduser().resolve()


def check_output(
    output: str | os.PathLike[str], input_path: str, *, overwrite: bool, resume: bool
) -> None:
    """Refuse an output the run may not make, before anything is written or deleted.

    Raises
    ------
    InvalidStoreError
        The output is the input, inside it, or holds it.
    OutputExistsError
        The output exists and neither overwrite nor resume was asked for, or
        either was asked for but this package did not write what is there.
    """
    given = Path(output).expanduser()
    out_root = given.resolve()
    input_root = Path(store_root(input_path))
    where = "" if input_root == Path(input_path) else f" (its store {input_root})"
    if out_root in (input_root, Path(input_path)):
        problem = f"is the input{where}"
    elif input_root in out_root.parents:
        problem = f"is inside the input{where}"
    elif out_root in input_root.parents:
        problem = f"contains the input {input_root}"
    else:
        problem = ""
    if problem:
        raise InvalidStoreError(f"the output {out_root} {problem}; choose another output path")
    if overwrite or resume:
        # (--resume writes into what is there: only into a store this package wrote)
        check_replaceable(given)
    elif os.path.lexists(out_root):
        raise existing_output_error(given)


def claim_output(
    output: str | os.PathLike[str],
    layouts: dict[str, OutputLayout],
    *,
    plate: bool,
    version: OmeVersion,
    overwrite: bool = False,
    resume: bool = False,
    settings: dict[str, Any] | None = None,
    wait: bool | float = False,
) -> tuple[WriterLock, dict[str, str]]:
    """Take the writer locks of an output's positions, then make it (:func:`make_output`).

    One writer per output position: the locks come before anything is
    created or replaced (overwrite deletes the old output), and stay with the
    caller, who releases them when its run ends. A plate output: a shared lock
    on the output and an exclusive one per position, or an exclusive lock on
    the whole output when ``overwrite`` replaces it; a single-position output:
    exclusive (:func:`.locks.hold_output`).

    Parameters
    ----------
    output, layouts, plate, version, overwrite, resume, settings
        As :func:`make_output`.
    wait
        When another run is writing the output positions: False refuses at
        once, True waits for it to end, a number waits up to that many seconds.

    Returns
    -------
    WriterLock, dict
        The held locks, and position key -> output position path.

    Raises
    ------
    OutputInUseError
        Another run is writing (part of) the output; nothing is created or replaced.
    OutputExistsError, OutputWriteError
        As :func:`make_output` (the locks are released).
    """
    writers = hold_output(
        output_root(output), list(layouts) if plate else None, replace=overwrite, wait=wait
    )
    try:
        paths = make_output(
            output,
            layouts,
            plate=plate,
            version=version,
            overwrite=overwrite,
            resume=resume,
            settings=settings,
        )
    except BaseException:
        writers.release()
        raise
    return writers, paths


def make_output(
    output: str | os.PathLike[str],
    layouts: dict[str, OutputLayout],
    *,
    plate: bool,
    version: OmeVersion,
    overwrite: bool = False,
    resume: bool = False,
    settings: dict[str, Any] | None = None,
) -> dict[str, str]:
    """Create (or replace, or join) a run's output and record the settings that make it.

    The caller has checked the output first (:func:`check_output`) and holds
    its writer locks (:func:`.locks.hold_output`).

    Parameters
    ----------
    output
        The output store.
    layouts
        Position key -> what its output position holds (one key when
        ``plate`` is False: the output is that position).
    plate
        Make a plate of the positions ``layouts`` names, or (False) a single position.
    version
        ``"0.5"`` or ``"0.4"``.
    overwrite, resume
        Replace an output this package wrote; or join one (the positions it
        has must hold ``layouts``; a plate gets those it lacks).
    settings
        What made the output (plain JSON data), recorded in its root unless
        it already says the same; None records nothing (an empty plate made
        for someone else's transform).

    Returns
    -------
    dict
        Position key -> output position path.

    Raises
    ------
    OutputExistsError
        The output exists and neither overwrite nor resume was asked for, or
        it cannot hold this run's output, or overwrite was asked for but this
        package did not write what is there.
    OutputWriteError
        The output cannot be created (permission denied, disk full).
    """
    root = output_root(output)
    try:
        if root.exists() and not overwrite:
            if not resume:
                raise existing_output_error(root)
            _join(root, layouts, plate)
        else:
            _build(root, layouts, version, plate=plate, overwrite=overwrite, resume=resume)
        if settings is not None:
            _record_settings(root, settings)
    except ProcessPositionError:
        raise
    except OSError as exc:  # permission denied, disk full, read-only file system
        raise OutputWriteError(f"cannot create the output {root}: {exc.strerror or exc}") from exc
    if plate:
        return {k: os.path.join(root, *k.split("/")) for k in layouts}
    return dict.fromkeys(layouts, str(root))


def _build(
    root: Path,
    layouts: dict[str, OutputLayout],
    version: OmeVersion,
    *,
    plate: bool,
    overwrite: bool,
    resume: bool,
) -> None:
    """Build a new output beside ``root`` and put it in place: replacing what is there, or not.

    Jobs that start together never see a half-written plate and never both
    write its metadata: the first rename wins, the others join it (resume).
    """

    def build(at: Path) -> None:
        write_output(at, layouts, version, plate=plate, name=root.name)

    if overwrite:
        # The old store (ours, or refused) goes last, with its records.
        replace_store(root, build)
        return
    with building_beside(root) as tmp:
        try:
            build(tmp)
        except OSError as exc:  # name the output, not the temporary folder
            raise OutputWriteError(
                f"cannot create the output {root}: {exc.strerror or exc}"
            ) from exc
        try:
            os.rename(tmp, root)
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY) or not root.exists():
                raise
            if not resume:
                raise OutputExistsError(
                    f"{root} was created by another run meanwhile; use --resume to join it"
                ) from exc
            _join(root, layouts, plate)


def _join(root: Path, layouts: dict[str, OutputLayout], plate: bool) -> None:
    # Under the lock: another job may be adding its positions right now, and the plate
    # is consistent only between two such changes. When every position exists, nothing
    # is written; the layouts are only checked.
    with plate_lock(root):
        join_output(root, layouts, plate=plate)


def _record_settings(root: Path, settings: dict[str, Any]) -> None:
    """Write how the output is made into its root, unless it already says the same."""
    with plate_lock(root):
        found = read_provenance(root)
        if found is not None and same_settings(found["config"], settings):
            return  # a job of the same run (one position of an init-output plate, a resume)
        write_provenance(root, settings, package_version())
