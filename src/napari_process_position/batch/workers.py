"""How many workers a run gets, and why: :func:`decide_execution`, made once per run."""

from __future__ import annotations

import concurrent.futures as cf
import logging

from napari_process_position.batch.config import RunConfig
from napari_process_position.batch.execution import (
    Execution,
    ReasonKind,
    WorkersReason,
    requested_mode,
)
from napari_process_position.batch.plan import RunPlan
from napari_process_position.engine.pool import ProcessPool

__all__ = ["decide_execution"]

log = logging.getLogger(__name__)


def _warn_memory_limit(config: RunConfig) -> None:
    if config.memory_limit is None:
        return
    if config.dask_scheduler is not None:
        log.warning(
            "memory_limit %s is not applied to an existing Dask cluster: its workers keep the "
            "limit they were started with",
            config.memory_limit,
        )
    elif config.use_threads and not config.uses_dask:
        log.warning(
            "memory_limit %s applies to process and Dask workers; thread workers share this "
            "process, which it does not limit",
            config.memory_limit,
        )


def _auto_workers(
    config: RunConfig, plan: RunPlan, pool: ProcessPool | None, executor: cf.Executor | None
) -> tuple[RunConfig, WorkersReason]:
    """``num_workers: auto`` -> a number: measured on this machine, or what runs the tasks."""
    if config.uses_dask or executor is not None:
        text = "workers: auto is not measured: the tasks run on " + (
            "Dask's workers" if config.uses_dask else f"the given {type(executor).__name__}"
        )
        log.info("%s", text)
        kind: ReasonKind = "dask" if config.uses_dask else "executor"
        return config.model_copy(update={"auto_workers": False}), WorkersReason(kind, None, text)
    if pool is not None:
        text = f"workers: {pool.num_workers} (the given process pool)"
        log.info("%s", text)
        update = {"num_workers": pool.num_workers, "auto_workers": False}
        return config.model_copy(update=update), WorkersReason("pool", pool.num_workers, text)
    from napari_process_position.batch.estimate import resolve_auto_workers

    resolved, choice = resolve_auto_workers(config, plan)
    return resolved, WorkersReason("measured", choice.workers, choice.reason)


def _capped(config: RunConfig) -> tuple[RunConfig, WorkersReason | None]:
    """Cap local workers at the CPUs this process may use (more only share the same cores)."""
    from napari_process_position.core.budget import available_cpus

    cpus = available_cpus()
    if config.num_workers <= cpus:
        return config, None
    text = f"{config.num_workers} workers asked, {cpus} used ({cpus} CPUs available)"
    log.info("%s", text)
    return config.model_copy(update={"num_workers": cpus}), WorkersReason("capped", cpus, text)


def decide_execution(
    config: RunConfig,
    plan: RunPlan,
    *,
    pool: ProcessPool | None = None,
    executor: cf.Executor | None = None,
) -> tuple[RunConfig, Execution]:
    """Decide where a run's tasks run, once: mode, workers and why, the given pool or executor.

    ``num_workers: auto`` is measured here (one task in a worker process,
    :func:`.estimate.resolve_auto_workers`) unless a pool, an executor or Dask
    decides; local workers beyond the CPUs available are capped. The Dask
    session is not opened here: :func:`.prepare.prepare_run` opens it, after
    the output's locks are taken, and adds it to the Execution.

    Returns
    -------
    RunConfig, Execution
        The config as run (``num_workers`` resolved), and the decision.

    Raises
    ------
    ProcessPositionError
        The task measured for ``auto`` failed.
    """
    _warn_memory_limit(config)
    reason = None
    if config.auto_workers:
        config, reason = _auto_workers(config, plan, pool, executor)
    elif pool is None and executor is None and not config.uses_dask:
        config, reason = _capped(config)
    mode = requested_mode(
        num_workers=config.num_workers,
        use_threads=config.use_threads,
        memory_limit=config.memory_limit,
        uses_dask=config.uses_dask and executor is None,
        executor=executor,
    )
    workers = config.num_workers
    if pool is not None and mode in ("serial", "processes") and not config.use_threads:
        mode, workers = "processes", pool.num_workers
    execution = Execution(
        mode=mode,
        workers=workers,
        use_threads=config.use_threads,
        memory_limit_bytes=config.memory_limit_bytes,
        reason=reason,
        pool=pool if mode == "processes" else None,
        executor=executor,
    )
    return config, execution
