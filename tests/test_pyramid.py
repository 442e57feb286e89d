"""Pyramid levels written in the same run (#17): values, metadata, records, resume, torn shards.

Equality with iohub 0.3.11's ``compute_pyramid``, run by iohub itself, is in
tests/test_iohub_parity.py.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import random_tczyx, read_array, write_plate
from napari_process_position import RunConfig, read_position, stream_position
from napari_process_position.cli import main
from napari_process_position.core.errors import InvalidArgumentError
from napari_process_position.core.pyramid import auto_levels, downsample_mean, level_shapes
from napari_process_position.core.records import records_dir
from napari_process_position.store.create import write_empty_plate
from napari_process_position.store.layout import OutputLayout

SHAPE = (3, 2, 5, 21, 24)  # odd Z and Y: edge padding


def reference_mean(volume: np.ndarray) -> np.ndarray:
    """2x2x2 mean of a ZYX volume, written out voxel by voxel (iohub's rule, independently)."""
    z, y, x = volume.shape
    padded = volume[
        np.minimum(np.arange(z + z % 2), z - 1)[:, None, None],
        np.minimum(np.arange(y + y % 2), y - 1)[None, :, None],
        np.minimum(np.arange(x + x % 2), x - 1)[None, None, :],
    ]
    out = np.empty(tuple(n // 2 for n in padded.shape), dtype=volume.dtype)
    for k in range(out.shape[0]):
        for j in range(out.shape[1]):
            for i in range(out.shape[2]):
                block = padded[2 * k : 2 * k + 2, 2 * j : 2 * j + 2, 2 * i : 2 * i + 2]
                out[k, j, i] = block.astype(np.float64).sum() / 8
    return out


@pytest.mark.parametrize("dtype", ["uint16", "int16", "uint8"])
def test_downsample_is_the_truncated_mean_of_edge_padded_blocks(dtype):
    rng = np.random.default_rng(1)
    info = np.iinfo(dtype)
    volume = rng.integers(info.min, info.max, size=(5, 7, 6), dtype=dtype, endpoint=True)
    ours = downsample_mean(volume)
    assert ours.dtype == volume.dtype and ours.shape == (3, 4, 3)
    assert np.array_equal(ours, reference_mean(volume))
    both = downsample_mean(np.stack([volume, volume[::-1]]))  # CZYX: channels kept
    assert np.array_equal(both[0], ours) and np.array_equal(both[1], downsample_mean(volume[::-1]))


def test_level_shapes_and_auto_levels():
    assert level_shapes((5, 21, 24), 3) == [(5, 21, 24), (3, 11, 12), (2, 6, 6)]
    assert auto_levels((48, 1024, 1024)) == 2
    assert auto_levels((1, 512, 512)) == 1
    assert auto_levels((1, 100, 2049)) == 4


def _output(tmp_path: Path, version: str, dtype: str, levels: int = 3) -> tuple[Path, Path]:
    data = random_tczyx(SHAPE, dtype, seed=7)
    write_plate(tmp_path / "in.zarr", {"A/1/0": data}, version=version)
    layout = OutputLayout(
        SHAPE, np.dtype(dtype).str, (1, 1, 2, 0.5, 0.5), ("a", "b"), levels=levels
    )
    write_empty_plate(tmp_path / "out.zarr", {"A/1/0": layout}, version=version)
    return tmp_path / "in.zarr/A/1/0", tmp_path / "out.zarr/A/1/0"


def _check_levels(position: Path, levels: int) -> None:
    import zarr

    current = read_array(position)
    for k in range(1, levels):
        expected = np.stack(
            [np.stack([downsample_mean(v) for v in volumes]) for volumes in current]
        )
        stored = zarr.open_array(str(position / str(k)), mode="r")[...]
        assert stored.dtype == expected.dtype
        assert stored.tobytes() == expected.tobytes(), f"level {k} differs"
        current = stored


@pytest.mark.parametrize("version,dtype", [("0.5", "float32"), ("0.4", "uint16")])
def test_levels_written_records_list_them_and_resume_skips(tmp_path, version, dtype):
    src, out = _output(tmp_path, version, dtype)
    info = read_position(out)
    assert info.levels == 3
    assert [g.shape for g in info.level_grids] == [(3, 2, 3, 11, 12), (3, 2, 2, 6, 6)]
    # One file per (t, c) volume at every level.
    assert all(g.grid[:2] == (1, 1) and g.grid[2:] == g.shape[2:] for g in info.level_grids)
    run = stream_position("npp_test_transforms:scale_offset", src, out, pyramid_levels=3)
    statuses = [r.status for r in run]
    assert "written" in statuses and "skipped" in statuses  # random_tczyx has empty volumes
    _check_levels(out, 3)
    record = json.loads((Path(records_dir(out)) / "t0_c0.done").read_text())
    assert {k for k in record["files"] if k.startswith("../")} == {
        f"../{k}/{name}"
        for k in (1, 2)
        for name in (["c/0/0/0/0/0", "zarr.json"] if version == "0.5" else ["0/0/0/0/0", ".zarray"])
    }
    again = stream_position(
        "npp_test_transforms:scale_offset", src, out, pyramid_levels=3, resume=True
    )
    assert {r.status for r in again} == {"resumed"}
    # Records of a run without the levels are not trusted by a run writing them.
    fewer = stream_position("npp_test_transforms:scale_offset", src, out, resume=True)
    assert "resumed" not in {r.status for r in fewer}


def test_a_torn_level_shard_is_recomputed_on_resume(tmp_path, caplog):
    src, out = _output(tmp_path, "0.5", "float32")
    list(stream_position("npp_test_transforms:scale_offset", src, out, pyramid_levels=3))
    before = (out / "2/c/2/0/0/0/0").read_bytes()
    shard = out / "1/c/2/0/0/0/0"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])  # a job killed mid-write
    with caplog.at_level(logging.WARNING):
        run = stream_position(
            "npp_test_transforms:scale_offset", src, out, pyramid_levels=3, resume=True
        )
        results = {(r.output_time_index, r.output_channels[0]): r.status for r in run}
    assert results.pop((2, 0)) in ("written", "skipped")
    assert set(results.values()) == {"resumed"}
    _check_levels(out, 3)
    assert (out / "2/c/2/0/0/0/0").read_bytes() == before


def test_more_levels_than_the_output_has_is_refused(tmp_path):
    src, out = _output(tmp_path, "0.5", "uint16", levels=2)
    with pytest.raises(InvalidArgumentError, match="2 resolution level"):
        stream_position("npp_test_transforms:scale_offset", src, out, pyramid_levels=3)


VALIDATE = """
import importlib, json, sys
import zarr
image = importlib.import_module(f"ome_zarr_models.v0{sys.argv[2][-1]}.image").Image
model = image.from_zarr(zarr.open_group(sys.argv[1], mode="r"))
datasets = model.ome_attributes.multiscales[0].datasets
print(json.dumps([[d.path, list(d.coordinateTransformations[0].scale)] for d in datasets]))
"""


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_multiscale_metadata_validates_with_ome_zarr_models(tmp_path, version):
    import json
    import subprocess
    import sys

    _src, out = _output(tmp_path, version, "uint16")
    # In a fresh interpreter: once ngio is imported (the peer tests), ome-zarr-models rejects
    # valid v0.4 metadata in the same process.
    proc = subprocess.run(
        [sys.executable, "-c", VALIDATE, str(out), version],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    datasets = json.loads(proc.stdout)
    assert [path for path, _ in datasets] == ["0", "1", "2"]
    scales = [scale for _, scale in datasets]
    assert scales == [[1, 1, 2, 0.5, 0.5], [1, 1, 4, 1, 1], [1, 1, 8, 2, 2]]


def test_config_and_command_line(tmp_path):
    assert RunConfig(input="a", transform="t", pyramid_levels="AUTO").pyramid_levels == "auto"
    cfg = RunConfig(input="a", transform="t", pyramid_levels="4")
    assert RunConfig.from_yaml(cfg.to_yaml()).pyramid_levels == 4
    for bad in (0, 33, "x", True, 1.5):
        with pytest.raises(ValueError, match="from 1 to 32"):
            RunConfig(input="a", transform="t", pyramid_levels=bad)
    data = random_tczyx((2, 1, 4, 40, 36), "uint16", seed=2)
    plate = write_plate(tmp_path / "in.zarr", {"A/1/0": data})
    result = CliRunner().invoke(
        main,
        [
            "run",
            str(plate),
            str(tmp_path / "out.zarr"),
            "-t",
            "gaussian_blur",
            "--pyramid-levels",
            "3",
            "--yes",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    out = tmp_path / "out.zarr/A/1/0"
    assert read_position(out).levels == 3
    _check_levels(out, 3)
