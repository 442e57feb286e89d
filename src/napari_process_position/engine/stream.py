"""Plan a run over one position: stream_position, the engine's entry point."""

from __future__ import annotations

import concurrent.futures as cf
import logging
import os
from collections.abc import Sequence
from typing import Any, Literal

from napari_process_position.core.budget import available_cpus
from napari_process_position.core.identity import run_identity
from napari_process_position.core.transform_ref import (
    TransformRef,
    check_picklable,
    check_reference,
)
from napari_process_position.engine.plan import position_tasks
from napari_process_position.engine.pool import ProcessPool
from napari_process_position.engine.position_run import Mode, PositionRun
from napari_process_position.store.layout import PositionInfo
from napari_process_position.store.metadata import read_position

__all__ = ["position_run", "stream_position"]

log = logging.getLogger(__name__)


def _effective_workers(requested: int, n_tasks: int, cpus: int) -> int:
    if requested < 1:
        return 1
    capped = min(requested, cpus, max(1, n_tasks))
    if capped < requested:
        reason = f"{cpus} CPUs available" if capped == cpus else f"{n_tasks} tasks"
        log.info("using %d workers instead of %d (%s)", capped, requested, reason)
    return capped


def stream_position(
    transform: TransformRef,
    input_position_path: str | os.PathLike[str],
    output_position_path: str | os.PathLike[str] | None = None,
    input_channel_indices: Sequence[Any] | None = None,
    output_channel_indices: Sequence[Any] | None = None,
    input_time_indices: Sequence[int] | None = None,
    output_time_indices: Sequence[int] | None = None,
    num_workers: int = 1,
    use_threads: bool = False,
    *,
    executor: cf.Executor | None = None,
    pool: ProcessPool | None = None,
    resume: bool = False,
    resume_token: str | None = None,
    max_in_flight: int | None = None,
    params: dict[str, Any] | None = None,
    strict_dtype: bool = False,
    memory_limit_bytes: int | None = None,
    transform_errors: Literal["wrap", "raise"] = "wrap",
    niceness: int = 0,
    pyramid_levels: int = 1,
    input_info: PositionInfo | None = None,
    **kwargs: Any,
) -> PositionRun:
    """Plan a run over one position; iterate the returned run to get Results as they finish.

    Parameters
    ----------
    transform
        ``f(czyx, **params) -> array``: a callable (module level, for
        processes), or a ``"module:function"`` / ``"file.py:function"`` string.
    input_position_path
        The input position (``plate.zarr/A/1/0``).
    output_position_path
        An existing output position to write into, or None for a preview:
        each Result then carries the transformed volume.
    input_channel_indices, output_channel_indices, input_time_indices, output_time_indices
        As in iohub's ``process_single_position``: channel groups (an int
        gives the transform ZYX, a list or slice gives CZYX), default one
        group per channel; time points, default all.
    num_workers
        Workers; 1 or less runs serially in the calling thread. Capped by
        :func:`available_cpus` and by the number of tasks.
    use_threads
        Threads instead of spawned processes.
    executor
        Any ``concurrent.futures.Executor`` to run on instead (e.g. a Dask
        client's); ``num_workers`` then only bounds the tasks in flight.
    pool
        A :class:`ProcessPool` to reuse (kept warm by the caller).
    resume
        Skip (t, c) volumes whose completion record says they were made
        exactly as this run would make them: the same input position, input
        time and channels, transform (and its source), parameters (by value),
        ``resume_token`` and output layout, with their files unchanged since.
        Any other volume is computed.
    resume_token
        The caller's own fingerprint of its settings (iohub's): a record
        made under another token is not trusted.
    max_in_flight
        Tasks submitted but not finished; default twice the workers.
    params, **kwargs
        Parameters passed to the transform.
    strict_dtype
        Raise when a result fits the output dtype only by an unsafe cast
        (float into an integer store); by default values are cast as numpy
        casts them, as iohub does. NaN or infinite values bound for an
        integer output are always refused (a cast would store garbage).
    memory_limit_bytes
        In process mode without a ``pool``: each worker's memory limit (see
        :class:`ProcessPool`). A given pool brings its own.
    niceness
        Lower the workers' CPU priority (threads and the processes of a pool
        made for this run) by this much; 0 by default. The widget uses it so
        that napari's window keeps its share of the cores.
    transform_errors
        ``"wrap"`` (default): an exception raised by the transform ends the
        run as a :class:`TransformError` naming the transform and the
        (t, c). ``"raise"``: the transform's own exception, of its own type,
        with that as a note (as :func:`process_single_position` does).
    pyramid_levels
        Resolution levels to write (1, the default: level 0 only, as iohub's
        ``process_single_position`` does). With N > 1 each task also writes
        levels 1..N-1 of its volumes (2x mean over Z, Y and X, each level from
        the one before, equal to iohub's ``Position.compute_pyramid(levels=N,
        method="mean")``), and resume covers them; the output must have been
        created with at least N levels of those shapes.
    input_info
        The input position's metadata when the caller has read it already
        (a batch's plan), to not read it again; it must be that of
        ``input_position_path``.

    Returns
    -------
    PositionRun

    Raises
    ------
    StoreNotFoundError
        A position folder does not exist (also a ``FileNotFoundError``).
    InvalidStoreError
        A position is not a usable OME-Zarr position.
    IndexOutOfRangeError
        A time or channel index outside the input or output (also a
        ``ValueError`` and an ``IndexError``).
    TransformError
        In process mode, a transform or parameters that cannot be sent to
        worker processes.

    Notes
    -----
    The output may be the input (processing in place, as iohub allows):
    every task reads its input blocks before it writes. The command line
    and the widget refuse an output inside the input.
    """
    check_reference(transform)  # at once, before the input is read
    in_info = input_info if input_info is not None else read_position(input_position_path)
    return position_run(
        transform,
        in_info,
        output_position_path,
        input_channel_indices,
        output_channel_indices,
        input_time_indices,
        output_time_indices,
        num_workers,
        use_threads,
        executor=executor,
        pool=pool,
        resume=resume,
        resume_token=resume_token,
        max_in_flight=max_in_flight,
        params=params,
        strict_dtype=strict_dtype,
        memory_limit_bytes=memory_limit_bytes,
        transform_errors=transform_errors,
        niceness=niceness,
        pyramid_levels=pyramid_levels,
        **kwargs,
    )


def position_run(
    transform: TransformRef,
    input_info: PositionInfo,
    output: PositionInfo | str | os.PathLike[str] | None = None,
    input_channel_indices: Sequence[Any] | None = None,
    output_channel_indices: Sequence[Any] | None = None,
    input_time_indices: Sequence[int] | None = None,
    output_time_indices: Sequence[int] | None = None,
    num_workers: int = 1,
    use_threads: bool = False,
    *,
    executor: cf.Executor | None = None,
    pool: ProcessPool | None = None,
    resume: bool = False,
    resume_token: str | None = None,
    max_in_flight: int | None = None,
    params: dict[str, Any] | None = None,
    strict_dtype: bool = False,
    memory_limit_bytes: int | None = None,
    transform_errors: Literal["wrap", "raise"] = "wrap",
    niceness: int = 0,
    pyramid_levels: int = 1,
    **kwargs: Any,
) -> PositionRun:
    """Plan a run over one position whose metadata was read already (the engine's entry).

    :func:`stream_position` is this for callers that have paths; a batch hands
    the :class:`PositionInfo` it planned with, so a position's input metadata
    is read once per run. ``output`` is the output position's metadata, or its
    path (read here, once), or None for a preview. The other parameters are
    :func:`stream_position`'s.

    Returns
    -------
    PositionRun

    Raises
    ------
    ProcessPositionError
        As :func:`stream_position`.
    """
    check_reference(transform)
    all_params = dict(params or {})
    all_params.update(kwargs)
    in_info = input_info
    out_info = read_position(output) if isinstance(output, (str, os.PathLike)) else output
    identity = ""  # what a resumed run trusts a volume's completion record by
    if out_info is not None:
        identity = run_identity(
            transform=transform,
            params=all_params,
            resume_token=resume_token,
            input_array=in_info.array_path,
            output=out_info.layout(pyramid_levels),
        )
    tasks = position_tasks(
        in_info,
        out_info,
        input_channel_indices,
        output_channel_indices,
        input_time_indices,
        output_time_indices,
        identity=identity,
        strict_dtype=strict_dtype,
        pyramid_levels=pyramid_levels,
    )
    # Read the CPU budget (cgroup files) once, and only when it decides something: a
    # batch's serial positions (thousands of them) never need it.
    cpus = available_cpus() if num_workers > 1 or executor is not None else 1
    mode: Mode
    if executor is not None:
        mode = "executor"
        workers = max(1, num_workers)
    elif pool is not None and not use_threads:
        mode = "processes"
        workers = pool.num_workers
    else:
        workers = _effective_workers(num_workers, len(tasks), cpus)
        if workers > 1 and out_info is not None and out_info.write_grid[1] > 1:
            # Tasks of different channels would rewrite the same files.
            log.warning(
                "%s is chunked across %d channels, so tasks of different channels share "
                "files; running serially",
                out_info.array_path,
                out_info.write_grid[1],
            )
            workers = 1
        mode = "serial" if workers <= 1 else ("threads" if use_threads else "processes")
    if mode in ("processes", "executor"):
        check_picklable(transform, all_params)
    inner = max(1, cpus // max(1, workers)) if mode != "serial" else cpus
    return PositionRun(
        transform,
        all_params,
        in_info,
        out_info,
        tasks,
        num_workers=workers,
        mode=mode,
        executor=executor,
        pool=pool,
        resume=resume,
        max_in_flight=max_in_flight or 2 * workers,
        memory_limit_bytes=memory_limit_bytes,
        niceness=niceness,
        inner_threads=pool.inner_threads if pool is not None and mode == "processes" else inner,
        transform_errors=transform_errors,
    )
