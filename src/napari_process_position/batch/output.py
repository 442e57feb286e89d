"""Making a batch's output: create, replace or join the plate, and record how it is made.

A new plate is built under a temporary name and renamed into place, so jobs
that start together never see a half-written plate: the first rename wins,
the others join it. Joining changes metadata only under the plate's lock.
Overwrite replaces only an output this package wrote (``store.replace``).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

from napari_process_position.batch.config import RunConfig
from napari_process_position.core.errors import (
    InvalidStoreError,
    OutputExistsError,
    OutputWriteError,
    ProcessPositionError,
)
from napari_process_position.core.records import store_root
from napari_process_position.store.create import create_output_position, write_empty_plate
from napari_process_position.store.layout import OutputLayout, StoreInfo, layout_differences
from napari_process_position.store.locks import plate_lock
from napari_process_position.store.metadata import open_store, read_position
from napari_process_position.store.replace import (
    building_beside,
    check_replaceable,
    existing_output_error,
    replace_store,
)

__all__ = ["check_output", "create_plate", "make_output", "provenance_config"]


def create_plate(out_root: Path, layouts: dict[str, OutputLayout], config: RunConfig) -> StoreInfo:
    """Create (or, with resume, join) the output plate; safe with concurrent jobs.

    A new plate is built under a temporary name and renamed into place, so
    jobs that start together never see a half-written plate and never both
    write its metadata: the first rename wins, the others join it. Joining an
    existing plate whose positions match changes no metadata; adding missing
    positions happens under a file lock.
    """
    exists = out_root.exists()
    if config.overwrite or (exists and not config.resume):
        # Replace what this package wrote (the old store goes last, with its records), or
        # refuse with OutputExistsError (the store is left untouched).
        return write_empty_plate(
            out_root, layouts, version=config.ome_version, overwrite=config.overwrite
        )
    if exists:
        return _join_plate(out_root, layouts, config)
    with building_beside(out_root) as tmp:
        try:
            write_empty_plate(tmp, layouts, version=config.ome_version)
        except OSError as exc:  # name the output, not the temporary folder
            raise OutputWriteError(
                f"cannot create the output {out_root}: {exc.strerror or exc}"
            ) from exc
        try:
            os.rename(tmp, out_root)
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY) or not out_root.exists():
                raise
            if not config.resume:
                raise OutputExistsError(
                    f"{out_root} was created by another run meanwhile; use --resume to join it"
                ) from exc
            return _join_plate(out_root, layouts, config)
    return open_store(out_root)


def _join_plate(out_root: Path, layouts: dict[str, OutputLayout], config: RunConfig) -> StoreInfo:
    # Under the lock: another job may be adding its positions right now, and the plate
    # is consistent only between two such changes. When every position exists, nothing
    # is written; the layouts are only checked.
    with plate_lock(out_root):
        return write_empty_plate(out_root, layouts, version=config.ome_version, exist_ok=True)


def check_output(config: RunConfig, store: StoreInfo) -> None:
    """Refuse an output the run may not make, before anything is written or deleted.

    Raises
    ------
    OutputExistsError
        The output exists and neither overwrite nor resume was asked for, or
        either was asked for but this package did not write what is there.
    """
    if not config.output:
        return
    given = Path(config.output).expanduser()
    out_root = given.resolve()
    input_root = Path(store_root(store.path))
    where = "" if input_root == Path(store.path) else f" (its store {input_root})"
    if out_root in (input_root, Path(store.path)):
        problem = f"is the input{where}"
    elif input_root in out_root.parents:
        problem = f"is inside the input{where}"
    elif out_root in input_root.parents:
        problem = f"contains the input {input_root}"
    else:
        problem = ""
    if problem:
        raise InvalidStoreError(f"the output {out_root} {problem}; choose another output path")
    if config.overwrite or config.resume:
        # (--resume writes into what is there: only into a store this package wrote)
        check_replaceable(given)
    elif os.path.lexists(out_root):
        raise existing_output_error(given)


def make_output(
    config: RunConfig,
    store: StoreInfo,
    keys: list[str],
    layouts: dict[str, OutputLayout],
    output_paths: dict[str, str | None],
    *,
    record_settings: bool = True,
) -> dict[str, str | None]:
    """Create (or replace, or join) the output of a run and record how it is made.

    The caller has checked the output first (:func:`check_output`, before the
    transform is imported and anything is written).

    ``record_settings=False`` leaves the settings out of the output (an empty
    plate made for someone else's transform).

    Returns
    -------
    dict
        Position key -> output position path (``output_paths`` unchanged for a
        preview without output).

    Raises
    ------
    OutputExistsError
        The output exists and neither overwrite nor resume was asked for, or
        it cannot hold this run's output, or overwrite was asked for but this
        package did not write what is there.
    OutputWriteError
        The output cannot be created (permission denied, disk full).
    """
    if config.output:
        out_root = Path(config.output).expanduser().resolve()
        try:
            if store.kind == "plate":
                create_plate(out_root, layouts, config)
                output_paths = {k: os.path.join(out_root, *k.split("/")) for k in keys}
            else:
                key = keys[0]
                _make_output_position(out_root, layouts[key], config)
                output_paths = {key: str(out_root)}
            if record_settings:
                _note_provenance(out_root, config)
        except ProcessPositionError:
            raise
        except OSError as exc:  # permission denied, disk full, read-only file system
            raise OutputWriteError(
                f"cannot create the output {out_root}: {exc.strerror or exc}"
            ) from exc
    return output_paths


def _make_output_position(out_root: Path, layout: OutputLayout, config: RunConfig) -> None:
    """Create (or check, on resume) the output of a single input position."""
    if config.overwrite:
        replace_store(
            out_root,
            lambda at: create_output_position(
                at, layout, version=config.ome_version, name=out_root.name
            ),
        )
        return
    if out_root.exists() and not config.resume:
        raise existing_output_error(out_root)
    if out_root.exists():
        differences = layout_differences(read_position(out_root), layout)
        if differences:
            raise OutputExistsError(
                f"{out_root} cannot hold this run's output: {'; '.join(differences)}. "
                "Use --overwrite (overwrite=True) to replace it, or another output path"
            )
        return
    create_output_position(out_root, layout, version=config.ome_version)


def provenance_config(config: RunConfig) -> dict[str, Any]:
    """Return the settings an output records about the run that made it.

    Paths are absolute, so that ``run --config OUTPUT`` works from any folder.
    """
    changes: dict[str, Any] = {"resume": False, "overwrite": False}
    changes["input"] = str(Path(config.input).expanduser().resolve())
    if config.output:
        changes["output"] = str(Path(config.output).expanduser().resolve())
    return config.model_copy(update=changes).model_dump(mode="json")


def _note_provenance(out_root: Path, config: RunConfig) -> None:
    """Write how the output is made into its root, unless it already says the same."""
    from napari_process_position.core.version import package_version
    from napari_process_position.store.provenance import (
        read_provenance,
        same_settings,
        write_provenance,
    )

    settings = provenance_config(config)
    with plate_lock(out_root):
        found = read_provenance(out_root)
        if found is not None and same_settings(found["config"], settings):
            return  # a job of the same run (one position of an init-output plate, a resume)
        write_provenance(out_root, settings, package_version())
