"""Completion records that do not vouch for their volume are not trusted (issue #23, item 4).

A record is trusted only when it lists exactly the files of its volume (and the
array's metadata file), each inside the output store, with the recorded size and
modification time. Anything else (empty, foreign, unreadable, a folder) means the
volume is computed again, with one warning line, never a failed task.
"""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest
from click.testing import CliRunner

import npp_test_transforms as tt
from conftest import random_tczyx, read_array, write_plate
from napari_process_position import process_single_position, read_position, stream_position
from napari_process_position.cli import main
from napari_process_position.core.records import records_dir
from napari_process_position.store.create import write_empty_plate
from napari_process_position.store.layout import OutputLayout


@pytest.fixture
def finished(tmp_path):
    """A finished CLI run of one position, with one volume's file deleted afterwards."""
    data = random_tczyx((2, 2, 4, 16, 16), "uint16", seed=3, empty=(), nan=())
    src = write_plate(tmp_path / "in.zarr", {"A/1/0": data})
    out = tmp_path / "out.zarr"
    result = _run(src, out)
    assert result.exit_code == 0, result.output
    expected = read_array(out / "A/1/0")
    return src, out, expected


def _run(src, out, *extra):
    args = ["-v", "run", src, out, "-t", "gaussian_blur", "--no-progress", "-w", "1", *extra]
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _record_path(out, name="t0_c0.done"):
    return os.path.join(records_dir(out / "A/1/0"), name)


def _drop_volume(out, t=0, c=0):
    """Delete the file of volume (t, c): it then reads as the fill value (zeros)."""
    grid = read_position(out / "A/1/0").chunk_grid
    for key in grid.volume_files(t, [c]):
        os.remove(grid.path_of(key))


def _tamper(out, files):
    path = _record_path(out)
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    data["files"] = files(data["files"])
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh)


def _outside(tmp_path, files):
    """The record's shard key replaced by a file outside the store, with that file's stat."""
    stranger = tmp_path / "stranger.bin"
    stranger.write_bytes(b"x" * 100)
    st = os.stat(stranger)
    meta = {k: v for k, v in files.items() if k == "zarr.json"}
    key = os.path.relpath(stranger, tmp_path / "out.zarr/A/1/0/0")
    return {key: [st.st_size, st.st_mtime_ns], **meta}


TAMPERINGS = {
    "empty": lambda tmp_path: lambda files: {},
    "only zarr.json": lambda tmp_path: lambda files: {"zarr.json": files["zarr.json"]},
    "a file outside the store": lambda tmp_path: lambda files: _outside(tmp_path, files),
    "no longer a list": lambda tmp_path: lambda files: dict.fromkeys(files, "big"),
}


@pytest.mark.parametrize("how", list(TAMPERINGS))
def test_tampered_record_is_recomputed_through_the_cli(finished, tmp_path, how, caplog):
    src, out, expected = finished
    _drop_volume(out)
    _tamper(out, TAMPERINGS[how](tmp_path))
    with caplog.at_level(logging.WARNING, logger="napari_process_position"):
        result = _run(src, out, "--resume")
    assert result.exit_code == 0, result.output
    assert "A/1/0 t=0, c=0: written" in result.output
    assert result.output.count(": resumed") == 3
    warnings = [r.getMessage() for r in caplog.records if "cannot be trusted" in r.message]
    assert len(warnings) == 1, warnings
    assert "1 of 4 completion records" in warnings[0]
    np.testing.assert_array_equal(read_array(out / "A/1/0"), expected)


@pytest.mark.parametrize("how", ["a folder", "not JSON"])
def test_unusable_record_is_recomputed_not_a_failed_task(finished, how, caplog):
    src, out, expected = finished
    _drop_volume(out)
    path = _record_path(out)
    os.remove(path)
    if how == "a folder":
        os.makedirs(os.path.join(path, "inside"))
    else:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write("{not json")
    with caplog.at_level(logging.WARNING, logger="napari_process_position"):
        result = _run(src, out, "--resume")
    assert result.exit_code == 0, result.output
    assert "t=0, c=0: written" in result.output
    assert any("cannot be trusted" in r.message for r in caplog.records)
    np.testing.assert_array_equal(read_array(out / "A/1/0"), expected)
    assert os.path.isfile(path)  # the new record replaced the folder


def test_python_api_does_not_trust_an_empty_record(tmp_path):
    """stream_position(resume=True), the engine under the CLI and the widget, agrees."""
    data = random_tczyx((2, 2, 4, 16, 16), "float32", seed=5, empty=(), nan=())
    write_plate(tmp_path / "in.zarr", {"A/1/0": data})
    layout = OutputLayout((2, 2, 4, 16, 16), "<f4", (1,) * 5, ("a", "b"))
    write_empty_plate(tmp_path / "out.zarr", {"A/1/0": layout})
    src, dst = tmp_path / "in.zarr/A/1/0", tmp_path / "out.zarr/A/1/0"
    process_single_position(tt.scale_offset, src, dst)
    expected = read_array(dst)
    _drop_volume(tmp_path / "out.zarr", t=1, c=1)
    path = os.path.join(records_dir(dst), "t1_c1.done")
    with open(path, encoding="utf-8") as fh:
        record = json.load(fh)
    record["files"] = {}
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(record, fh)
    statuses = {
        (r.output_time_index, r.output_channels): r.status
        for r in stream_position(tt.scale_offset, src, dst, resume=True)
    }
    assert statuses[(1, (1,))] == "written"
    assert sum(s == "resumed" for s in statuses.values()) == 3
    np.testing.assert_array_equal(read_array(dst), expected)


def test_a_folder_in_place_of_a_record_does_not_fail_a_rerun(finished):
    """Without resume a volume is rewritten; a folder where its record goes is replaced."""
    src, out, expected = finished
    path = _record_path(out)
    os.remove(path)
    os.makedirs(path)
    result = _run(src, out, "--resume")
    assert result.exit_code == 0, result.output
    assert os.path.isfile(path)
    np.testing.assert_array_equal(read_array(out / "A/1/0"), expected)
