"""Engine benchmark: serial, threads, cold and warm process pools against the floor and iohub.

Reference workload (issue 2, item 13): one position T=8, C=2, Z=32, Y=X=256
float32, transform ``soft_magnitude`` (``sqrt(x*x + 1) - 0.5``, three
element-wise passes), 16 (t, c) tasks of 8 MiB each.

Every run of every mode happens in its own fresh child process, sampled by
this script every 5 ms for the RSS of the child's whole process tree (pool
workers included), so peaks of different modes never mix. Each run writes
into a fresh output plate. The runs are arranged in rounds: each round runs
the floor and every mode once, in a rotated order, so load from elsewhere on
a shared machine hits all of them alike; ratios to the floor are taken within
a round and their medians quoted. The floor is the transform on the 16
volumes already in memory (divided by the workers), plus reading and writing
the same 16 volumes with tensorstore, one volume per call, one open handle.

Run::

    /tmp/venv311/bin/python benchmarks/bench_engine.py            # 5 repeats, 2 workers
    /tmp/venv311/bin/python benchmarks/bench_engine.py --repeats 3 --no-iohub

The table is printed and written to ``benchmarks/results/engine.txt`` (and
the raw figures to ``engine.json``).

This module is re-imported by every spawned worker (spawn re-imports the
main script) and is also run by iohub's venv, so at module level it imports
only the standard library and ``_common``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import (
    RESULTS_DIR,
    MiB,
    Tee,
    format_table,
    machine_summary,
    median,
    package_versions,
    run_sampled,
    rusage_peak_bytes,
)

TRANSFORM = "napari_process_position.transforms.builtins:soft_magnitude"
DEFAULT_SHAPE = (8, 2, 32, 256, 256)
POSITION = "A/1/0"
IOHUB_PYTHON = Path("/tmp/venv-iohub/bin/python")

ENGINE_MODES = ("serial", "threads", "processes-cold", "processes-warm")
IOHUB_MODES = ("iohub-serial", "iohub-threads", "iohub-processes")


def soft_magnitude_np(czyx: Any, offset: float = 0.5) -> Any:
    """The same three passes as the built-in ``soft_magnitude``, for iohub's venv.

    iohub's venv does not have this package, so its runs get this copy
    (module level in the main script, so spawned workers can unpickle it).
    """
    import numpy as np

    out = np.multiply(czyx, czyx, dtype=np.float32 if czyx.dtype.kind != "f" else czyx.dtype)
    out += 1
    np.sqrt(out, out=out)
    out -= offset
    return out


# -- children ----------------------------------------------------------------------


def _noop() -> int:
    return os.getpid()


def child_startup(workers: int, repeats: int) -> dict[str, Any]:
    """Where a cold pool's start-up goes: bare spawn, our warm-up, shutdown, imports."""
    import concurrent.futures as cf
    import multiprocessing as mp
    import subprocess

    from napari_process_position.engine.pool import ProcessPool

    bare, warm, down = [], [], []
    for _ in range(repeats):
        start = time.perf_counter()
        executor = cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"))
        for future in [executor.submit(_noop) for _ in range(2 * workers)]:
            future.result()
        bare.append(time.perf_counter() - start)
        executor.shutdown(wait=True)
        start = time.perf_counter()
        pool = ProcessPool(workers)
        pool.warm()
        warm.append(time.perf_counter() - start)
        start = time.perf_counter()
        pool.shutdown(wait=True)
        down.append(time.perf_counter() - start)
    # Each probe: (already imported, then timed) in a fresh interpreter.
    w = "napari_process_position.engine.worker"
    probes = {
        "numpy": ("", "import numpy"),
        "+tensorstore": ("import numpy", "import tensorstore"),
        "+worker module": ("import numpy, tensorstore", f"import {w}"),
        "+init_worker": (f"import numpy, tensorstore, {w} as w", "w.init_worker(1)"),
        "+transform": (
            f"import numpy, tensorstore, {w} as w; w.init_worker(1)",
            f"w.resolve_transform({TRANSFORM!r})",
        ),
    }
    imports: dict[str, float] = {}
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        times.append(time.perf_counter() - start)
    imports["interpreter start"] = median(times)
    for name, (setup, timed) in probes.items():
        script = f"import time\n{setup}\nt = time.perf_counter()\n{timed}\nprint(time.perf_counter() - t)"
        times = []
        for _ in range(repeats):
            out = subprocess.run(
                [sys.executable, "-c", script], capture_output=True, text=True, check=True
            )
            times.append(float(out.stdout.strip()))
        imports[name] = median(times)
    return {
        "bare_spawn_s": bare,
        "pool_warm_s": warm,
        "pool_shutdown_s": down,
        "imports_s": imports,
    }


def child_engine(
    mode: str, input_position: str, outputs: list[str], workers: int
) -> dict[str, Any]:
    """Run ``stream_position`` once per output; time the whole run and the first Result."""
    from napari_process_position.core.transform_ref import resolve_transform
    from napari_process_position.engine.pool import ProcessPool
    from napari_process_position.engine.stream import stream_position
    from napari_process_position.store.metadata import read_position

    # What the floor child also does before timing: import the transform, read metadata.
    resolve_transform(TRANSFORM)
    read_position(input_position)
    pool = None
    warm_s = None
    if mode == "processes-warm":
        start = time.perf_counter()
        pool = ProcessPool(workers)
        pool.warm()
        warm_s = time.perf_counter() - start
    kwargs: dict[str, Any] = {
        "serial": {"num_workers": 1},
        "threads": {"num_workers": workers, "use_threads": True},
        "processes-cold": {"num_workers": workers, "use_threads": False},
        "processes-warm": {"num_workers": workers, "use_threads": False, "pool": pool},
    }[mode]
    runs = []
    try:
        for output in outputs:
            start = time.perf_counter()
            run = stream_position(TRANSFORM, input_position, output, **kwargs)
            first = None
            n = 0
            read_s = compute_s = write_s = 0.0
            statuses: dict[str, int] = {}
            for result in run:
                if first is None:
                    first = time.perf_counter() - start
                n += 1
                read_s += result.read_s
                compute_s += result.compute_s
                write_s += result.write_s
                statuses[result.status] = statuses.get(result.status, 0) + 1
            wall = time.perf_counter() - start
            runs.append(
                {
                    "wall_s": wall,
                    "first_s": first,
                    "results": n,
                    "statuses": statuses,
                    "task_read_s": read_s,
                    "task_compute_s": compute_s,
                    "task_write_s": write_s,
                    "workers": run.num_workers,
                    "mode": run.mode,
                }
            )
    finally:
        if pool is not None:
            pool.shutdown()
    return {"runs": runs, "warm_s": warm_s, "rusage": rusage_peak_bytes()}


def child_iohub(mode: str, input_position: str, outputs: list[str], workers: int) -> dict[str, Any]:
    """Call iohub 0.3.11's ``process_single_position`` once per output."""
    import contextlib
    import io

    from iohub.ngff.utils import process_single_position

    kwargs = {
        "iohub-serial": {"num_workers": 1},
        "iohub-threads": {"num_workers": workers, "use_threads": True},
        "iohub-processes": {"num_workers": workers, "use_threads": False},
    }[mode]
    runs = []
    for output in outputs:
        sink = io.StringIO()  # iohub echoes a few lines per task
        start = time.perf_counter()
        with contextlib.redirect_stdout(sink):
            process_single_position(soft_magnitude_np, Path(input_position), Path(output), **kwargs)
        runs.append({"wall_s": time.perf_counter() - start, "first_s": None})
    return {"runs": runs, "rusage": rusage_peak_bytes()}


def child_floor(input_position: str, outputs: list[str]) -> dict[str, Any]:
    """Raw tensorstore read, in-memory compute and raw tensorstore write of the 16 volumes."""

    from napari_process_position.store.metadata import read_position
    from napari_process_position.transforms.builtins import soft_magnitude

    info = read_position(input_position)
    source = info.open_array()
    n_t, n_c = info.shape[:2]
    keys = [(t, c) for t in range(n_t) for c in range(n_c)]
    reads, computes, writes, read_cpu, write_cpu = [], [], [], [], []
    for output in outputs:
        start, cpu = time.perf_counter(), time.process_time()
        volumes = [source[t, c].read().result() for t, c in keys]
        reads.append(time.perf_counter() - start)
        read_cpu.append(time.process_time() - cpu)
        # Pure compute: each result is dropped at once, as a worker does, so
        # memory is reused instead of faulting in 16 fresh volumes.
        start = time.perf_counter()
        for volume in volumes:
            result = soft_magnitude(volume)
            del result
        computes.append(time.perf_counter() - start)
        transformed = [soft_magnitude(v) for v in volumes]
        del volumes
        target = read_position(output).open_array(write=True)
        start, cpu = time.perf_counter(), time.process_time()
        for (t, c), volume in zip(keys, transformed, strict=True):
            target[t, c].write(volume).result()
        writes.append(time.perf_counter() - start)
        write_cpu.append(time.process_time() - cpu)
        del transformed, target
    return {
        "read_s": reads,
        "compute_s": computes,
        "write_s": writes,
        "read_cpu_s": read_cpu,
        "write_cpu_s": write_cpu,
        "volumes": len(keys),
        "rusage": rusage_peak_bytes(),
    }


def child_main(args: argparse.Namespace) -> None:
    if args.child == "floor":
        data = child_floor(args.input_position, args.outputs)
    elif args.child == "startup":
        data = child_startup(args.workers, len(args.outputs))
    elif args.child.startswith("iohub"):
        data = child_iohub(args.child, args.input_position, args.outputs, args.workers)
    else:
        data = child_engine(args.child, args.input_position, args.outputs, args.workers)
    Path(args.json_out).write_text(json.dumps(data))


# -- harness -----------------------------------------------------------------------


def input_plate(shape: tuple[int, ...], cache: Path | None, fresh: bool, say: Tee) -> Path:
    """The input plate, generated once and cached (the synthetic cells take ~1 min)."""
    from napari_process_position.store.demo import make_demo_plate

    name = "npp-bench-input-" + "x".join(map(str, shape)) + "-float32.zarr"
    path = cache or Path(tempfile.gettempdir()) / name
    done = path / ".bench-complete"
    if fresh or not done.exists():
        say(f"writing the input plate {path} (synthetic cells, takes a while) ...")
        start = time.perf_counter()
        make_demo_plate(path, shape=shape, positions=(POSITION,), dtype="float32", overwrite=True)
        done.write_text("ok\n")
        say(f"  done in {time.perf_counter() - start:.1f} s")
    return path


def make_outputs(input_position: Path, folder: Path, count: int) -> list[str]:
    from napari_process_position.store.create import write_empty_plate
    from napari_process_position.store.layout import OutputLayout
    from napari_process_position.store.metadata import read_position

    info = read_position(input_position)
    layout = OutputLayout(
        shape=info.shape,
        dtype=info.dtype,
        scale=info.scale,  # type: ignore[arg-type]
        channel_names=info.channel_names,
    )
    folder.mkdir(parents=True, exist_ok=True)
    outputs = []
    for i in range(count):
        store = write_empty_plate(folder / f"out{i}.zarr", {POSITION: layout}, version="0.5")
        outputs.append(store.position_path(POSITION))
    return outputs


def check_output(output_position: str, expected: Any) -> str:
    """'ok' when the output equals the expected array bit for bit, else what differs."""
    import numpy as np

    from napari_process_position.store.metadata import read_position

    got = read_position(output_position).open_array().read().result()
    if got.shape != expected.shape:
        return f"shape {got.shape} != {expected.shape}"
    if np.array_equal(got.view(np.uint8), expected.view(np.uint8)):
        return "ok"
    return f"DIFFERS ({int(np.count_nonzero(got != expected))} values)"


def run_child(
    python: str, mode: str, input_position: Path, outputs: list[str], workers: int, work: Path
) -> Any:
    json_out = work / f"{mode}.json"
    json_out.unlink(missing_ok=True)
    cmd = [
        python,
        str(Path(__file__).resolve()),
        "--child",
        mode,
        "--input-position",
        str(input_position),
        "--workers",
        str(workers),
        "--json-out",
        str(json_out),
        "--outputs",
        *outputs,
    ]
    sampled = run_sampled(cmd, json_out=json_out)
    if sampled.returncode != 0:
        raise RuntimeError(f"{mode} child failed ({sampled.returncode}):\n{sampled.stderr[-3000:]}")
    return sampled


def fmt(x: float | None, digits: int = 2) -> str:
    return "-" if x is None or x != x else f"{x:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--repeats",
        type=int,
        default=5,
        help="rounds; each round runs the floor and every mode once (medians)",
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--shape",
        type=lambda s: tuple(int(x) for x in s.split(",")),
        default=DEFAULT_SHAPE,
        help="TCZYX of the input, comma-separated",
    )
    parser.add_argument(
        "--input",
        type=Path,
        default=None,
        help="input plate to use/create (default: a cached one in the temp dir)",
    )
    parser.add_argument("--fresh-input", action="store_true", help="regenerate the input plate")
    parser.add_argument(
        "--modes", nargs="+", default=None, help=f"subset of {ENGINE_MODES + IOHUB_MODES}"
    )
    parser.add_argument("--no-iohub", action="store_true", help="skip the iohub comparison")
    parser.add_argument(
        "--no-startup", action="store_true", help="skip the breakdown of a cold pool's start-up"
    )
    parser.add_argument("--iohub-python", type=Path, default=IOHUB_PYTHON)
    parser.add_argument("--results", type=Path, default=RESULTS_DIR / "engine.txt")
    # internal: run one mode in this (fresh) process
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--input-position", help=argparse.SUPPRESS)
    parser.add_argument("--outputs", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--json-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args)
        return

    import numpy as np

    from napari_process_position.core.budget import available_cpus
    from napari_process_position.store.metadata import read_position
    from napari_process_position.transforms.builtins import soft_magnitude

    say = Tee()
    say(f"# engine benchmark: {machine_summary()}")
    say(
        f"# {package_versions(['napari-process-position', 'numpy', 'tensorstore', 'zarr'])}; "
        f"available_cpus()={available_cpus()}; OPENBLAS_CORETYPE="
        f"{os.environ.get('OPENBLAS_CORETYPE', '(unset)')}"
    )
    plate = input_plate(args.shape, args.input, args.fresh_input, say)
    input_position = plate / POSITION
    info = read_position(input_position)
    n_volumes = info.shape[0] * info.shape[1]
    say(
        f"# input {input_position}: shape {info.shape} {np.dtype(info.dtype).name}, "
        f"{n_volumes} volumes of {info.volume_nbytes / MiB:.0f} MiB; transform {TRANSFORM}; "
        f"{args.workers} workers; {args.repeats} rounds, medians"
    )

    source = info.open_array().read().result()
    expected = np.stack(
        [
            np.stack([soft_magnitude(source[t, c]) for c in range(info.shape[1])])
            for t in range(info.shape[0])
        ]
    )
    del source

    modes = list(args.modes or ENGINE_MODES + IOHUB_MODES)
    if not args.iohub_python.exists() or args.no_iohub:
        if any(m.startswith("iohub") for m in modes):
            say(
                f"# iohub comparison skipped: "
                f"{'--no-iohub' if args.no_iohub else f'{args.iohub_python} not found'}"
            )
        modes = [m for m in modes if not m.startswith("iohub")]

    work = Path(tempfile.mkdtemp(prefix="npp-bench-engine-"))
    floors: list[dict[str, Any]] = []
    seen: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    try:
        # Rounds: the floor and each mode once per round, each in a fresh child, the
        # order rotated every round, so a burst of load elsewhere hits all of them.
        jobs = ["floor", *modes]
        for r in range(args.repeats):
            order = jobs[r % len(jobs) :] + jobs[: r % len(jobs)]
            for mode in order:
                is_iohub = mode.startswith("iohub")
                python = str(args.iohub_python) if is_iohub else sys.executable
                # a warm pool gets one run first (each worker imports the transform)
                outputs = make_outputs(
                    input_position, work / mode, 2 if mode == "processes-warm" else 1
                )
                sampled = run_child(python, mode, input_position, outputs, args.workers, work)
                if mode == "floor":
                    floors.append(sampled.data)
                else:
                    seen[mode].append(
                        {
                            **sampled.data,
                            "peak_rss": sampled.peak_rss,
                            "peak_procs": sampled.peak_procs,
                            "check": check_output(outputs[-1], expected),
                        }
                    )
                shutil.rmtree(work / mode, ignore_errors=True)
            say(f"  round {r + 1}/{args.repeats} done (load {os.getloadavg()[0]:.2f})")
        startup = None
        if not args.no_startup:
            startup = run_child(
                sys.executable,
                "startup",
                input_position,
                ["-"] * max(3, args.repeats),
                args.workers,
                work,
            ).data
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def floor_of(round_: int, workers: int) -> float:
        f = floors[round_]
        return f["compute_s"][0] / workers + f["read_s"][0] + f["write_s"][0]

    def ideal_of(round_: int, workers: int) -> float:
        f = floors[round_]
        return (f["compute_s"][0] + f["read_s"][0] + f["write_s"][0]) / workers

    read_s, compute_s, write_s = (
        median([f[k][0] for f in floors]) for k in ("read_s", "compute_s", "write_s")
    )
    say(
        f"# floor (medians): read {read_s:.3f} s (CPU {median([f['read_cpu_s'][0] for f in floors]):.3f} s), "
        f"compute {compute_s:.3f} s (one worker), write {write_s:.3f} s "
        f"(CPU {median([f['write_cpu_s'][0] for f in floors]):.3f} s) for {n_volumes} volumes "
        f"via tensorstore"
    )
    rows = []
    summary: dict[str, dict[str, Any]] = {}
    for mode in modes:
        workers = 1 if mode.endswith("serial") else args.workers
        entries = seen[mode]
        timed = [e["runs"][-1] for e in entries]
        walls = [t["wall_s"] for t in timed]
        ratios = [t["wall_s"] / floor_of(i, workers) for i, t in enumerate(timed)]
        added = [t["wall_s"] - floor_of(i, workers) for i, t in enumerate(timed)]
        ideal = [t["wall_s"] / ideal_of(i, workers) for i, t in enumerate(timed)]
        firsts = [t["first_s"] for t in timed if t.get("first_s") is not None]
        checks = sorted({e["check"] for e in entries})
        task_sums = "-"
        if "task_read_s" in timed[0]:
            task_sums = "/".join(
                fmt(median([t[k] for t in timed]))
                for k in ("task_read_s", "task_compute_s", "task_write_s")
            )
        peak = median([e["peak_rss"] for e in entries])
        summary[mode] = {
            "wall_s": median(walls),
            "x_floor": median(ratios),
            "x_ideal": median(ideal),
            "added_s": median(added),
            "peak_rss": peak,
            "entries": entries,
        }
        rows.append(
            [
                mode,
                workers,
                fmt(median(walls)),
                f"{fmt(min(walls))}-{fmt(max(walls))}",
                fmt(median([floor_of(i, workers) for i in range(len(timed))])),
                fmt(median(ratios)),
                f"{median(added):+.2f}",
                fmt(median(ideal)),
                fmt(median(firsts) if firsts else None),
                f"{peak / MiB:.0f}",
                max(e["peak_procs"] for e in entries),
                task_sums,
                ",".join(checks),
            ]
        )
    say()
    say(
        format_table(
            [
                "mode",
                "workers",
                "wall s",
                "range s",
                "floor s",
                "x floor",
                "+s floor",
                "x ideal",
                "1st result s",
                "peak RSS MiB",
                "procs",
                "tasks r/c/w s",
                "output",
            ],
            rows,
        )
    )
    say()
    say(
        "floor = compute/workers + read + write, measured in the same round (tensorstore, one "
        "volume per call, one handle); 'x floor' and '+s floor' are medians over rounds of "
        "wall/floor and wall-floor;"
    )
    say(
        "'x ideal' = wall / ((read + compute + write) / workers), i.e. against perfect scaling "
        "of the I/O too (on a shared 2-core machine a second worker seldom gets a whole core);"
    )
    say(
        "'1st result' = from calling stream_position to the first yielded Result; 'tasks r/c/w' "
        "= read/compute/write seconds summed over the tasks of all workers;"
    )
    say(
        "peak RSS = median over rounds of the child's process-tree RSS at its sampled peak (5 ms), "
        "pool workers and resource tracker included; 'procs' = processes alive then;"
    )
    say(
        "output 'ok' = every round's output equals the transform of the input bit for bit. iohub "
        "runs get the same three passes (soft_magnitude_np) and the same output layout."
    )
    say()
    say("goals:")
    if "threads" in summary:
        ratio = summary["threads"]["x_floor"]
        say(
            f"  threads within 1.5x of the floor: {ratio:.2f}x {'MET' if ratio <= 1.5 else 'MISSED'}"
        )
    for mode, limit in (("processes-cold", 1.0), ("processes-warm", 0.1)):
        if mode in summary:
            added_s = summary[mode]["added_s"]
            extra = ""
            if "threads" in summary:
                extra = (
                    f"; {summary[mode]['wall_s'] - summary['threads']['wall_s']:+.2f} s "
                    f"over threads"
                )
            say(
                f"  {mode} adds under {limit} s: {added_s:+.2f} s over the floor "
                f"{'MET' if added_s < limit else 'MISSED'}{extra}"
            )
    if "processes-warm" in summary:
        firsts = [e["runs"][0] for e in summary["processes-warm"]["entries"]]
        warm_s = [e["warm_s"] for e in summary["processes-warm"]["entries"]]
        say(
            f"  (processes-warm, untimed: ProcessPool.warm() {median(warm_s):.2f} s; the first run "
            f"on the fresh warm pool {median([f['wall_s'] for f in firsts]):.2f} s, first result "
            f"{median([f['first_s'] for f in firsts]):.2f} s, as each worker imports the "
            f"transform's module on its first task)"
        )
    pairs = [
        (o, t)
        for o, t in (
            ("serial", "iohub-serial"),
            ("threads", "iohub-threads"),
            ("processes-cold", "iohub-processes"),
        )
        if o in summary and t in summary
    ]
    if pairs:
        say()
        say("against iohub 0.3.11 (same input, output layout and transform):")
    for ours, theirs in pairs:
        a, b = summary[ours], summary[theirs]
        say(
            f"  {ours:14s} {a['wall_s']:5.2f} s vs {b['wall_s']:5.2f} s "
            f"({b['wall_s'] / a['wall_s']:.2f}x); peak RSS {a['peak_rss'] / MiB:.0f} vs "
            f"{b['peak_rss'] / MiB:.0f} MiB"
        )
    if startup:
        say()
        say(
            f"cold pool start-up ({args.workers} workers, medians): a bare spawn pool running a "
            f"no-op {median(startup['bare_spawn_s']):.2f} s; ProcessPool.warm() "
            f"{median(startup['pool_warm_s']):.2f} s; shutdown "
            f"{median(startup['pool_shutdown_s']):.2f} s"
        )
        say(
            "  in one fresh interpreter: "
            + ", ".join(f"{k} {v:.3f} s" for k, v in startup["imports_s"].items())
        )
    say(f"# command: {' '.join(['python', 'benchmarks/bench_engine.py', *sys.argv[1:]])}")
    say.save(args.results)
    args.results.with_suffix(".json").write_text(
        json.dumps(
            {
                "shape": info.shape,
                "workers": args.workers,
                "floors": floors,
                "modes": {m: dict(s.items()) for m, s in summary.items()},
                "startup": startup,
            },
            indent=1,
            default=str,
        )
    )


if __name__ == "__main__":
    main()
