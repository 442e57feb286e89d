"""What the widget hears from the viewer: the time slider, the camera, new layers, the region.

A live preview depends on the time point on screen, and a region preview on
the part of the image in view and on the rectangle drawn; sample-data layers
name the store they came from. :class:`ViewerWatch` connects to those
events and disconnects from all of them when the widget goes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from napari_process_position.widget.region import is_region_layer

if TYPE_CHECKING:
    import napari

__all__ = ["ViewerWatch"]


class ViewerWatch:
    """Calls back on the viewer's changes that the widget cares about.

    Parameters
    ----------
    viewer
        The viewer to watch.
    on_step
        The time slider (or any slider) moved.
    on_view
        The camera moved or zoomed.
    on_region
        A region layer was added, or its shapes changed.
    on_layer
        A layer was added (called with the layer; also once for each layer there now).
    """

    def __init__(
        self,
        viewer: napari.viewer.Viewer,
        *,
        on_step: Callable[[], None],
        on_view: Callable[[], None],
        on_region: Callable[[], None],
        on_layer: Callable[[Any], None],
    ) -> None:
        self._on_step = on_step
        self._on_view = on_view
        self._on_region = on_region
        self._on_layer = on_layer
        scene = getattr(viewer, "scene", None)  # napari >= 0.9; viewer.camera before
        camera = scene.camera if scene is not None else viewer.camera
        self._region_layers: dict[str, Any] = {}
        self._events: list[tuple[Any, Callable[..., Any]]] = [
            (viewer.layers.events.inserted, self._inserted),
            # (bound methods: napari holds them weakly)
            (viewer.dims.events.current_step, self._stepped),
            (camera.events.center, self._moved),
            (camera.events.zoom, self._moved),
        ]
        for emitter, callback in self._events:
            emitter.connect(callback)
        for layer in viewer.layers:
            self._added(layer)

    def _stepped(self, *_: Any) -> None:
        self._on_step()

    def _moved(self, *_: Any) -> None:
        self._on_view()

    def _inserted(self, event: Any) -> None:
        self._added(event.value)

    def _added(self, layer: Any) -> None:
        self._on_layer(layer)
        if is_region_layer(layer):
            if layer.unique_id not in self._region_layers:
                self._region_layers[layer.unique_id] = layer
                layer.events.data.connect(self._region_changed)
            self._on_region()

    def _region_changed(self, *_: Any) -> None:
        self._on_region()

    def close(self) -> None:
        """Disconnect from every event (the widget is gone)."""
        for emitter, callback in self._events:
            with contextlib.suppress(Exception):
                emitter.disconnect(callback)
        for layer in list(self._region_layers.values()):
            with contextlib.suppress(Exception):
                layer.events.data.disconnect(self._region_changed)
        self._events.clear()
        self._region_layers.clear()
