"""Images without a time or channel axis, as ngio (Fractal) and ngff-zarr write them.

ngio writes ``c, z, y, x`` images (Fractal's usual layout); ngff-zarr writes
``z, y, x`` and ``t, z, y, x``. Each is processed as TCZYX with the missing
axes of length 1, and the output keeps the input's axes; the peers read it back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_process_position import RunConfig, prepare_run, read_position


def _ngio():
    """ngio, imported only by the tests that use it: once imported, ome-zarr-models rejects
    valid v0.4 metadata in the same process (tests/test_pyramid.py would fail after it)."""
    return pytest.importorskip("ngio")


nz = pytest.importorskip("ngff_zarr")


def _run(src: Path, out: Path, version: str, transform: str, **params) -> Path:
    config = RunConfig(
        input=str(src), output=str(out), transform=transform, params=params, ome_version=version
    )
    for _ in prepare_run(config):
        pass
    return out


def _data(shape) -> np.ndarray:
    return np.random.default_rng(11).integers(1, 4000, size=shape).astype("uint16")


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ngio_czyx_image_is_processed_and_stays_czyx(tmp_path, version):
    czyx = _data((2, 4, 32, 32))
    _ngio().create_ome_zarr_from_array(
        str(tmp_path / "in.zarr"),
        czyx,
        pixelsize=0.5,
        z_spacing=2.0,
        axes_names="czyx",
        channels_meta=["DAPI", "GFP"],
        ngff_version=version,
        levels=2,
        consolidation_mode="dask",
    )
    info = read_position(tmp_path / "in.zarr")
    assert info.axes == ("c", "z", "y", "x")
    assert info.shape == (1, 2, 4, 32, 32)
    assert info.channel_names == ("DAPI", "GFP")
    out = _run(tmp_path / "in.zarr", tmp_path / "out.zarr", version, "max_projection")
    assert read_position(out).axes == ("c", "z", "y", "x")
    expected = czyx.max(axis=1, keepdims=True)
    image = _ngio().open_ome_zarr_container(str(out), mode="r").get_image()
    assert tuple(image.axes) == ("c", "z", "y", "x")
    np.testing.assert_array_equal(np.asarray(image.get_array()), expected)
    theirs = nz.from_ngff_zarr(str(out), validate=True).images[0]
    assert tuple(theirs.dims) == ("c", "z", "y", "x")
    np.testing.assert_array_equal(np.asarray(theirs.data), expected)


@pytest.mark.parametrize(("dims", "shape"), [("zyx", (4, 16, 16)), ("tzyx", (3, 4, 16, 16))])
@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ngff_zarr_zyx_and_tzyx_stay_as_they_are(tmp_path, version, dims, shape):
    data = _data(shape)
    image = nz.to_ngff_image(data, dims=list(dims), scale={"z": 2.0, "y": 0.5, "x": 0.5, "t": 1.0})
    nz.to_ngff_zarr(str(tmp_path / "in.zarr"), nz.to_multiscales(image), version=version)
    info = read_position(tmp_path / "in.zarr")
    assert info.array_axes == dims
    out = _run(tmp_path / "in.zarr", tmp_path / "out.zarr", version, "max_projection")
    assert read_position(out).array_axes == dims
    z = dims.index("z")
    theirs = nz.from_ngff_zarr(str(out), validate=True).images[0]
    assert "".join(theirs.dims) == dims
    assert [theirs.scale[a] for a in "zyx"] == [2.0, 0.5, 0.5]
    np.testing.assert_array_equal(np.asarray(theirs.data), data.max(axis=z, keepdims=True))


def test_a_transform_that_makes_channels_adds_a_channel_axis(tmp_path):
    from napari_process_position.store.layout import output_axes

    assert output_axes("zyx", 1, 2) == "czyx"
    assert output_axes("tzyx", 3, 1) == "tzyx"
    assert output_axes("zyx", 1, 1) == "zyx"


def test_positions_details_lists_ngio_levels_labels_and_tables(tmp_path):
    from click.testing import CliRunner

    from napari_process_position.cli import main

    container = _ngio().create_ome_zarr_from_array(
        str(tmp_path / "in.zarr"),
        _data((2, 4, 32, 32)),
        pixelsize=0.5,
        axes_names="czyx",
        channels_meta=["DAPI", "GFP"],
        ngff_version="0.5",
        levels=2,
        consolidation_mode="dask",
    )
    container.derive_label("nuclei")
    container.add_table("FOV_ROI_table", container.build_image_roi_table())
    result = CliRunner().invoke(main, ["positions", "--details", str(tmp_path / "in.zarr")])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split("\t")[1:] == ["CZYX 2x4x32x32", "<u2", "DAPI,GFP"]
    assert lines[1:4] == [
        "  levels: 0 (read), 1",
        "  labels (not in outputs): nuclei",
        "  tables (not in outputs): FOV_ROI_table",
    ]
    out = _run(tmp_path / "in.zarr", tmp_path / "out.zarr", "0.5", "max_projection")
    assert not (out / "labels").exists() and not (out / "tables").exists()
    assert _ngio().open_ome_zarr_container(str(out), mode="r").list_labels() == []
