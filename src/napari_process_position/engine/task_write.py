"""Storing what one task computed: its volumes written whole, then recorded complete.

A task's files are written whole, never read back (see :mod:`..store.shards`);
its pyramid levels are written each from the level before; its completion
records are written only once all of its volumes are stored, so that resume
never trusts a partial write. Imported by :mod:`.worker` in spawned worker
processes: it stays as light (numpy, tensorstore, core, zarr-free store).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from napari_process_position.core import records as _progress
from napari_process_position.core.errors import OutputWriteError
from napari_process_position.core.pyramid import downsample_mean
from napari_process_position.core.records import ChunkGrid
from napari_process_position.core.tasks import Task, channel_label
from napari_process_position.store.arrays import open_array_once, selection
from napari_process_position.store.shards import RowRewrite, lost_text, rewrite_rows

__all__ = ["store_volumes"]

#: The worker's logger: what goes wrong in writing a task is the worker's to say.
log = logging.getLogger("napari_process_position.engine.worker")


def store_volumes(target: Any, task: Task, volumes: dict[int, np.ndarray | None]) -> float:
    """Write a task's volumes (None: skipped, left at the fill value), then their records.

    Returns the seconds of writing per volume (what a :class:`~..core.tasks.Result`
    reports as its write time; the records are not counted).
    """
    start = time.perf_counter()
    outcomes = _write_volumes(target, task, volumes)
    write_s = (time.perf_counter() - start) / max(1, len(volumes))
    _record(task, volumes, outcomes)
    return write_s


def _write_volumes(
    target: Any, task: Task, volumes: dict[int, np.ndarray | None]
) -> list[RowRewrite]:
    """Write the task's volumes whole (see :mod:`..store.shards`); a failure names the block."""
    grid = task.output_grid
    if grid is None:  # pragma: no cover - every planned task with an output has its grid
        raise OutputWriteError(f"no file layout known for {task.output_array}")
    outcomes = _rewrite(target, grid, task, volumes, str(task.output_array))
    if grid.levels:
        _write_levels(task, grid, volumes)
    lost = lost_text(outcomes)
    if lost:
        log.warning(
            "%s: a file shared with volumes outside this run was unreadable (torn or damaged); "
            "it was rewritten, and these volumes now hold the fill value: %s. Rerun them.",
            task.output_array,
            lost,
        )
    return outcomes


def _write_levels(task: Task, grid: ChunkGrid, volumes: dict[int, np.ndarray | None]) -> None:
    """Write the pyramid levels of the task's volumes, each from the level before.

    Their files are written whole as level 0's are (a torn one is replaced); a
    skipped volume leaves every level at the fill value.
    """
    current = dict(volumes)
    for level in grid.levels:
        current = {t: None if v is None else downsample_mean(v) for t, v in current.items()}
        where = f"the pyramid level {level.array_path}"
        try:
            target = open_array_once(
                level.array_path, task.output_zarr_format, write=True, run_id=task.run_id
            )
        except Exception as exc:
            raise _write_error(task, volumes, where, exc) from exc
        _rewrite(target, level, task, current, where)


def _rewrite(
    target: Any, grid: ChunkGrid, task: Task, volumes: dict[int, np.ndarray | None], where: str
) -> list[RowRewrite]:
    """Write volumes whole into one array (level 0 or a pyramid level); a failure names them."""
    try:
        return rewrite_rows(
            target, grid, volumes, selection(task.output_channels), task.output_channel_list()
        )
    except Exception as exc:
        raise _write_error(task, volumes, where, exc) from exc


def _write_error(
    task: Task, volumes: dict[int, np.ndarray | None], where: str, exc: BaseException
) -> OutputWriteError:
    times = ",".join(str(t) for t in sorted(volumes))
    return OutputWriteError(
        f"writing t={times}, c={channel_label(task.output_channels)} to {where} failed: {exc}"
    )


def _record(task: Task, volumes: dict[int, np.ndarray | None], outcomes: list[RowRewrite]) -> None:
    """Write the completion records of a task's volumes, once all of them are stored."""
    progress_dir, grid = task.progress_dir, task.output_grid
    if progress_dir is None or grid is None:
        return
    channels = task.output_channel_list()
    pairs = dict(zip(task.output_time_indices, task.input_time_indices, strict=True))
    try:
        for t_out, volume in volumes.items():
            _progress.record(
                progress_dir,
                task.record_name(t_out),
                identity=task.volume_identity(pairs[t_out], t_out),
                status="written" if volume is not None else "skipped",
                files=grid.stat(grid.record_files(t_out, channels)),
            )
        # Volumes outside the task whose files were rewritten: a kept one keeps its
        # record (with the new file stats); a lost one loses it.
        for outcome in outcomes:
            for t, c in outcome.kept + outcome.lost:
                name = _progress.record_name(t, str(c))
                if (t, c) in outcome.lost:
                    _progress.remove(progress_dir, name)
                    continue
                meta = grid.stat([grid.meta_file])
                _progress.restat(
                    progress_dir,
                    name,
                    {**{k: outcome.before[k] for k in grid.volume_files(t, [c])}, **meta},
                    {**{k: outcome.after[k] for k in grid.volume_files(t, [c])}, **meta},
                )
    except OSError as exc:
        raise OutputWriteError(
            f"recording t={','.join(map(str, volumes))}, c={channel_label(task.output_channels)} "
            f"as complete in {progress_dir} failed: {exc}"
        ) from exc
