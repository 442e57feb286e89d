"""--overwrite replaces only what this package wrote; anything else is refused, untouched.

Every refusal is checked through each entry point (run, init-output, demo-data,
RunConfig / prepare_run, create_output_plate, make_demo_plate) on real stores
on disk, and the path's contents are compared byte for byte before and after.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import path_snapshot, random_tczyx, write_plate
from napari_process_position import RunConfig, create_output_plate, prepare_run, read_position
from napari_process_position.cli import main
from napari_process_position.core.errors import OutputExistsError
from napari_process_position.store.demo import make_demo_plate
from napari_process_position.store.provenance import read_provenance, written_here
from napari_process_position.store.replace import replace_store

CLI = [sys.executable, "-m", "napari_process_position.cli"]
SHAPE = (2, 1, 4, 16, 16)
NOT_OURS = "is not an output of process-position"
WHAT_TO_DO = "; remove it yourself or choose another output"


@pytest.fixture(scope="module")
def plate(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("overwrite") / "in.zarr"
    return write_plate(path, {"A/1/0": random_tczyx(SHAPE, "uint16", seed=3, empty=(), nan=())})


# -- what stands at the output path: none of it is ours ----------------------------------------


def _folder_of_files(where: Path) -> Path:
    (where / "Documents").mkdir(parents=True)
    (where / "Documents/thesis.txt").write_text("five years of work\n")
    (where / "notes.txt").write_text("remember the milk\n")
    return where


def _plain_file(where: Path) -> Path:
    where.write_text("remember the milk\n")
    return where


def _zarr_group(where: Path) -> Path:
    import zarr

    group = zarr.open_group(str(where), mode="w")
    group.create_array("measurements", shape=(4, 4), dtype="f4")[:] = np.arange(16).reshape(4, 4)
    return where


def _ome_zarr_py_plate(where: Path) -> Path:
    import warnings

    import zarr

    pytest.importorskip("ome_zarr")
    from ome_zarr.format import FormatV05

    with warnings.catch_warnings():  # its writer module warns about its own deprecated Scaler
        warnings.simplefilter("ignore", DeprecationWarning)
        from ome_zarr.writer import write_image, write_plate_metadata, write_well_metadata

    root = zarr.open_group(str(where), mode="w", zarr_format=3)
    write_plate_metadata(root, ["B"], ["3"], ["B/3"], fmt=FormatV05())
    well = root.require_group("B").require_group("3")
    write_well_metadata(well, [{"path": "0"}], fmt=FormatV05())
    data = random_tczyx(SHAPE, "uint16", seed=5, empty=(), nan=())
    write_image(data, well.require_group("0"), scale_factors=[], axes="tczyx", fmt=FormatV05())
    return where


def _iohub_plate(where: Path) -> Path:
    import shutil

    from conftest import DATA

    shutil.copytree(DATA / "iohub_v05_float32.zarr", where)
    return where


def _link_to_a_folder_of_files(where: Path) -> Path:
    target = _folder_of_files(where.parent / "real-folder")
    where.symlink_to(target, target_is_directory=True)
    return where


def _empty_folders(where: Path) -> Path:
    (where / "raw/day1").mkdir(parents=True)
    return where


#: name -> (build it at a path, what the message says is there)
NOT_OURS_CASES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "folder of files": (_folder_of_files, "(it holds 2 files, e.g. Documents/thesis.txt)"),
    "plain file": (_plain_file, "(it is a file of 18 bytes)"),
    "plain zarr group": (_zarr_group, "(it is a Zarr store that process-position did not write)"),
    "ome-zarr-py plate": (
        _ome_zarr_py_plate,
        "(it is an OME-Zarr plate that process-position did not write)",
    ),
    "iohub plate": (_iohub_plate, "(it is an OME-Zarr plate that process-position did not write)"),
    "link to a folder of files": (_link_to_a_folder_of_files, "(a link to "),
    "empty folders": (_empty_folders, "(it holds 2 empty folders)"),
}


@pytest.fixture(params=list(NOT_OURS_CASES))
def not_ours(request, tmp_path) -> tuple[Path, str, dict[str, object]]:
    """Something at the output path that this package did not write, and its snapshot."""
    build, said = NOT_OURS_CASES[request.param]
    path = build(tmp_path / "somewhere")
    before = {"path": path_snapshot(path), "real": path_snapshot(path.resolve())}
    return path, said, before


def _unchanged(path: Path, before: dict[str, object]) -> None:
    assert path_snapshot(path) == before["path"]
    assert path_snapshot(path.resolve()) == before["real"]
    leftovers = [p.name for p in path.parent.iterdir() if ".creating-" in p.name]
    assert not leftovers and not any(".replaced-" in p.name for p in path.parent.iterdir())


def _one_line(result, path: Path, said: str) -> str:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith(f"error: {path} ") and NOT_OURS in line, line
    assert said in line and line.endswith(WHAT_TO_DO), line
    return line


def invoke(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


# -- refusals, each entry point ----------------------------------------------------------------


def test_run_refuses(plate, not_ours):
    path, said, before = not_ours
    result = invoke("run", plate, path, "-t", "gaussian_blur", "--overwrite", "--no-progress")
    _one_line(result, path, said)
    _unchanged(path, before)


def test_run_of_one_position_refuses(plate, not_ours):
    """A single input position makes a single-position output: the same rule."""
    path, said, before = not_ours
    result = invoke("run", plate / "A/1/0", path, "-t", "gaussian_blur", "--overwrite")
    _one_line(result, path, said)
    _unchanged(path, before)


def test_init_output_refuses(plate, not_ours):
    path, said, before = not_ours
    _one_line(invoke("init-output", plate, path, "-t", "gaussian_blur", "--overwrite"), path, said)
    _unchanged(path, before)


def test_demo_data_refuses(not_ours):
    path, said, before = not_ours
    _one_line(invoke("demo-data", path, "--overwrite", "--shape", "1,1,2,8,8"), path, said)
    _unchanged(path, before)


def test_python_api_refuses(plate, not_ours):
    path, said, before = not_ours
    config = RunConfig(
        input=str(plate), output=str(path), transform="gaussian_blur", overwrite=True
    )
    with pytest.raises(OutputExistsError, match=NOT_OURS) as caught:
        prepare_run(config)
    assert said in str(caught.value)
    with pytest.raises(OutputExistsError, match=NOT_OURS):
        create_output_plate(plate, path, overwrite=True)
    with pytest.raises(OutputExistsError, match=NOT_OURS):
        make_demo_plate(path, shape=(1, 1, 2, 8, 8), overwrite=True)
    _unchanged(path, before)


def test_without_overwrite_the_message_does_not_suggest_it(plate, not_ours):
    path, said, before = not_ours
    result = invoke("run", plate, path, "-t", "gaussian_blur", "--no-progress")
    assert result.exit_code == 1
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert "already exists and is not an output of process-position" in line and said in line
    assert line.endswith("; choose another output") and "--overwrite" not in line, line
    _unchanged(path, before)


def test_the_refusal_is_one_line_without_traceback(plate, tmp_path):
    """As a user sees it: a real process, exit code 1, one line on stderr."""
    path = _folder_of_files(tmp_path / "somewhere")
    before = path_snapshot(path)
    proc = subprocess.run(
        [*CLI, "run", str(plate), str(path), "--overwrite", "-t", "gaussian_blur"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr == (
        f"error: {path} is not an output of process-position (it holds 2 files, e.g. "
        "Documents/thesis.txt); remove it yourself or choose another output\n"
    )
    assert path_snapshot(path) == before


def test_a_position_of_our_output_is_not_a_whole_output(plate, tmp_path):
    out = tmp_path / "out.zarr"
    invoke("run", plate, out, "-t", "gaussian_blur", "--no-progress")
    before = path_snapshot(out)
    result = invoke("run", plate / "A/1/0", out / "A/1/0", "-t", "gaussian_blur", "--overwrite")
    _one_line(result, out / "A/1/0", f"(it is inside the output {out}, not a whole output)")
    assert path_snapshot(out) == before


def test_a_folder_that_cannot_be_listed_is_refused(tmp_path, monkeypatch):
    """Root may list any folder, so the listing's failure is simulated."""
    folder = _folder_of_files(tmp_path / "somewhere")
    before = path_snapshot(folder)

    def denied(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "iterdir", denied)
    monkeypatch.setattr(os, "scandir", denied)  # what os.walk lists with
    with pytest.raises(OutputExistsError, match="it cannot be read: Permission denied"):
        make_demo_plate(folder, shape=(1, 1, 2, 32, 32), overwrite=True)
    monkeypatch.undo()
    assert path_snapshot(folder) == before


# -- what may be replaced -----------------------------------------------------------------------


def _run(plate: Path, out: Path, *extra: object) -> None:
    result = invoke("run", plate, out, "-t", "gaussian_blur", "--no-progress", *extra)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("single", [False, True], ids=["plate", "position"])
def test_run_replaces_its_own_output(plate, tmp_path, single):
    source = plate / "A/1/0" if single else plate
    out = tmp_path / "out.zarr"
    _run(source, out)
    (out / "stale.txt").write_text("from the first run")
    records = tmp_path / ".process-position-progress" / "out.zarr"
    assert records.exists()
    _run(source, out, "--overwrite", "-p", "sigma_x=2")
    assert not (out / "stale.txt").exists(), "the old output is gone"
    assert read_provenance(out)["config"]["params"]["sigma_x"] == 2
    position = out if single else out / "A/1/0"
    assert read_position(position).shape == SHAPE
    assert sorted(p.name for p in tmp_path.iterdir()) == [".process-position-progress", "out.zarr"]


def test_an_init_output_plate_and_a_demo_and_an_empty_folder_are_replaced(plate, tmp_path):
    bare = create_output_plate(plate, tmp_path / "bare.zarr")  # no transform: no settings
    assert read_provenance(bare.path) is None and written_here(bare.path)
    _run(plate, tmp_path / "bare.zarr", "--overwrite")
    assert read_provenance(tmp_path / "bare.zarr")["config"]["transform"] == "gaussian_blur"

    demo = tmp_path / "demo.zarr"
    assert invoke("demo-data", demo, "--shape", "1,1,2,32,32").exit_code == 0
    assert written_here(demo)
    first = path_snapshot(demo)
    assert invoke("demo-data", demo, "--overwrite", "--shape", "2,1,2,32,32").exit_code == 0
    assert path_snapshot(demo) != first and read_position(demo / "A/1/0").shape[0] == 2
    _run(plate, demo, "--overwrite")  # a demo is ours to replace with an output too

    (tmp_path / "empty").mkdir()
    _run(plate, tmp_path / "empty", "--overwrite")
    assert read_position(tmp_path / "empty/A/1/0").shape == SHAPE


def test_run_config_and_create_output_plate_replace_their_own(plate, tmp_path):
    out = tmp_path / "out.zarr"
    config = RunConfig(input=str(plate), output=str(out), transform="gaussian_blur")
    for _ in prepare_run(config):
        pass
    for _ in prepare_run(config.model_copy(update={"overwrite": True, "params": {"sigma_x": 3}})):
        pass
    assert read_provenance(out)["config"]["params"]["sigma_x"] == 3
    create_output_plate(plate, out, "binning", overwrite=True)
    assert read_position(out / "A/1/0").shape == (2, 1, 4, 8, 8)


def test_a_link_to_our_output_replaces_what_it_leads_to(plate, tmp_path):
    real = tmp_path / "real.zarr"
    _run(plate, real)
    link = tmp_path / "link.zarr"
    link.symlink_to(real, target_is_directory=True)
    _run(plate, link, "--overwrite", "-p", "sigma_x=2")
    assert link.is_symlink() and read_provenance(real)["config"]["params"]["sigma_x"] == 2


# -- replacing is safe: the old output goes last ----------------------------------------------


def test_a_run_refused_for_other_reasons_leaves_the_old_output(plate, tmp_path):
    out = tmp_path / "out.zarr"
    _run(plate, out)
    before = path_snapshot(out)
    result = invoke("run", plate, out, "-t", "gaussian_blur", "-p", "sigma_x=big", "--overwrite")
    assert result.exit_code == 1 and "sigma_x" in result.stderr
    assert path_snapshot(out) == before


def test_a_failed_build_leaves_the_old_store(plate, tmp_path):
    out = tmp_path / "out.zarr"
    _run(plate, out)
    before = path_snapshot(out)

    def build(at: Path) -> None:
        at.mkdir()
        (at / "half").write_text("written")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        replace_store(out, build)
    assert path_snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".process-position-progress", "out.zarr"]


def test_a_failed_swap_puts_the_old_store_back(plate, tmp_path, monkeypatch):
    out = tmp_path / "out.zarr"
    _run(plate, out)
    before = path_snapshot(out)
    swaps: list[tuple[str, str]] = []
    real_rename = os.rename

    def rename(src, dst):
        src, dst = os.fspath(src), os.fspath(dst)
        if str(out) in (src, dst):
            swaps.append((src, dst))
            if ".creating-" in src:  # the new store into place
                raise OSError(5, "Input/output error")
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(OSError, match="Input/output error"):
        make_demo_plate(out, shape=(1, 1, 2, 32, 32), overwrite=True)
    monkeypatch.undo()
    # The old store was moved aside, the new one failed to take its place, the old one came back.
    assert len(swaps) == 3 and ".replaced-" in swaps[0][1] and swaps[2] == swaps[0][::-1]
    assert path_snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".process-position-progress", "out.zarr"]


# -- the output and the input -------------------------------------------------------------------


def test_an_output_that_contains_the_input_says_so(plate):
    parent = plate.parent
    before = path_snapshot(parent)
    result = invoke("run", plate, parent, "-t", "gaussian_blur", "--overwrite")
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: the output {parent} contains the input {plate}; choose another output path\n"
    )
    inside = invoke("run", plate, plate / "A/out.zarr", "-t", "gaussian_blur", "--overwrite")
    assert inside.exit_code == 1 and f"the output {plate}/A/out.zarr is inside the input;" in (
        inside.stderr
    )
    same = invoke("run", plate, plate, "-t", "gaussian_blur", "--overwrite")
    assert same.stderr == f"error: the output {plate} is the input; choose another output path\n"
    assert path_snapshot(parent) == before
