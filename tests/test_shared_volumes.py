"""Preview volumes from worker processes come back through shared memory, and none is left."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

import npp_test_transforms as tt
from conftest import random_tczyx, write_plate
from napari_process_position import ProcessPool, stream_position
from napari_process_position.engine import shared

pytestmark = pytest.mark.skipif(not shared.sharing_available(), reason="no /dev/shm")


def _leftovers(pool: ProcessPool) -> list[str]:
    return sorted(p.name for p in shared.SHM_DIR.glob(f"npp-{pool.share_token}-*"))


def test_process_previews_match_and_travel_as_shared_memory(tmp_path, monkeypatch):
    # 2 x 64 x 64 x 64 float32 = 2 MiB per volume: above the threshold.
    data = random_tczyx((3, 2, 64, 64, 64), "float32", seed=3, empty=(), nan=())
    src = write_plate(tmp_path / "in.zarr", {"A/1/0": data})
    received: list[str] = []
    original = shared._attach

    def spy(handle):
        received.append(handle.name)
        assert (shared.SHM_DIR / handle.name).exists()
        return original(handle)

    monkeypatch.setattr(shared, "_attach", spy)
    with ProcessPool(2) as pool:
        results = list(stream_position(tt.scale_offset, src / "A/1/0", pool=pool))
        assert len(results) == 6
        for result in results:
            c = result.input_channels[0]
            expected = tt.scale_offset(data[result.input_time_index, [c]])
            np.testing.assert_array_equal(result.volume, expected)
            assert isinstance(result.volume, np.ndarray)
        assert len(received) == 6, "each volume came as a shared memory file"
        assert all(name.startswith(f"npp-{pool.share_token}-") for name in received)
        assert _leftovers(pool) == [], "the caller removes each name as it maps the file"
        # The arrays stay valid after their files' names are gone.
        total = sum(float(r.volume.sum()) for r in results)
        assert np.isfinite(total)


def test_small_volumes_and_threads_keep_pickles(tmp_path, monkeypatch):
    data = random_tczyx((2, 1, 2, 8, 8), "float32", seed=4, empty=(), nan=())
    src = write_plate(tmp_path / "in.zarr", {"A/1/0": data})
    calls: list[str] = []
    monkeypatch.setattr(shared, "_attach", lambda handle: calls.append(handle.name))
    with ProcessPool(2) as pool:
        results = list(stream_position(tt.scale_offset, src / "A/1/0", pool=pool))
    for result in results:
        np.testing.assert_array_equal(
            result.volume, tt.scale_offset(data[result.input_time_index, [0]])
        )
    assert calls == [], "a volume under the threshold travels as a pickle"


def test_a_cancelled_run_leaves_no_shared_files(tmp_path):
    data = random_tczyx((8, 1, 64, 64, 64), "float32", seed=5, empty=(), nan=())
    src = write_plate(tmp_path / "in.zarr", {"A/1/0": data})
    pool = ProcessPool(2)
    try:
        pool.warm()
        run = stream_position(tt.slow, src / "A/1/0", pool=pool, seconds=0.4)
        got = []
        for result in run:
            got.append(result)
            if len(got) == 1:
                # Cancel while the other worker's task is still running.
                threading.Thread(target=run.cancel).start()
        assert run.cancelled
        assert len(got) < 8
    finally:
        pool.kill()
    assert _leftovers(pool) == []


def test_leftovers_of_one_pool_are_removed_without_touching_another(tmp_path):
    a, b = shared.pool_token(), shared.pool_token()
    volume = np.ones((2, 512, 512), np.float32)  # 2 MiB
    (ra,) = shared.to_shared([_result(volume)], a)
    (rb,) = shared.to_shared([_result(volume)], b)
    assert isinstance(ra.volume, shared.SharedVolume)
    assert shared.remove_leftovers(a) == 1
    assert not (shared.SHM_DIR / ra.volume.name).exists()
    (back,) = shared.from_shared([rb])
    np.testing.assert_array_equal(back.volume, volume)
    assert not (shared.SHM_DIR / rb.volume.name).exists()
    assert os.getpid() == int(a.split(".")[0])


def _result(volume):
    from napari_process_position.core.tasks import Result

    return Result(0, 0, 0, 0, 0, "preview", volume, 0.0, 0.0, 0.0, "test")
