"""The form's controls bound to the controller's form: intents out, the model rendered back.

A change the user makes in a control (or a script makes, ``widget.transform.value
= "gaussian_blur"``) becomes an intent of :class:`~.form_controller.FormController`;
a change of its model or selection (whoever made it) is rendered into the
controls with their signals blocked, so a render never sends an intent back.
The controls keep their magicgui names; none of them holds a setting the
run reads.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from napari.utils.notifications import show_error
from psygnal import EmissionInfo

from napari_process_position.core.errors import ProcessPositionError
from napari_process_position.store.layout import PositionInfo, StoreInfo
from napari_process_position.widget.compare_controls import COMPARED_POSITIONS, USUAL_POSITIONS
from napari_process_position.widget.form_controller import FormController
from napari_process_position.widget.params import param_value, param_widget, show_param_value

__all__ = ["FormView"]


#: The model's fields that their controls show as they are.
_SHOWN_AS_IS = ("times", "overwrite", "pyramid_levels", "num_workers", "use_threads")


def _path_text(value: Any) -> str | None:
    """Return a file field's value as the model holds it (None when empty)."""
    return None if value is None or str(value) in ("", ".") else str(value)


class FormView:
    """Binds the form's controls of ``w`` (the dock widget) to ``form`` (see the module docstring).

    Parameters
    ----------
    w
        The widget whose children :func:`.controls.build_controls` and
        :func:`.compare_controls.add_compare_controls` made.
    form
        The controller's form.
    running
        Tells whether a run is in flight (the settings are disabled then).
    """

    def __init__(self, w: Any, form: FormController, running: Callable[[], bool]) -> None:
        self.w = w
        self.form = form
        self._running = running
        #: The transform whose parameter widgets are shown.
        self._params_of: str | None = None
        # Intents: each control tells the form what the user chose.
        w.input_path.changed.connect(self._input_changed)
        w.position.changed.connect(self._position_changed)
        w.transform.changed.connect(self._transform_changed)
        w.custom_transform.changed.connect(self._custom_transform)
        w.transform_params.changed.connect(self._params_changed)
        w.channels.changed.connect(lambda value: form.set_channels(value))
        w.times.changed.connect(lambda value: form.set_times(value))
        w.output_path.changed.connect(lambda value: form.set_output(_path_text(value)))
        w.overwrite.changed.connect(lambda value: form.set_overwrite(value))
        w.pyramid_levels.changed.connect(lambda value: form.set_pyramid_levels(value))
        w.num_workers.changed.connect(lambda value: form.set_workers(value))
        w.auto_workers.changed.connect(lambda value: form.set_auto_workers(value))
        w.use_threads.changed.connect(lambda value: form.set_threads(value))
        w.run_for.changed.connect(lambda value: form.set_run_compared(value == COMPARED_POSITIONS))
        # Renders: whatever changed the model, the controls show it. (Bound methods only:
        # psygnal holds them weakly, and a model's signals outlive nothing they reach.)
        model, chosen = form.model.events, form.selection.events
        chosen.store.connect(self._render_store)
        chosen.info.connect(self._render_position)
        model.transform.connect(self._render_transform)
        model.params.connect(self._render_params)
        model.channels.connect(self._render_channels)
        model.output.connect(self._render_output)
        model.auto_workers.connect(self._render_auto_workers)
        model.all.connect(self._render_value)
        model.run_compared.connect(self._render_run_for)
        self.render()
        if form.model.transform is None:  # the transform offered first is the form's
            form.choose_transform(w.transform.value)

    def render(self) -> None:
        """Show the whole model in the controls."""
        model = self.form.model
        for name in _SHOWN_AS_IS:
            self._set(getattr(self.w, name), getattr(model, name))
        self._render_output(model.output)
        self._render_auto_workers(model.auto_workers)
        self._render_run_for(model.run_compared)
        self._render_transform(model.transform)
        self._render_channels(model.channels)
        self._fit_channels()

    def settings_enabled(self, busy: bool) -> None:
        """Enable the controls whose use depends on other settings (``busy``: a run in flight)."""
        model = self.form.model
        self.w.num_workers.enabled = not busy and not model.auto_workers
        # Pyramid levels are written into an output store only.
        self.w.pyramid_levels.enabled = bool(model.output) and not busy

    # -- intents ---------------------------------------------------------------------------
    def _input_changed(self, *_: Any) -> None:
        path = self.w.input_path.value
        try:
            store = self.form.choose_input(path)
        except ProcessPositionError as exc:
            self._bad_store(path, exc)
            return
        if store is None or self.form.info is None:
            return
        kind = "plate" if store.kind == "plate" else "position"
        self.w.show_status(
            f"{kind} with {len(store.position_keys)} position(s); pick a transform and press Run."
        )

    def _position_changed(self, *_: Any) -> None:
        key = self.w.position.value
        try:
            self.form.choose_position(key)
        except ProcessPositionError as exc:
            self._bad_store(self.form.selection.position_path(key) or key, exc)

    def _bad_store(self, path: Any, exc: Exception) -> None:
        """Say why a store cannot be used, in the status line and as a notification.

        The notification is only for a folder that exists, not for a path that is
        still being typed.
        """
        self.w.status.value = str(exc)
        if os.path.isdir(str(path)):
            show_error(str(exc))

    def _transform_changed(self, *_: Any) -> None:
        self.form.choose_transform(self.w.transform.value)

    def _custom_transform(self, *_: Any) -> None:
        field = self.w.custom_transform
        text = field.value.strip()
        if ":" not in text or text.endswith(":"):
            return
        try:
            self.form.add_transform(text)
        except ProcessPositionError as exc:
            field.tooltip = str(exc)
            return
        field.tooltip = f"added {text}"

    def _params_changed(self, *_: Any) -> None:
        self.form.set_params(
            {widget.name: param_value(widget) for widget in self.w.transform_params}
        )

    # -- renders ---------------------------------------------------------------------------
    def _render_store(self, store: StoreInfo | None) -> None:
        w = self.w
        with w.position.changed.blocked():
            w.position.reset_choices()
        typed = _path_text(w.input_path.value)
        if store is not None and (typed is None or not _same_path(typed, store.path)):
            with w.input_path.changed.blocked():
                w.input_path.value = store.path

    def _render_position(self, info: PositionInfo | None) -> None:
        w = self.w
        if info is not None and w.position.value != info.key:
            with w.position.changed.blocked():
                if info.key not in w.position.choices:
                    w.position.reset_choices()
                w.position.value = info.key
        with w.channels.changed.blocked():
            w.channels.reset_choices()
        self._render_channels(self.form.model.channels)
        if info is not None:
            w.times.tooltip = (
                f"Time points of {info.shape[0]} (0 to {info.shape[0] - 1}): "
                "'all', or indices and ranges like '0-3,7'"
            )
        self._fit_channels()

    def _fit_channels(self) -> None:
        rows = max(1, min(6, len(self.w.channels.choices)))
        self.w.channels.native.setFixedHeight(rows * 22 + 8)

    def _render_channels(self, channels: tuple[int, ...]) -> None:
        select = self.w.channels
        shown = [c for c in channels if c in select.choices]
        if list(select.value) != shown:
            with select.changed.blocked():
                select.value = shown

    def _render_transform(self, name: str | None) -> None:
        w = self.w
        if name is not None and w.transform.value != name:
            with w.transform.changed.blocked():
                if name not in w.transform.choices:
                    w.transform.reset_choices()
                w.transform.value = name
        if name == self._params_of:
            return
        params = w.transform_params
        with params.changed.blocked():
            params.clear()
            self._params_of = name
            if name is None:
                return
            spec = self.form.spec(name)
            hints = spec.type_hints()
            params.extend(
                param_widget(p, hints.get(p.name, p.annotation)) for p in spec.parameters()
            )
            params.visible = len(params) > 0
            w.transform.tooltip = spec.summary or spec.name
            self._render_params(self.form.model.params)
        # What runs is what the form shows (a parameter without a default: its widget's value).
        self._params_changed()

    def _render_params(self, values: dict[str, Any]) -> None:
        if self._params_of != self.form.model.transform:
            return  # (the transform's render builds its widgets with these values)
        params = self.w.transform_params
        with params.changed.blocked():
            for widget in params:
                if widget.name in values:
                    show_param_value(widget, values[widget.name])

    def _render_output(self, output: str | None) -> None:
        field = self.w.output_path
        if _path_text(field.value) != output:
            with field.changed.blocked():
                field.value = output
        self.settings_enabled(self._running())

    def _render_auto_workers(self, auto: bool) -> None:
        self._set(self.w.auto_workers, auto)
        self.settings_enabled(self._running())

    def _render_run_for(self, compared: bool) -> None:
        self._set(self.w.run_for, COMPARED_POSITIONS if compared else USUAL_POSITIONS)

    def _render_value(self, info: EmissionInfo) -> None:
        name = info.signal.name
        if name in _SHOWN_AS_IS:
            self._set(getattr(self.w, name), info.args[0])

    @staticmethod
    def _set(widget: Any, value: Any) -> None:
        if widget.value != value:
            with widget.changed.blocked():
                widget.value = value


def _same_path(a: str, b: str) -> bool:
    return os.path.abspath(os.path.expanduser(a)) == os.path.abspath(os.path.expanduser(b))
