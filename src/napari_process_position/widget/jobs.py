"""What the widget runs off the main thread, and the records it keeps of runs and previews.

:func:`prepare_events` prepares a run, :func:`run_events` then streams its
volumes (the controller adds the output layers in between); :func:`preview_events`
computes a preview one channel at a time; :func:`warm_pool` starts a process
pool ahead of the first run; :func:`read_slices` reads slices for the
layers before the time slider moves to them. Each is a plain generator or
function: the widget runs them in napari thread workers, tests call them
directly. Qt-free.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_process_position.batch.batch_run import BatchRun
from napari_process_position.batch.config import RunConfig
from napari_process_position.batch.plan import all_if_none, output_layout
from napari_process_position.batch.prepare import prepare_run
from napari_process_position.batch.preview import open_source, preview_volume, region_fallback
from napari_process_position.core.errors import InvalidArgumentError
from napari_process_position.core.identity import digest_value
from napari_process_position.core.memory import (
    MAX_MMAP_THRESHOLD,
    MemoryBudget,
    large_blocks_unmapped,
    memory_budget,
    trim_heap,
)
from napari_process_position.core.sizes import size_text
from napari_process_position.engine.pool import ProcessPool
from napari_process_position.store.layout import OutputLayout, PositionInfo
from napari_process_position.transforms import TransformSpec
from napari_process_position.widget.contrast import display_limits, input_limits
from napari_process_position.widget.events import (
    Event,
    Failed,
    OnScreen,
    PreviewDone,
    PreviewLayout,
    PreviewVolume,
    Region,
    RunEnded,
    RunPrepared,
    Shown,
    VolumeFinished,
)
from napari_process_position.widget.ports import OutputLayers

__all__ = [
    "IN_MEMORY_SHARE",
    "WORKER_NICENESS",
    "PreviewJob",
    "RunJob",
    "check_in_memory",
    "prepare_events",
    "preview_events",
    "read_slices",
    "run_events",
    "settings_key",
    "warm_pool",
]

_ids = itertools.count(1)

#: A run waits at most this long for another run writing its output to end (a run
#: cancelled a moment ago releases it within a second), then fails naming it.
OUTPUT_WAIT_S = 5.0

#: A run without an output may hold at most this share of the available memory in its layers.
IN_MEMORY_SHARE = 0.5

#: The widget's workers run at a lower CPU priority: napari's window keeps its share of the
#: cores (the workers lose nothing when the window is idle).
WORKER_NICENESS = 5


@dataclass(eq=False)
class RunJob:
    """One press of Run: its id, its config and what the main thread knows of it."""

    config: RunConfig
    pool: ProcessPool | None
    id: int = field(default_factory=lambda: next(_ids))
    #: The prepared run (set on the main thread, when :func:`prepare_events` sends it).
    batch: BatchRun | None = None
    #: Its volumes are streaming (:func:`run_events` owns the batch, and closes it).
    streaming: bool = False
    started: float = field(default_factory=time.perf_counter)
    prepared_at: float | None = None
    first_shown_at: float | None = None
    finished_at: float | None = None
    total: int = 0
    done: int = 0
    #: The output layers (once the run is prepared).
    outputs: OutputLayers[Any] | None = None
    worker: Any = None
    #: What the output layers show of a time point: what is read back of a written volume.
    shown: tuple[OnScreen, ...] = (OnScreen(),)
    #: What the status lines add about the run's settings (pyramid levels not written, say).
    note: str | None = None
    #: The position the layers show (the form's); a run of several positions writes the rest.
    shown_key: str | None = None
    #: The end of the run is decided (it waits for its volumes to be on screen).
    ending: bool = False
    clim_set: set[int] = field(default_factory=set)
    shown_times: set[int] = field(default_factory=set)
    outcome: str = "running"

    def key_shown(self, batch: BatchRun) -> str:
        """Return the position of ``batch`` whose volumes the layers show."""
        return batch.key_or_first(self.shown_key)

    def cancel(self) -> None:
        """Cancel the run: nothing more is started, its volumes in flight are dropped."""
        if self.batch is not None:
            self.batch.cancel()

    def stats(self) -> dict[str, Any]:
        """Return timings and counts (for benchmarks and tests)."""
        return {
            "id": self.id,
            "outcome": self.outcome,
            "done": self.done,
            "total": self.total,
            "started": self.started,
            "prepared": self.prepared_at,
            "first_shown": self.first_shown_at,
            "finished": self.finished_at,
        }


def check_in_memory(layout: OutputLayout, budget: MemoryBudget | None = None) -> None:
    """Refuse a run without an output whose volumes would not fit in memory.

    Such a run's layers hold every volume in napari's memory (there is no store
    to read them back from). It is refused when that is more than
    :data:`IN_MEMORY_SHARE` of the memory this process may still use
    (:func:`.core.memory.memory_budget`; the rest is for its workers).

    Raises
    ------
    InvalidArgumentError
        It would not fit; the message says how much it needs, what is available
        and what to do.
    """
    budget = budget if budget is not None else memory_budget()
    needed = int(np.prod(layout.shape, dtype=np.int64)) * np.dtype(layout.dtype).itemsize
    if budget is None or needed <= budget.available * IN_MEMORY_SHARE:
        return
    raise InvalidArgumentError(
        f"without an output, every volume stays in memory: {size_text(needed)}, more than "
        f"{IN_MEMORY_SHARE:.0%} of the {size_text(budget.available)} available "
        f"({budget.source}); choose an output store (its layers are read from disk as they "
        "are shown), or fewer time points or channels"
    )


def prepare_events(run: RunJob) -> Iterator[Event]:
    """Prepare the run: its plan, workers and output (the body of its first thread worker).

    Everything slow before the first volume (checking the config, probing the
    transform, creating the output, contrast statistics of the input) happens
    here, off the main thread; it reads ``run``'s settings and changes nothing
    of it. It yields :class:`.RunPrepared` once, with the prepared
    :class:`BatchRun`: the controller holds it, adds the output layers, then
    streams it (:func:`run_events`). Errors are yielded, not raised, so the
    widget reports them once, in its own words.
    """
    batch = None
    try:
        # A run cancelled a moment ago may still be releasing the output: wait a little.
        batch = prepare_run(run.config, pool=run.pool, wait=OUTPUT_WAIT_S)
        batch.stop_on_error = True
        batch.niceness = WORKER_NICENESS
        key = batch.key_or_first(run.shown_key)
        written = batch.output_info(key)  # (read once per run: the engine starts with it)
        if written is None:
            check_in_memory(batch.layouts[key])
        shown_limits = input_limits(batch.inputs[key], batch.channels, batch.times[0])
        prepared = RunPrepared(batch, shown_limits, written)
    except Exception as exc:  # reported by the widget
        if batch is not None:
            batch.close()  # (its output's locks go now)
        trim_heap()
        yield Failed(exc)
        return
    try:
        yield prepared
    except GeneratorExit:  # stopped before the event was sent: nobody will stream it
        batch.close()
        raise


def run_events(run: RunJob) -> Iterator[Event]:
    """Stream a prepared run's volumes (the body of its second thread worker).

    The controller starts it once the output layers are in the viewer: adding
    a layer is napari's dearest call, and the run's workers would share the
    cores with it. Volumes written to the store are read back as the layers
    show them (planes on screen, a volume in 3D). It closes the run: the
    output's locks are released, and the heaps its threads freed are trimmed.
    """
    batch = run.batch
    if batch is None:
        return
    try:
        key = batch.key_or_first(run.shown_key)
        written = batch.output_info(key)
        # Large volumes: napari's heaps would keep what the run's threads free (#17).
        with large_blocks_unmapped(_volume_bytes(batch, key) >= MAX_MMAP_THRESHOLD):
            readers = [written.open_level(k) for k in range(written.levels)] if written else []
            seen: set[int] = set()
            for done_key, result in batch:
                out_c = result.output_channels
                index = out_c[0] if isinstance(out_c, tuple) else int(out_c)  # type: ignore[arg-type]
                if done_key != key:  # another position of the run: counted, not shown
                    yield VolumeFinished(result, index, None, None, ())
                    continue
                volume = result.volume
                shown: tuple[Shown, ...] = ()
                if volume is None and result.status in ("written", "resumed") and readers:
                    shown = _read_back(readers, result.output_time_index, index, run.shown)
                    volume = shown[0].data
                elif volume is not None and volume.ndim == 4:
                    volume = volume[0]
                limits = None
                if volume is not None and index not in seen:
                    seen.add(index)
                    limits = display_limits(volume)
                yield VolumeFinished(result, index, volume, limits, shown)
        yield RunEnded(batch)
    except Exception as exc:  # reported by the widget, with the (t, c) when known
        yield Failed(exc)
    finally:
        batch.close()  # (ended before iterating: its output's locks go now)
        # The run's threads freed their volumes into heaps glibc keeps: napari would hold
        # the run's peak for as long as it lives.
        trim_heap()


def _volume_bytes(batch: BatchRun, key: str) -> int:
    """Return the bytes of the larger of one input and one output volume of position ``key``."""
    info, layout = batch.inputs[key], batch.layouts[key]
    return max(
        int(np.prod(info.shape[-3:], dtype=np.int64)) * np.dtype(info.dtype).itemsize,
        int(np.prod(layout.shape[-3:], dtype=np.int64)) * np.dtype(layout.dtype).itemsize,
    )


def _read_back(
    readers: list[Any], t: int, c: int, wanted: tuple[OnScreen, ...]
) -> tuple[Shown, ...]:
    """Read the slices ``wanted`` of volume (t, c) from the output's levels."""
    found = []
    for item in wanted:
        level = min(item.level, len(readers) - 1)
        source = readers[level]
        if item.plane is None:
            found.append(Shown(level, None, source[t, c].read().result()))
        else:
            plane = min(item.plane, int(source.shape[2]) - 1)  # (a projection has one plane)
            found.append(Shown(level, plane, source[t, c, plane].read().result()))
    return tuple(found)


def warm_pool(pool: ProcessPool, transform_ref: str | None) -> None:
    """Start a pool's processes and import the transform in them (run in a thread worker)."""
    with contextlib.suppress(Exception):  # a pool stopped while warming is fine
        pool.warm(transform_ref)


def read_slices(
    requests: Sequence[tuple[PositionInfo, int, int, int, Any]],
) -> Iterator[tuple[int, np.ndarray]]:
    """Read slices ``(position, level, t, c, index within the ZYX volume)`` for the layers.

    Yields ``(i, array)`` for request ``i``: what a layer will show once the time
    slider moves, read here rather than by napari on the main thread.
    """
    opened: dict[tuple[str, int], Any] = {}
    for i, (info, level, t, c, where) in enumerate(requests):
        source = opened.get((info.path, level))
        if source is None:
            source = opened[info.path, level] = info.open_level(level)
        yield i, np.asarray(source[(t, c, *where)].read().result())


@dataclass(eq=False)
class PreviewJob:
    """One preview: what to compute, and what the main thread learns of it."""

    generation: int
    config: RunConfig
    info: PositionInfo
    spec: TransformSpec
    channels: list[int]
    times: list[int]
    time_index: int
    out_index: int
    region: Region | None
    region_source: str | None
    signature: tuple[Any, ...]
    requested: float
    started: float = field(default_factory=time.perf_counter)
    region_used: Region | None = None
    note: str | None = None
    layout: OutputLayout | None = None
    outputs: OutputLayers[Any] | None = None
    fresh: bool = False
    shown: set[int] = field(default_factory=set)
    shown_at: float | None = None
    compute_s: float = 0.0
    error: str | None = None


def settings_key(config: RunConfig, info: PositionInfo) -> tuple[Any, ...]:
    """Return what an output volume depends on, besides its time point and region."""
    channels = tuple(all_if_none(config.channels, info.shape[1]))
    times = tuple(all_if_none(config.times, info.shape[0]))
    return (config.transform, digest_value(config.params), info.path, channels, times)


_layout_cache: dict[tuple[Any, ...], OutputLayout] = {}


def preview_events(job: PreviewJob, is_current: Callable[[int], bool]) -> Iterator[Event]:
    """Compute a preview, one channel at a time (the body of the preview's thread worker)."""
    try:
        spec, info = job.spec, job.info
        params = spec.check_params(dict(job.config.params))
        key = (spec.ref, digest_value(params), info.path, tuple(job.channels), len(job.times))
        layout = _layout_cache.get(key)
        if layout is None:
            layout = output_layout(spec, info, params, job.channels, job.times)
            _layout_cache.clear()
            _layout_cache[key] = layout
        region: Any = job.region
        note = None
        if region is not None:
            reason = region_fallback(spec, params, info.volume_shape, layout.shape[2:])
            if reason is not None:
                region, note = None, f"{reason}: previewed the whole volume"
        yield PreviewLayout(layout, region, note)
        source = open_source(info)
        for i, channel in enumerate(job.channels):
            if not is_current(job.generation):
                return  # a newer change made this preview stale
            result = preview_volume(
                info,
                spec,
                params,
                job.time_index,
                channel,
                region=region,
                output_dtype=layout.dtype,
                source=source,
            )
            limits = display_limits(result.volume) if result.volume is not None else None
            yield PreviewVolume(i, result, limits)
        yield PreviewDone()
    except Exception as exc:  # reported in the status line
        yield Failed(exc)
