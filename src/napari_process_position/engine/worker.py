"""The function a worker runs for one task: read, check, transform, write, record.

This module is what a spawned worker process imports, so it imports only
numpy, tensorstore and the standard library (plus the transform's own
module). It must never import Qt, napari or the rest of this package's
engine.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import inspect
import logging
import os
import pickle
import signal
import sys
import threading
import time
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numpy as np

from napari_process_position.core import records as _progress
from napari_process_position.core.errors import InputReadError, OutputWriteError, TransformError
from napari_process_position.core.tasks import ChannelIndex, Result, Task, channel_label
from napari_process_position.store.shards import RowRewrite, lost_text, rewrite_rows

__all__ = [
    "PickledTransform",
    "TransformRef",
    "check_result",
    "init_worker",
    "is_empty",
    "resolve_transform",
    "run_task",
]


class PickledTransform:
    """A callable transform, pickled once in the caller and unpickled in the worker's task.

    Sent this way, a transform that a worker process cannot import (its
    module exists only in the caller) fails inside the task with a message
    naming it, instead of breaking the pool's queue, which would look like a
    crashed worker.
    """

    __slots__ = ("name", "payload")

    def __init__(self, name: str, payload: bytes) -> None:
        self.name = name
        self.payload = payload

    def __reduce__(self) -> tuple[Any, ...]:
        return (PickledTransform, (self.name, self.payload))

    def __repr__(self) -> str:
        return f"PickledTransform({self.name!r})"


#: A transform as it travels to a worker: a picklable callable, a
#: ``"module:function"`` / ``"/path/to/file.py:function"`` string, or a
#: :class:`PickledTransform`.
TransformRef = Callable[..., Any] | str | PickledTransform

log = logging.getLogger(__name__)

_thread_limits: Any = None
#: The memory limit (bytes of address space) this worker runs under, for messages.
memory_limit: int | None = None


def _watch_parent(parent_pid: int, interval_s: float = 0.5) -> None:
    """End this worker when the process that started it is gone (it was SIGKILLed).

    A pool worker otherwise keeps waiting on its task queue forever, holding
    memory on a shared node.
    """
    while True:
        time.sleep(interval_s)
        if os.getppid() != parent_pid:
            os._exit(70)


def init_worker(
    inner_threads: int | None,
    memory_limit_bytes: int | None = None,
    parent_pid: int | None = None,
) -> None:
    """Process-pool initializer: limits, signals, and warm imports.

    - BLAS/OpenMP threads are capped at ``inner_threads``.
    - ``memory_limit_bytes`` caps the worker's address space
      (``RLIMIT_AS``): an allocation beyond it raises ``MemoryError`` in the
      transform, which the run reports as out of memory with the (t, c),
      instead of the kernel's OOM killer ending the worker (or the whole job).
    - SIGINT and SIGTERM are ignored: Ctrl-C in a terminal and a scheduler's
      SIGTERM reach every process of the group, and the caller decides how
      to stop (let the volumes in flight finish, then stop the workers).
    - The worker ends itself when its parent process is gone.
    """
    global _thread_limits, memory_limit
    if memory_limit_bytes:
        import resource

        _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = int(memory_limit_bytes)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
        memory_limit = limit
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError, OSError):  # not the main thread
            signal.signal(signum, signal.SIG_IGN)
    if parent_pid is not None:
        threading.Thread(
            target=_watch_parent, args=(parent_pid,), name="npp-parent-watch", daemon=True
        ).start()
    if inner_threads:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(inner_threads)
        try:
            from threadpoolctl import threadpool_limits

            _thread_limits = threadpool_limits(limits=inner_threads)
        except ImportError:  # pragma: no cover - threadpoolctl is a dependency
            pass
    import tensorstore  # noqa: F401  (import once, now, not in the first task)


def warm_up(hold_s: float = 0.0, transform: TransformRef | None = None) -> int:
    """Do nothing, so that a pool starts its processes ahead of the first real task.

    Holding the worker a moment makes the pool hand the next warm-up to
    another process, so every process gets started and initialised. With a
    transform, its module is imported now rather than in the first task.
    """
    if transform is not None:
        resolve_transform(transform)
    if hold_s:
        time.sleep(hold_s)
    return os.getpid()


def _load_file_module(path: str) -> Any:
    """Import a transform file; again when it changed since (users edit and re-run)."""
    path = os.path.abspath(path)
    mtime = os.stat(path).st_mtime_ns
    digest = hashlib.sha1(path.encode()).hexdigest()[:12]
    name = f"_npp_transform_{digest}"
    loaded = sys.modules.get(name)
    if loaded is not None and getattr(loaded, "__npp_mtime__", None) == mtime:
        return loaded
    folder = os.path.dirname(path)
    if folder not in sys.path:
        sys.path.append(folder)  # so the file can import modules next to it
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load transforms from {path}")
    module = importlib.util.module_from_spec(spec)
    module.__npp_mtime__ = mtime  # type: ignore[attr-defined]
    module.__npp_path__ = path  # type: ignore[attr-defined]
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _split_ref(ref: str) -> tuple[str, str]:
    target, sep, func_name = ref.rpartition(":")
    if not sep or not target or not func_name:
        raise ValueError(
            f"a transform reference looks like 'module:function' or 'file.py:function', not {ref!r}"
        )
    return target, func_name


def _is_file_ref(target: str) -> bool:
    return target.endswith(".py") or os.sep in target


@lru_cache(maxsize=64)
def _resolve_module_ref(ref: str) -> Callable[..., Any]:
    target, func_name = _split_ref(ref)
    return _attribute(importlib.import_module(target), func_name, ref)


def _attribute(module: Any, func_name: str, ref: str) -> Callable[..., Any]:
    func = module
    for part in func_name.split("."):
        func = getattr(func, part)
    if not callable(func):
        raise TypeError(f"{ref} is not callable")
    return func  # type: ignore[no-any-return]


@lru_cache(maxsize=64)
def _unpickle(payload: bytes) -> Callable[..., Any]:
    return pickle.loads(payload)  # type: ignore[no-any-return]


def resolve_transform(ref: TransformRef) -> Callable[..., Any]:
    """Return the callable a reference names (a ``.py`` file is re-read when it changes)."""
    if isinstance(ref, PickledTransform):
        return _unpickle(ref.payload)
    if callable(ref):
        return ref
    target, func_name = _split_ref(ref)
    if _is_file_ref(target):
        return _attribute(_load_file_module(target), func_name, ref)
    return _resolve_module_ref(ref)


def _accepts_time_index(func: Callable[..., Any]) -> bool:
    try:
        return "input_time_index" in inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False


def is_empty(block: np.ndarray) -> bool:
    """Tell whether a ZYX block, or any channel of a CZYX block, is all zeros or all NaN.

    ``np.any`` stops at the first non-zero value, so real data is cleared
    quickly without building a full boolean mask.
    """
    if block.ndim == 3:
        return _volume_empty(block)
    if block.ndim == 4:
        return any(_volume_empty(block[c]) for c in range(block.shape[0]))
    raise ValueError(f"expected a ZYX or CZYX block, got {block.ndim} dimensions")


def _volume_empty(zyx: np.ndarray) -> bool:
    if not np.any(zyx):
        return True
    if zyx.dtype.kind != "f" or not np.isnan(zyx.flat[0]):
        return False  # one real value is enough: no full NaN scan
    return bool(np.isnan(zyx).all())


def _ts_selection(group: ChannelIndex) -> int | list[int] | slice:
    return list(group) if isinstance(group, tuple) else group


def _open(array_path: str, zarr_format: int | None, *, write: bool) -> Any:
    import tensorstore as ts

    spec = {
        "driver": "zarr3" if zarr_format == 3 else "zarr",
        "kvstore": {"driver": "file", "path": array_path},
    }
    return ts.open(spec, read=True, write=write, open=True).result()


def _expected_shape(task: Task) -> tuple[int, ...] | None:
    if task.output_shape is None:
        return None
    n_channels = task.output_shape[1]
    group = task.output_channels
    zyx = tuple(task.output_shape[2:])
    if isinstance(group, int):
        return zyx
    count = len(range(n_channels)[group]) if isinstance(group, slice) else len(group)
    return (count, *zyx)


def _bad_output(message: str, time_index: int, channels: Any) -> TransformError:
    """Make a TransformError for a result that cannot be stored; its message is complete."""
    error = TransformError(message, time_index=time_index, channel_index=channels)
    error.complete = True  # type: ignore[attr-defined]
    return error


def _describe_shape(expected: tuple[int, ...]) -> str:
    axes = "ZYX" if len(expected) == 3 else "CZYX"
    return f"{expected} ({axes})"


def check_result(
    out: Any,
    name: str,
    time_index: int,
    channels: ChannelIndex,
    expected: tuple[int, ...] | None = None,
) -> np.ndarray:
    """Return the transform's result as a numeric ZYX/CZYX array, or raise saying why not.

    Parameters
    ----------
    out
        What the transform returned.
    name
        The transform's name, for the message.
    time_index, channels
        The input (t, c) it was given, for the message.
    expected
        The shape the output store expects; a missing or extra leading
        axis of length 1 is accepted.

    Raises
    ------
    TransformError
        ``None``, something that is not an array, an array of a kind that
        OME-Zarr cannot store (complex, object, strings), or the wrong shape.
    """
    where = f"t={time_index}, c={channel_label(channels)}"
    wanted = (
        f"an array of shape {_describe_shape(expected)}"
        if expected is not None
        else "a ZYX or CZYX array"
    )
    if out is None:
        raise _bad_output(
            f"transform {name!r} returned None for {where}; expected {wanted} "
            "(does it forget to return its result?)",
            time_index,
            channels,
        )
    try:
        array = np.asarray(out)
    except Exception as exc:
        raise _bad_output(
            f"transform {name!r} returned {type(out).__name__} for {where}, which is not an "
            f"array ({exc}); expected {wanted}",
            time_index,
            channels,
        ) from None
    if array.dtype == object or array.dtype.kind not in "biuf":
        hint = "; return np.abs(x) or x.real" if array.dtype.kind == "c" else ""
        raise _bad_output(
            f"transform {name!r} returned {type(out).__name__} of dtype {array.dtype} for "
            f"{where}; expected {wanted} of integers or floats (OME-Zarr stores no other "
            f"kind){hint}",
            time_index,
            channels,
        )
    if expected is not None and array.shape != expected:
        if array.shape == expected[1:] and len(expected) == 4 and expected[0] == 1:
            array = array[np.newaxis]
        elif len(expected) == 3 and array.shape == (1, *expected):
            array = array[0]
        else:
            raise _bad_output(
                f"transform {name!r} returned shape {array.shape} for {where}, but the output "
                f"expects {_describe_shape(expected)}",
                time_index,
                channels,
            )
    elif expected is None and array.ndim not in (3, 4):
        raise _bad_output(
            f"transform {name!r} returned {array.ndim} dimensions (shape {array.shape}) for "
            f"{where}; expected {wanted}",
            time_index,
            channels,
        )
    return array


def _check_output(out: Any, task: Task, t_in: int, func: Callable[..., Any]) -> np.ndarray:
    name = getattr(func, "__name__", repr(func))
    where = f"t={t_in}, c={channel_label(task.input_channels)}"
    array = check_result(out, name, t_in, task.input_channels, _expected_shape(task))
    if task.output_dtype is not None and array.dtype != np.dtype(task.output_dtype):
        target = np.dtype(task.output_dtype)
        if task.strict_dtype and not np.can_cast(array.dtype, target, "same_kind"):
            raise _bad_output(
                f"transform {name!r} returned {array.dtype} for {where}, but the output stores "
                f"{target}; return {target}, or declare the output dtype with "
                "@transform(output_dtype=...)",
                t_in,
                task.input_channels,
            )
        if array.dtype.kind == "f" and target.kind in "biu" and array.size:
            # NaN propagates through min and max, and inf shows in them: two cheap passes.
            lo, hi = float(np.min(array)), float(np.max(array))
            if not (np.isfinite(lo) and np.isfinite(hi)):
                what = "NaN" if np.isnan(lo) or np.isnan(hi) else "infinite values"
                raise _bad_output(
                    f"transform {name!r} returned {what} for {where}, but the output stores "
                    f"{target}, which cannot hold them; replace them (np.nan_to_num) or write a "
                    "float output",
                    t_in,
                    task.input_channels,
                )
        # As numpy (and so zarr and iohub) cast: out-of-range values wrap.
        array = array.astype(target)
    return array


def _note_transform_error(exc: BaseException, name: str, task: Task, t_in: int) -> None:
    """Mark an exception raised by the transform itself, and name where it happened.

    The note (PEP 678) and the mark travel with the exception when it is
    pickled back from a worker process, so the caller can re-raise it as the
    same type (iohub's behaviour) or wrap it in a :class:`TransformError`.
    """
    with contextlib.suppress(Exception):  # an exception type that takes no attributes
        exc.add_note(
            f"raised by transform {name!r} on t={t_in}, c={channel_label(task.input_channels)} "
            f"of {os.path.dirname(task.input_array)}"
        )
        exc.npp_transform_error = True  # type: ignore[attr-defined]


def _read(source: Any, task: Task, t_in: int, selection: Any) -> np.ndarray:
    try:
        return source[t_in][selection].read().result()  # type: ignore[no-any-return]
    except Exception as exc:
        raise InputReadError(
            f"reading t={t_in}, c={channel_label(task.input_channels)} from "
            f"{task.input_array} failed: {exc}"
        ) from exc


def _write_volumes(
    target: Any, task: Task, volumes: dict[int, np.ndarray | None]
) -> list[RowRewrite]:
    """Write the task's volumes whole (see :mod:`._shards`); a failure names the block."""
    grid = task.output_grid
    if grid is None:  # pragma: no cover - every planned task with an output has its grid
        raise OutputWriteError(f"no file layout known for {task.output_array}")
    try:
        outcomes = rewrite_rows(
            target,
            grid,
            volumes,
            _ts_selection(task.output_channels),
            task.output_channel_list(),
        )
    except Exception as exc:
        times = ",".join(str(t) for t in sorted(volumes))
        raise OutputWriteError(
            f"writing t={times}, c={channel_label(task.output_channels)} to {task.output_array} "
            f"failed: {exc}"
        ) from exc
    lost = lost_text(outcomes)
    if lost:
        log.warning(
            "%s: a file shared with volumes outside this run was unreadable (torn or damaged); "
            "it was rewritten, and these volumes now hold the fill value: %s. Rerun them.",
            task.output_array,
            lost,
        )
    return outcomes


def _record(task: Task, volumes: dict[int, np.ndarray | None], outcomes: list[RowRewrite]) -> None:
    """Write the completion records of a task's volumes, once all of them are stored."""
    progress_dir, grid = task.progress_dir, task.output_grid
    if progress_dir is None or grid is None:
        return
    channels = task.output_channel_list()
    pairs = dict(zip(task.output_time_indices, task.input_time_indices, strict=True))
    try:
        for t_out, volume in volumes.items():
            _progress.record(
                progress_dir,
                task.record_name(t_out),
                identity=task.volume_identity(pairs[t_out], t_out),
                status="written" if volume is not None else "skipped",
                files=grid.stat(grid.record_files(t_out, channels)),
            )
        # Volumes outside the task whose files were rewritten: a kept one keeps its
        # record (with the new file stats); a lost one loses it.
        for outcome in outcomes:
            for t, c in outcome.kept + outcome.lost:
                name = _progress.record_name(t, str(c))
                if (t, c) in outcome.lost:
                    _progress.remove(progress_dir, name)
                    continue
                meta = grid.stat([grid.meta_file])
                _progress.restat(
                    progress_dir,
                    name,
                    {**{k: outcome.before[k] for k in grid.volume_files(t, [c])}, **meta},
                    {**{k: outcome.after[k] for k in grid.volume_files(t, [c])}, **meta},
                )
    except OSError as exc:
        raise OutputWriteError(
            f"recording t={','.join(map(str, volumes))}, c={channel_label(task.output_channels)} "
            f"as complete in {progress_dir} failed: {exc}"
        ) from exc


def run_task(
    task: Task,
    transform: TransformRef,
    params: dict[str, Any],
) -> list[Result]:
    """Run one task and report one :class:`Result` per time point.

    Reads each input block, skips blocks that are empty (all zeros or all
    NaN in some channel; their output is left at the fill value), applies
    the transform, and either stores the results in the output array (the
    task's files are written whole, never read back: see :mod:`._shards`)
    or, for a preview without output, returns them. Every input block is
    read before anything is written, so a run in place reads the input.
    Completion records are written only after the data is stored, so resume
    never trusts a partial write.
    """
    func = _load_transform(transform, task)
    name = getattr(func, "__name__", None) or _transform_label(transform)
    kwargs = dict(params)
    wants_time = _accepts_time_index(func)
    worker = f"pid {os.getpid()} / {threading.current_thread().name}"
    source = _open(task.input_array, task.input_zarr_format, write=False)
    target = None
    if task.output_array is not None:
        target = _open(task.output_array, task.output_zarr_format, write=True)
    c_in = _ts_selection(task.input_channels)
    timings: list[tuple[int, int, str, float, float]] = []
    volumes: dict[int, np.ndarray | None] = {}
    results: list[Result] = []
    for t_in, t_out in zip(task.input_time_indices, task.output_time_indices, strict=True):
        if task.progress_dir is not None:
            _progress.remove(task.progress_dir, task.record_name(t_out))
        start = time.perf_counter()
        block = _read(source, task, t_in, c_in)
        read_done = time.perf_counter()
        array: np.ndarray | None = None
        if not is_empty(block):
            if wants_time:
                kwargs["input_time_index"] = t_in
            try:
                out = func(block, **kwargs)
            except Exception as exc:
                _note_transform_error(exc, name, task, t_in)
                raise
            del block
            array = _check_output(out, task, t_in, func)
        computed = time.perf_counter()
        status = "skipped" if array is None else ("written" if target is not None else "preview")
        if target is None:
            results.append(
                Result(
                    task.index,
                    t_in,
                    t_out,
                    task.input_channels,
                    task.output_channels,
                    status,  # type: ignore[arg-type]
                    array,
                    read_done - start,
                    computed - read_done,
                    0.0,
                    worker,
                )
            )
        else:
            volumes[t_out] = array
            timings.append((t_in, t_out, status, read_done - start, computed - read_done))
    if target is None:
        return results
    start = time.perf_counter()
    outcomes = _write_volumes(target, task, volumes)
    write_s = (time.perf_counter() - start) / max(1, len(volumes))
    _record(task, volumes, outcomes)
    return [
        Result(
            task.index,
            t_in,
            t_out,
            task.input_channels,
            task.output_channels,
            status,  # type: ignore[arg-type]
            None,
            read_s,
            compute_s,
            write_s,
            worker,
        )
        for t_in, t_out, status, read_s, compute_s in timings
    ]


def _transform_label(transform: TransformRef) -> str:
    if isinstance(transform, PickledTransform):
        return transform.name
    if isinstance(transform, str):
        return transform
    return getattr(transform, "__qualname__", None) or repr(transform)


def _load_transform(transform: TransformRef, task: Task) -> Callable[..., Any]:
    """Resolve the transform in this worker; an import failure names it and the task."""
    try:
        return resolve_transform(transform)
    except Exception as exc:
        where = "this worker process" if _in_pool_worker() else "this process"
        error = TransformError(
            f"transform {_transform_label(transform)!r} cannot be loaded in {where} "
            f"(pid {os.getpid()}) for {task.label}: {type(exc).__name__}: {exc}. Worker "
            "processes import a transform by its module name: define it in an importable "
            "module or a .py file (pass 'module:function' or 'file.py:function'), or use threads",
            time_index=task.input_time_indices[0],
            channel_index=task.input_channels,
        )
        error.complete = True  # type: ignore[attr-defined]
        raise error from None


def _in_pool_worker() -> bool:
    import multiprocessing

    return multiprocessing.parent_process() is not None
