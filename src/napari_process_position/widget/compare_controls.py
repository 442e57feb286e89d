"""The widget's **compare** controls: pick positions of the plate, compare them, step through.

A row of its own below the preview: the positions to compare (keys or globs,
comma-separated), a quick pick (one field per well, a row, a column, N at
random) with its value, **live**, **Compare** and **End**; and **positions**
above Run: the form's position for Run and every position for the saved
settings, or the compared positions for both. PageDown and PageUp step
through the tiles. The decisions are the controller's
:class:`~.compare.Comparison`; this module only binds the controls to it.
**positions** is the form model's (:mod:`.form_view` binds it), and a change of
the transform, its parameters or the channels reaches a live comparison through
the model.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from magicgui.widgets import CheckBox, ComboBox, Container, LineEdit, PushButton

from napari_process_position.core.errors import ProcessPositionError
from napari_process_position.widget.compare import QUICK_PICKS, Comparison

if TYPE_CHECKING:
    import napari

__all__ = ["COMPARED_POSITIONS", "USUAL_POSITIONS", "add_compare_controls"]

#: Run runs the form's position, Save saves for every position.
USUAL_POSITIONS = "Run: this position, Save: every position"
#: Run and Save take the compared positions.
COMPARED_POSITIONS = "the compared positions"
_NO_PICK = "quick pick…"


def _shown(keys: list[str]) -> str:
    return ", ".join(keys)


def add_compare_controls(
    w: Any, comparison: Comparison, viewer: napari.viewer.Viewer
) -> _ViewerBindings:
    """Add the compare row to the view ``w`` (below the Z range) and bind it to ``comparison``.

    Returns the hooks in the viewer; close them when the widget goes.
    """
    w.compare_positions = LineEdit(
        name="compare_positions",
        label="compare",
        tooltip="Positions to compare side by side: keys or globs, comma-separated ('A/*/0')",
    )
    w.compare_positions.native.setPlaceholderText("A/1/0, B/*/0 … or a quick pick")
    w.compare_pick = ComboBox(
        name="compare_pick",
        choices=[_NO_PICK, *QUICK_PICKS],
        value=_NO_PICK,
        tooltip="Pick positions quickly; a row, a column or N goes in the box beside",
    )
    w.compare_value = LineEdit(
        name="compare_value", tooltip="The row (B), the column (3) or N (9) of the quick pick"
    )
    w.compare_value.native.setMaximumWidth(48)
    w.compare_live = CheckBox(
        name="compare_live",
        value=False,
        text="live",
        tooltip="Recompute every tile when a parameter, the channels or the time point change",
    )
    w.compare_button = PushButton(
        name="compare_button",
        text="Compare",
        tooltip="Compute the time point on screen for every picked position, side by side",
    )
    w.compare_end = PushButton(name="compare_end", text="End", tooltip="Remove the tiles")
    w.compare_row = Container(
        name="compare_row",
        label=" ",
        layout="horizontal",
        labels=False,
        widgets=[w.compare_pick, w.compare_value, w.compare_live, w.compare_button, w.compare_end],
    )
    w.compare_row.margins = (0, 0, 0, 0)
    w.run_for = ComboBox(
        name="run_for",
        label="positions",
        choices=[USUAL_POSITIONS, COMPARED_POSITIONS],
        value=USUAL_POSITIONS,
        tooltip="The positions Run processes (several need an output store) and the saved "
        "batch settings name",
    )
    at = list(w).index(w.z_range) + 1
    w.insert(at, w.compare_positions)
    w.insert(at + 1, w.compare_row)
    w.insert(list(w).index(w.run_button), w.run_for)

    def picked(keys: list[str]) -> None:
        w.compare_positions.value = _shown(keys)
        seed = f" at random (seed {comparison.seed})" if comparison.seed is not None else ""
        w.show_status(f"{len(keys)} position(s) picked{seed}; press Compare")

    def on_quick(*_: Any) -> None:
        kind = w.compare_pick.value
        if kind == _NO_PICK:
            return
        try:
            picked(comparison.quick_pick(kind, str(w.compare_value.value)))
        except ProcessPositionError as exc:
            w.show_status(f"cannot pick: {exc}")
        w.compare_pick.value = _NO_PICK

    def on_typed(*_: Any) -> None:
        text = str(w.compare_positions.value)
        if text == _shown(comparison.picks):
            return
        try:
            comparison.pick([p.strip() for p in text.split(",")])
        except ProcessPositionError as exc:
            w.show_status(f"cannot pick: {exc}")

    def on_compare(*_: Any) -> None:
        on_typed()
        comparison.set_live(bool(w.compare_live.value))
        comparison.start()

    def on_live(*_: Any) -> None:
        comparison.set_live(bool(w.compare_live.value))

    w.compare_pick.changed.connect(on_quick)
    w.compare_positions.native.editingFinished.connect(on_typed)
    w.compare_button.clicked.connect(on_compare)
    w.compare_end.clicked.connect(comparison.stop)
    w.compare_live.changed.connect(on_live)
    w._settings.extend([w.compare_positions, w.compare_row])
    return _ViewerBindings(viewer, comparison)


def _weakly(method: Callable[[Any], None]) -> Callable[[Any], None]:
    ref = weakref.WeakMethod(method)

    def call(viewer: Any) -> None:
        found = ref()
        if found is not None:
            found(viewer)

    return call


class _ViewerBindings:
    """The comparison's hooks in the viewer: the time slider and PageDown/PageUp.

    Bound methods (napari holds event callbacks weakly); :meth:`close` removes
    them all, so the viewer keeps nothing of a closed widget.
    """

    def __init__(self, viewer: napari.viewer.Viewer, comparison: Comparison) -> None:
        self.viewer = viewer
        self.comparison = comparison
        viewer.dims.events.current_step.connect(self.stepped)
        # The viewer's keymap holds its functions strongly: these hold the hooks weakly.
        viewer.bind_key("PageDown", _weakly(self.next_tile), overwrite=True)
        viewer.bind_key("PageUp", _weakly(self.previous_tile), overwrite=True)

    def stepped(self, *_: Any) -> None:
        """Recompute a live comparison if the time point moved."""
        self.comparison.time_moved()

    def next_tile(self, *_: Any) -> None:
        """Move the view to the next tile."""
        self.comparison.step(1)

    def previous_tile(self, *_: Any) -> None:
        """Move the view to the tile before."""
        self.comparison.step(-1)

    def close(self) -> None:
        """Disconnect from the viewer."""
        self.viewer.dims.events.current_step.disconnect(self.stepped)
        self.viewer.bind_key("PageDown", None, overwrite=True)
        self.viewer.bind_key("PageUp", None, overwrite=True)
