"""The drop-in call as a user pays it: a fresh interpreter, imports and start-up included.

Each timed run is one new interpreter that imports ``process_single_position``
and calls it once on an input position written by iohub 0.3.11 (T=8, C=2, Z=32,
Y=X=256 float32 by default), into an empty output position made by iohub's
``create_empty_plate`` (the same layout for every implementation), with the
numpy transform in ``dropin_transform.py`` (three passes). The wall time of the
whole child process is measured from outside.

Implementations, alternated in rounds (the order rotated every round, so load
from elsewhere on a shared machine hits all of them alike; ratios are taken
within a round and their medians quoted):

- ``ours``: this working tree (``src/`` first on ``PYTHONPATH``);
- ``REF``: with ``--against REF`` (repeatable), that commit of this repository, checked out
  in a git worktree under the temp dir (made once, reused);
- ``iohub``: iohub 0.3.11's own ``process_single_position`` in its venv.

Modes: ``serial`` (num_workers=1), ``threads`` and ``processes`` (``--workers``,
default 2). ``--cli`` adds the command line's start-up for ours and the ref:
``process-position --help`` and ``process-position positions INPUT``;
``--plate N`` adds ``process-position run --no-progress`` over a plate of N
small positions written by iohub (1536: 96 wells x 16 fields), and the number
of lines it prints. ``--ours-python`` runs this tree with another interpreter
(a venv that honours this tree's dependency pins while the refs keep theirs),
to compare what a user of each version installs.

Run::

    python benchmarks/bench_dropin.py --rounds 7 --against main --against 7678a82
    python benchmarks/bench_dropin.py --rounds 5 --no-iohub --against main --cli

The table is printed and written to ``benchmarks/results/dropin.txt``. Every
output is checked bit for bit against the transform of the input.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import RESULTS_DIR, Tee, format_table, machine_summary, median

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
IOHUB_PYTHON = os.environ.get("NPP_IOHUB_PYTHON", "/work/main/.venv-iohub/bin/python")
MODES = ("serial", "threads", "processes")
CLI_MODES = ("cli-help", "cli-positions")
PLATE_MODE = "cli-plate"

#: Run by iohub's interpreter: a plate of small positions, 16 fields per well (argv: path, N).
MAKE_PLATE = r"""
import sys
from pathlib import Path
import numpy as np
from iohub import open_ome_zarr
from iohub.ngff.utils import create_empty_plate
path, n = Path(sys.argv[1]), int(sys.argv[2])
shape = (1, 1, 8, 64, 64)
wells = [(r, str(c)) for r in "ABCDEFGHIJKLMNOP" for c in range(1, 25)]
keys = [(*wells[i // 16], str(i % 16)) for i in range(n)]
create_empty_plate(path, keys, ["c0"], shape, dtype=np.uint16)
rng = np.random.default_rng(0)
with open_ome_zarr(path, mode="r+") as plate:
    for _, pos in plate.positions():
        pos["0"][:] = rng.integers(1, 4000, shape, dtype=np.uint16)
"""

#: Run by iohub's interpreter: the input plate (argv: path, T, C, Z, Y, X).
MAKE_INPUT = r"""
import sys
from pathlib import Path
import numpy as np
from iohub import open_ome_zarr
from iohub.ngff.utils import create_empty_plate
path = Path(sys.argv[1]); shape = tuple(int(s) for s in sys.argv[2:7])
create_empty_plate(path, [("A", "1", "0")], [f"c{i}" for i in range(shape[1])], shape)
rng = np.random.default_rng(0)
t, c, z, y, x = shape
with open_ome_zarr(path / "A/1/0", mode="r+") as pos:
    arr = pos["0"]
    for ti in range(t):
        for ci in range(c):
            zz, yy, xx = np.ogrid[:z, :y, :x]
            base = np.sin(yy / 9.0 + ti) * np.cos(xx / 7.0 + ci) * (1 + zz / z)
            noise = rng.normal(0, 0.1, (z, y, x))
            arr[ti, ci] = (100 * (base + noise)).round(1).astype(np.float32)
"""

#: Run by iohub's interpreter: empty outputs like the input (argv: input, outputs...).
MAKE_OUTPUTS = r"""
import sys
from pathlib import Path
from iohub import open_ome_zarr
from iohub.ngff.utils import create_empty_plate
with open_ome_zarr(sys.argv[1], mode="r") as pos:
    shape, names, dtype = pos["0"].shape, pos.channel_names, pos["0"].dtype
for out in sys.argv[2:]:
    create_empty_plate(Path(out), [("A", "1", "0")], names, shape, dtype=dtype)
"""

#: The timed child (argv: impl, mode, input position, output position, workers).
CALL = r"""
import sys
from pathlib import Path
impl, mode, inp, out, workers = sys.argv[1:6]
if impl == "iohub":
    from iohub.ngff.utils import process_single_position
else:
    from napari_process_position import process_single_position
from dropin_transform import soft_magnitude
kwargs = {"serial": {"num_workers": 1},
          "threads": {"num_workers": int(workers), "use_threads": True},
          "processes": {"num_workers": int(workers), "use_threads": False}}[mode]
process_single_position(soft_magnitude, Path(inp), Path(out), **kwargs)
"""

#: Run by iohub's interpreter (it has tensorstore): is each output the transform of the input?
CHECK = r"""
import sys
import numpy as np
import tensorstore as ts
from dropin_transform import soft_magnitude
def read(path):
    return ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": path + "/0"}},
                   open=True).result().read().result()
src = read(sys.argv[1])
expected = np.stack([np.stack([soft_magnitude(src[t, c]) for c in range(src.shape[1])])
                     for t in range(src.shape[0])])
for out in sys.argv[2:]:
    got = read(out)
    same = got.shape == expected.shape and np.array_equal(got.view(np.uint8), expected.view(np.uint8))
    print(out, "ok" if same else "DIFFERS")
"""


def ref_tree(ref: str) -> Path:
    """A git worktree of ``ref`` under the temp dir (made once), with this tree's _version.py."""
    sha = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", ref],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    path = Path(tempfile.gettempdir()) / f"npp-bench-ref-{sha}"
    if not (path / "src").exists():
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), sha],
            check=True,
            capture_output=True,
        )
    version = "src/napari_process_position/_version.py"
    if not (path / version).exists():
        shutil.copy(REPO / version, path / version)
    return path


def env_for(src: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    parts = ([str(src)] if src else []) + [str(BENCH_DIR)]
    env["PYTHONPATH"] = os.pathsep.join(parts)
    env.pop("PYTHONSTARTUP", None)
    return env


def imported_from(python: str, env: dict[str, str]) -> str:
    out = subprocess.run(
        [python, "-c", "import napari_process_position as n; print(n.__file__)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def versions(python: str, env: dict[str, str]) -> str:
    """numpy, tensorstore and ml_dtypes as this interpreter imports them."""
    code = (
        "from importlib.metadata import version as v; "
        "print(', '.join(f'{n} {v(n)}' for n in ('numpy', 'tensorstore', 'ml_dtypes')))"
    )
    out = subprocess.run([python, "-c", code], env=env, capture_output=True, text=True)
    return out.stdout.strip() or "versions unknown"


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Wall seconds of the command, and the lines it printed (both streams)."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} failed ({proc.returncode}):\n{proc.stderr.decode()[-3000:]}")
    return wall, len(proc.stdout.splitlines()) + len(proc.stderr.splitlines())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--shape",
        type=lambda s: tuple(int(x) for x in s.split(",")),
        default=(8, 2, 32, 256, 256),
        help="TCZYX of the input, comma-separated",
    )
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument(
        "--against", metavar="REF", action="append", default=[], help="a git ref (repeatable)"
    )
    parser.add_argument("--no-iohub", action="store_true")
    parser.add_argument("--cli", action="store_true", help="also time the CLI's start-up")
    parser.add_argument(
        "--plate",
        type=int,
        default=0,
        metavar="N",
        help="also time 'process-position run --no-progress' over a plate of N small positions "
        "(1x1x8x64x64 uint16, written by iohub; 1536 = 96 wells x 16 fields)",
    )
    parser.add_argument("--iohub-python", default=IOHUB_PYTHON)
    parser.add_argument(
        "--ours-python",
        default=sys.executable,
        help="the interpreter for this working tree (default: the one running this script), "
        "e.g. a venv that honours this tree's dependency pins while the refs keep theirs",
    )
    parser.add_argument("--results", type=Path, default=RESULTS_DIR / "dropin.txt")
    args = parser.parse_args()

    say = Tee()
    say(f"# drop-in benchmark: {machine_summary()}")
    impls: dict[str, tuple[str, dict[str, str]]] = {
        "ours": (args.ours_python, env_for(REPO / "src"))
    }
    for ref in args.against:
        impls[ref] = (sys.executable, env_for(ref_tree(ref) / "src"))
    for name, (python, env) in impls.items():
        say(f"# {name}: {imported_from(python, env)} ({python}; {versions(python, env)})")
    if not args.no_iohub:
        impls["iohub"] = (args.iohub_python, env_for(None))
        say(f"# iohub: {args.iohub_python}")
    iohub_python, iohub_env = args.iohub_python, env_for(None)

    work = Path(tempfile.mkdtemp(prefix="npp-bench-dropin-"))
    try:
        shape = args.shape
        say(f"# input T,C,Z,Y,X={shape} float32 written by iohub; {args.workers} workers")
        plate = work / "input.zarr"
        cmd = [iohub_python, "-c", MAKE_INPUT, str(plate), *map(str, shape)]
        subprocess.run(cmd, env=iohub_env, check=True, stderr=subprocess.DEVNULL)
        inp = str(plate / "A/1/0")
        big = work / "big.zarr"
        if args.plate:
            say(f"# plate: {args.plate} positions of 1x1x8x64x64 uint16 written by iohub")
            cmd = [iohub_python, "-c", MAKE_PLATE, str(big), str(args.plate)]
            subprocess.run(cmd, env=iohub_env, check=True, stderr=subprocess.DEVNULL)
        jobs = [(i, m) for m in args.modes for i in impls]
        if args.cli:
            jobs += [(i, m) for m in CLI_MODES for i in impls if i != "iohub"]
        if args.plate:
            jobs += [(i, PLATE_MODE) for i in impls if i != "iohub"]
        walls: dict[tuple[str, str], list[float]] = {j: [] for j in jobs}
        printed: dict[tuple[str, str], int] = {}
        checked: list[str] = []
        for r in range(args.rounds):
            order = jobs[r % len(jobs) :] + jobs[: r % len(jobs)]
            outs = {j: work / f"r{r}-{j[0]}-{j[1]}.zarr" for j in order if j[1] in MODES}
            cmd = [iohub_python, "-c", MAKE_OUTPUTS, inp, *map(str, outs.values())]
            subprocess.run(cmd, env=iohub_env, check=True, stderr=subprocess.DEVNULL)
            for impl, mode in order:
                python, env = impls[impl]
                if mode == "cli-help":
                    cmd = [python, "-m", "napari_process_position.cli", "--help"]
                elif mode == "cli-positions":
                    cmd = [python, "-m", "napari_process_position.cli", "positions", str(plate)]
                elif mode == PLATE_MODE:
                    out = str(work / f"r{r}-{impl}-plate.zarr")
                    cmd = [python, "-m", "napari_process_position.cli", "run", str(big), out]
                    cmd += ["-t", "soft_magnitude", "--no-progress"]
                else:
                    out = str(outs[(impl, mode)] / "A/1/0")
                    cmd = [python, "-c", CALL, impl, mode, inp, out, str(args.workers)]
                    checked.append(out)
                wall, printed[(impl, mode)] = timed(cmd, env)
                walls[(impl, mode)].append(wall)
                if mode == PLATE_MODE:
                    shutil.rmtree(out, ignore_errors=True)
            say(f"  round {r + 1}/{args.rounds} done (load {os.getloadavg()[0]:.2f})")
        check = subprocess.run(
            [iohub_python, "-c", CHECK, inp, *checked],
            env=iohub_env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        bad = [line for line in check.splitlines() if not line.endswith(" ok")]
        outputs = "every output ok" if not bad else f"OUTPUTS DIFFER: {bad}"
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rows = []
    for mode in [m for m in (*MODES, *CLI_MODES, PLATE_MODE) if any(j[1] == m for j in jobs)]:
        row: list[str] = [mode]
        for impl in impls:
            w = walls.get((impl, mode))
            row.append(f"{median(w):.2f} ({min(w):.2f}-{max(w):.2f})" if w else "-")
        for other in [*args.against, "iohub"]:
            if other in impls and (other, mode) in walls:
                ratios = [
                    a / b for a, b in zip(walls[("ours", mode)], walls[(other, mode)], strict=True)
                ]
                row.append(f"{median(ratios):.2f}")
            elif other in impls:
                row.append("-")
        rows.append(row)
    headers = ["mode", *(f"{i} s (range)" for i in impls)]
    headers += [f"ours/{o}" for o in [*args.against, "iohub"] if o in impls]
    say()
    say(format_table(headers, rows))
    if args.plate:
        lines = ", ".join(f"{i} {n}" for (i, m), n in printed.items() if m == PLATE_MODE)
        say()
        say(f"lines printed by one run over the plate ({PLATE_MODE}): {lines}")
    say()
    say(
        f"wall seconds of a fresh interpreter that imports process_single_position and calls it "
        f"once (medians of {args.rounds} rounds; ratios are medians of per-round ratios); "
        f"{outputs}"
    )
    say(f"# command: python benchmarks/bench_dropin.py {' '.join(sys.argv[1:])}")
    say.save(args.results)


if __name__ == "__main__":
    main()
