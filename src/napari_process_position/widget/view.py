"""The widget's view: the magicgui Container that napari docks, bound to the controller.

It builds the children (:func:`.controls.build_controls`), keeps their
choices in step with the chosen store, position and transform, binds their
signals to the :class:`~.controller.Controller`, and shows what the
controller tells it (status, progress, the Run/Cancel states). All layer work
is the :class:`~.sink.LayerSink`'s; all decisions are the controller's.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import Container, Widget
from qtpy.QtCore import QTimer

from napari_process_position.batch.config import RunConfig
from napari_process_position.core.errors import ProcessPositionError
from napari_process_position.engine.pool import ProcessPool
from napari_process_position.transforms import TransformSpec, list_transforms
from napari_process_position.widget.compare_controls import add_compare_controls
from napari_process_position.widget.controller import Controller, State
from napari_process_position.widget.controls import build_controls
from napari_process_position.widget.form_view import FormView
from napari_process_position.widget.mosaic import Mosaic
from napari_process_position.widget.qt import CloseWatcher, QtLauncher
from napari_process_position.widget.sample_data import sample_source
from napari_process_position.widget.settings import ask_for_settings_file, save_settings
from napari_process_position.widget.sink import LayerSink
from napari_process_position.widget.status import StatusPainter
from napari_process_position.widget.watch import ViewerWatch

if TYPE_CHECKING:
    import napari

__all__ = ["ProcessPositionWidget"]


class ProcessPositionWidget(Container):
    """Preview a transform on one OME-Zarr position, streaming each finished volume into napari.

    Parameters
    ----------
    viewer
        The napari viewer whose layers show the input and the output.

    Examples
    --------
    >>> widget = ProcessPositionWidget(viewer)            # doctest: +SKIP
    >>> viewer.window.add_dock_widget(widget, name="Process position")  # doctest: +SKIP
    >>> widget.input_path.value = "demo.zarr"              # doctest: +SKIP
    >>> widget.run_button.clicked()                        # doctest: +SKIP
    """

    transform_params: Container[Widget]
    #: The controls disabled while a run is in flight.
    _settings: list[Widget]

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        self._viewer = viewer
        self._registry: list[TransformSpec] | None = None
        self._closed = False
        self._launcher = QtLauncher(self.native)
        self._sink = LayerSink(
            viewer, self._launcher, follow=lambda: bool(self.follow.value), parent=self.native
        )
        self._mosaic = Mosaic(viewer)
        self.controller = Controller(self, self._sink, self._launcher, self._mosaic)
        build_controls(self)
        self._compare_hooks = add_compare_controls(self, self.controller.comparison, viewer)
        self._painter = StatusPainter(self.status, self.progress, self.native)

        #: The form's controls, bound to the controller's form (intents out, model in).
        self._form_view = FormView(self, self.controller.form, lambda: self.running)
        self.run_button.clicked.connect(self.controller.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.save_button.clicked.connect(self._on_save_clicked)
        # Preview: the options the form keeps for itself (the settings are the model's).
        p = self.controller.previews
        self.live.changed.connect(p.live_toggled)
        self.region.changed.connect(p.region_toggled)
        self.preview_button.clicked.connect(p.preview)
        self.z_range.changed.connect(p.request_for_region)

        self._watcher = CloseWatcher(self.close_pool, self.native)
        self.native.destroyed.connect(self._on_destroyed)
        self._watch = ViewerWatch(
            viewer,
            on_step=p.request,
            on_view=p.request_for_view,
            on_region=p.request_for_region,
            on_layer=self._adopt_sample,
        )

    # -- public API --------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """True while a run is in flight."""
        return self.controller.current is not None

    @property
    def state(self) -> State:
        """``idle``, ``running``, ``cancelling`` or ``previewing`` (see the controller)."""
        return self.controller.state

    @property
    def busy_in_background(self) -> bool:
        """True while a job of the widget runs in a background thread (a pool warming, say)."""
        return self._launcher.busy

    @property
    def viewer(self) -> napari.viewer.Viewer:
        """The viewer the widget shows its layers in."""
        return self._viewer

    @property
    def pool(self) -> ProcessPool | None:
        """The process pool kept warm for process mode (None until needed)."""
        return self.controller.pool

    @property
    def last_run(self) -> dict[str, Any]:
        """Timings and counts of the latest run (for benchmarks and tests)."""
        return self.controller.last_run

    @property
    def last_preview(self) -> dict[str, Any]:
        """Timings of the latest preview shown (for benchmarks and tests)."""
        return self.controller.last_preview

    def preview(self) -> None:
        """Compute the volume on screen now with the current settings (the Preview button)."""
        self.controller.previews.preview()

    def add_transform(self, transform: str | Callable[..., Any]) -> str:
        """Offer a transform of one's own, select it, and return the name it is listed under.

        ``transform``: ``"module:function"``, ``"/path/to/file.py:function"``, or a
        function defined at the top level of a module or file (it is run by
        reference, so worker processes can import it too). Raises
        TransformNotFoundError or TransformError when it cannot be found (again).
        """
        return self.controller.form.add_transform(transform)

    def current_config(self) -> RunConfig:
        """Return the :class:`RunConfig` the widget would run now (save it for the CLI).

        Raises
        ------
        InvalidArgumentError
            A setting is missing or invalid; the message says which.
        """
        return self.run_settings()[0]

    def run_settings(self) -> tuple[RunConfig, str | None]:
        """Return :meth:`current_config`, and why its pyramid levels are not the form's."""
        return self.controller.form.run_settings()

    def save_config(self, path: str | os.PathLike[str], positions: list[str] | None = None) -> Path:
        """Save the settings for a batch run over every position, and return the file.

        The preview ran one position; the saved :class:`RunConfig` selects all of
        them, or ``positions`` (the **save for** choice "compared positions"
        gives the compared ones). The status line shows the command that runs it.
        Returns the file written (``.yaml``).

        Raises
        ------
        InvalidArgumentError
            A setting is missing or invalid.
        OutputWriteError
            The file cannot be written.
        """
        target, command = save_settings(self.current_config(), path, positions)
        self.show_status(f"Saved {target}. Run every position with: {command}")
        return target

    def cancel(self) -> None:
        """Cancel the run in flight (what the Cancel button does)."""
        self.controller.cancel()
        self._sink.flush()

    def close_pool(self) -> None:
        """Cancel any run and preview, and stop the process pool (done when the viewer closes).

        The widget stays usable: process mode starts a new pool on the next run.
        """
        self.controller.close_pool()

    def wait_for_background(self, timeout: float = 10.0) -> bool:
        """Wait (processing Qt events) until background jobs have ended; True if they did."""
        from qtpy.QtWidgets import QApplication

        deadline = time.perf_counter() + timeout
        while self._launcher.busy and time.perf_counter() < deadline:
            QApplication.processEvents()
            time.sleep(0.005)
        return not self._launcher.busy

    # -- the controller's view port ----------------------------------------------------
    def preview_options(self) -> tuple[bool, bool, str]:
        """``(live, region only, Z range text)``."""
        return bool(self.live.value), bool(self.region.value), str(self.z_range.value)

    def show_status(self, text: str, error: bool = False) -> None:
        """Show a status line; an error is a notification too.

        While a run streams, the line changes with every volume: it is shown with the
        next paint (at most every 100 ms), not at once.
        """
        self._painter.show(text, error, later=self.running)

    def set_busy(self, busy: bool) -> None:
        """Run disabled and Cancel enabled while busy; the reverse otherwise."""
        self.run_button.enabled = not busy
        self.cancel_button.enabled = busy
        for widget in self._settings:
            widget.enabled = not busy
        self._form_view.settings_enabled(busy)
        if not busy:
            self._painter.paint()  # the end of a run shows at once

    def show_progress(self, done: int, total: int) -> None:
        """Show how many volumes are done (repainted with the next paint)."""
        self._painter.progress(done, total)

    # -- choices -------------------------------------------------------------------------
    def _transform_choices(self, _widget: Any = None) -> list[tuple[str, str]]:
        # napari calls reset_choices() on every layer change; scanning entry points
        # each time would cost tens of milliseconds, so the registry is read once.
        if self._registry is None:
            self._registry = list_transforms()
        return self.controller.form.transform_choices(self._registry)

    def _position_choices(self, _widget: Any = None) -> list[str]:
        return self.controller.form.selection.position_keys

    def _channel_choices(self, _widget: Any = None) -> list[tuple[str, int]]:
        return [(name, i) for i, name in enumerate(self.controller.form.selection.channel_names)]

    def _input_chosen(self) -> bool:
        return bool(self.input_path.line_edit.value.strip())

    def _on_save_clicked(self, *_: Any) -> None:
        chosen = ask_for_settings_file()
        if not chosen:
            return
        try:
            self.save_config(chosen, self.controller.form.positions())
        except (ValueError, ProcessPositionError) as exc:
            self.show_status(f"cannot save the settings: {exc}", error=True)

    # -- the viewer ------------------------------------------------------------------------
    def _adopt_sample(self, layer: Any) -> None:
        """Sample-data layers name their store: make it the input if none is chosen yet."""
        source = sample_source(layer)
        if source is not None and not self._input_chosen() and not self.running:
            # napari adds a sample's layers one by one: look once they are all there.
            QTimer.singleShot(0, partial(self._use_sample, *source))

    def _use_sample(self, store: str, key: str | None) -> None:
        if self._closed or self._input_chosen() or self.running:
            return
        self.input_path.value = Path(store)
        if key in self.position.choices and self.position.value != key:
            self.position.value = key

    def _on_destroyed(self, *_: Any) -> None:
        self._closed = True
        self._watch.close()
        self._compare_hooks.close()
        self._painter.close()
        self._sink.close()
        self.controller.close()
