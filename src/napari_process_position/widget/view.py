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
from napari.utils.notifications import show_error
from qtpy.QtCore import QTimer

from napari_process_position.batch.config import RunConfig
from napari_process_position.core.errors import ProcessPositionError
from napari_process_position.engine.pool import ProcessPool
from napari_process_position.transforms import TransformSpec, list_transforms
from napari_process_position.widget.compare_controls import (
    add_compare_controls,
    compared_positions,
)
from napari_process_position.widget.controller import Controller, State
from napari_process_position.widget.controls import build_controls
from napari_process_position.widget.form import form_config
from napari_process_position.widget.mosaic import Mosaic
from napari_process_position.widget.params import param_value, param_widget
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

        self.input_path.changed.connect(self._on_input_changed)
        self.position.changed.connect(self._on_position_changed)
        self.transform.changed.connect(self._on_transform_changed)
        self.custom_transform.changed.connect(self._on_custom_transform)
        self.num_workers.changed.connect(self._on_mode_changed)
        self.auto_workers.changed.connect(self._on_auto_workers)
        self.use_threads.changed.connect(self._on_mode_changed)
        self.output_path.changed.connect(self._on_output_changed)
        self.run_button.clicked.connect(self.controller.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.save_button.clicked.connect(self._on_save_clicked)
        # Live preview: what the volume on screen depends on.
        c = self.controller
        self.live.changed.connect(c.previews.live_toggled)
        self.region.changed.connect(c.previews.region_toggled)
        self.preview_button.clicked.connect(c.previews.preview)
        self.transform_params.changed.connect(c.previews.request)
        for widget in (self.position, self.channels, self.times):
            widget.changed.connect(c.previews.request)
        self.z_range.changed.connect(c.previews.request_for_region)
        self._on_transform_changed()
        self._fit_channel_list()

        self._watcher = CloseWatcher(self.close_pool, self.native)
        self.native.destroyed.connect(self._on_destroyed)
        p = self.controller.previews
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
        name = self.controller.add_transform(transform)
        self.transform.reset_choices()
        self.transform.value = name
        return name

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
        output = self.output_path.value
        return form_config(
            store=self.controller.selection.store.path if self.controller.selection.store else None,
            info=self.controller.info,
            key=self.position.value,
            channels=sorted(self.channels.value),
            times_text=self.times.value,
            output=str(output) if output else None,
            pyramid_text=self.pyramid_levels.value,
            settings={
                "transform": self.transform.value,
                "params": {w.name: param_value(w) for w in self.transform_params},
                "num_workers": "auto" if self.auto_workers.value else int(self.num_workers.value),
                "use_threads": bool(self.use_threads.value),
                "overwrite": bool(self.overwrite.value),
            },
            positions=compared_positions(self),
        )

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
        self.num_workers.enabled = not busy and not self.auto_workers.value
        self._on_output_changed()
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
        return self.controller.transform_choices(self._registry)

    def _position_choices(self, _widget: Any = None) -> list[str]:
        return self.controller.selection.position_keys

    def _channel_choices(self, _widget: Any = None) -> list[tuple[str, int]]:
        return [(name, i) for i, name in enumerate(self.controller.selection.channel_names)]

    def _input_chosen(self) -> bool:
        return bool(self.input_path.line_edit.value.strip())

    def _on_input_changed(self, *_: Any) -> None:
        path = self.input_path.value
        selection = self.controller.selection
        selection.clear()
        self.position.reset_choices()
        self.channels.reset_choices()
        if not path or str(path) in ("", "."):
            return
        try:
            store = selection.choose_store(path)
        except ProcessPositionError as exc:
            self._bad_store(path, exc)
            return
        self.position.reset_choices()
        if store.position_keys:
            self.position.value = store.position_keys[0]
        self._on_position_changed()
        if selection.info is None:
            return  # the position could not be read: its error stays in the status line
        kind = "plate" if store.kind == "plate" else "position"
        self.show_status(
            f"{kind} with {len(store.position_keys)} position(s); pick a transform and press Run."
        )

    def _bad_store(self, path: Any, exc: Exception) -> None:
        """Say why a store cannot be used, in the status line and as a notification.

        The notification is only for a folder that exists, not for a path that is
        still being typed.
        """
        self.status.value = str(exc)
        if os.path.isdir(str(path)):
            show_error(str(exc))

    def _on_position_changed(self, *_: Any) -> None:
        key, selection = self.position.value, self.controller.selection
        before = selection.info
        previous = [before.channel_names[c] for c in self.channels.value] if before else []
        try:
            info = selection.choose_position(key)
        except ProcessPositionError as exc:
            info = None
            self._bad_store(selection.position_path(key) or key, exc)
        if info is not None and info is before:
            return  # already shown
        self.channels.reset_choices()
        if info is None:
            return
        keep = [i for i, name in enumerate(info.channel_names) if name in previous]
        self.channels.value = keep or list(range(len(info.channel_names)))
        self.times.tooltip = (
            f"Time points of {info.shape[0]} (0 to {info.shape[0] - 1}): "
            "'all', or indices and ranges like '0-3,7'"
        )
        self._fit_channel_list()
        try:
            self._sink.show_inputs(info, now=True)
        except Exception as exc:  # unreadable data: say so, keep the form usable
            self.show_status(f"cannot show {info.path}: {exc}")

    def _fit_channel_list(self) -> None:
        rows = max(1, min(6, len(self.channels.choices)))
        self.channels.native.setFixedHeight(rows * 22 + 8)

    def _on_transform_changed(self, *_: Any) -> None:
        name = self.transform.value
        self.transform_params.clear()
        if name is None:
            return
        spec = self.controller.spec(name)
        hints = spec.type_hints()
        widgets = [param_widget(p, hints.get(p.name, p.annotation)) for p in spec.parameters()]
        self.transform_params.extend(widgets)
        self.transform_params.visible = bool(widgets)
        self.transform.tooltip = spec.summary or spec.name
        self.controller.previews.request()

    def _on_custom_transform(self, *_: Any) -> None:
        text = self.custom_transform.value.strip()
        if ":" not in text or text.endswith(":"):
            return
        try:
            self.add_transform(text)
        except ProcessPositionError as exc:
            self.custom_transform.tooltip = str(exc)
            return
        self.custom_transform.tooltip = f"added {text}"

    def _on_mode_changed(self, *_: Any) -> None:
        workers, threads = int(self.num_workers.value), bool(self.use_threads.value)
        if workers > 1 and not threads and not self.running and not self._closed:
            self.controller.ensure_pool(workers, warm=True, transform=self.transform.value)

    def _on_output_changed(self, *_: Any) -> None:
        # Pyramid levels are written into an output store only.
        self.pyramid_levels.enabled = bool(self.output_path.value) and not self.running

    def _on_auto_workers(self, *_: Any) -> None:
        self.num_workers.enabled = not self.auto_workers.value and not self.running

    def _on_save_clicked(self, *_: Any) -> None:
        chosen = ask_for_settings_file()
        if not chosen:
            return
        try:
            self.save_config(chosen, compared_positions(self))
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
