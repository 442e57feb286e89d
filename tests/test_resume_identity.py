"""Resume never keeps a volume made from other settings, and its records live beside the store.

Each case runs once, changes one thing, resumes, and checks the output against
numpy: a volume is either recomputed or the run is refused; none is kept.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import npp_test_transforms as tt
from conftest import random_tczyx, read_array, tree_digest, write_plate
from napari_process_position import (
    OutputExistsError,
    RunConfig,
    prepare_run,
    process_single_position,
    stream_position,
)
from napari_process_position.core.errors import ConfigError
from napari_process_position.core.records import records_dir
from napari_process_position.store.create import write_empty_plate
from napari_process_position.store.layout import OutputLayout

CLI = [sys.executable, "-m", "napari_process_position.cli"]
SHAPE = (4, 3, 3, 10, 12)


@pytest.fixture
def plate(tmp_path) -> Path:
    data = random_tczyx(SHAPE, "uint16", seed=3, empty=(), nan=())
    return write_plate(tmp_path / "in.zarr", {"A/1/0": data, "B/1/0": data[::-1].copy()})


def _calls(log_dir: Path) -> int:
    return len(os.listdir(log_dir)) if log_dir.exists() else 0


def _run(config: RunConfig) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _key, result in prepare_run(config):
        counts[result.status] = counts.get(result.status, 0) + 1
    return counts


def _blur_config(plate: Path, out: Path, **changes) -> RunConfig:
    return RunConfig(input=str(plate), output=str(out), transform="gaussian_blur", **changes)


def _expected(plate: Path, key: str, times: list[int], channels: list[int], **params) -> np.ndarray:
    from napari_process_position.transforms import get_transform

    func = get_transform("gaussian_blur").func
    src = read_array(plate / key)
    return np.stack(
        [np.concatenate([func(src[t][[c]], **params) for c in channels]) for t in times]
    )


def test_resume_with_other_times_recomputes(plate, tmp_path):
    """--times 0-1, then --times 2-3 --resume: the output holds the blur of t=2,3."""
    out = tmp_path / "out.zarr"
    assert _run(_blur_config(plate, out, times=[0, 1])) == {"written": 12}
    counts = _run(_blur_config(plate, out, times=[2, 3], resume=True))
    assert counts == {"written": 12}
    for key in ("A/1/0", "B/1/0"):
        np.testing.assert_array_equal(
            read_array(out / key), _expected(plate, key, [2, 3], [0, 1, 2])
        )
    # The same settings again: now everything is resumed.
    assert _run(_blur_config(plate, out, times=[2, 3], resume=True)) == {"resumed": 12}


def test_resume_with_other_channels_is_refused_with_one_line(plate, tmp_path):
    """--channels 0, then --channels 2 --resume: the output's channel is another one."""
    out = tmp_path / "out.zarr"
    _run(_blur_config(plate, out, channels=[0]))
    before = tree_digest(out)
    proc = subprocess.run(
        [*CLI, "run", plate, out, "-t", "gaussian_blur", "--channels", "2", "--resume"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert "its channels are ch0, this run writes ch2" in lines[0] and "--overwrite" in lines[0]
    assert tree_digest(out) == before
    with pytest.raises(OutputExistsError, match="its channels are ch0"):
        prepare_run(_blur_config(plate, out, channels=[2], resume=True))


def test_resume_with_other_channel_count_or_dtype_is_refused(plate, tmp_path):
    out = tmp_path / "out.zarr"
    _run(_blur_config(plate, out, channels=[0, 1]))
    before = tree_digest(out)
    with pytest.raises(OutputExistsError, match="it has 2 channels, this run writes 3"):
        prepare_run(_blur_config(plate, out, resume=True))
    with pytest.raises(OutputExistsError, match="it stores uint16, this run writes float32"):
        prepare_run(
            RunConfig(
                input=str(plate),
                output=str(out),
                transform="convert_dtype",
                params={"dtype_out": "float32"},
                channels=[0, 1],
                resume=True,
            )
        )
    assert tree_digest(out) == before


@pytest.fixture
def position_pair(tmp_path):
    """An input position and an empty float32 output position of the same shape."""
    data = random_tczyx(SHAPE, "uint16", seed=5, empty=(), nan=())
    write_plate(tmp_path / "in.zarr", {"A/1/0": data})
    layout = OutputLayout(SHAPE, "<f4", (1,) * 5, ("a", "b", "c"))
    write_empty_plate(tmp_path / "out.zarr", {"A/1/0": layout})
    return tmp_path / "in.zarr/A/1/0", tmp_path / "out.zarr/A/1/0", data.astype(np.float32)


def test_scalar_parameter_change_recomputes(position_pair, tmp_path):
    src, dst, data = position_pair
    log = tmp_path / "calls"
    process_single_position(tt.counting, src, dst, log_dir=str(log), factor=2.0)
    process_single_position(tt.counting, src, dst, log_dir=str(log), factor=3.0, resume=True)
    assert _calls(log) == 2 * SHAPE[0] * SHAPE[1]
    np.testing.assert_array_equal(read_array(dst), data * 3)
    process_single_position(tt.counting, src, dst, log_dir=str(log), factor=3.0, resume=True)
    assert _calls(log) == 2 * SHAPE[0] * SHAPE[1]  # nothing more: all resumed


def test_one_element_of_an_array_parameter_recomputes(position_pair):
    """Two flat fields that differ inside print the same (numpy elides the middle)."""
    src, dst, data = position_pair
    flat = np.full(SHAPE[2:], 2.0, dtype=np.float32)
    other = flat.copy()
    other[1, 5, 6] = 4.0
    np.set_printoptions(threshold=100)
    try:
        assert repr(flat) == repr(other)
    finally:
        np.set_printoptions(threshold=1000)
    process_single_position(tt.apply_flat, src, dst, flat=flat)
    statuses = {r.status for r in stream_position(tt.apply_flat, src, dst, resume=True, flat=other)}
    assert statuses == {"written"}
    np.testing.assert_array_equal(read_array(dst), data / other)


def test_other_time_or_channel_mapping_recomputes(position_pair):
    src, dst, data = position_pair
    process_single_position(
        tt.scale_offset, src, dst, input_time_indices=[0, 1], output_time_indices=[0, 1]
    )
    process_single_position(
        tt.scale_offset,
        src,
        dst,
        input_time_indices=[2, 3],
        output_time_indices=[0, 1],
        resume=True,
    )
    np.testing.assert_array_equal(read_array(dst)[:2], data[2:4] * 2 + 1)
    # Channels swapped into the same output channels.
    process_single_position(
        tt.scale_offset,
        src,
        dst,
        input_channel_indices=[[2], [1], [0]],
        output_channel_indices=[[0], [1], [2]],
        resume=True,
    )
    np.testing.assert_array_equal(read_array(dst), data[:, ::-1] * 2 + 1)


def test_resume_token_is_part_of_the_identity(position_pair):
    src, dst, _ = position_pair
    process_single_position(tt.scale_offset, src, dst, resume_token="settings-v1")

    def statuses(token):
        run = stream_position(tt.scale_offset, src, dst, resume=True, resume_token=token)
        return {r.status for r in run}

    assert statuses("settings-v1") == {"resumed"}
    assert statuses("settings-v2") == {"written"}


def test_edited_transform_file_recomputes(position_pair, tmp_path):
    src, dst, data = position_pair
    path = tmp_path / "my_transform.py"
    path.write_text("def f(x):\n    return x * 2.0\n")
    process_single_position(f"{path}:f", src, dst)
    assert {r.status for r in stream_position(f"{path}:f", src, dst, resume=True)} == {"resumed"}
    path.write_text("def f(x):\n    return x * 5.0\n")
    os.utime(path, ns=(1, 1))  # a new mtime, whatever the clock's resolution
    assert {r.status for r in stream_position(f"{path}:f", src, dst, resume=True)} == {"written"}
    np.testing.assert_array_equal(read_array(dst), data * 5)


def test_resume_in_another_mode_trusts_the_same_transform(plate, tmp_path):
    """Processes send the transform by reference, threads call it: one identity."""
    out = tmp_path / "out.zarr"
    _run(_blur_config(plate, out, num_workers=2))
    assert _run(_blur_config(plate, out, num_workers=2, use_threads=True, resume=True)) == {
        "resumed": 24
    }


def test_records_live_beside_the_store_and_do_not_travel_with_a_copy(plate, tmp_path):
    out = tmp_path / "out.zarr"
    _run(_blur_config(plate, out))
    inside = [p for p in out.rglob("*") if p.name.startswith(".") or "progress" in p.name]
    assert inside == []
    assert (
        Path(records_dir(out / "A/1/0")) == tmp_path / ".process-position-progress/out.zarr/A/1/0"
    )
    assert len(list(Path(records_dir(out / "A/1/0")).glob("*.done"))) == SHAPE[0] * SHAPE[1]
    copy = tmp_path / "copy.zarr"
    shutil.copytree(out, copy)
    config = _blur_config(plate, copy, resume=True)
    assert _run(config) == {"written": 24}  # a copy carries no records


def test_overwrite_forgets_the_old_records(plate, tmp_path):
    out = tmp_path / "out.zarr"
    _run(_blur_config(plate, out))
    _run(_blur_config(plate, out, times=[0, 1], overwrite=True))
    names = {p.name for p in Path(records_dir(out / "A/1/0")).glob("*.done")}
    assert names == {f"t{t}_c{c}.done" for t in (0, 1) for c in range(3)}


def test_config_with_resume_and_overwrite_is_refused(plate, tmp_path):
    with pytest.raises(ValueError, match=r"resume .* and overwrite .* contradict"):
        _blur_config(plate, tmp_path / "o.zarr", resume=True, overwrite=True)
    data = {"input": str(plate), "transform": "gaussian_blur", "resume": True, "overwrite": True}
    with pytest.raises(ConfigError, match="contradict"):
        RunConfig.from_dict(data)
    path = tmp_path / "run.yaml"
    path.write_text(f"input: {plate}\ntransform: gaussian_blur\nresume: true\noverwrite: true\n")
    with pytest.raises(ConfigError, match="contradict"):
        RunConfig.load(path)
    proc = subprocess.run(
        [*CLI, "run", "--config", path, "--no-progress"], capture_output=True, text=True
    )
    assert proc.returncode == 1 and "contradict" in proc.stderr and "Traceback" not in proc.stderr
