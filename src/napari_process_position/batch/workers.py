"""How many workers a run gets, and why: :func:`decide_execution`, made once per run."""

from __future__ import annotations

import concurrent.futures as cf
import logging
from typing import TYPE_CHECKING

from napari_process_position.batch.config import RunConfig
from napari_process_position.batch.execution import (
    Execution,
    ReasonKind,
    WorkersReason,
    requested_mode,
)
from napari_process_position.batch.plan import RunPlan
from napari_process_position.engine.pool import ProcessPool
from napari_process_position.store.layout import OmeVersion

if TYPE_CHECKING:
    from napari_process_position.engine.trial import Measurement

__all__ = ["decide_execution", "measure_first_task", "measured_workers"]

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


def measure_first_task(
    plan: RunPlan,
    *,
    use_threads: bool,
    memory_limit_bytes: int | None,
    output: str | None,
    version: OmeVersion,
    inner_threads: int = 1,
) -> Measurement:
    """Measure the first task of ``plan`` in a fresh worker: what ``auto`` and estimate measure.

    The first non-empty volume of the first selected position
    (:func:`..engine.trial.measure_first_volume`), into a scratch output
    beside ``output``; under ``memory_limit_bytes`` unless the run's workers
    are threads (they share this process, which the limit does not cover).

    Raises
    ------
    ProcessPositionError
        The measured task failed.
    """
    from napari_process_position.engine.trial import measure_first_volume

    if plan.spec is None:  # pragma: no cover - a run's plan has its transform
        raise ValueError("measuring a task needs the plan's transform")
    key = plan.keys[0]
    return measure_first_volume(
        plan.spec.ref,
        plan.inputs[key],
        plan.layouts[key],
        times=plan.times,
        channels=plan.channels,
        params=plan.params,
        name=plan.spec.name,
        beside=output,
        version=version,
        inner_threads=inner_threads,
        memory_limit_bytes=None if use_threads else memory_limit_bytes,
    )


def measured_workers(
    plan: RunPlan,
    *,
    use_threads: bool,
    memory_limit_bytes: int | None,
    output: str | None,
    version: OmeVersion,
) -> WorkersReason:
    """Measure one task of ``plan`` and return the workers that fit (``num_workers: auto``).

    The task runs in a fresh worker process (:func:`measure_first_task`);
    the workers are the most that both the CPUs and the memory allow for its
    peak (:func:`..core.memory.choose_workers`). Logs one line: how many, and
    which budget decided.

    Raises
    ------
    ProcessPositionError
        The measured task failed.
    """
    from napari_process_position.core.budget import available_cpus
    from napari_process_position.core.memory import choose_workers, memory_budget

    measurement = measure_first_task(
        plan,
        use_threads=use_threads,
        memory_limit_bytes=memory_limit_bytes,
        output=output,
        version=version,
    )
    choice = choose_workers(
        available_cpus(),
        memory_budget(),
        measurement.task.peak_above,
        use_threads=use_threads,
        worker_baseline=0 if use_threads else measurement.task.baseline,
        tasks=len(plan.times) * len(plan.channels) * len(plan.keys),
    )
    log.info("%s", choice.reason)
    return WorkersReason("measured", choice.workers, choice.reason)


def _capped(config: RunConfig) -> WorkersReason | None:
    """Cap local workers at the CPUs this process may use (more only share the same cores)."""
    from napari_process_position.core.budget import available_cpus

    cpus = available_cpus()
    if config.num_workers <= cpus:
        return None
    text = f"{config.num_workers} workers asked, {cpus} used ({cpus} CPUs available)"
    log.info("%s", text)
    return WorkersReason("capped", cpus, text)


def decide_execution(
    config: RunConfig,
    plan: RunPlan,
    *,
    pool: ProcessPool | None = None,
    executor: cf.Executor | None = None,
) -> tuple[RunConfig, Execution]:
    """Decide where a run's tasks run, once: mode, workers and why, the given pool or executor.

    Local workers beyond the CPUs available are capped. ``num_workers: auto``
    is measured (one task in a worker process, :func:`measured_workers`)
    unless a pool, an executor or Dask decides. The Dask session is not
    opened here: :func:`.prepare.prepare_run` opens it, before the output is
    claimed, and adds it to the Execution.

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
    if not config.auto_workers:
        if pool is None and executor is None and not config.uses_dask:
            reason = _capped(config)
    elif config.uses_dask or executor is not None:
        text = "workers: auto is not measured: the tasks run on " + (
            "Dask's workers" if config.uses_dask else f"the given {type(executor).__name__}"
        )
        log.info("%s", text)
        kind: ReasonKind = "dask" if config.uses_dask else "executor"
        reason = WorkersReason(kind, None, text)
    elif pool is not None:
        text = f"workers: {pool.num_workers} (the given process pool)"
        log.info("%s", text)
        reason = WorkersReason("pool", pool.num_workers, text)
    else:
        reason = measured_workers(
            plan,
            use_threads=config.use_threads,
            memory_limit_bytes=config.memory_limit_bytes,
            output=config.output,
            version=config.ome_version,
        )
    update: dict[str, object] = {"auto_workers": False}
    if reason is not None and reason.workers is not None:
        update["num_workers"] = reason.workers
    config = config.model_copy(update=update) if reason is not None else config
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
