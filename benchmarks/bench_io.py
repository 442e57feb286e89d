"""Volume I/O: tensorstore against zarr-python 3, for one (t, c) volume at a time.

For float32 and uint16 volumes of 32x256x256 (the engine benchmark's), in
our two output layouts:

- ``v0.5``: Zarr v3, one shard per (t, c) volume, inner chunks of 16x256x256,
  blosc zstd level 1 with bit-shuffle (what ``write_empty_plate`` writes);
- ``v0.4``: Zarr v2, one chunk per (t, c) volume, the same compressor.

it times reading and writing one volume with a handle opened once
(``arr[t, c].read()`` / ``z[t, c]``) and with a fresh open per volume
(what the engine's worker does per task: ``ts.open(...)`` /
``zarr.open_array(...)``). Each round visits every (t, c) volume once per
backend, backends interleaved so machine noise hits both; medians over all
volumes and rounds. The data are the engine benchmark's synthetic cells
(its cached input plate), so compression behaves as on real images.

Run::

    /tmp/venv311/bin/python benchmarks/bench_io.py               # 5 rounds
    /tmp/venv311/bin/python benchmarks/bench_io.py --rounds 9

Printed and written to ``benchmarks/results/io.txt`` (raw figures in
``io.json``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import RESULTS_DIR, MiB, Tee, format_table, machine_summary, median, package_versions

SHAPE = (4, 2, 32, 256, 256)
ENGINE_INPUT = Path(tempfile.gettempdir()) / "npp-bench-input-8x2x32x256x256-float32.zarr" / "A/1/0"


def source_data(shape: tuple[int, ...]) -> Any:
    """float32 TCZYX synthetic cells: from the engine benchmark's input when it is there."""
    import numpy as np

    from napari_process_position.store.metadata import read_position

    if (ENGINE_INPUT.parents[2] / ".bench-complete").exists():
        info = read_position(ENGINE_INPUT)
        if info.shape[1:] == shape[1:] and info.shape[0] >= shape[0]:
            arr = info.open_array()
            return np.asarray(arr[: shape[0]].read().result(), dtype=np.float32)
    from napari_process_position.store.demo import synthetic_position

    print("generating synthetic cells (run bench_engine.py first to reuse its input) ...")
    return synthetic_position(seed=0, shape=shape, dtype="float32")  # type: ignore[arg-type]


def make_array(root: Path, name: str, data: Any, version: str) -> str:
    """A single-position store in our output layout holding ``data``; returns the array path."""
    import numpy as np

    from napari_process_position.store.create import create_output_position
    from napari_process_position.store.layout import OutputLayout

    layout = OutputLayout(
        shape=data.shape,
        dtype=np.dtype(data.dtype).str,
        scale=(1.0, 1.0, 2.0, 0.65, 0.65),
        channel_names=("a", "b"),
    )
    info = create_output_position(root / name, layout, version=version)  # type: ignore[arg-type]
    info.open_array(write=True).write(data).result()
    return info.array_path


class Backend:
    """One way to read and write (t, c) volumes of one array."""

    def __init__(self, name: str, path: str, zarr_format: int) -> None:
        self.name, self.path, self.zarr_format = name, path, zarr_format

    def open(self, write: bool = False) -> Any:
        raise NotImplementedError

    def read(self, handle: Any, t: int, c: int) -> Any:
        raise NotImplementedError

    def write(self, handle: Any, t: int, c: int, volume: Any) -> None:
        raise NotImplementedError


class TensorStore(Backend):
    def open(self, write: bool = False) -> Any:
        import tensorstore as ts

        spec = {
            "driver": "zarr3" if self.zarr_format == 3 else "zarr",
            "kvstore": {"driver": "file", "path": self.path},
        }
        return ts.open(spec, read=True, write=write, open=True).result()

    def read(self, handle: Any, t: int, c: int) -> Any:
        return handle[t, c].read().result()

    def write(self, handle: Any, t: int, c: int, volume: Any) -> None:
        handle[t, c].write(volume).result()


class ZarrPython(Backend):
    def open(self, write: bool = False) -> Any:
        import zarr

        return zarr.open_array(self.path, mode="r+" if write else "r", zarr_format=self.zarr_format)

    def read(self, handle: Any, t: int, c: int) -> Any:
        return handle[t, c]

    def write(self, handle: Any, t: int, c: int, volume: Any) -> None:
        handle[t, c] = volume


def time_pass(
    backend: Backend,
    op: str,
    fresh_open: bool,
    keys: list[tuple[int, int]],
    volumes: dict[tuple[int, int], Any],
) -> list[float]:
    """Per-volume seconds for one pass over ``keys``."""
    write = op == "write"
    handle = None if fresh_open else backend.open(write=write)
    times = []
    for t, c in keys:
        start = time.perf_counter()
        h = backend.open(write=write) if fresh_open else handle
        if write:
            backend.write(h, t, c, volumes[t, c])
        else:
            backend.read(h, t, c)
        times.append(time.perf_counter() - start)
    return times


CODECS = {
    # name: (cname, clevel, shuffle) for blosc; None = no compression
    "zstd1+bitshuffle (ours)": ("zstd", 1, "bitshuffle"),
    "zstd1+shuffle": ("zstd", 1, "shuffle"),
    "lz4+bitshuffle": ("lz4", 5, "bitshuffle"),
    "lz4+shuffle": ("lz4", 5, "shuffle"),
    "none": None,
}


def codec_cases(
    work: Path, datasets: dict[str, Any], keys: list[tuple[int, int]], rounds: int
) -> list[list[str]]:
    """Write and read one v0.5 volume through tensorstore with other blosc settings."""
    import numpy as np
    import zarr
    from zarr.codecs import BloscCodec

    rows = []
    for dtype, data in datasets.items():
        vols = {k: np.ascontiguousarray(data[k]) for k in keys}
        for name, codec in CODECS.items():
            path = work / f"codec-{dtype}-{len(rows)}"
            compressors = (
                None
                if codec is None
                else BloscCodec(cname=codec[0], clevel=codec[1], shuffle=codec[2])
            )
            zarr.create_array(
                store=str(path),
                shape=data.shape,
                dtype=data.dtype,
                chunks=(1, 1, 16, 256, 256),
                shards=(1, 1, 32, 256, 256),
                compressors=compressors,
                fill_value=0,
                zarr_format=3,
            )
            backend = TensorStore("tensorstore", str(path), 3)
            writes: list[float] = []
            reads: list[float] = []
            for _ in range(rounds):
                writes += time_pass(backend, "write", False, keys, vols)
                reads += time_pass(backend, "read", False, keys, vols)
            stored = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
            rows.append(
                [
                    dtype,
                    name,
                    f"{median(writes) * 1e3:.1f}",
                    f"{median(reads) * 1e3:.1f}",
                    f"{data.nbytes / stored:.2f}",
                ]
            )
            shutil.rmtree(path, ignore_errors=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="passes over all volumes per case")
    parser.add_argument("--results", type=Path, default=RESULTS_DIR / "io.txt")
    parser.add_argument(
        "--no-codecs", action="store_true", help="skip the comparison of compressor settings"
    )
    args = parser.parse_args()

    import numpy as np
    import zarr

    say = Tee()
    say(f"# volume I/O benchmark: {machine_summary()}")
    say(
        f"# {package_versions(['numpy', 'tensorstore', 'zarr', 'numcodecs'])}; zarr async "
        f"concurrency {zarr.config.get('async.concurrency')}, codec pipeline "
        f"{zarr.config.get('codec_pipeline.path')}"
    )
    base = source_data(SHAPE)
    datasets = {
        "float32": base,
        "uint16": np.clip(np.rint(base), 0, 65535).astype(np.uint16),
    }
    keys = [(t, c) for t in range(SHAPE[0]) for c in range(SHAPE[1])]
    work = Path(tempfile.mkdtemp(prefix="npp-bench-io-"))
    backends: dict[str, Callable[[str, int], Backend]] = {
        "tensorstore": lambda p, f: TensorStore("tensorstore", p, f),
        "zarr-python": lambda p, f: ZarrPython("zarr-python", p, f),
    }
    cases = [(dtype, version) for dtype in datasets for version in ("0.5", "0.4")]
    ops = [("read", False), ("read", True), ("write", False), ("write", True)]
    times: dict[tuple[str, str, str, bool, str], list[float]] = {}
    sizes = {}
    try:
        arrays = {}
        for dtype, version in cases:
            data = datasets[dtype]
            path = make_array(work, f"{dtype}-v{version}.zarr", data, version)
            arrays[dtype, version] = path
            fmt = 3 if version == "0.5" else 2
            on_disk = sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
            sizes[dtype, version] = (data.nbytes / len(keys), on_disk / len(keys))
            # same values through both backends
            a = backends["tensorstore"](path, fmt)
            b = backends["zarr-python"](path, fmt)
            ha, hb = a.open(), b.open()
            for t, c in keys[:2]:
                if not np.array_equal(a.read(ha, t, c), b.read(hb, t, c)):
                    raise AssertionError(f"backends disagree on {dtype} v{version} t={t} c={c}")
        volumes = {
            dtype: {k: np.ascontiguousarray(datasets[dtype][k]) for k in keys} for dtype in datasets
        }
        # warm-up: first opens, imports, page cache
        for (dtype, version), path in arrays.items():
            fmt = 3 if version == "0.5" else 2
            for make in backends.values():
                time_pass(make(path, fmt), "read", True, keys[:2], volumes[dtype])
        for r in range(args.rounds):
            for (dtype, version), path in arrays.items():
                fmt = 3 if version == "0.5" else 2
                for op, fresh in ops:
                    order = list(backends.items())
                    if r % 2:
                        order.reverse()
                    for name, make in order:
                        key = (dtype, version, op, fresh, name)
                        times.setdefault(key, []).extend(
                            time_pass(make(path, fmt), op, fresh, keys, volumes[dtype])
                        )
            print(f"  round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
        codec_rows = [] if args.no_codecs else codec_cases(work, datasets, keys, args.rounds)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rows = []
    decisions = []
    for dtype, version in cases:
        raw, disk = sizes[dtype, version]
        for op, fresh in ops:
            ts_s = median(times[dtype, version, op, fresh, "tensorstore"])
            zr_s = median(times[dtype, version, op, fresh, "zarr-python"])
            rows.append(
                [
                    f"{dtype} v{version}",
                    f"{op}{' +open' if fresh else ''}",
                    f"{ts_s * 1e3:.1f}",
                    f"{zr_s * 1e3:.1f}",
                    f"{zr_s / ts_s:.2f}",
                    f"{raw / MiB / ts_s:.0f}",
                    f"{raw / MiB / zr_s:.0f}",
                    f"{raw / disk:.2f}",
                ]
            )
            decisions.append(zr_s / ts_s)
    say(
        f"# one (t, c) volume = 32x256x256 ({SHAPE[0] * SHAPE[1]} volumes per array), "
        f"{args.rounds} rounds, medians per volume"
    )
    say()
    say(
        format_table(
            [
                "array",
                "operation",
                "tensorstore ms",
                "zarr-python ms",
                "zarr/ts",
                "ts MiB/s",
                "zarr MiB/s",
                "compression",
            ],
            rows,
        )
    )
    say()
    faster = sum(1 for x in decisions if x > 1)
    say(
        f"tensorstore is faster in {faster} of {len(decisions)} cases; zarr/ts ratio median "
        f"{median(decisions):.2f} (min {min(decisions):.2f}, max {max(decisions):.2f})."
    )
    say(
        "'+open' opens the array for each volume, as the engine's worker does once per task; "
        "MiB/s counts uncompressed bytes; compression = raw / stored bytes."
    )
    if codec_rows:
        say()
        say(
            "compressor settings (v0.5 sharded layout, tensorstore, handle reused, medians per "
            "volume): what the write floor depends on"
        )
        say()
        say(
            format_table(["dtype", "blosc codec", "write ms", "read ms", "compression"], codec_rows)
        )
    say(f"# command: python benchmarks/bench_io.py {' '.join(sys.argv[1:])}".rstrip())
    say.save(args.results)
    args.results.with_suffix(".json").write_text(
        json.dumps({" ".join(map(str, k)): v for k, v in times.items()}, indent=0)
    )


if __name__ == "__main__":
    main()
