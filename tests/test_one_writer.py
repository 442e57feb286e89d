"""One writer per output position (issue #23, item 5): real `process-position run` processes.

A run holds a lock per output position (and a shared one on the output, or an exclusive one
when it replaces the whole output) for as long as it writes. A second run refuses at once,
naming the first (pid and host), or waits with --wait; a killed holder's lock is taken over.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import TESTS, random_tczyx, read_array, write_plate
from napari_process_position import OutputInUseError, RunConfig, UsageError, prepare_run
from napari_process_position.core.records import writers_dir

CLI = [sys.executable, "-m", "napari_process_position.cli"]
SLOW = f"{TESTS / 'npp_test_transforms.py'}:slow"
SCALE = f"{TESTS / 'npp_test_transforms.py'}:scale_offset"


@pytest.fixture
def plate(tmp_path):
    data = {
        k: random_tczyx((3, 1, 2, 8, 8), "float32", seed=i, empty=(), nan=())
        for i, k in enumerate(["A/1/0", "A/2/0"])
    }
    return write_plate(tmp_path / "in.zarr", data), data


def _start(*args: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CLI, "run", *map(str, args), "--no-progress", "-w", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _cli(*args: object, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "run", *map(str, args), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _finish(proc: subprocess.Popen[str], timeout: float = 240) -> tuple[int, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out + err


def _wait_for_lock(out, key: str, proc: subprocess.Popen[str]) -> None:
    """Until the run ``proc`` holds position ``key``'s lock (its note names its pid)."""
    path = os.path.join(writers_dir(out), "positions", *key.split("/")) + ".lock"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail("the first run ended early: " + "".join(proc.communicate()))
        if os.path.exists(path):
            with open(path, encoding="utf-8") as fh:
                if f"pid {proc.pid} " in fh.read():
                    return
        time.sleep(0.05)
    proc.kill()
    pytest.fail("the first run never took its lock")


def test_second_run_refuses_at_once_naming_the_first(plate, tmp_path):
    src, data = plate
    out = tmp_path / "out.zarr"
    first = _start(src, out, "-t", SLOW, "-p", "seconds=4", "--position", "A/1/0")
    _wait_for_lock(out, "A/1/0", first)
    # The same output, replaced: refused before anything is deleted.
    started = time.monotonic()
    second = _cli(src, out, "-t", SCALE, "--overwrite")
    assert second.returncode == 1, second.stderr
    assert time.monotonic() - started < 60
    assert "Traceback" not in second.stderr
    lines = [line for line in second.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, second.stderr
    assert (
        f"is being written by another run (pid {first.pid} on {socket.gethostname()}" in (lines[0])
    )
    # The same position, continued: refused too.
    third = _cli(src, out, "-t", SLOW, "-p", "seconds=4", "--position", "A/1/0", "--resume")
    assert third.returncode == 1 and "position A/1/0 of" in third.stderr, third.stderr
    # Another position of the same output (a job array): runs alongside.
    fourth = _cli(src, out, "-t", SLOW, "-p", "seconds=0", "--position", "A/2/0", "--resume")
    assert fourth.returncode == 0, fourth.stderr
    assert first.poll() is None  # (all of them while the first was writing)
    code, text = _finish(first)
    assert code == 0 and "done in" in text, text
    np.testing.assert_array_equal(read_array(out / "A/1/0"), data["A/1/0"])
    np.testing.assert_array_equal(read_array(out / "A/2/0"), data["A/2/0"])


def test_wait_starts_when_the_first_run_ends(plate, tmp_path):
    src, data = plate
    out = tmp_path / "out.zarr"
    first = _start(src, out, "-t", SLOW, "-p", "seconds=4", "--position", "A/1/0")
    _wait_for_lock(out, "A/1/0", first)
    second = _start(src, out, "-t", SCALE, "--position", "A/1/0", "--overwrite", "--wait")
    code, text = _finish(first)
    assert code == 0, text
    code, text = _finish(second)
    assert code == 0, text
    assert "waiting for the run writing" in text and f"pid {first.pid} " in text
    np.testing.assert_array_equal(read_array(out / "A/1/0"), data["A/1/0"] * 2 + 1)


def test_a_killed_holder_is_taken_over(plate, tmp_path):
    src, data = plate
    out = tmp_path / "out.zarr"
    first = _start(src, out, "-t", SLOW, "-p", "seconds=5", "--position", "A/1/0")
    _wait_for_lock(out, "A/1/0", first)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    code, text = _finish(_start(src, out, "-t", SCALE, "--position", "A/1/0", "--overwrite"))
    assert code == 0, text
    assert "taking over the lock of a run that ended without releasing it" in text
    assert f"pid {first.pid} " in text
    np.testing.assert_array_equal(read_array(out / "A/1/0"), data["A/1/0"] * 2 + 1)


def test_python_api_one_writer_until_the_run_ends(plate, tmp_path):
    src, data = plate
    config = RunConfig(input=str(src), output=str(tmp_path / "out.zarr"), transform=SCALE)
    batch = prepare_run(config)
    again = config.model_copy(update={"overwrite": True})
    with pytest.raises(OutputInUseError, match=rf"another run \(pid {os.getpid()} on "):
        prepare_run(again)
    list(batch)  # the lock goes with the end of the run
    with pytest.raises(UsageError, match="prepare_run"):
        list(batch)  # (it no longer holds the output: no second pass over it)
    list(prepare_run(again))
    np.testing.assert_array_equal(read_array(tmp_path / "out.zarr/A/2/0"), data["A/2/0"] * 2 + 1)
