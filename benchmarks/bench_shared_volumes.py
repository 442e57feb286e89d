"""Preview volumes from worker processes: shared memory against pickles.

A run without an output (a preview in napari) hands each computed volume back
to the caller. This times a warm pool of 2 processes streaming every volume of
one position back, with the volumes travelling through shared memory (the
engine's default on Linux, :mod:`napari_process_position.engine.shared`) and
as pickles (sharing switched off), alternated in one process, and reports the
medians of the first volume's arrival and of the whole position.

    .venv/bin/python benchmarks/bench_shared_volumes.py [--repeats 5] [--shape 6,2,64,512,512]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parent / "tests"))  # the test transforms, importable by workers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--shape", default="6,2,64,512,512", help="T,C,Z,Y,X of the position")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    import numpy as np

    from conftest import write_plate
    from napari_process_position import ProcessPool, stream_position
    from napari_process_position.engine import position_run as engine_run

    shape = tuple(int(s) for s in args.shape.split(","))
    transform = "npp_test_transforms:scale_offset"
    with tempfile.TemporaryDirectory() as tmp:
        data = np.random.default_rng(0).random(shape, dtype=np.float32)
        src = write_plate(Path(tmp) / "in.zarr", {"A/1/0": data}) / "A/1/0"
        figures: dict[str, list[tuple[float, float]]] = {"shared memory": [], "pickles": []}
        original = engine_run.sharing_available
        with ProcessPool(args.workers) as pool:
            pool.warm(transform)
            for _ in range(args.repeats):
                for how in figures:
                    engine_run.sharing_available = (  # type: ignore[assignment]
                        original if how == "shared memory" else (lambda: False)
                    )
                    start = time.perf_counter()
                    first = None
                    for _result in stream_position(transform, src, pool=pool):
                        if first is None:
                            first = time.perf_counter() - start
                    figures[how].append((first or 0.0, time.perf_counter() - start))
        engine_run.sharing_available = original
    volume_mib = np.prod(shape[2:]) * 4 / 2**20
    print(
        f"{shape[0]}x{shape[1]} volumes of {'x'.join(map(str, shape[2:]))} float32 "
        f"({volume_mib:.0f} MiB each), warm pool of {args.workers} processes, "
        f"medians of {args.repeats}:"
    )
    for how, runs in figures.items():
        first = statistics.median(f for f, _ in runs)
        total = statistics.median(t for _, t in runs)
        print(f"  {how:14s} first volume {first:.3f} s   whole position {total:.3f} s")


if __name__ == "__main__":
    main()
