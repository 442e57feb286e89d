"""``process_single_position`` behaves as iohub 0.3.11's wherever iohub accepts the call.

In place, the transform's own exception type, FileNotFoundError / ValueError
for a missing position or a time beyond the data, nothing written before the
call is checked, extra_metadata from any mapping, and iohub's handling of
``input_channel_indices=None``. (tests/test_iohub_parity.py compares outputs
with iohub itself.)
"""

from __future__ import annotations

import types
import warnings
from pathlib import Path

import numpy as np
import pytest

import npp_test_transforms as tt
from conftest import random_tczyx, read_array, tree_digest, write_plate
from napari_process_position import (
    OutputExistsError,
    TransformError,
    WorkerDiedError,
    process_single_position,
    stream_position,
)
from napari_process_position.store.create import write_empty_plate
from napari_process_position.store.layout import OutputLayout
from test_torn_shards import reshard

SHAPE = (3, 2, 3, 8, 8)
MODES = {"serial": (1, False), "threads": (2, True), "processes": (2, False)}


@pytest.fixture
def pair(tmp_path):
    data = random_tczyx(SHAPE, "float32", seed=21, empty=(), nan=())
    write_plate(tmp_path / "in.zarr", {"A/1/0": data})
    layout = OutputLayout(SHAPE, "<f4", (1,) * 5, ("a", "b"))
    write_empty_plate(tmp_path / "out.zarr", {"A/1/0": layout})
    return tmp_path / "in.zarr/A/1/0", tmp_path / "out.zarr/A/1/0", data


@pytest.mark.parametrize("layout", ["ours", "t-sharded"])
@pytest.mark.parametrize("mode", ["serial", "processes"])
def test_in_place(tmp_path, mode, layout):
    data = random_tczyx(SHAPE, "float32", seed=22, empty=(), nan=())
    write_plate(tmp_path / "p.zarr", {"A/1/0": data})
    position = tmp_path / "p.zarr/A/1/0"
    if layout == "t-sharded":
        reshard(position, (1, 1, 3, 8, 8), (3, 1, 3, 8, 8))
    workers, threads = MODES[mode]
    process_single_position(
        tt.scale_offset, position, position, num_workers=workers, use_threads=threads
    )
    np.testing.assert_array_equal(read_array(position), data * 2 + 1)


@pytest.mark.parametrize("mode", sorted(MODES))
def test_a_transform_exception_keeps_its_type_with_a_note(pair, mode):
    src, dst, _ = pair
    workers, threads = MODES[mode]
    with pytest.raises(ValueError, match="not what I expected") as info:
        process_single_position(
            tt.raises_value_error, src, dst, num_workers=workers, use_threads=threads
        )
    assert not isinstance(info.value, TransformError)
    notes = " ".join(getattr(info.value, "__notes__", []))
    assert "transform 'raises_value_error'" in notes and "t=" in notes and "c=" in notes
    # Our own API still wraps it, naming the transform and the (t, c).
    with pytest.raises(TransformError, match=r"raises_value_error.* failed on t=\d, c=\d"):
        list(stream_position(tt.raises_value_error, src, dst, num_workers=workers))


def test_results_we_refuse_and_dead_workers_keep_our_errors(pair):
    src, dst, _ = pair
    with pytest.raises(TransformError, match="returned None"):
        process_single_position(tt.returns_none, src, dst)
    with pytest.raises(WorkerDiedError):
        process_single_position(tt.die_on_time, src, dst, num_workers=2)


def test_missing_output_is_file_not_found_and_nothing_is_written(pair, tmp_path):
    src, _, _ = pair
    before = tree_digest(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        process_single_position(
            tt.scale_offset, src, tmp_path / "out.zarr/B/9/0", extra_metadata={"step": 1}
        )
    assert tree_digest(tmp_path) == before


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"input_time_indices": [0, 7]}, ValueError),
        ({"output_time_indices": [0, 1, 9]}, ValueError),
        ({"input_channel_indices": [[5]], "output_channel_indices": [[0]]}, ValueError),
        ({"input_time_indices": [0, 1], "output_time_indices": [0]}, ValueError),
        ({"extra_metadata": {"omero": {}}}, ValueError),
        ({"extra_metadata": ["not", "a", "mapping"]}, TypeError),
    ],
    ids=["time-beyond", "output-time-beyond", "channel-beyond", "unpaired", "reserved", "list"],
)
def test_bad_calls_raise_before_anything_is_written(pair, tmp_path, kwargs, error):
    src, dst, _ = pair
    kwargs = {"extra_metadata": {"my-step": {"v": 1}}, **kwargs}
    before = tree_digest(tmp_path)
    with pytest.raises(error):
        process_single_position(tt.scale_offset, src, dst, **kwargs)
    assert tree_digest(tmp_path) == before


def test_extra_metadata_takes_any_mapping_and_warns_on_overwrite(pair):
    import zarr

    src, dst, data = pair
    process_single_position(
        tt.scale_offset, src, dst, extra_metadata=types.MappingProxyType({"my-step": {"v": 1}})
    )
    assert zarr.open_group(str(dst), mode="r").attrs["my-step"] == {"v": 1}
    with pytest.warns(UserWarning, match="'my-step' already exists on .* and will be overwritten"):
        process_single_position(tt.scale_offset, src, dst, extra_metadata={"my-step": {"v": 2}})
    assert zarr.open_group(str(dst), mode="r").attrs["my-step"] == {"v": 2}
    np.testing.assert_array_equal(read_array(dst), data * 2 + 1)


def test_output_channels_without_input_channels_are_ignored_as_iohub_does(pair):
    src, dst, data = pair
    with pytest.warns(UserWarning, match="output_channel_indices is ignored"):
        process_single_position(tt.scale_offset, src, dst, output_channel_indices=[[1], [0]])
    # Each channel went to its own index, not swapped.
    np.testing.assert_array_equal(read_array(dst), data * 2 + 1)


def test_no_warning_for_an_ordinary_call(pair):
    src, dst, _ = pair
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        process_single_position(tt.scale_offset, src, dst, input_channel_indices=[[0], [1]])


def test_nothing_but_zarr_inside_the_output_after_a_resumable_run(pair):
    src, dst, _ = pair
    process_single_position(tt.scale_offset, src, dst, resume=True)
    store = Path(dst).parents[2]
    names = {p.name for p in store.rglob("*") if p.is_file()}
    assert names - {"zarr.json"} <= {str(i) for i in range(10)}, names


def test_create_output_plate_then_process_single_position(tmp_path):
    """The iohub users' flow: create_empty_plate, then process_single_position per position."""
    from napari_process_position import create_output_plate, open_store, read_position

    data = random_tczyx((2, 2, 3, 8, 12), "uint16", seed=23, empty=(), nan=())
    write_plate(tmp_path / "in.zarr", {"A/1/0": data, "B/2/0": data[::-1].copy()})
    store = create_output_plate(tmp_path / "in.zarr", tmp_path / "out.zarr")
    assert store.position_keys == ("A/1/0", "B/2/0")
    first = read_position(tmp_path / "out.zarr/A/1/0")
    assert (
        first.shape == data.shape
        and first.dtype == "<u2"
        and first.channel_names
        == (
            "ch0",
            "ch1",
        )
    )
    for key in store.position_keys:
        process_single_position(
            tt.keep_dtype_blur, tmp_path / "in.zarr" / key, store.path + "/" + key
        )
    np.testing.assert_array_equal(read_array(tmp_path / "out.zarr/A/1/0"), tt.keep_dtype_blur(data))
    # Sized by a transform that changes the shape, for a selection of the input.
    binned = create_output_plate(
        tmp_path / "in.zarr", tmp_path / "bin.zarr", "binning", channels=[1], times=[0]
    )
    assert read_position(binned.position_path("A/1/0")).shape == (1, 1, 3, 4, 6)
    with pytest.raises(OutputExistsError):
        create_output_plate(tmp_path / "in.zarr", tmp_path / "out.zarr")
    assert open_store(
        create_output_plate(tmp_path / "in.zarr", tmp_path / "out.zarr", exist_ok=True).path
    )


def test_run_config_is_the_deprecated_name_of_prepare_run(pair, tmp_path):
    import napari_process_position as npp

    config = npp.RunConfig(input=str(tmp_path / "in.zarr"), transform="gaussian_blur")
    with pytest.warns(DeprecationWarning, match="prepare_run"):
        batch = npp.run_config(config)
    assert isinstance(batch, npp.BatchRun) and batch.keys == ["A/1/0"]
