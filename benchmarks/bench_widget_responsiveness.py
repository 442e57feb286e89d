"""How smooth napari stays from the press of Run, and how soon the first volume shows.

Drives the dock widget in a real, shown napari viewer as a user does (the
children's own signals: ``run_button.clicked()``, ``cancel_button.clicked()``)
and watches the main thread: a QTimer ticks every 10 ms, and a stall is the
longest gap between two ticks minus the period.

For each workload (float32, ``soft_magnitude``, preview without an output store)
and each mode (threads; processes on the widget's warm pool) it measures:

- **yardsticks**, in the same process and viewer: one ``add_image`` of a zeros
  array of the output layer's shape (what napari costs to add one layer), and
  one texture upload of a volume in 3D (a 3D layer given a new volume and
  refreshed);
- **press of Run**: the longest stall between the click and the first volume on
  screen, for a first run in a fresh viewer (no output layers yet), a re-run,
  and a run on another position with other channel names;
- **streaming**: the longest stall from the first volume on screen to the end of
  the run, in 2D and in 3D view;
- **first volume on screen**: from the click to the first refresh that shows one;
- **cancel**: from the click on Cancel to the widget being idle again, and the
  longest stall meanwhile.

Workloads: ``reference`` T=8, C=2, 32 x 256 x 256; ``large`` T=4, C=2,
64 x 512 x 512. Run under Xvfb (pick the Qt binding with ``QT_API``)::

    QT_API=pyqt6 xvfb-run -a -s "-screen 0 1600x1000x24" python benchmarks/bench_widget_responsiveness.py

Targets on a 2-core machine with software GL: press of Run <= 1.3 x one
``add_image``; streaming < 100 ms in 2D and <= 1.1 x one texture upload in 3D;
first volume < 0.5 s + one ``add_image``; the warm pool's first volume no slower
than threads. Results go to ``benchmarks/results/widget.txt`` and ``.json``.
``--compare`` runs the comparison of 9 positions instead (:mod:`bench_compare`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from _qt_meter import StallMeter, settle, wait_until, yardstick_add_image

WORKLOADS = {
    "reference": (8, 2, 32, 256, 256),
    "large": (4, 2, 64, 512, 512),
}
MODES = ("threads", "processes (warm pool)")
MODES_RUN = MODES
RESULTS = Path(__file__).parent / "results"


def make_input(root: Path, shape: tuple[int, int, int, int, int]) -> Path:
    """A two-position float32 plate of random data; the positions name their channels apart."""
    from napari_process_position.store.create import write_empty_plate
    from napari_process_position.store.layout import OutputLayout
    from napari_process_position.store.metadata import read_position

    path = root / ("input-" + "x".join(map(str, shape)) + ".zarr")
    layouts = {
        key: OutputLayout(
            shape=shape,
            dtype="<f4",
            scale=(1.0, 1.0, 2.0, 0.65, 0.65),
            channel_names=tuple(f"{prefix} {c}" for c in range(shape[1])),
        )
        for key, prefix in (("A/1/0", "Channel"), ("A/2/0", "Stain"))
    }
    store = write_empty_plate(path, layouts)
    rng = np.random.default_rng(0)
    for key in layouts:
        array = read_position(store.position_path(key)).open_array(write=True)
        for t in range(shape[0]):
            block = rng.standard_normal(shape[1:], dtype=np.float32) * 100 + 500
            array[t].write(block).result()
    return path


def yardstick_texture(viewer, meter: StallMeter, zyx: tuple[int, int, int]) -> float:
    """Longest stall (ms) of one volume's texture upload in 3D (new data, refresh)."""
    layer = viewer.add_image(np.zeros(zyx, np.float32), contrast_limits=(0.0, 1.0))
    viewer.dims.ndisplay = 3
    settle(0.5)
    stalls = []
    rng = np.random.default_rng(2)
    for _ in range(3):
        layer.data[...] = rng.random(zyx, dtype=np.float32)
        meter.start()
        start = time.perf_counter()
        layer.refresh()
        settle(0.3)
        meter.stop()
        stalls.append(meter.longest(start, time.perf_counter()))
    viewer.layers.remove(layer)
    viewer.dims.ndisplay = 2
    settle(0.3)
    return statistics.median(stalls)


def background_busy(widget) -> bool:
    """Whether the widget still has a background job (its pool warming, say)."""
    busy = getattr(widget, "busy_in_background", None)
    return bool(busy if busy is not None else widget._workers)  # (the widget before issue 12)


#: With --profile: samples the main thread's stack during runs (see _stall_profile.py).
PROFILE = None


def explain(label: str, meter: StallMeter, start: float, end: float) -> None:
    """With --profile: print what the main thread did during the longest stall in the window."""
    if PROFILE is None:
        return
    at, gap = meter.longest_gap(start, end)
    print(f"--- {label}: longest stall {gap * 1000:.0f} ms", flush=True)
    for line in PROFILE.report(at - gap, at):
        print("   ", line, flush=True)


def run_once(widget, meter: StallMeter, timeout: float = 600.0, label: str = "run") -> dict:
    """Press Run, wait for the end; stalls before and after the first volume on screen."""
    settle(0.4)
    if PROFILE is not None:
        PROFILE.samples.clear()
        PROFILE.start()
    meter.start()
    click = time.perf_counter()
    widget.run_button.clicked()
    wait_until(lambda: not widget.running, timeout)
    settle(0.2)
    meter.stop()
    if PROFILE is not None:
        PROFILE.stop()
    stats = widget.last_run
    if stats["outcome"] != "done":
        raise RuntimeError(f"the run ended {stats['outcome']}: {widget.status.value}")
    first = stats["first_shown"]
    explain(f"{label}, press", meter, click, first)
    explain(f"{label}, streaming", meter, first, stats["finished"])
    return {
        "press_stall_ms": meter.longest(click, first),
        "stream_stall_ms": meter.longest(first, stats["finished"]),
        "first_volume_s": round(first - click, 3),
        "run_s": round(stats["finished"] - click, 3),
        "volumes": stats["done"],
    }


def cancel_once(widget, meter: StallMeter) -> dict:
    """Press Run, then Cancel once the first volume shows: time to idle, and the stall."""
    settle(0.4)
    widget.run_button.clicked()
    wait_until(lambda: widget.last_run.get("first_shown") is not None, 120)
    meter.start()
    start = time.perf_counter()
    widget.cancel_button.clicked()
    wait_until(lambda: not widget.running, 60)
    idle = time.perf_counter()
    settle(0.3)
    meter.stop()
    return {"cancel_s": round(idle - start, 3), "cancel_stall_ms": meter.longest(start, idle)}


def bench_workload(name: str, path: Path, workers: int) -> list[dict]:
    import napari

    shape = WORKLOADS[name]
    rows = []
    for mode in MODES_RUN:
        viewer = napari.Viewer(title=f"bench {name} {mode}")
        viewer.window._qt_window.resize(1400, 900)
        _dock, widget = viewer.window.add_plugin_dock_widget(
            "napari-process-position", "Process position"
        )
        meter = StallMeter()
        try:
            widget.input_path.value = str(path)
            widget.position.value = "A/1/0"
            widget.transform.value = "soft_magnitude"
            widget.num_workers.value = workers
            widget.use_threads.value = mode == "threads"
            settle(1.0)
            if mode != "threads":  # the widget warms its pool when processes are chosen
                wait_until(lambda w=widget: w.pool is not None and w.pool.processes(), 60)
                wait_until(lambda w=widget: not background_busy(w), 60)
            add_image = yardstick_add_image(viewer, (shape[0], *shape[2:]))
            texture = yardstick_texture(viewer, meter, shape[2:])
            row: dict = {
                "workload": name,
                "mode": mode,
                "workers": workers,
                "add_image_ms": round(add_image * 1000, 1),
                "texture_upload_ms": texture,
            }
            first = run_once(widget, meter, label=f"{name} {mode} first run")
            row.update({f"first_run_{k}": v for k, v in first.items()})
            rerun = run_once(widget, meter, label=f"{name} {mode} re-run")
            row.update({f"rerun_{k}": v for k, v in rerun.items()})
            widget.position.value = "A/2/0"
            other = run_once(widget, meter, label=f"{name} {mode} other position")
            row.update({f"other_position_{k}": v for k, v in other.items()})
            viewer.dims.ndisplay = 3
            in_3d = run_once(widget, meter, label=f"{name} {mode} 3D")
            row.update({f"in_3d_{k}": v for k, v in in_3d.items()})
            viewer.dims.ndisplay = 2
            row.update(cancel_once(widget, meter))
            rows.append(row)
            print(json.dumps(row), flush=True)
        finally:
            widget.close_pool()
            viewer.close()
            settle(0.5)
    return rows


TABLE = [
    ("add_image ms", "add_image_ms"),
    ("3D upload ms", "texture_upload_ms"),
    ("press: first", "first_run_press_stall_ms"),
    ("press: re-run", "rerun_press_stall_ms"),
    ("press: other pos", "other_position_press_stall_ms"),
    ("stream 2D ms", "rerun_stream_stall_ms"),
    ("stream 3D ms", "in_3d_stream_stall_ms"),
    ("1st vol s", "rerun_first_volume_s"),
    ("1st vol (fresh) s", "first_run_first_volume_s"),
    ("cancel s", "cancel_s"),
    ("cancel stall ms", "cancel_stall_ms"),
]


def verdicts(row: dict, threads_first: float | None) -> list[str]:
    add_ms = row["add_image_ms"]
    press = max(row[k] for k in TABLE_KEYS_PRESS)
    out = [
        f"press of Run {press:.0f} ms <= 1.3 x add_image ({1.3 * add_ms:.0f} ms): "
        + ("MET" if press <= 1.3 * add_ms else "MISSED"),
        f"streaming 2D {row['rerun_stream_stall_ms']:.0f} ms < 100 ms: "
        + ("MET" if row["rerun_stream_stall_ms"] < 100 else "MISSED"),
        f"streaming 3D {row['in_3d_stream_stall_ms']:.0f} ms <= 1.1 x upload "
        f"({1.1 * row['texture_upload_ms']:.0f} ms): "
        + ("MET" if row["in_3d_stream_stall_ms"] <= 1.1 * row["texture_upload_ms"] else "MISSED"),
        f"first volume {row['rerun_first_volume_s']:.2f} s < 0.5 s + add_image "
        f"({0.5 + add_ms / 1000:.2f} s): "
        + ("MET" if row["rerun_first_volume_s"] < 0.5 + add_ms / 1000 else "MISSED"),
    ]
    if threads_first is not None and row["mode"] != "threads":
        out.append(
            f"warm pool first volume {row['rerun_first_volume_s']:.2f} s <= threads "
            f"{threads_first:.2f} s: "
            + ("MET" if row["rerun_first_volume_s"] <= threads_first * 1.05 else "MISSED")
        )
    return out


TABLE_KEYS_PRESS = (
    "first_run_press_stall_ms",
    "rerun_press_stall_ms",
    "other_position_press_stall_ms",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keep", type=Path, default=None, help="keep the inputs in this folder")
    parser.add_argument("--results", type=Path, default=RESULTS / "widget.txt")
    parser.add_argument(
        "--modes", nargs="+", default=list(MODES), choices=list(MODES), help="modes to run"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="print what the main thread did in each run's longest stalls (slows it a little)",
    )
    parser.add_argument(
        "--compare", action="store_true", help="the 9-position comparison case (bench_compare.py)"
    )
    args, rest = parser.parse_known_args()
    if args.compare:
        import sys

        import bench_compare

        sys.argv = [sys.argv[0], *rest]
        bench_compare.main()
        return
    global PROFILE, MODES_RUN
    MODES_RUN = tuple(args.modes)
    if args.profile:
        from _stall_profile import StallProfile

        PROFILE = StallProfile()

    import napari
    import qtpy

    root = args.keep or Path(tempfile.mkdtemp(prefix="npp-bench-widget-"))
    root.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    try:
        for name in args.workloads:
            shape = WORKLOADS[name]
            existing = root / ("input-" + "x".join(map(str, shape)) + ".zarr")
            path = existing if existing.exists() else make_input(root, shape)
            rows.extend(bench_workload(name, path, args.workers))
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    lines = [
        f"# widget responsiveness: napari {napari.__version__}, {qtpy.API_NAME}, "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}, "
        f"{time.strftime('%Y-%m-%d %H:%M')}",
        "# command: python benchmarks/bench_widget_responsiveness.py "
        + " ".join(f"--workloads {' '.join(args.workloads)}".split()),
        "",
        f"{'workload':<10} {'mode':<22} " + " ".join(f"{label:>17}" for label, _ in TABLE),
    ]
    for row in rows:
        cells = " ".join(f"{row[key]:>17}" for _, key in TABLE)
        lines.append(f"{row['workload']:<10} {row['mode']:<22} {cells}")
    lines.append("")
    for name in args.workloads:
        threads = next((r for r in rows if r["workload"] == name and r["mode"] == "threads"), None)
        for row in (r for r in rows if r["workload"] == name):
            lines.append(f"{name}, {row['mode']}:")
            first = threads["rerun_first_volume_s"] if threads else None
            lines.extend(f"  {v}" for v in verdicts(row, first))
    text = "\n".join(lines)
    print(text)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(text + "\n", encoding="utf-8")
    args.results.with_suffix(".json").write_text(json.dumps(rows, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
