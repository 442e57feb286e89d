"""Interop with ome-zarr-py: it reads what we write (after a real run), we read what it writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import npp_test_transforms as tt
from conftest import random_tczyx, read_array, write_plate
from napari_process_position import RunConfig, open_store, prepare_run, read_position
from napari_process_position.core.records import records_dir

ome_zarr = pytest.importorskip("ome_zarr")


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_py_reads_our_run_output(tmp_path, version):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    data = random_tczyx((2, 2, 3, 8, 8), "uint16", seed=2, empty=())
    write_plate(tmp_path / "in.zarr", {"A/1/0": data, "A/2/0": data + 1})
    config = RunConfig(
        input=str(tmp_path / "in.zarr"),
        output=str(tmp_path / "out.zarr"),
        transform="soft_magnitude",
        ome_version=version,
    )
    for _ in prepare_run(config):
        pass
    # The progress records of the run sit beside the store, not inside it.
    assert Path(records_dir(tmp_path / "out.zarr/A/1/0")).is_dir()
    assert not [p for p in (tmp_path / "out.zarr").rglob("*") if "process-position" in p.name]
    location = parse_url(str(tmp_path / "out.zarr/A/1/0"))
    nodes = list(Reader(location)())
    image = nodes[0]
    array = np.asarray(image.data[0])
    expected = tt.soft_magnitude(data)
    np.testing.assert_array_equal(array, expected)
    axes = [a["name"].lower() for a in image.metadata["axes"]]
    assert axes == ["t", "c", "z", "y", "x"]
    assert image.metadata["channel_names"] == ["ch0", "ch1"]
    # And the plate is a plate to it.
    plate_nodes = list(Reader(parse_url(str(tmp_path / "out.zarr")))())
    assert plate_nodes and "plate" in plate_nodes[0].zarr.root_attrs.get(
        "ome", plate_nodes[0].zarr.root_attrs
    )


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_we_read_ome_zarr_py_plates(tmp_path, version):
    import zarr
    from ome_zarr.format import FormatV04, FormatV05
    from ome_zarr.writer import write_image, write_plate_metadata, write_well_metadata

    fmt = FormatV04() if version == "0.4" else FormatV05()
    root = zarr.open_group(
        str(tmp_path / "theirs.zarr"), mode="w", zarr_format=2 if version == "0.4" else 3
    )
    write_plate_metadata(root, ["B"], ["3"], ["B/3"], fmt=fmt)
    well = root.require_group("B").require_group("3")
    write_well_metadata(well, [{"path": "0"}], fmt=fmt)
    data = random_tczyx((2, 2, 4, 16, 16), "float32", seed=4, empty=(), nan=())
    image = well.require_group("0")
    write_image(
        data,
        image,
        scale_factors=[],
        axes="tczyx",
        fmt=fmt,
        scale={"t": 1.0, "c": 1.0, "z": 3.0, "y": 0.5, "x": 0.5},
        axes_units={"z": "micrometer", "y": "micrometer", "x": "micrometer"},
    )
    store = open_store(tmp_path / "theirs.zarr")
    assert store.position_keys == ("B/3/0",)
    info = read_position(store.position_path("B/3/0"))
    assert info.shape == data.shape
    assert info.scale[2:] == (3.0, 0.5, 0.5)
    assert info.array_path.endswith("s0")  # ome-zarr-py names its levels s0, s1, ...
    import zarr as zarr_

    np.testing.assert_array_equal(zarr_.open_array(info.array_path, mode="r")[...], data)
    config = RunConfig(
        input=str(tmp_path / "theirs.zarr"),
        output=str(tmp_path / "out.zarr"),
        transform="max_projection",
        num_workers=2,
        use_threads=True,
    )
    for _ in prepare_run(config):
        pass
    np.testing.assert_array_equal(
        read_array(tmp_path / "out.zarr/B/3/0"), data.max(axis=2, keepdims=True)
    )
