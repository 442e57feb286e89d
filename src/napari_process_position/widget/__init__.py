"""The "Process position" napari widget: pick, preview, run, watch, cancel.

The widget builds a :class:`RunConfig` exactly as the command line does and
hands it to the engine; a run streams in a napari ``thread_worker`` and each
finished (t, c) volume appears in its output layer while the window stays
smooth. It is three parts, in the shape ndv uses:

- the **controller** (``controller``, ``previews``; Qt-free, an import-linter
  contract): the state of runs and previews (idle, running, cancelling,
  previewing), their ids, every decision; it talks to the other two through
  the protocols in ``ports`` and receives the typed records of ``events``
  from the background jobs of ``jobs``;
- the **view** (``view``, ``controls``, ``params``, ``status``, ``watch``,
  ``settings``): the magicgui Container napari docks, its children, and the
  signals bound to the controller;
- the **layer sink** (``sink``, ``layers``, ``follow``, ``cached_array``,
  ``region``): every napari layer operation, spread over the event loop.

Also: ``reader`` and ``sample_data`` (napari's reader and sample data),
``launch`` (``process-position gui``), ``helpers`` and ``qt`` (QtLauncher,
small Qt helpers). Only this package imports qtpy, magicgui, napari or vispy.
Importing it does not import Qt: ``ProcessPositionWidget`` loads the view
when it is first asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from napari_process_position.widget.view import ProcessPositionWidget

__all__ = ["ProcessPositionWidget"]


def __getattr__(name: str) -> Any:
    if name == "ProcessPositionWidget":
        from napari_process_position.widget.view import ProcessPositionWidget

        return ProcessPositionWidget
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
