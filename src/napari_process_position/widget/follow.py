"""Following the newest time point while a run streams, never reading disk on the main thread.

Before the time slider moves to a new time point, the slices it would show
(of the input layers, and of output layers over a store) are read by a
background job (:func:`.jobs.read_slices`) into the layers' memory
(:class:`.cached_array.CachedArray`); the slider moves once
they are there, at most every :data:`.helpers.FOLLOW_INTERVAL_MS`. In 3D the
slider is not moved (that would upload every layer's volume at once).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from napari_process_position.widget import layers
from napari_process_position.widget.cached_array import CachedArray
from napari_process_position.widget.jobs import read_slices
from napari_process_position.widget.layers import Outputs
from napari_process_position.widget.multiscale import slices_to_read

if TYPE_CHECKING:
    import napari
    from napari.layers import Image

    from napari_process_position.widget.ports import Launcher

__all__ = ["FOLLOW_INTERVAL_MS", "TimeFollower"]

#: The follow option moves the time slider (re-slicing every layer) at most this often.
FOLLOW_INTERVAL_MS = 500


class TimeFollower:
    """Moves the time slider to the newest finished time point (see the module docstring).

    Parameters
    ----------
    viewer
        The viewer whose slider moves.
    launcher
        Runs the background reads.
    enabled
        Tells whether the form's "follow" box is ticked.
    wake
        Asks the layer sink for another turn (when the reads are done).
    """

    def __init__(
        self,
        viewer: napari.viewer.Viewer,
        launcher: Launcher,
        enabled: Callable[[], bool],
        wake: Callable[[], None],
    ) -> None:
        self._viewer = viewer
        self._launcher = launcher
        self._enabled = enabled
        self._wake = wake
        #: Where to go: (the output layers, the time index).
        self.target: tuple[Outputs, int] | None = None
        self._reading: int | None = None
        self._last = 0.0

    @property
    def pending(self) -> bool:
        """True while there is a time point to move to."""
        return self.target is not None

    def wait_ms(self) -> float:
        """Return how long until the next move is allowed."""
        return FOLLOW_INTERVAL_MS - (time.perf_counter() - self._last) * 1000

    def request(self, outputs: Outputs, t: int) -> None:
        """Go to time ``t`` of ``outputs`` now (not waiting for the interval)."""
        self.target = (outputs, t)
        self._last = 0.0

    def clear(self) -> None:
        """Forget the target."""
        self.target = None

    def step(self, now: float) -> bool:
        """Move the slider to the target if it is due and the slices it would show are in memory.

        Returns True when the slider moved (napari re-slices and redraws).
        """
        if self.target is None or (now - self._last) * 1000 < FOLLOW_INTERVAL_MS:
            return False
        if self._viewer.dims.ndisplay == 3 or not self._enabled():
            self.target = None
            return False
        outputs, t = self.target
        layer = next((layer for layer in outputs.layers if layer is not None), None)
        if layer is None or not layers.has(self._viewer, layer):
            return False
        if layers.time_on_screen(self._viewer, layer) == t:
            self.target = None
            return False
        missing = self._unread(layer, t)
        if missing:
            if self._reading is None:  # read them in the background, then move
                self._reading = t
                requests = [
                    (data.info, data.level, data.store_time(t), data.channel, where)
                    for data, where in missing
                ]
                self._launcher.start(
                    read_slices,
                    requests,
                    on_event=partial(self._keep, t, missing),
                    on_finished=self._read_done,
                )
            return False
        self.target = None
        self._last = now
        layers.move_to(self._viewer, layer, t)
        return True

    def _unread(self, layer: Image, t: int) -> list[tuple[CachedArray, tuple[int, ...]]]:
        """List the slices that the slider's move to ``t`` would read from disk.

        Of each visible layer over a store, the plane on screen (of the level
        napari draws, and of the coarsest one, which its thumbnail reads).
        """
        missing: list[tuple[CachedArray, tuple[int, ...]]] = []
        for other in self._viewer.layers:
            if not other.visible or not hasattr(other, "multiscale"):
                continue
            for data, z in slices_to_read(self._viewer, other):
                if not data.has(t, (z,)):
                    missing.append((data, (z,)))
        return missing

    def _keep(self, t: int, missing: list[tuple[CachedArray, tuple[int, ...]]], item: Any) -> None:
        i, array = item
        data, where = missing[i]
        data.keep(t, where, array)

    def _read_done(self) -> None:
        self._reading = None
        self._last = 0.0
        self._wake()
