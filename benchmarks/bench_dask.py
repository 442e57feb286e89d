"""Dask benchmark: 4 positions of the reference workload on a LocalCluster vs local processes.

Workload (issue 5, item 6): 4 positions, each T=8, C=2, Z=32, Y=X=256
float32 (64 (t, c) volumes of 8 MiB), transform ``soft_magnitude``
(``sqrt(x*x + 1) - 0.5``), written into a fresh OME-Zarr v0.5 output plate
by :func:`napari_process_position.batch.prepare.prepare_run` exactly as
``process-position run`` does.

Modes, 2 workers each:

- ``processes-warm``: a ``ProcessPool(2)`` started and warmed before the
  clock starts, handed to ``prepare_run(config, pool=...)``;
- ``dask-warm``: a ``LocalCluster(n_workers=2, threads_per_worker=1,
  processes=True)`` started (and its workers' imports warmed) before the
  clock starts, handed over as ``executor=DaskExecutor(client)``;
- ``processes-cold``: ``num_workers=2``: the run spawns its pool and shuts
  it down (``process-position run -w 2``);
- ``dask-local-cold``: ``dask_local=2``: the run starts the LocalCluster and
  stops it (``process-position run --dask-local 2``).

Each run happens in a fresh child process; rounds rotate the order of the
modes. Figures are medians over rounds:

- ``wall s``: from ``prepare_run()`` (which creates the output plate, and for
  ``dask-local-cold`` starts the cluster) to the end of the iteration
  (including stopping what the run started);
- ``busy s``: read + compute + write seconds the workers report, summed over
  the 64 tasks;
- ``x ideal``: wall / (busy / 2);
- ``overhead/task ms``: (wall x 2 - busy) / 64: the time a worker slot spends
  on anything but the task itself (scheduling, sending the task and the
  Result, idling at the start and end), per task;
- ``vs processes-warm ms/task``: (wall - wall of processes-warm in the same
  round) / 64.

Every output is compared with the first mode's output bit for bit.

Run::

    /tmp/venv311/bin/python benchmarks/bench_dask.py              # 5 rounds
    /tmp/venv311/bin/python benchmarks/bench_dask.py --rounds 3

The table is printed and written to ``benchmarks/results/dask.txt`` (raw
figures in ``dask.json``). Spawned workers re-import this script, so at
module level it imports only the standard library and ``_common``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import RESULTS_DIR, Tee, format_table, machine_summary, median, package_versions

SHAPE = (8, 2, 32, 256, 256)
KEYS = ("A/1/0", "A/2/0", "B/1/0", "B/2/0")
TRANSFORM = "soft_magnitude"
WORKERS = 2
MODES = ("processes-warm", "dask-warm", "processes-cold", "dask-local-cold")


# -- child: one timed run -----------------------------------------------------------------


def _digest(out: Path) -> str:
    import hashlib

    from napari_process_position.store.metadata import read_position

    h = hashlib.sha256()
    for key in KEYS:
        array = read_position(out / key).open_array()
        for t in range(SHAPE[0]):
            h.update(array[t].read().result().tobytes())
    return h.hexdigest()[:16]


def child(mode: str, input_plate: str, output: str) -> dict[str, Any]:
    from napari_process_position import RunConfig
    from napari_process_position.batch.dask import DaskExecutor
    from napari_process_position.batch.prepare import prepare_run
    from napari_process_position.engine.pool import ProcessPool
    from napari_process_position.engine.worker import warm_up
    from napari_process_position.transforms import get_transform

    get_transform(TRANSFORM)  # import the transform before the clock starts
    config = RunConfig(input=input_plate, output=output, transform=TRANSFORM, num_workers=WORKERS)
    pool = client = cluster = None
    kwargs: dict[str, Any] = {}
    if mode == "processes-warm":
        pool = ProcessPool(WORKERS)
        pool.warm()
        kwargs["pool"] = pool
    elif mode == "dask-warm":
        from distributed import Client, LocalCluster

        cluster = LocalCluster(
            n_workers=WORKERS, threads_per_worker=1, processes=True, dashboard_address=None
        )
        client = Client(cluster)
        client.wait_for_workers(WORKERS)
        client.gather(client.map(warm_up, [0.05] * (2 * WORKERS), pure=False))
        client.run(lambda: __import__("tensorstore") and None)
        kwargs["executor"] = DaskExecutor(client)
    elif mode == "dask-local-cold":
        config = config.model_copy(update={"dask_local": WORKERS})
    elif mode != "processes-cold":
        raise ValueError(mode)

    start = time.perf_counter()
    batch = prepare_run(config, **kwargs)
    first = None
    busy = 0.0
    count = 0
    for _, result in batch:
        if first is None:
            first = time.perf_counter() - start
        busy += result.read_s + result.compute_s + result.write_s
        count += 1
    wall = time.perf_counter() - start
    if batch.failed:
        raise RuntimeError(f"{mode}: {batch.errors}")

    if pool is not None:
        pool.shutdown()
    if client is not None:
        client.close()
        cluster.close()
    return {
        "mode": mode,
        "wall_s": wall,
        "busy_s": busy,
        "tasks": count,
        "first_s": first,
        "digest": _digest(Path(output)),
    }


# -- harness ------------------------------------------------------------------------------


def input_plate(path: Path, say: Tee) -> Path:
    """4 positions of the reference workload (the engine benchmark's cells, copied)."""
    done = path / ".bench-complete"
    if done.exists():
        return path

    from napari_process_position.store.create import write_empty_plate
    from napari_process_position.store.demo import make_demo_plate
    from napari_process_position.store.layout import OutputLayout
    from napari_process_position.store.metadata import read_position

    source = Path(tempfile.gettempdir()) / (
        "npp-bench-input-" + "x".join(map(str, SHAPE)) + "-float32.zarr"
    )
    if not (source / ".bench-complete").exists():
        say(f"writing {source} (synthetic cells; about a minute) ...")
        make_demo_plate(source, shape=SHAPE, positions=("A/1/0",), dtype="float32", overwrite=True)
        (source / ".bench-complete").write_text("ok\n")
    say(f"writing the 4-position input {path} ...")
    info = read_position(source / "A/1/0")
    data = info.open_array().read().result()
    layout = OutputLayout(
        shape=info.shape,
        dtype=info.dtype,
        scale=info.scale,  # type: ignore[arg-type]
        channel_names=info.channel_names,
    )
    store = write_empty_plate(path, dict.fromkeys(KEYS, layout), overwrite=True)
    for key in KEYS:
        target = read_position(store.position_path(key), key)
        target.open_array(write=True).write(data).result()
    done.write_text("ok\n")
    return path


def run_child(mode: str, plate: Path, work: Path, round_: int) -> dict[str, Any]:
    import subprocess

    output = work / f"{mode}-{round_}.zarr"
    json_out = work / f"{mode}-{round_}.json"
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        mode,
        "--input",
        str(plate),
        "--output",
        str(output),
        "--json-out",
        str(json_out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    try:
        if proc.returncode != 0:
            raise RuntimeError(f"{mode} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        return json.loads(json_out.read_text())
    finally:
        shutil.rmtree(output, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="each round runs every mode once")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--input", type=Path, default=None, help="where to cache the input plate")
    parser.add_argument("--results", type=Path, default=RESULTS_DIR / "dask.txt")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    parser.add_argument("--json-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        data = child(args.child, str(args.input), args.output)
        Path(args.json_out).write_text(json.dumps(data))
        return

    say = Tee()
    say(
        f"bench_dask: 4 positions x T={SHAPE[0]} C={SHAPE[1]} Z={SHAPE[2]} Y=X={SHAPE[3]} float32, "
        f"{TRANSFORM}, {WORKERS} workers, {args.rounds} rounds"
    )
    say(machine_summary())
    say(package_versions(["numpy", "tensorstore", "zarr", "dask", "distributed"]))
    plate = input_plate(
        args.input
        or Path(tempfile.gettempdir())
        / ("npp-bench-dask-input-4x" + "x".join(map(str, SHAPE)) + "-float32.zarr"),
        say,
    )
    work = Path(tempfile.mkdtemp(prefix="npp-bench-dask-"))
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in args.modes}
    try:
        for r in range(args.rounds):
            order = args.modes[r % len(args.modes) :] + args.modes[: r % len(args.modes)]
            for mode in order:
                data = run_child(mode, plate, work, r)
                data["round"] = r
                runs[mode].append(data)
                say(
                    f"  round {r + 1}: {mode:16s} wall {data['wall_s']:.2f} s, "
                    f"busy {data['busy_s']:.2f} s, first result {data['first_s']:.2f} s"
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)

    digests = {d["digest"] for m in runs.values() for d in m}
    base = "processes-warm" if "processes-warm" in runs else None
    rows = []
    for mode, data in runs.items():
        tasks = data[0]["tasks"]
        walls = [d["wall_s"] for d in data]
        busy = [d["busy_s"] for d in data]
        overhead = [(d["wall_s"] * WORKERS - d["busy_s"]) / d["tasks"] * 1000 for d in data]
        ideal = [d["wall_s"] / (d["busy_s"] / WORKERS) for d in data]
        vs = "-"
        if base and mode != base:
            by_round = {d["round"]: d["wall_s"] for d in runs[base]}
            diffs = [(d["wall_s"] - by_round[d["round"]]) / tasks * 1000 for d in data]
            vs = f"{median(diffs):+.1f}"
        rows.append(
            [
                mode,
                str(tasks),
                f"{median(walls):.2f}",
                f"{min(walls):.2f}-{max(walls):.2f}",
                f"{median(busy):.2f}",
                f"{median(ideal):.2f}",
                f"{median(overhead):.1f}",
                vs,
                f"{median([d['first_s'] for d in data]):.2f}",
            ]
        )
    say()
    say(
        format_table(
            [
                "mode",
                "tasks",
                "wall s",
                "range s",
                "busy s",
                "x ideal",
                "overhead/task ms",
                "vs processes-warm ms/task",
                "1st result s",
            ],
            rows,
        )
    )
    say()
    say(
        "outputs: "
        + (
            "identical in every mode and round (sha256 " + next(iter(digests)) + ")"
            if len(digests) == 1
            else f"DIFFER: {sorted(digests)}"
        )
    )
    say(f"command: {sys.executable} benchmarks/bench_dask.py --rounds {args.rounds}")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    say.save(args.results)
    args.results.with_suffix(".json").write_text(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()
