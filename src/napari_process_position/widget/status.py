"""The status line and the progress bar, repainted at most every 100 ms while a run streams.

Each repaint of a label or of the bar repaints napari's window (its OpenGL
canvas included), so a run that finishes volumes quickly would spend the
window's time on them: changes are held and painted together by one timer.
"""

from __future__ import annotations

import time
from typing import Any

from napari.utils.notifications import show_error
from qtpy.QtCore import QTimer

from napari_process_position.widget.qt import deleted

__all__ = ["STATUS_INTERVAL_MS", "StatusPainter"]

#: The status line and the progress bar repaint at most this often.
STATUS_INTERVAL_MS = 100


class StatusPainter:
    """Shows status text and progress in the form's ``status`` and ``progress`` widgets.

    Parameters
    ----------
    status, progress
        The magicgui Label and ProgressBar.
    parent
        The Qt widget that owns the timer.
    """

    def __init__(self, status: Any, progress: Any, parent: Any) -> None:
        self._status = status
        self._progress = progress
        self._pending_status: str | None = None
        self._pending_progress: tuple[int, int] | None = None
        self._last_paint = 0.0
        self.closed = False
        self._timer = QTimer(parent)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.paint)

    def show(self, text: str, error: bool = False, *, later: bool = False) -> None:
        """Show ``text`` now, or with the next paint (``later``); an error is a notification too."""
        if later and not error:
            self._pending_status = text
            self._request()
            return
        self._status.value = text
        self._pending_status = None
        if error:
            show_error(text)

    def progress(self, done: int, total: int) -> None:
        """Show how many volumes are done (with the next paint)."""
        self._pending_progress = (done, total)
        self._request()

    def _request(self) -> None:
        if self.closed or self._timer.isActive():
            return
        wait = STATUS_INTERVAL_MS - (time.perf_counter() - self._last_paint) * 1000
        self._timer.start(int(max(0.0, wait)))

    def paint(self) -> None:
        """Paint what is pending now."""
        self._last_paint = time.perf_counter()
        if self._pending_progress is not None:
            done, total = self._pending_progress
            self._pending_progress = None
            # QProgressBar.setValue repaints synchronously; with napari's OpenGL canvas in
            # the window that is a full window redraw inside this handler: let Qt paint it.
            bar = self._progress.native
            bar.setUpdatesEnabled(False)
            try:
                self._progress.max = max(1, total)
                self._progress.value = min(done, max(1, total))
            finally:
                bar.setUpdatesEnabled(True)
            bar.update()
        if self._pending_status is not None:
            self._status.value = self._pending_status
            self._pending_status = None

    def close(self) -> None:
        """Stop the timer (the widget is gone)."""
        self.closed = True
        if not deleted(self._timer):
            self._timer.stop()
