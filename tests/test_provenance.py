"""An output plate says how it was made, and that is enough to run it again."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from conftest import random_tczyx, read_array, write_plate
from napari_process_position import RunConfig, prepare_run
from napari_process_position.core.errors import ConfigError
from napari_process_position.store.provenance import PROVENANCE_KEY, read_provenance

CLI = [sys.executable, "-m", "napari_process_position.cli"]


def cli(*args, check=True, cwd=None) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [*CLI, *map(str, args)], capture_output=True, text=True, timeout=300, cwd=cwd
    )
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_output_records_its_settings_and_reruns_from_them(tmp_path, version):
    data = random_tczyx((2, 2, 3, 12, 12), "uint16", seed=8, empty=(), nan=())
    write_plate(tmp_path / "in.zarr", {"A/1/0": data, "A/2/0": data})
    # Relative paths, from the plate's folder: the record keeps them absolute.
    cli(
        "run", "in.zarr", "out.zarr", "-t", "median_filter", "-p", "size_yx=5", "--times", "1",
        "--ome-version", version, "--no-progress", cwd=tmp_path,
    )  # fmt: skip
    found = read_provenance(tmp_path / "out.zarr")
    assert found is not None and found["version"] and found["written"].startswith("20")
    config = found["config"]
    assert config["transform"] == "median_filter" and config["params"] == {"size_yx": 5}
    assert config["input"] == str(tmp_path / "in.zarr") and config["times"] == [1]
    assert config["resume"] is False and config["overwrite"] is False

    shown = cli("positions", "--details", tmp_path / "out.zarr").stdout
    assert "made by napari-process-position" in shown and "transform: median_filter" in shown
    assert f"run them again: process-position run --config {tmp_path / 'out.zarr'}" in shown

    first = read_array(tmp_path / "out.zarr/A/2/0")
    other = tmp_path / "elsewhere"
    other.mkdir()
    cli("run", "--config", tmp_path / "out.zarr", "--overwrite", "--no-progress", cwd=other)
    np.testing.assert_array_equal(read_array(tmp_path / "out.zarr/A/2/0"), first)
    assert read_provenance(tmp_path / "out.zarr")["config"] == config


def test_the_record_sits_beside_the_ome_metadata(tmp_path):
    import json

    data = random_tczyx((1, 1, 2, 8, 8), "uint16", seed=9, empty=(), nan=())
    write_plate(tmp_path / "in.zarr", {"A/1/0": data})
    config = RunConfig(input=str(tmp_path / "in.zarr"), output=str(tmp_path / "o.zarr"),
                       transform="gaussian_blur")  # fmt: skip
    for _ in prepare_run(config):
        pass
    attrs = json.loads((tmp_path / "o.zarr/zarr.json").read_text())["attributes"]
    assert set(attrs) == {"ome", PROVENANCE_KEY}
    assert "plate" in attrs["ome"]
    # A resume with the same settings leaves the record (and its time) as it was.
    before = (tmp_path / "o.zarr/zarr.json").read_bytes()
    for _ in prepare_run(config.model_copy(update={"resume": True, "num_workers": 2})):
        pass
    assert (tmp_path / "o.zarr/zarr.json").read_bytes() == before


def test_a_store_without_a_record_is_not_a_config(tmp_path):
    data = random_tczyx((1, 1, 2, 8, 8), "uint16", seed=9, empty=(), nan=())
    write_plate(tmp_path / "in.zarr", {"A/1/0": data})
    with pytest.raises(ConfigError, match="records no run settings"):
        RunConfig.load(tmp_path / "in.zarr")
    proc = cli("run", "--config", tmp_path / "in.zarr", check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and "records no run settings" in lines[0]
