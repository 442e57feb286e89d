"""The version of napari-process-position, as its build recorded it."""

from __future__ import annotations

__all__ = ["package_version"]


def package_version() -> str:
    """Return the version of napari-process-position (``0.0.0+unknown`` in a bare source tree).

    Returns
    -------
    str
        The version the build wrote into ``_version.py`` (from git tags), else
        the installed distribution's version.
    """
    try:
        from napari_process_position._version import version
    except ImportError:  # pragma: no cover - running from a source tree without a build
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as dist_version

        try:
            return dist_version("napari-process-position")
        except PackageNotFoundError:
            return "0.0.0+unknown"
    return str(version)
