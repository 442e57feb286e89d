"""Dask: a LocalCluster, scheduler and workers as separate processes, killed workers, SLURM.

Everything here is real: worker processes that read and write the store on
disk, SIGKILL of a worker mid-run, the command line in a subprocess. Every
cluster and process started here is stopped in its fixture's teardown, and
the teardown checks that none is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from conftest import TESTS, random_tczyx, read_array, write_plate
from napari_process_position import RunConfig
from napari_process_position.batch.dask import DaskExecutor
from napari_process_position.batch.prepare import prepare_run
from napari_process_position.core.records import records_dir

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "napari_process_position.cli"]
KEYS = ["A/1/0", "A/2/0", "B/1/0"]
SLOW = f"{TESTS / 'npp_test_transforms.py'}:slow"


def _gone(pids, timeout=20.0) -> list[int]:
    """Wait for processes to end; return those still alive."""
    deadline = time.time() + timeout
    alive = list(pids)
    while alive and time.time() < deadline:
        alive = [
            p
            for p in alive
            if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
        ]
        time.sleep(0.1)
    return alive


def _children() -> set[int]:
    """This process's descendants, less multiprocessing's resource tracker (it lives on)."""
    out = set()
    for proc in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "resource_tracker" not in " ".join(proc.cmdline()):
                out.add(proc.pid)
    return out


@pytest.fixture(scope="module")
def plate(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("dask") / "in.zarr"
    data = {k: random_tczyx((4, 2, 4, 16, 16), "float32", seed=30 + i) for i, k in enumerate(KEYS)}
    return write_plate(path, data)


@pytest.fixture(scope="module")
def local_client():
    """A LocalCluster of 2 single-threaded worker processes, as --dask-local 2 starts."""
    from distributed import Client, LocalCluster

    before = _children()
    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    client = Client(cluster, set_as_default=False)
    pids = set()
    try:
        yield client
    finally:
        with contextlib.suppress(Exception):
            pids = set(client.run(os.getpid).values())
        client.close()
        cluster.close()
        started = _children() - before
        leftover = _gone(pids | started)
        for pid in leftover:
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()
        assert not leftover, f"LocalCluster left processes behind: {leftover}"


@contextlib.contextmanager
def cluster_processes(root: Path, workers: int, env: dict[str, str] | None = None):
    """`dask scheduler` and `dask worker` processes on 127.0.0.1; yields (client, scheduler file).

    Every process (and its children) is ended on exit, and the exit checks none is left.
    """
    from distributed import Client

    sched_file = root / "scheduler.json"
    env = {**os.environ, **(env or {})}
    dask_exe = Path(sys.executable).with_name("dask")
    base = [str(dask_exe)] if dask_exe.exists() else [sys.executable, "-m", "dask"]
    procs: list[subprocess.Popen] = []
    logs = []

    def start(args: list[str], name: str) -> None:
        log = open(root / f"{name}.log", "w")  # noqa: SIM115
        logs.append(log)
        procs.append(
            subprocess.Popen(
                [*base, *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                cwd=root,
            )
        )

    client = None
    try:
        start(
            [
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                str(sched_file),
            ],
            "scheduler",
        )
        deadline = time.time() + 60
        while not sched_file.exists() and time.time() < deadline:
            time.sleep(0.1)
        assert sched_file.exists(), (root / "scheduler.log").read_text()
        for i in range(workers):
            start(
                [
                    "worker",
                    "--scheduler-file",
                    str(sched_file),
                    "--nthreads",
                    "1",
                    "--no-dashboard",
                    "--local-directory",
                    str(root / f"w{i}"),
                    "--host",
                    "127.0.0.1",
                ],
                f"worker{i}",
            )
        client = Client(scheduler_file=str(sched_file), set_as_default=False, timeout=30)
        client.wait_for_workers(workers, timeout=90)
        yield client, sched_file
    finally:
        if client is not None:
            client.close()
        tree = set()
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                tree |= {p.pid for p in psutil.Process(proc.pid).children(recursive=True)}
            tree.add(proc.pid)
        for proc in reversed(procs):  # workers first, then the scheduler
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        for log in logs:
            log.close()
        leftover = _gone(tree)
        for pid in leftover:
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()
        assert not leftover, f"the cluster's processes were left behind: {leftover}"


@pytest.fixture(scope="module")
def external_cluster(tmp_path_factory):
    """A scheduler and two workers as separate processes, as on a real cluster.

    The scheduler declares a task bad as soon as one worker dies running it
    (allowed-failures 0), so a kill surfaces as an error instead of a retry.
    """
    with cluster_processes(
        tmp_path_factory.mktemp("cluster"),
        2,
        {"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"},
    ) as cluster:
        yield cluster


def local_reference(plate: Path, out: Path, transform: str, **params) -> None:
    """The same run on this machine (serial), to compare Dask's output with."""
    config = RunConfig(input=str(plate), output=str(out), transform=transform, params=params)
    batch = prepare_run(config)
    for _ in batch:
        pass
    assert not batch.failed, batch.errors


def assert_same_plates(a: Path, b: Path, keys=KEYS) -> None:
    for key in keys:
        got, want = read_array(a / key), read_array(b / key)
        assert got.dtype == want.dtype and got.shape == want.shape
        assert got.tobytes() == want.tobytes(), key


# -- LocalCluster ---------------------------------------------------------------------------


def test_batch_on_local_cluster_matches_local_run_and_only_small_results_travel(
    local_client, plate, tmp_path
):
    pids = set(local_client.run(os.getpid).values())
    config = RunConfig(
        input=str(plate),
        output=str(tmp_path / "dask.zarr"),
        transform="gaussian_blur",
        params={"sigma_y": 1.3},
    )
    batch = prepare_run(config, executor=DaskExecutor(local_client))
    results = list(batch)
    assert not batch.failed, batch.errors
    assert len(results) == batch.total
    for _key, result in results:
        assert result.volume is None  # with an output store no volume comes back
        assert len(pickle.dumps(result)) < 2048
        assert result.status in ("written", "skipped")
        # The worker that read and wrote the volume is a Dask worker process, not this one.
        assert int(result.worker.split()[1]) in pids, result.worker
    local_reference(plate, tmp_path / "local.zarr", "gaussian_blur", sigma_y=1.3)
    assert_same_plates(tmp_path / "dask.zarr", tmp_path / "local.zarr")


def test_preview_on_local_cluster_brings_volumes_back(local_client, plate):
    """Previews (no output store) are the one case where volumes travel back."""
    config = RunConfig(
        input=str(plate),
        positions=["A/2/0"],
        transform="soft_magnitude",
        channels=[1],
        times=[0, 3],
    )
    on_dask = {
        (r.output_time_index, r.output_channels): r
        for _, r in prepare_run(config, executor=DaskExecutor(local_client))
    }
    here = {(r.output_time_index, r.output_channels): r for _, r in prepare_run(config)}
    assert on_dask.keys() == here.keys() and len(here) == 2
    for index, result in here.items():
        assert on_dask[index].status == result.status == "preview"
        assert on_dask[index].volume.tobytes() == result.volume.tobytes()
    # What the widget does for "preview on a cluster": put the address in the config.
    batch = prepare_run(
        config.model_copy(update={"dask_scheduler": local_client.scheduler.address})
    )
    assert "Dask cluster" in batch.start()
    session_client = batch.dask.client
    by_address = {(r.output_time_index, r.output_channels): r.volume for _, r in batch}
    assert {k: v.tobytes() for k, v in by_address.items()} == {
        k: r.volume.tobytes() for k, r in here.items()
    }
    assert batch.dask is None and session_client.status == "closed"  # disconnected at the end
    assert len(local_client.scheduler_info()["workers"]) == 2  # the cluster itself still runs


def test_failing_position_on_dask_keeps_the_others(local_client, tmp_path):
    transforms = tmp_path / "t.py"
    transforms.write_text(
        textwrap.dedent("""
        import numpy as np
        def fail_on(czyx, marker: float = 5555.0):
            if np.any(czyx == marker):
                raise ValueError("marker found")
            return czyx * 3
    """)
    )
    data = {
        k: random_tczyx((2, 2, 3, 8, 8), "float32", seed=i, empty=(), nan=())
        for i, k in enumerate(KEYS)
    }
    data["B/1/0"][1, 0, 0, 0, 0] = 5555.0
    src = write_plate(tmp_path / "in.zarr", data)
    config = RunConfig(
        input=str(src), output=str(tmp_path / "out.zarr"), transform=f"{transforms}:fail_on"
    )
    batch = prepare_run(config, executor=DaskExecutor(local_client))
    for _ in batch:
        pass
    assert batch.failed and len(batch.errors) == 1
    assert batch.errors[0].startswith("B/1/0:") and "marker found" in batch.errors[0]
    for key in ("A/1/0", "A/2/0"):
        np.testing.assert_array_equal(read_array(tmp_path / "out.zarr" / key), data[key] * 3)


def test_killed_worker_tasks_are_retried_and_nothing_is_missing(local_client, plate, tmp_path):
    """SIGKILL a Dask worker mid-run: Dask reruns its tasks elsewhere; no volume is missing."""
    out = tmp_path / "out.zarr"
    config = RunConfig(
        input=str(plate),
        output=str(out),
        transform=SLOW,
        params={"seconds": 0.25},
        positions=KEYS[:2],
    )
    batch = prepare_run(config, executor=DaskExecutor(local_client))
    victim = None
    seen = 0
    for _, _result in batch:
        seen += 1
        if seen == 3:
            pids = local_client.run(os.getpid)
            victim = next(iter(pids.values()))
            os.kill(victim, signal.SIGKILL)
    assert victim is not None
    assert not batch.failed, batch.errors
    assert seen == batch.total
    assert victim not in local_client.run(os.getpid).values()  # it really died (and was replaced)
    for key in KEYS[:2]:
        src = read_array(plate / key)
        got = read_array(out / key)
        for t in range(src.shape[0]):
            for c in range(src.shape[1]):
                volume = src[t, c]
                if np.any(volume) and not np.isnan(volume).all():
                    assert got[t, c].tobytes() == volume.tobytes()
    # Resume finds every volume complete.
    again = prepare_run(
        config.model_copy(update={"resume": True}), executor=DaskExecutor(local_client)
    )
    assert {r.status for _, r in again} == {"resumed"}


def test_cli_dask_local_runs_and_stops_its_cluster(plate, tmp_path):
    out = tmp_path / "out.zarr"
    proc = subprocess.Popen(
        [
            *CLI,
            "run",
            str(plate),
            str(out),
            "-t",
            "soft_magnitude",
            "--dask-local",
            "2",
            "--no-progress",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    children: set[int] = set()
    while proc.poll() is None:
        with contextlib.suppress(psutil.Error):
            children |= {p.pid for p in psutil.Process(proc.pid).children(recursive=True)}
        time.sleep(0.1)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr[-3000:]
    assert "LocalCluster of 2" in stderr and "INFO" not in stderr
    assert len(children) >= 2, "the workers run in their own processes"
    assert not _gone(children), "the LocalCluster's processes outlive the run"
    local_reference(plate, tmp_path / "local.zarr", "soft_magnitude")
    assert_same_plates(out, tmp_path / "local.zarr")


# -- a scheduler and workers as separate processes -------------------------------------------


def test_cli_on_external_scheduler(external_cluster, plate, tmp_path):
    client, sched_file = external_cluster
    address = client.scheduler.address
    out = tmp_path / "out.zarr"
    proc = subprocess.run(
        [
            *CLI,
            "run",
            str(plate),
            str(out),
            "-t",
            "binning",
            "-p",
            "bin_y=2",
            "--dask-scheduler",
            address,
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert address in proc.stderr
    local_reference(plate, tmp_path / "local.zarr", "binning", bin_y=2)
    assert_same_plates(out, tmp_path / "local.zarr")
    # A scheduler file works as the address too; the cluster itself keeps running afterwards.
    cfg = RunConfig(
        input=str(plate),
        output=str(tmp_path / "f.zarr"),
        transform="binning",
        params={"bin_y": 2},
        positions=["A/1/0"],
        dask_scheduler=str(sched_file),
    )
    proc = subprocess.run(
        [*CLI, "run", "--config", str(cfg.save(tmp_path / "r.yaml")), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_plates(tmp_path / "f.zarr", tmp_path / "local.zarr", ["A/1/0"])
    assert len(client.scheduler_info()["workers"]) == 2


def test_killed_external_worker_fails_clearly_then_resume_completes(external_cluster, tmp_path):
    client, _ = external_cluster
    data = {
        k: random_tczyx((6, 2, 3, 8, 8), "float32", seed=40 + i, empty=(), nan=())
        for i, k in enumerate(KEYS[:2])
    }
    src = write_plate(tmp_path / "in.zarr", data)
    out = tmp_path / "out.zarr"
    args = [
        *CLI,
        "-v",
        "run",
        str(src),
        str(out),
        "-t",
        SLOW,
        "-p",
        "seconds=0.4",
        "--dask-scheduler",
        client.scheduler.address,
        "--no-progress",
    ]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        records = lambda: list(Path(records_dir(out)).glob("*/*/*/*.done"))  # noqa: E731
        deadline = time.time() + 90
        while time.time() < deadline and len(records()) < 3 and proc.poll() is None:
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        victim = next(iter(client.run(os.getpid).values()))
        os.kill(victim, signal.SIGKILL)
        _, stderr = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, stderr[-3000:]
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    # The killed worker is named; on a loaded machine the client may instead lose its link to
    # the scheduler while the worker dies (its futures come back "lost"), which is said as such.
    said = (("worker" in line and "died" in line) or "lost" in line for line in errors)
    assert errors and all(said), stderr[-3000:]
    assert any(line.split()[1].rstrip(":,") in KEYS for line in errors)
    assert "--resume" in stderr
    client.wait_for_workers(2, timeout=60)  # the nanny restarts the killed worker
    result = subprocess.run([*args, "--resume"], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count(": resumed") >= 3
    for key, array in data.items():
        np.testing.assert_array_equal(read_array(out / key), array)


def test_lost_scheduler_stops_the_run_with_a_clear_message(tmp_path):
    data = {
        k: random_tczyx((6, 2, 3, 8, 8), "float32", seed=50 + i, empty=(), nan=())
        for i, k in enumerate(KEYS)
    }
    src = write_plate(tmp_path / "in.zarr", data)
    out = tmp_path / "out.zarr"
    with cluster_processes(tmp_path, 1) as (client, sched_file):
        scheduler_pid = client.run_on_scheduler(os.getpid)
        proc = subprocess.Popen(
            [
                *CLI,
                "run",
                str(src),
                str(out),
                "-t",
                SLOW,
                "-p",
                "seconds=0.3",
                "--dask-scheduler",
                str(sched_file),
                "--no-progress",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            records = lambda: list(Path(records_dir(out)).glob("*/*/*/*.done"))  # noqa: E731
            deadline = time.time() + 90
            while time.time() < deadline and len(records()) < 2 and proc.poll() is None:
                time.sleep(0.05)
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            os.kill(scheduler_pid, signal.SIGKILL)
            _, stderr = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 1, stderr[-3000:]
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert any("Dask scheduler dropped the task" in line and "--resume" in line for line in errors)
    assert len(records()) >= 2  # what was written is kept


# -- clear errors -----------------------------------------------------------------------------


def test_missing_dask_says_how_to_install_it(plate, tmp_path):
    code = textwrap.dedent(f"""
        import sys
        for name in ("distributed", "dask", "dask_jobqueue"):
            sys.modules[name] = None  # as if not installed
        from napari_process_position.cli import main
        sys.argv = ["process-position", "run", {str(plate)!r}, {str(tmp_path / "o.zarr")!r},
                    "-t", "soft_magnitude"] + sys.argv[1:]
        main()
    """)
    for flags in (["--dask-local", "2"], ["--dask-scheduler", "tcp://127.0.0.1:8786"], ["--slurm"]):
        proc = subprocess.run(
            [sys.executable, "-c", code, *flags], capture_output=True, text=True, timeout=120
        )
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode != 0 and len(lines) == 1, proc.stderr
        assert 'pip install "napari-process-position[dask]"' in lines[0]
        assert not (tmp_path / "o.zarr").exists()


def test_unreachable_scheduler_is_one_line_and_writes_nothing(plate, tmp_path):
    env = {**os.environ, "PROCESS_POSITION_DASK_TIMEOUT": "1"}
    proc = subprocess.run(
        [
            *CLI,
            "run",
            str(plate),
            str(tmp_path / "o.zarr"),
            "-t",
            "soft_magnitude",
            "--dask-scheduler",
            "tcp://127.0.0.1:9",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and len(lines) == 1, proc.stderr
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in lines[0]
    assert not (tmp_path / "o.zarr").exists()


def test_executor_choices_are_exclusive(plate, tmp_path):
    proc = subprocess.run(
        [
            *CLI,
            "run",
            str(plate),
            str(tmp_path / "o.zarr"),
            "-t",
            "soft_magnitude",
            "--dask-local",
            "2",
            "--slurm",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and len(lines) == 1 and "alternatives" in lines[0]


# -- SLURM (configuration only: no SLURM here) -----------------------------------------------


def test_slurm_options_make_the_job_script(plate, tmp_path):
    pytest.importorskip("dask_jobqueue")
    proc = subprocess.run(
        [
            *CLI,
            "run",
            str(plate),
            "-t",
            "soft_magnitude",
            "--slurm",
            "--slurm-cores",
            "8",
            "--slurm-processes",
            "4",
            "--slurm-memory",
            "8GiB",
            "--slurm-walltime",
            "02:30:00",
            "--slurm-partition",
            "short",
            "--slurm-account",
            "imaging",
            "--slurm-jobs",
            "3",
            "--slurm-job-extra=--qos=high",
            "--print-job-script",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    directives = {line for line in lines if line.startswith("#SBATCH")}
    for expected in (
        "#SBATCH -p short",
        "#SBATCH -A imaging",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --mem=8G",
        "#SBATCH -t 02:30:00",
        "#SBATCH --qos=high",
        "#SBATCH -J process-position",
    ):
        assert expected in directives, (expected, directives)
    worker = next(line for line in lines if "distributed.cli.dask_worker" in line)
    assert "--nworkers 4" in worker and "--nthreads 2" in worker
    assert worker.split()[0] == sys.executable  # workers use this environment's Python
    assert not (tmp_path / "o.zarr").exists()


def test_slurm_section_of_a_config_and_flag_overrides(tmp_path):
    pytest.importorskip("dask_jobqueue")
    from napari_process_position.batch.slurm import slurm_job_script

    config = RunConfig(
        input="in.zarr",
        output="out.zarr",
        transform="soft_magnitude",
        slurm={"cores": 2, "memory": "4GB", "walltime": "00:20:00", "partition": "gpu"},
    )
    script = slurm_job_script(config.slurm)
    assert "#SBATCH -p gpu" in script and "#SBATCH --cpus-per-task=2" in script
    assert "--nworkers 2" in script and "--nthreads 1" in script  # one process per core
    path = config.save(tmp_path / "slurm.yaml")
    proc = subprocess.run(
        [*CLI, "run", "--config", str(path), "--slurm-partition", "cpu", "--print-job-script"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "#SBATCH -p cpu" in proc.stdout and "#SBATCH -t 00:20:00" in proc.stdout
    assert "#SBATCH -p gpu" not in proc.stdout
    json.dumps(config.model_dump())  # the section serialises as plain data


def test_a_local_cluster_leaves_this_process_s_environment_as_it_was(plate, tmp_path):
    # Dask's nannies set MALLOC_TRIM_THRESHOLD_, OMP_NUM_THREADS=1, ... in the process that
    # starts them; a process pool spawned there later would inherit them (numpy ~3x slower on
    # volumes of a few MiB, BLAS on one thread). A fresh interpreter, with none of them set.
    script = tmp_path / "session.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import json, os
            from napari_process_position import RunConfig
            from napari_process_position.batch.dask import open_session

            if __name__ == "__main__":
                config = RunConfig(input={str(plate)!r}, transform="gaussian_blur", dask_local=1)
                before = dict(os.environ)
                session = open_session(config)
                try:
                    worker = session.client.run(lambda: dict(os.environ))
                finally:
                    session.close()
                (seen,) = worker.values()
                print(json.dumps({{"parent": dict(os.environ) == before,
                                   "worker": seen.get("MALLOC_TRIM_THRESHOLD_")}}))
            """
        )
    )
    dask_vars = ("MALLOC_", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dask_vars)}
    env.pop("PYTHONHASHSEED", None)
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert found["worker"] == "65536", "the Dask worker still gets the nanny's settings"
    assert found["parent"], "the nanny's settings stayed in the process that started it"
