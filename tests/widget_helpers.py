"""Transforms for the widget tests, loaded by file path ('widget_helpers.py:name').

Worker processes import this file by its path, so it must stay importable on
its own (numpy and the standard library only).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent


def ref(name: str) -> str:
    """The 'file.py:function' reference of a transform in this file."""
    return f"{HERE / 'widget_helpers.py'}:{name}"


def slow_scale(czyx: np.ndarray, delay: float = 0.4, factor: float = 2.0) -> np.ndarray:
    """Multiply by ``factor`` after sleeping ``delay`` seconds (a transform that takes time)."""
    deadline = time.monotonic() + delay
    while time.monotonic() < deadline:
        time.sleep(0.01)
    return (czyx.astype(np.float32) * factor).astype(np.float32)


def slow_at_time(
    czyx: np.ndarray,
    input_time_index: int = 0,
    slow_time: int = 1,
    delay: float = 0.0,
    factor: float = 2.0,
) -> np.ndarray:
    """Multiply by ``factor``, sleeping ``delay`` seconds first on time point ``slow_time`` only.

    The engine learns the output shape of an undeclared transform by running it
    on the first selected time point; with another ``slow_time`` that probe is quick.
    """
    if input_time_index == slow_time:
        time.sleep(delay)
    return (czyx.astype(np.float32) * factor).astype(np.float32)


def explode_at(czyx: np.ndarray, input_time_index: int = 0, bad_time: int = 1) -> np.ndarray:
    """Return the input as float32, but raise on time point ``bad_time``."""
    if input_time_index == bad_time:
        raise ValueError(f"synthetic failure at time {input_time_index}")
    return czyx.astype(np.float32) + 1


def die_at(czyx: np.ndarray, input_time_index: int = 0, bad_time: int = 1) -> np.ndarray:
    """Kill the worker process on time point ``bad_time`` (as the kernel's OOM killer would)."""
    import os
    import signal

    if input_time_index == bad_time:
        os.kill(os.getpid(), signal.SIGKILL)
    return czyx.astype(np.float32)


def fine_gain(czyx: np.ndarray, gain: float = 0.00125) -> np.ndarray:
    """Multiply by a small gain (a default that two decimals would round away)."""
    return czyx.astype(np.float32) * gain


def time_offset(czyx: np.ndarray, input_time_index: int = 0, gain: float = 1.0) -> np.ndarray:
    """``czyx * gain + t``: depends on the engine-injected time index."""
    return czyx.astype(np.float32) * gain + input_time_index


def _settle(app: Any, seconds: float = 0.4) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.02)


def _grab(viewer: Any, path: str | Path) -> Path:
    from napari._qt.dialogs.qt_notification import NapariQtNotification
    from qtpy.QtWidgets import QApplication

    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.close()  # start-up notices (e.g. about the Qt binding) would cover the canvas
    _settle(QApplication.instance())
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    viewer.window._qt_window.grab().save(str(target))
    return target


def screenshot(
    path: str | Path, region_path: str | Path | None = None, store: str | Path | None = None
) -> list[Path]:
    """Open napari with the widget docked, run a preview on the demo plate, save a screenshot.

    With ``region_path``, then also a live region preview (a rectangle, a stronger
    blur) and a second screenshot. Run it as ``xvfb-run -a -s "-screen 0 1600x1000x24"
    python tests/widget_helpers.py docs/images/widget.png docs/images/widget-region.png``.
    """
    import tempfile

    import napari
    from qtpy.QtWidgets import QApplication

    from napari_process_position.store.demo import make_demo_plate
    from napari_process_position.widget import ProcessPositionWidget

    if store is None:
        store = Path(tempfile.mkdtemp()) / "demo_plate.zarr"
        make_demo_plate(store, shape=(6, 2, 24, 192, 192))
    viewer = napari.Viewer(title="napari-process-position")
    app = QApplication.instance()
    viewer.window._qt_window.resize(1400, 900)
    widget = ProcessPositionWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Process position", area="right")
    widget.input_path.value = str(store)
    widget.transform.value = "gaussian_blur"
    widget.transform_params.sigma_z.value = 0.0
    widget.transform_params.sigma_y.value = 1.0
    widget.transform_params.sigma_x.value = 1.0
    widget.num_workers.value = 2
    widget.use_threads.value = True
    widget.run_button.clicked()
    deadline = time.monotonic() + 120
    while widget.running and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.01)
    settle = time.monotonic() + 1.0  # let the last volumes and thumbnails paint
    while time.monotonic() < settle:
        app.processEvents()
        time.sleep(0.01)
    viewer.grid.enabled = True
    viewer.grid.stride = 2
    viewer.dims.set_current_step(0, 3)
    viewer.dims.set_current_step(1, 12)
    viewer.reset_view()
    shots = [_grab(viewer, path)]
    if region_path is not None:
        # A region preview: a rectangle, "live" and "region only" on, a stronger blur.
        viewer.grid.enabled = False
        pixel = viewer.layers[0].scale[-1]
        corners = [[48 * pixel, 40 * pixel], [139 * pixel, 151 * pixel]]
        shapes = viewer.add_shapes(
            corners,
            shape_type="rectangle",
            name="preview region",
            edge_color="yellow",
            face_color="transparent",
            edge_width=0.6,
        )
        widget.region.value = True
        widget.live.value = True
        widget.transform_params.sigma_y.value = 3.0
        widget.transform_params.sigma_x.value = 3.0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not widget.last_preview.get("shown"):
            app.processEvents()
            time.sleep(0.01)
        shapes.mode = "select"
        # Grid: the output layers and the rectangle in one cell, the inputs in the other
        # (each cell takes ``stride`` layers, from the bottom of the layer list).
        inputs = [i for i, layer in enumerate(viewer.layers) if not layer.name.endswith("]")]
        viewer.layers.move_multiple(inputs[:2], len(viewer.layers))
        viewer.grid.stride = 3
        viewer.grid.enabled = True
        viewer.reset_view()
        shots.append(_grab(viewer, region_path))
    widget.close_pool()
    viewer.close()
    return shots


if __name__ == "__main__":
    import sys

    targets = sys.argv[1:] or ["docs/images/widget.png"]
    for shot in screenshot(*targets[:2]):
        print(shot)
