"""Estimate a run before it starts: measure one real task, then size the whole selection.

One (t, c) task of the first selected position (its first non-empty volume)
runs in a spawned worker process, as a run's process workers run it, into a
scratch output beside the real one (the same file system, so writing costs
what it will), and is measured there (:func:`.workers.measure_first_task`).
From that: the workers that fit the CPUs and the memory
(:func:`..core.memory.choose_workers`), the projected time and memory of a
position and of the selection, and biahub's ``RESOURCES`` line for Nextflow.
``--workers auto`` uses the same measurement (:func:`.workers.measured_workers`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_process_position.batch.config import RunConfig
from napari_process_position.batch.execution import requested_mode
from napari_process_position.batch.plan import plan_store
from napari_process_position.batch.workers import measure_first_task
from napari_process_position.core.budget import available_cpus
from napari_process_position.core.durations import seconds_text
from napari_process_position.core.memory import (
    SAFETY_MARGIN,
    MemoryBudget,
    WorkerChoice,
    choose_workers,
    memory_budget,
    rss_bytes,
)
from napari_process_position.core.sizes import size_text
from napari_process_position.engine.trial import Measurement
from napari_process_position.store.metadata import open_store

__all__ = ["Estimate", "Measurement", "estimate_run"]

log = logging.getLogger(__name__)


def _measure_threads(config: RunConfig, cpus: int) -> int:
    """BLAS threads per worker of the run being estimated (as stream_position gives them)."""
    return max(1, cpus // max(1, min(config.num_workers, cpus)))


@dataclass(frozen=True)
class Estimate:
    """What a run will take, from one measured task.

    Attributes
    ----------
    config
        The run estimated.
    measurement
        The task measured.
    positions, volumes, volumes_per_position
        The selection's size.
    cpus, budget
        CPUs available and the tightest memory budget (None: unknown).
    choice
        The workers for the run's mode (``auto``: the largest that fit; a
        number: that, capped by the CPUs and the tasks) and why.
    threads, processes
        What would fit with threads, and with process workers (for the advice).
    main_baseline_bytes
        This process's resident memory (the run's main process holds as much).
    volume_bytes
        One output volume, uncompressed.
    """

    config: RunConfig
    measurement: Measurement
    positions: int
    volumes: int
    volumes_per_position: int
    cpus: int
    budget: MemoryBudget | None
    choice: WorkerChoice
    threads: WorkerChoice
    processes: WorkerChoice
    main_baseline_bytes: int
    volume_bytes: int

    @property
    def workers(self) -> int:
        """The workers the run uses."""
        return self.choice.workers

    @property
    def in_process(self) -> bool:
        """True when the tasks run in the main process (threads, or one worker without a limit)."""
        mode = requested_mode(
            num_workers=self.workers,
            use_threads=self.config.use_threads,
            memory_limit=self.config.memory_limit,
        )
        return mode in ("serial", "threads")

    @property
    def seconds_per_volume(self) -> float:
        """Wall time of one (t, c) volume."""
        task = self.measurement.task
        return task.seconds / max(1, len(task.results))

    @property
    def startup_seconds(self) -> float:
        """Paid once by a run: starting the workers, and each one's first (cold) task's extra."""
        task = self.measurement.task
        cold = max(0.0, task.first_seconds - task.seconds)
        return cold + (0.0 if self.in_process else self.measurement.startup_seconds)

    @property
    def position_seconds(self) -> float:
        """Projected wall time of one position with :attr:`workers` workers."""
        steps = math.ceil(self.volumes_per_position / self.workers)
        return self.startup_seconds + steps * self.seconds_per_volume

    @property
    def total_seconds(self) -> float:
        """Projected wall time of the whole selection on this machine (one shared pool)."""
        steps = math.ceil(self.volumes / self.workers)
        return self.startup_seconds + steps * self.seconds_per_volume

    @property
    def position_memory_bytes(self) -> int:
        """Peak memory of a run of one position: the main process and every worker.

        Each worker as :func:`..core.memory.choose_workers` counts it (its task's
        peak with the margin and the allocator's slack, a process's own baseline).
        """
        per_worker = self.threads.per_worker if self.in_process else self.processes.per_worker
        return self.main_baseline_bytes + self.workers * per_worker

    def resources(self) -> dict[str, int]:
        """Return biahub's contract: integer ``cpus``, ``mem_gb`` and ``time_minutes`` per position.

        Returns
        -------
        dict
            ``mem_gb`` rounded up to whole GiB; ``time_minutes`` the projected
            time of a position times :data:`SAFETY_MARGIN`, rounded up; each at least 1.
        """
        return {
            "cpus": self.workers,
            "mem_gb": max(1, math.ceil(self.position_memory_bytes / 2**30)),
            "time_minutes": max(1, math.ceil(self.position_seconds * SAFETY_MARGIN / 60)),
        }

    def advice(self) -> str:
        """One line: threads or processes, and how many workers.

        Returns
        -------
        str
        """
        p, t = self.processes, self.threads
        if p.workers >= t.workers:
            return (
                f"advice: processes, {p.workers} worker(s) (--processes --workers {p.workers}); "
                f"{p.reason.split('(', 1)[1].rstrip(')')}"
            )
        return (
            f"advice: threads, {t.workers} worker(s) (--threads --workers {t.workers}): "
            f"process workers fit only {p.workers} at {size_text(p.per_worker)} each; threads "
            "pay off when the transform releases the GIL (numpy, scipy and tensorstore do)"
        )

    def to_json(self) -> dict[str, Any]:
        """Every figure, as plain data (``estimate --json``).

        Returns
        -------
        dict
        """
        m = self.measurement
        return {
            "transform": self.config.transform,
            "input": self.config.input,
            "measured": {"position": m.position, "t": m.time_index, "c": m.channel},
            "task_peak_bytes": m.task.peak_above,
            "worker_baseline_bytes": m.task.baseline,
            "main_baseline_bytes": self.main_baseline_bytes,
            "peak_method": m.task.method,
            "seconds_per_volume": round(self.seconds_per_volume, 4),
            "startup_seconds": round(self.startup_seconds, 3),
            "first_task_seconds": round(m.task.first_seconds, 4),
            "volumes": self.volumes,
            "volumes_per_position": self.volumes_per_position,
            "positions": self.positions,
            "mode": "threads" if self.config.use_threads else "processes",
            "workers": self.workers,
            "workers_reason": self.choice.reason,
            "cpus_available": self.cpus,
            "memory_budget_bytes": self.budget.available if self.budget else None,
            "memory_budget_source": self.budget.source if self.budget else None,
            "volume_bytes": self.volume_bytes,
            "output_bytes": self.volume_bytes * self.volumes,
            "output_disk_bytes": m.volume_disk_bytes * self.volumes,
            "position_seconds": round(self.position_seconds, 2),
            "projected_seconds": round(self.total_seconds, 2),
            "position_memory_bytes": self.position_memory_bytes,
            "advice": self.advice(),
            **self.resources(),
        }

    def lines(self) -> list[str]:
        """Return the report ``process-position estimate`` prints, ``RESOURCES:`` last.

        Returns
        -------
        list of str
        """
        import json

        m = self.measurement
        mode = "threads" if self.config.use_threads else "processes"
        return [
            f"{self.config.transform} on {self.config.input}: measured {m.position} "
            f"t={m.time_index}, c={m.channel} in a fresh worker process",
            f"per volume: {self.seconds_per_volume:.2f} s, peak {size_text(m.task.peak_above)} "
            f"above the worker's {size_text(m.task.baseline)} ({m.task.method}; "
            f"worker start {m.startup_seconds:.1f} s, first task {m.task.first_seconds:.2f} s)",
            f"selection: {self.volumes} volume(s) = {self.positions} position(s) x "
            f"{self.volumes_per_position}; output {size_text(self.volume_bytes * self.volumes)} "
            f"uncompressed, about {size_text(m.volume_disk_bytes * self.volumes)} on disk",
            f"budget: {self.cpus} CPU(s); memory "
            + (
                f"{size_text(self.budget.available)} ({self.budget.source})"
                if self.budget
                else "unknown"
            ),
            self.choice.reason + f" [{mode}]",
            f"projected: {seconds_text(self.position_seconds)} per position, "
            f"{seconds_text(self.total_seconds)} for the selection on this machine; "
            f"peak memory {size_text(self.position_memory_bytes)} per position",
            self.advice(),
            "RESOURCES:" + json.dumps(self.resources()),
        ]


def estimate_run(config: RunConfig) -> Estimate:
    """Measure one task of ``config`` and project the whole run.

    Parameters
    ----------
    config
        The run (its output is not written; a scratch output beside it is,
        and removed).

    Returns
    -------
    Estimate

    Raises
    ------
    ProcessPositionError
        A bad input, selection or transform; the transform failing or running
        out of memory on the measured volume.
    """
    store = open_store(config.input)
    plan = plan_store(config, store)
    # `--workers N` sizes a job of N CPUs (a cluster's, say), whatever this machine has;
    # `--workers auto` sizes for this machine.
    cpus = available_cpus() if config.auto_workers else max(1, config.num_workers)
    measurement = measure_first_task(
        plan,
        use_threads=config.use_threads,
        memory_limit_bytes=config.memory_limit_bytes,
        output=config.output,
        version=config.ome_version,
        inner_threads=_measure_threads(config, cpus),
    )
    main = rss_bytes()
    budget = memory_budget()
    vpp = len(plan.times) * len(plan.channels)
    volumes = vpp * len(plan.keys)
    task = measurement.task
    threads = choose_workers(cpus, budget, task.peak_above, use_threads=True, tasks=volumes)
    processes = choose_workers(
        cpus,
        budget,
        task.peak_above,
        use_threads=False,
        worker_baseline=task.baseline,
        tasks=volumes,
    )
    fitted = threads if config.use_threads else processes
    choice = fitted if config.auto_workers else fitted.given(config.num_workers, volumes)
    layout = plan.layouts[plan.keys[0]]
    volume_bytes = int(np.prod(layout.shape[2:])) * np.dtype(layout.dtype).itemsize
    return Estimate(
        config,
        measurement,
        len(plan.keys),
        volumes,
        vpp,
        cpus,
        budget,
        choice,
        threads,
        processes,
        main,
        volume_bytes,
    )
