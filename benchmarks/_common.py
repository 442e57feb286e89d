"""Helpers shared by the benchmark scripts.

Only the standard library is imported at module level: ``bench_engine.py``
imports this module and is itself re-imported by every spawned worker (and
run under iohub's own venv), so nothing heavy may load here. ``psutil`` and
numpy are imported inside the functions that need them.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
MiB = 1024**2


def median(values: Sequence[float]) -> float:
    """Median, or NaN for an empty sequence."""
    return statistics.median(values) if values else float("nan")


@dataclass
class Sampled:
    """What :func:`run_sampled` observed of one child process run."""

    returncode: int
    stdout: str
    stderr: str
    wall_s: float
    peak_rss: int  # bytes, sum over the process tree at the sampled peak
    peak_procs: int  # processes alive in the tree at that peak
    samples: int
    data: dict[str, Any] = field(default_factory=dict)


def run_sampled(
    cmd: Sequence[str],
    *,
    json_out: Path | None = None,
    interval: float = 0.005,
    rescan: float = 0.05,
    env: dict[str, str] | None = None,
    timeout: float = 1800.0,
) -> Sampled:
    """Run ``cmd`` and sample the RSS of its whole process tree every ``interval`` s.

    The tree (the child and every descendant, e.g. spawned pool workers and
    multiprocessing's resource tracker) is rescanned every ``rescan`` s;
    the RSS of the known processes is summed every ``interval`` s and the
    largest sum is the peak. RSS counts shared library pages once per
    process, as ``top`` does. ``json_out``, when given, is a file the child
    writes its own figures to; it is read back into ``Sampled.data``.
    """
    import psutil

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(list(cmd), stdout=out, stderr=err, env=env)
        root = psutil.Process(proc.pid)
        known: dict[int, psutil.Process] = {proc.pid: root}
        peak = peak_procs = samples = 0
        last_scan = 0.0
        while proc.poll() is None:
            now = time.perf_counter()
            if now - start > timeout:
                proc.kill()
                break
            if now - last_scan >= rescan:
                try:
                    for child in root.children(recursive=True):
                        known.setdefault(child.pid, child)
                except psutil.Error:
                    pass
                last_scan = now
            total = alive = 0
            for pid, p in list(known.items()):
                try:
                    total += p.memory_info().rss
                    alive += 1
                except psutil.Error:
                    del known[pid]
            samples += 1
            if total > peak:
                peak, peak_procs = total, alive
            time.sleep(interval)
        returncode = proc.wait()
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        result = Sampled(returncode, out.read(), err.read(), wall, peak, peak_procs, samples)
    if json_out is not None and json_out.exists():
        result.data = json.loads(json_out.read_text())
    return result


def rusage_peak_bytes() -> dict[str, int]:
    """ru_maxrss of this process and of its largest waited-for child, in bytes (Linux)."""
    import resource

    scale = 1 if sys.platform == "darwin" else 1024
    return {
        "self": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale,
        "children": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * scale,
    }


def machine_summary() -> str:
    """One line about the machine and the load when the benchmark ran."""
    try:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover
        load = "?"
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        cpus = os.cpu_count() or 0
    return (
        f"{platform.node()} {platform.machine()}, {cpus} CPUs usable, load {load}, "
        f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M:%S')}"
    )


def package_versions(names: Sequence[str]) -> str:
    """``name version`` pairs of the installed distributions."""
    from importlib.metadata import PackageNotFoundError, version

    parts = []
    for name in names:
        try:
            parts.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            parts.append(f"{name} -")
    return ", ".join(parts)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table, first column left-aligned, the rest right-aligned."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=False))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


class Tee:
    """Collects printed lines so a script can also write them to a results file."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, text: str = "") -> None:
        print(text, flush=True)
        with self._lock:
            self.lines.append(text)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(self.lines) + "\n", encoding="utf-8")
