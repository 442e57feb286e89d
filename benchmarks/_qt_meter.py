"""What the widget benchmarks measure napari with: main-thread stalls and one add_image.

Shared by ``bench_widget_responsiveness.py`` and ``bench_compare.py``; Qt is
imported inside the functions, so importing this module loads nothing heavy.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

__all__ = ["StallMeter", "settle", "wait_until", "yardstick_add_image"]


class StallMeter:
    """Gaps between ticks of a 10 ms QTimer on the main thread, with their times."""

    def __init__(self) -> None:
        from qtpy.QtCore import QTimer

        self.timer = QTimer()
        self.timer.setInterval(10)
        self.timer.timeout.connect(self._tick)
        self.last = 0.0
        self.gaps: list[tuple[float, float]] = []  # (end of the gap, gap seconds)

    def _tick(self) -> None:
        now = time.perf_counter()
        self.gaps.append((now, now - self.last))
        self.last = now

    def start(self) -> None:
        self.last = time.perf_counter()
        self.gaps = []
        self.timer.start()

    def stop(self) -> None:
        self._tick()
        self.timer.stop()

    def longest(self, start: float, end: float) -> float:
        """Longest stall (ms) of a gap that ended within ``[start, end]``."""
        return round(max(0.0, self.longest_gap(start, end)[1] - 0.010) * 1000, 1)

    def longest_gap(self, start: float, end: float) -> tuple[float, float]:
        """``(end of the gap, seconds)`` of the longest gap overlapping ``[start, end]``."""
        inside = [(at, gap) for at, gap in self.gaps if start < at <= end + 0.5 and at - gap < end]
        return max(inside, key=lambda item: item[1], default=(end, 0.0))


def wait_until(predicate, timeout: float) -> None:
    """Run the Qt event loop (not a busy loop) until ``predicate()`` or the timeout."""
    from qtpy.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    poll = QTimer()
    poll.setInterval(5)
    deadline = time.perf_counter() + timeout
    poll.timeout.connect(lambda: (predicate() or time.perf_counter() > deadline) and loop.quit())
    poll.start()
    loop.exec()
    poll.stop()


def settle(seconds: float = 0.4) -> None:
    wait_until(lambda: False, seconds)


def yardstick_add_image(viewer, shape: tuple[int, ...], repeats: int = 3) -> float:
    """Median seconds of one ``viewer.add_image`` of zeros (then removed), on the main thread."""
    times = []
    for _ in range(repeats):
        settle(0.2)
        data = np.zeros(shape, np.float32)
        start = time.perf_counter()
        layer = viewer.add_image(data, name="yardstick", contrast_limits=(0.0, 1.0))
        times.append(time.perf_counter() - start)
        settle(0.2)
        viewer.layers.remove(layer)
    return statistics.median(times)
