"""The "Process position" napari widget: pick, run, watch, cancel.

The widget builds a :class:`RunConfig` exactly as the command line does and
hands it to :func:`_runner.prepare`; the run itself streams in a napari
``thread_worker`` generator. Each finished (t, c) volume reaches napari on
the main thread (the worker's ``yielded`` signal), is copied into its
preallocated output layer, and layer refreshes are coalesced by a timer so
the event loop never waits on a redraw per volume. Results of a run that is
no longer current (cancelled, replaced) are recognised by their run id and
dropped.

This is the only module of the package that imports qtpy, magicgui or
napari.
"""

from __future__ import annotations

import ast
import collections
import contextlib
import inspect
import itertools
import logging
import os
import threading
import time
import typing
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
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
    Widget,
    create_widget,
)
from napari.qt.threading import GeneratorWorker, thread_worker
from napari.utils.notifications import show_error
from qtpy.QtCore import QEvent, QObject, QThreadPool, QTimer
from qtpy.QtWidgets import QWidget

from ._config import RunConfig
from ._cpus import available_cpus
from ._engine import ProcessPool, _check_picklable
from ._errors import ProcessPositionError, TransformError
from ._runner import BatchRun, prepare
from ._store import (
    OutputLayout,
    PositionInfo,
    StoreInfo,
    open_store,
    read_position,
    tensorstore_spec,
)
from .transforms import TransformSpec, get_transform, list_transforms

if TYPE_CHECKING:
    import napari
    from napari.layers import Image

__all__ = ["ProcessPositionWidget", "parse_times"]

log = logging.getLogger(__name__)

#: At most one refresh per layer in this many milliseconds.
REFRESH_INTERVAL_MS = 100
#: Main-thread time spent copying finished volumes into layers per event ...
COPY_BUDGET_S = 0.025
#: ... in slabs of Z planes of about this size.
COPY_SLAB_BYTES = 4 << 20
#: The follow option moves the time slider (re-slicing every layer) at most this often.
FOLLOW_INTERVAL_MS = 500
#: Marks the layers this widget made, in ``layer.metadata``.
METADATA_KEY = "napari_process_position"
_COLORMAPS = ("green", "magenta", "cyan", "yellow", "red", "blue")
_run_ids = itertools.count(1)


# -- small helpers (no Qt) ----------------------------------------------------------------


def parse_times(text: str, n_times: int) -> list[int] | None:
    """Time points from ``"all"``, ``""`` (None: all) or ``"0-3,7"`` (inclusive ranges).

    Raises
    ------
    ValueError
        Unreadable text, an index outside ``0 .. n_times - 1``, or a repeat.
    """
    text = (text or "").strip().lower()
    if text in ("", "all", "*"):
        return None
    times: list[int] = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        try:
            if "-" in part[1:]:
                start_text, _, stop_text = part.partition("-") if part[0] != "-" else ("", "", "")
                start, stop = int(start_text), int(stop_text)
                if stop < start:
                    raise ValueError
                times.extend(range(start, stop + 1))
            else:
                times.append(int(part))
        except ValueError:
            raise ValueError(
                f"cannot read the time points {text!r}: write 'all', or indices and inclusive "
                "ranges such as '0-3,7'"
            ) from None
    bad = [t for t in times if not 0 <= t < n_times]
    if bad:
        raise ValueError(
            f"time point {bad[0]} does not exist: the position has {n_times} (0 to {n_times - 1})"
        )
    repeated = sorted({t for t in times if times.count(t) > 1})
    if repeated:
        raise ValueError(f"time points repeat: {repeated}")
    if not times:
        raise ValueError(f"{text!r} selects no time point")
    return times


def _display_limits(volume: np.ndarray) -> tuple[float, float] | None:
    """Contrast limits from a subsample of a volume: robust percentiles, never zero-width."""
    flat = np.asarray(volume).reshape(-1)
    if flat.size == 0:
        return None
    step = max(1, flat.size // 250_000)
    sample = flat[::step].astype(np.float64, copy=False)
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return None
    lo, hi = np.percentile(sample, [0.1, 99.9])
    if not hi > lo:
        lo, hi = float(sample.min()), float(sample.max())
    if not hi > lo:
        hi = lo + 1.0
    return float(lo), float(hi)


def _param_widget(param: inspect.Parameter, hint: Any) -> Widget:
    """Make the magicgui widget of one transform parameter (Annotated ranges, Literal choices)."""
    options: dict[str, Any] = {}
    base = hint
    if typing.get_origin(hint) is typing.Annotated:
        base, *extras = typing.get_args(hint)
        for extra in extras:
            if isinstance(extra, dict):
                options.update(extra)
    if base is inspect.Parameter.empty:
        base = None
    default = param.default
    has_default = default is not inspect.Parameter.empty
    if base is None and has_default and default is not None:
        base = type(default)
    kwargs: dict[str, Any] = {"name": param.name, "label": param.name.replace("_", " ")}
    if has_default:
        kwargs["value"] = default
    if base in (int, float):
        # magicgui's spin boxes default to 0..999; a transform's number is unbounded
        # unless its annotation says otherwise.
        limit = 1e9 if base is float else 2**31 - 1
        options.setdefault("min", -limit)
        options.setdefault("max", limit)
        if base is float:
            options.setdefault("step", 0.1)
    if base is None or base is Any:
        # Nothing to go by: a text box read as a Python literal.
        text = LineEdit(
            value=repr(default) if has_default else "",
            **{k: v for k, v in kwargs.items() if k != "value"},
        )
        text.tooltip = "a Python literal: 1.5, 'text', (1, 2), ..."
        text._npp_literal = True  # type: ignore[attr-defined]
        return text
    widget: Any = create_widget(annotation=base, options=options, **kwargs)
    if base is float and hasattr(widget.native, "setDecimals"):
        # Enough decimals for the step and the default: a spin box rounds what it
        # shows, and would otherwise run the transform with a rounded default.
        wanted = [_decimals(options.get("step")), _decimals(default if has_default else None)]
        decimals = max(2, *wanted)
        if decimals > widget.native.decimals():
            widget.native.setDecimals(decimals)
            if has_default:
                widget.value = default
    return widget


def _decimals(value: Any) -> int:
    """Decimal places needed to show a number exactly (at most 8)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value == 0:
        return 0
    text = f"{abs(float(value)):.8f}".rstrip("0")
    return min(8, len(text.partition(".")[2]))


def _param_value(widget: Any) -> Any:
    value = widget.value
    if getattr(widget, "_npp_literal", False):
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
    return value


# -- one run --------------------------------------------------------------------------------


@dataclass(eq=False)
class _Run:
    """One press of Run: its id, its config and what the main thread knows of it."""

    config: RunConfig
    pool: ProcessPool | None
    id: int = field(default_factory=lambda: next(_run_ids))
    cancel_event: threading.Event = field(default_factory=threading.Event)
    batch: BatchRun | None = None
    worker: Any = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    started: float = field(default_factory=time.perf_counter)
    prepared_at: float | None = None
    first_shown_at: float | None = None
    finished_at: float | None = None
    total: int = 0
    done: int = 0
    layers: list[Image] = field(default_factory=list)
    clim_set: set[int] = field(default_factory=set)
    outcome: str = "running"
    ending: tuple[str, str, bool] | None = None

    def attach(self, batch: BatchRun) -> None:
        with self.lock:
            self.batch = batch
        if self.cancel_event.is_set():
            batch.cancel()

    def cancel(self) -> None:
        self.cancel_event.set()
        with self.lock:
            batch = self.batch
        if batch is not None:
            batch.cancel()


def _input_limits(
    info: PositionInfo, channels: Sequence[int], t: int
) -> dict[int, tuple[float, float]]:
    """Contrast limits of the input channels from one Z plane each (cheap to read)."""
    import tensorstore as ts

    source = ts.open(tensorstore_spec(info), read=True).result()
    z = info.shape[2] // 2
    limits = {}
    for c in channels:
        found = _display_limits(source[t, c, z].read().result())
        if found is not None:
            limits[c] = found
    return limits


def _stream(run: _Run) -> Iterator[tuple[Any, ...]]:
    """Prepare the run, then yield each finished volume (the body of the thread worker).

    Everything slow (checking the config, probing the transform, creating the
    output, reading written volumes back, contrast statistics) happens here,
    off the main thread. Errors are yielded, not raised, so the widget
    reports them once, in its own words.
    """
    try:
        batch = prepare(run.config, pool=run.pool)
        batch.stop_on_error = True
        key = batch.keys[0]
        run.attach(batch)
        limits = _input_limits(batch.inputs[key], batch.channels, batch.times[0])
        yield ("prepared", batch, limits)
        reader = None
        seen: set[int] = set()
        for key, result in batch:
            out_c = result.output_channels
            index = out_c[0] if isinstance(out_c, tuple) else int(out_c)  # type: ignore[arg-type]
            volume = result.volume
            if volume is None and result.status in ("written", "resumed"):
                if reader is None:
                    import tensorstore as ts

                    reader = ts.open(
                        tensorstore_spec(read_position(str(batch.output_paths[key]))), read=True
                    ).result()
                volume = reader[result.output_time_index, index].read().result()
            elif volume is not None and volume.ndim == 4:
                volume = volume[0]
            limits_c = None
            if volume is not None and index not in seen:
                seen.add(index)
                limits_c = _display_limits(volume)
            yield ("result", result, index, volume, limits_c)
        yield ("end", batch)
    except Exception as exc:  # reported by the widget, with the (t, c) when known
        yield ("error", exc)


class _ClosingGeneratorWorker(GeneratorWorker):
    """A generator worker that closes its generator in its own thread when it stops.

    napari's worker leaves an aborted generator suspended; closing it later
    from whichever thread collects it would run the engine's clean-up (which
    may stop a process pool) on the main thread.
    """

    def work(self) -> Any:
        try:
            return super().work()
        finally:
            with contextlib.suppress(Exception):
                self._gen.close()


def _warm_pool(pool: ProcessPool, transform_ref: str | None) -> None:
    with contextlib.suppress(Exception):  # a pool stopped while warming is fine
        pool.warm(transform_ref)


class _CloseWatcher(QObject):
    """Calls back when the viewer's window closes or the widget leaves its dock.

    napari's dock "x" (``remove_dock_widget``) takes the widget out of its dock
    without deleting it, so being un-parented counts as being closed too. The
    window is found from the widget once it is docked (napari's private
    ``window._qt_window`` is out of bounds for plugins).
    """

    def __init__(self, callback: Callable[[], None], widget: QWidget) -> None:
        super().__init__(widget)
        # A weak reference: the watcher (owned by Qt) must not keep the widget alive.
        self._callback = weakref.WeakMethod(callback)  # type: ignore[arg-type]
        self._widget = widget
        self._window: QWidget | None = None
        widget.installEventFilter(self)

    def _call(self) -> None:
        callback = self._callback()
        if callback is not None:
            callback()

    def _watch_window(self) -> None:
        top = self._widget.window()
        if top is not None and top is not self._widget and top is not self._window:
            if self._window is not None:
                self._window.removeEventFilter(self)
            self._window = top
            top.installEventFilter(self)

    def eventFilter(self, obj: QObject | None, event: QEvent | None) -> bool:
        if event is None or "_widget" not in self.__dict__:
            return False  # (a wrapper being torn down)
        kind = event.type()
        if obj is self._widget and kind == QEvent.Type.ParentChange:
            if self._widget.parent() is None:
                self._call()
            else:  # docking finishes after the re-parenting: look for the window then
                QTimer.singleShot(0, self._watch_window)
        elif obj is self._window and kind == QEvent.Type.Close:
            self._call()
        return False


def _room_for_one_more_thread() -> None:
    """Make sure napari's thread pool starts the next worker now, not when another ends."""
    pool = QThreadPool.globalInstance()
    if pool is None:
        return
    needed = pool.activeThreadCount() + 1
    if pool.maxThreadCount() < needed:
        pool.setMaxThreadCount(needed)


# -- the widget -----------------------------------------------------------------------------


class ProcessPositionWidget(Container):
    """Preview a transform on one OME-Zarr position, streaming each finished volume into napari.

    Parameters
    ----------
    viewer
        The napari viewer whose layers show the input and the output.

    Examples
    --------
    >>> widget = ProcessPositionWidget(viewer)            # doctest: +SKIP
    >>> viewer.window.add_dock_widget(widget, name="Process position")  # doctest: +SKIP
    >>> widget.input_path.value = "demo.zarr"              # doctest: +SKIP
    >>> widget.run_button.clicked()                        # doctest: +SKIP
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        self._viewer = viewer
        self._store: StoreInfo | None = None
        self._info: PositionInfo | None = None
        self._specs: dict[str, TransformSpec] = {}
        self._registry: list[TransformSpec] | None = None
        self._callables: dict[str, Callable[..., Any]] = {}
        self._current: _Run | None = None
        self._last: _Run | None = None
        self._workers: set[Any] = set()
        self._pool: ProcessPool | None = None
        self._closed = False
        self._closing = False
        self._dirty: dict[Any, tuple[Image, set[int]]] = {}
        self._follow_to: tuple[Image, int] | None = None
        self._last_refresh = 0.0
        self._last_follow = 0.0
        self._last_status = 0.0
        self._pending: collections.deque[tuple[_Run, int, int, np.ndarray, Any, int]] = (
            collections.deque()
        )
        cpus = available_cpus()

        self.input_path = FileEdit(
            mode=FileDialogMode.EXISTING_DIRECTORY,
            name="input_path",
            label="input",
            tooltip="An OME-Zarr HCS plate, or one position of it",
        )
        # Choices are functions of the widget's state: napari calls reset_choices()
        # whenever layers change, which must not forget them.
        self.position = ComboBox(
            name="position", choices=self._position_choices, tooltip="Position (row/col/fov)"
        )
        self.transform = ComboBox(
            name="transform",
            choices=self._transform_choices,
            tooltip="The transform to apply to each (t, c) volume",
        )
        self.custom_transform = LineEdit(
            name="custom_transform",
            label="or",
            tooltip="A transform of your own: 'module:function' or '/path/file.py:function'",
        )
        self.custom_transform.native.setPlaceholderText("module:function or file.py:function")
        self.transform_params: Container[Widget] = Container(
            name="transform_params", label="parameters", labels=True
        )
        self.transform_params.margins = (0, 0, 0, 0)
        self.channels = Select(
            name="channels", choices=self._channel_choices, tooltip="Channels to process"
        )
        self.times = LineEdit(
            name="times",
            value="all",
            tooltip="Time points: 'all', or indices and ranges like '0-3,7'",
        )
        self.output_path = FileEdit(
            mode=FileDialogMode.OPTIONAL_FILE,
            name="output_path",
            label="output",
            nullable=True,
            filter="*.zarr",
            tooltip="Optional OME-Zarr store to write; empty = preview only (kept in memory)",
        )
        self.overwrite = CheckBox(name="overwrite", value=False, text="replace an existing output")
        self.num_workers = SpinBox(
            name="num_workers",
            label="workers",
            min=1,
            max=cpus,
            value=min(2, cpus),
            tooltip=f"Parallel workers (this machine allows {cpus})",
        )
        self.use_threads = CheckBox(
            name="use_threads",
            value=True,
            text="threads (off: processes)",
            tooltip="Threads start at once and suit transforms that release the GIL; "
            "processes isolate memory-hungry transforms (the pool is kept warm)",
        )
        self.follow = CheckBox(name="follow", value=True, text="follow newest time point")
        self.run_button = PushButton(name="run_button", text="Run")
        self.cancel_button = PushButton(name="cancel_button", text="Cancel", enabled=False)
        self.save_button = PushButton(
            name="save_config",
            text="Save settings for a batch run…",
            tooltip="Write these settings as a YAML file for `process-position run --config`, "
            "to process every position of the plate",
        )
        self.progress = ProgressBar(name="progress", min=0, max=1, value=0, label=" ")
        self.status = Label(name="status", value="Choose an OME-Zarr plate or position.", label=" ")
        self.status.native.setWordWrap(True)
        self.extend(
            [
                self.input_path,
                self.position,
                self.transform,
                self.custom_transform,
                self.transform_params,
                self.channels,
                self.times,
                self.output_path,
                self.overwrite,
                self.num_workers,
                self.use_threads,
                self.follow,
                self.run_button,
                self.cancel_button,
                self.save_button,
                self.progress,
                self.status,
            ]
        )
        # Spare height goes below the form, not between its rows.
        layout = self.native.layout()
        if layout is not None:
            layout.addStretch(1)
        self._settings: list[Widget] = [
            self.input_path,
            self.position,
            self.transform,
            self.custom_transform,
            self.transform_params,
            self.channels,
            self.times,
            self.output_path,
            self.overwrite,
            self.num_workers,
            self.use_threads,
            self.save_button,
        ]

        self._timer = QTimer(self.native)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._flush)
        self._status_timer = QTimer(self.native)
        self._status_timer.setSingleShot(True)
        self._status_timer.timeout.connect(self._update_status)

        self.input_path.changed.connect(self._on_input_changed)
        self.position.changed.connect(self._on_position_changed)
        self.transform.changed.connect(self._on_transform_changed)
        self.custom_transform.changed.connect(self._on_custom_transform)
        self.num_workers.changed.connect(self._on_mode_changed)
        self.use_threads.changed.connect(self._on_mode_changed)
        self.run_button.clicked.connect(self._on_run)
        self.cancel_button.clicked.connect(self._on_cancel)
        self.save_button.clicked.connect(self._on_save_clicked)
        self._on_transform_changed()
        self._fit_channel_list()

        self._watcher = _CloseWatcher(self.close_pool, self.native)
        self.native.destroyed.connect(self._on_destroyed)
        viewer.layers.events.inserted.connect(self._on_layer_inserted)
        for layer in viewer.layers:
            self._adopt_sample(layer)

    # -- public API --------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """True while a run is in flight."""
        return self._current is not None

    @property
    def viewer(self) -> napari.viewer.Viewer:
        """The viewer the widget shows its layers in."""
        return self._viewer

    @property
    def pool(self) -> ProcessPool | None:
        """The process pool kept warm for process mode (None until needed)."""
        return self._pool

    @property
    def last_run(self) -> dict[str, Any]:
        """Timings and counts of the latest run (for benchmarks and tests)."""
        run = self._current or self._last
        if run is None:
            return {}
        return {
            "id": run.id,
            "outcome": run.outcome,
            "done": run.done,
            "total": run.total,
            "started": run.started,
            "prepared": run.prepared_at,
            "first_shown": run.first_shown_at,
            "finished": run.finished_at,
        }

    def add_transform(self, transform: str | Callable[..., Any]) -> str:
        """Offer a transform of one's own, select it, and return its name.

        Parameters
        ----------
        transform
            ``"module:function"``, ``"/path/to/file.py:function"``, or a function
            defined at the top level of a module or file (it is run by reference,
            so worker processes can import it too).

        Raises
        ------
        TransformNotFoundError, TransformError
            It cannot be found, or a function cannot be found again by its name.
        """
        spec = get_transform(transform)
        name = spec.name
        if callable(transform):
            try:
                found = get_transform(spec.ref).func
            except ProcessPositionError:
                found = None
            if found is not transform:
                raise TransformError(
                    f"transform {spec.name!r} cannot be found by its name {spec.ref!r} (a lambda, "
                    "a nested function, or one defined in a console?); define it at the top "
                    "level of a .py file and add 'file.py:function'"
                )
            name = spec.ref
            self._callables[name] = transform
            spec = get_transform(name)
        self._specs[name] = spec
        self.transform.reset_choices()
        self.transform.value = name
        return name

    def current_config(self) -> RunConfig:
        """Return the :class:`RunConfig` the widget would run now (save it for the CLI).

        Raises
        ------
        ValueError
            A setting is missing or invalid; the message says which.
        """
        if self._store is None or self._info is None:
            raise ValueError("choose an OME-Zarr plate or position first")
        key = self.position.value
        if key is None:
            raise ValueError("choose a position")
        channels = sorted(self.channels.value)
        if not channels:
            raise ValueError("select at least one channel")
        times = parse_times(self.times.value, self._info.shape[0])
        output = self.output_path.value
        params = {w.name: _param_value(w) for w in self.transform_params}
        return RunConfig(
            input=self._store.path,
            output=str(output) if output else None,
            positions=[key],
            transform=self.transform.value,
            params=params,
            channels=channels,
            times=times,
            num_workers=int(self.num_workers.value),
            use_threads=bool(self.use_threads.value),
            overwrite=bool(self.overwrite.value),
        )

    def save_config(self, path: str | os.PathLike[str]) -> Path:
        """Save the settings for a batch run over every position, and return the file.

        The preview ran one position; the saved :class:`RunConfig` selects all of
        them (edit ``positions`` in the file to narrow it down). The status line
        shows the command that runs it.

        Raises
        ------
        ValueError
            A setting is missing or invalid.
        """
        config = self.current_config().model_copy(update={"positions": None})
        target = config.save(Path(path).expanduser().with_suffix(".yaml"))
        command = f"process-position run --config {target}"
        if config.output is None:
            command = f"process-position run {config.input} OUTPUT.zarr --config {target}"
        self._set_status(f"Saved {target}. Run every position with: {command}")
        return target

    def _on_save_clicked(self, *_: Any) -> None:
        from magicgui.application import use_app

        show_dialog = use_app().get_obj("show_file_dialog")
        chosen = show_dialog(
            FileDialogMode.OPTIONAL_FILE, caption="Save run settings", filter="*.yaml"
        )
        if not chosen:
            return
        try:
            self.save_config(chosen)
        except (ValueError, OSError, ProcessPositionError) as exc:
            self._report_error(f"cannot save the settings: {exc}")

    def cancel(self) -> None:
        """Cancel the run in flight (what the Cancel button does)."""
        self._on_cancel()

    def close_pool(self) -> None:
        """Cancel any run and stop the process pool (done when the viewer closes).

        The widget stays usable: process mode starts a new pool on the next run.
        """
        self._closing = True
        try:
            if self._current is not None:
                self._on_cancel()
            pool, self._pool = self._pool, None
            if pool is not None:
                pool.kill()
        finally:
            self._closing = False

    def wait_for_background(self, timeout: float = 10.0) -> bool:
        """Wait (processing Qt events) until detached workers have ended; True if they did."""
        from qtpy.QtWidgets import QApplication

        deadline = time.perf_counter() + timeout
        while self._workers and time.perf_counter() < deadline:
            QApplication.processEvents()
            time.sleep(0.005)
        return not self._workers

    def _input_chosen(self) -> bool:
        return bool(self.input_path.line_edit.value.strip())

    def _on_layer_inserted(self, event: Any) -> None:
        self._adopt_sample(event.value)

    def _adopt_sample(self, layer: Any) -> None:
        """Sample-data layers name their store: make it the input if none is chosen yet."""
        from ._sample_data import SOURCE_KEY

        source = (getattr(layer, "metadata", None) or {}).get(SOURCE_KEY)
        if not source or self._input_chosen() or self.running:
            return
        # napari adds a sample's layers one by one: look once they are all there.
        QTimer.singleShot(0, partial(self._use_sample, source["store"], source.get("position")))

    def _use_sample(self, store: str, key: str | None) -> None:
        if self._closed or self._input_chosen() or self.running:
            return
        self.input_path.value = Path(store)
        if key in self.position.choices and self.position.value != key:
            self.position.value = key

    # -- choices -------------------------------------------------------------------------
    def _transform_choices(self, _widget: Any = None) -> list[tuple[str, str]]:
        # napari calls reset_choices() on every layer change; scanning entry points
        # each time would cost tens of milliseconds, so the registry is read once.
        if self._registry is None:
            self._registry = list_transforms()
        choices = []
        for spec in self._registry:
            self._specs.setdefault(spec.name, spec)
            choices.append((spec.display_name, spec.name))
        known = {value for _, value in choices}
        for name, spec in self._specs.items():
            if name not in known:
                choices.append((f"{spec.display_name} (custom)", name))
        return choices

    def _position_choices(self, _widget: Any = None) -> list[str]:
        return list(self._store.position_keys) if self._store is not None else []

    def _channel_choices(self, _widget: Any = None) -> list[tuple[str, int]]:
        if self._info is None:
            return []
        return [(name, i) for i, name in enumerate(self._info.channel_names)]

    def _on_input_changed(self, *_: Any) -> None:
        path = self.input_path.value
        self._store = None
        self._info = None
        self.position.reset_choices()
        self.channels.reset_choices()
        if not path or str(path) in ("", "."):
            return
        try:
            store = open_store(str(path))
        except ProcessPositionError as exc:
            self._set_status(str(exc))
            return
        self._store = store
        self.position.reset_choices()
        if store.position_keys:
            self.position.value = store.position_keys[0]
        self._on_position_changed()
        kind = "plate" if store.kind == "plate" else "position"
        self._set_status(
            f"{kind} with {len(store.position_keys)} position(s); pick a transform and press Run."
        )

    def _on_position_changed(self, *_: Any) -> None:
        key = self.position.value
        if (
            self._store is not None
            and key is not None
            and self._info is not None
            and self._info.path == self._store.position_path(key)
        ):
            return  # already shown
        previous = [self._info.channel_names[c] for c in self.channels.value] if self._info else []
        self._info = None
        if self._store is not None and key is not None:
            try:
                self._info = read_position(self._store.position_path(key), key)
            except ProcessPositionError as exc:
                self._set_status(str(exc))
        self.channels.reset_choices()
        info = self._info
        if info is None:
            return
        keep = [i for i, name in enumerate(info.channel_names) if name in previous]
        self.channels.value = keep or list(range(len(info.channel_names)))
        self.times.tooltip = (
            f"Time points of {info.shape[0]} (0 to {info.shape[0] - 1}): "
            "'all', or indices and ranges like '0-3,7'"
        )
        self._fit_channel_list()
        try:
            self._show_inputs(info)
        except Exception as exc:  # unreadable data: say so, keep the form usable
            self._set_status(f"cannot show {info.path}: {exc}")

    def _fit_channel_list(self) -> None:
        rows = max(1, min(6, len(self.channels.choices)))
        self.channels.native.setFixedHeight(rows * 22 + 8)

    def _on_transform_changed(self, *_: Any) -> None:
        name = self.transform.value
        self.transform_params.clear()
        if name is None:
            return
        spec = self._specs.get(name) or get_transform(name)
        hints = spec.type_hints()
        widgets = [_param_widget(p, hints.get(p.name, p.annotation)) for p in spec.parameters()]
        self.transform_params.extend(widgets)
        self.transform_params.visible = bool(widgets)
        self.transform.tooltip = spec.summary or spec.name

    def _on_custom_transform(self, *_: Any) -> None:
        text = self.custom_transform.value.strip()
        if ":" not in text or text.endswith(":"):
            return
        try:
            self.add_transform(text)
        except ProcessPositionError as exc:
            self.custom_transform.tooltip = str(exc)
            return
        self.custom_transform.tooltip = f"added {text}"

    # -- process pool ------------------------------------------------------------------
    def _mode(self) -> str:
        if int(self.num_workers.value) <= 1:
            return "serial"
        return "threads" if self.use_threads.value else "processes"

    def _on_mode_changed(self, *_: Any) -> None:
        if self._mode() == "processes" and not self.running and not self._closed:
            self._ensure_pool(warm=True)

    def _ensure_pool(self, warm: bool) -> ProcessPool:
        workers = min(int(self.num_workers.value), available_cpus())
        pool = self._pool
        if pool is not None and pool.num_workers != workers:
            pool.shutdown(wait=False)
            pool = None
        if pool is None:
            pool = self._pool = ProcessPool(workers)
        if warm and not pool.processes():
            spec = self._specs.get(self.transform.value or "")
            # The workers import the chosen transform now too, not in the first task.
            worker = thread_worker(_warm_pool, start_thread=False)(pool, spec.ref if spec else None)
            self._start_worker(worker)
        return pool

    def _start_worker(self, worker: Any, run: _Run | None = None) -> None:
        self._workers.add(worker)
        widget_ref = weakref.ref(self)

        def finished() -> None:
            # Qt holds these connections, unseen by Python's garbage collector: drop
            # them, or the finished worker would keep the widget (and the viewer) alive.
            for name in ("yielded", "errored", "finished"):
                with contextlib.suppress(TypeError, RuntimeError, AttributeError):
                    getattr(worker, name).disconnect()
            widget = widget_ref()
            if widget is not None:
                widget._workers.discard(worker)
                if run is not None:
                    widget._on_worker_finished(run)
            if run is not None:
                run.worker = None

        worker.finished.connect(finished)
        _room_for_one_more_thread()
        worker.start()

    # -- running -------------------------------------------------------------------------
    def _set_busy(self, busy: bool) -> None:
        self.run_button.enabled = not busy
        self.cancel_button.enabled = busy
        for widget in self._settings:
            widget.enabled = not busy

    def _set_status(self, text: str) -> None:
        self.status.value = text

    def _on_run(self, *_: Any) -> None:
        if self._current is not None or self._closed:
            return
        try:
            config = self.current_config()
        except (ValueError, ProcessPositionError) as exc:
            self._report_error(f"cannot run: {exc}")
            return
        pool = None
        if config.num_workers > 1 and not config.use_threads and available_cpus() > 1:
            func = self._callables.get(config.transform)
            try:
                if func is not None:
                    _check_picklable(func, config.params)
            except TransformError as exc:
                self._report_error(str(exc))
                return
            pool = self._ensure_pool(warm=False)
        run = _Run(config, pool)
        self._current = run
        self._set_busy(True)
        self.progress.max = 1
        self._set_progress(0)
        self._set_status(f"Starting {self._spec_display(config.transform)}…")
        worker = thread_worker(_stream, worker_class=_ClosingGeneratorWorker, start_thread=False)(
            run
        )
        run.worker = worker
        worker.yielded.connect(partial(self._on_event, run))
        worker.errored.connect(partial(self._on_worker_errored, run))
        self._start_worker(worker, run)

    def _spec_display(self, name: str) -> str:
        spec = self._specs.get(name)
        return spec.display_name if spec is not None else name

    def _on_event(self, run: _Run, event: tuple[Any, ...]) -> None:
        if run is not self._current:
            return  # a cancelled or replaced run: drop its stale results
        kind = event[0]
        if kind == "prepared":
            self._on_prepared(run, event[1], event[2])
        elif kind == "result":
            self._on_result(run, *event[1:])
        elif kind == "end":
            self._on_end(run, event[1])
        elif kind == "error":
            self._on_failed(run, event[1])

    def _on_prepared(
        self, run: _Run, batch: BatchRun, limits: dict[int, tuple[float, float]]
    ) -> None:
        run.prepared_at = time.perf_counter()
        run.total = batch.total
        self.progress.max = max(1, batch.total)
        key = batch.keys[0]
        info = batch.inputs[key]
        layout = batch.layouts[key]
        display = batch.spec.display_name
        self._show_inputs(info, batch.times, limits)
        run.layers = self._make_outputs(layout, display, batch.config.output)
        self._set_status(f"0/{batch.total} volumes · running {display} ({self._mode_text(batch)})")

    def _mode_text(self, batch: BatchRun) -> str:
        cfg = batch.config
        if cfg.num_workers <= 1:
            return "serial"
        return f"{cfg.num_workers} {'threads' if cfg.use_threads else 'processes'}"

    def _show_inputs(
        self,
        info: PositionInfo,
        times: list[int] | None = None,
        limits: dict[int, tuple[float, float]] | None = None,
    ) -> None:
        """Show every channel of a position as a lazy layer (only ``times``, when given).

        A run shows the selected time points only, so that the input and the
        output layers share their first axis.
        """
        import tensorstore as ts

        source = ts.open(tensorstore_spec(info), read=True).result()
        if times is None or list(times) == list(range(info.shape[0])):
            time_index: Any = slice(None)
            times = None
        else:
            time_index = list(times)
        scale = (info.scale[0], *info.scale[2:])
        shown = []
        for c, name in enumerate(info.channel_names):
            meta = {"role": "input", "path": info.path, "channel": c, "times": times}
            layer = self._find_input(info, c, name)
            if layer is not None and layer.metadata.get(METADATA_KEY) == meta:
                shown.append(layer)
                continue
            data = source[time_index, c]
            same_source = layer is not None and _meta(layer).get("path") == info.path
            clim = (limits or {}).get(c)
            if clim is None and not same_source:
                clim = _input_limits(info, [c], 0).get(c, (0.0, 1.0))
            if layer is None:
                layer = self._viewer.add_image(
                    data,
                    name=name,
                    scale=scale,
                    contrast_limits=clim,
                    metadata={METADATA_KEY: meta},
                    colormap=_COLORMAPS[c % len(_COLORMAPS)],
                    blending="additive",
                    axis_labels=("t", "z", "y", "x"),
                )
            else:
                layer.metadata = {**layer.metadata, METADATA_KEY: meta}
                layer.data = data
                if not np.allclose(layer.scale, scale):
                    layer.scale = scale
                if clim is not None:
                    layer.contrast_limits_range = clim
                    layer.contrast_limits = clim
            shown.append(layer)
        # Input layers of another position are replaced, not piled up.
        shown_ids = {layer.unique_id for layer in shown}
        for layer in list(self._viewer.layers):
            if _meta(layer).get("role") == "input" and layer.unique_id not in shown_ids:
                self._viewer.layers.remove(layer)

    def _find_input(self, info: PositionInfo, channel: int, name: str) -> Image | None:
        """Find this widget's input layer of that name, or a sample-data layer of that channel."""
        from ._sample_data import SOURCE_KEY

        found = self._find_layer(name, "input")
        if found is not None:
            return found
        for layer in self._viewer.layers:
            source = (layer.metadata or {}).get(SOURCE_KEY) or {}
            if (
                source
                and Path(source["store"], source["position"]) == Path(info.path)
                and (layer.name == name)
            ):
                return layer  # type: ignore[no-any-return]
        return None

    def _has_layer(self, layer: Image) -> bool:
        # Compared by id: a plugin widget sees layers through napari's proxies, a new
        # proxy object at each access.
        return any(other.unique_id == layer.unique_id for other in self._viewer.layers)

    def _find_layer(self, name: str, role: str) -> Image | None:
        for layer in self._viewer.layers:
            if (
                layer.name == name
                and (layer.metadata or {}).get(METADATA_KEY, {}).get("role") == role
            ):
                return layer  # type: ignore[return-value]
        return None

    def _make_outputs(self, layout: OutputLayout, display: str, output: str | None) -> list[Image]:
        shape = (layout.shape[0], *layout.shape[2:])
        dtype = np.dtype(layout.dtype)
        scale = (layout.scale[0], *layout.scale[2:])
        layers = []
        for i, channel in enumerate(layout.channel_names):
            name = f"{channel} [{display}]"
            meta = {METADATA_KEY: {"role": "output", "output": output, "channel": i}}
            data = np.zeros(shape, dtype)  # calloc: pages appear as volumes arrive
            layer = self._find_layer(name, "output")
            if layer is None:
                layer = self._viewer.add_image(
                    data,
                    name=name,
                    scale=scale,
                    contrast_limits=(0.0, 1.0),
                    metadata=meta,
                    colormap=_COLORMAPS[i % len(_COLORMAPS)],
                    blending="additive",
                    axis_labels=("t", "z", "y", "x"),
                )
            else:
                layer.data = data  # the previous run's array is released
                if not np.allclose(layer.scale, scale):  # each change re-slices the layer
                    layer.scale = scale
                if layer.metadata.get(METADATA_KEY) != meta[METADATA_KEY]:
                    layer.metadata = meta
            layers.append(layer)
        # Output layers of an earlier transform are replaced, not piled up.
        keep = {layer.unique_id for layer in layers}
        for layer in list(self._viewer.layers):
            role = (layer.metadata or {}).get(METADATA_KEY, {}).get("role")
            if role == "output" and layer.unique_id not in keep:
                self._viewer.layers.remove(layer)
        self._dirty.clear()
        self._pending.clear()
        self._follow_to = None
        return layers

    def _on_result(
        self,
        run: _Run,
        result: Any,
        index: int,
        volume: np.ndarray | None,
        limits: tuple[float, float] | None,
    ) -> None:
        run.done += 1
        if volume is not None and index < len(run.layers):
            # Copied by _flush, a few at a time: Qt delivers queued results in one
            # batch, and copying them all at once would block the event loop.
            self._pending.append((run, index, int(result.output_time_index), volume, limits, 0))
        self._schedule_flush()
        # The labels and the bar repaint the window: their own event, at most every 100 ms.
        if not self._status_timer.isActive():
            wait = REFRESH_INTERVAL_MS - (time.perf_counter() - self._last_status) * 1000
            self._status_timer.start(int(max(0.0, wait)))

    def _schedule_flush(self) -> None:
        if self._timer.isActive():
            return
        now = time.perf_counter()
        if self._pending:
            wait = 0.0
        elif self._dirty:
            wait = REFRESH_INTERVAL_MS - (now - self._last_refresh) * 1000
        elif self._follow_to is not None:
            wait = FOLLOW_INTERVAL_MS - (now - self._last_follow) * 1000
        else:
            return
        self._timer.start(int(max(0.0, wait)))

    def _copy_pending(self, budget_s: float) -> None:
        """Copy pending volumes into their layers for about ``budget_s`` seconds.

        A large volume is copied a slab of Z planes at a time, so that no single
        event copies more than the budget allows.
        """
        deadline = time.perf_counter() + budget_s
        while self._pending:
            run, index, t, volume, limits, z0 = self._pending[0]
            layer = run.layers[index]
            if run.outcome == "cancelled" or not self._has_layer(layer):
                self._pending.popleft()  # a cancelled run's result, or a removed layer
                continue
            per_plane = max(1, volume[0].nbytes if volume.ndim else 1)
            z1 = min(len(volume), z0 + max(1, COPY_SLAB_BYTES // per_plane))
            layer.data[t, z0:z1] = volume[z0:z1]
            if z1 < len(volume):
                self._pending[0] = (run, index, t, volume, limits, z1)
            else:
                self._pending.popleft()
                if limits is not None and index not in run.clim_set:
                    run.clim_set.add(index)
                    layer.contrast_limits_range = limits
                    layer.contrast_limits = limits
                self._dirty.setdefault(layer.unique_id, (layer, set()))[1].add(t)
                self._follow_to = (layer, t)
            if time.perf_counter() > deadline:
                break

    def _flush(self, final: bool = False) -> None:
        """Copy pending volumes; refresh changed layers (at most every 100 ms); follow."""
        self._copy_pending(COPY_BUDGET_S)
        now = time.perf_counter()
        run = self._current
        ending = run.ending if run is not None and not self._pending else None
        last_call = final or ending is not None
        refresh_due = last_call or (now - self._last_refresh) * 1000 >= REFRESH_INTERVAL_MS
        follow_due = last_call or (now - self._last_follow) * 1000 >= FOLLOW_INTERVAL_MS
        moved = False
        if self._follow_to is not None and follow_due:
            layer, t = self._follow_to
            self._follow_to = None
            if self.follow.value and self._has_layer(layer):
                moved = self._follow(layer, t)  # re-slices every layer
                self._last_follow = now
        if self._dirty and (refresh_due or moved):
            self._last_refresh = now
            dirty, self._dirty = self._dirty, {}
            if not moved:
                for layer, times in dirty.values():
                    if self._shows_any(layer, times):
                        layer.refresh()
            shown = run or self._last
            if shown is not None and shown.first_shown_at is None:
                shown.first_shown_at = time.perf_counter()
        if ending is not None and run is not None and not final:
            run.ending = None
            self._finish_when_shown(run, *ending)
            return
        if not final:
            self._schedule_flush()

    def _follow(self, layer: Image, t: int) -> bool:
        axis = self._viewer.dims.ndim - layer.ndim
        world_t = layer.scale[0] * t + layer.translate[0]
        step = self._viewer.dims.range[axis].step or 1.0
        start = self._viewer.dims.range[axis].start
        target = round((world_t - start) / step)
        if self._viewer.dims.current_step[axis] == target:
            return False
        self._viewer.dims.set_current_step(axis, target)
        return True

    def _shows_any(self, layer: Image, times: set[int]) -> bool:
        axis = self._viewer.dims.ndim - layer.ndim
        world_t = self._viewer.dims.point[axis]
        shown = round((world_t - layer.translate[0]) / (layer.scale[0] or 1.0))
        return shown in times

    def _set_progress(self, value: int) -> None:
        # QProgressBar.setValue repaints synchronously, which with napari's OpenGL
        # canvas in the window means a full window redraw inside our handler; let
        # Qt paint it with the next update instead.
        bar = self.progress.native
        bar.setUpdatesEnabled(False)
        try:
            self.progress.value = min(value, int(self.progress.max))
        finally:
            bar.setUpdatesEnabled(True)
        bar.update()

    def _update_status(self) -> None:
        self._last_status = time.perf_counter()
        if self._current is not None:
            self._update_progress(self._current)

    def _update_progress(self, run: _Run) -> None:
        self._set_progress(run.done)
        if run.total:
            elapsed = time.perf_counter() - run.started
            rate = run.done / elapsed if elapsed > 0 else 0.0
            text = f"{run.done}/{run.total} volumes · {rate:.2f}/s"
            if 0 < run.done < run.total and rate > 0:
                text += f" · ETA {_seconds((run.total - run.done) / rate)}"
            self._set_status(text)

    def _on_end(self, run: _Run, batch: BatchRun) -> None:
        summary = batch.summaries.get(batch.keys[0])
        elapsed = time.perf_counter() - run.started
        if batch.cancelled:
            self._finish(run, "cancelled", f"Cancelled after {run.done}/{run.total} volumes.")
            return
        counts = []
        if summary is not None:
            for what in ("preview", "written", "skipped", "resumed"):
                n = getattr(summary, what)
                if n:
                    counts.append(f"{n} {what}")
        where = f" into {batch.config.output}" if batch.config.output else " (preview, in memory)"
        self._finish_when_shown(
            run,
            "done",
            f"Done: {run.done}/{run.total} volumes in {_seconds(elapsed)}"
            f"{where}; {', '.join(counts) or 'nothing to do'}.",
        )

    def _on_failed(self, run: _Run, exc: BaseException) -> None:
        message = str(exc) or type(exc).__name__
        if not isinstance(exc, ProcessPositionError):
            message = f"{type(exc).__name__}: {message}"
        where = ""
        t_index = getattr(exc, "time_index", None)
        c_index = getattr(exc, "channel_index", None)
        if t_index is not None and f"t={t_index}" not in message:
            where = f" (t={t_index}, c={c_index})"
        text = f"Failed after {run.done}/{run.total or '?'} volumes{where}: {message}"
        self._finish_when_shown(run, "failed", text, error=True)

    def _finish_when_shown(self, run: _Run, outcome: str, text: str, error: bool = False) -> None:
        """End the run once the volumes it delivered are in their layers (copied bit by bit)."""
        if self._pending and run is self._current:
            run.ending = (outcome, text, error)
            self._schedule_flush()
            return
        self._flush(final=True)
        self._finish(run, outcome, text)
        if error:
            show_error(text)

    def _on_worker_errored(self, run: _Run, exc: BaseException) -> None:
        # Only a bug in this module gets here (the generator yields its errors).
        if run is self._current:
            self._on_failed(run, exc)

    def _on_worker_finished(self, run: _Run) -> None:
        if run is self._current and run.ending is None:  # ended without saying how
            self._finish(run, "cancelled", f"Stopped after {run.done}/{run.total} volumes.")

    def _finish(self, run: _Run, outcome: str, text: str) -> None:
        run.outcome = outcome
        run.finished_at = time.perf_counter()
        self._current = None
        self._last = run
        self._set_busy(False)
        self._status_timer.stop()
        self._set_progress(run.done)
        self._set_status(text)

    def _report_error(self, text: str) -> None:
        self._set_status(text)
        show_error(text)

    def _on_cancel(self, *_: Any) -> None:
        run = self._current
        if run is None:
            return
        run.cancel()
        if run.worker is not None:
            run.worker.quit()
        if run.pool is not None and run.pool is self._pool:
            # The engine stops (kills) the cancelled run's workers from its own thread;
            # the next run gets a fresh pool, warmed now, so the two never share one.
            self._pool = None
            if not (self._closed or self._closing) and self._mode() == "processes":
                self._ensure_pool(warm=True)
        self._flush()
        self._finish(run, "cancelled", f"Cancelled after {run.done}/{run.total or '?'} volumes.")

    def _on_destroyed(self, *_: Any) -> None:
        self._closed = True
        with contextlib.suppress(Exception):
            self._viewer.layers.events.inserted.disconnect(self._on_layer_inserted)
        for timer in (self._timer, self._status_timer):
            if not _deleted(timer):
                timer.stop()
        run = self._current
        if run is not None:
            run.cancel()
            if run.worker is not None:
                run.worker.quit()
            self._current = None
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.kill()


def _meta(layer: Any) -> dict[str, Any]:
    """Return what this widget recorded about a layer (empty for other layers)."""
    return (getattr(layer, "metadata", None) or {}).get(METADATA_KEY) or {}


def _deleted(obj: QObject) -> bool:
    try:
        obj.objectName()
    except RuntimeError:
        return True
    return False


def _seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
