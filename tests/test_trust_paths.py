"""Settings read back from a store or a saved YAML file: nothing runs unasked, nothing misplaced.

A store can come from anyone: ``run --config STORE`` says what it would run and imports
code the store names only with ``--yes`` (or a yes on a terminal). ``--overwrite`` from a
store's settings acts on the store named. A saved config holds absolute paths, and a
relative path in a hand-written one is read from the file's folder.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from conftest import random_tczyx, read_array, tree_digest, write_plate
from napari_process_position.cli import main

EVIL = """
from pathlib import Path

MARKER = Path({marker!r})
MARKER.write_text("imported")  # runs on import: what a hostile store's author would do


def f(zyx):
    MARKER.write_text("called")
    return zyx
"""


def invoke(*args: object, input: str | None = None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input, catch_exceptions=False)


@pytest.fixture
def plate(tmp_path) -> Path:
    data = {"A/1/0": random_tczyx((2, 1, 2, 8, 8), "uint16", empty=(), nan=())}
    return write_plate(tmp_path / "in.zarr", data)


@pytest.fixture
def foreign_store(tmp_path, plate):
    """An output whose recorded settings name a Python file that writes a marker on import."""
    marker = tmp_path / "marker.txt"
    code = tmp_path / "elsewhere" / "evil.py"
    code.parent.mkdir()
    code.write_text(EVIL.format(marker=str(marker)))
    out = tmp_path / "out.zarr"
    result = invoke("run", plate, out, "-t", f"{code}:f", "--no-progress")
    assert result.exit_code == 0, result.output
    marker.unlink()
    return out, marker


def test_store_naming_code_is_refused_without_yes(foreign_store):
    out, marker = foreign_store
    before = tree_digest(out)
    for extra in ([], ["--overwrite"], ["--resume"]):
        result = invoke("run", "--config", out, *extra, "--no-progress")
        assert result.exit_code == 1, result.output
        assert "evil.py" in result.output and "--yes" in result.output, result.output
        assert "Traceback" not in result.output
        assert not marker.exists(), f"code named by the store ran ({extra})"
        assert tree_digest(out) == before


def test_a_refused_output_is_refused_before_the_code_is_imported(foreign_store):
    out, marker = foreign_store
    before = tree_digest(out)
    result = invoke("run", "--config", out, "--yes", "--no-progress")  # exists, no --overwrite
    assert result.exit_code == 1 and "already exists" in result.output, result.output
    assert not marker.exists(), "the store's code was imported before the output was refused"
    assert tree_digest(out) == before


def test_store_naming_code_runs_after_a_yes_on_a_terminal_or_with_yes(foreign_store, monkeypatch):
    out, marker = foreign_store
    result = invoke("run", "--config", out, "--overwrite", "--no-progress", "--yes")
    assert result.exit_code == 0, result.output
    assert marker.read_text() == "called"
    assert "settings recorded in" in result.output and "evil.py" in result.output
    # On a terminal the user is asked; "n" runs nothing.
    marker.unlink()
    import napari_process_position.cli.store_settings as store_settings

    monkeypatch.setattr(store_settings, "on_a_terminal", lambda: True)  # (CliRunner has none)
    result = invoke("run", "--config", out, "--overwrite", "--no-progress", input="n\n")
    assert result.exit_code == 1 and "not confirmed" in result.output, result.output
    assert not marker.exists()
    result = invoke("run", "--config", out, "--overwrite", "--no-progress", input="y\n")
    assert result.exit_code == 0, result.output
    assert marker.read_text() == "called"


def test_store_with_a_builtin_transform_runs_without_asking(plate, tmp_path):
    out = tmp_path / "blur.zarr"
    assert invoke("run", plate, out, "-t", "gaussian_blur", "--no-progress").exit_code == 0
    result = invoke("run", "--config", out, "--overwrite", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "settings recorded in" in result.output and "gaussian_blur" in result.output


def test_overwrite_from_a_moved_store_acts_on_the_store_named(plate, tmp_path):
    out = tmp_path / "out.zarr"
    assert invoke("run", plate, out, "-t", "gaussian_blur", "--no-progress").exit_code == 0
    archive = tmp_path / "archive"
    archive.mkdir()
    moved = archive / "out.zarr"
    shutil.move(out, moved)
    # Something else now stands where the store was written.
    out.mkdir()
    (out / "thesis.txt").write_text("weeks of work")
    result = invoke("run", "--config", moved, "--overwrite", "--no-progress")
    assert result.exit_code == 0, result.output
    assert (out / "thesis.txt").read_text() == "weeks of work"
    assert sorted(p.name for p in out.iterdir()) == ["thesis.txt"]
    assert "moved or copied" in result.output
    assert read_array(moved / "A/1/0").shape == (2, 1, 2, 8, 8)


def test_saved_config_holds_absolute_paths(plate, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke(
        "run", "in.zarr", "out.zarr", "-t", "gaussian_blur", "--save-config", "run.yaml"
    )
    assert result.exit_code == 0, result.output
    saved = yaml.safe_load((tmp_path / "run.yaml").read_text())
    assert saved["input"] == str(tmp_path / "in.zarr")
    assert saved["output"] == str(tmp_path / "out.zarr")


def test_relative_paths_in_a_config_are_read_from_its_folder(plate, tmp_path, monkeypatch):
    project = tmp_path
    (project / "run.yaml").write_text(
        "input: in.zarr\noutput: out.zarr\ntransform: gaussian_blur\n"
    )
    # Another folder with its own in.zarr and out.zarr, where the command is typed.
    other = tmp_path / "other"
    other_in = write_plate(other / "in.zarr", {"A/1/0": np.zeros((1, 1, 2, 8, 8), dtype="uint16")})
    other_out = other / "out.zarr"
    assert invoke("run", other_in, other_out, "-t", "gaussian_blur").exit_code == 0
    before = tree_digest(other)
    monkeypatch.chdir(other)
    result = invoke("run", "--config", project / "run.yaml", "--overwrite", "--no-progress")
    assert result.exit_code == 0, result.output
    assert tree_digest(other) == before  # the other folder's output is untouched
    assert read_array(project / "out.zarr/A/1/0").shape == (2, 1, 2, 8, 8)


@pytest.mark.parametrize("char", ["\n", "\t", "\r"])
def test_paths_with_control_characters_are_refused_before_anything_is_written(
    plate, tmp_path, monkeypatch, char
):
    """zarr drops them: 'x\\ny.zarr' was written as 'xy.zarr', wiping an unrelated store."""
    monkeypatch.chdir(tmp_path)
    bystander = tmp_path / "xy.zarr"
    assert invoke("demo-data", bystander, "--shape", "1,1,4,64,64").exit_code == 0
    before = tree_digest(tmp_path)
    for args in (
        ("demo-data", f"x{char}y.zarr"),
        ("demo-data", f"x{char}y.zarr", "--overwrite"),
        ("run", plate, f"x{char}y.zarr", "-t", "gaussian_blur"),
        ("run", plate, f"x{char}y.zarr", "-t", "gaussian_blur", "--overwrite"),
        ("init-output", plate, f"x{char}y.zarr", "-t", "gaussian_blur", "--overwrite"),
    ):
        result = invoke(*args)
        assert result.exit_code == 1, (args, result.output)
        assert "control character" in result.output, result.output
        assert "Traceback" not in result.output
        assert tree_digest(tmp_path) == before, args


def test_an_output_that_is_a_link_is_named_first(plate, tmp_path):
    real = tmp_path / "scratch" / "out.zarr"
    real.parent.mkdir()
    link = tmp_path / "out.zarr"
    link.symlink_to(real, target_is_directory=True)
    result = invoke("run", plate, link, "-t", "gaussian_blur", "--no-progress")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == (
        f"note: the output {link} is a link to {real}; writing there"
    )
    assert link.is_symlink() and read_array(real / "A/1/0").shape == (2, 1, 2, 8, 8)
