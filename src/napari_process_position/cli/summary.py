"""The end-of-run summary: a table for a few positions, a compact one for many.

A run over a big plate (1,536 positions) printed a row per position. Above
:data:`TABLE_LIMIT` positions the summary is the totals, the slowest
positions and every position that did not complete (failed, cancelled); the
full table is printed with ``run --full-summary``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["TABLE_LIMIT", "print_summary"]

#: Up to this many positions the summary is the full table.
TABLE_LIMIT = 20
#: How many of the slowest positions a compact summary lists.
SLOWEST = 5


def _table(title: str, summaries: Iterable[Any]) -> Any:
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    for col in ("position", "written", "skipped (empty)", "resumed", "failed", "seconds"):
        table.add_column(col, justify="right" if col != "position" else "left")
    for s in summaries:
        table.add_row(
            s.key,
            str(s.written + s.preview),
            str(s.skipped),
            str(s.resumed),
            str(s.failed),
            f"{s.seconds:.1f}",
        )
    return table


def print_summary(console: Any, summaries: Sequence[Any], *, full: bool = False) -> None:
    """Print the summary of a run's positions (``PositionSummary`` records) on ``console``."""
    if full or len(summaries) <= TABLE_LIMIT:
        console.print(_table("Summary", summaries))
        return
    written = sum(s.written + s.preview for s in summaries)
    console.print(
        f"Summary of {len(summaries)} positions: {written} volumes written, "
        f"{sum(s.skipped for s in summaries)} skipped (empty), "
        f"{sum(s.resumed for s in summaries)} resumed, {sum(s.failed for s in summaries)} failed; "
        f"{sum(s.seconds for s in summaries):.1f} s summed over positions",
        highlight=False,
        soft_wrap=True,
    )
    slowest = sorted(summaries, key=lambda s: s.seconds, reverse=True)[:SLOWEST]
    console.print(_table(f"the {len(slowest)} slowest positions", slowest))
    incomplete = [s for s in summaries if s.failed or s.error]
    if incomplete:
        console.print(_table(f"{len(incomplete)} positions not completed", incomplete))
    console.print("(every position: run --full-summary)", highlight=False)
