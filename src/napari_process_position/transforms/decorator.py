"""The ``@transform`` decorator: what a transform declares about its output and its context."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from napari_process_position.core.errors import InvalidArgumentError

__all__ = [
    "INJECTED_PARAMETERS",
    "Margin",
    "TransformMeta",
    "normalise_margin",
    "transform",
    "transform_meta",
]

#: Parameters the engine fills in itself; never shown to users.
INJECTED_PARAMETERS = frozenset({"input_time_index"})


_META_ATTR = "__process_position__"


#: Voxels of context per axis (z, y, x); ``None`` means the whole axis.
Margin = tuple[int | None, int | None, int | None]


F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class TransformMeta:
    """What the :func:`transform` decorator records on a function."""

    name: str | None = None
    display_name: str | None = None
    output_zyx_shape: Callable[..., tuple[int, int, int]] | None = None
    output_scale: Callable[..., tuple[float, float, float]] | None = None
    output_dtype: Callable[..., Any] | None = None
    output_channel_names: Callable[..., Sequence[str]] | None = None
    same_shape: bool = False
    margin: Callable[..., Margin] | None = None
    check: Callable[..., None] | None = None


def _as_dtype_func(output_dtype: Any) -> Callable[..., Any] | None:
    if output_dtype is None:
        return None
    if isinstance(output_dtype, type) and issubclass(output_dtype, np.generic):
        fixed = np.dtype(output_dtype)
    elif callable(output_dtype):
        return output_dtype  # type: ignore[no-any-return]
    else:
        fixed = np.dtype(output_dtype)
    return lambda dtype, **_: fixed


def _as_margin_func(margin: Any) -> Callable[..., Margin] | None:
    if margin is None or callable(margin):
        return margin  # type: ignore[no-any-return]
    fixed = normalise_margin(margin)
    return lambda **_: fixed


def normalise_margin(value: Any) -> Margin:
    """Return a margin as ``(z, y, x)``: one int for all axes, or three ints or None.

    Raises
    ------
    InvalidArgumentError
        Not one or three non-negative integers (or None).
    """
    if isinstance(value, int | np.integer) or value is None:
        value = (value, value, value)
    items = tuple(value)
    if len(items) != 3:
        raise InvalidArgumentError(f"a margin is three values (z, y, x), not {value!r}")
    out: list[int | None] = []
    for item in items:
        if item is None:
            out.append(None)
        elif (
            isinstance(item, int | float | np.integer | np.floating)
            and not isinstance(item, bool)
            and item >= 0
        ):
            out.append(math.ceil(float(item)))
        else:
            raise InvalidArgumentError(
                f"a margin holds voxel counts >= 0 or None (whole axis), not {value!r}"
            )
    return (out[0], out[1], out[2])


def transform(
    func: F | None = None,
    *,
    name: str | None = None,
    display_name: str | None = None,
    output_zyx_shape: Callable[..., tuple[int, int, int]] | None = None,
    output_scale: Callable[..., tuple[float, float, float]] | None = None,
    output_dtype: Callable[..., Any] | str | type | np.dtype[Any] | None = None,
    output_channel_names: Callable[..., Sequence[str]] | None = None,
    same_shape: bool = False,
    margin: Callable[..., Margin] | Margin | int | None = None,
    check: Callable[..., None] | None = None,
) -> Any:
    """Describe a transform; optional, the function stays a plain function.

    Every callable below receives the transform's parameters as keyword
    arguments (all of them, defaults filled in), so give it ``**_`` for the
    ones it ignores.

    Parameters
    ----------
    func
        The function (when used as ``@transform`` without parentheses).
    name
        Registry name (default: the function's name).
    display_name
        Name shown in menus and layer names.
    output_zyx_shape
        ``f(zyx_shape, **params) -> zyx_shape`` when the transform changes shape.
    output_scale
        ``f(zyx_scale, **params) -> zyx_scale`` when it changes voxel size.
    output_dtype
        A dtype, or ``f(input_dtype, **params) -> dtype``; default: the input's.
    output_channel_names
        ``f(channel_names, **params) -> names`` when it changes channels.
    same_shape
        Declares that the output has the input's shape (and, unless
        ``output_dtype`` says otherwise, dtype), so no probe run is needed.
    margin
        Context a region of the output needs, in input voxels ``(z, y, x)``:
        a tuple, one int for all axes, or ``f(**params) -> (z, y, x)``.
        ``None`` in an axis means the whole axis. A region preview reads the
        region grown by the margin, runs the transform, and crops the margin
        off again; with an exact margin that equals the same region of a full
        run. Leave it out when any output voxel may depend on every input
        voxel (the default: region previews then process whole volumes).
    check
        ``f(**params)`` that raises :class:`TransformParameterError` (or
        ``ValueError``) for parameters that are valid one by one but not
        together (``low < high``). A run calls it once, before it creates its
        output, so such a mistake never leaves an empty output behind.

    Returns
    -------
    callable
        ``func`` itself, with what it declares attached (or, without ``func``,
        the decorator that does that).

    Raises
    ------
    InvalidArgumentError
        A fixed ``margin`` that is not one or three voxel counts (or None).

    Examples
    --------
    >>> @transform(display_name="Invert", same_shape=True, margin=0)
    ... def invert(czyx, maximum: float = 1.0):
    ...     return maximum - czyx
    """

    def wrap(f: F) -> F:
        setattr(
            f,
            _META_ATTR,
            TransformMeta(
                name=name,
                display_name=display_name,
                output_zyx_shape=output_zyx_shape,
                output_scale=output_scale,
                output_dtype=_as_dtype_func(output_dtype),
                output_channel_names=output_channel_names,
                same_shape=same_shape,
                margin=_as_margin_func(margin),
                check=check,
            ),
        )
        return f

    return wrap(func) if func is not None else wrap


def transform_meta(func: Callable[..., Any]) -> TransformMeta:
    """Return what ``@transform`` declared about ``func`` (empty when it is undecorated)."""
    return getattr(func, _META_ATTR, None) or TransformMeta()
