"""Pick some positions of a plate: N at random (with a seed), one field per well, a row, a column.

Before a transform goes over a whole plate, a few positions tell whether its
parameters hold across wells (a dim well, a crowded one, an edge field). The
command line's ``--sample N --seed S`` and the widget's quick picks come
through here, so that both pick the same keys from the same seed. Every pick
keeps the store's order.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Sequence

from napari_process_position.core.errors import InvalidArgumentError

__all__ = [
    "SEED_LIMIT",
    "in_column",
    "in_row",
    "new_seed",
    "one_field_per_well",
    "sample_positions",
    "well_of",
]

#: Seeds are whole numbers below this (short enough to read out and type back).
SEED_LIMIT = 1_000_000


def new_seed() -> int:
    """Return a fresh seed, to be shown and recorded so that the pick can be made again."""
    return secrets.randbelow(SEED_LIMIT)


def sample_positions(keys: Sequence[str], n: int, seed: int) -> list[str]:
    """Return ``n`` of ``keys`` picked at random from ``seed``, in the order of ``keys``.

    The same keys, ``n`` and seed give the same pick on every machine and
    Python version (:class:`random.Random` with an int seed is stable). With
    ``n`` at least the number of keys, every key is returned.

    >>> sample_positions(["A/1/0", "A/1/1", "A/2/0", "B/1/0"], 2, seed=7)
    ['A/1/0', 'A/2/0']
    """
    if n < 1:
        raise InvalidArgumentError(f"a sample needs at least 1 position, not {n}")
    keys = list(keys)
    if n >= len(keys):
        return keys
    picked = set(random.Random(seed).sample(range(len(keys)), n))
    return [k for i, k in enumerate(keys) if i in picked]


def well_of(key: str) -> str:
    """Return the well of a plate position key (``A/1`` of ``A/1/0``); the key itself otherwise."""
    parts = key.split("/")
    return "/".join(parts[:2]) if len(parts) == 3 else key


def one_field_per_well(keys: Sequence[str]) -> list[str]:
    """Return the first field of each well (every key of a store that is not a plate)."""
    seen: set[str] = set()
    chosen: list[str] = []
    for key in keys:
        well = well_of(key)
        if well not in seen:
            seen.add(well)
            chosen.append(key)
    return chosen


def _part(keys: Sequence[str], index: int, value: str, what: str) -> list[str]:
    chosen = [k for k in keys if len(k.split("/")) == 3 and k.split("/")[index] == value]
    if not chosen:
        names = sorted({k.split("/")[index] for k in keys if len(k.split("/")) == 3})
        raise InvalidArgumentError(
            f"no position in {what} {value!r}; the plate's {what}s are {', '.join(names) or 'none'}"
        )
    return chosen


def in_row(keys: Sequence[str], row: str) -> list[str]:
    """Return the positions of plate row ``row`` (``B``)."""
    return _part(keys, 0, row, "row")


def in_column(keys: Sequence[str], column: str) -> list[str]:
    """Return the positions of plate column ``column`` (``3``)."""
    return _part(keys, 1, column, "column")
