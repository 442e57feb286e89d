"""--memory-limit: parsed, checked, and applied to process workers and Dask workers."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import TESTS, random_tczyx, write_plate
from napari_process_position import RunConfig
from napari_process_position.batch.estimate import estimate_run
from napari_process_position.core.errors import ConfigError, TransformError

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "napari_process_position.cli"]
HOLD = f"{TESTS / 'npp_test_transforms.py'}:hold_copies"
ALLOCATE = f"{TESTS / 'npp_test_transforms.py'}:allocate"


@pytest.fixture(scope="module")
def plate(tmp_path_factory):
    path = tmp_path_factory.mktemp("limits") / "in.zarr"
    data = random_tczyx((2, 2, 32, 256, 256), "float32", empty=(), nan=())
    return write_plate(path, {"A/1/0": data})


def test_memory_limit_in_the_config_and_its_errors(tmp_path):
    config = RunConfig(input="in.zarr", transform="x", memory_limit="512MiB")
    assert config.memory_limit_bytes == 512 * 2**20
    assert RunConfig.from_yaml(config.to_yaml()).memory_limit == "512MiB"
    with pytest.raises(ConfigError, match="'8 lots' is not an amount of memory"):
        RunConfig.from_dict({"input": "in.zarr", "transform": "x", "memory_limit": "8 lots"})
    with pytest.raises(ConfigError, match="more than the job's memory"):
        RunConfig.from_dict(
            {
                "input": "in.zarr",
                "transform": "x",
                "memory_limit": "3GB",
                "slurm": {"memory": "4GB", "processes": 2, "cores": 2},
            }
        )


def test_a_run_over_its_memory_limit_is_the_out_of_memory_error(plate, tmp_path):
    """One process worker under --memory-limit 3GB; the transform asks for 4 GiB at once."""
    args = [
        *CLI,
        "run",
        str(plate),
        str(tmp_path / "o.zarr"),
        "-t",
        ALLOCATE,
        "--memory-limit",
        "3GB",
        "--position",
        "A/1/0",
        "--times",
        "0",
        "--no-progress",
    ]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    text = proc.stdout + proc.stderr
    assert "ran out of memory" in text and "memory limit of 2.8 GiB" in text, text
    # without the limit the same run goes through (the 4 GiB are never touched)
    ok = subprocess.run(
        [a for a in args if a not in ("--memory-limit", "3GB")] + ["--overwrite"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_estimate_under_a_memory_limit_reports_the_out_of_memory_error(plate):
    config = RunConfig(input=str(plate), transform=ALLOCATE, memory_limit="3GB")
    with pytest.raises(TransformError, match="ran out of memory"):
        estimate_run(config)


def test_bad_memory_limit_on_the_command_line(plate, tmp_path):
    proc = subprocess.run(
        [*CLI, "run", str(plate), str(tmp_path / "o.zarr"), "-t", HOLD, "--memory-limit", "lots"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "'lots' is not an amount of memory" in proc.stderr
    assert not (tmp_path / "o.zarr").exists()


def test_a_dask_worker_over_its_memory_limit_is_the_dead_worker_error(plate, tmp_path):
    """Dask's nanny ends a worker past its memory_limit; the run names the limit."""
    pytest.importorskip("distributed")
    env = {**os.environ, "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"}
    proc = subprocess.run(
        [
            *CLI,
            "run",
            str(plate),
            str(tmp_path / "o.zarr"),
            "-t",
            HOLD,
            "-p",
            "copies=40",  # 640 MiB, held for 5 s
            "-p",
            "seconds=5",
            "--dask-local",
            "1",
            "--memory-limit",
            "400MB",
            "--times",
            "0",
            "--channels",
            "0",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    text = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode == 1, text
    assert "a worker process died while these tasks were in flight: t=0, c=0" in text
    assert "memory limit of 381 MiB" in text


def test_a_pool_keeps_why_its_workers_could_not_start(tmp_path):
    """A run sharing the pool starts new workers (forgetting the first note): the reason stays.

    The fresh-clone suite once reported one of three positions sharing a pool under a
    100M limit as "a worker process died" instead of "could not start": another
    position's run had replaced the broken executor, and the note with it.
    """
    from concurrent.futures.process import BrokenProcessPool

    from napari_process_position.engine.bootstrap import startup_failure
    from napari_process_position.engine.failures import worker_died_error
    from napari_process_position.engine.pool import ProcessPool

    pool = ProcessPool(1, memory_limit_bytes=50 * 2**20)
    try:
        with pytest.raises(BrokenProcessPool):
            pool.executor.submit(os.getpid).result(timeout=60)
        codes = pool.exit_codes(settle=1.0)
        assert startup_failure() is not None  # the worker's note
        assert pool.startup_failure is None
        pool.executor  # noqa: B018  (another run: a new executor, the note forgotten)
        assert "below what a worker needs to start" in (pool.startup_failure or "")
        error = worker_died_error([], codes, pool.memory_limit_bytes, pool.startup_failure)
        assert "could not start" in str(error)
    finally:
        pool.close()
