"""The peak resident memory of this process while a block of code runs.

On Linux the kernel keeps the peak itself: writing ``5`` to
``/proc/self/clear_refs`` resets the high-water mark (``VmHWM`` in
``/proc/self/status``) to the current resident size, so the mark read
afterwards is the exact peak of the block, every allocation counted (numpy's
buffers, C libraries', threads'), however briefly it was held. Where that
reset is not allowed, a thread samples the resident size every few
milliseconds instead (a peak shorter than that can be missed).
``tracemalloc`` would see only Python's allocator; ``ru_maxrss`` cannot be
reset and so holds the peak of the imports before the block too.
"""

from __future__ import annotations

import threading
from pathlib import Path
from types import TracebackType

from napari_process_position.core.memory import rss_bytes

__all__ = ["PeakMeter"]

#: Seconds between samples when the kernel's mark cannot be reset.
SAMPLE_INTERVAL_S = 0.002


def _high_water_mark() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _reset_high_water_mark() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return _high_water_mark() is not None


class PeakMeter:
    """Measure a block's peak resident memory above the process's level at its start.

    Examples
    --------
    >>> import numpy as np
    >>> with PeakMeter() as meter:
    ...     a = np.ones(2**24)  # 128 MiB
    ...     del a
    >>> meter.peak_above > 100 * 2**20  # doctest: +SKIP
    True

    Attributes
    ----------
    baseline
        Resident bytes when the block started.
    peak
        The highest resident bytes while it ran.
    peak_above
        ``peak - baseline``: what the block needed on top.
    method
        ``"VmHWM"`` (the kernel's own mark) or ``"sampled"``.
    """

    def __init__(self) -> None:
        self.baseline = 0
        self.peak = 0
        self.method = "VmHWM"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def peak_above(self) -> int:
        """Bytes above the baseline at the peak."""
        return max(0, self.peak - self.baseline)

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL_S):
            self.peak = max(self.peak, rss_bytes())

    def __enter__(self) -> PeakMeter:
        self.baseline = self.peak = rss_bytes()
        if not _reset_high_water_mark():
            self.method = "sampled"
            self._thread = threading.Thread(target=self._sample, name="npp-peak", daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
        mark = _high_water_mark() if self.method == "VmHWM" else None
        self.peak = max(self.peak, mark or 0, rss_bytes())
