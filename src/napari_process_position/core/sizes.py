"""Amounts of memory: read ``8GB``, ``512MiB`` or ``2G``, and write ``1.5 GiB``."""

from __future__ import annotations

import re

from napari_process_position.core.errors import InvalidArgumentError

__all__ = ["parse_size", "size_text"]

#: Unit -> bytes. Decimal without ``i`` (``GB``, ``G``: 10**9), binary with it (``GiB``:
#: 2**30), as Dask reads a ``memory_limit``, so one text means the same for a process
#: worker and a Dask worker.
_UNITS = {
    "": 1,
    "b": 1,
    **{p: 1000**i for i, p in enumerate("kmgtp", start=1)},
    **{f"{p}b": 1000**i for i, p in enumerate("kmgtp", start=1)},
    **{f"{p}i": 1024**i for i, p in enumerate("kmgtp", start=1)},
    **{f"{p}ib": 1024**i for i, p in enumerate("kmgtp", start=1)},
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*$", re.IGNORECASE)


def parse_size(text: str | int, what: str = "memory size") -> int:
    """Return the bytes in ``8GB``, ``512MiB``, ``2G``, ``1.5 GiB`` or ``1000000``.

    ``k``, ``M``, ``G``, ``T`` and ``P`` (with or without ``B``) are powers
    of 1000, ``Ki``, ``Mi``, ``Gi``, ... (with or without ``B``) powers of
    1024, as Dask reads them; a plain number is bytes.

    Parameters
    ----------
    text
        The amount, or a number of bytes.
    what
        What the amount is, for the error message.

    Returns
    -------
    int
        Bytes, at least 1.

    Raises
    ------
    InvalidArgumentError
        Not a positive amount with a known unit.

    Examples
    --------
    >>> parse_size("8GB"), parse_size("512MiB"), parse_size("2G"), parse_size(4096)
    (8000000000, 536870912, 2000000000, 4096)
    """
    if isinstance(text, bool):
        raise InvalidArgumentError(f"{what} must be an amount such as '8GB', not {text!r}")
    if isinstance(text, int):
        value, unit = float(text), ""
    else:
        match = _SIZE.match(str(text))
        if match is None or match.group(2).lower() not in _UNITS:
            raise InvalidArgumentError(
                f"{what} {text!r} is not an amount of memory: give a number with a unit such "
                "as '8GB', '512MiB', '2G' or plain bytes ('1000000')"
            )
        value, unit = float(match.group(1)), match.group(2).lower()
    n = int(value * _UNITS[unit])
    if n < 1:
        raise InvalidArgumentError(f"{what} must be more than 0 bytes, not {text!r}")
    return n


def size_text(n: int | float) -> str:
    """Return ``1.5 GiB``, ``300 MiB`` or ``12 KiB`` for ``n`` bytes.

    Returns
    -------
    str
    """
    if n >= 2**30:
        return f"{n / 2**30:.1f} GiB"
    if n >= 2**20:
        return f"{n / 2**20:.0f} MiB"
    return f"{max(0, n) / 2**10:.0f} KiB"
