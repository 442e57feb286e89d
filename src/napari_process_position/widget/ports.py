"""What the widget's controller talks to: the form, the layers and the background.

Three protocols: the view implements :class:`ViewPort`, the layer sink
:class:`Sink`, and :class:`~.qt.QtLauncher` the :class:`Launcher` (napari
thread workers and Qt timers). Tests implement them without Qt. The sink
hands back :class:`OutputLayers`, the typed record of a run's or a preview's
output layers. Qt-free.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

from napari_process_position.store.layout import OutputLayout, PositionInfo
from napari_process_position.widget.events import OnScreen, Region, Shown

__all__ = ["Launcher", "OutputLayers", "Sink", "ViewPort"]

#: What a sink shows an output channel in (a napari Image layer; an array in tests).
LayerT = TypeVar("LayerT")


@dataclass(eq=False)
class OutputLayers(Generic[LayerT]):
    """The output layers of one run or preview, one per output channel.

    A slot of ``layers`` is None until the sink has made (or reused) its layer.
    """

    names: list[str]
    #: (t, z, y, x) of each layer.
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    scale: tuple[float, ...]
    #: What the sink records in each layer (its role, the output, the channel, the input).
    meta: list[dict[str, Any]]
    layers: list[LayerT | None] = field(default_factory=list)
    #: How many of the layers are new (added to the viewer, not reused): a run's workers
    #: wait until they are there.
    adding: int = 0
    #: Where voxel 0 sits (t, z, y, x), so that outputs overlay their input.
    translate: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0)
    #: The output position the run writes (its layers show it lazily), or None (in memory).
    store: PositionInfo | None = None

    def ready(self, index: int) -> bool:
        """Tell whether the layer of output ``index`` exists."""
        return self.layers[index] is not None


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
    """What the controller reads from the form (besides its model) and shows in it."""

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
    ) -> OutputLayers[Any]:
        """Output layers for ``layout`` (reused where they can be); lazy over ``store``."""

    def existing_outputs(
        self, layout: OutputLayout, display: str, source: str
    ) -> OutputLayers[Any] | None:
        """Return the output layers of ``layout`` if they all exist already."""

    def put(
        self,
        outputs: OutputLayers[Any],
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
        read_back: tuple[Shown, ...] = (),
    ) -> None:
        """Copy ``volume`` into output ``index`` at time ``t``; ``shown()`` once it is on screen.

        ``stored``: it is in the output store already; layers over it only show it
        (the slices ``read_back`` of it, :class:`.events.Shown`).
        """

    def on_screen(self, outputs: OutputLayers[Any] | None) -> tuple[OnScreen, ...]:
        """Return what the output layers show of a time point (:class:`.events.OnScreen`)."""

    def when_shown(self, callback: Callable[[], None]) -> None:
        """Call back once every volume handed over is copied in and refreshed."""

    def drop_pending(self) -> None:
        """Forget the volumes not copied in yet."""

    def stop_following(self) -> None:
        """Forget a pending move of the time slider (a run ended: the slider is the user's)."""

    def follow(self, outputs: OutputLayers[Any], t: int) -> None:
        """Show time ``t`` of the outputs (moves the time slider)."""

    def alive(self, outputs: OutputLayers[Any]) -> bool:
        """Tell whether every layer of ``outputs`` is in the viewer."""

    def ids(self, outputs: OutputLayers[Any]) -> frozenset[str]:
        """Identify the layers of ``outputs`` (for what they are known to hold)."""

    def layer_ids(self) -> set[str]:
        """Identify every layer in the viewer."""

    def inputs_shown(self, info: PositionInfo, channels: list[int]) -> bool:
        """Tell whether a layer shows one of ``channels`` of ``info`` (a query: adds nothing)."""

    def input_time_on_screen(self, info: PositionInfo, channels: list[int]) -> int:
        """Return the input time point the time slider shows (a query: adds nothing).

        Raises
        ------
        InvalidArgumentError
            No layer shows the input (:meth:`inputs_shown`): show it first.
        """

    def preview_region(self, info: PositionInfo, z_text: str) -> tuple[Region, str]:
        """Return the region to preview in the input's voxels, and where it came from."""

    def rectangle_drawn(self) -> bool:
        """Tell whether the region layer holds a rectangle."""

    def offer_region_layer(self) -> None:
        """Add a Shapes layer to draw the preview region in, if there is none."""
