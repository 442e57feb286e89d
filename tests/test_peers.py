"""Other OME-Zarr tools read what a run writes: ome-zarr-py, ngff-zarr, ngio, bioio and others.

Each peer is imported for real (the testing extra installs them); nothing here
imitates a peer's layout by hand. iohub (another interpreter) is in
tests/test_iohub_parity.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import npp_test_transforms as tt
from conftest import random_tczyx, write_plate
from napari_process_position import RunConfig, prepare_run

SCALE = (1.0, 1.0, 2.0, 0.25, 0.25)


def _run(tmp_path: Path, version: str, data: np.ndarray) -> Path:
    write_plate(tmp_path / "in.zarr", {"A/1/0": data}, scale=SCALE)
    out = tmp_path / "out.zarr"
    config = RunConfig(
        input=str(tmp_path / "in.zarr"),
        output=str(out),
        transform="soft_magnitude",
        ome_version=version,
    )
    for _ in prepare_run(config):
        pass
    return out


@pytest.fixture(params=["0.4", "0.5"])
def output(request, tmp_path):
    """A plate written by a real run, in each OME-Zarr version, with what it should hold."""
    data = random_tczyx((2, 2, 3, 8, 10), "uint16", seed=7, empty=())
    out = _run(tmp_path, request.param, data)
    return request.param, out, tt.soft_magnitude(data)


def _image_attrs(position: Path) -> dict:
    v3 = position / "zarr.json"
    if v3.exists():
        return json.loads(v3.read_text())["attributes"]["ome"]
    return json.loads((position / ".zattrs").read_text())


def test_outputs_name_their_axes_in_lower_case(output):
    version, out, _ = output
    attrs = _image_attrs(out / "A/1/0")
    assert [a["name"] for a in attrs["multiscales"][0]["axes"]] == ["t", "c", "z", "y", "x"]
    if version == "0.5":
        array = json.loads((out / "A/1/0/0/zarr.json").read_text())
        assert array["dimension_names"] == ["t", "c", "z", "y", "x"]


def test_ngff_zarr_validates_and_reads_our_output(output):
    ngff_zarr = pytest.importorskip("ngff_zarr")
    _, out, expected = output
    multiscales = ngff_zarr.from_ngff_zarr(str(out / "A/1/0"), validate=True)
    image = multiscales.images[0]
    assert tuple(image.dims) == ("t", "c", "z", "y", "x")
    assert [image.scale[a] for a in "zyx"] == list(SCALE[2:])
    np.testing.assert_array_equal(np.asarray(image.data), expected)


def test_ngio_reads_our_output_and_its_plate(output):
    ngio = pytest.importorskip("ngio")
    _, out, expected = output
    container = ngio.open_ome_zarr_container(str(out / "A/1/0"), mode="r")
    image = container.get_image()
    assert tuple(image.axes) == ("t", "c", "z", "y", "x")
    assert (image.pixel_size.z, image.pixel_size.y, image.pixel_size.x) == SCALE[2:]
    assert container.channel_labels == ["ch0", "ch1"]
    np.testing.assert_array_equal(np.asarray(image.get_array()), expected)
    plate = ngio.open_ome_zarr_plate(str(out), mode="r")
    assert plate.images_paths() == ["A/1/0"]


def test_ome_zarr_py_reads_our_output(output):
    pytest.importorskip("ome_zarr")
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    _, out, expected = output
    node = next(iter(Reader(parse_url(str(out / "A/1/0")))()))
    assert [a["name"] for a in node.metadata["axes"]] == ["t", "c", "z", "y", "x"]
    np.testing.assert_array_equal(np.asarray(node.data[0]), expected)


def test_ome_zarr_models_validates_our_output(output):
    pytest.importorskip("ome_zarr_models")
    _, out, _ = output
    # In a fresh interpreter: after ngio has opened a plate, ome-zarr-models 1.7 no longer
    # recognises pydantic-zarr's ArraySpec in the same process (a clash between the peers).
    script = (
        "import sys, zarr\n"
        "from ome_zarr_models import open_ome_zarr\n"
        "for path in sys.argv[1:]:\n"
        "    print(type(open_ome_zarr(zarr.open_group(path, mode='r'))).__name__)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(out / "A/1/0"), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["Image", "HCS"]


def test_bioio_ome_zarr_reads_our_output(output):
    pytest.importorskip("bioio_ome_zarr")
    import bioio_ome_zarr
    from bioio import BioImage

    _, out, expected = output
    image = BioImage(str(out / "A/1/0"), reader=bioio_ome_zarr.Reader)
    assert image.shape == expected.shape
    assert tuple(image.physical_pixel_sizes) == SCALE[2:]
    assert image.channel_names == ["ch0", "ch1"]
    np.testing.assert_array_equal(np.asarray(image.data), expected)
