"""What a comparison computes off the main thread: one time point of several positions.

:func:`compare_events` sizes the output, checks that one time point of every
picked position (input and output, every selected channel) fits in the memory
budget, then computes the positions' tiles in parallel on the comparison's
workers (threads: the transforms and tensorstore release the GIL), first the
position the form shows, and yields each tile as it is done; the workers write the tiles into a
:class:`.tiles.TileCanvas` that the mosaic's layers show. Each volume is
computed as a run computes it (:func:`.batch.preview.preview_volume`), so a
tile equals that position's volume in a run. Qt-free.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_process_position.batch.plan import output_layout
from napari_process_position.batch.preview import open_source, preview_volume, region_fallback
from napari_process_position.core.errors import InvalidArgumentError
from napari_process_position.core.memory import MemoryBudget, memory_budget
from napari_process_position.core.sizes import size_text
from napari_process_position.store.layout import OutputLayout, PositionInfo
from napari_process_position.transforms import TransformSpec
from napari_process_position.widget.contrast import display_limits
from napari_process_position.widget.events import Failed, Region
from napari_process_position.widget.tiles import TileCanvas, TileGrid

__all__ = [
    "COMPARE_MEMORY_SHARE",
    "CompareDone",
    "CompareJob",
    "CompareLayout",
    "TileReady",
    "check_comparison_memory",
    "compare_events",
]

#: A comparison may hold at most this share of the available memory in its tiles.
COMPARE_MEMORY_SHARE = 0.5

Limits = tuple[float, float]


@dataclass(frozen=True)
class CompareJob:
    """One press of Compare (or one live change): what to compute."""

    generation: int
    keys: tuple[str, ...]
    infos: tuple[PositionInfo, ...]
    spec: TransformSpec
    params: dict[str, Any]
    channels: tuple[int, ...]
    time_index: int
    workers: int
    requested: float
    #: Tile indices in the order they are computed (the one in view first).
    order: tuple[int, ...] = ()
    #: The canvas the comparison before wrote (reused when the tiles keep their sizes).
    canvas: TileCanvas | None = None
    #: A ZYX region of every tile to compute (None: whole volumes), as a region preview's.
    region: Region | None = None


@dataclass(frozen=True)
class CompareLayout:
    """The output of one tile is sized: the mosaic layers can be made."""

    generation: int
    layout: OutputLayout
    #: Where the tiles are written (the mosaic's layers show its arrays).
    canvas: TileCanvas


@dataclass(frozen=True)
class TileReady:
    """One picked position's input and output are in the canvas, at the comparison's time point."""

    generation: int
    #: Index of the position among the picked ones (its tile).
    index: int
    key: str
    #: Contrast limits of this tile's inputs and outputs, per selected channel (the mosaic
    #: sets one per channel, from the first tile that has data).
    input_limits: dict[int, Limits]
    limits: dict[int, Limits]
    seconds: float


@dataclass(frozen=True)
class CompareDone:
    """Every tile of a comparison is done."""

    generation: int
    seconds: float


def check_comparison_memory(
    job: CompareJob, layout: OutputLayout, budget: MemoryBudget | None = None
) -> int:
    """Return the bytes the tiles hold; refuse a comparison that would not fit in memory."""
    info = job.infos[0]
    per_input = int(np.prod(info.volume_shape, dtype=np.int64)) * np.dtype(info.dtype).itemsize
    per_output = int(np.prod(layout.shape[2:], dtype=np.int64)) * np.dtype(layout.dtype).itemsize
    needed = len(job.keys) * len(job.channels) * (per_input + per_output)
    budget = budget if budget is not None else memory_budget()
    if budget is not None and needed > budget.available * COMPARE_MEMORY_SHARE:
        raise InvalidArgumentError(
            f"comparing {len(job.keys)} positions holds one time point of each in memory: "
            f"{size_text(needed)}, more than {COMPARE_MEMORY_SHARE:.0%} of the "
            f"{size_text(budget.available)} available ({budget.source}); pick fewer positions "
            "or channels"
        )
    return needed


def _check_alike(job: CompareJob) -> None:
    first = job.infos[0]
    for key, info in zip(job.keys, job.infos, strict=True):
        if info.volume_shape != first.volume_shape or info.dtype != first.dtype:
            raise InvalidArgumentError(
                f"positions differ: {job.keys[0]} is {'x'.join(map(str, first.volume_shape))} "
                f"{np.dtype(first.dtype)}, {key} is {'x'.join(map(str, info.volume_shape))} "
                f"{np.dtype(info.dtype)}; "
                "compare positions of the same size"
            )
        if max(job.channels) >= info.shape[1] or job.time_index >= info.shape[0]:
            raise InvalidArgumentError(
                f"position {key} has no channel {max(job.channels)} or time point {job.time_index}"
            )


def _tile(
    job: CompareJob,
    index: int,
    layout: OutputLayout,
    canvas: TileCanvas,
    is_current: Callable[[int], bool],
) -> TileReady:
    start = time.perf_counter()
    info = job.infos[index]
    source = open_source(info)
    region = job.region
    if region is not None and region_fallback(
        job.spec, job.params, info.volume_shape, layout.shape[2:]
    ):
        region = None  # a transform that changes the shape has no "same region"
    input_limits: dict[int, Limits] = {}
    limits: dict[int, Limits] = {}
    for i, channel in enumerate(job.channels):
        if not is_current(job.generation):
            break  # stale: the caller drops the tile
        block = np.asarray(source[job.time_index, [channel]].read().result())
        result = preview_volume(
            info,
            job.spec,
            job.params,
            job.time_index,
            channel,
            output_dtype=layout.dtype,
            source=source,
            block=block,
            region=region,
        )
        volume = result.volume
        if region is not None and volume is not None:  # the rest of the tile shows zeros
            volume = np.zeros(layout.shape[2:], dtype=layout.dtype)
            volume[result.where] = result.volume
        if not canvas.put(index, i, block[0], volume, lambda: is_current(job.generation)):
            break
        for kind, shown, into in (
            ("input", block[0], input_limits),
            ("output", volume, limits),
        ):
            # One contrast per channel, from the first tile with data: the rest skip it.
            if shown is None or not canvas.needs_limits(kind, i):
                continue
            found = display_limits(shown)
            if found is not None:
                canvas.found_limits(kind, i, found)
                into[i] = canvas.limits[(kind, i)]
    return TileReady(
        job.generation, index, job.keys[index], input_limits, limits, time.perf_counter() - start
    )


def _canvas(job: CompareJob, layout: OutputLayout) -> TileCanvas:
    """Return the canvas of the comparison before if the tiles keep their sizes, else a new one."""
    info = job.infos[0]
    signature = (
        job.keys,
        job.channels,
        info.volume_shape,
        info.scale,
        np.dtype(info.dtype).str,
        tuple(layout.shape[2:]),
        tuple(layout.scale),
        np.dtype(layout.dtype).str,
    )
    if job.canvas is not None and job.canvas.signature == signature:
        return job.canvas
    grid = TileGrid(len(job.keys), info, layout)
    return TileCanvas(grid, len(job.channels), info.dtype, layout.dtype, signature)


def compare_events(job: CompareJob, is_current: Callable[[int], bool]) -> Iterator[Any]:
    """Size the output, check memory, then yield each tile as it is done (a thread worker's body).

    Tiles are computed in the order of ``job.keys`` (the caller puts the one
    the user looks at first), ``job.workers`` at a time. A job made stale by a
    newer one stops starting tiles and yields nothing more. Errors are yielded
    as :class:`.events.Failed`.
    """
    start = time.perf_counter()
    try:
        _check_alike(job)
        layout = output_layout(
            job.spec, job.infos[0], job.params, list(job.channels), [job.time_index]
        )
        check_comparison_memory(job, layout)
        canvas = _canvas(job, layout)
        yield CompareLayout(job.generation, layout, canvas)
        pending: set[Future[TileReady]] = set()
        queue = list(job.order or range(len(job.keys)))
        with ThreadPoolExecutor(max_workers=max(1, job.workers)) as pool:
            while queue or pending:
                while queue and len(pending) < max(1, job.workers):
                    if not is_current(job.generation):
                        queue.clear()
                        break
                    pending.add(pool.submit(_tile, job, queue.pop(0), layout, canvas, is_current))
                if not pending:
                    break
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    tile = future.result()
                    if is_current(job.generation):
                        yield tile
        if is_current(job.generation):
            yield CompareDone(job.generation, time.perf_counter() - start)
    except Exception as exc:  # reported in the status line
        yield Failed(exc)
