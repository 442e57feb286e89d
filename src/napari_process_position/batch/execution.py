"""Where a run's tasks run, decided once: the mode, the workers and why, who owns what.

:class:`Execution` is the decision as a value: :func:`.prepare.prepare_run`
makes it (:func:`.workers.decide_execution`), and the run, the command line,
the widget and the estimate read it instead of asking ``use_threads``,
``num_workers`` and ``executor`` again. :func:`requested_mode` is the one rule
from the settings alone (before anything is measured or opened). Nothing
here imports the rest of the batch package.
"""

from __future__ import annotations

import concurrent.futures as cf
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from napari_process_position.engine.pool import ProcessPool

__all__ = ["Execution", "ExecutionMode", "ReasonKind", "WorkersReason", "requested_mode"]

#: ``serial``: in the calling thread; ``threads``; ``processes``: spawned workers (a pool);
#: ``executor``: a ``concurrent.futures.Executor`` the caller gave; ``dask``: a Dask cluster.
ExecutionMode = Literal["serial", "threads", "processes", "executor", "dask"]

#: What decided the worker count: ``given`` (the settings), ``capped`` (fewer CPUs than asked),
#: ``measured`` (``num_workers: auto``), ``pool`` (a given process pool), ``executor`` / ``dask``
#: (what runs the tasks decides; ``auto`` is not measured).
ReasonKind = Literal["given", "capped", "measured", "pool", "executor", "dask"]


def requested_mode(
    *,
    num_workers: int,
    use_threads: bool,
    memory_limit: object = None,
    uses_dask: bool = False,
    executor: object = None,
) -> ExecutionMode:
    """Return where tasks run for these settings: the one rule.

    One worker runs serially, unless a memory limit asks for a process (a
    limit cannot apply to this one); a Dask cluster or a given executor runs
    them itself.

    Examples
    --------
    >>> requested_mode(num_workers=4, use_threads=True)
    'threads'
    >>> requested_mode(num_workers=1, use_threads=False, memory_limit="2GB")
    'processes'
    """
    if uses_dask:
        return "dask"
    if executor is not None:
        return "executor"
    if use_threads:
        return "threads" if num_workers > 1 else "serial"
    return "processes" if num_workers > 1 or memory_limit else "serial"


@dataclass(frozen=True)
class WorkersReason:
    """Why a run has the workers it has: the deciding budget as data, and the sentence.

    Attributes
    ----------
    kind
        What decided (:data:`ReasonKind`).
    workers
        The workers chosen (None when the executor or cluster decides).
    text
        The same, in words (logged, printed by the CLI, shown by the widget).
    """

    kind: ReasonKind
    workers: int | None
    text: str

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Execution:
    """Where a prepared run's tasks run.

    Attributes
    ----------
    mode
        :data:`ExecutionMode`.
    workers
        Workers (for ``executor`` and ``dask``: the settings' number; the run
        asks the executor for its slots).
    use_threads
        Local workers are threads.
    memory_limit_bytes
        Each process worker's limit (None: none).
    reason
        Why this many workers, when something other than the settings decided.
    pool
        A process pool the caller gave (the caller owns it; the run does not close it).
    executor
        The executor the caller gave, or the Dask session's.
    dask
        The Dask session the run opened: the run owns it and closes it at its end.
    """

    mode: ExecutionMode
    workers: int
    use_threads: bool = False
    memory_limit_bytes: int | None = None
    reason: WorkersReason | None = None
    pool: ProcessPool | None = None
    executor: cf.Executor | None = None
    dask: Any = None

    @property
    def in_other_processes(self) -> bool:
        """True when tasks run in other processes (they import the transform by reference)."""
        return self.mode in ("processes", "executor", "dask")

    @property
    def in_this_process(self) -> bool:
        """True when tasks run in this process (serially or in threads)."""
        return not self.in_other_processes

    @property
    def reason_text(self) -> str | None:
        """The reason in words (None when the settings alone decided)."""
        return self.reason.text if self.reason is not None else None

    def describe(self) -> str:
        """Where the tasks run, in words (the CLI's ``on ...``)."""
        if self.dask is not None:
            link = self.dask.dashboard_link
            return str(self.dask.description) + (f"; dashboard {link}" if link else "")
        if self.executor is not None:
            return f"executor {type(self.executor).__name__}"
        if self.mode == "serial":
            return "this process (serial)"
        kind = "thread" if self.use_threads else "process"
        return f"{self.workers} local {kind} worker(s)"

    def mode_text(self) -> str:
        """Return ``serial``, or ``4 threads`` / ``4 processes`` (the widget's status line)."""
        if self.mode in ("serial", "executor", "dask"):
            return self.mode
        return f"{self.workers} {self.mode}"
