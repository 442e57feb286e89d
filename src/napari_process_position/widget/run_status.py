"""What the status line says about a run: started, in progress, done, failed. Qt-free.

Pure functions of a :class:`.jobs.RunJob` and its prepared :class:`BatchRun`,
so that the words can be read (and tested) apart from the controller that
shows them.
"""

from __future__ import annotations

from napari_process_position.batch.batch_run import BatchRun
from napari_process_position.core.durations import seconds_text
from napari_process_position.core.errors import ProcessPositionError
from napari_process_position.widget.jobs import RunJob

__all__ = ["done_text", "failed_text", "progress_text", "started_text"]


def started_text(run: RunJob, batch: BatchRun, mode: str) -> str:
    """``0/N volumes · running <transform> (<mode>)``, with why it has these workers."""
    config = batch.config
    workers = mode if mode == "serial" else f"{config.num_workers} {mode}"
    text = f"0/{batch.total} volumes · running {batch.spec.display_name} ({workers})"
    for reason in (batch.workers_reason, run.note):
        text += f"; {reason}" if reason else ""
    return text


def progress_text(run: RunJob, elapsed: float) -> str:
    """``done/total volumes · rate/s · ETA`` after ``elapsed`` seconds."""
    rate = run.done / elapsed if elapsed > 0 else 0.0
    text = f"{run.done}/{run.total} volumes · {rate:.2f}/s"
    if 0 < run.done < run.total and rate > 0:
        text += f" · ETA {seconds_text((run.total - run.done) / rate)}"
    return text


def done_text(run: RunJob, batch: BatchRun, elapsed: float) -> str:
    """``Done: ...`` with what was written, skipped or resumed, where, and why these workers."""
    summaries = list(batch.summaries.values())
    counts = []
    for what in ("preview", "written", "skipped", "resumed"):
        n = sum(getattr(summary, what) for summary in summaries)
        if n:
            counts.append(f"{n} {what}")
    if len(batch.keys) > 1:
        counts.append(f"{len(batch.keys)} positions")
    where = f" into {batch.config.output}" if batch.config.output else " (preview, in memory)"
    text = (
        f"Done: {run.done}/{run.total} volumes in {seconds_text(elapsed)}{where}; "
        f"{', '.join(counts) or 'nothing to do'}."
    )
    for reason in (batch.workers_reason, run.note):
        text += f" {reason[:1].upper()}{reason[1:]}." if reason else ""
    return text


def failed_text(run: RunJob, exc: BaseException) -> str:
    """``Failed after n/N volumes (t=, c=): message``; other errors are named by their type."""
    message = str(exc) or type(exc).__name__
    if not isinstance(exc, ProcessPositionError):
        message = f"{type(exc).__name__}: {message}"
    where = ""
    t_index = getattr(exc, "time_index", None)
    c_index = getattr(exc, "channel_index", None)
    if t_index is not None and f"t={t_index}" not in message:
        where = f" (t={t_index}, c={c_index})"
    return f"Failed after {run.done}/{run.total or '?'} volumes{where}: {message}"
