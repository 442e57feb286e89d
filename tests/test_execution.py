"""Where a run's tasks run is decided once, as a value (batch.execution.Execution)."""

from __future__ import annotations

import concurrent.futures as cf

import numpy as np
import pytest

from conftest import random_tczyx, write_plate
from napari_process_position import RunConfig
from napari_process_position.batch.execution import requested_mode
from napari_process_position.batch.plan import plan_run
from napari_process_position.batch.prepare import prepare_run
from napari_process_position.batch.workers import decide_execution
from napari_process_position.core.budget import available_cpus

KEYS = ["A/1/0", "B/1/0"]


@pytest.fixture
def plate(tmp_path):
    data = {k: random_tczyx((2, 2, 3, 8, 8), np.uint16, seed=i) for i, k in enumerate(KEYS)}
    return write_plate(tmp_path / "in.zarr", data)


def config(plate, **changes) -> RunConfig:
    return RunConfig(input=str(plate), transform="gaussian_blur", **changes)


@pytest.mark.parametrize(
    ("changes", "mode"),
    [
        ({}, "serial"),
        ({"num_workers": 2, "use_threads": True}, "threads"),
        ({"num_workers": 1, "use_threads": True}, "serial"),
        ({"num_workers": 2}, "processes"),
        # A memory limit cannot apply to this process: one worker is a process then.
        ({"num_workers": 1, "memory_limit": "1GB"}, "processes"),
        ({"dask_local": 2}, "dask"),
    ],
)
def test_requested_mode_is_the_one_rule(plate, changes, mode):
    cfg = config(plate, **changes)
    assert (
        requested_mode(
            num_workers=cfg.num_workers,
            use_threads=cfg.use_threads,
            memory_limit=cfg.memory_limit,
            uses_dask=cfg.uses_dask,
        )
        == mode
    )


def test_decide_execution_records_the_mode_the_workers_and_why(plate):
    cfg = config(plate, num_workers=2, use_threads=True)
    plan = plan_run(cfg)
    resolved, execution = decide_execution(cfg, plan)
    assert execution.mode == ("threads" if available_cpus() > 1 else "serial")
    assert execution.workers == min(2, available_cpus()) == resolved.num_workers
    assert execution.in_this_process and not execution.in_other_processes


def test_more_workers_than_cpus_are_capped_and_the_reason_is_data(plate):
    cpus = available_cpus()
    cfg = config(plate, num_workers=cpus + 3)
    resolved, execution = decide_execution(cfg, plan_run(cfg))
    assert resolved.num_workers == execution.workers == cpus
    assert execution.reason is not None
    assert (execution.reason.kind, execution.reason.workers) == ("capped", cpus)
    assert f"{cpus + 3} workers asked" in execution.reason.text


def test_a_given_executor_decides_and_auto_is_not_measured(plate):
    cfg = config(plate, num_workers="auto")
    with cf.ThreadPoolExecutor(2) as executor:
        resolved, execution = decide_execution(cfg, plan_run(cfg), executor=executor)
    assert execution.mode == "executor" and execution.executor is executor
    assert execution.in_other_processes  # tasks are sent by reference
    assert execution.reason is not None and execution.reason.kind == "executor"
    assert execution.reason.workers is None and not resolved.auto_workers


def test_a_batch_run_reads_what_was_prepared(plate, tmp_path):
    cfg = config(plate, output=str(tmp_path / "out.zarr"), num_workers=available_cpus() + 1)
    batch = prepare_run(cfg)
    try:
        prepared = batch.prepared
        assert batch.keys == prepared.keys == KEYS
        for key in KEYS:
            assert batch.inputs[key] is prepared.input(key)
            assert batch.layouts[key] is prepared.layout(key)
            assert batch.output_paths[key] == prepared.output_path(key) is not None
        assert batch.workers_reason == prepared.execution.reason_text is not None
        assert batch.config.num_workers == prepared.execution.workers
        assert batch.start() == prepared.execution.describe()
    finally:
        batch.close()
    results = []
    with pytest.raises(Exception, match="released its output"):
        results.extend(batch)
    assert not results
