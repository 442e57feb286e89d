"""The one parser of index ranges, as users type them: ``all``, ``3``, ``0-3,7``."""

from __future__ import annotations

import re

from napari_process_position.core.errors import IndexOutOfRangeError, InvalidArgumentError

__all__ = ["MAX_INDICES", "parse_ranges"]


#: Most indices a selection may name when the sizes it selects from are not known yet
#: (the input is checked later): no store has a million time points or channels.
MAX_INDICES = 1_000_000

_SEPARATORS = re.compile(r"[,\s]+")
_RANGE_DASH = re.compile(r"(?<=\d)\s*-\s*(?=[-+]?\d)")


def parse_ranges(
    text: str | None, what: str = "indices", count: int | None = None
) -> list[int] | None:
    """Return the indices that ``text`` selects, in order; None for all of them.

    Parameters
    ----------
    text
        ``None``, ``""``, ``"all"`` or ``"*"`` (every index); otherwise
        indices and inclusive ranges separated by commas or spaces
        (``"0-3,7"``, ``"0 1"``).
    what
        What one index is (``"time point"``, ``"channel"``), for messages.
    count
        How many there are, to check the indices against (``0 .. count - 1``).
        Every range is checked before it is expanded; without ``count`` a
        selection of more than :data:`MAX_INDICES` is refused.

    Returns
    -------
    list of int or None

    Raises
    ------
    InvalidArgumentError
        Unreadable text, a reversed range, a repeated index, nothing
        selected, or (without ``count``) more than :data:`MAX_INDICES`.
    IndexOutOfRangeError
        An index outside ``0 .. count - 1``.

    Examples
    --------
    >>> parse_ranges("0-2,5"), parse_ranges("all"), parse_ranges("1 0")
    ([0, 1, 2, 5], None, [1, 0])
    """
    stripped = (text or "").strip().lower()
    if stripped in ("", "all", "*"):
        return None
    spans: list[tuple[int, int]] = []
    for part in _SEPARATORS.split(_RANGE_DASH.sub("-", stripped)):
        if not part:
            continue
        try:
            low, _, high = part.partition("-") if "-" in part[1:] else (part, "", part)
            first, last = int(low), int(high)
        except ValueError as exc:
            raise InvalidArgumentError(
                f"cannot read the {what}s {text!r}: write 'all', or indices and inclusive ranges "
                "separated by commas or spaces, such as '0-3,7'"
            ) from exc
        if last < first:
            raise InvalidArgumentError(
                f"the {what} range {part!r} runs backwards; write {last}-{first}"
            )
        if count is not None and not (first >= 0 and last < count):
            bad = first if first < 0 or first >= count else last
            raise IndexOutOfRangeError(
                f"{what} {bad} does not exist: there are {count} (0 to {count - 1})"
            )
        spans.append((first, last))
    if not spans:
        raise InvalidArgumentError(f"{text!r} selects no {what}")
    total = sum(last - first + 1 for first, last in spans)
    if count is None and total > MAX_INDICES:
        raise InvalidArgumentError(
            f"the {what}s {text!r} select {total} indices; at most {MAX_INDICES} can be "
            "selected (check the range)"
        )
    out: list[int] = []
    seen: set[int] = set()
    repeated: set[int] = set()
    for first, last in spans:
        for i in range(first, last + 1):
            if i in seen:
                repeated.add(i)
            seen.add(i)
            out.append(i)
        if len(out) > (count if count is not None else MAX_INDICES):
            break  # repeats: reported below
    if repeated:
        raise InvalidArgumentError(f"{what}s repeat: {sorted(repeated)[:20]}")
    return out
