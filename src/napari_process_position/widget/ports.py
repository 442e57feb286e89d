"""What the widget's controller talks to: the form, the layers and the background.

Three protocols: the view implements :class:`ViewPort`, the layer sink
:class:`Sink`, and :class:`~.qt.QtLauncher` the :class:`Launcher` (napari
thread workers and Qt timers). Tests implement them without Qt. Qt-free.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from napari_process_position.batch.config import RunConfig
from napari_process_position.store.layout import OutputLayout, PositionInfo
from napari_process_position.widget.events import Region

__all__ = ["Launcher", "Sink", "ViewPort"]


class Launcher(Protocol):
    """Runs jobs off the main thread and calls back on it (napari thread workers, in the widget)."""

    def start(
        self,
        job: Callable[..., Any],
        *args: Any,
        on_event: Callable[[Any], None] | None = None,
        on_finished: Callable[[], None] | None = None,
    ) -> Any:
        """Start ``job(*args)``; a generator's items go to ``on_event``; returns a handle."""

    def stop(self, handle: Any) -> None:
        """Ask a started job to stop (a generator stops at its next item)."""

    def call_later(self, ms: int, callback: Callable[[], None]) -> Any:
        """Call ``callback`` on the main thread in ``ms`` milliseconds; returns a handle."""

    def cancel_call(self, handle: Any) -> None:
        """Cancel a ``call_later``."""

    @property
    def busy(self) -> bool:
        """True while a started job has not finished."""


class ViewPort(Protocol):
    """What the controller reads from the form and shows in it."""

    def current_config(self) -> RunConfig:
        """Return the run the form describes."""

    def run_settings(self) -> tuple[RunConfig, str | None]:
        """Return the run the form describes, and why its pyramid levels are not the form's."""

    def preview_options(self) -> tuple[bool, bool, str]:
        """``(live, region only, Z range text)``."""

    def show_status(self, text: str, error: bool = False) -> None:
        """Show a status line (and a notification when it is an error)."""

    def set_busy(self, busy: bool) -> None:
        """Run disabled and Cancel enabled while busy; the reverse otherwise."""

    def show_progress(self, done: int, total: int) -> None:
        """Show how many volumes are done."""


class Sink(Protocol):
    """Does all layer work: inputs, outputs, copying volumes in, refreshes, the time slider."""

    def show_inputs(
        self,
        info: PositionInfo,
        times: list[int] | None = None,
        limits: dict[int, tuple[float, float]] | None = None,
        *,
        now: bool = False,
    ) -> bool:
        """Show a position's channels (``times`` only); True when a layer changes."""

    def outputs(
        self,
        layout: OutputLayout,
        display: str,
        output: str | None,
        source: str,
        *,
        store: PositionInfo | None = None,
    ) -> Any:
        """Output layers for ``layout`` (reused where they can be); lazy over ``store``."""

    def existing_outputs(self, layout: OutputLayout, display: str, source: str) -> Any | None:
        """Return the output layers of ``layout`` if they all exist already."""

    def put(
        self,
        outputs: Any,
        index: int,
        t: int,
        volume: np.ndarray,
        *,
        where: tuple[slice, slice, slice] | None = None,
        limits: tuple[float, float] | None = None,
        valid: Callable[[], bool],
        shown: Callable[[], None] | None = None,
        follow: bool = True,
        stored: bool = False,
        read_back: tuple[Any, ...] = (),
    ) -> None:
        """Copy ``volume`` into output ``index`` at time ``t``; ``shown()`` once it is on screen.

        ``stored``: it is in the output store already; layers over it only show it
        (the slices ``read_back`` of it, :class:`.events.Shown`).
        """

    def on_screen(self, outputs: Any) -> tuple[Any, ...]:
        """Return what the output layers show of a time point (:class:`.events.OnScreen`)."""

    def when_shown(self, callback: Callable[[], None]) -> None:
        """Call back once every volume handed over is copied in and refreshed."""

    def drop_pending(self) -> None:
        """Forget the volumes not copied in yet."""

    def stop_following(self) -> None:
        """Forget a pending move of the time slider (a run ended: the slider is the user's)."""

    def follow(self, outputs: Any, t: int) -> None:
        """Show time ``t`` of the outputs (moves the time slider)."""

    def alive(self, outputs: Any) -> bool:
        """Tell whether every layer of ``outputs`` is in the viewer."""

    def ids(self, outputs: Any) -> frozenset[str]:
        """Identify the layers of ``outputs`` (for what they are known to hold)."""

    def layer_ids(self) -> set[str]:
        """Identify every layer in the viewer."""

    def input_time_on_screen(self, info: PositionInfo, channels: list[int]) -> int:
        """Return the input time point the time slider shows."""

    def preview_region(self, info: PositionInfo, z_text: str) -> tuple[Region, str]:
        """Return the region to preview in the input's voxels, and where it came from."""

    def rectangle_drawn(self) -> bool:
        """Tell whether the region layer holds a rectangle."""

    def offer_region_layer(self) -> None:
        """Add a Shapes layer to draw the preview region in, if there is none."""
