"""Compare positions: one time point of several positions of the plate, input beside output.

Part of the controller (Qt-free). It owns the picked positions (typed, or
picked quickly: one field per well, a row, a column, N at random with a
shown seed), starts a comparison's job (:func:`.compare_job.compare_events`)
with the form's settings, drops tiles of a comparison that a newer change
made stale (by generation, as previews do), recomputes every tile on a
change while **live** is ticked, and tells the :class:`MosaicPort` what to
show. Stepping from tile to tile moves the view; the position under the view
is computed first next time.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any, Protocol

from napari_process_position.batch.config import RunConfig
from napari_process_position.batch.plan import all_if_none, select_positions
from napari_process_position.batch.sampling import (
    in_column,
    in_row,
    new_seed,
    one_field_per_well,
    sample_positions,
)
from napari_process_position.core.durations import seconds_text
from napari_process_position.core.errors import InvalidArgumentError, ProcessPositionError
from napari_process_position.store.layout import PositionInfo, StoreInfo
from napari_process_position.store.metadata import read_position
from napari_process_position.transforms import TransformSpec
from napari_process_position.widget.compare_job import (
    CompareDone,
    CompareJob,
    CompareLayout,
    TileReady,
    compare_events,
)
from napari_process_position.widget.events import Failed
from napari_process_position.widget.ports import Launcher, Sink, ViewPort
from napari_process_position.widget.tiles import TileCanvas

__all__ = ["QUICK_PICKS", "Comparison", "MosaicPort", "NoMosaic"]

#: The quick picks offered beside the positions: label -> what it needs (a row, a column, N).
QUICK_PICKS = {
    "one field per well": None,
    "a row": "row",
    "a column": "column",
    "N at random": "n",
}

#: Wait this long after the last change before a live comparison starts again.
COMPARE_DEBOUNCE_MS = 150


class MosaicPort(Protocol):
    """Shows a comparison: the tiles of the picked positions (the widget's mosaic layers)."""

    def begin(
        self, job: CompareJob, canvas: TileCanvas, channel_names: list[str], title: str
    ) -> None:
        """Show ``canvas`` (the same as before: keep the layers); other layers are hidden."""

    def tile(self, tile: TileReady) -> None:
        """Refresh the layers: one position's input and output are in the canvas."""

    def focus(self, index: int) -> None:
        """Move the view to tile ``index``."""

    def focused(self) -> int | None:
        """Return the tile under the view's centre (None when there is no comparison)."""

    def end(self) -> None:
        """Remove the comparison's layers and show the others again."""


class NoMosaic:
    """A mosaic that shows nothing (a controller without a viewer)."""

    def begin(
        self, job: CompareJob, canvas: TileCanvas, channel_names: list[str], title: str
    ) -> None:
        """Show nothing."""

    def tile(self, tile: TileReady) -> None:
        """Show nothing."""

    def focus(self, index: int) -> None:
        """Move nothing."""

    def focused(self) -> int | None:
        """No tile is in view."""
        return None

    def end(self) -> None:
        """Remove nothing."""


class Comparison:
    """The widget's comparison of positions (see the module docstring).

    Parameters
    ----------
    view, launcher
        As the controller's.
    mosaic
        Shows the tiles.
    store, info
        The input store and position chosen in the form (None before one is).
    spec
        Finds a transform by name.
    config
        The run the form describes (built from the form's model).
    sink
        The widget's layers: the time point on screen, and the rectangle of a
        region-only comparison.
    blocked
        Tells whether comparisons must wait (a run is in flight, or the widget closed).
    """

    def __init__(
        self,
        view: ViewPort,
        launcher: Launcher,
        mosaic: MosaicPort,
        store: Callable[[], StoreInfo | None],
        info: Callable[[], PositionInfo | None],
        spec: Callable[[str], TransformSpec],
        config: Callable[[], RunConfig],
        sink: Sink,
        blocked: Callable[[], bool],
    ) -> None:
        self.view = view
        self.launcher = launcher
        self.mosaic = mosaic
        self._store = store
        self._info = info
        self._spec = spec
        self._config = config
        self._sink = sink
        self._blocked = blocked
        self._generations = itertools.count(1)
        self.generation = 0
        self.picks: list[str] = []
        self.seed: int | None = None
        self.active = False
        self.live = False
        self.job: CompareJob | None = None
        self.handle: Any = None
        self._timer: Any = None
        self._infos: dict[str, PositionInfo] = {}
        self.shown: dict[int, TileReady] = {}
        #: Where the latest comparison's tiles are (kept for the next, live one).
        self.canvas: TileCanvas | None = None
        self.first_tile_at: float | None = None
        self.done_at: float | None = None
        self.dropped = 0
        self.note: str | None = None

    # -- picking ---------------------------------------------------------------------------
    def pick(self, patterns: list[str]) -> list[str]:
        """Pick the positions matching ``patterns`` (keys or globs), and return their keys."""
        store = self._need_store()
        self.picks = select_positions(store, [p for p in patterns if p.strip()] or None)
        self.seed = None
        return self.picks

    def quick_pick(self, kind: str, value: str = "", seed: int | None = None) -> list[str]:
        """Pick by one of :data:`QUICK_PICKS` (``value``: the row, the column or N)."""
        keys = list(self._need_store().position_keys)
        need = QUICK_PICKS.get(kind, "?")
        if need == "?":
            raise InvalidArgumentError(f"no quick pick {kind!r}; choose one of {list(QUICK_PICKS)}")
        self.seed = None
        if need is None:
            self.picks = one_field_per_well(keys)
        elif need == "row":
            self.picks = in_row(keys, value.strip().upper())
        elif need == "column":
            self.picks = in_column(keys, value.strip())
        else:
            if not value.strip().isdigit() or int(value) < 1:
                raise InvalidArgumentError(f"how many positions? a whole number, not {value!r}")
            self.seed = new_seed() if seed is None else seed
            self.picks = sample_positions(keys, int(value), self.seed)
        return self.picks

    def _need_store(self) -> StoreInfo:
        store = self._store()
        if store is None:
            raise InvalidArgumentError("choose an OME-Zarr plate first")
        return store

    # -- computing ---------------------------------------------------------------------------
    def start(self) -> None:
        """Compute every picked position's tile now, with the form's settings (Compare)."""
        self._cancel_timer()
        if self._blocked():
            self.view.show_status("cannot compare while a run is in flight")
            return
        try:
            job = self._plan()
        except (ValueError, ProcessPositionError) as exc:
            self.view.show_status(f"cannot compare: {exc}", error=True)
            return
        self.job, self.active = job, True
        self.first_tile_at = self.done_at = None
        self.handle = self.launcher.start(
            compare_events, job, self.is_current, on_event=lambda e: self._on_event(job, e)
        )

    def set_live(self, live: bool) -> None:
        """Recompute every tile on a change of the settings (live) or not; live starts now."""
        self.live = bool(live)
        self.request()

    def request(self) -> None:
        """Compare again once changes pause (live only): a setting or the time point changed."""
        if not (self.active and self.live) or self._blocked():
            return
        self._cancel_timer()
        self._timer = self.launcher.call_later(COMPARE_DEBOUNCE_MS, self.start)

    def time_moved(self) -> None:
        """Compare again (live only) if the time point on screen is no longer the tiles' one.

        The viewer's slider moves for other reasons too (a Z step, layers added):
        those recompute nothing, since every tile holds its whole volume.
        """
        job, info = self.job, self._info()
        if not (self.active and self.live) or job is None or info is None:
            return
        channels = list(job.channels)
        if not self._sink.inputs_shown(info, channels):
            return  # (the inputs were removed: there is no time point on screen to follow)
        if self._sink.input_time_on_screen(info, channels) != job.time_index:
            self.request()

    def is_current(self, generation: int) -> bool:
        """Tell whether comparison ``generation`` is the one wanted (read from its job's thread)."""
        return self.generation == generation

    def _plan(self) -> CompareJob:
        if not self.picks:
            raise InvalidArgumentError("pick the positions to compare first")
        config = self._config()
        store = self._need_store()
        info = self._info()
        if info is None:
            raise InvalidArgumentError("choose a position first")
        channels = all_if_none(config.channels, info.shape[1])
        if not self._sink.inputs_shown(info, channels):
            self._sink.show_inputs(info, now=True)
        time_index = self._sink.input_time_on_screen(info, channels)
        keys = self._order(self.picks)
        for key in keys:
            if key not in self._infos:
                self._infos[key] = read_position(store.position_path(key), key)
        spec = self._spec(config.transform)
        region, self.note = None, None
        _live, region_on, z_text = self.view.preview_options()
        if region_on and self._sink.rectangle_drawn():
            region, _source = self._sink.preview_region(info, z_text)
        elif region_on:
            self.note = "region only needs a rectangle in the region layer: whole volumes"
        self.generation = next(self._generations)
        self.shown = {}
        return CompareJob(
            generation=self.generation,
            keys=tuple(self.picks),
            infos=tuple(self._infos[k] for k in self.picks),
            spec=spec,
            params=spec.check_params(dict(config.params)),
            channels=tuple(channels),
            time_index=time_index,
            workers=max(1, int(config.num_workers)),
            requested=time.perf_counter(),
            order=tuple(self.picks.index(k) for k in keys),
            canvas=self.canvas,
            region=region,
        )

    def _order(self, keys: list[str]) -> list[str]:
        """Order ``keys``: the tile in view, the position the form shows, then the rest."""
        first: list[str] = []
        focused = self.mosaic.focused() if self.active else None
        if focused is not None and focused < len(keys):
            first.append(keys[focused])
        info = self._info()
        if info is not None and info.key in keys and info.key not in first:
            first.append(info.key)
        return first + [k for k in keys if k not in first]

    def _on_event(self, job: CompareJob, event: Any) -> None:
        if not self.is_current(job.generation):
            self.dropped += 1
            return
        if isinstance(event, CompareLayout):
            names = [job.infos[0].channel_names[c] for c in job.channels]
            self.canvas = event.canvas
            self.mosaic.begin(job, event.canvas, names, job.spec.display_name)
        elif isinstance(event, TileReady):
            if self.first_tile_at is None:
                self.first_tile_at = time.perf_counter()
            self.shown[event.index] = event
            self.mosaic.tile(event)
            self.view.show_status(
                f"comparing: {len(self.shown)} of {len(job.keys)} positions "
                f"(t={job.time_index}); PageDown/PageUp step through the tiles"
            )
        elif isinstance(event, CompareDone):
            self.done_at = time.perf_counter()
            seed = f", picked at random with seed {self.seed}" if self.seed is not None else ""
            where = " (the region only)" if job.region is not None else ""
            note = f" ({self.note})" if self.note else ""
            self.view.show_status(
                f"compared {len(job.keys)} positions at t={job.time_index}{where} in "
                f"{seconds_text(self.done_at - job.requested)}{seed}{note}; PageDown/PageUp "
                "step through the tiles"
            )
        elif isinstance(event, Failed):
            self.view.show_status(f"cannot compare: {event.error}", error=True)

    # -- stepping and ending -----------------------------------------------------------------
    def step(self, delta: int) -> int | None:
        """Move the view ``delta`` tiles on (wrapping); return the tile now in view."""
        if not self.active or not self.picks:
            return None
        now = self.mosaic.focused()
        index = 0 if now is None else (now + delta) % len(self.picks)
        self.mosaic.focus(index)
        self.view.show_status(f"tile {index + 1} of {len(self.picks)}: {self.picks[index]}")
        return index

    def stop(self) -> None:
        """End the comparison: drop its job and remove its layers."""
        self._cancel_timer()
        self.generation = next(self._generations)
        if self.handle is not None:
            self.launcher.stop(self.handle)
            self.handle = None
        if self.active:
            self.mosaic.end()
        self.active = False
        self.canvas = None  # (its memory goes with the layers)
        self.job = None
        self.shown = {}

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self.launcher.cancel_call(self._timer)
            self._timer = None

    def stats(self) -> dict[str, Any]:
        """Return timings of the latest comparison (for benchmarks and tests)."""
        job = self.job
        return {
            "generation": self.generation,
            "tiles": len(self.shown),
            "dropped": self.dropped,
            "requested": job.requested if job else None,
            "first_tile": self.first_tile_at,
            "done": self.done_at,
        }
