"""How smooth napari stays while the widget streams volumes in, and how soon the first one shows.

For each workload and mode this presses Run in a real, shown napari viewer and
measures, on the main thread:

- the longest stall: a QTimer ticks every 10 ms; the largest gap between two
  ticks, minus the 10 ms period, is the longest time the event loop was blocked;
- Run -> first volume on screen: from the click to the first coalesced layer
  refresh that shows a finished volume;
- one task's compute: the transform on one volume, timed in this process.

Workloads (float32, transform ``soft_magnitude``, preview without output store):
``reference`` one position T=8, C=2, Z=32, Y=X=256; ``large`` T=4, C=2 volumes of
64 x 512 x 512. Modes: threads; processes with a cold pool (spawned by the run);
processes with a warm pool (kept by the widget from the previous run).

Run under Xvfb::

    xvfb-run -a -s "-screen 0 1600x1000x24" python benchmarks/bench_widget_responsiveness.py

Aim: longest stall < 100 ms; first volume < 1 s + one task's compute (threads, warm pool).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

WORKLOADS = {
    "reference": (8, 2, 32, 256, 256),
    "large": (4, 2, 64, 512, 512),
}
MODES = (
    "threads (first run)",
    "threads (re-run)",
    "processes (cold pool)",
    "processes (warm pool)",
)


def make_input(root: Path, shape: tuple[int, int, int, int, int]) -> Path:
    """A one-position float32 plate of random data (fast to make at any size)."""

    from napari_process_position.store.create import write_empty_plate
    from napari_process_position.store.layout import OutputLayout
    from napari_process_position.store.metadata import read_position

    path = root / ("input-" + "x".join(map(str, shape)) + ".zarr")
    layout = OutputLayout(
        shape=shape,
        dtype="<f4",
        scale=(1.0, 1.0, 2.0, 0.65, 0.65),
        channel_names=tuple(f"Channel {c}" for c in range(shape[1])),
    )
    store = write_empty_plate(path, {"A/1/0": layout})
    info = read_position(store.position_path("A/1/0"))
    array = info.open_array(write=True)
    rng = np.random.default_rng(0)
    for t in range(shape[0]):
        block = rng.standard_normal(shape[1:], dtype=np.float32) * 100 + 500
        array[t].write(block).result()
    return path


def task_compute_seconds(shape: tuple[int, int, int, int, int]) -> float:
    from napari_process_position.transforms import get_transform

    func = get_transform("soft_magnitude").func
    block = np.random.default_rng(1).standard_normal((1, *shape[2:]), dtype=np.float32)
    func(block)
    start = time.perf_counter()
    for _ in range(3):
        func(block)
    return (time.perf_counter() - start) / 3


class StallMeter:
    """Largest gap between ticks of a 10 ms QTimer on the main thread."""

    def __init__(self) -> None:
        from qtpy.QtCore import QTimer

        self.timer = QTimer()
        self.timer.setInterval(10)
        self.timer.timeout.connect(self._tick)
        self.last = 0.0
        self.max_gap = 0.0

    def _tick(self) -> None:
        now = time.perf_counter()
        self.max_gap = max(self.max_gap, now - self.last)
        self.last = now

    def start(self) -> None:
        self.last = time.perf_counter()
        self.max_gap = 0.0
        self.timer.start()

    def stop(self) -> float:
        self.timer.stop()
        return max(0.0, self.max_gap - 0.010)


def wait_until(predicate, timeout: float) -> None:
    """Run the Qt event loop (not a busy loop) until ``predicate()`` or the timeout."""
    from qtpy.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    poll = QTimer()
    poll.setInterval(5)
    deadline = time.perf_counter() + timeout
    poll.timeout.connect(lambda: (predicate() or time.perf_counter() > deadline) and loop.quit())
    poll.start()
    loop.exec_()
    poll.stop()


def measure(widget, meter: StallMeter, timeout: float = 600.0) -> dict:
    wait_until(lambda: False, 0.3)  # let the viewer settle before measuring
    meter.start()
    widget.run_button.clicked()
    wait_until(lambda: not widget.running, timeout)
    stall = meter.stop()
    stats = widget.last_run
    if stats["outcome"] != "done":
        raise RuntimeError(f"the run ended {stats['outcome']}: {widget.status.value}")
    return {
        "longest_stall_ms": round(stall * 1000, 1),
        "first_volume_s": round(stats["first_shown"] - stats["started"], 3),
        "run_s": round(stats["finished"] - stats["started"], 3),
        "volumes": stats["done"],
    }


def redraw_floor(viewer, meter: StallMeter, n: int = 10) -> float:
    """Longest stall of napari alone redrawing: one layer refreshed every 200 ms, no run."""
    from qtpy.QtCore import QTimer

    layer = viewer.layers[-1]
    count = [0]

    def refresh() -> None:
        layer.refresh()
        count[0] += 1

    timer = QTimer()
    timer.setInterval(200)
    timer.timeout.connect(refresh)
    wait_until(lambda: False, 0.3)
    meter.start()
    timer.start()
    wait_until(lambda: count[0] >= n, 30)
    timer.stop()
    wait_until(lambda: False, 0.3)
    return round(meter.stop() * 1000, 1)


def run_workload(name: str, path: Path, workers: int, follow: bool = True) -> list[dict]:
    import napari

    from napari_process_position.widget import ProcessPositionWidget

    viewer = napari.Viewer(title=f"bench {name}")
    viewer.window._qt_window.resize(1400, 900)
    widget = ProcessPositionWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Process position")
    widget.input_path.value = str(path)
    widget.transform.value = "soft_magnitude"
    widget.num_workers.value = workers
    widget.follow.value = follow
    meter = StallMeter()
    rows = []
    try:
        for mode in MODES:
            widget.use_threads.value = mode.startswith("threads")
            if mode == "processes (cold pool)":
                widget.close_pool()  # the run spawns its workers itself
            if mode == "processes (warm pool)":
                pool = widget.pool
                wait_until(
                    lambda pool=pool: pool is not None and len(pool.processes()) == workers, 60
                )
                wait_until(lambda: not widget._workers, 60)
            row = {"workload": name, "mode": mode, "workers": workers, **measure(widget, meter)}
            rows.append(row)
            print(json.dumps(row), flush=True)
        floor = redraw_floor(viewer, meter)
        for row in rows:
            row["napari_redraw_ms"] = floor
        print(f"napari's own redraw stall in this viewer (refresh one layer): {floor} ms")
    finally:
        widget.close_pool()
        viewer.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--workers", type=int, default=None, help="default: available CPUs")
    parser.add_argument("--keep", type=Path, default=None, help="keep the inputs in this folder")
    parser.add_argument(
        "--no-follow",
        action="store_true",
        help="untick 'follow' (the time slider stays; less re-slicing)",
    )
    args = parser.parse_args()

    from napari_process_position.core.budget import available_cpus

    workers = args.workers or max(2, available_cpus())
    root = args.keep or Path(tempfile.mkdtemp(prefix="npp-bench-widget-"))
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for name in args.workloads:
            shape = WORKLOADS[name]
            existing = root / ("input-" + "x".join(map(str, shape)) + ".zarr")
            path = existing if existing.exists() else make_input(root, shape)
            compute = task_compute_seconds(shape)
            print(f"{name}: TCZYX {shape}, one task's compute {compute * 1000:.0f} ms", flush=True)
            for row in run_workload(name, path, workers, follow=not args.no_follow):
                row["task_compute_ms"] = round(compute * 1000, 1)
                rows.append(row)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    print()
    print(
        f"{'workload':<10} {'mode':<22} {'stall ms':>9} {'napari redraw ms':>17} "
        f"{'first vol s':>12} {'aim s':>7} {'run s':>7}"
    )
    for row in rows:
        aim = "" if "cold" in row["mode"] else f"{1 + row['task_compute_ms'] / 1000:.2f}"
        print(
            f"{row['workload']:<10} {row['mode']:<22} {row['longest_stall_ms']:>9.1f} "
            f"{row['napari_redraw_ms']:>17.1f} {row['first_volume_s']:>12.3f} {aim:>7} "
            f"{row['run_s']:>7.2f}"
        )


if __name__ == "__main__":
    main()
