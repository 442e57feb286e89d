"""Run a batch's tasks on Dask: an existing cluster, a LocalCluster, or SLURM jobs.

The engine takes any ``concurrent.futures.Executor``; :class:`DaskExecutor`
is one that submits each (position, t, c) task to a Dask cluster. A task
carries paths and indices only, so each Dask worker reads its input and
writes its output in the shared store itself; what travels back is the
small :class:`~napari_process_position.core.tasks.Result` (with a volume only
for a preview without output store). Dask reschedules the tasks of a worker
that dies; a task whose workers keep dying ends as Dask's ``KilledWorker``,
which the engine reports as a dead worker.

Dask is optional: ``pip install "napari-process-position[dask]"``.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import importlib
import importlib.util
import logging
import os
import threading
import uuid
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari_process_position.batch.extras import INSTALL_HINT, require
from napari_process_position.batch.slurm import slurm_cluster
from napari_process_position.core.errors import DaskClusterError, InvalidArgumentError, UsageError
from napari_process_position.core.memory import MAX_MMAP_THRESHOLD, set_malloc_thresholds

if TYPE_CHECKING:
    from napari_process_position.batch.config import RunConfig

__all__ = [
    "CONNECT_TIMEOUT_S",
    "INSTALL_HINT",
    "DaskExecutor",
    "DaskSession",
    "open_session",
    "require",
    "run_on_worker",
]

log = logging.getLogger(__name__)

#: Seconds to keep trying to reach a scheduler (PROCESS_POSITION_DASK_TIMEOUT overrides).
CONNECT_TIMEOUT_S = 20.0


_allocator_tuned = False

#: The trim threshold a Dask worker gets for our tasks (above a few volumes).
_TRIM_THRESHOLD = 256 * 1024**2


def _tune_allocator() -> None:
    """Undo, once per worker process, what Dask's nanny does to glibc's malloc.

    The nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``. Setting
    it turns off glibc's dynamic mmap threshold, so every temporary array of
    a volume (megabytes) is mmapped and unmapped again, and each use pays its
    page faults anew: numpy's element-wise passes over a 8 MiB volume ran
    about 3x slower in a Dask worker than in a plain process. With the mmap
    threshold at glibc's own maximum and a trim threshold above a few
    volumes, volumes come from the heap again, as in the local process pool.
    """
    global _allocator_tuned
    if _allocator_tuned:
        return
    _allocator_tuned = True
    if "MALLOC_TRIM_THRESHOLD_" not in os.environ:
        return  # not started by a nanny that set it: leave the defaults alone
    set_malloc_thresholds(MAX_MMAP_THRESHOLD, _TRIM_THRESHOLD)


@contextlib.contextmanager
def _environment_kept() -> Any:
    """Give this process back its environment once a LocalCluster has started its workers.

    Each nanny sets Dask's ``pre-spawn-environ`` (``MALLOC_TRIM_THRESHOLD_``,
    ``OMP_NUM_THREADS=1``, ``PYTHONHASHSEED``, ...) in the process that starts
    it, so that its worker inherits them. Left there, every process this one
    spawns later would too: a local process pool's workers would then run
    numpy's passes over volumes of a few MiB about 3x slower, and BLAS on one
    thread. (A nanny that restarts a dead worker sets them again.)
    """
    before = dict(os.environ)
    try:
        yield
    finally:
        for name in set(os.environ) - set(before):
            del os.environ[name]
        os.environ.update(before)


def run_on_worker(fn: Any, /, *args: Any, **kwargs: Any) -> Any:
    """Run ``fn`` on a Dask worker, tuning the allocator first (once per process)."""
    _tune_allocator()
    return fn(*args, **kwargs)


def _task_label(args: tuple[Any, ...]) -> str:
    """'A/1/0 t=3, c=0' for run_task's Task argument, else ''."""
    task = args[0] if args else None
    label = getattr(task, "label", "")
    array = getattr(task, "input_array", "")
    if not array:
        return str(label)
    parts = Path(array).parts
    position = "/".join(parts[-4:-1]) if len(parts) >= 4 else Path(array).parent.name
    return f"{position} {label}".strip()


class DaskExecutor(cf.Executor):
    """A ``concurrent.futures.Executor`` that runs each call on a Dask cluster.

    Every call gets its own key (``pure=False``): resubmitting the same task
    runs it again instead of reusing a cached result. Keys read
    ``("process-position", "<position> t=3, c=0", <id>)`` so the dashboard
    groups them and Dask's messages name the volume.

    Parameters
    ----------
    client
        A connected ``distributed.Client``.

    Attributes
    ----------
    lost
        Set to a message when Dask cancelled a task that this executor did
        not cancel (the scheduler went away or restarted): the run cannot
        go on, and the message says so.
    """

    def __init__(self, client: Any) -> None:
        self.client = client
        self.lost: str | None = None
        self._futures: weakref.WeakSet[Any] = weakref.WeakSet()
        self._shutdown = False
        self._lock = threading.Lock()

    def slots(self) -> int:
        """Threads over all workers now connected (at least 1)."""
        try:
            return max(1, sum(self.client.nthreads().values()))
        except Exception:  # the scheduler is gone; the run will report it
            return 1

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        """Run ``fn(*args, **kwargs)`` on a Dask worker; return a concurrent future."""
        if self._shutdown:
            raise UsageError("cannot submit to a DaskExecutor after shutdown")
        label = _task_label(args)
        key = ("process-position", label or getattr(fn, "__name__", "task"), uuid.uuid4().hex)
        remote = self.client.submit(run_on_worker, fn, *args, key=key, pure=False, **kwargs)
        self._futures.add(remote)
        local: cf.Future[Any] = cf.Future()

        def cancel_remote(f: cf.Future[Any]) -> None:
            if f.cancelled() and remote.status not in ("finished", "error", "cancelled"):
                with contextlib.suppress(Exception):
                    remote.cancel()

        local.add_done_callback(cancel_remote)

        def transfer(remote_future: Any) -> None:
            if local.done():
                return
            status = remote_future.status
            try:
                if status == "finished":
                    local.set_result(remote_future.result())
                elif status == "error":
                    local.set_exception(remote_future.exception())
                else:
                    try:
                        remote_future.result()
                        reason = status
                    except BaseException as exc:
                        reason = str(getattr(exc, "reason", None) or type(exc).__name__)
                    message = (
                        f"the Dask scheduler dropped the task for {label or key} ({reason}): it "
                        "was stopped or restarted, or the connection to it was lost"
                    )
                    with self._lock:
                        self.lost = self.lost or message
                    local.set_exception(DaskClusterError(message))
            except cf.InvalidStateError:  # cancelled by us meanwhile
                pass
            except BaseException as exc:  # fetching the result failed
                with contextlib.suppress(cf.InvalidStateError):
                    local.set_exception(exc)

        remote.add_done_callback(transfer)
        return local

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Refuse new work; with ``cancel_futures`` cancel what is still queued or running."""
        self._shutdown = True
        if cancel_futures:
            futures = list(self._futures)
            if futures:
                with contextlib.suppress(Exception):
                    self.client.cancel(futures)


class DaskSession:
    """A Dask client (and the cluster, when this run started it) with its executor.

    Made by :func:`open_session`; :meth:`close` disconnects, and stops a
    cluster the session started (a LocalCluster, SLURM jobs), never an
    existing one.
    """

    def __init__(
        self, client: Any, description: str, cluster: Any = None, expected_slots: int = 0
    ) -> None:
        self.client = client
        self.cluster = cluster
        self.description = description
        self.expected_slots = expected_slots
        self.executor = DaskExecutor(client)

    def slots(self) -> int:
        """How many tasks can run at once: connected threads, or what was asked for."""
        return max(self.executor.slots(), self.expected_slots, 1)

    @property
    def dashboard_link(self) -> str | None:
        """The cluster's dashboard URL, when it has one."""
        if self.cluster is not None and importlib.util.find_spec("bokeh") is None:
            return None  # a cluster started here serves no dashboard without bokeh
        try:
            if "dashboard" not in self.client.scheduler_info().get("services", {}):
                return None
            return str(self.client.dashboard_link)
        except Exception:
            return None

    def close(self) -> None:
        """Disconnect; stop the cluster if this session started it."""
        self.executor.shutdown(wait=False, cancel_futures=True)
        client_log = logging.getLogger("distributed.client")
        level = client_log.level
        if self.executor.lost:
            # The client is still trying to reconnect; closing it logs that attempt's
            # traceback, which says nothing the run has not reported already.
            client_log.setLevel(logging.CRITICAL)
        try:
            with contextlib.suppress(Exception):
                self.client.close(timeout=10)
        finally:
            client_log.setLevel(level)
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.close(timeout=20)

    def __enter__(self) -> DaskSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _connect_timeout() -> float:
    text = os.environ.get("PROCESS_POSITION_DASK_TIMEOUT", "")
    try:
        return max(0.5, float(text)) if text else CONNECT_TIMEOUT_S
    except ValueError:
        return CONNECT_TIMEOUT_S


def _connect(address: str) -> Any:
    from distributed import Client

    path = Path(address).expanduser()
    timeout = _connect_timeout()
    try:
        if address.endswith(".json") or path.is_file():
            if not path.is_file():
                raise DaskClusterError(f"Dask scheduler file {path} does not exist")
            return Client(scheduler_file=str(path), timeout=timeout, set_as_default=False)
        return Client(address, timeout=timeout, set_as_default=False)
    except DaskClusterError:
        raise
    except (OSError, TimeoutError, ValueError) as exc:
        raise DaskClusterError(
            f"cannot reach the Dask scheduler at {address} within {timeout:g} s "
            f"({type(exc).__name__}: {exc}); check the address (tcp://host:8786 or a scheduler "
            "JSON file) and that the scheduler runs"
        ) from exc


def open_session(config: RunConfig) -> DaskSession:
    """Connect to (or start) the Dask cluster a config names.

    Raises
    ------
    DaskUnavailableError
        Dask (or, for SLURM, dask-jobqueue) is not installed.
    DaskClusterError
        The scheduler cannot be reached.
    """
    require("distributed")
    if config.dask_scheduler is not None:
        client = _connect(config.dask_scheduler)
        n = len(client.scheduler_info().get("workers", {}))
        description = f"Dask cluster {client.scheduler.address} ({n} worker(s) now)"
        if n == 0:
            log.warning(
                "the Dask scheduler at %s has no workers yet; tasks wait until some join",
                config.dask_scheduler,
            )
        return DaskSession(client, description)
    if config.dask_local is not None:
        from distributed import Client, LocalCluster

        with _environment_kept():
            cluster = LocalCluster(
                n_workers=config.dask_local,
                threads_per_worker=1,
                processes=True,
                memory_limit=config.memory_limit_bytes or "auto",
            )
        try:
            client = Client(cluster, set_as_default=False)
        except BaseException:
            cluster.close()
            raise
        return DaskSession(
            client,
            f"Dask LocalCluster of {config.dask_local} worker process(es)",
            cluster=cluster,
            expected_slots=config.dask_local,
        )
    if config.slurm is not None:
        from distributed import Client

        settings = config.slurm
        cluster = slurm_cluster(settings, memory_limit=config.memory_limit_bytes)
        try:
            # Adaptive with minimum = maximum keeps `jobs` jobs, replacing any that end
            # (walltime, pre-emption) while the run still has tasks.
            cluster.adapt(minimum_jobs=settings.jobs, maximum_jobs=settings.jobs)
            client = Client(cluster, set_as_default=False)
        except BaseException:
            cluster.close()
            raise
        slots = settings.jobs * settings.worker_processes * settings.threads_per_worker
        return DaskSession(
            client,
            f"Dask on SLURM: {settings.jobs} job(s) x {settings.worker_processes} worker(s)",
            cluster=cluster,
            expected_slots=slots,
        )
    raise InvalidArgumentError(
        "this config does not ask for Dask (dask_scheduler, dask_local or slurm)"
    )
