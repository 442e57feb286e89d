"""The one parser of index ranges, as users type them: ``all``, ``3``, ``0-3,7``."""

from __future__ import annotations

from napari_process_position.core.errors import IndexOutOfRangeError, InvalidArgumentError

__all__ = ["parse_ranges"]


def parse_ranges(
    text: str | None, what: str = "indices", count: int | None = None
) -> list[int] | None:
    """Return the indices that ``text`` selects, in order; None for all of them.

    Parameters
    ----------
    text
        ``None``, ``""``, ``"all"`` or ``"*"`` (every index); otherwise
        indices and inclusive ranges separated by commas (``"0-3,7"``).
    what
        What one index is (``"time point"``, ``"channel"``), for messages.
    count
        How many there are, to check the indices against (``0 .. count - 1``).

    Returns
    -------
    list of int or None

    Raises
    ------
    InvalidArgumentError
        Unreadable text, a reversed range, a repeated index, or nothing selected.
    IndexOutOfRangeError
        An index outside ``0 .. count - 1``.

    Examples
    --------
    >>> parse_ranges("0-2,5"), parse_ranges("all")
    ([0, 1, 2, 5], None)
    """
    stripped = (text or "").strip().lower()
    if stripped in ("", "all", "*"):
        return None
    out: list[int] = []
    for part in stripped.replace(" ", "").split(","):
        if not part:
            continue
        try:
            low, _, high = part.partition("-") if "-" in part[1:] else (part, "", part)
            first, last = int(low), int(high)
        except ValueError as exc:
            raise InvalidArgumentError(
                f"cannot read the {what}s {text!r}: write 'all', or indices and inclusive ranges "
                "such as '0-3,7'"
            ) from exc
        if last < first:
            raise InvalidArgumentError(
                f"the {what} range {part!r} runs backwards; write {last}-{first}"
            )
        out.extend(range(first, last + 1))
    if not out:
        raise InvalidArgumentError(f"{text!r} selects no {what}")
    repeated = sorted({i for i in out if out.count(i) > 1})
    if repeated:
        raise InvalidArgumentError(f"{what}s repeat: {repeated}")
    if count is not None:
        bad = [i for i in out if not 0 <= i < count]
        if bad:
            raise IndexOutOfRangeError(
                f"{what} {bad[0]} does not exist: there are {count} (0 to {count - 1})"
            )
    return out
