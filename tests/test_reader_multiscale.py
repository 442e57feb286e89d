"""Multiscale layers (#17): the reader shows every resolution level a store holds.

Stores with levels written by our own ``run --pyramid-levels``, by ome-zarr-py
and by ngff-zarr open as napari multiscale layers (level 0 first, level 0's
scale), each level lazily equal to what its writer's own reader returns; napari
then draws a small level for a zoomed-out or 3D view.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import random_tczyx, write_plate
from napari_process_position.cli import main
from napari_process_position.core.pyramid import level_shapes
from napari_process_position.store.metadata import read_position
from napari_process_position.widget.contrast import CONTRAST_MIN_PIXELS
from napari_process_position.widget.reader import layer_data

SHAPE = (2, 2, 5, 40, 36)


def _zarr_level(position: Path, name: str) -> np.ndarray:
    """Read one level's array with zarr-python (an independent reader)."""
    import zarr

    return zarr.open_array(os.path.join(position, name), mode="r")[...]


def _pyramid_output(tmp_path: Path, shape=SHAPE, levels: str = "3") -> Path:
    data = random_tczyx(shape, "uint16", seed=2, empty=(), nan=())
    write_plate(tmp_path / "in.zarr", {"A/1/0": data}, channel_names=("GFP", "DAPI"))
    args = ["run", str(tmp_path / "in.zarr"), str(tmp_path / "out.zarr")]
    args += ["-t", "gaussian_blur", "--pyramid-levels", levels, "--no-progress"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return tmp_path / "out.zarr" / "A" / "1" / "0"


def test_reader_layers_of_a_pyramid_output_are_multiscale(tmp_path):
    position = _pyramid_output(tmp_path)
    layers = layer_data(position)
    assert [meta["name"] for _, meta, _ in layers] == ["GFP", "DAPI"]
    shapes = level_shapes(SHAPE[2:], 3)
    for c, (levels, meta, kind) in enumerate(layers):
        assert kind == "image" and meta["multiscale"] is True
        assert meta["scale"] == (1.0, 2.0, 0.5, 0.5)  # level 0's: napari derives the others
        assert len(levels) == 3
        for k, level in enumerate(levels):
            assert tuple(level.shape) == (SHAPE[0], *shapes[k])
            assert not isinstance(level, np.ndarray)  # lazy
            np.testing.assert_array_equal(np.asarray(level), _zarr_level(position, str(k))[:, c])
        lo, hi = meta["contrast_limits"]
        assert lo < hi


def test_contrast_limits_come_from_a_small_level(tmp_path):
    """A large position's contrast is computed from a level of at least 256x256, not level 0."""
    position = _pyramid_output(tmp_path, shape=(1, 1, 3, 600, 600), levels="auto")
    info = read_position(position)
    assert info.levels == 2
    level1 = _zarr_level(position, "1")
    assert level1.shape[3] * level1.shape[4] >= CONTRAST_MIN_PIXELS
    plane1 = level1[0, 0, level1.shape[2] // 2].astype(np.float64)
    plane0 = _zarr_level(position, "0")[0, 0, 1].astype(np.float64)
    expected = tuple(float(v) for v in np.percentile(plane1, (0.5, 99.8)))
    (_, meta, _) = layer_data(position)[0]
    assert meta["contrast_limits"] == pytest.approx(expected)
    assert meta["contrast_limits"] != pytest.approx(np.percentile(plane0, (0.5, 99.8)))


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_py_levels_are_shown(tmp_path, version):
    pytest.importorskip("ome_zarr")
    import zarr
    from ome_zarr.format import FormatV04, FormatV05
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader
    from ome_zarr.writer import write_image

    data = random_tczyx((2, 2, 4, 64, 48), "uint16", seed=4, empty=(), nan=())
    fmt = FormatV04() if version == "0.4" else FormatV05()
    group = zarr.open_group(
        str(tmp_path / "in.zarr"), mode="w", zarr_format=2 if version == "0.4" else 3
    )
    write_image(data, group, axes="tczyx", fmt=fmt, scale_factors=[2, 4])  # s0, s1, s2
    node = next(iter(Reader(parse_url(str(tmp_path / "in.zarr")))()))
    theirs = [np.asarray(level) for level in node.data]
    assert len(theirs) == 3
    layers = layer_data(tmp_path / "in.zarr")
    assert len(layers) == 2
    for c, (levels, meta, _) in enumerate(layers):
        assert meta["multiscale"] is True and len(levels) == 3
        for level, expected in zip(levels, theirs, strict=True):
            np.testing.assert_array_equal(np.asarray(level), expected[:, c])


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ngff_zarr_levels_are_shown(tmp_path, version):
    nz = pytest.importorskip("ngff_zarr")
    data = random_tczyx((2, 2, 8, 64, 64), "uint16", seed=6, empty=(), nan=())
    image = nz.to_ngff_image(data, dims=list("tczyx"), scale={"z": 2.0, "y": 0.5, "x": 0.5})
    factors = [{"z": 2, "y": 2, "x": 2}, {"z": 4, "y": 4, "x": 4}]
    multiscales = nz.to_multiscales(image, scale_factors=factors)
    nz.to_ngff_zarr(str(tmp_path / "in.zarr"), multiscales, version=version)
    theirs = [np.asarray(level.data) for level in multiscales.images]
    assert len(theirs) == 3
    for c, (levels, meta, _) in enumerate(layer_data(tmp_path / "in.zarr")):
        assert meta["multiscale"] is True and len(levels) == 3
        assert meta["scale"] == (1.0, 2.0, 0.5, 0.5)
        for level, expected in zip(levels, theirs, strict=True):
            np.testing.assert_array_equal(np.asarray(level), expected[:, c])


def test_napari_draws_a_small_level_zoomed_out_and_in_3d(make_napari_viewer, qtbot, tmp_path):
    pytest.importorskip("napari")
    position = _pyramid_output(tmp_path, shape=(1, 1, 8, 512, 512))
    viewer = make_napari_viewer(show=True)  # (napari picks the level when the canvas draws)
    viewer.open(str(position), plugin="napari-process-position")
    (layer,) = viewer.layers
    assert layer.multiscale and len(layer.data) == 3
    camera = getattr(viewer, "scene", viewer).camera  # (napari >= 0.9: viewer.scene)
    camera.zoom = camera.zoom / 8  # the whole image in a few screen pixels
    qtbot.waitUntil(lambda: layer.data_level > 0, timeout=10_000)
    viewer.dims.ndisplay = 3
    qtbot.waitUntil(lambda: layer.data_level == 2, timeout=10_000)  # the coarsest level
