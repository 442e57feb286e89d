"""The ``process-position`` command line: ``main`` and its commands.

``main`` is the console script; importing this package registers every
command on it.
"""

from napari_process_position.cli import estimate, gui, listing, run_command
from napari_process_position.cli.main import main

__all__ = ["main"]

del estimate, gui, listing, run_command  # imported for their commands
