"""Open napari with the Process position widget docked: what ``process-position gui`` does."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["open_viewer"]


def open_viewer(store: str | os.PathLike[str] | None = None, *, run: bool = True) -> object:
    """Open a napari viewer with the widget docked, and ``store`` picked as its input.

    Parameters
    ----------
    store
        An OME-Zarr plate or position to pick, or None.
    run
        Start napari's event loop (returns when the window is closed).

    Returns
    -------
    napari.Viewer
        The viewer (closed already when ``run`` is True).

    Raises
    ------
    ImportError
        napari (or a Qt binding) is not installed.
    """
    import napari

    from napari_process_position.widget.view import ProcessPositionWidget

    viewer = napari.Viewer(title="napari-process-position")
    widget = ProcessPositionWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Process position", area="right")
    if store is not None:
        widget.input_path.value = Path(store).expanduser().resolve()
    if run:
        napari.run()
    return viewer
