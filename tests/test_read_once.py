"""A run reads each position's metadata once: the plan's PositionInfo goes down to the engine."""

from __future__ import annotations

import os
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from conftest import random_tczyx, write_plate
from napari_process_position import RunConfig
from napari_process_position.batch.prepare import prepare_run
from napari_process_position.store import metadata

KEYS = ["A/1/0", "A/2/0", "B/1/0"]


@pytest.fixture
def reads(monkeypatch):
    """Count store.metadata.read_position calls by resolved path, wherever it was imported."""
    original = metadata.read_position
    counts: Counter[str] = Counter()

    def counting(path, *args, **kwargs):
        counts[os.path.realpath(os.fspath(path))] += 1
        return original(path, *args, **kwargs)

    for module in list(sys.modules.values()):
        if (module.__name__ or "").startswith("napari_process_position") and (
            getattr(module, "read_position", None) is original
        ):
            monkeypatch.setattr(module, "read_position", counting)
    return counts


@pytest.mark.parametrize(
    ("workers", "threads"),
    [(1, False), (2, True), (2, False)],
    ids=["serial", "threads", "processes"],
)
def test_a_run_reads_each_input_position_once(tmp_path, reads, workers, threads):
    data = {k: random_tczyx((2, 2, 3, 8, 8), np.uint16, seed=i) for i, k in enumerate(KEYS)}
    plate = write_plate(tmp_path / "in.zarr", data)
    config = RunConfig(
        input=str(plate),
        output=str(tmp_path / "out.zarr"),
        transform="gaussian_blur",
        num_workers=workers,
        use_threads=threads,
    )
    reads.clear()
    batch = prepare_run(config)
    results = list(batch)
    assert len(results) == len(KEYS) * 4
    assert not batch.failed, batch.errors
    for key in KEYS:
        path = os.path.realpath(plate / key)
        assert reads[path] == 1, f"{key}'s metadata read {reads[path]} times: {dict(reads)}"
    # Each output position is read once, as the run starts that position (claim_output
    # creates them; a plate it creates is not read back position by position); what a
    # caller asks of it afterwards (the widget shows it) is that reading.
    out = Path(tmp_path / "out.zarr")
    for key in KEYS:
        assert reads[os.path.realpath(out / key)] == 1, dict(reads)
        info = batch.output_info(key)
        assert info is not None and info.path == batch.output_paths[key]
        assert reads[os.path.realpath(out / key)] == 1, dict(reads)
