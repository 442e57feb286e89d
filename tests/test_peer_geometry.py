"""Geometry kept: a store ngff-zarr writes with a translation gives outputs that overlay it.

ngff-zarr writes the input (its nested ``scale0/image`` paths, a pyramid, a
translation on every level); a run keeps level 0's scale and translation, moves
the origin as ngff-zarr's own pyramid does when voxels grow (binning), and
ngff-zarr reads the output back with the geometry.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_process_position import RunConfig, prepare_run, read_position
from napari_process_position.store.layout import moved_origin
from napari_process_position.widget.reader import layer_data

nz = pytest.importorskip("ngff_zarr")

SCALE = {"t": 1.0, "c": 1.0, "z": 2.0, "y": 0.5, "x": 0.5}
TRANSLATION = {"t": 0.0, "c": 0.0, "z": 3.0, "y": 10.0, "x": 20.0}


def _ngff_zarr_store(path: Path, version: str) -> tuple[np.ndarray, object]:
    rng = np.random.default_rng(3)
    data = rng.integers(1, 4000, size=(2, 2, 4, 16, 16)).astype("uint16")
    image = nz.to_ngff_image(
        data,
        dims=list("tczyx"),
        scale=SCALE,
        translation=TRANSLATION,
        axes_units=dict.fromkeys("zyx", "micrometer"),
    )
    multiscales = nz.to_multiscales(image, scale_factors=[{"z": 1, "y": 2, "x": 2}])
    nz.to_ngff_zarr(str(path), multiscales, version=version)
    return data, multiscales


def _run(src: Path, out: Path, version: str, transform: str, **params) -> Path:
    config = RunConfig(
        input=str(src), output=str(out), transform=transform, params=params, ome_version=version
    )
    for _ in prepare_run(config):
        pass
    return out


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_we_read_ngff_zarr_translation_at_level_0(tmp_path, version):
    data, _ = _ngff_zarr_store(tmp_path / "in.zarr", version)
    info = read_position(tmp_path / "in.zarr")
    assert info.array_name == "scale0/image"  # level 0 of ngff-zarr's nested paths
    assert info.shape == data.shape
    assert info.scale == tuple(SCALE[a] for a in "tczyx")
    assert info.translation == tuple(TRANSLATION[a] for a in "tczyx")
    # The reader places the layers where the data is.
    layers = layer_data(tmp_path / "in.zarr")
    assert layers[0][1]["translate"] == (0.0, 3.0, 10.0, 20.0)
    assert layers[0][1]["scale"] == (1.0, 2.0, 0.5, 0.5)


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_translation_is_kept_and_ngff_zarr_reads_it_back(tmp_path, version):
    data, _ = _ngff_zarr_store(tmp_path / "in.zarr", version)
    out = _run(tmp_path / "in.zarr", tmp_path / "out.zarr", version, "gaussian_blur")
    info = read_position(out)
    assert info.translation == tuple(TRANSLATION[a] for a in "tczyx")
    theirs = nz.from_ngff_zarr(str(out), validate=True).images[0]
    assert theirs.translation == {a: TRANSLATION[a] for a in "tczyx"}
    assert theirs.scale == SCALE
    assert np.asarray(theirs.data).shape == data.shape
    assert layer_data(out)[0][1]["translate"] == (0.0, 3.0, 10.0, 20.0)


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_binning_moves_the_origin_as_ngff_zarr_pyramids_do(tmp_path, version):
    data, multiscales = _ngff_zarr_store(tmp_path / "in.zarr", version)
    out = _run(tmp_path / "in.zarr", tmp_path / "out.zarr", version, "binning", bin_y=2, bin_x=2)
    info = read_position(out)
    level1 = multiscales.images[1]  # ngff-zarr's own 2x2 level: where its voxels sit
    assert info.scale == tuple(level1.scale[a] for a in "tczyx")
    assert info.translation == tuple(level1.translation[a] for a in "tczyx")
    assert info.shape == (2, 2, 4, 8, 8)
    expected = data.reshape(2, 2, 4, 8, 2, 8, 2).mean(axis=(4, 6))
    np.testing.assert_allclose(
        np.asarray(nz.from_ngff_zarr(str(out), validate=True).images[0].data), expected, atol=0.5
    )


def test_moved_origin_keeps_axes_whose_voxels_keep_their_size():
    assert moved_origin((5.0, 0.0, 3.0, 10.0, 20.0), (1, 1, 2, 0.5, 0.5), (1, 1, 8, 0.5, 1.5)) == (
        5.0,
        0.0,
        6.0,
        10.0,
        20.5,
    )


def test_the_multiscales_own_transformations_are_carried(tmp_path):
    """No peer here writes them, so they are added to ngff-zarr's metadata by hand."""
    import json

    _ngff_zarr_store(tmp_path / "in.zarr", "0.4")
    attrs_path = tmp_path / "in.zarr/.zattrs"
    attrs = json.loads(attrs_path.read_text())
    attrs["multiscales"][0]["coordinateTransformations"] = [
        {"type": "scale", "scale": [1.0, 1.0, 1.0, 2.0, 2.0]},
        {"type": "translation", "translation": [0.0, 0.0, 0.0, 100.0, 0.0]},
    ]
    attrs_path.write_text(json.dumps(attrs))
    (tmp_path / "in.zarr/.zmetadata").unlink()  # ngff-zarr's consolidated copy, now stale
    out = _run(tmp_path / "in.zarr", tmp_path / "out.zarr", "0.5", "gaussian_blur")
    info = read_position(out)
    assert info.shared_transforms == (
        ("scale", (1.0, 1.0, 1.0, 2.0, 2.0)),
        ("translation", (0.0, 0.0, 0.0, 100.0, 0.0)),
    )
    meta = layer_data(out)[0][1]
    assert meta["scale"] == (1.0, 2.0, 1.0, 1.0)
    assert meta["translate"] == (0.0, 3.0, 120.0, 40.0)
    # (ngff-zarr 0.50 cannot read them back: its validator fails with AttributeError on the
    # multiscale's own transformations, whoever wrote them.)
