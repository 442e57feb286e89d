"""Plates and wells in the plain, common form are listed without the models, to the same keys."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from conftest import write_plate
from napari_process_position.core.errors import InvalidStoreError
from napari_process_position.store import metadata
from napari_process_position.store.plain_plate import plain_plate_wells, plain_well_images

DATA = Path(__file__).parent / "data"


def _plates(tmp_path: Path) -> list[Path]:
    found = [DATA / "iohub_v04_uint16.zarr", DATA / "iohub_v05_float32.zarr"]
    for version in ("0.4", "0.5"):
        data = {k: np.ones((1, 1, 2, 4, 4), "uint16") for k in ("A/1/0", "A/1/1", "B/3/0")}
        found.append(write_plate(tmp_path / f"ours{version}.zarr", data, version=version))
    return found


def _slow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metadata, "plain_plate_wells", lambda attrs, zarr_format: None)
    monkeypatch.setattr(metadata, "plain_well_images", lambda attrs, zarr_format: None)


def test_plain_plates_list_the_keys_the_models_list(tmp_path, monkeypatch):
    plates = _plates(tmp_path)
    for plate in plates:
        zarr_format, attrs = metadata.group_attrs(plate)  # type: ignore[misc]
        assert plain_plate_wells(attrs, zarr_format) is not None, plate
        for well in plain_plate_wells(attrs, zarr_format) or []:
            well_format, well_attrs = metadata.group_attrs(plate / well)  # type: ignore[misc]
            assert plain_well_images(well_attrs, well_format) is not None, plate / well
    fast = [metadata.open_store(p) for p in plates]
    _slow(monkeypatch)
    assert [metadata.open_store(p) for p in plates] == fast


def test_listing_a_plain_plate_imports_no_models():
    code = (
        "import sys; from napari_process_position.store.metadata import open_store; "
        f"print(len(open_store({str(DATA / 'iohub_v05_float32.zarr')!r}).position_keys)); "
        "print(sorted(m for m in ('yaozarrs', 'pydantic') if m in sys.modules))"
    )
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    count, imported = out.stdout.split("\n")[:2]
    assert int(count) > 0 and imported == "[]"


def _edit(path: Path, change) -> None:
    meta = path / "zarr.json"
    doc = json.loads(meta.read_text())
    change(doc["attributes"]["ome"])
    meta.write_text(json.dumps(doc))


PLATE_CHANGES = {
    "row name not alphanumeric": lambda o: o["plate"]["rows"][0].update(name="A-"),
    "row index out of range": lambda o: o["plate"]["wells"][0].update(rowIndex=99),
    "index as text": lambda o: o["plate"]["wells"][0].update(columnIndex="0"),
    "index as bool": lambda o: o["plate"]["wells"][0].update(columnIndex=False),
    "duplicate well": lambda o: o["plate"]["wells"].append(dict(o["plate"]["wells"][0])),
    "duplicate column": lambda o: o["plate"]["columns"].append(dict(o["plate"]["columns"][0])),
    "acquisition without id": lambda o: o["plate"]["acquisitions"][0].pop("id"),
    "acquisition with a key of its own": lambda o: o["plate"]["acquisitions"][0].update(x=1),
    "field count 0": lambda o: o["plate"].update(field_count=0),
    "version 0.4 in a v0.5 store": lambda o: o.update(version="0.4"),
    "uri": lambda o: o.update(uri=3),
    "bioformats2raw layout": lambda o: o.update({"bioformats2raw.layout": 2}),
    "no rows": lambda o: o["plate"].update(rows=[]),
}


@pytest.mark.parametrize("change", PLATE_CHANGES.values(), ids=PLATE_CHANGES.keys())
def test_any_other_plate_goes_to_the_models(tmp_path, monkeypatch, change):
    plate = tmp_path / "p.zarr"
    shutil.copytree(DATA / "iohub_v05_float32.zarr", plate)
    _edit(plate, change)
    zarr_format, attrs = metadata.group_attrs(plate)  # type: ignore[misc]
    assert plain_plate_wells(attrs, zarr_format) is None
    _outcomes_agree(plate, monkeypatch)


WELL_CHANGES = {
    "field name outside the specification": lambda o: o["well"]["images"][0].update(path="0_a"),
    "acquisition as text": lambda o: o["well"]["images"][0].update(acquisition="0"),
    "duplicate field": lambda o: o["well"]["images"].append(dict(o["well"]["images"][0])),
    "no images key": lambda o: o["well"].pop("images"),
    "a key of its own": lambda o: o["well"]["images"][0].update(x=1),
}


@pytest.mark.parametrize("change", WELL_CHANGES.values(), ids=WELL_CHANGES.keys())
def test_any_other_well_goes_to_the_models(tmp_path, monkeypatch, change):
    plate = tmp_path / "p.zarr"
    shutil.copytree(DATA / "iohub_v05_float32.zarr", plate)
    _edit(plate / "A/1", change)
    zarr_format, attrs = metadata.group_attrs(plate / "A/1")  # type: ignore[misc]
    assert plain_well_images(attrs, zarr_format) is None
    _outcomes_agree(plate, monkeypatch)


def _outcomes_agree(plate: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """open_store gives the same keys, or the same error, with and without the plain path."""

    def outcome() -> object:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # (the models warn of a field name: both ways)
                return metadata.open_store(plate).position_keys
        except InvalidStoreError as exc:
            return str(exc)

    fast = outcome()
    _slow(monkeypatch)
    assert outcome() == fast
