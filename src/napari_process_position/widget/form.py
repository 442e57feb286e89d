"""The form's settings as a :class:`RunConfig`, and what the form's pyramid levels become.

Qt-free: :func:`form_config` takes the form's values, not its widgets, so
tests and the view share one way from what the user typed to a run.
"""

from __future__ import annotations

from typing import Any

from napari_process_position.batch.config import RunConfig
from napari_process_position.batch.plan import output_axes
from napari_process_position.core.errors import InvalidArgumentError
from napari_process_position.core.ranges import parse_ranges
from napari_process_position.store.layout import PositionInfo

__all__ = ["form_config", "pyramid_choice"]


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
    *,
    store: str | None,
    info: PositionInfo | None,
    key: str | None,
    channels: list[int],
    times_text: str,
    output: str | None,
    pyramid_text: str,
    settings: dict[str, Any],
    positions: list[str] | None = None,
) -> tuple[RunConfig, str | None]:
    """Return the run of the form's values, and a note when its pyramid levels are not used.

    ``settings`` holds the rest, as :class:`RunConfig` takes them (transform,
    params, workers, ...). ``positions`` (the compared ones) replaces ``key``
    as the positions run.

    Raises
    ------
    InvalidArgumentError
        A setting is missing or invalid; the message says which.
    """
    if store is None or info is None:
        raise InvalidArgumentError("choose an OME-Zarr plate or position first")
    if key is None:
        raise InvalidArgumentError("choose a position")
    if not channels:
        raise InvalidArgumentError("select at least one channel")
    times = parse_ranges(times_text, "time point", info.shape[0])
    n_times = len(times) if times is not None else info.shape[0]
    axes = output_axes(info.array_axes, n_times, len(channels))
    levels, note = pyramid_choice(pyramid_text, output, axes)
    config = RunConfig.model_validate(
        {
            **settings,
            "input": store,
            "output": output,
            "positions": list(positions) if positions else [key],
            "channels": channels,
            "times": times,
            "pyramid_levels": levels,
        }
    )
    return config, note
