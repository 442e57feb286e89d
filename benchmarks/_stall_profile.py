"""What the main thread does during a stall: a sampler of its stack, for the widget benchmark.

A background thread reads the main thread's stack every ``interval`` seconds
(``sys._current_frames``); :func:`StallProfile.report` lists, for a gap the
stall meter saw, the functions present in most samples taken during it
(inclusive), which names the napari, vispy or Qt call that holds the thread.
"""

from __future__ import annotations

import collections
import sys
import threading
import time


class StallProfile:
    """Samples the main thread's stack while running (``start`` / ``stop``)."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval
        self.samples: list[tuple[float, tuple[str, ...]]] = []
        self._main = threading.main_thread().ident
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="stall-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            frame = sys._current_frames().get(self._main)
            stack = []
            while frame is not None:
                code = frame.f_code
                where = code.co_filename.rsplit("site-packages/", 1)[-1]
                stack.append(f"{where}:{code.co_name}")
                frame = frame.f_back
            self.samples.append((time.perf_counter(), tuple(reversed(stack))))

    def report(self, start: float, end: float, top: int = 22) -> list[str]:
        """The functions most present in the samples of ``[start, end]``, innermost last."""
        inside = [stack for at, stack in self.samples if start <= at <= end]
        if not inside:
            return ["(no samples)"]
        counts: collections.Counter[str] = collections.Counter()
        depth: dict[str, int] = {}
        for stack in inside:
            for i, name in enumerate(dict.fromkeys(stack)):
                counts[name] += 1
                depth[name] = max(depth.get(name, 0), i)
        shown = [
            (name, n)
            for name, n in counts.most_common(200)
            if "bench_widget_responsiveness" not in name and not name.endswith(":exec")
        ]
        shown = sorted(shown[: top * 3], key=lambda item: (-item[1], depth[item[0]]))[:top]
        shown.sort(key=lambda item: depth[item[0]])
        return [f"{100 * n / len(inside):5.0f}%  {name}" for name, n in shown]
