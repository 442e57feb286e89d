"""What a position holds beside level 0: its other levels, its labels and its tables.

A run reads level 0 only and writes none of the rest; ``positions --details``
says what is there, so that what an output leaves out is no surprise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from napari_process_position.store.layout import PositionInfo
from napari_process_position.store.metadata import group_attrs

__all__ = ["PositionContents", "position_contents", "store_tables"]


@dataclass(frozen=True)
class PositionContents:
    """The paths of a position's resolution levels (level 0 first), label images and tables."""

    levels: tuple[str, ...]
    labels: tuple[str, ...]
    tables: tuple[str, ...]


def _listed(path: Path, key: str) -> tuple[str, ...]:
    """Return the names a group lists under ``key`` (``labels``, ``tables``), if a group."""
    found = group_attrs(path)
    names = found[1].get(key) if found else None
    return tuple(str(n) for n in names) if isinstance(names, list) else ()


def position_contents(info: PositionInfo) -> PositionContents:
    """Return what ``info``'s position holds: levels, labels (OME-Zarr) and tables (ngio).

    Raises
    ------
    InvalidStoreError
        A metadata file cannot be read or is not a JSON object.
    """
    root = Path(info.path)
    found = group_attrs(root)
    multiscales = found[1].get("multiscales") if found else None
    datasets = multiscales[0].get("datasets") if isinstance(multiscales, list) else None
    levels = tuple(
        str(d.get("path")) for d in datasets or [] if isinstance(d, dict) and d.get("path")
    )
    return PositionContents(
        levels or (info.array_name,),
        _listed(root / "labels", "labels"),
        _listed(root / "tables", "tables"),
    )


def store_tables(path: str) -> tuple[str, ...]:
    """Return the tables a plate (or image) lists at its root (ngio's condition table, say)."""
    return _listed(Path(path) / "tables", "tables")
