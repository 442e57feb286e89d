"""Run a RunConfig: pick positions, size and create the output, stream every position.

The command line and the widget both come through here, so a preview and a
batch run of the same config compute the same thing.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import errno
import fnmatch
import logging
import math
import os
import queue
import shutil
import threading
import time
import uuid
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_process_position.batch.config import RunConfig
from napari_process_position.core import records as _progress
from napari_process_position.core.apply import is_empty
from napari_process_position.core.errors import (
    InvalidStoreError,
    OutputExistsError,
    OutputWriteError,
    PositionNotFoundError,
    ProcessPositionError,
    TransformError,
)
from napari_process_position.core.tasks import Result
from napari_process_position.engine.pool import ProcessPool
from napari_process_position.engine.run import PositionRun
from napari_process_position.engine.stream import stream_position
from napari_process_position.store.create import create_output_position, write_empty_plate
from napari_process_position.store.layout import (
    OutputLayout,
    PositionInfo,
    StoreInfo,
    layout_differences,
)
from napari_process_position.store.metadata import open_store, read_position
from napari_process_position.transforms import TransformSpec, get_transform

__all__ = [
    "BatchRun",
    "PositionSummary",
    "create_plate",
    "output_layout",
    "prepare",
    "provenance_config",
    "run_config",
    "select_positions",
]

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
            raise PositionNotFoundError(
                f"no position matches {pattern!r} in {store.path}; it has {shown}"
            )
        chosen.extend(k for k in matches if k not in chosen)
    return chosen


def _probe(
    spec: TransformSpec,
    info: PositionInfo,
    channels: list[int],
    times: list[int],
    params: dict[str, Any],
) -> np.ndarray:
    """Run the transform once, in this process, to learn its output shape and dtype."""
    from napari_process_position.core.apply import accepts_time_index, check_result

    source = info.open_array()
    kwargs = dict(params)
    for t in times:
        for c in channels:
            block = source[t][[c]].read().result()
            if is_empty(block):
                continue
            if accepts_time_index(spec.func):
                kwargs["input_time_index"] = t
            try:
                result = spec.func(block, **kwargs)
            except Exception as exc:
                raise TransformError(
                    f"transform {spec.name!r} failed on t={t}, c={c} while finding its output "
                    f"shape: {type(exc).__name__}: {exc}",
                    t,
                    c,
                ) from exc
            # None, not an array, complex/object, not ZYX/CZYX: one message naming the (t, c).
            return check_result(result, spec.name, t, c)
    raise InvalidStoreError(
        f"{info.path}: every selected volume is empty (all zeros or NaN); nothing to process"
    )


def output_layout(
    spec: TransformSpec,
    info: PositionInfo,
    params: dict[str, Any],
    channels: list[int],
    times: list[int],
) -> OutputLayout:
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
        raise TransformError(
            f"transform {spec.name!r} produces {dtype}, which OME-Zarr cannot store"
        )
    if dtype == np.float16 or dtype.kind == "b":
        dtype = np.dtype("float32") if dtype == np.float16 else np.dtype("uint8")
    scale = list(info.scale)
    if meta.output_scale is not None:
        scale[2:] = [float(s) for s in meta.output_scale(tuple(info.scale[2:]), **params)]
    if meta.output_channel_names is not None:
        names = [str(n) for n in meta.output_channel_names(names, **params)]
    default_units: tuple[str | None, ...] = OutputLayout.__dataclass_fields__["units"].default  # type: ignore[assignment]
    units = tuple(info.units) if any(info.units) else default_units
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

    When the config names a Dask cluster (``dask_scheduler``, ``dask_local``
    or ``slurm``) and no executor was given, :func:`prepare` connects to it
    (or starts it) before writing anything, and the end of the iteration (or
    :meth:`close`) disconnects and stops what it started; :meth:`start`
    says where the tasks run. With a process pool or
    an executor, several positions are in flight at once so that workers do
    not idle at the end of each position; Results of different positions
    then interleave.
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
    #: Set when the run cannot go on (the Dask cluster was lost); later positions are not started.
    fatal_error: str | None = None
    #: The Dask session this run opened (None when not on Dask or not started yet).
    dask: Any = None
    _cancel: threading.Event = field(default_factory=threading.Event)
    _runs: set[PositionRun] = field(default_factory=set)
    _runs_lock: threading.Lock = field(default_factory=threading.Lock)
    _owned_pool: bool = False
    _owns_dask: bool = False
    _cancel_wait: float = 0.0

    @property
    def total(self) -> int:
        """(t, c) volumes over all positions."""
        return len(self.keys) * self.volumes_per_position

    @property
    def volumes_per_position(self) -> int:
        """(t, c) volumes of one position."""
        return len(self.times) * len(self.channels)

    @property
    def errors(self) -> list[str]:
        """One line per failed position."""
        lines = [
            f"{s.key}: {s.error}"
            for s in self.summaries.values()
            if s.error and s.error != "cancelled"
        ]
        if self.fatal_error and not any(self.fatal_error in line for line in lines):
            lines.append(self.fatal_error)
        return lines

    @property
    def failed(self) -> bool:
        """True when a position failed."""
        return bool(self.fatal_error) or any(
            s.error and s.error != "cancelled" for s in self.summaries.values()
        )

    @property
    def not_started(self) -> list[str]:
        """Positions that never started (after a cancel or a lost cluster)."""
        return [k for k in self.keys if k not in self.summaries]

    def cancel(self, wait: float = 0.0) -> None:
        """Stop: nothing more is started; tasks in flight get up to ``wait`` seconds to finish."""
        self._cancel_wait = wait
        self._cancel.set()
        with self._runs_lock:
            runs = list(self._runs)
        for run in runs:
            run.cancel(wait)

    # -- where the tasks run ---------------------------------------------------------
    def start(self) -> str:
        """Connect to (or start) the configured executor now; return where tasks run.

        Iterating calls this too. Raises :class:`~._dask.DaskUnavailableError`
        or :class:`~._dask.DaskClusterError` when Dask is missing or unreachable.
        """
        if self.executor is None and self.config.uses_dask and self.dask is None:
            from napari_process_position.batch.dask import open_session

            self.dask = open_session(self.config)
            self.executor = self.dask.executor
            self._owns_dask = True
            log.info("running on %s", self.dask.description)
        if self.dask is not None:
            link = self.dask.dashboard_link
            return self.dask.description + (f"; dashboard {link}" if link else "")
        if self.executor is not None:
            return f"executor {type(self.executor).__name__}"
        return self.config.describe_executor()

    def close(self) -> None:
        """Release what :meth:`start` opened (a Dask client, a cluster it started)."""
        if not self._owns_dask:
            return
        session, self.dask = self.dask, None
        self._owns_dask = False
        if session is not None:
            if self.executor is session.executor:
                self.executor = None
            session.close()

    def _slots(self) -> int:
        """Tasks that can run at once on the executor or pool."""
        if self.executor is not None:
            slots = getattr(self.executor, "slots", None)
            if callable(slots):
                if self.dask is not None:
                    return int(self.dask.slots())
                return int(slots())
            return max(1, int(getattr(self.executor, "_max_workers", 0) or self.config.num_workers))
        if self.pool is not None:
            return self.pool.num_workers
        return max(1, self.config.num_workers)

    def _concurrency(self) -> int:
        """Positions in flight at once."""
        if len(self.keys) <= 1 or self.volumes_per_position == 0:
            return 1
        if self.executor is None and self.pool is None:
            return 1  # serial or threads: one position at a time
        per_position = self.volumes_per_position
        return min(len(self.keys), max(2, math.ceil(self._slots() / per_position) + 1))

    # -- running -------------------------------------------------------------------
    def __iter__(self) -> Iterator[tuple[str, Result]]:
        try:
            self.start()
            mode_processes = (
                self.executor is None
                and not self.config.use_threads
                and self.config.num_workers > 1
            )
            if mode_processes and self.pool is None and len(self.keys) > 1:
                # One pool for every position: spawn is paid once.
                from napari_process_position.core.budget import available_cpus

                workers = min(self.config.num_workers, available_cpus())
                if workers > 1:
                    self.pool = ProcessPool(workers)
                    self._owned_pool = True
            concurrency = self._concurrency()
            if concurrency <= 1:
                for key in self.keys:
                    if self._should_stop():
                        break
                    yield from self._run_position(key)
            else:
                yield from self._interleaved(concurrency)
        finally:
            if self._owned_pool and self.pool is not None:
                if self._cancel.is_set():
                    self.pool.kill()
                else:
                    self.pool.shutdown()
                self.pool = None
            self.close()

    def _should_stop(self) -> bool:
        if self._cancel.is_set():
            self.cancelled = True
            return True
        return self.fatal_error is not None

    def _interleaved(self, concurrency: int) -> Iterator[tuple[str, Result]]:
        """Run ``concurrency`` positions at a time, each in its own thread; merge their Results."""
        items: queue.Queue[Any] = queue.Queue(maxsize=max(16, 4 * self._slots()))
        pending = iter(self.keys)
        pending_lock = threading.Lock()
        stop = threading.Event()
        finished = object()

        def put(item: Any) -> bool:
            while not stop.is_set():
                try:
                    items.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def drive() -> None:
            try:
                while not stop.is_set() and not self._should_stop():
                    with pending_lock:
                        key = next(pending, None)
                    if key is None:
                        break
                    with contextlib.closing(self._run_position(key)) as results:
                        for item in results:
                            if not put(item):
                                return
            except BaseException as exc:  # re-raised in the consumer
                put(_Failure(exc))
            finally:
                put(finished)

        threads = [
            threading.Thread(target=drive, name=f"npp-positions-{i}", daemon=True)
            for i in range(concurrency)
        ]
        for thread in threads:
            thread.start()
        done = 0
        try:
            while done < len(threads):
                try:
                    item = items.get(timeout=0.2)
                except queue.Empty:
                    continue
                if item is finished:
                    done += 1
                elif isinstance(item, _Failure):
                    raise item.exc
                else:
                    yield item
        finally:
            if done < len(threads):  # left early: stop the positions still running
                stop.set()
                with self._runs_lock:
                    runs = list(self._runs)
                for run in runs:
                    run.cancel()
            for thread in threads:
                thread.join(timeout=30)

    def _run_position(self, key: str) -> Generator[tuple[str, Result], None, None]:
        summary = self.summaries[key] = PositionSummary(key, total=self.volumes_per_position)
        start = time.perf_counter()
        n_out = len(self.channels)
        run: PositionRun | None = None
        try:
            run = stream_position(
                self.spec.ref if self._needs_ref() else self.spec.func,
                self.inputs[key].path,
                self.output_paths[key],
                input_channel_indices=[[c] for c in self.channels],
                output_channel_indices=[[i] for i in range(n_out)],
                input_time_indices=self.times,
                output_time_indices=list(range(len(self.times))),
                num_workers=self._slots() if self.executor is not None else self.config.num_workers,
                use_threads=self.config.use_threads,
                executor=self.executor,
                pool=self.pool if not self.config.use_threads else None,
                resume=self.config.resume,
                params=self.params,
            )
            with self._runs_lock:
                self._runs.add(run)
            if self._cancel.is_set():
                run.cancel(self._cancel_wait)
            for result in run:
                setattr(summary, result.status, getattr(summary, result.status) + 1)
                yield key, result
            if run.cancelled:
                self.cancelled = True
                summary.error = "cancelled"
            else:
                self._verify(run, summary)
        except ProcessPositionError as exc:
            self._record_failure(key, summary, exc)
            if self.stop_on_error:
                raise
        except Exception as exc:  # an executor or cluster failure: report it with the key
            log.debug("position %s failed", key, exc_info=True)
            self._record_failure(key, summary, exc, f"{type(exc).__name__}: {exc}")
            if self.stop_on_error:
                raise
        finally:
            if run is not None:
                with self._runs_lock:
                    self._runs.discard(run)
            summary.seconds = time.perf_counter() - start

    def _record_failure(
        self, key: str, summary: PositionSummary, exc: BaseException, text: str | None = None
    ) -> None:
        lost = getattr(self.executor, "lost", None)
        if lost:
            # The cluster itself went away: no later position can run either.
            self.fatal_error = self.fatal_error or (
                f"{lost}; completed volumes are kept, rerun with --resume when the cluster is back"
            )
            summary.error = "stopped: the Dask cluster was lost"
        else:
            summary.error = text or str(exc)
        log.error("position %s failed: %s", key, summary.error)

    def _verify(self, run: PositionRun, summary: PositionSummary) -> None:
        """Check that every (t, c) of a finished position is recorded on disk: no silent gap."""
        if run.output is None:
            missing = summary.failed
        else:
            missing = len(run.expected_records().keys() - run.check_records().done)
        if missing:
            summary.error = (
                f"{missing} of {summary.total} volumes have no completion record "
                "after the run; rerun with --resume to complete them"
            )

    def _needs_ref(self) -> bool:
        # Workers in other processes import the transform by reference.
        return (
            self.executor is not None
            or self.config.uses_dask
            or (not self.config.use_threads and self.config.num_workers > 1)
        )


@dataclass
class _Failure:
    exc: BaseException


@contextlib.contextmanager
def _plate_lock(root: Path) -> Iterator[None]:
    """Hold an exclusive lock on the store's lock file, beside it (serialises metadata changes)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory locks, no concurrent jobs
        yield
        return
    path = _progress.lock_path(root)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:  # e.g. a file system without locks
            log.warning(
                "cannot lock %s (%s); make the plate with `process-position init-output` "
                "before starting concurrent jobs",
                root,
                exc,
            )
        yield
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def create_plate(out_root: Path, layouts: dict[str, OutputLayout], config: RunConfig) -> StoreInfo:
    """Create (or, with resume, join) the output plate; safe with concurrent jobs.

    A new plate is built under a temporary name and renamed into place, so
    jobs that start together never see a half-written plate and never both
    write its metadata: the first rename wins, the others join it. Joining an
    existing plate whose positions match changes no metadata; adding missing
    positions happens under a file lock.
    """
    exists = out_root.exists()
    if config.overwrite or (exists and not config.resume):
        # Replace it, or refuse with OutputExistsError (the store is left untouched).
        store = write_empty_plate(
            out_root, layouts, version=config.ome_version, overwrite=config.overwrite
        )
        _progress.remove_store_records(out_root)  # the records of the store it replaced
        return store
    if exists:
        return _join_plate(out_root, layouts, config)
    tmp = out_root.parent / f".{out_root.name}.creating-{uuid.uuid4().hex[:12]}"
    try:
        try:
            write_empty_plate(tmp, layouts, version=config.ome_version)
        except OSError as exc:  # name the output, not the temporary folder
            raise OutputWriteError(
                f"cannot create the output {out_root}: {exc.strerror or exc}"
            ) from None
        try:
            os.rename(tmp, out_root)
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY) or not out_root.exists():
                raise
            if not config.resume:
                raise OutputExistsError(
                    f"{out_root} was created by another run meanwhile; use --resume to join it"
                ) from None
            return _join_plate(out_root, layouts, config)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return open_store(out_root)


def _join_plate(out_root: Path, layouts: dict[str, OutputLayout], config: RunConfig) -> StoreInfo:
    # Under the lock: another job may be adding its positions right now, and the plate
    # is consistent only between two such changes. When every position exists, nothing
    # is written; the layouts are only checked.
    with _plate_lock(out_root):
        return write_empty_plate(out_root, layouts, version=config.ome_version, exist_ok=True)


def _same_or_inside(a: Path, b: Path) -> bool:
    return a == b or b in a.parents or a in b.parents


def _zarr_root(path: Path) -> Path:
    """Find the outermost Zarr group holding ``path`` (the plate of a position given on its own)."""
    root = path
    for parent in path.parents:
        if not ((parent / "zarr.json").is_file() or (parent / ".zgroup").is_file()):
            break
        root = parent
    return root


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
        from napari_process_position.batch.dask import require

        require("distributed")
        if config.slurm is not None:
            require("dask_jobqueue", "--slurm")
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
    dask = None
    if config.uses_dask and executor is None:
        # Connect (or start the cluster) before writing anything: an unreachable
        # scheduler then leaves no half-made output behind.
        from napari_process_position.batch.dask import open_session

        dask = open_session(config)
        executor = dask.executor
    try:
        output_paths = _make_output(config, store, keys, layouts, output_paths)
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


def _make_output(
    config: RunConfig,
    store: StoreInfo,
    keys: list[str],
    layouts: dict[str, OutputLayout],
    output_paths: dict[str, str | None],
) -> dict[str, str | None]:
    if config.output:
        out_root = Path(config.output).expanduser().resolve()
        input_root = _zarr_root(Path(store.path))
        if _same_or_inside(out_root, input_root):
            where = "" if input_root == Path(store.path) else f" (its store {input_root})"
            raise InvalidStoreError(
                f"the output {out_root} is the input{where} or inside it; choose another "
                "output path"
            )
        if store.kind == "plate":
            create_plate(out_root, layouts, config)
            output_paths = {k: os.path.join(out_root, *k.split("/")) for k in keys}
        else:
            key = keys[0]
            _make_output_position(out_root, layouts[key], config)
            output_paths = {key: str(out_root)}
        _note_provenance(out_root, config)
    return output_paths


def _make_output_position(out_root: Path, layout: OutputLayout, config: RunConfig) -> None:
    """Create (or check, on resume) the output of a single input position."""
    if out_root.exists() and not (config.overwrite or config.resume):
        raise OutputExistsError(
            f"{out_root} already exists; use --overwrite (overwrite=True) to replace it "
            "or --resume (resume=True) to continue it"
        )
    if out_root.exists() and config.resume:
        differences = layout_differences(read_position(out_root), layout)
        if differences:
            raise OutputExistsError(
                f"{out_root} cannot hold this run's output: {'; '.join(differences)}. "
                "Use --overwrite (overwrite=True) to replace it, or another output path"
            )
        return
    if out_root.exists():
        shutil.rmtree(out_root)
        _progress.remove_store_records(out_root)
    create_output_position(out_root, layout, version=config.ome_version)


def provenance_config(config: RunConfig) -> dict[str, Any]:
    """Return the settings an output records about the run that made it.

    Paths are absolute, so that ``run --config OUTPUT`` works from any folder.
    """
    changes: dict[str, Any] = {"resume": False, "overwrite": False}
    changes["input"] = str(Path(config.input).expanduser().resolve())
    if config.output:
        changes["output"] = str(Path(config.output).expanduser().resolve())
    return config.model_copy(update=changes).model_dump(mode="json")


def _note_provenance(out_root: Path, config: RunConfig) -> None:
    """Write how the output is made into its root, unless it already says the same."""
    from napari_process_position.core.version import package_version
    from napari_process_position.store.provenance import (
        read_provenance,
        same_settings,
        write_provenance,
    )

    settings = provenance_config(config)
    with _plate_lock(out_root):
        found = read_provenance(out_root)
        if found is not None and same_settings(found["config"], settings):
            return  # a job of the same run (one position of an init-output plate, a resume)
        write_provenance(out_root, settings, package_version())


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
