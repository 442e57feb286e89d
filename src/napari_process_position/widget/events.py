"""The events a background job sends the widget's controller, as typed records.

A run's jobs (:func:`.jobs.prepare_events`, then :func:`.jobs.run_events`) and a preview's job
(:func:`.jobs.preview_events`) yield these; the controller receives them on the
main thread and tells them apart by type, dropping those of a run or preview
that is no longer current (by its id). Qt-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_process_position.batch.batch_run import BatchRun
from napari_process_position.batch.preview import PreviewResult, Region
from napari_process_position.core.tasks import Result
from napari_process_position.store.layout import OutputLayout, PositionInfo

__all__ = [
    "Failed",
    "OnScreen",
    "PreviewDone",
    "PreviewLayout",
    "PreviewVolume",
    "Region",
    "RunEnded",
    "RunPrepared",
    "Shown",
    "VolumeFinished",
]


Limits = tuple[float, float]


@dataclass(frozen=True)
class RunPrepared:
    """The run's output is sized (and created); its volumes follow."""

    batch: BatchRun
    #: Contrast limits of the input channels (channel index -> limits).
    input_limits: dict[int, Limits]
    #: The output position written (the output layers show it lazily); None for a preview.
    output: PositionInfo | None = None


@dataclass(frozen=True)
class OnScreen:
    """What a layer shows of a time point: Z plane ``plane`` of level ``level`` (None: all)."""

    level: int = 0
    plane: int | None = None


@dataclass(frozen=True)
class Shown:
    """A slice of a finished volume read back for the layer: what it shows, and the data."""

    level: int
    plane: int | None
    data: np.ndarray


@dataclass(frozen=True)
class VolumeFinished:
    """One (t, c) volume of a run is done: written, skipped or computed for a preview."""

    result: Result
    #: The output channel (index into the run's channels).
    channel: int
    #: The ZYX volume to show (None: nothing to show, the layer keeps zeros), or the
    #: first of ``shown``.
    volume: np.ndarray | None
    #: Contrast limits, sent with the first volume of each channel.
    limits: Limits | None
    #: What was read back of a volume written to the store: the slices its layer shows.
    shown: tuple[Shown, ...] = ()


@dataclass(frozen=True)
class RunEnded:
    """The run's stream ended (every volume done, or cancelled)."""

    batch: BatchRun


@dataclass(frozen=True)
class Failed:
    """A job failed; its error, to report once, in the widget's words."""

    error: BaseException


@dataclass(frozen=True)
class PreviewLayout:
    """A preview knows its output's layout, and the region it will compute (if any)."""

    layout: OutputLayout
    region: Region | None
    #: Why a region preview falls back to the whole volume, if it does.
    note: str | None


@dataclass(frozen=True)
class PreviewVolume:
    """One channel of a preview is computed."""

    channel: int
    result: PreviewResult
    limits: Limits | None


@dataclass(frozen=True)
class PreviewDone:
    """Every channel of a preview is computed."""


#: Any of the above.
Event = Any
