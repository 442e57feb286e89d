"""Picking some positions of a plate: ``--sample N --seed S`` and the widget's quick picks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import random_tczyx, read_array, write_plate
from napari_process_position.batch.config import RunConfig
from napari_process_position.batch.sampling import (
    in_column,
    in_row,
    one_field_per_well,
    sample_positions,
)
from napari_process_position.cli import main
from napari_process_position.core.errors import InvalidArgumentError
from napari_process_position.store.metadata import open_store
from napari_process_position.store.provenance import read_provenance

COPY = ("-t", "convert_dtype", "-p", "dtype_out=uint16")
KEYS = [f"{r}/{c}/{f}" for r in "ABC" for c in "123" for f in "01"]  # 9 wells x 2 fields


def test_a_sample_is_the_same_for_the_same_seed_and_keeps_the_store_order() -> None:
    first = sample_positions(KEYS, 5, seed=11)
    assert first == sample_positions(KEYS, 5, seed=11)
    assert len(first) == 5 and len(set(first)) == 5
    assert first == [k for k in KEYS if k in first]
    seeds = {tuple(sample_positions(KEYS, 5, seed=s)) for s in range(20)}
    assert len(seeds) > 10  # the seed matters
    assert sample_positions(KEYS, 50, seed=1) == KEYS
    with pytest.raises(InvalidArgumentError, match="at least 1"):
        sample_positions(KEYS, 0, seed=1)


def test_quick_picks() -> None:
    assert one_field_per_well(KEYS) == [k for k in KEYS if k.endswith("/0")]
    assert in_row(KEYS, "B") == [k for k in KEYS if k.startswith("B/")]
    assert in_column(KEYS, "3") == [k for k in KEYS if k.split("/")[1] == "3"]
    with pytest.raises(InvalidArgumentError, match="rows are A, B, C"):
        in_row(KEYS, "H")
    assert one_field_per_well(["0", "1"]) == ["0", "1"]  # not a plate: every key


def test_a_config_with_a_sample_gets_a_seed_that_survives_saving() -> None:
    cfg = RunConfig(input="in.zarr", output="out.zarr", transform="convert_dtype", sample=3)
    assert cfg.seed is not None
    again = RunConfig.from_yaml(cfg.to_yaml())
    assert (again.sample, again.seed) == (3, cfg.seed)


@pytest.fixture(scope="module")
def plate(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sample") / "in.zarr"
    data = {k: random_tczyx((2, 1, 2, 8, 8), "uint16", seed=i) for i, k in enumerate(KEYS)}
    return write_plate(path, data)


def _run(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_run_sample_picks_recorded_keys_and_resume_keeps_them(plate, tmp_path) -> None:
    out = tmp_path / "out.zarr"
    result = _run("run", plate, out, *COPY, "--sample", 4, "--no-progress")
    assert result.exit_code == 0, result.output
    written = list(open_store(out).position_keys)
    assert len(written) == 4
    recorded = read_provenance(out)["config"]
    assert recorded["sample"] == 4
    assert written == sample_positions(KEYS, 4, recorded["seed"])
    assert f"--sample 4 --seed {recorded['seed']}" in result.output
    for key in written:
        got = read_array(out / key)
        np.testing.assert_array_equal(got, read_array(plate / key))
    # The same seed picks the same positions; a resume from the recorded settings too.
    again = tmp_path / "again.zarr"
    seed = recorded["seed"]
    result = _run("run", plate, again, *COPY, "--sample", 4, "--seed", seed, "--no-progress")
    assert result.exit_code == 0, result.output
    assert list(open_store(again).position_keys) == written
    result = _run("run", "--config", out, "--resume", "--no-progress")
    assert result.exit_code == 0, result.output
    assert list(open_store(out).position_keys) == written


def test_sample_draws_from_the_positions_picked(plate, tmp_path) -> None:
    out = tmp_path / "rowb.zarr"
    picks = ("--position", "B/*", "--sample", 2, "--seed", 5)
    result = _run("run", plate, out, *COPY, *picks, "--no-progress")
    assert result.exit_code == 0, result.output
    assert list(open_store(out).position_keys) == sample_positions(in_row(KEYS, "B"), 2, 5)
    bad = _run("run", plate, tmp_path / "x.zarr", *COPY, "--sample", 0)
    assert bad.exit_code != 0 and "--sample" in bad.output


def test_demo_data_wells(tmp_path) -> None:
    result = _run("demo-data", tmp_path / "p.zarr", "--wells", "2x3", "--shape", "1,1,2,16,16")
    assert result.exit_code == 0, result.output
    keys = list(open_store(tmp_path / "p.zarr").position_keys)
    assert keys == ["A/1/0", "A/2/0", "A/3/0", "B/1/0", "B/2/0", "B/3/0"]
    bad = _run("demo-data", tmp_path / "q.zarr", "--wells", "3by3")
    assert bad.exit_code != 0 and "give ROWSxCOLS" in bad.output
    assert not (tmp_path / "q.zarr").exists()
