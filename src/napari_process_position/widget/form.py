"""What the form has chosen besides the input (:class:`FormModel`), and the run it describes.

Qt-free, as ndv's evented ``ArrayDisplayModel``: the controller owns the model
and changes it when the view sends an intent (:mod:`.form_controller`); each
field has a signal (``model.events.<field>``) that the view renders and the
controller reacts to. :func:`form_config` builds the :class:`RunConfig` from
the model and the selection, the one way from what the user chose to a run.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from psygnal import SignalGroupDescriptor

from napari_process_position.batch.config import RunConfig
from napari_process_position.batch.plan import output_axes
from napari_process_position.core.budget import available_cpus
from napari_process_position.core.errors import InvalidArgumentError
from napari_process_position.core.ranges import parse_ranges
from napari_process_position.store.layout import PositionInfo

__all__ = ["FormModel", "form_config", "pyramid_choice"]


def _default_workers() -> int:
    return min(2, available_cpus())


@dataclass
class FormModel:
    """The form's choices for a run, as the user made them (texts as typed).

    Every assignment of a changed value emits ``events.<field>`` (psygnal);
    the controller's intents are the only writers.
    """

    events: ClassVar[SignalGroupDescriptor] = SignalGroupDescriptor(
        equality_operators={"params": operator.eq}
    )

    #: The chosen transform's name (None before the view offers one).
    transform: str | None = None
    #: The transform's parameters by name, as the form holds them (checked by the run).
    params: dict[str, Any] = field(default_factory=dict)
    #: The selected channel indices, ascending.
    channels: tuple[int, ...] = ()
    #: The time points: ``all`` or ranges such as ``0-3,7``.
    times: str = "all"
    #: The output store to write (None: a preview, kept in memory).
    output: str | None = None
    overwrite: bool = False
    #: Resolution levels to write: ``1``, a number, or ``auto``.
    pyramid_levels: str = "1"
    num_workers: int = field(default_factory=_default_workers)
    #: Measure a task first and fit the workers to the CPUs and memory.
    auto_workers: bool = False
    #: Threads (True) or processes (False).
    use_threads: bool = True
    #: Run and save the compared positions (else: the form's position, and every one saved).
    run_compared: bool = False


def pyramid_choice(text: str, output: str | None, axes: str) -> tuple[str, str | None]:
    """Return the pyramid levels a run writes (as RunConfig takes them), and why not the form's.

    The form's ``text`` ("1", "3", "auto") is used when the run writes an
    ``output`` whose ``axes`` are t, c, z, y, x; otherwise the run writes none
    (a preview has no store; pyramids are written for 5-axis outputs only, as
    ``run --pyramid-levels`` refuses others) and the second value says so.

    Examples
    --------
    >>> pyramid_choice("3", "out.zarr", "tczyx")
    ('3', None)
    >>> pyramid_choice("auto", "out.zarr", "czyx")[1]
    'pyramid levels not written: this output has axes c/z/y/x (levels need t, c, z, y, x)'
    """
    value = (text or "").strip().lower() or "1"
    if value == "1":
        return value, None
    if output is None:
        return "1", "pyramid levels not written: they need an output store (this is a preview)"
    if axes != "tczyx":
        shown = "/".join(axes)
        return (
            "1",
            f"pyramid levels not written: this output has axes {shown} (levels need t, c, z, y, x)",
        )
    return value, None


def form_config(
    form: FormModel,
    *,
    store: str | None,
    info: PositionInfo | None,
    positions: list[str] | None = None,
) -> tuple[RunConfig, str | None]:
    """Return the run the form describes, and a note when its pyramid levels are not used.

    ``store`` and ``info`` are the chosen input and position; ``positions``
    (the compared ones) replaces the position as the positions run.

    Raises
    ------
    InvalidArgumentError
        A setting is missing or invalid; the message says which.
    """
    if store is None or info is None:
        raise InvalidArgumentError("choose an OME-Zarr plate or position first")
    if form.transform is None:
        raise InvalidArgumentError("choose a transform")
    if not form.channels:
        raise InvalidArgumentError("select at least one channel")
    channels = sorted(form.channels)
    times = parse_ranges(form.times, "time point", info.shape[0])
    n_times = len(times) if times is not None else info.shape[0]
    axes = output_axes(info.array_axes, n_times, len(channels))
    levels, note = pyramid_choice(form.pyramid_levels, form.output, axes)
    config = RunConfig.from_dict(
        {
            "input": store,
            "output": form.output,
            "positions": list(positions) if positions else [info.key],
            "transform": form.transform,
            "params": dict(form.params),
            "channels": channels,
            "times": times,
            "num_workers": "auto" if form.auto_workers else int(form.num_workers),
            "use_threads": bool(form.use_threads),
            "overwrite": bool(form.overwrite),
            "pyramid_levels": levels,
        },
        "the form",
    )
    return config, note
