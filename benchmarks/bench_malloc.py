"""What glibc's mmap threshold costs numpy: element-wise passes under each setting.

The widget keeps blocks of 128 KiB and more out of glibc's heaps while a run of
large volumes is in flight (``core.memory.large_blocks_unmapped``, #17), and sets
glibc's upper thresholds afterwards. This measures why not always: a pass over
an array (``astype``, a multiply-add, a clip, a cast back: four temporaries of
the array's size) in a thread of a fresh interpreter, with

- ``dynamic``: glibc's defaults (its threshold rises as blocks are freed);
- ``unmapped``: ``unmap_large_blocks()`` (128 KiB, fixed): every temporary
  is mapped and unmapped, and its pages fault in anew;
- ``upper``: glibc's upper values, as after a run (32 MiB, trim 64 MiB).

Prints the median time of 41 passes per size and setting, and the ratio to
``dynamic``::

    PYTHONPATH=src python benchmarks/bench_malloc.py
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

SIZES = ((2, 16, 128, 128), (2, 32, 256, 256), (1, 64, 512, 512))
SETTINGS = ("dynamic", "unmapped", "upper")

CHILD = """
import sys, threading, time
import numpy as np
from napari_process_position.core.memory import (
    MAX_MMAP_THRESHOLD, set_malloc_thresholds, unmap_large_blocks)
setting, shape = sys.argv[1], tuple(int(n) for n in sys.argv[2].split(","))
if setting == "unmapped":
    unmap_large_blocks()
elif setting == "upper":
    set_malloc_thresholds(MAX_MMAP_THRESHOLD, 2 * MAX_MMAP_THRESHOLD)
volume = np.random.default_rng(0).integers(100, 4000, size=shape, dtype=np.uint16)
times = []
def passes():
    for _ in range(41):
        start = time.perf_counter()
        work = volume.astype(np.float32) * 1.5 + 2
        np.clip(work, 0, 65535).astype(np.uint16)
        times.append(time.perf_counter() - start)
thread = threading.Thread(target=passes)
thread.start()
thread.join()
print(sorted(times)[len(times) // 2])
"""


def main() -> None:
    # glibc's own defaults in the children (a Dask nanny may have set MALLOC_* here)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_"))}
    print(f"{'shape':>18} {'MiB':>6} " + " ".join(f"{s:>10}" for s in SETTINGS) + "  ratios")
    for shape in SIZES:
        medians = {}
        for setting in SETTINGS:
            out = subprocess.run(
                [sys.executable, "-c", CHILD, setting, ",".join(map(str, shape))],
                capture_output=True,
                text=True,
                check=True,
                env=env,
            )
            medians[setting] = float(out.stdout)
        mib = 2 * math.prod(shape) / 2**20  # (uint16)
        cells = " ".join(f"{medians[s] * 1e3:8.2f}ms" for s in SETTINGS)
        ratios = " ".join(f"{s}={medians[s] / medians['dynamic']:.1f}x" for s in SETTINGS[1:])
        print(f"{'x'.join(map(str, shape)):>18} {mib:6.1f} {cells}  {ratios}")


if __name__ == "__main__":
    main()
