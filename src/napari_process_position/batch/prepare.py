"""Prepare a run of a RunConfig: check it, size and create its output, return the BatchRun."""

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
from napari_process_position.batch.output import check_output, make_output
from napari_process_position.batch.plan import plan_store
from napari_process_position.batch.prepared import PreparedRun
from napari_process_position.batch.workers import decide_execution
from napari_process_position.engine.pool import ProcessPool
from napari_process_position.store.layout import OmeVersion, StoreInfo
from napari_process_position.store.locks import WriterLock, hold_output
from napari_process_position.store.metadata import open_store

__all__ = ["create_output_plate", "lock_output", "prepare_run", "run_config"]

log = logging.getLogger(__name__)


def lock_output(
    config: RunConfig, store: StoreInfo, keys: list[str], *, wait: bool | float
) -> WriterLock:
    """Take the locks of the output positions a run writes, before it creates or replaces them.

    A plate output: a shared lock on the output and an exclusive one per
    position, or an exclusive lock on the whole output when ``overwrite``
    replaces it; a single-position output: exclusive. See :func:`.locks.hold_output`.

    Returns
    -------
    WriterLock
        Nothing held for a preview without output.

    Raises
    ------
    OutputInUseError
        Another run is writing (part of) the output and ``wait`` is False.
    """
    if not config.output:
        return WriterLock("")
    out_root = Path(config.output).expanduser().resolve()
    return hold_output(
        out_root,
        keys if store.kind == "plate" else None,
        replace=config.overwrite,
        wait=wait,
    )


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
    if config.uses_dask and executor is None:
        from napari_process_position.batch.extras import require

        require("distributed")
        if config.slurm is not None:
            require("dask_jobqueue", "--slurm")
    # Every check that can refuse the output runs before the transform is imported
    # (settings read from a store may name code) and before anything is written.
    store = open_store(config.input)
    check_output(config, store)
    plan = plan_store(config, store)
    # The output records the settings as given (`num_workers: auto` stays auto); the run
    # uses the resolved number.
    recorded = config
    config, execution = decide_execution(config, plan, pool=pool, executor=executor)
    # One writer per output position: the locks come before anything is created or
    # replaced (make_output may delete an existing output), and stay with the run.
    writers = lock_output(config, plan.store, plan.keys, wait=wait)
    dask = None
    try:
        if execution.mode == "dask":
            # Connect (or start the cluster) before writing anything: an unreachable
            # scheduler then leaves no half-made output behind. The run owns the session.
            from napari_process_position.batch.dask import open_session

            dask = open_session(config)
            execution = replace(execution, executor=dask.executor, dask=dask)
        output_paths = make_output(
            recorded, plan.store, plan.keys, plan.layouts, dict.fromkeys(plan.keys)
        )
    except BaseException:
        if dask is not None:
            dask.close()
        writers.release()
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
    check_output(config, store)
    plan = plan_store(config, store, sized_by_transform=transform is not None)
    writers = lock_output(config, plan.store, plan.keys, wait=False)
    try:
        make_output(
            config,
            plan.store,
            plan.keys,
            plan.layouts,
            dict.fromkeys(plan.keys),
            record_settings=transform is not None,
        )
    finally:
        writers.release()
    return open_store(output)
