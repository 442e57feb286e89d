"""A run's output store: refused before anything is written, then created, replaced or joined.

The one place that decides what happens to an output: :func:`check_output`
refuses one the run may not make (before the transform is imported);
:func:`claim_output` takes its writer locks, then, in one pass, reads what a
joined output has (:mod:`.metadata`), makes what to write once (the whole
output, or the positions a joined one lacks, once those it has are known to
fit: :mod:`.nodes`), writes it (:mod:`.create`) and records the settings that
made it (:mod:`.provenance`). The caller hands values (the path, the layouts,
the flags), not its settings.

A new output is built under a temporary name and renamed into place
(:mod:`.replace`), so jobs that start together never see a half-written
plate: the first rename wins, the others join it. Joining changes metadata
only under the plate's lock. Overwrite replaces only an output this package
wrote.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from napari_process_position.core.errors import (
    InvalidStoreError,
    OutputWriteError,
    ProcessPositionError,
)
from napari_process_position.core.records import store_root
from napari_process_position.store.create import joined_nodes, write_nodes
from napari_process_position.store.layout import OmeVersion, OutputLayout
from napari_process_position.store.locks import WriterLock, hold_output, plate_lock
from napari_process_position.store.nodes import output_nodes
from napari_process_position.store.replace import (
    check_replaceable,
    existing_output_error,
    place_new_store,
    replace_store,
)

__all__ = ["check_output", "claim_output", "output_root"]


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
    """Take the writer locks of an output's positions, then create, replace or join it.

    One writer per output position: the locks come before anything is
    created or replaced (overwrite deletes the old output), and stay with the
    caller, who releases them when its run ends. A plate output: a shared lock
    on the output and an exclusive one per position, or an exclusive lock on
    the whole output when ``overwrite`` replaces it; a single-position output:
    exclusive (:func:`.locks.hold_output`). Then, in one pass: what a joined
    output has is read, what to write is made once (:func:`.nodes.output_nodes`),
    written (:func:`.create.write_nodes`) and the settings recorded; a new
    output is built beside its path and put in place (:mod:`.replace`), a
    joined one changed in place under its plate lock. The caller has checked
    the output first (:func:`check_output`).

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
    OutputExistsError
        The output exists and neither overwrite nor resume was asked for, or
        it cannot hold this run's output, or overwrite was asked for but this
        package did not write what is there (the locks are released).
    OutputWriteError
        The output cannot be created (permission denied, disk full; the locks
        are released).
    """
    root = output_root(output)
    if plate:
        paths = {k: os.path.join(root, *k.split("/")) for k in layouts}
    else:
        paths = dict.fromkeys(layouts, str(root))
    writers = hold_output(root, list(layouts) if plate else None, replace=overwrite, wait=wait)
    joining = resume and not overwrite and root.exists()
    try:
        while True:
            if joining:
                # Under the plate's lock: another job may be adding its positions, and the
                # plate is consistent only between two such changes. The positions it has
                # must hold this run's; it gets those it lacks.
                with plate_lock(root):
                    nodes = joined_nodes(root, layouts, version, plate=plate)
                    write_nodes(root, nodes, None, settings)
                break
            # A new output is built beside and renamed whole: it needs no lock.
            nodes = output_nodes(layouts, version, plate=plate, name=root.name)
            build = functools.partial(write_nodes, nodes=nodes, made="output", settings=settings)
            if overwrite:  # the old store (ours, or refused) goes last, with its records
                replace_store(root, build)
                break
            if place_new_store(root, build, may_join=resume):
                break
            joining = True  # another job's rename won meanwhile: join the output it made
    except BaseException as exc:
        writers.release()
        if isinstance(exc, OSError) and not isinstance(exc, ProcessPositionError):
            # permission denied, disk full, read-only file system: name the output, not
            # the temporary folder it was built in
            raise OutputWriteError(
                f"cannot create the output {root}: {exc.strerror or exc}"
            ) from exc
        raise
    return writers, paths
