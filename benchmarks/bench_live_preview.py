"""Live preview latency: from a parameter change to the updated volume on screen.

In a real, shown napari viewer with the Process position widget docked and
"live" on, this changes ``sigma_y`` of ``gaussian_blur`` (one channel, the
time point on screen) and measures on the main thread:

- latency: from setting the parameter to the recomputed volume copied into its
  layer and the layer refreshed (this includes the widget's debounce,
  ``PREVIEW_DEBOUNCE_MS``, which waits for the user to stop changing the value);
- compute: reading and transforming in the preview's thread worker;
- longest stall: the largest gap between ticks of a 10 ms QTimer, minus 10 ms,
  while the preview was computed and shown;
- direct: the transform applied to the same volume in this process, no GUI.

Volumes (uint16 demo data, tiled for the large one): ``demo`` 16 x 128 x 128, ``large``
64 x 512 x 512. Cases:
the whole volume, and "region only" with a rectangle of 256 x 256 pixels (64 x 64
on the demo volume, which is smaller than that) drawn in the "preview region" layer.

Run under Xvfb::

    xvfb-run -a -s "-screen 0 1600x1000x24" python benchmarks/bench_live_preview.py
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from _qt_meter import wait_until

VOLUMES = {"demo": (16, 128, 128), "large": (64, 512, 512)}
RECTANGLE = {"demo": 64, "large": 256}
SIGMAS = (2.5, 3.0, 2.0, 3.5, 1.5, 4.0, 2.8)


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


def make_volume(root: Path, zyx: tuple[int, int, int]) -> Path:
    """A one-position plate (T=2, C=1) of demo data tiled up to ``zyx`` (quick at any size)."""

    from napari_process_position.store.create import write_empty_plate
    from napari_process_position.store.demo import make_demo_plate
    from napari_process_position.store.layout import OutputLayout
    from napari_process_position.store.metadata import read_position

    tile = (2, 1, *(min(n, m) for n, m in zip(zyx, VOLUMES["demo"], strict=True)))
    demo = make_demo_plate(root / "tile.zarr", shape=tile, positions=("A/1/0",))
    info = read_position(demo.position_path("A/1/0"))
    block = info.open_array().read().result()
    reps = [1, 1, *(-(-n // m) for n, m in zip(zyx, tile[2:], strict=True))]
    data = np.tile(block, reps)[:, :, : zyx[0], : zyx[1], : zyx[2]]
    path = root / ("x".join(map(str, zyx)) + ".zarr")
    layout = OutputLayout(
        shape=data.shape, dtype=info.dtype, scale=info.scale, channel_names=info.channel_names[:1]
    )
    store = write_empty_plate(path, {"A/1/0": layout})
    out = read_position(store.position_path("A/1/0"))
    out.open_array(write=True).write(data).result()
    return path


def direct_seconds(path: Path, sigma_y: float) -> float:
    """The transform on the volume on screen (t=0, channel 0), in this process, no GUI."""

    from napari_process_position.store.metadata import read_position
    from napari_process_position.transforms import get_transform

    spec = get_transform("gaussian_blur")
    params = spec.check_params({"sigma_y": sigma_y})
    info = read_position(path / "A" / "1" / "0")
    source = info.open_array()
    times = []
    for _ in range(3):
        start = time.perf_counter()
        spec.func(source[0, [0]].read().result(), **params)
        times.append(time.perf_counter() - start)
    return min(times)


def change_and_wait(widget, meter: StallMeter, sigma: float) -> dict:
    wait_until(lambda: False, 0.3)  # idle viewer before each change
    meter.start()
    start = time.perf_counter()
    widget.transform_params.sigma_y.value = sigma

    def shown() -> bool:
        info = widget.last_preview
        # The preview of this change: requested by it (a change records when it came).
        return bool(info.get("error")) or (
            info.get("shown") is not None and info.get("requested", 0) >= start
        )

    wait_until(shown, 300)
    stall = meter.stop()
    info = widget.last_preview
    if info.get("error") or not info.get("shown"):
        raise RuntimeError(f"the preview failed: {widget.status.value}")
    return {
        "latency_s": info["shown"] - start,
        "compute_s": info["compute_s"],
        "stall_ms": stall * 1000,
        "region": info["region"],
    }


def run_volume(name: str, path: Path, repeats: int) -> list[dict]:
    import napari

    from napari_process_position.widget import ProcessPositionWidget
    from napari_process_position.widget.previews import PREVIEW_DEBOUNCE_MS
    from napari_process_position.widget.region import REGION_LAYER_NAME

    viewer = napari.Viewer(title=f"bench live preview {name}")
    viewer.window._qt_window.resize(1400, 900)
    widget = ProcessPositionWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Process position")
    widget.input_path.value = str(path)
    widget.transform.value = "gaussian_blur"
    widget.channels.value = [0]
    meter = StallMeter()
    z, y, x = VOLUMES[name]
    side = RECTANGLE[name]
    pixel = viewer.layers[0].scale[-2:]
    top, left = (y - side) // 2, (x - side) // 2
    corners = np.array([[top, left], [top + side - 1, left + side - 1]], float) * pixel
    rows = []
    try:
        widget.live.value = True
        for case in ("full volume", f"region {side}x{side}"):
            if case.startswith("region"):
                viewer.add_shapes(corners, shape_type="rectangle", name=REGION_LAYER_NAME)
                widget.region.value = True
            change_and_wait(widget, meter, 1.0)  # warm-up: layers made, caches filled
            samples = [change_and_wait(widget, meter, s) for s in SIGMAS[:repeats]]
            row = {
                "volume": name,
                "zyx": f"{z}x{y}x{x}",
                "case": case,
                "region": samples[-1]["region"],
                "latency_s": statistics.median(s["latency_s"] for s in samples),
                "latency_max_s": max(s["latency_s"] for s in samples),
                "compute_s": statistics.median(s["compute_s"] for s in samples),
                "stall_ms": max(s["stall_ms"] for s in samples),
                "debounce_s": PREVIEW_DEBOUNCE_MS / 1000,
                "repeats": len(samples),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        widget.live.value = False
        widget.close_pool()
        widget.wait_for_background(60)
        viewer.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", nargs="+", default=list(VOLUMES), choices=list(VOLUMES))
    parser.add_argument("--repeats", type=int, default=5, help="parameter changes per case")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="npp-bench-live-"))
    rows = []
    try:
        for name in args.volumes:
            path = make_volume(root / name, VOLUMES[name])
            direct = direct_seconds(path, 2.5)
            for row in run_volume(name, path, args.repeats):
                row["direct_s"] = direct
                rows.append(row)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print()
    print(
        f"{'volume':<14} {'case':<16} {'latency s':>10} {'(max)':>7} {'compute s':>10} "
        f"{'direct s':>9} {'stall ms':>9}"
    )
    for row in rows:
        print(
            f"{row['zyx']:<14} {row['case']:<16} {row['latency_s']:>10.3f} "
            f"{row['latency_max_s']:>7.3f} {row['compute_s']:>10.3f} {row['direct_s']:>9.3f} "
            f"{row['stall_ms']:>9.1f}"
        )
    print(f"(latency includes the {rows[0]['debounce_s'] * 1000:.0f} ms debounce)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
