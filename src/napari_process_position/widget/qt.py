"""Qt plumbing of the widget: noticing when it closes, and thread-pool and worker details."""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable
from typing import Any

from napari.qt.threading import GeneratorWorker
from qtpy.QtCore import QEvent, QObject, QThreadPool, QTimer
from qtpy.QtWidgets import QWidget

__all__ = ["CloseWatcher", "ClosingGeneratorWorker", "deleted", "room_for_one_more_thread"]


class ClosingGeneratorWorker(GeneratorWorker):
    """A generator worker that closes its generator in its own thread when it stops.

    napari's worker leaves an aborted generator suspended; closing it later
    from whichever thread collects it would run the engine's clean-up (which
    may stop a process pool) on the main thread.
    """

    def work(self) -> Any:
        """Run the generator, and close it on this thread whatever happens."""
        try:
            return super().work()
        finally:
            with contextlib.suppress(Exception):
                self._gen.close()


class CloseWatcher(QObject):
    """Calls back when the viewer's window closes or the widget leaves its dock.

    napari's dock "x" (``remove_dock_widget``) takes the widget out of its dock
    without deleting it, so being un-parented counts as being closed too. The
    window is found from the widget once it is docked (napari's private
    ``window._qt_window`` is out of bounds for plugins).
    """

    def __init__(self, callback: Callable[[], None], widget: QWidget) -> None:
        super().__init__(widget)
        # A weak reference: the watcher (owned by Qt) must not keep the widget alive.
        self._callback = weakref.WeakMethod(callback)  # type: ignore[arg-type]
        self._widget = widget
        self._window: QWidget | None = None
        widget.installEventFilter(self)

    def _call(self) -> None:
        callback = self._callback()
        if callback is not None:
            callback()

    def _watch_window(self) -> None:
        top = self._widget.window()
        if top is not None and top is not self._widget and top is not self._window:
            if self._window is not None:
                self._window.removeEventFilter(self)
            self._window = top
            top.installEventFilter(self)

    def eventFilter(self, obj: QObject | None, event: QEvent | None) -> bool:
        """Watch the window for its close (Qt's event filter)."""
        if event is None or "_widget" not in self.__dict__:
            return False  # (a wrapper being torn down)
        kind = event.type()
        widget = self._widget  # (compared as a local: ``obj is ...`` would narrow it to None)
        if kind == QEvent.Type.ParentChange and obj is widget:
            if self._widget.parent() is None:
                self._call()
            else:  # docking finishes after the re-parenting: look for the window then
                QTimer.singleShot(0, self._watch_window)
        elif obj is self._window and kind == QEvent.Type.Close:
            self._call()
        return False


def room_for_one_more_thread() -> None:
    """Make sure napari's thread pool starts the next worker now, not when another ends."""
    pool = QThreadPool.globalInstance()
    if pool is None:
        return
    needed = pool.activeThreadCount() + 1
    if pool.maxThreadCount() < needed:
        pool.setMaxThreadCount(needed)


def deleted(obj: QObject) -> bool:
    """Return True when the C++ side of a Qt object is gone."""
    try:
        obj.objectName()
    except RuntimeError:
        return True
    return False
