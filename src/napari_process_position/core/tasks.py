"""The records that cross to a worker and back: a Task (what to read, where to write) and a Result.

A task carries paths and indices only, so it pickles small and a worker opens
what it needs itself (``engine.plan`` makes them). A channel group is an
``int`` (the transform gets ZYX) or a tuple or slice (it gets CZYX).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

import numpy as np

from napari_process_position.core.records import ChunkGrid, record_name

__all__ = ["ChannelIndex", "Result", "Task", "channel_label", "channel_list"]

#: One channel group: ``2`` (ZYX), ``(0, 1)`` (CZYX) or ``slice(0, 2)`` (CZYX).
ChannelIndex: TypeAlias = int | tuple[int, ...] | slice


def channel_list(group: ChannelIndex, n_channels: int) -> list[int]:
    """Return the channel indices a group selects, in order."""
    if isinstance(group, int):
        return [group % n_channels]
    if isinstance(group, slice):
        return list(range(n_channels)[group])
    return [i % n_channels for i in group]


def _channel_identity(group: ChannelIndex, n_channels: int) -> int | list[int] | str:
    """Channels of a group, resolved; an int stays an int (the transform gets ZYX)."""
    if not n_channels:  # a task made by hand, without the channel count
        return channel_label(group)
    if isinstance(group, int):
        return group % n_channels
    return channel_list(group, n_channels)


def channel_label(group: ChannelIndex) -> str:
    """Return a short text for a channel group, for messages and file names."""
    if isinstance(group, int):
        return str(group)
    if isinstance(group, slice):
        parts = [group.start, group.stop, group.step]
        return ":".join("" if p is None else str(p) for p in parts).rstrip(":")
    return ",".join(str(i) for i in group)


@dataclass(frozen=True)
class Task:
    """One unit of work: read some time points of one channel group, transform, write.

    Carries paths and indices only, so it pickles small and a worker opens
    what it needs itself.
    """

    index: int
    input_array: str
    input_zarr_format: int
    input_time_indices: tuple[int, ...]
    input_channels: ChannelIndex
    output_array: str | None
    output_zarr_format: int | None
    output_time_indices: tuple[int, ...]
    output_channels: ChannelIndex
    output_shape: tuple[int, ...] | None = None
    output_dtype: str | None = None
    progress_dir: str | None = None
    #: Digest of what all the run's volumes share (transform, parameters, resume
    #: token, input, output layout): see :mod:`._identity`.
    identity: str = ""
    output_grid: ChunkGrid | None = None
    input_channel_count: int = 0
    #: The axes of the input and output arrays (``"czyx"``: no time axis); a worker
    #: opens them as TCZYX all the same, a missing axis of length 1.
    input_axes: str = "tczyx"
    output_axes: str = "tczyx"
    #: Refuse results that only an unsafe cast fits into the output (our own
    #: outputs, sized from the transform); iohub's call casts as numpy does.
    strict_dtype: bool = False
    #: Names the run the task belongs to: a worker opens each array once per run
    #: (:func:`..store.arrays.open_array_once`); "" opens it for every task.
    run_id: str = ""

    def output_channel_list(self) -> list[int]:
        """Return the output channel indices the task writes."""
        n_out = self.output_shape[1] if self.output_shape else self.input_channel_count
        return channel_list(self.output_channels, n_out)

    def expected_block_shape(self) -> tuple[int, ...] | None:
        """Return the shape the output expects for one result: ZYX, or CZYX for a group."""
        if self.output_shape is None:
            return None
        n_channels = self.output_shape[1]
        group = self.output_channels
        zyx = tuple(self.output_shape[2:])
        if isinstance(group, int):
            return zyx
        count = len(range(n_channels)[group]) if isinstance(group, slice) else len(group)
        return (count, *zyx)

    def record_name(self, t_out: int) -> str:
        """File name of the completion record of output volume ``t_out``."""
        return record_name(t_out, ",".join(str(c) for c in self.output_channel_list()))

    def volume_identity(self, t_in: int, t_out: int) -> dict[str, Any]:
        """Return what made output volume ``t_out``: its completion record's identity."""
        n_out = self.output_shape[1] if self.output_shape else self.input_channel_count
        return {
            "run": self.identity,
            "input_time": t_in,
            "input_channels": _channel_identity(self.input_channels, self.input_channel_count),
            "output_time": t_out,
            "output_channels": _channel_identity(self.output_channels, n_out),
        }

    @property
    def label(self) -> str:
        """``t=3, c=1`` style text naming the task's input blocks."""
        times = ",".join(str(t) for t in self.input_time_indices)
        return f"t={times}, c={channel_label(self.input_channels)}"


@dataclass(frozen=True)
class Result:
    """What a worker reports for one finished (time, channel group).

    Attributes
    ----------
    task_index
        Index of the task in the plan.
    input_time_index, output_time_index
        The time point read and the one written.
    input_channels, output_channels
        The channel group read and the one written (int, tuple or slice).
    status
        ``"written"`` (stored in the output), ``"preview"`` (no output store;
        ``volume`` holds the result), ``"skipped"`` (the input was all zeros
        or all NaN in some channel; the output keeps its fill value) or
        ``"resumed"`` (a previous run had completed it).
    volume
        The transformed ZYX or CZYX array for previews, else None.
    read_s, compute_s, write_s
        Seconds spent reading, in the transform and writing.
    worker
        Which process and thread ran it.
    """

    task_index: int
    input_time_index: int
    output_time_index: int
    input_channels: ChannelIndex
    output_channels: ChannelIndex
    status: Literal["written", "preview", "skipped", "resumed"]
    volume: np.ndarray | None = field(default=None, repr=False, compare=False)
    read_s: float = 0.0
    compute_s: float = 0.0
    write_s: float = 0.0
    worker: str = ""

    @property
    def label(self) -> str:
        """``t=3, c=1`` style text naming the block that was read."""
        return f"t={self.input_time_index}, c={channel_label(self.input_channels)}"
