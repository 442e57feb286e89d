"""Qt plumbing of the widget: noticing when it closes, and thread-pool and worker details."""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable
from typing import Any

from napari.qt.threading import GeneratorWorker
from qtpy.QtCore import QEvent, QObject, QThreadPool, QTimer
from qtpy.QtWidgets import QWidget

__all__ = [
    "CloseWatcher",
    "ClosingGeneratorWorker",
    "QtLauncher",
    "deleted",
    "room_for_one_more_thread",
]


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


class QtLauncher:
    """The controller's :class:`~.controller.Launcher` in napari: thread workers and QTimers.

    A job's generator runs in a napari thread worker; its items reach
    ``on_event`` on the main thread (the worker's ``yielded`` signal). Workers
    are tracked until they end, so the widget can tell when nothing of it runs
    in the background any more. The workers' signals reach the callbacks
    through a weak reference to the launcher: a job still ending when the
    widget is gone keeps nothing of it (nor the viewer) alive.
    """

    def __init__(self, parent: QObject) -> None:
        self._parent = parent
        self.workers: set[Any] = set()
        self._callbacks: dict[int, tuple[Any, Any]] = {}

    @property
    def busy(self) -> bool:
        """True while a started job has not finished."""
        return bool(self.workers)

    def start(
        self,
        job: Callable[..., Any],
        *args: Any,
        on_event: Callable[[Any], None] | None = None,
        on_finished: Callable[[], None] | None = None,
    ) -> Any:
        """Start ``job(*args)`` in a thread worker; returns the worker."""
        import inspect

        from napari.qt.threading import thread_worker

        if inspect.isgeneratorfunction(job):
            worker = thread_worker(job, worker_class=ClosingGeneratorWorker, start_thread=False)(
                *args
            )
        else:
            worker = thread_worker(job, start_thread=False)(*args)
        key = id(worker)
        self.workers.add(worker)
        self._callbacks[key] = (on_event, on_finished)
        launcher_ref = weakref.ref(self)

        def event(item: Any) -> None:
            launcher = launcher_ref()
            callback = launcher._callbacks.get(key, (None, None))[0] if launcher else None
            if callback is not None:
                callback(item)

        def finished() -> None:
            # Qt holds these connections, unseen by Python's garbage collector: drop them.
            for name in ("yielded", "errored", "finished"):
                with contextlib.suppress(TypeError, RuntimeError, AttributeError):
                    getattr(worker, name).disconnect()
            launcher = launcher_ref()
            if launcher is None:
                return
            launcher.workers.discard(worker)
            callback = launcher._callbacks.pop(key, (None, None))[1]
            if callback is not None:
                callback()

        if on_event is not None and hasattr(worker, "yielded"):
            worker.yielded.connect(event)
        worker.finished.connect(finished)
        room_for_one_more_thread()
        worker.start()
        return worker

    def stop(self, handle: Any) -> None:
        """Ask a worker to stop (its generator ends at its next item)."""
        if handle is not None:
            with contextlib.suppress(RuntimeError):
                handle.quit()

    def call_later(self, ms: int, callback: Callable[[], None]) -> QTimer:
        """Call ``callback`` on the main thread in ``ms`` milliseconds."""
        timer = QTimer(self._parent)
        timer.setSingleShot(True)
        timer.timeout.connect(callback)
        timer.start(int(ms))
        return timer

    def cancel_call(self, handle: Any) -> None:
        """Cancel a ``call_later``."""
        if handle is not None and not deleted(handle):
            handle.stop()
            handle.deleteLater()
