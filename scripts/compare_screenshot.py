"""Take the screenshot of a 3x3 comparison in docs/widget.md (docs/images/widget-compare.png).

Run it as ``xvfb-run -a -s "-screen 0 1600x1000x24" python scripts/compare_screenshot.py``:
it writes a demo plate of 3x3 wells, opens napari with the widget docked, picks
one field per well, compares a Gaussian blur at t=2 and saves the window.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path


def main(target: str = "docs/images/widget-compare.png") -> Path:
    """Take the picture and save it to ``target``; return its path."""
    import warnings

    warnings.filterwarnings("ignore", message="napari support for the PyQt5 backend")
    import napari
    from napari.settings import get_settings
    from qtpy.QtWidgets import QApplication

    from napari_process_position.store.demo import make_demo_plate
    from napari_process_position.widget import ProcessPositionWidget

    store = Path(tempfile.mkdtemp()) / "demo_plate.zarr"
    keys = tuple(f"{r}/{c}/0" for r in "ABC" for c in "123")
    make_demo_plate(store, shape=(4, 2, 16, 128, 128), positions=keys)
    get_settings().application.gui_notification_level = "none"  # no toasts in the picture
    viewer = napari.Viewer(title="napari-process-position")
    app = QApplication.instance()
    viewer.window.resize(1500, 950)
    widget = ProcessPositionWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Process position", area="right")
    widget.input_path.value = str(store)
    widget.transform.value = "gaussian_blur"
    widget.transform_params.sigma_z.value = 0.0
    widget.transform_params.sigma_y.value = 1.5
    widget.transform_params.sigma_x.value = 1.5
    viewer.dims.set_current_step(0, 2)
    widget.compare_pick.value = "one field per well"
    widget.compare_button.clicked()
    comparison = widget.controller.comparison
    deadline = time.monotonic() + 120
    while comparison.stats()["done"] is None and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.01)
    viewer.dims.set_current_step(1, 8)
    viewer.reset_view()
    for _ in range(50):
        app.processEvents()
        time.sleep(0.02)
    from qtpy.QtWidgets import QWidget

    for toast in viewer.window.main_menu.window().findChildren(QWidget):
        if type(toast).__name__ == "NapariQtNotification":
            toast.close()  # (napari's warning that PyQt5 support is deprecated)
    for _ in range(20):
        app.processEvents()
        time.sleep(0.02)
    out = Path(target)
    out.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(out), canvas_only=False)
    viewer.close()
    return out


if __name__ == "__main__":
    print(main(*sys.argv[1:2]))
