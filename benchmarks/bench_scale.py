"""napari's memory and time for a large run from the dock widget, against the command line.

One position of random ``uint16`` data (written fast with tensorstore, not the
demo generator), Gaussian blur (sigma 1, 2, 2) into an output store with 2
threads, run twice:

- by ``process-position run`` (a child process; its wall time and peak RSS,
  from ``wait4``);
- from the dock widget in a shown napari viewer (a child process under Xvfb):
  napari's RSS before Run is pressed, its peak during the run (sampled every
  20 ms), and after the run (once the layers show it), and the run's time from
  the click to the end.

``--src`` picks the source tree both children import (``PYTHONPATH``), so the
same script measures another checkout, e.g. main's::

    git -C /work/main worktree add --detach /tmp/wt-main-bench main
    xvfb-run -a -s "-screen 0 1600x1000x24" python benchmarks/bench_scale.py \
        --src /tmp/wt-main-bench/src --label main
    xvfb-run -a -s "-screen 0 1600x1000x24" python benchmarks/bench_scale.py --label issue-17a

``--first-frame`` measures instead the time from opening a large output in
napari (File > Open through our reader) to its first frame on screen, in 2D
and in 3D, with and without pyramid levels: a "run output" of random uint16
(default 5x2x128x2048x2048, 10.7 GB) is written fast with tensorstore, its
levels 1..3 with the package's own 2x mean (as a run writes them); the store
without levels shares level 0's files (a symlink) and lists level 0 only. Each
case is opened twice, in fresh viewers: cold, and after napari has shown a tiny
image of its own (``napari_warm``: napari's one-time costs of a session's first
image layer, its unit registry and scipy.ndimage among them, paid before the
clock starts; ``napari_first_layer_s`` is that tiny layer's time). Both stores
are deleted at the end (``--keep`` keeps them in ``--workdir``)::

    xvfb-run -a -s "-screen 0 1600x1000x24" python benchmarks/bench_scale.py --first-frame

Targets (#17): napari's RSS after a run at most 300 MiB above before it; its
peak at most 300 MiB above the command line's peak; the widget's run at most
1.15 x the command line's time. The input and the outputs live in ``--workdir``
(default a folder under the system's temporary directory, kept for the next
call: delete it yourself); results are appended to
``benchmarks/results/scale.txt`` and ``scale.json``.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).parent / "results"
SRC = Path(__file__).resolve().parents[1] / "src"
PARAMS = {"sigma_z": 1.0, "sigma_y": 2.0, "sigma_x": 2.0}
MIB = 2**20


def make_input(path: Path, shape: tuple[int, ...]) -> Path:
    """Write a one-position plate of random uint16 data with tensorstore (once)."""
    from napari_process_position.store.create import write_empty_plate
    from napari_process_position.store.layout import OutputLayout
    from napari_process_position.store.metadata import read_position

    if (path / "zarr.json").exists():
        return path
    layout = OutputLayout(
        shape=shape,  # type: ignore[arg-type]
        dtype="<u2",
        scale=(1.0, 1.0, 2.0, 0.65, 0.65),
        channel_names=tuple(f"Channel {c}" for c in range(shape[1])),
    )
    store = write_empty_plate(path, {"A/1/0": layout})
    array = read_position(store.position_path("A/1/0")).open_array(write=True)
    rng = np.random.default_rng(0)
    for t in range(shape[0]):
        for c in range(shape[1]):
            volume = rng.integers(100, 4000, size=shape[2:], dtype=np.uint16)
            array[t, c].write(volume).result()
    return path


def child_env(src: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(src)}


def run_cli(src: Path, input_path: Path, output: Path) -> dict:
    """Run the command line in a child; its wall time and peak RSS."""
    shutil.rmtree(output, ignore_errors=True)
    command = [sys.executable, "-m", "napari_process_position.cli", "run"]
    command += [str(input_path), str(output), "-t", "gaussian_blur", "-w", "2", "--threads"]
    for key, value in PARAMS.items():
        command += ["-p", f"{key}={value}"]
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as log:
        child = subprocess.Popen(command, env=child_env(src), stdout=log, stderr=log)
        _pid, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        log.seek(0)
        said = log.read()
    if status != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({status}):\n{said[-3000:]}")
    found = re.search(r"done in ([0-9.]+) s", said)
    return {
        "cli_s": round(wall, 2),  # the process: Python's start and imports included
        "cli_run_s": float(found.group(1)) if found else None,  # what it reports: the run
        "cli_peak_mib": round(usage.ru_maxrss / 1024),
        "cli_cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "cli_sys_s": round(usage.ru_stime, 2),
        "cli_page_faults_k": round(usage.ru_minflt / 1000),
    }


def run_widget(src: Path, input_path: Path, output: Path) -> dict:
    """Run the widget in a child (under the display this process has); what it measured."""
    shutil.rmtree(output, ignore_errors=True)
    command = [sys.executable, __file__, "--child", str(input_path), str(output)]
    out = subprocess.run(command, env=child_env(src), capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"the widget's run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def thread_times() -> dict[int, tuple[str, float, float]]:
    """This process's live threads: id -> (name, user CPU seconds, system CPU seconds)."""
    found = {}
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path("/proc/self/task").iterdir():
        try:
            text = (task / "stat").read_text()
        except OSError:  # (ended meanwhile)
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        name = "main" if task.name == str(os.getpid()) else re.sub(r"[0-9:]+$", "", name)
        fields = text.rsplit(")", 1)[1].split()
        found[int(task.name)] = (name, int(fields[11]) / tick, int(fields[12]) / tick)
    return found


def by_name(
    seen: dict[int, tuple[str, float, float]], before: dict[int, tuple[str, float, float]]
) -> dict[str, list[float]]:
    """User and system seconds per thread name between ``before`` and ``seen`` (>= 0.2 s)."""
    used: dict[str, list[float]] = {}
    for tid, (name, user, system) in seen.items():
        _, user0, system0 = before.get(tid, (name, 0.0, 0.0))
        total = used.setdefault(name, [0.0, 0.0])
        total[0] += user - user0
        total[1] += system - system0
    return {k: [round(u, 2), round(s, 2)] for k, (u, s) in used.items() if u + s >= 0.2}


def child(input_path: str, output: str) -> None:
    """In the child: napari with the widget docked, one run, napari's memory and the time."""
    import napari
    from qtpy.QtWidgets import QApplication

    import napari_process_position

    def settle(seconds: float) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            QApplication.processEvents()
            time.sleep(0.01)

    viewer = napari.Viewer(title="bench scale")
    _dock, widget = viewer.window.add_plugin_dock_widget(
        "napari-process-position", "Process position"
    )
    widget.input_path.value = input_path
    widget.position.value = "A/1/0"
    widget.transform.value = "gaussian_blur"
    for key, value in PARAMS.items():
        getattr(widget.transform_params, key).value = value
    widget.num_workers.value = 2
    widget.use_threads.value = True
    widget.output_path.value = output
    settle(2.0)
    gc.collect()
    before = rss()
    peak = [before]
    done = threading.Event()

    seen: dict[int, tuple[str, float, float]] = {}

    def sample() -> None:
        rounds = 0
        while not done.wait(0.02):
            peak[0] = max(peak[0], rss())
            rounds += 1
            if rounds % 10 == 0:  # every thread's CPU, the last seen kept (threads end)
                seen.update(thread_times())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    threads_before = thread_times()
    process_cpu = time.process_time()
    system_cpu = os.times().system
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    widget.run_button.clicked()
    while widget.running:
        QApplication.processEvents()
        time.sleep(0.005)
    stats = widget.last_run
    seen.update(thread_times())
    threads = by_name(seen, threads_before)
    process_cpu = time.process_time() - process_cpu
    settle(1.5)
    gc.collect()
    after = rss()
    done.set()
    sampler.join()
    if stats["outcome"] != "done":
        raise RuntimeError(f"the run ended {stats['outcome']}: {widget.status.value}")
    layer_types = sorted(
        {type(layer.data).__name__ for layer in viewer.layers if layer.name.endswith("]")}
    )
    print(
        json.dumps(
            {
                "napari_before_mib": round(before / MIB),
                "napari_peak_mib": round(peak[0] / MIB),
                "napari_after_mib": round(after / MIB),
                "widget_s": round(stats["finished"] - stats["started"], 2),
                # CPU seconds of the whole process during the run, and [user, system]
                # seconds of its threads by name (main: events, slicing, drawing): on 2
                # cores, what napari's threads take the workers do not get
                "napari_process_cpu_s": round(process_cpu, 2),
                "napari_sys_s": round(os.times().system - system_cpu, 2),
                "napari_page_faults_k": round(
                    (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / 1000
                ),
                "napari_threads_s": threads,
                "volumes": stats["done"],
                "output_layer_data": layer_types,
                "package": str(Path(napari_process_position.__file__).parents[1]),
            }
        )
    )
    viewer.close()


def make_output(path: Path, shape: tuple[int, ...], levels: int) -> Path:
    """Write position ``A/1/0`` of random uint16 with ``levels`` resolution levels (once)."""
    from napari_process_position.core.pyramid import pyramid
    from napari_process_position.store.arrays import open_array
    from napari_process_position.store.create import write_empty_plate
    from napari_process_position.store.layout import OutputLayout
    from napari_process_position.store.metadata import read_position

    position = path / "A" / "1" / "0"
    if (path / "zarr.json").exists():
        return position
    layout = OutputLayout(
        shape=shape,  # type: ignore[arg-type]
        dtype="<u2",
        scale=(1.0, 1.0, 2.0, 0.65, 0.65),
        channel_names=tuple(f"Channel {c}" for c in range(shape[1])),
        levels=levels,
    )
    write_empty_plate(path, {"A/1/0": layout})
    info = read_position(position)
    arrays = [info.open_array(write=True)]
    arrays += [open_array(g.array_path, info.zarr_format, write=True) for g in info.level_grids]
    base = np.random.default_rng(0).integers(100, 4000, size=shape[2:], dtype=np.uint16)
    for t in range(shape[0]):
        for c in range(shape[1]):
            volume = base + np.uint16(2 * t + c)  # (distinct volumes, none compressible)
            for array, data in zip(arrays, [volume, *pyramid(volume, levels)], strict=True):
                array[t, c].write(data).result()
    return position


def without_levels(pyramid_position: Path, path: Path) -> Path:
    """A store listing level 0 only, whose array is the pyramid store's (a symlink)."""
    position = path / "A" / "1" / "0"
    if position.exists():
        return position
    inside = pyramid_position.resolve()
    shutil.copytree(
        pyramid_position.parents[2],
        path,
        ignore=lambda folder, names: names if Path(folder).resolve() == inside else [],
    )
    meta = json.loads((pyramid_position / "zarr.json").read_text())
    multiscale = meta["attributes"]["ome"]["multiscales"][0]
    multiscale["datasets"] = multiscale["datasets"][:1]
    (position / "zarr.json").write_text(json.dumps(meta))
    (position / "0").symlink_to(inside / "0")
    return position


def first_frame(src: Path, position: Path, ndisplay: int, napari_warm: bool = False) -> dict:
    """Open ``position`` in napari in a child; the seconds to its first frame.

    ``napari_warm``: the child first shows a tiny in-memory image and clears it,
    so napari's one-time costs of a session's first image layer (its unit
    registry, scipy.ndimage, the image shaders) are paid before the clock starts.
    """
    command = [sys.executable, __file__, "--open-child", str(position), str(ndisplay)]
    command += ["warm"] if napari_warm else []
    out = subprocess.run(command, env=child_env(src), capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"opening {position} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def open_child(position: str, ndisplay: str, warm: str = "") -> None:
    """In the child: a shown viewer opens ``position``; the time to the first draw after it."""
    import napari
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(title="bench first frame")
    viewer.dims.ndisplay = int(ndisplay)
    canvas = viewer.window._qt_viewer.canvas._scene_canvas  # (a benchmark: napari's own canvas)
    drawn: list[float] = []
    canvas.events.draw.connect(lambda _event: drawn.append(time.perf_counter()))
    end = time.perf_counter() + 1.0
    while time.perf_counter() < end:
        QApplication.processEvents()
        time.sleep(0.01)
    added: list[float] = []
    viewer.layers.events.inserted.connect(lambda _event: added.append(time.perf_counter()))
    napari_first_s = None
    if warm:  # napari's own first image layer of the session, a tiny one
        start = time.perf_counter()
        viewer.add_image(np.zeros((2, 8, 64, 64), np.uint16))
        while not drawn or not added or drawn[-1] < added[-1]:
            QApplication.processEvents()
            time.sleep(0.001)
        napari_first_s = round(time.perf_counter() - start, 3)
        viewer.layers.clear()

    def open_once() -> tuple[float, list[Any]]:
        start = time.perf_counter()
        layers = viewer.open(position, plugin="napari-process-position")
        # The first frame drawn once every layer is in (napari may draw while it opens).
        while not drawn or drawn[-1] < added[-1]:
            QApplication.processEvents()
            time.sleep(0.001)
        return next(when for when in drawn if when >= added[-1]) - start, layers

    first_s, layers = open_once()  # (the plugin's first use imports it)
    row = {
        "napari_warm": bool(warm),
        "napari_first_layer_s": napari_first_s,
        "first_frame_s": round(first_s, 3),
        "levels": len(layers[0].data) if layers[0].multiscale else 1,
        "level_drawn": int(layers[0].data_level),
    }
    viewer.layers.clear()
    row["again_first_frame_s"] = round(open_once()[0], 3)  # opened a second time
    print(json.dumps(row))
    viewer.close()


def measure_first_frames(args: argparse.Namespace) -> None:
    """Write the large output with and without levels, open each in 2D and 3D, report."""
    shape = tuple(int(n) for n in args.shape.split(","))
    args.workdir.mkdir(parents=True, exist_ok=True)
    name = "x".join(map(str, shape))
    start = time.perf_counter()
    with_levels = make_output(args.workdir / f"output-{name}-levels.zarr", shape, 4)
    written_s = time.perf_counter() - start
    plain = without_levels(with_levels, args.workdir / f"output-{name}.zarr")
    try:
        for position, levels in ((plain, 1), (with_levels, 4)):
            for ndisplay, warm in itertools.product((2, 3), (False, True)):
                row = {"label": args.label, "shape": name, "gb": round(np.prod(shape) * 2 / 1e9, 1)}
                row.update({"pyramid_levels": levels, "ndisplay": ndisplay})
                row.update({"written_s": round(written_s, 1)})
                row.update(first_frame(args.src, position, ndisplay, warm))
                text = " ".join(f"{key}={value}" for key, value in row.items())
                print(text, flush=True)
                RESULTS.mkdir(exist_ok=True)
                with open(RESULTS / "first_frame.txt", "a") as out:
                    out.write(text + "\n")
    finally:
        if not args.keep:
            shutil.rmtree(args.workdir / f"output-{name}.zarr", ignore_errors=True)
            shutil.rmtree(args.workdir / f"output-{name}-levels.zarr", ignore_errors=True)
            if not any(args.workdir.iterdir()):
                args.workdir.rmdir()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="6,2,48,1024,1024", help="TCZYX of the input")
    parser.add_argument("--src", type=Path, default=SRC, help="the source tree to measure")
    parser.add_argument("--label", default="", help="names the tree in the results")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "npp-scale")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--first-frame", action="store_true", help="time to a first frame")
    parser.add_argument("--keep", action="store_true", help="keep --first-frame's stores")
    parser.add_argument("--open-child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    if args.open_child:
        open_child(*args.open_child)
        return
    if args.first_frame:
        if args.shape == parser.get_default("shape"):
            args.shape = "5,2,128,2048,2048"
        measure_first_frames(args)
        return
    shape = tuple(int(n) for n in args.shape.split(","))
    args.workdir.mkdir(parents=True, exist_ok=True)
    name = "x".join(map(str, shape))
    input_path = make_input(args.workdir / f"input-{name}.zarr", shape)
    size_gb = np.prod(shape) * 2 / 1e9
    row: dict = {"label": args.label, "shape": name, "input_gb": round(float(size_gb), 2)}
    row.update(run_cli(args.src, input_path, args.workdir / "cli.zarr"))
    row.update(run_widget(args.src, input_path, args.workdir / "widget.zarr"))
    row["after_minus_before_mib"] = row["napari_after_mib"] - row["napari_before_mib"]
    row["peak_minus_cli_peak_mib"] = row["napari_peak_mib"] - row["cli_peak_mib"]
    row["widget_over_cli"] = round(row["widget_s"] / row["cli_s"], 2)
    if row["cli_run_s"]:
        row["widget_over_cli_run"] = round(row["widget_s"] / row["cli_run_s"], 2)
    shutil.rmtree(args.workdir / "cli.zarr", ignore_errors=True)
    shutil.rmtree(args.workdir / "widget.zarr", ignore_errors=True)
    text = " ".join(f"{key}={value}" for key, value in row.items())
    print(text)
    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / "scale.txt", "a") as out:
        out.write(text + "\n")
    with open(RESULTS / "scale.json", "a") as out:
        out.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
