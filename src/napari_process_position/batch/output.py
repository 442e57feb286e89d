"""Making a batch's output: create, replace or join the plate, and record how it is made.

A new plate is built under a temporary name and renamed into place, so jobs
that start together never see a half-written plate: the first rename wins,
the others join it. Joining changes metadata only under the plate's lock.
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from napari_process_position.batch.config import RunConfig
from napari_process_position.core import records as _progress
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

__all__ = ["create_plate", "make_output", "provenance_config"]


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
        # Replace it, or refuse with OutputExistsError (the store is left untouched).
        store = write_empty_plate(
            out_root, layouts, version=config.ome_version, overwrite=config.overwrite
        )
        _progress.remove_store_records(out_root)  # the records of the store it replaced
        return store
    if exists:
        return _join_plate(out_root, layouts, config)
    tmp = out_root.parent / f".{out_root.name}.creating-{uuid.uuid4().hex[:12]}"
    try:
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
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return open_store(out_root)


def _join_plate(out_root: Path, layouts: dict[str, OutputLayout], config: RunConfig) -> StoreInfo:
    # Under the lock: another job may be adding its positions right now, and the plate
    # is consistent only between two such changes. When every position exists, nothing
    # is written; the layouts are only checked.
    with plate_lock(out_root):
        return write_empty_plate(out_root, layouts, version=config.ome_version, exist_ok=True)


def _same_or_inside(a: Path, b: Path) -> bool:
    return a == b or b in a.parents or a in b.parents


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

    ``record_settings=False`` leaves the settings out of the output (an empty
    plate made for someone else's transform).

    Returns
    -------
    dict
        Position key -> output position path (``output_paths`` unchanged for a
        preview without output).

    Raises
    ------
    InvalidStoreError
        The output is the input, or inside its store.
    OutputExistsError
        The output exists and neither overwrite nor resume was asked for, or
        it cannot hold this run's output.
    OutputWriteError
        The output cannot be created (permission denied, disk full).
    """
    if config.output:
        out_root = Path(config.output).expanduser().resolve()
        input_root = Path(store_root(store.path))
        if _same_or_inside(out_root, input_root):
            where = "" if input_root == Path(store.path) else f" (its store {input_root})"
            raise InvalidStoreError(
                f"the output {out_root} is the input{where} or inside it; choose another "
                "output path"
            )
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
    if out_root.exists() and not (config.overwrite or config.resume):
        raise OutputExistsError(
            f"{out_root} already exists; use --overwrite (overwrite=True) to replace it "
            "or --resume (resume=True) to continue it"
        )
    if out_root.exists() and config.resume:
        differences = layout_differences(read_position(out_root), layout)
        if differences:
            raise OutputExistsError(
                f"{out_root} cannot hold this run's output: {'; '.join(differences)}. "
                "Use --overwrite (overwrite=True) to replace it, or another output path"
            )
        return
    if out_root.exists():
        shutil.rmtree(out_root)
        _progress.remove_store_records(out_root)
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
