"""Write a task's volumes into the output's shard (or chunk) files, whole.

A stored file (a shard in Zarr v3, a chunk in Zarr v2) may hold several
time points when the output is sharded along T, and its grid may overhang the
array. Writing one volume into such a file is a read-modify-write, and a file
torn by a killed job then fails every retry with ``DATA_LOSS``. So a task
never writes into an existing file:

- the files of each grid row it touches are deleted and written anew, in
  one transaction (one encode per file, nothing read back);
- volumes of that row that the task does not write (time points outside the
  selection, or other channels of a chunk that spans channels) are read
  first, one by one, and written back with the task's own; a volume that
  cannot be read (the file is torn) is reported as lost, to be recomputed.

A skipped (empty) volume is simply not written: its files are gone, so it
reads as the fill value, as in a fresh output. numpy, tensorstore and the
standard library only: spawned workers import this.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_process_position.core.errors import OutputWriteError
from napari_process_position.core.records import ChunkGrid

__all__ = ["RewriteError", "RowRewrite", "Selection", "lost_text", "rewrite_rows"]

#: How a task addresses channels in tensorstore: one index (ZYX) or several (CZYX).
Selection = int | list[int] | slice


@dataclass
class RowRewrite:
    """What rewriting one grid row did to volumes outside the task.

    Attributes
    ----------
    row
        The grid row (``t // grid[0]``).
    kept
        (t, c) volumes outside the task that were read and written back.
    lost
        (t, c) volumes outside the task that could not be read (a torn or
        damaged file); they now read as the fill value.
    before, after
        Stats of the row's files before and after, to carry the records of
        kept volumes over the rewrite.
    """

    row: int
    kept: list[tuple[int, int]] = field(default_factory=list)
    lost: list[tuple[int, int]] = field(default_factory=list)
    before: dict[str, list[int] | None] = field(default_factory=dict)
    after: dict[str, list[int] | None] = field(default_factory=dict)


class RewriteError(OutputWriteError):
    """Deleting or writing a file failed; the message names the volume."""


def _chunk_channels(grid: ChunkGrid, channels: list[int]) -> list[int]:
    """Every channel that shares a file with ``channels`` (itself, unless chunks span C)."""
    size = grid.grid[1]
    spans = {c // size for c in channels}
    return [c for c in range(grid.shape[1]) if c // size in spans]


def rewrite_rows(
    target: Any,
    grid: ChunkGrid,
    volumes: Mapping[int, np.ndarray | None],
    selection: Selection,
    channels: list[int],
) -> list[RowRewrite]:
    """Write ``volumes`` (output time -> array, None for an empty one) of one channel group.

    Parameters
    ----------
    target
        The output array, opened by tensorstore for writing.
    grid
        Where the output's files are.
    volumes
        Time index -> the ZYX/CZYX array to store there, or None to leave the
        volume at the fill value.
    selection
        The channel group as tensorstore indexes it (int for ZYX, list or
        slice for CZYX).
    channels
        The channel indices the group covers.

    Raises
    ------
    RewriteError
        A file could not be deleted or written (disk full, permission denied).
    """
    import tensorstore as ts

    outcomes = []
    size = grid.grid[0]
    for row in sorted({t // size for t in volumes}):
        mine = {t: v for t, v in volumes.items() if t // size == row}
        outcome = RowRewrite(row)
        keys = grid.row_files(row, _chunk_channels(grid, channels))
        outcome.before = grid.stat(keys)
        kept: dict[tuple[int, int], np.ndarray] = {}
        if any(s is not None for s in outcome.before.values()):
            for t in grid.row_times(row):
                for c in _chunk_channels(grid, channels):
                    if t in mine and c in channels:
                        continue
                    try:
                        kept[(t, c)] = target[t][c].read().result()
                    except Exception:
                        outcome.lost.append((t, c))
        outcome.kept = sorted(kept)
        for key in keys:
            try:
                os.remove(grid.path_of(key))
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise RewriteError(
                    f"cannot replace {grid.path_of(key)}: {exc.strerror or exc}"
                ) from exc
        writes = [(target[t][selection], v) for t, v in sorted(mine.items()) if v is not None]
        writes += [(target[t][c], v) for (t, c), v in kept.items()]
        if writes:
            with ts.Transaction() as txn:
                for region, value in writes:
                    # Encode straight from the array (no copy): nothing changes it later,
                    # and the copy made a worker's peak out + copy + encoded shard.
                    region.with_transaction(txn).write(
                        value, can_reference_source_data_indefinitely=True
                    ).result()
        outcome.after = grid.stat(keys)
        outcomes.append(outcome)
    return outcomes


def lost_text(outcomes: list[RowRewrite]) -> str:
    """``t=3, c=0; t=4, c=0`` for the volumes a rewrite could not keep."""
    return "; ".join(f"t={t}, c={c}" for o in outcomes for t, c in o.lost)
