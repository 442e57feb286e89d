"""What writing pyramid levels in the same run costs (#17): ``run`` with and without levels.

Makes one position of random uint16 data (default 6x2x48x1024x1024, 1.2 GB,
written with tensorstore), then times ``process-position run`` on it with a
cheap transform (``convert_dtype`` to uint16: reading, compressing and
writing dominate, so the levels' share is at its largest) without
``--pyramid-levels`` and with ``--pyramid-levels 4``, alternating, each in a
fresh process, and prints the wall times, the CPU times (the run and its
workers) and the overhead of the medians.

Run::

    PYTHONPATH=src python benchmarks/bench_pyramid.py                 # 2 rounds, 2 workers
    PYTHONPATH=src python benchmarks/bench_pyramid.py --rounds 3 --shape 6,2,48,1024,1024

The data live in a temporary folder (``--scratch``), deleted at the end.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_input(path: Path, shape: tuple[int, ...]) -> None:
    """An input plate ``A/1/0`` of random uint16 volumes (tensorstore writes them)."""
    import numpy as np

    from napari_process_position.store.create import write_empty_plate
    from napari_process_position.store.layout import OutputLayout

    layout = OutputLayout(shape, "<u2", (1.0, 1.0, 1.0, 0.2, 0.2), ("a", "b")[: shape[1]])  # type: ignore[arg-type]
    store = write_empty_plate(path, {"A/1/0": layout}, made="demo")
    from napari_process_position.store.metadata import read_position

    array = read_position(store.position_path("A/1/0")).open_array(write=True)
    rng = np.random.default_rng(0)
    for t in range(shape[0]):
        for c in range(shape[1]):
            array[t, c].write(rng.integers(0, 4096, size=shape[2:], dtype=np.uint16)).result()


def run_once(src: Path, out: Path, workers: int, levels: int) -> tuple[float, float]:
    """Run once; return its wall time and the CPU time of it and its workers (seconds)."""
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(out.parent / ".process-position-progress", ignore_errors=True)
    cmd = [sys.executable, "-m", "napari_process_position.cli", "run", str(src), str(out)]
    cmd += ["-t", "convert_dtype", "-p", "dtype_out=uint16", "--workers", str(workers), "--yes"]
    if levels > 1:
        cmd += ["--pyramid-levels", str(levels)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", default="6,2,48,1024,1024")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--levels", type=int, default=4)
    parser.add_argument("--scratch", default=None)
    args = parser.parse_args()
    shape = tuple(int(n) for n in args.shape.split(","))
    scratch = Path(tempfile.mkdtemp(prefix="npp-bench-pyramid-", dir=args.scratch))
    try:
        start = time.perf_counter()
        make_input(scratch / "in.zarr", shape)
        print(f"input {shape} uint16 made in {time.perf_counter() - start:.1f} s")
        times: dict[int, list[float]] = {1: [], args.levels: []}
        cpus: dict[int, list[float]] = {1: [], args.levels: []}
        for r in range(args.rounds):
            for levels in (1, args.levels) if r % 2 == 0 else (args.levels, 1):
                seconds, cpu = run_once(
                    scratch / "in.zarr", scratch / "out.zarr", args.workers, levels
                )
                times[levels].append(seconds)
                cpus[levels].append(cpu)
                print(
                    f"round {r + 1}: levels={levels}: {seconds:.2f} s, {cpu:.2f} CPU s", flush=True
                )
        base, pyr = statistics.median(times[1]), statistics.median(times[args.levels])
        print(
            f"median without levels {base:.2f} s, with {args.levels} levels {pyr:.2f} s: "
            f"+{100 * (pyr / base - 1):.1f}% ({args.workers} workers, {args.rounds} rounds)"
        )
        base, pyr = statistics.median(cpus[1]), statistics.median(cpus[args.levels])
        print(
            f"median CPU time without levels {base:.2f} s, with {args.levels} levels {pyr:.2f} s: "
            f"+{100 * (pyr / base - 1):.1f}% (less sensitive to other load on the machine)"
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
