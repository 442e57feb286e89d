"""The plan of a position: which (time, channel) blocks each task reads and writes.

The semantics are those of iohub 0.3's ``process_single_position``:

- channels are given as a list of *groups*; a group is a bare ``int`` (the
  transform gets a ZYX array), a list of ints or a slice (it gets CZYX);
  the default is one group per channel, ``[[0], [1], ...]``;
- times default to every time point; output indices default to the input
  ones and must pair up with them one to one;
- when the output's files (shards, or Zarr v2 chunks) hold several time
  points, the time points that share a file form one task, so that no two
  tasks write the same file.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np

from napari_process_position.core.errors import IndexOutOfRangeError, InvalidArgumentError
from napari_process_position.core.records import ChunkGrid, records_dir
from napari_process_position.core.tasks import ChannelIndex, Task
from napari_process_position.store.layout import PositionInfo

__all__ = ["normalise_channels", "normalise_times", "plan_tasks", "position_tasks"]


def _normalise_group(group: Any, n_channels: int, what: str) -> ChannelIndex:
    if isinstance(group, bool):
        raise InvalidArgumentError(
            f"{what}: a channel index must be an int, a list of ints or a slice, not {group!r}"
        )
    if isinstance(group, (int, np.integer)):
        index = int(group)
        if not -n_channels <= index < n_channels:
            raise IndexOutOfRangeError(
                f"{what}: channel {index} is out of range for {n_channels} channels"
            )
        return index
    if isinstance(group, slice):
        if not range(n_channels)[group]:
            raise IndexOutOfRangeError(f"{what}: {group} selects no channel out of {n_channels}")
        return group
    if isinstance(group, (list, tuple, np.ndarray)):
        items = [int(i) for i in group]
        if not items:
            raise InvalidArgumentError(f"{what}: an empty channel group")
        for index in items:
            if not -n_channels <= index < n_channels:
                raise IndexOutOfRangeError(
                    f"{what}: channel {index} is out of range for {n_channels} channels"
                )
        return tuple(items)
    raise InvalidArgumentError(
        f"{what}: a channel group must be an int, a list of ints or a slice, not {group!r}"
    )


def normalise_times(
    input_time_indices: Sequence[int] | None,
    output_time_indices: Sequence[int] | None,
    n_input_times: int,
    n_output_times: int | None,
) -> tuple[list[int], list[int]]:
    """Check and pair up input and output time indices (iohub defaults)."""
    if input_time_indices is None:
        times_in = list(range(n_input_times))
    else:
        if isinstance(input_time_indices, (int, np.integer)):
            raise InvalidArgumentError(
                f"input_time_indices must be a list of ints, not {input_time_indices!r}"
            )
        times_in = [int(t) for t in input_time_indices]
    if not times_in:
        raise InvalidArgumentError("input_time_indices selects no time point")
    for t in times_in:
        if not 0 <= t < n_input_times:
            raise IndexOutOfRangeError(
                f"input time index {t} is out of range: the input has {n_input_times} time points "
                f"(0 to {n_input_times - 1})"
            )
    times_out = times_in if output_time_indices is None else [int(t) for t in output_time_indices]
    if len(times_out) != len(times_in):
        raise InvalidArgumentError(
            f"output_time_indices has {len(times_out)} entries but input_time_indices has "
            f"{len(times_in)}; they pair up one to one"
        )
    if n_output_times is not None:
        for t in times_out:
            if not 0 <= t < n_output_times:
                raise IndexOutOfRangeError(
                    f"output time index {t} is out of range: the output has {n_output_times} "
                    "time points"
                )
    if len(set(times_out)) != len(times_out):
        raise InvalidArgumentError(f"output_time_indices repeats a time point: {times_out}")
    return times_in, times_out


def normalise_channels(
    input_channel_indices: Sequence[Any] | None,
    output_channel_indices: Sequence[Any] | None,
    n_input_channels: int,
    n_output_channels: int | None,
) -> tuple[list[ChannelIndex], list[ChannelIndex]]:
    """Check and pair up input and output channel groups (iohub defaults)."""
    if input_channel_indices is None:
        groups_in: list[ChannelIndex] = [(c,) for c in range(n_input_channels)]
        raw_out = output_channel_indices
    else:
        if isinstance(input_channel_indices, (int, np.integer, slice)):
            raise InvalidArgumentError(
                "input_channel_indices must be a list of channel groups, e.g. [[0], [1]] or "
                "[0, 1], "
                f"not {input_channel_indices!r}"
            )
        groups_in = [
            _normalise_group(g, n_input_channels, "input_channel_indices")
            for g in input_channel_indices
        ]
        raw_out = output_channel_indices
    if not groups_in:
        raise InvalidArgumentError("input_channel_indices selects no channel")
    n_out = n_output_channels if n_output_channels is not None else n_input_channels
    if raw_out is None:
        groups_out = list(groups_in)
        for g in groups_out:
            _normalise_group(
                g if not isinstance(g, tuple) else list(g), n_out, "output_channel_indices"
            )
    else:
        if isinstance(raw_out, (int, np.integer, slice)):
            raise InvalidArgumentError(
                f"output_channel_indices must be a list of channel groups, not {raw_out!r}"
            )
        groups_out = [_normalise_group(g, n_out, "output_channel_indices") for g in raw_out]
    if len(groups_out) != len(groups_in):
        raise InvalidArgumentError(
            f"output_channel_indices has {len(groups_out)} groups but input_channel_indices has "
            f"{len(groups_in)}; they pair up one to one"
        )
    return groups_in, groups_out


def _shard_batches(
    times_in: list[int], times_out: list[int], shard_t: int
) -> list[tuple[list[int], list[int]]]:
    if shard_t <= 1:
        return [([ti], [to]) for ti, to in zip(times_in, times_out, strict=True)]
    batches: dict[int, tuple[list[int], list[int]]] = {}
    for ti, to in sorted(zip(times_in, times_out, strict=True), key=lambda p: p[1]):
        batch = batches.setdefault(to // shard_t, ([], []))
        batch[0].append(ti)
        batch[1].append(to)
    return list(batches.values())


def plan_tasks(
    *,
    input_array: str,
    input_zarr_format: int,
    input_shape: Sequence[int],
    output_array: str | None,
    output_zarr_format: int | None,
    output_shape: Sequence[int] | None,
    output_dtype: str | None,
    output_shards: Sequence[int] | None,
    input_channel_indices: Sequence[Any] | None = None,
    output_channel_indices: Sequence[Any] | None = None,
    input_time_indices: Sequence[int] | None = None,
    output_time_indices: Sequence[int] | None = None,
    progress_dir: str | None = None,
    identity: str = "",
    output_grid: ChunkGrid | None = None,
    strict_dtype: bool = False,
    input_axes: str = "tczyx",
    output_axes: str = "tczyx",
    run_id: str = "",
) -> list[Task]:
    """Build the list of tasks for one position, channel groups outermost (as iohub).

    Raises
    ------
    IndexOutOfRangeError
        An index outside the input or output (also an ``IndexError`` and a
        ``ValueError``).
    ValueError, TypeError
        Indices that do not pair up, or of the wrong kind.
    """
    n_out_t = output_shape[0] if output_shape is not None else None
    n_out_c = output_shape[1] if output_shape is not None else None
    times_in, times_out = normalise_times(
        input_time_indices, output_time_indices, input_shape[0], n_out_t
    )
    groups_in, groups_out = normalise_channels(
        input_channel_indices, output_channel_indices, input_shape[1], n_out_c
    )
    if output_shards is not None and output_shards[1] != 1:
        raise InvalidArgumentError(
            f"the output is sharded along channels (shard shape {tuple(output_shards)}); "
            "only shards one channel wide are supported"
        )
    # Time points that share a stored file (a shard, or a v2 chunk) form one task.
    if output_grid is not None:
        shard_t = int(output_grid.grid[0])
    else:
        shard_t = int(output_shards[0]) if output_shards is not None else 1
    batches = _shard_batches(times_in, times_out, shard_t)
    tasks = []
    for index, ((c_in, c_out), (t_in, t_out)) in enumerate(
        itertools.product(zip(groups_in, groups_out, strict=True), batches)
    ):
        tasks.append(
            Task(
                index=index,
                input_array=input_array,
                input_zarr_format=input_zarr_format,
                input_axes=input_axes,
                output_axes=output_axes,
                input_time_indices=tuple(t_in),
                input_channels=c_in,
                output_array=output_array,
                output_zarr_format=output_zarr_format,
                output_time_indices=tuple(t_out),
                output_channels=c_out,
                output_shape=tuple(output_shape) if output_shape is not None else None,
                output_dtype=output_dtype,
                progress_dir=progress_dir,
                identity=identity,
                output_grid=output_grid,
                strict_dtype=strict_dtype,
                input_channel_count=int(input_shape[1]),
                run_id=run_id,
            )
        )
    return tasks


def position_tasks(
    in_info: PositionInfo,
    out_info: PositionInfo | None,
    input_channel_indices: Sequence[Any] | None = None,
    output_channel_indices: Sequence[Any] | None = None,
    input_time_indices: Sequence[int] | None = None,
    output_time_indices: Sequence[int] | None = None,
    *,
    identity: str = "",
    strict_dtype: bool = False,
    pyramid_levels: int = 1,
) -> list[Task]:
    """Plan the tasks of one position, from its input and output metadata, as a run plans them.

    :func:`.stream.position_run` runs them; :func:`.trial.measure_first_volume` runs one.

    Parameters
    ----------
    in_info, out_info
        The input position, and the output position (None: a preview, nothing written).
    identity
        The run's digest each completion record carries, for resume
        (:func:`..core.identity.run_identity`); empty for a task no run resumes.
    pyramid_levels
        Resolution levels each task writes.

    Returns
    -------
    list of Task
    """
    return plan_tasks(
        input_array=in_info.array_path,
        input_zarr_format=in_info.zarr_format,
        input_axes=in_info.array_axes,
        output_axes=out_info.array_axes if out_info else "tczyx",
        input_shape=in_info.shape,
        output_array=out_info.array_path if out_info else None,
        output_zarr_format=out_info.zarr_format if out_info else None,
        output_shape=out_info.shape if out_info else None,
        output_dtype=out_info.dtype if out_info else None,
        output_shards=out_info.shards if out_info else None,
        input_channel_indices=input_channel_indices,
        output_channel_indices=output_channel_indices,
        input_time_indices=input_time_indices,
        output_time_indices=output_time_indices,
        progress_dir=records_dir(out_info.path) if out_info else None,
        identity=identity,
        output_grid=out_info.pyramid_grid(pyramid_levels) if out_info else None,
        strict_dtype=strict_dtype,
        run_id=uuid.uuid4().hex,
    )
