"""SLURM end to end without a cluster: stand-in sbatch and scancel on PATH, the rest real.

The stand-in ``sbatch`` runs the job script dask-jobqueue writes as a local
background process (its own session, so its own process group), with
``SLURM_JOB_ID``, ``SLURM_CPUS_PER_TASK`` and ``SLURM_MEM_PER_NODE`` set from
the script's ``#SBATCH`` lines, and prints ``Submitted batch job N`` as
sbatch does; ``scancel N`` ends that process group. Everything else (the
command line, dask-jobqueue, the scheduler, the Dask worker of the job, the
store on disk) is the real thing, on the loopback interface.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest

from conftest import random_tczyx, read_array, write_plate

pytest.importorskip("dask_jobqueue")
pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "napari_process_position.cli"]
KEYS = ["A/1/0", "B/1/0"]

SBATCH = """\
#!{python}
import os, re, subprocess, sys
from pathlib import Path

state = Path(os.environ["NPP_FAKE_SLURM"])
text = Path(sys.argv[-1]).read_text()  # dask-jobqueue deletes it once we return
job = 1
while True:
    try:
        os.close(os.open(state / f"{{job}}.id", os.O_CREAT | os.O_EXCL))
        break
    except FileExistsError:
        job += 1
script = state / f"job-{{job}}.sh"
script.write_text(text)
options = dict(
    re.match(r"#SBATCH\\s+(--?[\\w-]+)[=\\s]?(.*)", line).groups()
    for line in text.splitlines()
    if re.match(r"#SBATCH\\s+-", line)
)
mem = options.get("--mem", "")
number, unit = re.fullmatch(r"(\\d+)([KMGT]?)", mem).groups()
mb = int(number) * {{"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024**2}}[unit]
env = dict(
    os.environ,
    SLURM_JOB_ID=str(job),
    SLURM_JOB_NAME=options.get("-J", ""),
    SLURM_CPUS_PER_TASK=options.get("--cpus-per-task", "1"),
    SLURM_MEM_PER_NODE=str(int(mb)),
)
log = open(state / f"job-{{job}}.log", "w")
proc = subprocess.Popen(
    ["bash", str(script)], stdout=log, stderr=subprocess.STDOUT, env=env,
    start_new_session=True, cwd=state,
)
(state / f"{{job}}.pid").write_text(str(proc.pid))
(state / f"{{job}}.env").write_text(
    "\\n".join(f"{{k}}={{env[k]}}" for k in sorted(env) if k.startswith("SLURM_"))
)
print(f"Submitted batch job {{job}}")
"""

SCANCEL = """\
#!{python}
import os, signal, sys, time
from pathlib import Path

state = Path(os.environ["NPP_FAKE_SLURM"])
for job in sys.argv[1:]:
    (state / f"{{job}}.cancelled").write_text("")
    pid = int((state / f"{{job}}.pid").read_text())
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.time() + 5
        while time.time() < deadline:
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
"""


def _group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group."""
    members = []
    for proc in psutil.process_iter(["pid", "status"]):
        with contextlib.suppress(psutil.Error, OSError):
            if proc.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(proc.pid) == pgid:
                members.append(proc.pid)
    return members


@pytest.fixture
def fake_slurm(tmp_path):
    """``sbatch`` and ``scancel`` stand-ins on PATH; yields (env, state folder); ends any job."""
    bin_dir, state = tmp_path / "bin", tmp_path / "slurm"
    bin_dir.mkdir()
    state.mkdir()
    for name, text in (("sbatch", SBATCH), ("scancel", SCANCEL)):
        path = bin_dir / name
        path.write_text(text.format(python=sys.executable))
        path.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "NPP_FAKE_SLURM": str(state),
        "PROCESS_POSITION_DASK_TIMEOUT": "60",
    }
    for name in list(env):
        if name.startswith("SLURM_"):
            del env[name]
    try:
        yield env, state
    finally:
        for pid_file in state.glob("*.pid"):  # a failed test must not leave a job running
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.killpg(int(pid_file.read_text()), signal.SIGKILL)


def test_a_slurm_run_end_to_end(fake_slurm, tmp_path):
    env, state = fake_slurm
    data = {
        k: random_tczyx((3, 2, 4, 16, 16), "float32", seed=7 + i, empty=(), nan=())
        for i, k in enumerate(KEYS)
    }
    plate = write_plate(tmp_path / "in.zarr", data)
    out = tmp_path / "out.zarr"
    proc = subprocess.run(
        [
            *CLI,
            "run",
            str(plate),
            str(out),
            "-t",
            "soft_magnitude",
            "--slurm",
            "--slurm-cores",
            "2",
            "--slurm-processes",
            "1",
            "--slurm-memory",
            "2GB",
            "--slurm-walltime",
            "00:10:00",
            "--slurm-interface",
            "lo",
            "--memory-limit",
            "1GB",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        cwd=tmp_path,
    )
    logs = "\n".join(p.read_text() for p in sorted(state.glob("job-*.log")))
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}\njob logs:\n{logs}"
    said = " ".join((proc.stderr + proc.stdout).split())  # rich wraps long lines
    assert "Dask on SLURM: 1 job(s) x 1 worker(s)" in said

    for key, volume in data.items():
        expected = np.sqrt(volume * volume + np.float32(1)) - np.float32(0.5)
        np.testing.assert_allclose(read_array(out / key), expected, rtol=1e-6)

    # the job: what sbatch was given and what the job saw
    scripts = sorted(state.glob("job-*.sh"))
    assert scripts, "sbatch was never called"
    script = scripts[0].read_text()
    assert "#SBATCH --cpus-per-task=2" in script and "#SBATCH --mem=" in script
    worker_line = next(line for line in script.splitlines() if "dask_worker" in line)
    assert "--interface lo" in worker_line
    tokens = worker_line.split()
    limits = [tokens[i + 1] for i, t in enumerate(tokens) if t == "--memory-limit"]
    assert limits[-1] == "1000000000"  # --memory-limit 1GB, after dask-jobqueue's own
    assert "Memory:                   0.93 GiB" in logs, logs  # and the worker took it
    job_env = (state / "1.env").read_text().splitlines()
    assert "SLURM_JOB_ID=1" in job_env and "SLURM_CPUS_PER_TASK=2" in job_env
    assert "#SBATCH --mem=2G" in script  # dask-jobqueue rounds 2GB (1.86 GiB) up
    assert "SLURM_MEM_PER_NODE=2048" in job_env  # MiB, as SLURM sets it
    assert "tcp://127.0.0.1:" in logs  # the worker reached the scheduler on the loopback

    # every job was cancelled at the end, and nothing of it runs any more
    for pid_file in state.glob("*.pid"):
        job = pid_file.stem
        assert (state / f"{job}.cancelled").exists(), f"job {job} was never scancel-ed"
        pgid = int(pid_file.read_text())
        deadline = time.time() + 20
        while _group_members(pgid) and time.time() < deadline:
            time.sleep(0.2)
        assert not _group_members(pgid), f"job {job} left processes running"
