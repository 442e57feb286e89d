"""The napari reader: a run's output opens as one named, scaled layer per channel."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import random_tczyx, write_plate
from napari_process_position.widget.reader import layer_data, napari_get_reader


@pytest.fixture
def plate(tmp_path):
    data = random_tczyx((2, 2, 3, 8, 8), "uint16", seed=1, empty=())
    write_plate(
        tmp_path / "p.zarr",
        {"A/1/0": data, "B/1/0": data[::-1]},
        channel_names=("GFP", "DAPI"),
        scale=(1.0, 1.0, 2.0, 0.5, 0.5),
    )
    return tmp_path / "p.zarr", data


def test_layer_data_per_channel(plate):
    path, data = plate
    layers = layer_data(path, "B/1/0")
    assert [meta["name"] for _, meta, _ in layers] == ["B/1/0 GFP", "B/1/0 DAPI"]
    for c, (array, meta, kind) in enumerate(layers):
        assert kind == "image"
        assert meta["scale"] == (1.0, 2.0, 0.5, 0.5)
        np.testing.assert_array_equal(np.asarray(array), data[::-1][:, c])
        lo, hi = meta["contrast_limits"]
        assert lo < hi


def test_get_reader_refuses_what_it_cannot_read(plate, tmp_path):
    path, _ = plate
    assert napari_get_reader(str(path)) is not None
    assert napari_get_reader(str(path / "A/1/0")) is not None
    assert napari_get_reader(str(tmp_path)) is None
    assert napari_get_reader(str(tmp_path / "missing.zarr")) is None


def test_napari_opens_a_plate_with_our_reader(make_napari_viewer, plate):
    path, data = plate
    viewer = make_napari_viewer()
    viewer.open(str(path / "A/1/0"), plugin="napari-process-position")
    assert [layer.name for layer in viewer.layers] == ["GFP", "DAPI"]
    np.testing.assert_array_equal(np.asarray(viewer.layers["DAPI"].data), data[:, 1])
    assert tuple(viewer.layers["GFP"].scale) == (1.0, 2.0, 0.5, 0.5)
