"""Optional dependencies: a missing one is an error that gives the install command."""

from __future__ import annotations

import importlib
import importlib.util

from napari_process_position.core.errors import DaskUnavailableError

INSTALL_HINT = 'pip install "napari-process-position[dask]"'


def require(module: str = "distributed", what: str = "running on Dask") -> None:
    """Import ``module`` or raise :class:`DaskUnavailableError` with the install command."""
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise DaskUnavailableError(
            f"{what} needs the {module!r} package, which is not installed ({exc}); "
            f"install it with: {INSTALL_HINT}"
        ) from exc
