"""What resume trusts: records that match the settings and whose files are unchanged."""

from __future__ import annotations

import os

import numpy as np
import pytest

import npp_test_transforms as tt
from conftest import random_tczyx, read_array, write_plate
from napari_process_position import process_single_position, read_position, stream_position
from napari_process_position.core.records import records_dir
from napari_process_position.store.create import write_empty_plate
from napari_process_position.store.layout import OutputLayout


@pytest.fixture(params=["0.4", "0.5"])
def finished_run(request, tmp_path):
    version = request.param
    data = random_tczyx((3, 2, 4, 16, 16), "float32", seed=9, empty=((1, 0),), nan=())
    write_plate(tmp_path / "in.zarr", {"A/1/0": data}, version=version)
    layout = OutputLayout((3, 2, 4, 16, 16), "<f4", (1,) * 5, ("a", "b"))
    write_empty_plate(tmp_path / "out.zarr", {"A/1/0": layout}, version=version)
    src, dst = tmp_path / "in.zarr/A/1/0", tmp_path / "out.zarr/A/1/0"
    process_single_position(tt.scale_offset, src, dst)
    expected = read_array(dst)
    return src, dst, expected


def _statuses(src, dst):
    return {
        (r.output_time_index, r.output_channels): r.status
        for r in stream_position(tt.scale_offset, src, dst, resume=True)
    }


def _volume_file(dst, t, c):
    grid = read_position(dst).chunk_grid
    files = grid.volume_files(t, [c])
    return [os.path.join(grid.array_path, *f.split("/")) for f in files]


def test_everything_resumed_when_untouched(finished_run):
    src, dst, _expected = finished_run
    assert set(_statuses(src, dst).values()) == {"resumed"}


@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_damaged_volume_is_recomputed(finished_run, damage):
    src, dst, expected = finished_run
    for path in _volume_file(dst, 2, 1):
        if damage == "delete":
            os.remove(path)
        else:
            with open(path, "r+b") as fh:
                fh.truncate(max(1, os.path.getsize(path) // 2))
    statuses = _statuses(src, dst)
    assert statuses[(2, (1,))] == "written"
    assert sum(s == "resumed" for s in statuses.values()) == len(statuses) - 1
    np.testing.assert_array_equal(read_array(dst), expected)


def test_a_skipped_volume_that_gained_data_is_redone(finished_run):
    """A volume recorded as empty (no file) is not trusted once a file appears there."""
    src, dst, expected = finished_run
    import zarr

    zarr.open_array(os.path.join(dst, "0"), mode="r+")[1, 0] = 7.0
    statuses = _statuses(src, dst)
    assert statuses[(1, (0,))] == "skipped"
    np.testing.assert_array_equal(read_array(dst), expected)


def test_record_is_removed_before_a_rewrite(finished_run):
    src, dst, _ = finished_run
    progress = records_dir(dst)
    names = sorted(os.listdir(progress))
    assert len(names) == 6 and all(n.endswith(".done") for n in names)
    run = stream_position(tt.fail_on_time, src, dst, bad_time=2)
    with pytest.raises(Exception, match="deliberate"):
        list(run)
    # t=0 and t=1 were redone with new settings; t=2 failed: its old record is gone.
    assert not any(n.startswith("t2_c0") for n in os.listdir(progress))


@pytest.mark.parametrize("mode", ["serial", "processes"])
def test_write_failure_is_reported_as_such(finished_run, mode):
    """An output that cannot be written (a folder where a shard file goes) names the block."""
    import shutil

    from napari_process_position import OutputWriteError

    src, dst, expected = finished_run
    for path in _volume_file(dst, 2, 0):
        if os.path.exists(path):
            os.remove(path)
        os.makedirs(os.path.join(path, "blocker"))
    with pytest.raises(OutputWriteError, match=r"writing t=2, c=0 to .* failed"):
        list(
            stream_position(tt.scale_offset, src, dst, num_workers=2 if mode == "processes" else 1)
        )
    for path in _volume_file(dst, 2, 0):
        shutil.rmtree(path)
    list(stream_position(tt.scale_offset, src, dst, resume=True))
    np.testing.assert_array_equal(read_array(dst), expected)
