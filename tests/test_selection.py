"""The form's selection (the controller's, Qt-free): a store, a position, read once."""

from __future__ import annotations

import pytest

from conftest import random_tczyx, write_plate
from napari_process_position.core.errors import ProcessPositionError
from napari_process_position.store import metadata
from napari_process_position.widget import selection as selection_module
from napari_process_position.widget.selection import Selection


def test_choosing_a_store_and_a_position_reads_each_once(tmp_path, monkeypatch) -> None:
    data = random_tczyx((2, 3, 2, 8, 8), "uint16")
    path = write_plate(tmp_path / "in.zarr", {"A/1/0": data, "B/1/0": data})
    reads = []
    real = metadata.read_position
    monkeypatch.setattr(
        selection_module, "read_position", lambda *a, **k: reads.append(a) or real(*a, **k)
    )
    chosen = Selection()
    assert chosen.position_keys == [] and chosen.channel_names == []
    assert chosen.choose_position("A/1/0") is None  # no store yet
    store = chosen.choose_store(path)
    assert chosen.position_keys == ["A/1/0", "B/1/0"] == list(store.position_keys)
    info = chosen.choose_position("B/1/0")
    assert info is not None and info.key == "B/1/0"
    assert chosen.channel_names == ["ch0", "ch1", "ch2"]
    assert chosen.choose_position("B/1/0") is info  # the same: nothing read again
    assert len(reads) == 1
    chosen.choose_position("A/1/0")
    assert len(reads) == 2 and chosen.info.key == "A/1/0"


def test_a_bad_store_or_position_leaves_nothing_chosen(tmp_path) -> None:
    data = random_tczyx((1, 1, 2, 8, 8), "uint16")
    path = write_plate(tmp_path / "in.zarr", {"A/1/0": data})
    chosen = Selection()
    chosen.choose_store(path)
    chosen.choose_position("A/1/0")
    (tmp_path / "not-a-store").mkdir()
    with pytest.raises(ProcessPositionError):
        chosen.choose_store(tmp_path / "not-a-store")
    assert chosen.store is None and chosen.info is None
    chosen.choose_store(path)
    with pytest.raises(ProcessPositionError):
        chosen.choose_position("Z/9/9")
    assert chosen.info is None and chosen.store is not None
