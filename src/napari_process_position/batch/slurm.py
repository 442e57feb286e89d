"""Dask workers in SLURM jobs, through dask-jobqueue."""

from __future__ import annotations

from typing import Any

from napari_process_position.batch.config import SlurmSettings
from napari_process_position.batch.extras import require
from napari_process_position.core.errors import DaskClusterError, InvalidArgumentError
from napari_process_position.core.sizes import size_text

__all__ = ["slurm_cluster", "slurm_job_script"]


def slurm_cluster(
    settings: SlurmSettings, *, dashboard: bool = True, memory_limit: int | None = None
) -> Any:
    """Make a dask-jobqueue ``SLURMCluster`` for ``settings`` (no job is submitted yet).

    Each job is one ``sbatch`` script asking for ``cores`` CPUs and
    ``memory``; it runs ``worker_processes`` Dask workers of
    ``threads_per_worker`` threads, each limited to ``memory_limit`` bytes
    (default: the job's memory shared among them).

    Returns
    -------
    dask_jobqueue.SLURMCluster

    Raises
    ------
    InvalidArgumentError
        ``memory_limit`` times the workers per job is more than the job's memory.
    DaskClusterError
        dask-jobqueue refuses the settings.
    """
    require("distributed", "--slurm")
    require("dask_jobqueue", "--slurm")
    from dask_jobqueue import SLURMCluster

    kwargs: dict[str, Any] = {
        "cores": settings.cores,
        "processes": settings.worker_processes,
        "memory": settings.memory,
        "walltime": settings.walltime,
        "job_name": "process-position",
        "job_extra_directives": list(settings.job_extra),
    }
    if settings.partition:
        kwargs["queue"] = settings.partition
    if settings.account:
        kwargs["account"] = settings.account
    if settings.interface:
        kwargs["interface"] = settings.interface
    if memory_limit is not None:
        job = settings.memory_bytes
        if memory_limit * settings.worker_processes > job:
            raise InvalidArgumentError(
                f"memory_limit {size_text(memory_limit)} x {settings.worker_processes} worker(s) "
                f"per job is more than the job's memory ({settings.memory}); lower it to at most "
                f"{size_text(job // settings.worker_processes)} or raise --slurm-memory"
            )
        # After dask-jobqueue's own --memory-limit (memory / processes): the last one counts.
        kwargs["worker_extra_args"] = ["--memory-limit", str(int(memory_limit))]
    if not dashboard:
        kwargs["scheduler_options"] = {"dashboard_address": ":0"}  # any free port, no warning
    try:
        return SLURMCluster(**kwargs)
    except ValueError as exc:
        raise DaskClusterError(f"cannot set up SLURM workers: {exc}") from exc


def slurm_job_script(settings: SlurmSettings, memory_limit: int | None = None) -> str:
    """Return the sbatch script each SLURM job would run (nothing is submitted).

    Returns
    -------
    str
    """
    cluster = slurm_cluster(settings, dashboard=False, memory_limit=memory_limit)
    try:
        return str(cluster.job_script())
    finally:
        cluster.close()
