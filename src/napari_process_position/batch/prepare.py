"""Prepare a run of a RunConfig: check it, size and create its output, return the BatchRun."""

from __future__ import annotations

import concurrent.futures as cf
from typing import Any

from napari_process_position.batch.config import RunConfig
from napari_process_position.batch.output import make_output
from napari_process_position.batch.plan import output_layout, select_positions
from napari_process_position.batch.run import BatchRun
from napari_process_position.core.errors import InvalidStoreError, TransformError
from napari_process_position.engine.pool import ProcessPool
from napari_process_position.store.layout import OutputLayout
from napari_process_position.store.metadata import open_store, read_position
from napari_process_position.transforms import get_transform

__all__ = ["prepare", "run_config"]


def prepare(
    config: RunConfig, *, pool: ProcessPool | None = None, executor: cf.Executor | None = None
) -> BatchRun:
    """Check a config, size and create its output, and return the run (not yet started).

    Raises
    ------
    ProcessPositionError
        For a bad input, position, transform, parameter or output; nothing is
        written then.
    """
    if config.uses_dask and executor is None:
        from napari_process_position.batch.extras import require

        require("distributed")
        if config.slurm is not None:
            require("dask_jobqueue", "--slurm")
    store = open_store(config.input)
    keys = select_positions(store, config.positions)
    spec = get_transform(config.transform)
    try:
        params = spec.check_params(dict(config.params))
    except TypeError as exc:
        raise TransformError(str(exc)) from exc
    inputs = {k: read_position(store.position_path(k), k) for k in keys}
    first = inputs[keys[0]]
    n_c, n_t = first.shape[1], first.shape[0]
    channels = list(config.channels) if config.channels else list(range(n_c))
    times = list(config.times) if config.times else list(range(n_t))
    for key, info in inputs.items():
        bad_c = [c for c in channels if c >= info.shape[1]]
        bad_t = [t for t in times if t >= info.shape[0]]
        if bad_c:
            raise InvalidStoreError(
                f"position {key} has {info.shape[1]} channels (0 to {info.shape[1] - 1}); "
                f"channel {bad_c[0]} does not exist"
            )
        if bad_t:
            raise InvalidStoreError(
                f"position {key} has {info.shape[0]} time points (0 to {info.shape[0] - 1}); "
                f"time {bad_t[0]} does not exist"
            )
    output_paths: dict[str, str | None] = dict.fromkeys(keys)
    layouts: dict[str, OutputLayout] = {}
    cache: dict[tuple[Any, ...], OutputLayout] = {}
    for key, info in inputs.items():
        sig = (info.shape, info.dtype, info.scale, info.channel_names)
        if sig not in cache:
            cache[sig] = output_layout(spec, info, params, channels, times)
        layouts[key] = cache[sig]
    dask = None
    if config.uses_dask and executor is None:
        # Connect (or start the cluster) before writing anything: an unreachable
        # scheduler then leaves no half-made output behind.
        from napari_process_position.batch.dask import open_session

        dask = open_session(config)
        executor = dask.executor
    try:
        output_paths = make_output(config, store, keys, layouts, output_paths)
    except BaseException:
        if dask is not None:
            dask.close()
        raise
    batch = BatchRun(
        config,
        spec,
        params,
        store,
        keys,
        inputs,
        output_paths,
        layouts,
        channels,
        times,
        pool=pool,
        executor=executor,
    )
    if dask is not None:
        batch.dask, batch._owns_dask = dask, True
    return batch


def run_config(config: RunConfig, **kwargs: Any) -> BatchRun:
    """Prepare a run of ``config``; iterate the result to run it.

    Examples
    --------
    >>> run = run_config(RunConfig(input="demo.zarr", output="out.zarr",
    ...                            transform="gaussian_blur"))  # doctest: +SKIP
    >>> for key, result in run:  # doctest: +SKIP
    ...     print(key, result.label, result.status)
    """
    return prepare(config, **kwargs)
