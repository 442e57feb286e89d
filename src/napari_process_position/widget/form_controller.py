"""The form's half of the controller: the model it owns and the intents that change it.

Qt-free. The view sends intents here (choose a store, a position, a
transform; set the channels, the time points, the workers, ...) and renders
the model (:class:`.form.FormModel`) and the selection (:class:`.selection.Selection`)
back through their signals; the rest of the controller reacts to the same
signals (a live preview, a warm pool). The run the form describes is built
from the model alone (:func:`.form.form_config`), never from the widgets.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterable
from typing import Any

from napari_process_position.batch.config import RunConfig
from napari_process_position.core.errors import ProcessPositionError, TransformError
from napari_process_position.store.layout import PositionInfo, StoreInfo
from napari_process_position.transforms import TransformSpec, get_transform
from napari_process_position.widget.form import FormModel, form_config
from napari_process_position.widget.selection import Selection

__all__ = ["FormController"]


class FormController:
    """The form's model and selection, the transforms it offers, and the intents.

    Parameters
    ----------
    compared
        The compared positions (the comparison's picks), which a run takes when
        the model's ``run_compared`` is set.
    """

    def __init__(self, compared: Callable[[], list[str]] = list) -> None:
        #: The input store and position chosen.
        self.selection = Selection()
        #: Everything else the form has chosen.
        self.model = FormModel()
        self._compared = compared
        self._specs: dict[str, TransformSpec] = {}
        self._functions: dict[str, Callable[..., Any]] = {}

    # -- queries ---------------------------------------------------------------------------
    @property
    def info(self) -> PositionInfo | None:
        """The input position chosen (None before one is)."""
        return self.selection.info

    def transform_choices(self, registry: list[TransformSpec]) -> list[tuple[str, str]]:
        """Return ``(label, name)`` of every transform to offer: ``registry``'s, then added ones."""
        choices = []
        for spec in registry:
            self._specs.setdefault(spec.name, spec)
            choices.append((spec.display_name, spec.name))
        known = {name for _, name in choices}
        choices += [
            (f"{spec.display_name} (custom)", name)
            for name, spec in self._specs.items()
            if name not in known
        ]
        return choices

    def spec(self, name: str) -> TransformSpec:
        """Return the transform of that name (added ones included)."""
        return self._specs.get(name) or get_transform(name)

    def offered(self, name: str | None) -> TransformSpec | None:
        """Return the transform of that name if the form offers it (None otherwise)."""
        return self._specs.get(name or "")

    def added_function(self, name: str) -> Callable[..., Any] | None:
        """Return the function added under ``name`` (None for a transform found by name)."""
        return self._functions.get(name)

    def positions(self) -> list[str] | None:
        """Return the compared positions when the form runs them, else None (every one, saved)."""
        if not self.model.run_compared:
            return None
        return list(self._compared()) or None

    def run_settings(self) -> tuple[RunConfig, str | None]:
        """Return the run the form describes, and why its pyramid levels are not the model's.

        Raises
        ------
        InvalidArgumentError, ConfigError
            A setting is missing or invalid; the message says which.
        """
        store = self.selection.store
        return form_config(
            self.model,
            store=store.path if store is not None else None,
            info=self.selection.info,
            positions=self.positions(),
        )

    def config(self) -> RunConfig:
        """Return the run the form describes (see :meth:`run_settings`)."""
        return self.run_settings()[0]

    # -- intents: the input -------------------------------------------------------------------
    def choose_input(self, path: str | os.PathLike[str] | None) -> StoreInfo | None:
        """Open the store at ``path`` and choose its first position (None: the field is empty).

        Raises
        ------
        ProcessPositionError
            Not a store we can read, or its first position cannot be read.
        """
        if path is None or str(path) in ("", "."):
            self.selection.clear()
            return None
        store = self.selection.choose_store(path)
        if store.position_keys:
            self.choose_position(store.position_keys[0])
        return store

    def choose_position(self, key: str | None) -> PositionInfo | None:
        """Choose position ``key``; the selected channels keep those of the same names.

        Raises
        ------
        ProcessPositionError
            The position cannot be read (then none is chosen).
        """
        before = self.selection.info
        names = before.channel_names if before is not None else []
        previous = [names[c] for c in self.model.channels if c < len(names)]
        info = self.selection.choose_position(key)
        if info is not None and info is not before:
            keep = [i for i, name in enumerate(info.channel_names) if name in previous]
            self.model.channels = tuple(keep or range(len(info.channel_names)))
        return info

    # -- intents: the transform ---------------------------------------------------------------
    def choose_transform(self, name: str | None) -> None:
        """Choose the transform ``name``; its parameters start at their defaults.

        Raises
        ------
        TransformNotFoundError
            No transform of that name.
        """
        if name == self.model.transform:
            return
        params = {}
        if name is not None:
            empty = inspect.Parameter.empty
            params = {p.name: p.default for p in self.spec(name).parameters()}
            params = {key: value for key, value in params.items() if value is not empty}
        events = self.model.events
        # One change: what either signal reaches sees the new transform with its parameters.
        with events.params.paused(), events.transform.paused():
            self.model.params = params
            self.model.transform = name

    def set_params(self, values: dict[str, Any]) -> None:
        """Set the transform's parameters (all of them, by name)."""
        self.model.params = dict(values)

    def add_transform(self, transform: str | Callable[..., Any]) -> str:
        """Offer a transform of one's own, choose it, and return the name it is listed under.

        A function must be found again by its ``module:qualname`` reference (worker
        processes import it so).

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
            self._functions[name] = transform
            spec = get_transform(name)
        self._specs[name] = spec
        self.choose_transform(name)
        return name

    # -- intents: what to process and where ---------------------------------------------------
    def set_channels(self, channels: Iterable[int]) -> None:
        """Select these channel indices."""
        self.model.channels = tuple(sorted(int(c) for c in channels))

    def set_times(self, text: str) -> None:
        """Select the time points: ``all`` or ranges such as ``0-3,7`` (read by the run)."""
        self.model.times = str(text)

    def set_output(self, path: str | os.PathLike[str] | None) -> None:
        """Write into the store at ``path`` (None or empty: a preview, kept in memory)."""
        self.model.output = str(path) if path is not None and str(path) not in ("", ".") else None

    def set_overwrite(self, overwrite: bool) -> None:
        """Replace an existing output (or refuse to)."""
        self.model.overwrite = bool(overwrite)

    def set_pyramid_levels(self, text: str) -> None:
        """Write these resolution levels: ``1``, a number, or ``auto``."""
        self.model.pyramid_levels = str(text)

    def set_run_compared(self, compared: bool) -> None:
        """Run and save the compared positions (True) or the form's position (False)."""
        self.model.run_compared = bool(compared)

    # -- intents: where tasks run -------------------------------------------------------------
    def set_workers(self, workers: int) -> None:
        """Use ``workers`` parallel workers."""
        self.model.num_workers = int(workers)

    def set_auto_workers(self, auto: bool) -> None:
        """Measure a task first and fit the workers to the CPUs and the memory (or not)."""
        self.model.auto_workers = bool(auto)

    def set_threads(self, threads: bool) -> None:
        """Run tasks in threads (True) or in processes (False)."""
        self.model.use_threads = bool(threads)
