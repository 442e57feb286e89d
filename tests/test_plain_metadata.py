"""Positions in the plain, common form are read without the models, to the same values."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import write_plate
from napari_process_position.store import metadata
from napari_process_position.store.plain_image import plain_image

DATA = Path(__file__).parent / "data"


def _positions(tmp_path: Path) -> list[Path]:
    found = [
        DATA / f"{name}/{key}"
        for name in ("iohub_v04_uint16.zarr", "iohub_v05_float32.zarr")
        for key in ("A/1/0", "B/1/0")
    ]
    for version in ("0.4", "0.5"):
        data = {"A/1/0": np.ones((2, 2, 3, 8, 8), "uint16")}
        found.append(write_plate(tmp_path / f"ours{version}.zarr", data, version=version) / "A/1/0")
    return found


def _attrs(position: Path) -> tuple[int, dict]:
    found = metadata.group_attrs(position)
    assert found is not None
    return found[0], {k: v for k, v in found[1].items() if k != "omero"}


def test_plain_positions_read_as_the_models_read_them(tmp_path, monkeypatch):
    positions = _positions(tmp_path)
    for position in positions:
        assert plain_image(*reversed(_attrs(position))) is not None, position
    fast = [metadata.read_position(p) for p in positions]
    monkeypatch.setattr(metadata, "plain_image", lambda attrs, zarr_format: None)
    assert [metadata.read_position(p) for p in positions] == fast


@pytest.mark.parametrize(
    "change",
    [
        lambda ms: ms.update(type="gaussian"),
        lambda ms: ms["axes"][2].update(unit="furlong"),
        lambda ms: ms["axes"][1].update(type="space"),
        lambda ms: ms["datasets"][0]["coordinateTransformations"].insert(
            0, {"type": "translation", "translation": [0, 0, 0, 0, 0]}
        ),
        lambda ms: ms["datasets"][0]["coordinateTransformations"][0].update(scale=[1, 1]),
        lambda ms: ms["datasets"][0]["coordinateTransformations"][0].update(path="s.json"),
        lambda ms: ms["datasets"].append(dict(ms["datasets"][0])),
        lambda ms: ms.update(version="0.4"),
    ],
)
def test_anything_else_goes_to_the_models(tmp_path, change):
    source = DATA / "iohub_v05_float32.zarr"
    shutil.copytree(source, tmp_path / "p.zarr")
    meta = tmp_path / "p.zarr/A/1/0/zarr.json"
    doc = json.loads(meta.read_text())
    change(doc["attributes"]["ome"]["multiscales"][0])
    meta.write_text(json.dumps(doc))
    zarr_format, attrs = _attrs(meta.parent)
    assert plain_image(attrs, zarr_format) is None
