"""How long each built-in transform takes at its defaults on one volume.

Workload: one channel of one demo time point (``synthetic_position``), uint16,
ZYX 16 x 128 x 128 by default (the demo plate's volume; ``--shape`` for
others), passed as CZYX with C = 1 as the engine does. Each transform runs
once to warm up, then ``--repeats`` times; the table quotes the median and
the fastest run in milliseconds, single-threaded in this process (BLAS/OpenMP
capped to one thread, as in one engine worker). The goal (issue 4): every
built-in well under a second on the demo volume.

    python benchmarks/bench_transforms.py
    python benchmarks/bench_transforms.py --shape 64,512,512 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="16,128,128", help="Z,Y,X of the volume")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help="write the table here (default results/transforms-ZxYxX.txt)",
    )
    args = parser.parse_args()
    z, y, x = (int(v) for v in args.shape.split(","))

    import numpy as np
    from threadpoolctl import threadpool_limits

    from napari_process_position.store.demo import synthetic_position
    from napari_process_position.transforms import list_transforms

    volume = synthetic_position(seed=0, shape=(1, 1, z, y, x))[0]  # CZYX, C = 1
    rows = []
    with threadpool_limits(limits=1):
        for spec in list_transforms():
            if spec.source != "built-in":
                continue
            params = spec.check_params({})
            out = spec.func(volume, **params)
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                spec.func(volume, **params)
                times.append(time.perf_counter() - start)
            rows.append(
                {
                    "name": spec.name,
                    "median_ms": 1000 * statistics.median(times),
                    "min_ms": 1000 * min(times),
                    "out_shape": list(out.shape[1:]),
                    "out_dtype": str(np.asarray(out).dtype),
                }
            )
    lines = [
        f"built-in transforms at defaults on one uint16 volume ZYX {z}x{y}x{x}, "
        f"{args.repeats} runs, one thread",
        f"{'transform':22s} {'median ms':>10s} {'min ms':>8s}  output ZYX, dtype",
    ]
    for row in rows:
        shape = "x".join(map(str, row["out_shape"]))
        lines.append(
            f"{row['name']:22s} {row['median_ms']:10.1f} {row['min_ms']:8.1f}  "
            f"{shape}, {row['out_dtype']}"
        )
    text = "\n".join(lines)
    print(text)
    target = args.results or RESULTS / f"transforms-{z}x{y}x{x}.txt"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text + "\n")
    target.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
