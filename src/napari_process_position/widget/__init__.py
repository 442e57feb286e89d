"""The "Process position" napari widget: pick, preview, run, watch, cancel.

The widget builds a :class:`RunConfig` exactly as the command line does and
hands it to the engine; a run streams in a napari ``thread_worker``, and each
finished (t, c) volume is copied into its output layer on the main thread,
with refreshes coalesced so the event loop never stalls. Live and region
previews recompute the volume on screen when a setting changes.

This package (with ``_sample_data``) is the only part of
napari-process-position that imports qtpy, magicgui or napari:

- :mod:`._container`: the magicgui children and their wiring (the widget class);
- :mod:`._run`: Run, Cancel and the warm process pool;
- :mod:`._layers`: input and output layers, copying volumes in, coalesced refreshes;
- :mod:`._live`: live and region previews;
- :mod:`._params`: parameter widgets from a transform's signature;
- :mod:`._helpers`, :mod:`._qt`: small helpers.
"""

from napari_process_position.widget.container import ProcessPositionWidget
from napari_process_position.widget.helpers import parse_times

__all__ = ["ProcessPositionWidget", "parse_times"]
