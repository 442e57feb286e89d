"""Run a RunConfig: pick positions, size and create the output, stream every position.

The command line and the widget both come through here, so a preview and a
batch run of the same config compute the same thing.
"""

from __future__ import annotations

import concurrent.futures as cf
import fnmatch
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._config import RunConfig
from ._engine import PositionRun, ProcessPool, stream_position
from ._errors import (
    InvalidStoreError,
    PositionNotFoundError,
    ProcessPositionError,
    TransformError,
)
from ._store import (
    OutputLayout,
    PositionInfo,
    StoreInfo,
    create_output_plate,
    create_output_position,
    open_store,
    read_position,
)
from ._tasks import Result
from ._worker import is_empty
from .transforms import TransformSpec, get_transform

__all__ = ["BatchRun", "PositionSummary", "output_layout", "run_config", "select_positions"]

log = logging.getLogger(__name__)


def select_positions(store: StoreInfo, patterns: list[str] | None) -> list[str]:
    """Position keys matching ``patterns`` (exact keys or globs), in store order."""
    keys = list(store.position_keys)
    if not patterns:
        return keys
    chosen: list[str] = []
    for pattern in patterns:
        pattern = pattern.strip().strip("/")
        matches = [k for k in keys if fnmatch.fnmatchcase(k, pattern)]
        if not matches:
            shown = ", ".join(keys[:8]) + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")
            raise PositionNotFoundError(f"no position matches {pattern!r} in {store.path}; it has {shown}")
        chosen.extend(k for k in matches if k not in chosen)
    return chosen


def _probe(spec: TransformSpec, info: PositionInfo, channels: list[int], times: list[int],
           params: dict[str, Any]) -> np.ndarray:
    """Run the transform once, in this process, to learn its output shape and dtype."""
    import tensorstore as ts

    from ._store import tensorstore_spec
    from ._worker import _accepts_time_index

    source = ts.open(tensorstore_spec(info), read=True).result()
    kwargs = dict(params)
    for t in times:
        for c in channels:
            block = source[t][[c]].read().result()
            if is_empty(block):
                continue
            if _accepts_time_index(spec.func):
                kwargs["input_time_index"] = t
            try:
                out = np.asarray(spec.func(block, **kwargs))
            except Exception as exc:
                raise TransformError(
                    f"transform {spec.name!r} failed on t={t}, c={c} while finding its output "
                    f"shape: {type(exc).__name__}: {exc}", t, c
                ) from exc
            if out.ndim not in (3, 4):
                raise TransformError(
                    f"transform {spec.name!r} returned {out.ndim} dimensions for t={t}, c={c}; "
                    "expected ZYX or CZYX", t, c
                )
            return out
    raise InvalidStoreError(
        f"{info.path}: every selected volume is empty (all zeros or NaN); nothing to process"
    )


def output_layout(spec: TransformSpec, info: PositionInfo, params: dict[str, Any],
                  channels: list[int], times: list[int]) -> OutputLayout:
    """Shape, dtype, scale and channel names of the output of ``spec`` on ``info``."""
    meta = spec.meta
    zyx = info.volume_shape
    names = [info.channel_names[c] for c in channels]
    probed: np.ndarray | None = None
    if meta.output_zyx_shape is not None:
        out_zyx = tuple(int(n) for n in meta.output_zyx_shape(zyx, **params))
    elif meta.same_shape:
        out_zyx = zyx
    else:
        probed = _probe(spec, info, channels, times, params)
        out_zyx = tuple(probed.shape[-3:])
    if meta.output_dtype is not None:
        dtype = np.dtype(meta.output_dtype(np.dtype(info.dtype), **params))
    elif meta.same_shape or meta.output_zyx_shape is not None:
        dtype = np.dtype(info.dtype)
    else:
        if probed is None:
            probed = _probe(spec, info, channels, times, params)
        dtype = probed.dtype
    if dtype.kind not in "biuf" or dtype.itemsize > 8:
        raise TransformError(f"transform {spec.name!r} produces {dtype}, which OME-Zarr cannot store")
    if dtype == np.float16 or dtype.kind == "b":
        dtype = np.dtype("float32") if dtype == np.float16 else np.dtype("uint8")
    scale = list(info.scale)
    if meta.output_scale is not None:
        scale[2:] = [float(s) for s in meta.output_scale(tuple(info.scale[2:]), **params)]
    if meta.output_channel_names is not None:
        names = [str(n) for n in meta.output_channel_names(names, **params)]
    units = tuple(info.units) if any(info.units) else OutputLayout.__dataclass_fields__["units"].default
    return OutputLayout(
        shape=(len(times), len(names), out_zyx[0], out_zyx[1], out_zyx[2]),
        dtype=dtype.str,
        scale=tuple(scale),
        channel_names=tuple(names),
        units=units,
    )


@dataclass
class PositionSummary:
    """Counts and time of one position's run."""

    key: str
    total: int = 0
    written: int = 0
    preview: int = 0
    skipped: int = 0
    resumed: int = 0
    error: str | None = None
    seconds: float = 0.0

    @property
    def failed(self) -> int:
        """Volumes not completed because the position failed or was cancelled."""
        return self.total - self.written - self.preview - self.skipped - self.resumed


@dataclass
class BatchRun:
    """A prepared run of a :class:`RunConfig` over one or more positions.

    Iterate it for ``(position_key, Result)`` pairs as volumes finish; each
    Result's ``output_time_index`` is the index into ``times`` and its
    ``output_channels`` is ``(i,)``, the index into ``channels``; ``layouts``
    gives each position's output shape, dtype, scale and channel names
    (also for a preview without output, where Results carry the volume). A
    failing position is recorded in ``summaries`` and the run goes on with
    the next; ``errors`` lists them, and ``failed`` is True at the end when
    any position failed. ``cancel()`` may be called from any thread.
    """

    config: RunConfig
    spec: TransformSpec
    params: dict[str, Any]
    store: StoreInfo
    keys: list[str]
    inputs: dict[str, PositionInfo]
    output_paths: dict[str, str | None]
    layouts: dict[str, OutputLayout]
    channels: list[int]
    times: list[int]
    pool: ProcessPool | None = None
    executor: cf.Executor | None = None
    stop_on_error: bool = False
    summaries: dict[str, PositionSummary] = field(default_factory=dict)
    cancelled: bool = False
    _cancel: threading.Event = field(default_factory=threading.Event)
    _current: PositionRun | None = None
    _owned_pool: bool = False

    @property
    def total(self) -> int:
        """(t, c) volumes over all positions."""
        return len(self.keys) * len(self.times) * len(self.channels)

    @property
    def errors(self) -> list[str]:
        """One line per failed position."""
        return [f"{s.key}: {s.error}" for s in self.summaries.values() if s.error]

    @property
    def failed(self) -> bool:
        """True when a position failed."""
        return any(s.error for s in self.summaries.values())

    def cancel(self) -> None:
        """Stop after the volumes in flight; nothing more is started."""
        self._cancel.set()
        current = self._current
        if current is not None:
            current.cancel()

    def __iter__(self) -> Iterator[tuple[str, Result]]:
        mode_processes = self.executor is None and not self.config.use_threads and self.config.num_workers > 1
        if mode_processes and self.pool is None and len(self.keys) > 1:
            # One pool for every position: spawn is paid once.
            from ._cpus import available_cpus

            workers = min(self.config.num_workers, available_cpus())
            if workers > 1:
                self.pool = ProcessPool(workers)
                self._owned_pool = True
        try:
            for key in self.keys:
                if self._cancel.is_set():
                    self.cancelled = True
                    break
                yield from self._run_position(key)
        finally:
            if self._owned_pool and self.pool is not None:
                if self._cancel.is_set():
                    self.pool.kill()
                else:
                    self.pool.shutdown()
                self.pool = None

    def _run_position(self, key: str) -> Iterator[tuple[str, Result]]:
        summary = self.summaries[key] = PositionSummary(key, total=len(self.times) * len(self.channels))
        start = time.perf_counter()
        n_out = len(self.channels)
        try:
            run = stream_position(
                self.spec.ref if self._needs_ref() else self.spec.func,
                self.inputs[key].path,
                self.output_paths[key],
                input_channel_indices=[[c] for c in self.channels],
                output_channel_indices=[[i] for i in range(n_out)],
                input_time_indices=self.times,
                output_time_indices=list(range(len(self.times))),
                num_workers=self.config.num_workers,
                use_threads=self.config.use_threads,
                executor=self.executor,
                pool=self.pool if not self.config.use_threads else None,
                resume=self.config.resume,
                resume_token=self._token(),
                params=self.params,
            )
            self._current = run
            if self._cancel.is_set():
                run.cancel()
            for result in run:
                setattr(summary, result.status, getattr(summary, result.status) + 1)
                yield key, result
            if run.cancelled:
                self.cancelled = True
                summary.error = "cancelled"
        except ProcessPositionError as exc:
            summary.error = str(exc)
            log.error("position %s failed: %s", key, exc)
            if self.stop_on_error:
                raise
        finally:
            self._current = None
            summary.seconds = time.perf_counter() - start

    def _needs_ref(self) -> bool:
        # Workers in other processes import the transform by reference.
        return self.executor is not None or (not self.config.use_threads and self.config.num_workers > 1)

    def _token(self) -> str:
        from ._engine import fingerprint

        return fingerprint(self.spec.ref, self.params, self.store.path)


def _same_or_inside(a: Path, b: Path) -> bool:
    return a == b or b in a.parents or a in b.parents


def prepare(config: RunConfig, *, pool: ProcessPool | None = None,
            executor: cf.Executor | None = None) -> BatchRun:
    """Check a config, size and create its output, and return the run (not yet started).

    Raises
    ------
    ProcessPositionError
        For a bad input, position, transform, parameter or output; nothing is
        written then.
    """
    store = open_store(config.input)
    keys = select_positions(store, config.positions)
    spec = get_transform(config.transform)
    try:
        params = spec.check_params(dict(config.params))
    except TypeError as exc:
        raise TransformError(str(exc)) from None
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
    if config.output:
        out_root = Path(config.output).expanduser().resolve()
        if _same_or_inside(out_root, Path(store.path)):
            raise InvalidStoreError(
                f"the output {out_root} is the input or inside it; choose another output path"
            )
        if store.kind == "plate":
            create_output_plate(
                out_root, layouts, version=config.ome_version, overwrite=config.overwrite,
                exist_ok=config.resume,
            )
            output_paths = {k: os.path.join(out_root, *k.split("/")) for k in keys}
        else:
            key = keys[0]
            if out_root.exists() and not (config.overwrite or config.resume):
                from ._errors import OutputExistsError

                raise OutputExistsError(
                    f"{out_root} already exists; use --overwrite (overwrite=True) to replace it or --resume (resume=True) to continue it"
                )
            if out_root.exists() and config.overwrite:
                import shutil

                shutil.rmtree(out_root)
            if not out_root.exists():
                create_output_position(out_root, layouts[key], version=config.ome_version)
            output_paths = {key: str(out_root)}
    return BatchRun(config, spec, params, store, keys, inputs, output_paths, layouts,
                    channels, times, pool=pool, executor=executor)


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
