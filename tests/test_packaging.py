"""The built wheel installs clean, runs, and registers the napari plugin.

The sdist and the wheel are built from this source tree with ``python -m build``
(the wheel from the sdist, as PyPI users get it). The wheel is installed,
not editable and without dependencies, into a new virtual environment whose
only other packages are those of the test environment minus this project (a
``site.addsitedir`` line in a .pth file), so nothing of the source tree can be
picked up. Then the console script and napari's plugin discovery run there.

Set ``NPP_WHEEL=/path/to/wheel`` to test a wheel built elsewhere instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
DIST = "napari_process_position"


def _venv_env() -> dict[str, str]:
    """The environment for commands in the new venv: nothing pointing back at the source tree."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _run(cmd: list[str | Path], **kwargs) -> subprocess.CompletedProcess[str]:
    kwargs.setdefault("timeout", 600)
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kwargs)
    assert proc.returncode == 0, (
        f"{' '.join(map(str, cmd))} exited {proc.returncode}\n"
        f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    )
    return proc


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> dict[str, Path]:
    """{'wheel': path, 'sdist': path or absent}."""
    prebuilt = os.environ.get("NPP_WHEEL")
    if prebuilt:
        return {"wheel": Path(prebuilt)}
    if not (ROOT / "pyproject.toml").exists():
        pytest.skip(f"no pyproject.toml in {ROOT}: not a source tree")
    pytest.importorskip("build", reason="the 'build' package is in the testing extra")
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--outdir", out, ROOT])
    wheels = list(out.glob("*.whl"))
    sdists = list(out.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, sorted(p.name for p in out.iterdir())
    return {"wheel": wheels[0], "sdist": sdists[0]}


@pytest.fixture(scope="module")
def venv(dists, tmp_path_factory) -> Path:
    """A new venv with the wheel installed and the test environment's other packages."""
    base = tmp_path_factory.mktemp("wheel-venv")
    env_dir = base / "venv"
    # Our dependencies, without this project's own files (editable hooks, dist-info).
    deps = base / "deps"
    deps.mkdir()
    site_dirs = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    for site_dir in site_dirs:
        for entry in Path(site_dir).iterdir():
            name = entry.name.lower()
            if DIST in name or "napari-process-position" in name:
                continue
            if not (deps / entry.name).exists():
                (deps / entry.name).symlink_to(entry)
    base_python = getattr(sys, "_base_executable", sys.executable)
    _run([base_python, "-m", "venv", "--without-pip", env_dir])
    python = env_dir / "bin" / "python"
    purelib = _run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], env=_venv_env()
    )
    (Path(purelib.stdout.strip()) / "_npp_test_deps.pth").write_text(
        f"import site; site.addsitedir({str(deps)!r})\n"
    )
    # pip comes from the dependencies; it installs into the new venv's prefix.
    _run(
        [python, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", dists["wheel"]],
        env=_venv_env(),
    )
    return env_dir


def test_wheel_contents(dists):
    with zipfile.ZipFile(dists["wheel"]) as wheel:
        names = wheel.namelist()
        manifest = wheel.read(f"{DIST}/napari.yaml").decode()
        entry_points = next(
            wheel.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt")
        )
        metadata = next(wheel.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
    assert manifest == (ROOT / "napari.yaml").read_text(), "the wheel's napari.yaml is stale"
    assert "[napari.manifest]" in entry_points
    assert f"napari-process-position = {DIST}:napari.yaml" in entry_points
    assert "process-position = napari_process_position.cli:main" in entry_points
    assert not [n for n in names if n.startswith(("tests/", "docs/", "benchmarks/"))]
    for module in (
        "core/__init__.py",
        "store/__init__.py",
        "engine/worker.py",
        "batch/__init__.py",
        "cli/__main__.py",
        "widget/__init__.py",
        "transforms/__init__.py",
    ):
        assert f"{DIST}/{module}" in names, f"{module} is missing from the wheel"
    assert "Framework :: napari" in metadata
    assert "Requires-Python: >=3.11" in metadata
    assert "## Quick start" in metadata, "the README is the long description"


def test_sdist_contents(dists):
    if "sdist" not in dists:
        pytest.skip("NPP_WHEEL given: no sdist built")
    with tarfile.open(dists["sdist"]) as sdist:
        names = {n.split("/", 1)[1] for n in sdist.getnames() if "/" in n}
    for needed in (
        "pyproject.toml",
        "napari.yaml",
        "README.md",
        "LICENSE",
        f"src/{DIST}/napari.yaml",
        f"src/{DIST}/engine/worker.py",
        "tests/conftest.py",
    ):
        assert needed in names, f"{needed} is missing from the sdist"


def test_installed_package_comes_from_the_wheel(venv):
    proc = _run(
        [
            venv / "bin" / "python",
            "-c",
            "import napari_process_position as p, importlib.metadata as m; "
            "print(p.__file__); print(m.version('napari-process-position'))",
        ],
        env=_venv_env(),
    )
    location, version = proc.stdout.split()
    assert Path(location).is_relative_to(venv), f"imported from {location}, not from the wheel"
    assert version and version != "0.0.0+unknown"


def test_console_script_runs(venv, tmp_path):
    exe = venv / "bin" / "process-position"
    assert exe.exists()
    env = _venv_env()
    help_text = _run([exe, "--help"], env=env).stdout
    for command in ("demo-data", "positions", "transforms", "run", "gui"):
        assert command in help_text
    demo = tmp_path / "demo.zarr"
    _run([exe, "demo-data", demo, "--shape", "2,2,4,32,32"], cwd=tmp_path, env=env)
    keys = _run([exe, "positions", demo], env=env).stdout.split()
    assert keys, "the demo plate has no positions"

    # A short run with spawned worker processes of the new venv, compared with the
    # same transform applied here, by the source tree's engine, in one process.
    out_wheel = tmp_path / "out-wheel.zarr"
    _run(
        [
            exe,
            "run",
            demo,
            out_wheel,
            "-t",
            "gaussian_blur",
            "-p",
            "sigma_z=0.5",
            "--position",
            keys[0],
            "-w",
            "2",
            "--processes",
            "--no-progress",
        ],
        cwd=tmp_path,
        env=env,
    )
    out_here = tmp_path / "out-here.zarr"
    _run(
        [
            sys.executable,
            "-m",
            "napari_process_position.cli",
            "run",
            demo,
            out_here,
            "-t",
            "gaussian_blur",
            "-p",
            "sigma_z=0.5",
            "--position",
            keys[0],
            "-w",
            "1",
            "--no-progress",
        ],
        cwd=tmp_path,
    )
    import zarr

    got = zarr.open_array(str(out_wheel / keys[0] / "0"), mode="r")[...]
    want = zarr.open_array(str(out_here / keys[0] / "0"), mode="r")[...]
    source = zarr.open_array(str(demo / keys[0] / "0"), mode="r")[...]
    assert got.shape == want.shape == source.shape
    np.testing.assert_array_equal(got, want)
    assert not np.array_equal(got, source), "the run left the data unchanged"


NPE2_CHECK = """
import json, importlib.util
import npe2
from npe2 import PluginManifest

found = [r for r in PluginManifest.discover() if r.manifest is not None
         and r.manifest.name == "napari-process-position"]
errors = [repr(r.error) for r in PluginManifest.discover() if r.error is not None]
pm = npe2.PluginManager.instance()
pm.discover()
mf = pm.get_manifest("napari-process-position")
widget_cmds = {w.command for w in mf.contributions.widgets}
print(json.dumps({
    "found": len(found),
    "dist_path": str(found[0].distribution.locate_file("")) if found else "",
    "dist_files": [str(found[0].distribution.locate_file(f)) for f in found[0].distribution.files
                   if f.name == "napari.yaml"] if found else [],
    "errors": errors,
    "display_name": mf.display_name,
    "widgets": [w.display_name for w in mf.contributions.widgets],
    "widget_modules": [importlib.util.find_spec(c.python_name.split(":")[0]).origin
                       for c in mf.contributions.commands if c.id in widget_cmds],
    "sample_data": [s.key for s in (mf.contributions.sample_data or [])],
}))
"""


def test_napari_discovers_the_installed_plugin(venv):
    proc = _run([venv / "bin" / "python", "-c", NPE2_CHECK], env=_venv_env())
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["found"] == 1, f"npe2 found {info['found']} manifests; errors: {info['errors']}"
    assert not [e for e in info["errors"] if "process" in e.lower()], info["errors"]
    assert info["dist_files"], "the installed distribution has no napari.yaml"
    for path in info["dist_files"]:
        assert Path(path).resolve().is_relative_to(venv.resolve()), path
    assert info["widgets"] == ["Process position"]
    assert info["display_name"] == "Process position"
    for origin in info["widget_modules"]:
        assert Path(origin).is_relative_to(venv), f"the widget module comes from {origin}"
    assert info["sample_data"], "the demo plate sample is not registered"
