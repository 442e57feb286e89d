"""Prepare a run of a RunConfig: check it, plan it, decide where it runs, make its output.

:func:`prepare_run` goes down once: the input is opened and the output
checked (:mod:`..store.output`), the plan made (:mod:`.plan`), where the tasks
run decided (:mod:`.workers`, which measures a task for ``--workers auto``),
a Dask session opened when asked, and the output claimed: its writer locks
taken, then created, replaced or joined (:func:`..store.output.claim_output`).
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import os
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

from napari_process_position.batch.batch_run import BatchRun
from napari_process_position.batch.config import RunConfig
from napari_process_position.batch.plan import plan_store
from napari_process_position.batch.prepared import PreparedRun
from napari_process_position.batch.workers import decide_execution
from napari_process_position.engine.pool import ProcessPool
from napari_process_position.store.layout import OmeVersion, StoreInfo
from napari_process_position.store.metadata import open_store
from napari_process_position.store.output import check_output, claim_output

__all__ = ["create_output_plate", "prepare_run", "provenance_config", "run_config"]

log = logging.getLogger(__name__)


def provenance_config(config: RunConfig) -> dict[str, Any]:
    """Return the settings an output records about the run that made it.

    Paths are absolute, so that ``run --config OUTPUT`` works from any folder.
    """
    changes: dict[str, Any] = {"resume": False, "overwrite": False}
    changes["input"] = str(Path(config.input).expanduser().resolve())
    if config.output:
        changes["output"] = str(Path(config.output).expanduser().resolve())
    return config.model_copy(update=changes).model_dump(mode="json")


def prepare_run(
    config: RunConfig,
    *,
    pool: ProcessPool | None = None,
    executor: cf.Executor | None = None,
    wait: bool | float = False,
) -> BatchRun:
    """Check a config, size and create its output, and return the run (not started yet).

    Iterate the returned :class:`BatchRun` to run it: it yields ``(position key,
    Result)`` pairs as volumes finish.

    Parameters
    ----------
    config
        What to run.
    pool
        A warm :class:`ProcessPool` to run on (process mode).
    executor
        Any ``concurrent.futures.Executor`` to run on instead (a Dask client's).
    wait
        When another run is writing the output positions: False refuses at
        once, True waits for it to end, a number waits up to that many seconds.

    Returns
    -------
    BatchRun
        It holds the output positions' writer locks until its iteration ends
        (or :meth:`BatchRun.close`).

    Raises
    ------
    OutputInUseError
        Another run is writing the output (or one of its positions): one
        writer per output position. Nothing is created or replaced.
    ProcessPositionError
        For a bad input, position, transform, parameter or output (nothing is
        written then), or a Dask cluster that cannot be reached.

    Examples
    --------
    >>> run = prepare_run(RunConfig(input="demo.zarr", output="out.zarr",
    ...                             transform="gaussian_blur"))  # doctest: +SKIP
    >>> for key, result in run:  # doctest: +SKIP
    ...     print(key, result.label, result.status)
    """
    # The output records the settings as given (`num_workers: auto` stays auto); the run
    # uses the resolved number.
    recorded = provenance_config(config) if config.output else None
    if config.uses_dask and executor is None:
        from napari_process_position.batch.extras import require

        require("distributed")
        if config.slurm is not None:
            require("dask_jobqueue", "--slurm")
    # Every check that can refuse the output runs before the transform is imported
    # (settings read from a store may name code) and before anything is written.
    store = open_store(config.input)
    if config.output:
        check_output(config.output, store.path, overwrite=config.overwrite, resume=config.resume)
    plan = plan_store(config, store)
    config, execution = decide_execution(config, plan, pool=pool, executor=executor)
    dask = None
    writers = None
    output_paths: dict[str, str | None] = dict.fromkeys(plan.keys)  # a preview without output
    try:
        if execution.mode == "dask":
            # Connect (or start the cluster) before the output is claimed: an unreachable
            # scheduler then leaves no half-made output behind. The run owns the session.
            from napari_process_position.batch.dask import open_session

            dask = open_session(config)
            execution = replace(execution, executor=dask.executor, dask=dask)
        if config.output:
            writers, paths = claim_output(
                config.output,
                plan.layouts,
                plate=plan.store.kind == "plate",
                version=config.ome_version,
                overwrite=config.overwrite,
                resume=config.resume,
                settings=recorded,
                wait=wait,
            )
            output_paths = dict(paths)
    except BaseException:
        if dask is not None:
            dask.close()
        raise
    return BatchRun(PreparedRun(config, plan, execution, output_paths), writer_lock=writers)


def run_config(config: RunConfig, **kwargs: Any) -> BatchRun:
    """Prepare a run: the former name of :func:`prepare_run` (deprecated).

    Returns
    -------
    BatchRun
    """
    warnings.warn(
        "run_config() is now prepare_run(): it prepares the run, iterating the result runs it",
        DeprecationWarning,
        stacklevel=2,
    )
    return prepare_run(config, **kwargs)


def create_output_plate(
    input: str | os.PathLike[str],
    output: str | os.PathLike[str],
    transform: str | None = None,
    *,
    params: dict[str, Any] | None = None,
    positions: list[str] | None = None,
    channels: list[int] | None = None,
    times: list[int] | None = None,
    ome_version: OmeVersion = "0.5",
    overwrite: bool = False,
    exist_ok: bool = False,
) -> StoreInfo:
    """Create the empty output plate of ``input``, for :func:`process_single_position` to fill.

    What ``process-position init-output`` does, and what iohub users call
    ``create_empty_plate`` for: one output position per input position, its
    shape, dtype, voxel size and channel names those of the input, or those
    ``transform`` produces (declared by ``@transform``, or found by running it
    once on the first selected volume).

    Parameters
    ----------
    input
        The input plate (or one position).
    output
        The plate to create.
    transform, params
        The transform that will fill it, and its parameters (None: the output
        looks like the input).
    positions, channels, times
        A selection of the input, as in :class:`RunConfig` (default: all).
    ome_version
        ``"0.5"`` (default) or ``"0.4"``.
    overwrite
        Replace an existing ``output`` that this package wrote (an output, a
        demo plate) or an empty folder; anything else is refused.
    exist_ok
        Keep an existing ``output`` whose positions can hold this one's (others
        are added); otherwise an existing output is refused.

    Returns
    -------
    StoreInfo
        The output plate.

    Raises
    ------
    ProcessPositionError
        A bad input, selection or transform; an output that exists (without
        ``overwrite`` or ``exist_ok``) or cannot hold this one; an output that
        cannot be written.

    Examples
    --------
    >>> create_output_plate("in.zarr", "out.zarr")  # doctest: +SKIP
    >>> process_single_position(f, "in.zarr/A/1/0", "out.zarr/A/1/0")  # doctest: +SKIP
    """
    config = RunConfig(
        input=os.fspath(input),
        output=os.fspath(output),
        transform=transform or "(none)",
        params=params or {},
        positions=positions,
        channels=channels,
        times=times,
        ome_version=ome_version,
        overwrite=overwrite,
        resume=exist_ok and not overwrite,
    )
    store = open_store(config.input)
    check_output(output, store.path, overwrite=overwrite, resume=config.resume)
    plan = plan_store(config, store, sized_by_transform=transform is not None)
    writers, _ = claim_output(
        output,
        plan.layouts,
        plate=store.kind == "plate",
        version=config.ome_version,
        overwrite=overwrite,
        resume=config.resume,
        settings=provenance_config(config) if transform is not None else None,
    )
    writers.release()
    return open_store(output)
