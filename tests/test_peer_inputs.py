"""Stores users bring, written by the peers themselves: an ngio (Fractal) plate, ome-zarr-py CZYX.

Each is run through the command line; the data, the axes and the geometry of
the output are checked, and the peer that wrote the input reads the output.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from napari_process_position import read_position
from napari_process_position.cli import main
from napari_process_position.widget.reader import layer_data


def _ngio():
    """ngio, imported only by the tests that use it: once imported, ome-zarr-models rejects
    valid v0.4 metadata in the same process (tests/test_pyramid.py would fail after it)."""
    return pytest.importorskip("ngio")


def _cli(*args) -> str:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def _ngio_plate(path: Path, version: str) -> dict[str, np.ndarray]:
    """A Fractal-like plate: CZYX images with a pyramid, a label, a table, a condition table."""
    import pandas as pd
    from ngio.tables import ConditionTable

    plate = _ngio().create_empty_plate(str(path), name="plate", ngff_version=version)
    data = {}
    for i, (row, col) in enumerate([("B", "03"), ("C", "05")]):
        plate.add_image(row=row, column=col, image_path="0")
        czyx = np.random.default_rng(i).integers(1, 4000, size=(2, 3, 32, 32)).astype("uint16")
        image = _ngio().create_ome_zarr_from_array(
            str(path / row / col / "0"),
            czyx,
            pixelsize=0.5,
            z_spacing=2.0,
            axes_names="czyx",
            channels_meta=["DAPI", "GFP"],
            ngff_version=version,
            levels=2,
            translation=[0.0, 0.0, 5.0, 7.0],
            consolidation_mode="dask",
        )
        image.derive_label("nuclei")
        image.add_table("FOV_ROI_table", image.build_image_roi_table())
        data[f"{row}/{col}/0"] = czyx
    conditions = pd.DataFrame({"row": ["B", "C"], "column": [3, 5], "drug": ["a", "b"]})
    plate.add_table("condition_table", ConditionTable(conditions))
    return data


@pytest.mark.filterwarnings("ignore::UserWarning")  # ngio's and zarr's own notices
@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ngio_plate_is_processed_and_ngio_reads_the_output(tmp_path, version):
    data = _ngio_plate(tmp_path / "in.zarr", version)
    # The reader shows both of ngio's levels (multiscale layers), each as ngio reads it.
    container = _ngio().open_ome_zarr_container(str(tmp_path / "in.zarr" / "B/03/0"), mode="r")
    for c, (levels, meta, _) in enumerate(layer_data(tmp_path / "in.zarr", "B/03/0")):
        assert meta["multiscale"] and len(levels) == 2
        for k, level in enumerate(levels):
            theirs = np.asarray(container.get_image(path=str(k)).get_array())
            np.testing.assert_array_equal(np.asarray(level)[0], theirs[c])
    listed = _cli("positions", "--details", tmp_path / "in.zarr")
    assert "labels (not in outputs): nuclei" in listed
    assert "plate tables (not in outputs): condition_table" in listed
    _cli("run", tmp_path / "in.zarr", tmp_path / "out.zarr", "-t", "binning", "--no-progress")
    plate = _ngio().open_ome_zarr_plate(str(tmp_path / "out.zarr"), mode="r")
    assert sorted(plate.images_paths()) == sorted(data)
    for key, czyx in data.items():
        info = read_position(tmp_path / "out.zarr" / key)
        assert info.array_axes == "czyx"
        assert info.scale[2:] == (2.0, 1.0, 1.0)
        assert info.translation[2:] == (0.0, 5.25, 7.25)  # voxel 0's centre, 2x2 larger
        image = _ngio().open_ome_zarr_container(str(tmp_path / "out.zarr" / key), mode="r")
        expected = czyx.reshape(2, 3, 16, 2, 16, 2).mean(axis=(3, 5))
        np.testing.assert_allclose(np.asarray(image.get_image().get_array()), expected, atol=0.5)
        assert image.list_labels() == [] and image.list_tables() == []


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_py_czyx_image_is_processed(tmp_path, version):
    pytest.importorskip("ome_zarr")
    import zarr
    from ome_zarr.format import FormatV04, FormatV05
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader
    from ome_zarr.writer import write_image

    czyx = np.random.default_rng(5).integers(1, 4000, size=(2, 4, 32, 32)).astype("uint16")
    fmt = FormatV04() if version == "0.4" else FormatV05()
    group = zarr.open_group(
        str(tmp_path / "in.zarr"), mode="w", zarr_format=2 if version == "0.4" else 3
    )
    write_image(czyx, group, axes="czyx", fmt=fmt, scale_factors=[2])  # levels s0, s1
    info = read_position(tmp_path / "in.zarr")
    assert (info.array_axes, info.array_name, info.shape) == ("czyx", "s0", (1, 2, 4, 32, 32))
    # The reader shows each channel as (t, z, y, x): a time slider of one step; both of
    # ome-zarr-py's levels (a multiscale layer).
    levels, meta, _ = layer_data(tmp_path / "in.zarr")[1]
    assert meta["multiscale"] and len(levels) == 2
    assert np.asarray(levels[0]).shape == (1, 4, 32, 32)
    _cli(
        "run", tmp_path / "in.zarr", tmp_path / "out.zarr", "-t", "max_projection", "--no-progress"
    )
    node = next(iter(Reader(parse_url(str(tmp_path / "out.zarr")))()))
    assert [a["name"] for a in node.metadata["axes"]] == ["c", "z", "y", "x"]
    np.testing.assert_array_equal(np.asarray(node.data[0]), czyx.max(axis=1, keepdims=True))
