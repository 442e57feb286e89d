"""The gui command: napari with the widget docked."""

from __future__ import annotations

from pathlib import Path

import click

from napari_process_position.cli.main import fail, main

__all__ = ["gui"]


@main.command("gui")
@click.argument("store", required=False, type=click.Path(path_type=Path))
def gui(store: Path | None) -> None:
    """Open napari with the Process position widget docked (and STORE picked)."""
    try:
        from napari_process_position.widget.launch import open_viewer
    except ImportError:  # pragma: no cover - the widget package itself imports no napari
        fail('napari is not installed; install it with: pip install "napari-process-position[all]"')
    try:
        open_viewer(store)
    except ImportError as exc:
        fail(
            f"napari or a Qt binding is missing ({exc}); install them with: "
            'pip install "napari-process-position[all]"'
        )
