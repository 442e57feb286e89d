"""The "Process position" napari widget: pick, preview, run, watch, cancel.

The widget builds a :class:`RunConfig` exactly as the command line does and
hands it to the engine; a run streams in a napari ``thread_worker``, and each
finished (t, c) volume is copied into its output layer on the main thread,
with refreshes coalesced so the event loop never stalls. Live and region
previews recompute the volume on screen when a setting changes.

This package is the only part of napari-process-position that imports qtpy,
magicgui, napari or vispy (an import-linter contract):

- ``container``: the magicgui children and their wiring (the widget class);
- ``run``: Run, Cancel and the warm process pool;
- ``layers``: input and output layers, copying volumes in, coalesced refreshes;
- ``live``: live and region previews;
- ``params``: parameter widgets from a transform's signature;
- ``reader``, ``sample_data``: napari's reader and sample data contributions;
- ``launch``: napari with the widget docked (``process-position gui``);
- ``helpers``, ``qt``: small helpers.
"""

from napari_process_position.widget.view import ProcessPositionWidget

__all__ = ["ProcessPositionWidget"]
