"""How an output was made, kept in the output itself.

The settings of the run that made an output plate (as a saved config has
them), the package version and the time are written into the plate's root
attributes under ``napari-process-position``, beside ``ome`` (Zarr v3) or
``plate`` (Zarr v2). ``process-position positions --details OUT`` shows
them, and ``process-position run --config OUT`` runs the same settings again.

Every store this package creates (an empty output plate or position, a demo
plate) carries the same entry from the start, without settings: it is how
``--overwrite`` knows a store is one this package wrote and may replace.
"""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path
from typing import Any

__all__ = [
    "PROVENANCE_KEY",
    "creation_mark",
    "read_provenance",
    "record_settings",
    "same_settings",
    "write_provenance",
    "written_here",
]

PROVENANCE_KEY = "napari-process-position"

#: Config fields that say how or where a run went, not what it computes.
_NOT_SETTINGS = frozenset(
    {
        "positions",
        "resume",
        "overwrite",
        "num_workers",
        "use_threads",
        "dask_scheduler",
        "dask_local",
        "slurm",
        "written_by",
    }
)


def _attributes(root: Path) -> dict[str, Any] | None:
    """Return the root group's attributes, or None when ``root`` is no Zarr group."""
    for name, key in (("zarr.json", "attributes"), (".zattrs", None)):
        path = root / name
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict):
            return None
        attrs = data.get(key) if key else data
        return attrs if isinstance(attrs, dict) else {}
    return None


def read_provenance(store: str | os.PathLike[str]) -> dict[str, Any] | None:
    """Return what ``store``'s root says about how it was made, or None.

    Returns
    -------
    dict or None
        ``version`` (of napari-process-position), ``written`` (ISO 8601 time,
        UTC) and ``config`` (the run's settings as a saved config has them).
    """
    attrs = _attributes(Path(store).expanduser())
    found = attrs.get(PROVENANCE_KEY) if attrs else None
    if not isinstance(found, dict) or not isinstance(found.get("config"), dict):
        return None
    return found


def creation_mark(made: str) -> dict[str, Any]:
    """Return the entry a new store's root attributes carry under :data:`PROVENANCE_KEY`.

    ``made`` says what the store is (``"output"``, ``"demo"``); the settings of
    the run that fills it are added later by :func:`write_provenance`.
    """
    from napari_process_position.core.version import package_version

    return {
        "version": package_version(),
        "written": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "made": made,
    }


def written_here(store: str | os.PathLike[str]) -> bool:
    """Tell whether this package wrote the store at ``store`` (its root carries our entry)."""
    attrs = _attributes(Path(store).expanduser())
    return attrs is not None and isinstance(attrs.get(PROVENANCE_KEY), dict)


def same_settings(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Tell whether two configs compute the same thing (they may differ in where and how)."""

    def strip(config: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in config.items() if k not in _NOT_SETTINGS}

    return strip(a) == strip(b)


def write_provenance(store: str | os.PathLike[str], config: dict[str, Any], version: str) -> None:
    """Record ``config`` (plain JSON data) as what made ``store``; other attributes stay.

    Callers hold the store's lock when other jobs may change its metadata.
    """
    import zarr

    entry: dict[str, Any] = {
        "version": version,
        "written": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "config": config,
    }
    group = zarr.open_group(str(Path(store).expanduser()), mode="r+")
    group.attrs[PROVENANCE_KEY] = entry


def record_settings(store: str | os.PathLike[str], config: dict[str, Any]) -> None:
    """Record ``config`` as what made ``store``, unless it already says the same.

    A job of the same run (one position of an init-output plate, a resume)
    then writes nothing. Callers hold the store's lock when other jobs may
    change its metadata.
    """
    from napari_process_position.core.version import package_version

    found = read_provenance(store)
    if found is not None and same_settings(found["config"], config):
        return
    write_provenance(store, config, package_version())
