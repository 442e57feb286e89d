"""Messages that name the real cause (issue 24): what a user reads when a run cannot start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np

from conftest import random_tczyx, read_array, write_plate
from napari_process_position.store.create import write_empty_plate
from napari_process_position.store.layout import OutputLayout

SCRIPT = """
from napari_process_position import process_single_position
from napari_process_position.transforms.builtins import max_projection

{call}
"""
CALL = 'process_single_position(max_projection, "in.zarr/A/1/0", "out.zarr/A/1/0", num_workers=2)'


def cli(*args: object, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the command line in a fresh interpreter, as a user's shell does."""
    return subprocess.run(
        [sys.executable, "-m", "napari_process_position.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
    )


def plate(tmp_path, keys=("A/1/0", "B/1/0"), t=2):
    data = {k: random_tczyx((t, 1, 2, 8, 8), "uint16", empty=(), nan=()) for k in keys}
    return write_plate(tmp_path / "in.zarr", data)


def _script_setup(tmp_path):
    data = random_tczyx((2, 1, 2, 8, 8), "uint16", empty=(), nan=())
    write_plate(tmp_path / "in.zarr", {"A/1/0": data})
    layout = OutputLayout((2, 1, 1, 8, 8), "<u2", (1.0,) * 5, ("c0",))
    write_empty_plate(tmp_path / "out.zarr", {"A/1/0": layout})
    return data


def test_a_script_without_a_main_guard_is_told_to_add_one(tmp_path):
    _script_setup(tmp_path)
    script = tmp_path / "unguarded.py"
    script.write_text(SCRIPT.format(call=CALL))
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("napari_process_position.core.errors.WorkerDiedError"), last
    assert str(script) in last and 'if __name__ == "__main__":' in last, last
    assert "memory" not in last, last  # not the out-of-memory diagnosis


def test_the_same_script_with_the_guard_runs(tmp_path):
    data = _script_setup(tmp_path)
    script = tmp_path / "guarded.py"
    guarded = 'if __name__ == "__main__":\n' + textwrap.indent(CALL, "    ")
    script.write_text(SCRIPT.format(call=guarded))
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    np.testing.assert_array_equal(
        read_array(tmp_path / "out.zarr/A/1/0"), data.max(axis=2, keepdims=True)
    )


def test_a_memory_limit_below_a_workers_start_up_is_one_line(tmp_path):
    src = plate(tmp_path)
    out = tmp_path / "out.zarr"
    proc = cli(
        "run",
        src,
        out,
        "-t",
        "max_projection",
        "-w",
        "2",
        "--memory-limit",
        "123456789",
        "--no-progress",
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr[-3000:]
    assert errors[0].startswith("error: A/1/0, B/1/0: the worker processes could not start")
    assert "118 MiB is below what a worker needs to start" in errors[0], errors[0]
    assert "maps" in errors[0] and "at least" in errors[0]


def test_workers_beyond_the_cpus_are_capped_and_the_line_says_so(tmp_path):
    src = plate(tmp_path, keys=("A/1/0",), t=4)
    out = tmp_path / "out.zarr"
    proc = cli(
        "run",
        src,
        out,
        "-t",
        "max_projection",
        "-w",
        "16",
        "--threads",
        "--no-progress",
        SLURM_CPUS_PER_TASK="1",
        COLUMNS="400",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "16 workers asked, 1 used (1 CPUs available)" in proc.stderr, proc.stderr
    assert "on 16 local" not in proc.stderr and "this process (serial)" in proc.stderr


def test_estimate_with_n_workers_sizes_a_job_of_n_cpus(tmp_path):
    proc = cli("estimate", plate(tmp_path, t=4), "-t", "max_projection", "--workers", "8")
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("RESOURCES:"), proc.stdout
    assert json.loads(last.partition(":")[2])["cpus"] == 8, last


def test_a_transform_name_given_to_the_engine_is_refused_at_once_with_the_way_to_it(tmp_path):
    import pytest

    from napari_process_position import stream_position
    from napari_process_position.core.errors import InvalidArgumentError
    from napari_process_position.transforms import get_transform

    path = plate(tmp_path)
    with pytest.raises(InvalidArgumentError, match=r"get_transform\('gaussian_blur'\)\.func"):
        stream_position("gaussian_blur", path / "A/1/0")
    # ...which works, and so does the reference.
    spec = get_transform("gaussian_blur")
    for transform in (spec.func, spec.ref):
        results = list(stream_position(transform, path / "A/1/0", input_time_indices=[0]))
        assert results and all(r.volume is not None for r in results)
