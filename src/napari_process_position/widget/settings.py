"""Saving the widget's settings for a batch run: the YAML file and the command that runs it."""

from __future__ import annotations

import os
from pathlib import Path

from napari_process_position.batch.config import RunConfig, command_line

__all__ = ["ask_for_settings_file", "save_settings"]


def save_settings(
    config: RunConfig, path: str | os.PathLike[str], positions: list[str] | None = None
) -> tuple[Path, str]:
    """Save ``config`` for ``positions`` (None: every position; ``.yaml`` added).

    Returns the file and the command that runs it.

    Raises
    ------
    OutputWriteError
        The file cannot be written.
    """
    batch = config.model_copy(update={"positions": list(positions) if positions else None})
    target = batch.save(Path(path).expanduser().with_suffix(".yaml"))
    command = command_line(target)
    if batch.output is None:
        command = f"process-position run {batch.input} OUTPUT.zarr --config {target}"
    return target, command


def ask_for_settings_file() -> str | None:
    """Ask where to save the settings (a file dialog); None when the user cancels."""
    from magicgui.application import use_app
    from magicgui.types import FileDialogMode

    show_dialog = use_app().get_obj("show_file_dialog")
    chosen = show_dialog(FileDialogMode.OPTIONAL_FILE, caption="Save run settings", filter="*.yaml")
    return str(chosen) if chosen else None
