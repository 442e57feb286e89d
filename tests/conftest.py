"""Shared fixtures: real OME-Zarr plates on disk, and the iohub reference interpreter."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parent / "data"
TESTS = Path(__file__).parent


def write_plate(
    path: Path,
    data: dict[str, np.ndarray],
    version: str = "0.5",
    channel_names: tuple[str, ...] | None = None,
    scale=(1.0, 1.0, 2.0, 0.5, 0.5),
) -> Path:
    """Write a plate with our own writer: key -> TCZYX array."""

    from napari_process_position.store.create import write_empty_plate
    from napari_process_position.store.layout import OutputLayout
    from napari_process_position.store.metadata import read_position

    first = next(iter(data.values()))
    names = channel_names or tuple(f"ch{i}" for i in range(first.shape[1]))
    layouts = {
        k: OutputLayout(shape=v.shape, dtype=v.dtype.str, scale=scale, channel_names=names)
        for k, v in data.items()
    }
    store = write_empty_plate(path, layouts, version=version)
    for key, array in data.items():
        info = read_position(store.position_path(key), key)
        info.open_array(write=True).write(array).result()
    return path


def random_tczyx(shape, dtype, seed=0, empty=((1, 0),), nan=((2, 1),)) -> np.ndarray:
    """Random data with all-zero volumes at ``empty`` (t, c) and all-NaN ones at ``nan``."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        array = rng.normal(100, 20, size=shape).astype(dtype)
    else:
        hi = min(np.iinfo(dtype).max, 4000)
        array = rng.integers(1, hi, size=shape).astype(dtype)
    for t, c in empty:
        if t < shape[0] and c < shape[1]:
            array[t, c] = 0
    if dtype.kind == "f":
        for t, c in nan:
            if t < shape[0] and c < shape[1]:
                array[t, c] = np.nan
    return array


def read_array(position_path) -> np.ndarray:
    """Read a position's array 0 with zarr-python (an independent reader)."""
    import zarr

    return zarr.open_array(os.path.join(position_path, "0"), mode="r")[...]


def tree_digest(path: Path) -> str:
    """Digest of every file's path, size and content under ``path``."""
    h = hashlib.sha256()
    for root, dirs, files in sorted(os.walk(path)):
        dirs.sort()
        for name in sorted(files):
            p = Path(root) / name
            h.update(str(p.relative_to(path)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def path_snapshot(path: Path) -> dict[str, object]:
    """Everything at ``path``, byte for byte: each entry's kind, mode, and content or target.

    Works for a folder (walked, links not followed), a plain file, a link, or nothing.
    """

    def entry(p: Path) -> tuple[object, ...]:
        st = p.lstat()
        if p.is_symlink():
            return ("link", os.readlink(p))
        if p.is_dir():
            return ("dir", st.st_mode)
        return ("file", st.st_mode, hashlib.sha256(p.read_bytes()).hexdigest())

    if not os.path.lexists(path):
        return {}
    found: dict[str, object] = {".": entry(path)}
    if path.is_dir() and not path.is_symlink():
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                p = Path(root) / name
                found[str(p.relative_to(path))] = entry(p)
    return found


@pytest.fixture
def fixture_copy(tmp_path):
    """Copy one of the iohub-written fixture plates into tmp_path."""

    def copy(name: str) -> Path:
        target = tmp_path / name
        shutil.copytree(DATA / name, target)
        for root, dirs, files in os.walk(target):
            for n in dirs + files:
                os.chmod(os.path.join(root, n), 0o755 if n in dirs else 0o644)
        return target

    return copy


@pytest.fixture(scope="session")
def iohub_python() -> str:
    """Path of a Python that has iohub 0.3.11 (Python >= 3.12), from NPP_IOHUB_PYTHON."""
    exe = os.environ.get("NPP_IOHUB_PYTHON", "")
    if exe and Path(exe).exists():
        check = subprocess.run(
            [exe, "-c", "import iohub; print(iohub.__version__)"], capture_output=True, text=True
        )
        if check.returncode == 0:
            return exe
        reason = f"NPP_IOHUB_PYTHON={exe} cannot import iohub: {check.stderr.strip()[-300:]}"
    else:
        reason = (
            "NPP_IOHUB_PYTHON is not set to a Python with iohub 0.3.11 (scripts/test.sh makes one)"
        )
    if os.environ.get("NPP_REQUIRE_IOHUB"):
        pytest.fail(reason)
    pytest.skip(reason)


def run_iohub(iohub_python: str, spec: dict) -> None:
    """Run tests/iohub_reference.py under the iohub interpreter."""
    import json

    proc = subprocess.run(
        [iohub_python, str(TESTS / "iohub_reference.py"), json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=str(TESTS),
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"iohub reference run failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
        )


@pytest.fixture
def python_exe() -> str:
    return sys.executable


@pytest.fixture
def cpu_hog():
    """Two busy processes for the length of the test (this machine has 2 cores).

    For tests of races that a loaded machine lets happen (CI shares its cores).
    """
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    yield
    for hog in hogs:
        hog.kill()
        hog.wait()


def pytest_sessionfinish(session, exitstatus):
    """End process-pool manager threads left waiting on a pipe whose workers are all dead.

    Interpreter exit joins them: one blocked on half a result (a worker killed mid-send)
    would keep a suite that passed from ever ending. ``ProcessPool`` ends its own; this
    catches any other pool a test left, and says so.
    """
    import concurrent.futures.process as cf_process
    import threading

    for thread in threading.enumerate():
        if not isinstance(thread, cf_process._ExecutorManagerThread) or not thread.is_alive():
            continue
        procs = list(getattr(thread, "processes", {}).values())
        if any(p.is_alive() for p in procs):
            continue
        writer = getattr(getattr(thread, "result_queue", None), "_writer", None)
        if writer is not None:
            writer.close()
            thread.join(5)
            print(f"\nconftest: ended a process pool's manager thread left waiting ({thread.name})")
