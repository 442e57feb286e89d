"""The widget's controls: every magicgui child, in the order the dock shows them.

The names are the contract scripts and tests rely on (``input_path``,
``position``, ``transform``, ``transform_params``, ``channels``, ``times``,
``num_workers``, ``use_threads``, ``output_path``, ``run_button``,
``cancel_button``, ``progress``, ``status``, and the rest that docs/widget.md's
table lists): keep them.
"""

from __future__ import annotations

from typing import Any

from magicgui.types import FileDialogMode
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    Label,
    LineEdit,
    ProgressBar,
    PushButton,
    Select,
    SpinBox,
)

from napari_process_position.core.budget import available_cpus
from napari_process_position.widget.region import REGION_LAYER_NAME

__all__ = ["build_controls"]


def build_controls(w: Any) -> None:
    """Create the children of ``w`` (the view), add them to it in order, note the settings."""
    cpus = available_cpus()

    w.input_path = FileEdit(
        mode=FileDialogMode.EXISTING_DIRECTORY,
        name="input_path",
        label="input",
        tooltip="An OME-Zarr HCS plate, or one position of it",
    )
    # Choices are functions of the widget's state: napari calls reset_choices()
    # whenever layers change, which must not forget them.
    w.position = ComboBox(
        name="position", choices=w._position_choices, tooltip="Position (row/col/fov)"
    )
    w.transform = ComboBox(
        name="transform",
        choices=w._transform_choices,
        tooltip="The transform to apply to each (t, c) volume",
    )
    w.custom_transform = LineEdit(
        name="custom_transform",
        label="or",
        tooltip="A transform of your own: 'module:function' or '/path/file.py:function'",
    )
    w.custom_transform.native.setPlaceholderText("module:function or file.py:function")
    w.transform_params = Container(name="transform_params", label="parameters", labels=True)
    w.transform_params.margins = (0, 0, 0, 0)
    w.channels = Select(name="channels", choices=w._channel_choices, tooltip="Channels to process")
    w.times = LineEdit(
        name="times",
        value="all",
        tooltip="Time points: 'all', or indices and ranges like '0-3,7'",
    )
    w.live = CheckBox(
        name="live",
        value=False,
        text="live",
        tooltip="Recompute the volume on screen (this time point, the selected channels) "
        "whenever a parameter, the transform, the channels or the time point change",
    )
    w.region = CheckBox(
        name="region",
        value=False,
        text="region only",
        tooltip=f"Preview only the newest rectangle of the Shapes layer {REGION_LAYER_NAME!r}"
        " (or, without one, the part of the image in view) and the Z range",
    )
    w.preview_button = PushButton(
        name="preview_button",
        text="Preview",
        tooltip="Compute the volume on screen now, with these settings",
    )
    w.preview_row = Container(
        name="preview_row",
        label="preview",
        layout="horizontal",
        labels=False,
        widgets=[w.live, w.region, w.preview_button],
    )
    w.preview_row.margins = (0, 0, 0, 0)
    w.z_range = LineEdit(
        name="z_range",
        label="Z range",
        value="all",
        tooltip="Z planes a region preview covers: 'all', a plane such as '5', or '4-9'",
    )
    w.output_path = FileEdit(
        mode=FileDialogMode.OPTIONAL_FILE,
        name="output_path",
        label="output",
        nullable=True,
        filter="*.zarr",
        tooltip="Optional OME-Zarr store to write; empty = preview only (kept in memory)",
    )
    w.overwrite = CheckBox(name="overwrite", value=False, text="replace an existing output")
    w.pyramid_levels = LineEdit(
        name="pyramid_levels",
        label="pyramid levels",
        value="1",
        enabled=False,
        tooltip="Resolution levels to write into the output (1: full resolution only): each "
        "volume's 2x mean downsamplings over Z, Y and X, in the same run; 'auto': until Y and X "
        "are at most 512 (run --pyramid-levels). Needs an output store with axes t, c, z, y, x",
    )
    w.num_workers = SpinBox(
        name="num_workers",
        label="workers",
        min=1,
        max=cpus,
        value=min(2, cpus),
        tooltip=f"Parallel workers (this machine allows {cpus})",
    )
    w.auto_workers = CheckBox(
        name="auto_workers",
        value=False,
        text="auto workers (fit CPUs and memory)",
        tooltip="Measure one task first, then use as many workers as the CPUs and the "
        "memory allow (process-position run --workers auto)",
    )
    w.use_threads = CheckBox(
        name="use_threads",
        value=True,
        text="threads (off: processes)",
        tooltip="Threads start at once and suit transforms that release the GIL; "
        "processes isolate memory-hungry transforms (the pool is kept warm)",
    )
    w.follow = CheckBox(name="follow", value=True, text="follow newest time point")
    w.run_button = PushButton(name="run_button", text="Run")
    w.cancel_button = PushButton(name="cancel_button", text="Cancel", enabled=False)
    w.save_button = PushButton(
        name="save_config",
        text="Save settings for a batch run…",
        tooltip="Write these settings as a YAML file for `process-position run --config`, "
        "to process every position of the plate",
    )
    w.progress = ProgressBar(name="progress", min=0, max=1, value=0, label=" ")
    w.status = Label(name="status", value="Choose an OME-Zarr plate or position.", label=" ")
    w.status.native.setWordWrap(True)
    w.extend(
        [
            w.input_path,
            w.position,
            w.transform,
            w.custom_transform,
            w.transform_params,
            w.channels,
            w.times,
            w.preview_row,
            w.z_range,
            w.output_path,
            w.overwrite,
            w.pyramid_levels,
            w.num_workers,
            w.auto_workers,
            w.use_threads,
            w.follow,
            w.run_button,
            w.cancel_button,
            w.save_button,
            w.progress,
            w.status,
        ]
    )
    # Spare height goes below the form, not between its rows.
    layout = w.native.layout()
    if layout is not None:
        layout.addStretch(1)
    w._settings = [
        w.input_path,
        w.position,
        w.transform,
        w.custom_transform,
        w.transform_params,
        w.channels,
        w.times,
        w.preview_button,
        w.output_path,
        w.overwrite,
        w.pyramid_levels,
        w.num_workers,
        w.auto_workers,
        w.use_threads,
        w.save_button,
    ]
