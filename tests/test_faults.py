"""Fault injection: nothing hangs, nothing completed is lost, the input is never touched.

Every case kills, starves or blocks something real (worker processes, the
command line process, a tmpfs that fills up, an immutable folder) and then
checks four things: the run stops within a bounded time with a clear error,
every volume it reported as written is intact, the input is byte-for-byte
unchanged, and a resumed run gives output identical to an uninterrupted one.

Killed Dask workers are covered in tests/test_dask.py
(``test_killed_worker_tasks_are_retried_and_nothing_is_missing``: the
LocalCluster reruns the tasks; ``test_killed_external_worker_fails_clearly_then_resume_completes``:
a cluster that does not retry stops the run with one line and --resume completes it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

import npp_fault_transforms as ft
from conftest import TESTS, random_tczyx, read_array, tree_digest, write_plate
from napari_process_position import (
    InputReadError,
    OutputWriteError,
    ProcessPool,
    TransformError,
    WorkerDiedError,
    process_single_position,
    read_position,
    stream_position,
)
from napari_process_position.core.records import records_dir
from napari_process_position.store.create import write_empty_plate
from napari_process_position.store.layout import OutputLayout

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "napari_process_position.cli"]
FT = f"{TESTS / 'npp_fault_transforms.py'}"
SHAPE = (8, 1, 4, 16, 16)
CLI_SHAPE = (14, 1, 4, 16, 16)


# -- helpers -------------------------------------------------------------------------------


def _records(position: Path) -> set[str]:
    folder = Path(records_dir(position))
    return {p.name for p in folder.glob("*.done")} if folder.exists() else set()


def _lock_files(root: Path) -> list[Path]:
    return list(root.rglob("*.__lock"))


def _alive(pids) -> list[int]:
    out = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
    return out


def _wait_gone(pids, timeout: float) -> list[int]:
    deadline = time.time() + timeout
    alive = _alive(pids)
    while alive and time.time() < deadline:
        time.sleep(0.05)
        alive = _alive(alive)
    return alive


def _started_pids(flag_dir: Path) -> set[int]:
    return {int(p.read_text()) for p in flag_dir.glob("start_t*") if p.read_text().strip()}


def _started(flag_dir: Path) -> set[int]:
    return {int(p.name[len("start_t") :]) for p in flag_dir.glob("start_t*")}


def _recorded(position: Path) -> set[int]:
    return {int(name[1:].split("_")[0]) for name in _records(position)}


def _in_flight(flag_dir: Path, position: Path) -> set[int]:
    return _started(flag_dir) - _recorded(position)


def _wait_for(predicate, timeout: float, what: str, proc=None) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the run ended before {what}: {proc.communicate()[1][-3000:]}")
        time.sleep(0.02)
    pytest.fail(f"timed out waiting for {what}")


class Setup:
    """An input plate, an empty output plate and the reference output of an uninterrupted run."""

    def __init__(self, root: Path, version: str = "0.5", shape=SHAPE):
        self.root = root
        self.data = random_tczyx(shape, "float32", seed=5, empty=((3, 0),), nan=())
        self.input = write_plate(root / "in.zarr", {"A/1/0": self.data}, version=version)
        self.src = self.input / "A/1/0"
        self.flags = root / "flags"
        self.flags.mkdir()
        layout = OutputLayout(shape, "<f4", (1,) * 5, ("a",) * shape[1])
        self.out = root / "out.zarr"
        write_empty_plate(self.out, {"A/1/0": layout}, version=version)
        self.dst = self.out / "A/1/0"
        ref = root / "ref.zarr"
        write_empty_plate(ref, {"A/1/0": layout}, version=version)
        process_single_position(ft.affine, self.src, ref / "A/1/0")
        self.expected = read_array(ref / "A/1/0")
        self.digest = tree_digest(self.input)

    def arm(self) -> None:
        (self.flags / "armed").write_text("")

    def disarm(self) -> None:
        (self.flags / "armed").unlink(missing_ok=True)

    def check_written(self, results) -> None:
        """Every volume reported written holds the reference values and has a record."""
        got = read_array(self.dst)
        records = _records(self.dst)
        for r in results:
            if r.status in ("written", "skipped"):
                t, c = r.output_time_index, r.output_channels[0]
                assert got[t, c].tobytes() == self.expected[t, c].tobytes(), r.label
                assert f"t{t}_c{c}.done" in records, r.label

    def check_input(self) -> None:
        assert tree_digest(self.input) == self.digest, "the input store was modified"

    def check_final(self) -> None:
        assert read_array(self.dst).tobytes() == self.expected.tobytes()
        assert not _lock_files(self.out), "tensorstore temp files were left in the output"
        self.check_input()


@pytest.fixture
def setup(tmp_path) -> Setup:
    return Setup(tmp_path)


def test_a_worker_killed_while_the_caller_holds_a_volume_is_reported_as_a_dead_worker(setup):
    """The caller (napari copying a volume into its layer) takes its time before asking for
    the next one; meanwhile a worker is killed and the pool breaks, so the engine's next
    submit raises BrokenProcessPool itself, before any future says so."""
    setup.arm()
    run = iter(
        stream_position(
            ft.announce, setup.src, setup.dst, num_workers=2, flag_dir=str(setup.flags), victim=2
        )
    )
    got = [next(run)]
    _wait_for(lambda: (setup.flags / "victim.pid").exists(), 60, "the victim's task")
    os.kill(int((setup.flags / "victim.pid").read_text()), signal.SIGKILL)
    time.sleep(1.5)  # the pool has seen its worker die (and refuses new tasks)
    with pytest.raises(WorkerDiedError) as info:
        got.extend(run)
    message = str(info.value)
    assert "killed by SIGKILL" in message and "in flight: t=2, c=0" in message, message
    setup.check_written(got)
    setup.check_input()


# -- 1. a worker killed with SIGKILL mid-task ------------------------------------------------------


def test_worker_sigkill_mid_task_stops_the_run_and_resume_completes(setup):
    """As the OOM killer does: SIGKILL one process worker while its task runs."""
    setup.arm()
    killed_at: list[float] = []

    def killer():
        pid_file = setup.flags / "victim.pid"
        deadline = time.time() + 60
        while time.time() < deadline and not (pid_file.exists() and pid_file.read_text()):
            time.sleep(0.01)
        killed_at.append(time.perf_counter())
        os.kill(int(pid_file.read_text()), signal.SIGKILL)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    run = stream_position(
        ft.announce,
        setup.src,
        setup.dst,
        num_workers=2,
        flag_dir=str(setup.flags),
        victim=5,
        seconds=0.05,
    )
    got = []
    with pytest.raises(WorkerDiedError) as info:
        for result in run:
            got.append(result)
    to_error = time.perf_counter() - killed_at[0]
    thread.join()
    assert to_error < 10, f"{to_error:.1f} s from the kill to the error"
    message = str(info.value)
    assert "killed by SIGKILL" in message and "t=5, c=0" in message
    assert "memory" in message and "resume" in message
    assert got, "volumes finished before the kill were reported"
    setup.check_written(got)
    setup.check_input()
    # The pool is gone: no worker is left running.
    assert not _wait_gone(_started_pids(setup.flags), 5)

    setup.disarm()
    statuses = [
        r.status
        for r in stream_position(
            ft.announce,
            setup.src,
            setup.dst,
            num_workers=2,
            resume=True,
            flag_dir=str(setup.flags),
            victim=5,
            seconds=0.05,
        )
    ]
    assert statuses.count("resumed") >= len(got)
    setup.check_final()


# -- a worker over its memory limit ---------------------------------------------------------------


def test_worker_over_its_memory_limit_says_out_of_memory(setup):
    setup.arm()
    limit = 3 * 2**30 // 2
    with ProcessPool(2, memory_limit_bytes=limit) as pool:
        pool.warm()  # both workers started and initialised, so both can be checked below
        start = time.perf_counter()
        got = []
        with pytest.raises(TransformError) as info:
            for result in stream_position(
                ft.hog,
                setup.src,
                setup.dst,
                pool=pool,
                flag_dir=str(setup.flags),
                victim=4,
                gib=3.0,
            ):
                got.append(result)
        elapsed = time.perf_counter() - start
        # The limit really applies in the workers, and the others survive a MemoryError.
        import resource

        for proc in pool.processes():
            assert resource.prlimit(proc.pid, resource.RLIMIT_AS)[0] == limit
    assert elapsed < 20
    message = str(info.value)
    assert "out of memory" in message and "MemoryError" in message, message
    assert "t=4, c=0" in message and "1.5 GiB" in message, message
    assert info.value.time_index == 4
    setup.check_written(got)
    setup.check_input()
    # Resume with more memory (here: no limit) completes the run.
    setup.disarm()
    statuses = [
        r.status
        for r in stream_position(
            ft.hog,
            setup.src,
            setup.dst,
            num_workers=2,
            resume=True,
            flag_dir=str(setup.flags),
            victim=4,
            gib=3.0,
        )
    ]
    assert "resumed" in statuses
    setup.check_final()


def test_memory_limit_too_small_for_the_worker_itself_is_explained(setup):
    """Below what numpy and tensorstore map, native code aborts: the error says so."""
    with (
        ProcessPool(1, memory_limit_bytes=64 * 2**20) as pool,
        pytest.raises((WorkerDiedError, TransformError)) as info,
    ):
        list(stream_position(ft.affine, setup.src, setup.dst, pool=pool))
    message = str(info.value)
    assert "memory limit of 64 MiB" in message, message
    setup.check_input()


# -- 2. the caller: SIGTERM (graceful) and SIGKILL (only the caller) ------------------------------


def _cli_run(setup: Setup, extra=(), seconds: float = 0.6, **popen):
    out = setup.root / "cli_out.zarr"
    args = [
        *CLI,
        "-v",
        "run",
        str(setup.input),
        str(out),
        "-t",
        f"{FT}:announce",
        "-p",
        f"flag_dir={setup.flags}",
        "-p",
        f"seconds={seconds}",
        "-w",
        "2",
        "--processes",
        "--no-progress",
        *extra,
    ]
    return out, args


def _reference_cli_output(setup: Setup, seconds: float) -> np.ndarray:
    """What an uninterrupted run of the same settings writes (run in this process)."""
    from napari_process_position import RunConfig
    from napari_process_position.batch.prepare import prepare_run

    config = RunConfig(
        input=str(setup.input), output=str(setup.root / "ref_cli.zarr"), transform=f"{FT}:affine"
    )
    for _ in prepare_run(config):
        pass
    return read_array(setup.root / "ref_cli.zarr/A/1/0")


def test_sigterm_lets_the_volumes_in_flight_finish_then_stops(tmp_path):
    """A scheduler's SIGTERM to the whole process group: graceful stop, exit 143, resumable."""
    setup = Setup(tmp_path, shape=CLI_SHAPE)
    out, args = _cli_run(setup, seconds=0.8)
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        position = out / "A/1/0"
        _wait_for(lambda: len(_records(position)) >= 2, 90, "two volumes were written", proc)
        # Wait until both workers are in the middle of a task, then terminate everything.
        _wait_for(
            lambda: len(_in_flight(setup.flags, position)) >= 2, 30, "two tasks were running", proc
        )
        os.killpg(proc.pid, signal.SIGTERM)
        sent = time.perf_counter()
        _, stderr = proc.communicate(timeout=60)
        to_exit = time.perf_counter() - sent
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 143, stderr[-3000:]
    assert to_exit < 15, f"{to_exit:.1f} s from SIGTERM to exit"
    assert "Traceback" not in stderr
    assert "SIGTERM received" in stderr and "--resume" in stderr
    started = _started(setup.flags)
    records = _records(position)
    assert len(started) < CLI_SHAPE[0] - 2, "no new tasks start after SIGTERM"
    # Every task that had started (in flight at SIGTERM) finished and was recorded.
    assert {f"t{t}_c0.done" for t in started} <= records, (started, records)
    assert not _wait_gone(_started_pids(setup.flags), 5), "workers outlived the run"
    expected = _reference_cli_output(setup, 0.8)
    got = read_array(position)
    for name in records:
        t = int(name[1:].split("_")[0])
        assert got[t].tobytes() == expected[t].tobytes()
    setup.check_input()
    # Resume completes it.
    result = subprocess.run([*args, "--resume"], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count(": resumed") == len(records)
    assert read_array(position).tobytes() == expected.tobytes()
    assert not _lock_files(out)
    setup.check_input()


def test_sigkill_of_the_caller_alone_leaves_no_workers_behind(tmp_path):
    """Only the command-line process is killed (not its group): its workers end by themselves."""
    setup = Setup(tmp_path, shape=CLI_SHAPE)
    out, args = _cli_run(setup, seconds=0.5)
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        _wait_for(lambda: len(_records(out / "A/1/0")) >= 2, 90, "two volumes were written", proc)
        workers = {
            p.pid
            for p in psutil.Process(proc.pid).children(recursive=True)
            if "resource_tracker" not in " ".join(p.cmdline())
        }
        assert len(workers) >= 2
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        left = _wait_gone(workers, 10)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert not left, "workers kept running after their caller was killed"
    setup.check_input()
    done = _records(out / "A/1/0")
    result = subprocess.run([*args, "--resume"], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count(": resumed") >= len(done)
    assert read_array(out / "A/1/0").tobytes() == _reference_cli_output(setup, 0.5).tobytes()
    assert not _lock_files(out)
    setup.check_input()


# -- 3. disk full and permission denied -----------------------------------------------------


@contextlib.contextmanager
def _small_tmpfs(path: Path, size: str):
    path.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        pytest.skip(
            f"cannot mount a tmpfs here ({proc.stderr.strip()}); the RLIMIT_FSIZE case "
            "covers a full disk"
        )
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _fsize_limit(limit: int):
    def apply() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() fails with EFBIG instead

    return apply


@pytest.mark.parametrize("mechanism", ["tmpfs", "rlimit_fsize"])
def test_disk_full_while_writing(tmp_path, mechanism):
    """The output's disk fills up mid-run: one error line per failed position, resume finishes."""
    shape = (6, 1, 32, 64, 64)  # 512 KiB per float32 volume, noise: it hardly compresses
    setup = Setup(tmp_path, shape=shape)
    preexec = None
    stack = contextlib.ExitStack()
    if mechanism == "tmpfs":
        stack.enter_context(_small_tmpfs(tmp_path / "disk", "1200k"))
        out = tmp_path / "disk" / "out.zarr"
    else:
        out = tmp_path / "out_fsize.zarr"
        preexec = _fsize_limit(400_000)  # metadata fits, no volume does
    with stack:
        args = [
            *CLI,
            "-v",
            "run",
            str(setup.input),
            str(out),
            "-t",
            f"{FT}:affine",
            "-w",
            "2",
            "--processes",
            "--no-progress",
        ]
        start = time.perf_counter()
        proc = subprocess.run(args, capture_output=True, text=True, timeout=180, preexec_fn=preexec)
        elapsed = time.perf_counter() - start
        assert proc.returncode == 1, proc.stderr[-3000:]
        assert elapsed < 60
        assert "Traceback" not in proc.stderr
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, proc.stderr[-3000:]
        reason = "No space left on device" if mechanism == "tmpfs" else "File too large"
        assert errors[0].startswith("error: A/1/0: ") and reason in errors[0], errors[0]
        assert " t=" in errors[0], errors[0]
        assert "--resume" in proc.stderr
        position = out / "A/1/0"
        done = _records(position)
        if mechanism == "tmpfs":
            assert done, "the volumes that fitted were completed"
        got = read_array(position)
        for name in done:
            t = int(name[1:].split("_")[0])
            assert got[t].tobytes() == setup.expected[t].tobytes()
        setup.check_input()
        # Free space (grow the tmpfs / lift the limit) and resume.
        if mechanism == "tmpfs":
            subprocess.run(["mount", "-o", "remount,size=64m", str(tmp_path / "disk")], check=True)
        result = subprocess.run([*args, "--resume"], capture_output=True, text=True, timeout=180)
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stderr.count(": resumed") == len(done)
        assert read_array(position).tobytes() == setup.expected.tobytes()
        setup.check_input()


@contextlib.contextmanager
def deny_writes(folder: Path):
    """Make ``folder`` refuse new files, for root too: ``chattr +i`` as root, else chmod."""
    use_chattr = os.geteuid() == 0 and shutil.which("chattr")
    if use_chattr:
        proc = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True)
        use_chattr = proc.returncode == 0
    if not use_chattr:
        if os.geteuid() == 0:
            pytest.skip("running as root without chattr: nothing can deny root a write")
        mode = folder.stat().st_mode
        folder.chmod(0o555)
    try:
        yield "Operation not permitted" if use_chattr else "Permission denied"
    finally:
        if use_chattr:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        else:
            folder.chmod(mode)


def test_output_folder_not_writable_is_one_line_and_writes_nothing(tmp_path):
    setup = Setup(tmp_path)
    parent = tmp_path / "locked"
    parent.mkdir()
    with deny_writes(parent) as reason:
        proc = subprocess.run(
            [
                *CLI,
                "run",
                str(setup.input),
                str(parent / "out.zarr"),
                "-t",
                f"{FT}:affine",
                "--no-progress",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and reason in lines[0], proc.stderr
    assert lines[0].startswith(f"error: cannot create the output {parent / 'out.zarr'}: "), lines[0]
    assert not list(parent.iterdir())
    setup.check_input()


@pytest.mark.parametrize("mode", ["serial", "processes"])
def test_output_array_not_writable_names_the_volume_and_resume_completes(setup, mode):
    """An existing output (resume, init-output) whose array folder refuses writes."""
    workers = 2 if mode == "processes" else 1
    # Half of the run completes; then its array folder is locked.
    list(
        stream_position(
            ft.affine, setup.src, setup.dst, input_time_indices=[0, 1, 2, 3], num_workers=workers
        )
    )
    before = read_array(setup.dst)
    shard_root = Path(read_position(setup.dst).array_path) / "c"
    with deny_writes(shard_root) as reason:
        start = time.perf_counter()
        with pytest.raises(OutputWriteError) as info:
            list(
                stream_position(
                    ft.affine,
                    setup.src,
                    setup.dst,
                    num_workers=workers,
                    resume=True,
                    resume_token=None,
                )
            )
        assert time.perf_counter() - start < 20
    message = str(info.value)
    assert "writing t=" in message and "c=0" in message and str(setup.dst) in message
    assert reason in message, message
    got = read_array(setup.dst)
    assert got[:4].tobytes() == before[:4].tobytes() == setup.expected[:4].tobytes()
    setup.check_input()
    list(stream_position(ft.affine, setup.src, setup.dst, num_workers=workers, resume=True))
    setup.check_final()


# -- 4. damaged input chunks ------------------------------------------------------------------


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_truncated_input_chunk_is_an_input_read_error_naming_the_volume(tmp_path, version):
    setup = Setup(tmp_path, version=version)
    grid = read_position(setup.src).chunk_grid
    [key] = grid.volume_files(6, [0])
    chunk = Path(grid.array_path, *key.split("/"))
    with open(chunk, "r+b") as fh:
        fh.truncate(chunk.stat().st_size // 3)
    damaged = tree_digest(setup.input)
    for workers in (1, 2):
        got = []
        start = time.perf_counter()
        with pytest.raises(InputReadError) as info:
            for result in stream_position(
                ft.affine, setup.src, setup.dst, num_workers=workers, resume=True
            ):
                got.append(result)
        assert time.perf_counter() - start < 30
        message = str(info.value)
        assert message.startswith("reading t=6, c=0 from ") and setup.src.name in message, message
        setup.check_written(got)
    assert tree_digest(setup.input) == damaged, "the engine must not repair or touch the input"
