"""The ``process-position`` command line."""

from napari_process_position.cli.main import main

__all__ = ["main"]
