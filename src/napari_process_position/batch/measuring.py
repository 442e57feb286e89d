"""Measure one real task of a planned run: its first non-empty volume, in a fresh worker.

One (t, c) task of the first selected position runs in a spawned worker
process, as a run's process workers run it (:func:`..engine.trial.measure_in_worker`),
into a scratch output beside the real one (the same file system, so writing
costs what it will), and is measured there. :mod:`.estimate` projects the run
from it; ``--workers auto`` picks the workers by it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from napari_process_position.batch.plan import RunPlan
from napari_process_position.core.apply import is_empty
from napari_process_position.core.errors import InvalidStoreError
from napari_process_position.engine.measure import TaskMeasure
from napari_process_position.engine.trial import measure_in_worker
from napari_process_position.store.create import create_output_position
from napari_process_position.store.layout import OmeVersion

__all__ = ["Measurement", "measure_first_task"]


@dataclass(frozen=True)
class Measurement:
    """One task measured in a fresh worker process.

    Attributes
    ----------
    position, time_index, channel
        The (t, c) measured, of the first selected position.
    task
        The worker's figures (time, baseline, peak above it).
    startup_seconds
        Starting the worker process and importing the transform.
    volume_disk_bytes
        What the written volume takes on disk (compressed).
    """

    position: str
    time_index: int
    channel: int
    task: TaskMeasure
    startup_seconds: float
    volume_disk_bytes: int


def _first_volume(plan: RunPlan) -> tuple[int, int]:
    """Find the first non-empty (t, c) of the first position (an empty one is skipped)."""
    source = plan.inputs[plan.keys[0]].open_array()
    for t in plan.times:
        for c in plan.channels:
            if not is_empty(source[t][[c]].read().result()):
                return t, c
    raise InvalidStoreError(
        f"{plan.inputs[plan.keys[0]].path}: every selected volume is empty (all zeros or NaN); "
        "there is nothing to measure"
    )


def _scratch_parent(output: str | None) -> str | None:
    """Beside the output when it has a folder (its file system), else the temporary folder."""
    if output:
        parent = Path(output).expanduser().resolve().parent
        if parent.is_dir() and os.access(parent, os.W_OK):
            return str(parent)
    return None


def _disk_bytes(array_dir: Path) -> int:
    metadata = {"zarr.json", ".zarray", ".zattrs", ".zgroup"}
    return sum(
        p.stat().st_size for p in array_dir.rglob("*") if p.is_file() and p.name not in metadata
    )


def measure_first_task(
    plan: RunPlan,
    *,
    output: str | None,
    version: OmeVersion,
    inner_threads: int,
    memory_limit_bytes: int | None,
) -> Measurement:
    """Run the first non-empty (t, c) task of the first position in a worker and measure it.

    Parameters
    ----------
    plan
        The run's plan (:func:`..plan.plan_run`).
    output
        The run's output (the scratch output goes beside it), or None.
    version
        The output's OME-Zarr version (the scratch output's).
    inner_threads
        BLAS/OpenMP threads of the worker, as a run gives each worker.
    memory_limit_bytes
        The worker's memory limit (None: none).

    Returns
    -------
    Measurement

    Raises
    ------
    TransformError
        The transform failed, or ran out of memory (under ``memory_limit``).
    WorkerDiedError
        The worker was killed (out of memory) or crashed.
    InvalidStoreError
        Every selected volume of the first position is empty.
    """
    if plan.spec is None:  # pragma: no cover - plan_run looks the transform up by default
        raise InvalidStoreError("an estimate needs a transform")
    scratch_parent = _scratch_parent(output)
    key = plan.keys[0]
    t, c = _first_volume(plan)
    full = plan.layouts[key]
    layout = replace(
        full,
        shape=(1, 1, *full.shape[2:]),
        channel_names=(full.channel_names[plan.channels.index(c)],),
        levels=1,
    )
    scratch = Path(tempfile.mkdtemp(prefix=".npp-estimate-", dir=scratch_parent))
    try:
        scratch_output = create_output_position(scratch / "estimate.zarr", layout, version=version)
        measured = measure_in_worker(
            plan.spec.ref,
            plan.inputs[key],
            scratch_output,
            time_index=t,
            channel=c,
            params=plan.params,
            name=plan.spec.name,
            inner_threads=inner_threads,
            memory_limit_bytes=memory_limit_bytes,
        )
        disk = _disk_bytes(Path(scratch_output.path) / "0")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return Measurement(key, t, c, measured.task, measured.startup_seconds, disk)
