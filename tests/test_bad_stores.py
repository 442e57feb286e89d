"""Bad stores: one clear line from the command line, nothing written, the input untouched.

Missing paths, plain folders, Zarr groups that are not OME-Zarr and TCZYX-incompatible
axes are in tests/test_cli.py (``test_bad_input_is_one_clear_line``); this file damages
real plates one piece of metadata at a time, and checks the stores that must work: a
read-only input and a path with spaces and non-ASCII characters.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import random_tczyx, read_array, tree_digest, write_plate
from napari_process_position.cli import main
from napari_process_position.core.records import records_dir

CLI = [sys.executable, "-m", "napari_process_position.cli"]
KEYS = ("A/1/0", "A/1/1")


def _plate(root: Path, version: str = "0.5") -> Path:
    data = {
        k: random_tczyx((2, 1, 2, 8, 8), "uint16", seed=i, empty=(), nan=())
        for i, k in enumerate(KEYS)
    }
    return write_plate(root / "plate.zarr", data, version=version)


def _edit(path: Path, change: Callable[[dict], object]) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _ms(d: dict) -> dict:
    return d["attributes"]["ome"]["multiscales"][0]


def _swap_t_c(d: dict) -> None:
    axes = _ms(d)["axes"]
    axes[0], axes[1] = axes[1], axes[0]


# name -> (OME version, damage(plate), text the error line must hold)
DAMAGE: dict[str, tuple[str, Callable[[Path], object], str]] = {
    "plate zarr.json missing": (
        "0.5",
        lambda p: (p / "zarr.json").unlink(),
        "is not a Zarr store (no zarr.json or .zgroup",
    ),
    "plate zarr.json malformed": (
        "0.5",
        lambda p: (p / "zarr.json").write_text('{"zarr_format": 3,'),
        "plate.zarr/zarr.json is not valid JSON",
    ),
    "position zarr.json malformed": (
        "0.5",
        lambda p: (p / "A/1/0/zarr.json").write_text("{not json"),
        "A/1/0/zarr.json is not valid JSON",
    ),
    "array zarr.json without shape": (
        "0.5",
        lambda p: _edit(p / "A/1/0/0/zarr.json", lambda d: d.pop("shape")),
        "A/1/0/0: malformed array metadata (no 'shape')",
    ),
    "array data type unknown": (
        "0.5",
        lambda p: _edit(p / "A/1/0/0/zarr.json", lambda d: d.update(data_type="uint17")),
        "unsupported data type 'uint17'",
    ),
    "v0.4 .zattrs malformed": (
        "0.4",
        lambda p: (p / "A/1/0/.zattrs").write_text("[1, 2"),
        "A/1/0/.zattrs is not valid JSON",
    ),
    "v0.4 position .zattrs missing": (
        "0.4",
        lambda p: (p / "A/1/0/.zattrs").unlink(),
        "A/1/0 has no OME-Zarr 'multiscales' metadata",
    ),
    "v0.4 plate .zattrs malformed": (
        "0.4",
        lambda p: (p / ".zattrs").write_text("{'plate': 1}"),
        "plate.zarr/.zattrs is not valid JSON",
    ),
    "axes in the wrong order": (
        "0.5",
        lambda p: _edit(p / "A/1/0/zarr.json", _swap_t_c),
        "axes are c/t/z/y/x, expected t/c/z/y/x",
    ),
    "axis of the wrong type": (
        "0.5",
        lambda p: _edit(p / "A/1/0/zarr.json", lambda d: _ms(d)["axes"][2].update(type="time")),
        "of types time, channel, time, space, space, expected",
    ),
    "no axes": (
        "0.5",
        lambda p: _edit(p / "A/1/0/zarr.json", lambda d: _ms(d).pop("axes")),
        "multiscales metadata has no axes",
    ),
    "array 0 missing": (
        "0.5",
        lambda p: shutil.rmtree(p / "A/1/0/0"),
        "the position has no array '0'",
    ),
    "array 4-D under 5 axes": (
        "0.5",
        lambda p: _edit(p / "A/1/0/0/zarr.json", lambda d: d.update(shape=[2, 1, 8, 8])),
        "array has 4 dimensions, expected 5 (TCZYX)",
    ),
    "scale not numbers": (
        "0.5",
        lambda p: _edit(
            p / "A/1/0/zarr.json",
            lambda d: _ms(d)["datasets"][0].update(
                coordinateTransformations=[{"type": "scale", "scale": ["a", 1, 1, 1, 1]}]
            ),
        ),
        "the scale of dataset '0' is not five numbers",
    ),
    "well lists a missing position": (
        "0.5",
        lambda p: shutil.rmtree(p / "A/1/1"),
        "the plate lists position 'A/1/1', but",
    ),
    "plate lists a missing well": (
        "0.5",
        lambda p: _edit(
            p / "zarr.json",
            lambda d: d["attributes"]["ome"]["plate"]["wells"].append(
                {"path": "B/3", "rowIndex": 0, "columnIndex": 0}
            ),
        ),
        "the plate lists well 'B/3' but",
    ),
    "image entry without a path": (
        "0.5",
        lambda p: _edit(
            p / "A/1/zarr.json", lambda d: d["attributes"]["ome"]["well"]["images"][0].pop("path")
        ),
        "an image in the well metadata has no path",
    ),
    "empty plate": (
        "0.5",
        lambda p: _edit(
            p / "zarr.json", lambda d: d["attributes"]["ome"]["plate"].update(wells=[])
        ),
        "the plate has no positions",
    ),
    "empty well": (
        "0.4",
        lambda p: _edit(p / "A/1/.zattrs", lambda d: d["well"].update(images=[])),
        "the plate has no positions",
    ),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damaged_store_is_one_clear_line_and_nothing_is_written(tmp_path, case):
    version, damage, expected = DAMAGE[case]
    plate = _plate(tmp_path, version)
    damage(plate)
    before = tree_digest(plate)
    out = tmp_path / "out.zarr"
    for args in (
        ["positions", "--details", str(plate)],
        ["run", str(plate), str(out), "-t", "gaussian_blur", "--no-progress"],
    ):
        if case in ("well lists a missing position",) and args[0] == "positions":
            continue  # listing keys does not open each position
        result = CliRunner().invoke(main, args)
        assert isinstance(result.exception, SystemExit | None), result.exception
        assert result.exit_code == 1, (args[0], result.output)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("error: ") and expected in lines[0], lines[0]
    assert not out.exists(), "nothing may be written for a bad input"
    assert tree_digest(plate) == before


def test_missing_position_does_not_stop_the_others_being_selected(tmp_path):
    """A plate with one missing field of view still runs on the positions that exist."""
    plate = _plate(tmp_path)
    shutil.rmtree(plate / "A/1/1")
    out = tmp_path / "out.zarr"
    result = CliRunner().invoke(
        main,
        [
            "run",
            str(plate),
            str(out),
            "-t",
            "max_projection",
            "--position",
            "A/1/0",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(
        read_array(out / "A/1/0"), read_array(plate / "A/1/0").max(axis=2, keepdims=True)
    )


def test_damaged_input_chunk_is_one_error_line_naming_the_volume(tmp_path):
    plate = _plate(tmp_path, "0.4")
    chunk = plate / "A/1/1/0/1/0/0/0/0"  # v0.4 '/' keys: t=1, c=0
    assert chunk.exists()
    chunk.write_bytes(chunk.read_bytes()[:20])
    before = tree_digest(plate)
    out = tmp_path / "out.zarr"
    proc = subprocess.run(
        [
            *CLI,
            "run",
            str(plate),
            str(out),
            "-t",
            "gaussian_blur",
            "-w",
            "2",
            "--processes",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr[-3000:]
    assert errors[0].startswith("error: A/1/1: reading t=1, c=0 from ") and "A/1/1/0" in errors[0]
    # The other position is complete; the damaged one kept its good volume.
    assert len(list(Path(records_dir(out / "A/1/0")).glob("*.done"))) == 2
    assert (Path(records_dir(out / "A/1/1")) / "t0_c0.done").exists()
    assert tree_digest(plate) == before


# -- stores that must work -------------------------------------------------------------------------


@contextlib.contextmanager
def read_only(folder: Path):
    """``folder`` read-only for everyone, root included: a read-only bind mount as root."""
    if os.geteuid() == 0:
        mounted = (
            subprocess.run(
                ["mount", "--bind", str(folder), str(folder)], capture_output=True, text=True
            ).returncode
            == 0
        )
        if mounted:
            ro = (
                subprocess.run(
                    ["mount", "-o", "remount,ro,bind", str(folder)], capture_output=True, text=True
                ).returncode
                == 0
            )
            try:
                if not ro:
                    pytest.skip("cannot remount a bind mount read-only here")
                yield "read-only bind mount"
            finally:
                subprocess.run(["umount", str(folder)], check=False)
            return
        pytest.skip("running as root without mount: nothing makes a folder read-only for root")
    modes = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root, name)
            modes[path] = path.stat().st_mode
            path.chmod(path.stat().st_mode & ~0o222)
    folder_mode = folder.stat().st_mode
    folder.chmod(folder_mode & ~0o222)
    try:
        yield "chmod a-w"
    finally:
        folder.chmod(folder_mode)
        for path, mode in modes.items():
            path.chmod(mode)


def test_read_only_input_is_processed(tmp_path):
    plate = _plate(tmp_path)
    before = tree_digest(plate)
    out = tmp_path / "out.zarr"
    with read_only(plate):
        with pytest.raises(OSError):
            (plate / "probe").write_text("x")  # it really is read-only
        proc = subprocess.run(
            [
                *CLI,
                "run",
                str(plate),
                str(out),
                "-t",
                "max_projection",
                "-w",
                "2",
                "--processes",
                "--no-progress",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        for key in KEYS:
            np.testing.assert_array_equal(
                read_array(out / key), read_array(plate / key).max(axis=2, keepdims=True)
            )
    assert tree_digest(plate) == before


def test_path_with_spaces_and_non_ascii_characters(tmp_path):
    folder = tmp_path / "Messung März 1"
    folder.mkdir()
    plate = write_plate(
        folder / "plate ø.zarr",
        {k: random_tczyx((2, 1, 2, 8, 8), "uint16", seed=i) for i, k in enumerate(KEYS)},
    )
    out = folder / "résultat 2.zarr"
    before = tree_digest(plate)
    env = {**os.environ, "LC_ALL": "C.UTF-8", "PYTHONIOENCODING": "utf-8"}
    proc = subprocess.run(
        [
            *CLI,
            "run",
            str(plate),
            str(out),
            "-t",
            "gaussian_blur",
            "-w",
            "2",
            "--processes",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert str(out) in proc.stderr.replace("\n", "")
    listed = subprocess.run(
        [*CLI, "positions", str(out)], capture_output=True, text=True, timeout=60, env=env
    )
    assert listed.stdout.split() == list(KEYS)
    assert read_array(out / "A/1/1").shape == (2, 1, 2, 8, 8)
    assert tree_digest(plate) == before
    # An error about such a path prints it readably.
    shutil.rmtree(plate / "A/1/1")
    proc = subprocess.run(
        [*CLI, "run", str(plate), str(folder / "x.zarr"), "-t", "gaussian_blur"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        f"error: the plate lists position 'A/1/1', but {plate.resolve() / 'A/1/1'} does not exist"
    )


@pytest.mark.parametrize("where", ["A/out.zarr", "out.zarr", "A/1/out.zarr"])
def test_output_inside_the_plate_of_an_input_position_is_refused(tmp_path, where):
    """A position given on its own still belongs to its plate: no output goes into that plate."""
    plate = _plate(tmp_path)
    before = tree_digest(plate)
    out = plate / where
    result = CliRunner().invoke(
        main,
        [
            "run",
            str(plate / "A/1/0"),
            str(out),
            "-t",
            "gaussian_blur",
            "--overwrite",
            "--no-progress",
        ],
    )
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "is inside the input (its store " in lines[0], result.stderr
    assert not out.exists()
    assert tree_digest(plate) == before
