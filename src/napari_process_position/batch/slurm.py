"""Dask workers in SLURM jobs, through dask-jobqueue."""

from __future__ import annotations

from typing import Any

from napari_process_position.batch.config import SlurmSettings
from napari_process_position.batch.extras import require
from napari_process_position.core.errors import DaskClusterError

__all__ = ["slurm_cluster", "slurm_job_script"]


def slurm_cluster(settings: SlurmSettings, *, dashboard: bool = True) -> Any:
    """Make a dask-jobqueue ``SLURMCluster`` for ``settings`` (no job is submitted yet).

    Each job is one ``sbatch`` script asking for ``cores`` CPUs and
    ``memory``; it runs ``worker_processes`` Dask workers of
    ``threads_per_worker`` threads.
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
    if not dashboard:
        kwargs["scheduler_options"] = {"dashboard_address": ":0"}  # any free port, no warning
    try:
        return SLURMCluster(**kwargs)
    except ValueError as exc:
        raise DaskClusterError(f"cannot set up SLURM workers: {exc}") from exc


def slurm_job_script(settings: SlurmSettings) -> str:
    """Return the sbatch script each SLURM job would run (nothing is submitted)."""
    cluster = slurm_cluster(settings, dashboard=False)
    try:
        return str(cluster.job_script())
    finally:
        cluster.close()
