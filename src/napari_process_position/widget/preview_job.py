"""A preview job: what one preview computes off the main thread, and what the widget keeps of it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from napari_process_position.batch.config import RunConfig
from napari_process_position.batch.plan import output_layout
from napari_process_position.batch.preview import open_source, preview_volume, region_fallback
from napari_process_position.core.identity import digest_value
from napari_process_position.store.layout import OutputLayout, PositionInfo
from napari_process_position.transforms import TransformSpec
from napari_process_position.widget.helpers import (
    display_limits,
)

if TYPE_CHECKING:
    from napari.layers import Image

__all__ = ["PreviewJob", "Region", "compute_preview", "settings_key"]

Region = tuple[tuple[int, int] | None, tuple[int, int], tuple[int, int]]


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
    layers: list[Image] = field(default_factory=list)
    fresh: bool = False
    shown: set[int] = field(default_factory=set)
    shown_at: float | None = None
    compute_s: float = 0.0
    error: str | None = None


_layout_cache: dict[tuple[Any, ...], OutputLayout] = {}


def settings_key(config: RunConfig, info: PositionInfo) -> tuple[Any, ...]:
    """Return what an output volume depends on, besides its time point and region."""
    channels = tuple(config.channels or range(info.shape[1]))
    times = tuple(config.times or range(info.shape[0]))
    return (config.transform, digest_value(config.params), info.path, channels, times)


def compute_preview(
    job: PreviewJob, is_current: Callable[[int], bool]
) -> Iterator[tuple[Any, ...]]:
    """Compute a preview, one channel at a time (the body of the thread worker)."""
    try:
        spec, info = job.spec, job.info
        params = spec.check_params(dict(job.config.params))
        key = (
            spec.ref,
            digest_value(params),
            info.path,
            tuple(job.channels),
            len(job.times),
        )
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
        yield ("layout", layout, region, note)
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
            yield ("volume", i, result, limits)
        yield ("done",)
    except Exception as exc:  # reported in the status line
        yield ("error", exc)
