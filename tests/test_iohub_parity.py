"""Bit-identical results to iohub 0.3.11's process_single_position, run by iohub itself.

iohub 0.3 needs Python >= 3.12, so it runs in its own interpreter
(``NPP_IOHUB_PYTHON``, made by scripts/test.sh) through tests/iohub_reference.py.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import npp_test_transforms as tt
from conftest import random_tczyx, read_array, run_iohub, write_plate
from napari_process_position import process_single_position, read_position

CALLS = [
    # (id, func name, kwargs for process_single_position, output C, output T)
    ("defaults", "scale_offset", {}, 2, 3),
    ("kwargs", "scale_offset", {"factor": -1.5, "offset": 7.0}, 2, 3),
    ("int-channels", "soft_magnitude", {"input_channel_indices": [1, 0]}, 2, 3),
    (
        "group",
        "sum_channels",
        {"input_channel_indices": [[0, 1]], "output_channel_indices": [[0]]},
        1,
        3,
    ),
    ("slice", "scale_offset", {"input_channel_indices": [slice(0, 2)]}, 2, 3),
    (
        "times",
        "time_aware",
        {"input_time_indices": [2, 0], "output_time_indices": [0, 3], "gain": 0.5},
        2,
        4,
    ),
]


def _encode(value):
    if isinstance(value, slice):
        return {"slice": [value.start, value.stop]}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    return value


@pytest.fixture(scope="module")
def empty_iohub_plate(tmp_path_factory, iohub_python):
    """An empty output plate made by iohub's create_empty_plate, made once per layout."""
    made = {}

    def make(version: str, n_c: int, n_t: int, dtype: str):
        key = (version, n_c, n_t, dtype)
        if key not in made:
            path = tmp_path_factory.mktemp("iohub-empty") / "plate.zarr"
            run_iohub(
                iohub_python,
                {
                    "create": {
                        "store": str(path),
                        "keys": ["A/1/0"],
                        "channel_names": ["a", "b"][:n_c],
                        "shape": [n_t, n_c, 5, 20, 24],
                        "dtype": dtype,
                        "version": version,
                    }
                },
            )
            made[key] = path
        return made[key]

    return make


@pytest.mark.parametrize(
    "workers", [(1, False), (2, True), (2, False)], ids=["serial", "threads", "processes"]
)
@pytest.mark.parametrize("call", CALLS, ids=[c[0] for c in CALLS])
@pytest.mark.parametrize("version,dtype", [("0.5", "float32"), ("0.4", "uint16")])
def test_bit_identical_to_iohub(
    tmp_path, iohub_python, empty_iohub_plate, call, workers, version, dtype
):
    _name, func_name, kwargs, n_c, n_t = call
    data = random_tczyx((3, 2, 5, 20, 24), dtype, seed=3)
    write_plate(tmp_path / "in.zarr", {"A/1/0": data}, version=version)
    src = tmp_path / "in.zarr/A/1/0"
    out_dtype = "float32"
    # The output plate is made by iohub itself, as iohub users do.
    empty = empty_iohub_plate(version, n_c, n_t, out_dtype)
    shutil.copytree(empty, tmp_path / "theirs.zarr")
    shutil.copytree(empty, tmp_path / "ours.zarr")
    num_workers, use_threads = workers
    run_iohub(
        iohub_python,
        {
            "func": f"npp_test_transforms:{func_name}",
            "input": str(src),
            "output": str(tmp_path / "theirs.zarr/A/1/0"),
            "kwargs": {
                **{k: _encode(v) for k, v in kwargs.items()},
                "num_workers": num_workers,
                "use_threads": use_threads,
            },
        },
    )
    process_single_position(
        getattr(tt, func_name),
        src,
        tmp_path / "ours.zarr/A/1/0",
        num_workers=num_workers,
        use_threads=use_threads,
        **kwargs,
    )
    theirs = read_array(tmp_path / "theirs.zarr/A/1/0")
    ours = read_array(tmp_path / "ours.zarr/A/1/0")
    assert ours.dtype == theirs.dtype
    assert ours.tobytes() == theirs.tobytes(), f"differs at {np.argwhere(ours != theirs)[:5]}"
    assert np.any(ours), "nothing was written"


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_iohub_reads_our_outputs(tmp_path, iohub_python, version):
    """A plate we write (lower-case axis names) opens in iohub with its values, names and scale."""
    import json
    import subprocess

    data = random_tczyx((2, 2, 3, 8, 10), "uint16", seed=5)
    write_plate(
        tmp_path / "ours.zarr",
        {"A/1/0": data, "B/2/0": data[::-1]},
        version=version,
        channel_names=("GFP", "DAPI"),
        scale=(1.0, 1.0, 2.0, 0.25, 0.25),
    )
    script = (
        "import json, sys, numpy as np\n"
        "from iohub import open_ome_zarr\n"
        "with open_ome_zarr(sys.argv[1], mode='r') as plate:\n"
        "    out = {}\n"
        "    for name, pos in plate.positions():\n"
        "        out[name] = {'channels': pos.channel_names, 'scale': list(pos.scale),\n"
        "                     'axes': [a.name for a in pos.axes],\n"
        "                     'sum': int(np.asarray(pos.data[:]).astype('int64').sum())}\n"
        "print(json.dumps(out))\n"
    )
    proc = subprocess.run(
        [iohub_python, "-c", script, str(tmp_path / "ours.zarr")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(seen) == {"A/1/0", "B/2/0"}
    for key, arr in (("A/1/0", data), ("B/2/0", data[::-1])):
        assert seen[key]["channels"] == ["GFP", "DAPI"]
        assert seen[key]["axes"] == ["t", "c", "z", "y", "x"]  # lower case, as we write them
        assert seen[key]["scale"] == [1.0, 1.0, 2.0, 0.25, 0.25]
        assert seen[key]["sum"] == int(arr.astype("int64").sum())
    info = read_position(tmp_path / "ours.zarr/A/1/0")
    assert info.ome_version == version


def _datasets(position) -> list:
    import json

    for name, key in (("zarr.json", "attributes"), (".zattrs", None)):
        path = position / name
        if path.exists():
            attrs = json.loads(path.read_text())
            attrs = attrs[key]["ome"] if key else attrs
            return attrs["multiscales"][0]["datasets"]
    raise AssertionError(f"no metadata in {position}")


@pytest.mark.parametrize(
    "version,dtype,zyx",
    [
        ("0.5", "float32", (5, 21, 24)),
        ("0.4", "uint16", (7, 33, 18)),
        ("0.5", "int16", (4, 16, 16)),
    ],
)
def test_pyramid_levels_equal_iohub_compute_pyramid(tmp_path, iohub_python, version, dtype, zyx):
    """Levels we write in the run equal iohub's compute_pyramid(levels=N, method="mean")."""
    import zarr

    from napari_process_position import stream_position
    from napari_process_position.store.create import write_empty_plate
    from napari_process_position.store.layout import OutputLayout

    shape = (3, 2, *zyx)
    data = random_tczyx(shape, dtype, seed=11)
    if dtype == "int16":
        data = (data.astype("int32") - 2000).astype(dtype)  # negative means truncate to zero
    write_plate(tmp_path / "in.zarr", {"A/1/0": data}, version=version)
    layout = OutputLayout(shape, np.dtype(dtype).str, (1, 1, 2, 0.5, 0.5), ("a", "b"), levels=4)
    write_empty_plate(tmp_path / "ours.zarr", {"A/1/0": layout}, version=version)
    ours = tmp_path / "ours.zarr/A/1/0"
    list(stream_position("npp_test_transforms:scale_offset", tmp_path / "in.zarr/A/1/0", ours,
                         pyramid_levels=4, num_workers=2, use_threads=True))  # fmt: skip
    shutil.copytree(tmp_path / "ours.zarr", tmp_path / "theirs.zarr")
    theirs = tmp_path / "theirs.zarr/A/1/0"
    # iohub opens our store, deletes our levels and computes them again from level 0.
    run_iohub(iohub_python, {"pyramid": {"position": str(theirs), "levels": 4}})
    for k in range(4):
        a = zarr.open_array(str(ours / str(k)), mode="r")[...]
        b = zarr.open_array(str(theirs / str(k)), mode="r")[...]
        assert a.shape == b.shape and a.dtype == b.dtype, k
        assert a.tobytes() == b.tobytes(), f"level {k} differs at {np.argwhere(a != b)[:5]}"
        assert np.any(a), k
    assert _datasets(ours) == _datasets(theirs)
