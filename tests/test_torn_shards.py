"""Shards torn by a killed job are rewritten, in every layout an output may have.

The outputs here are real OME-Zarr positions whose array is re-created with
other shard layouts (as iohub's ``create_empty_plate`` makes them): one shard
per volume, shards spanning several time points, and a shard grid that
overhangs the array in every dimension.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest

import npp_test_transforms as tt
from conftest import random_tczyx, read_array, write_plate
from napari_process_position import process_single_position, read_position, stream_position
from napari_process_position.store.create import write_empty_plate
from napari_process_position.store.layout import OutputLayout

#: name -> (TCZYX shape, inner chunks, shard shape)
LAYOUTS = {
    "shard-per-volume": ((4, 2, 3, 8, 8), (1, 1, 3, 8, 8), (1, 1, 3, 8, 8)),
    "shards-span-2-times": ((4, 2, 3, 8, 8), (1, 1, 3, 8, 8), (2, 1, 3, 8, 8)),
    "overhanging-grid": ((5, 1, 5, 10, 12), (1, 1, 4, 8, 8), (3, 1, 8, 16, 16)),
}


def reshard(position: Path, chunks, shards) -> None:
    """Re-create a position's array ``0`` with another chunk and shard layout, keeping its data."""
    import zarr

    old = zarr.open_array(position / "0", mode="r")
    data, dtype = old[...], old.dtype
    zarr.create_array(
        store=str(position / "0"),
        shape=data.shape,
        dtype=dtype,
        chunks=chunks,
        shards=shards,
        fill_value=0,
        dimension_names=("T", "C", "Z", "Y", "X"),
        zarr_format=3,
        overwrite=True,
    )[...] = data


def shard_files(position: Path) -> list[Path]:
    return sorted(p for p in (position / "0" / "c").rglob("*") if p.is_file())


def tear(path: Path) -> None:
    """Truncate a file to half its size, as a job killed mid-write leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def calls(log_dir: Path) -> int:
    return len(os.listdir(log_dir)) if log_dir.exists() else 0


@pytest.fixture(params=sorted(LAYOUTS))
def stores(request, tmp_path):
    shape, chunks, shards = LAYOUTS[request.param]
    data = random_tczyx(shape, "float32", seed=11, empty=(), nan=())
    write_plate(tmp_path / "in.zarr", {"A/1/0": data})
    names = tuple(f"c{i}" for i in range(shape[1]))
    write_empty_plate(tmp_path / "out.zarr", {"A/1/0": OutputLayout(shape, "<f4", (1,) * 5, names)})
    dst = tmp_path / "out.zarr/A/1/0"
    reshard(dst, chunks, shards)
    assert read_position(dst).shards == shards
    return tmp_path / "in.zarr/A/1/0", dst, data, shards


@pytest.mark.parametrize("mode", ["serial", "processes"])
def test_rerun_over_a_torn_shard_succeeds(stores, tmp_path, mode):
    src, dst, data, _ = stores
    workers = 2 if mode == "processes" else 1
    log = tmp_path / "calls"
    run = {"log_dir": str(log), "factor": 3.0, "num_workers": workers}
    process_single_position(tt.counting, src, dst, **run)
    for path in shard_files(dst):
        tear(path)
    process_single_position(tt.counting, src, dst, **run)
    np.testing.assert_array_equal(read_array(dst), data * 3)


def test_resume_recomputes_only_the_torn_shard(stores, tmp_path):
    src, dst, data, shards = stores
    log = tmp_path / "calls"
    process_single_position(tt.counting, src, dst, log_dir=str(log), resume=True)
    first = calls(log)
    assert first == data.shape[0] * data.shape[1]
    torn = shard_files(dst)[0]  # the first shard of channel 0, time row 0
    tear(torn)
    results = list(stream_position(tt.counting, src, dst, log_dir=str(log), resume=True))
    rewritten = {(r.output_time_index, r.output_channels) for r in results if r.status == "written"}
    times_in_row = min(shards[0], data.shape[0])
    assert rewritten == {(t, (0,)) for t in range(times_in_row)}
    assert calls(log) == first + times_in_row
    np.testing.assert_array_equal(read_array(dst), data * 2)


@pytest.fixture
def t_sharded(tmp_path):
    """Input and output whose shards hold two time points each (rows t=0,1 and t=2,3)."""
    shape = (4, 1, 3, 8, 8)
    data = random_tczyx(shape, "float32", seed=12, empty=(), nan=())
    write_plate(tmp_path / "in.zarr", {"A/1/0": data})
    write_empty_plate(
        tmp_path / "out.zarr", {"A/1/0": OutputLayout(shape, "<f4", (1,) * 5, ("c",))}
    )
    dst = tmp_path / "out.zarr/A/1/0"
    reshard(dst, (1, 1, 3, 8, 8), (2, 1, 3, 8, 8))
    return tmp_path / "in.zarr/A/1/0", dst, data


def test_a_shard_shared_with_volumes_outside_the_run_keeps_them(t_sharded, tmp_path):
    src, dst, data = t_sharded
    log = tmp_path / "calls"
    process_single_position(tt.counting, src, dst, log_dir=str(log))
    # Only t=0 again, with another factor: t=1 shares its shard and must survive.
    process_single_position(
        tt.counting,
        src,
        dst,
        input_time_indices=[0],
        output_time_indices=[0],
        log_dir=str(log),
        factor=5.0,
    )
    out = read_array(dst)
    np.testing.assert_array_equal(out[0], data[0] * 5)
    np.testing.assert_array_equal(out[1:], data[1:] * 2)
    # t=1's record was carried over the rewrite: a resume of the first settings redoes t=0 only.
    before = calls(log)
    results = list(stream_position(tt.counting, src, dst, log_dir=str(log), resume=True))
    statuses = {r.output_time_index: r.status for r in results}
    # t=0 and t=1 share a shard, so they are one task: both rerun; the other row is resumed.
    assert statuses == {0: "written", 1: "written", 2: "resumed", 3: "resumed"}
    assert calls(log) == before + 2
    np.testing.assert_array_equal(read_array(dst), data * 2)


def test_a_torn_shared_shard_is_rewritten_and_its_other_volumes_recomputed(
    t_sharded, tmp_path, caplog
):
    src, dst, data = t_sharded
    process_single_position(tt.scale_offset, src, dst)
    tear(shard_files(dst)[0])  # row t=0,1
    with caplog.at_level(logging.WARNING):
        process_single_position(
            tt.scale_offset, src, dst, input_time_indices=[0], output_time_indices=[0]
        )
    assert "now hold the fill value: t=1, c=0" in caplog.text
    out = read_array(dst)
    np.testing.assert_array_equal(out[0], data[0] * 2 + 1)
    assert not out[1].any()  # lost with the torn shard, and said so
    results = list(stream_position(tt.scale_offset, src, dst, resume=True))
    assert {r.output_time_index: r.status for r in results}[1] == "written"
    np.testing.assert_array_equal(read_array(dst), data * 2 + 1)


def test_a_skipped_volume_in_a_shard_it_owns_reads_as_fill(t_sharded):
    """A volume whose input became empty leaves no stale output (its shard is rewritten)."""
    import zarr

    src, dst, data = t_sharded
    process_single_position(tt.scale_offset, src, dst)
    zarr.open_array(src / "0", mode="r+")[1] = 0
    process_single_position(tt.scale_offset, src, dst)
    out = read_array(dst)
    assert not out[1].any()
    np.testing.assert_array_equal(out[0], data[0] * 2 + 1)
    np.testing.assert_array_equal(out[2:], data[2:] * 2 + 1)
