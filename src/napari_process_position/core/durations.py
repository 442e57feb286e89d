"""Durations as people read them: ``4.2 s``, ``3 min 07 s``, ``1 h 02 min``."""

from __future__ import annotations

__all__ = ["seconds_text"]


def seconds_text(seconds: float) -> str:
    """Return ``"4.2 s"``, ``"3 min 07 s"`` or ``"1 h 02 min"`` for ``seconds``.

    The one formatter of durations: the widget's status lines and the
    estimate's report both use it.

    Returns
    -------
    str

    Examples
    --------
    >>> seconds_text(4.2), seconds_text(187), seconds_text(3720)
    ('4.2 s', '3 min 07 s', '1 h 02 min')
    """
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
