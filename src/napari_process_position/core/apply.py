"""The one function that calls a transform on a block and checks what it returns.

Runs (in a worker), output probes (sizing an output) and previews all come
through :func:`apply_transform`: they inject the same arguments, refuse the
same results and cast them the same way, so a preview of an integer output
refuses NaN as the run does. :func:`is_empty` is the rule for the volumes a
run skips. numpy and the standard library only: spawned workers import this.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from napari_process_position.core.errors import InvalidArgumentError, TransformError
from napari_process_position.core.tasks import ChannelIndex, channel_label

__all__ = [
    "TRANSFORM_ERROR_MARK",
    "accepts_time_index",
    "apply_transform",
    "cast_to_output",
    "check_result",
    "is_empty",
    "raised_by_transform",
]

#: Attribute set on an exception the transform itself raised (it survives pickling).
TRANSFORM_ERROR_MARK = "npp_transform_error"


def accepts_time_index(func: Callable[..., Any]) -> bool:
    """Tell whether ``func`` takes ``input_time_index`` (the engine then passes the time point)."""
    try:
        return "input_time_index" in inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False


def is_empty(block: np.ndarray) -> bool:
    """Tell whether a ZYX block, or any channel of a CZYX block, is all zeros or all NaN.

    ``np.any`` stops at the first non-zero value, so real data is cleared
    quickly without building a full boolean mask.
    """
    if block.ndim == 3:
        return _volume_empty(block)
    if block.ndim == 4:
        return any(_volume_empty(block[c]) for c in range(block.shape[0]))
    raise InvalidArgumentError(f"expected a ZYX or CZYX block, got {block.ndim} dimensions")


def _volume_empty(zyx: np.ndarray) -> bool:
    if not np.any(zyx):
        return True
    if zyx.dtype.kind != "f" or not np.isnan(zyx.flat[0]):
        return False  # one real value is enough: no full NaN scan
    return bool(np.isnan(zyx).all())


def _bad_output(message: str, time_index: int, channels: Any) -> TransformError:
    """Make a TransformError for a result that cannot be stored; its message is complete."""
    error = TransformError(message, time_index=time_index, channel_index=channels)
    error.complete = True  # type: ignore[attr-defined]
    return error


def _describe_shape(expected: tuple[int, ...]) -> str:
    axes = "ZYX" if len(expected) == 3 else "CZYX"
    return f"{expected} ({axes})"


def check_result(
    out: Any,
    name: str,
    time_index: int,
    channels: ChannelIndex,
    expected: tuple[int, ...] | None = None,
) -> np.ndarray:
    """Return the transform's result as a numeric ZYX/CZYX array, or raise saying why not.

    Parameters
    ----------
    out
        What the transform returned.
    name
        The transform's name, for the message.
    time_index, channels
        The input (t, c) it was given, for the message.
    expected
        The shape the output store expects; a missing or extra leading
        axis of length 1 is accepted.

    Raises
    ------
    TransformError
        ``None``, something that is not an array, an array of a kind that
        OME-Zarr cannot store (complex, object, strings), or the wrong shape.
    """
    where = f"t={time_index}, c={channel_label(channels)}"
    wanted = (
        f"an array of shape {_describe_shape(expected)}"
        if expected is not None
        else "a ZYX or CZYX array"
    )
    if out is None:
        raise _bad_output(
            f"transform {name!r} returned None for {where}; expected {wanted} "
            "(does it forget to return its result?)",
            time_index,
            channels,
        )
    try:
        array = np.asarray(out)
    except Exception as exc:
        raise _bad_output(
            f"transform {name!r} returned {type(out).__name__} for {where}, which is not an "
            f"array ({exc}); expected {wanted}",
            time_index,
            channels,
        ) from exc
    if array.dtype == object or array.dtype.kind not in "biuf":
        hint = "; return np.abs(x) or x.real" if array.dtype.kind == "c" else ""
        raise _bad_output(
            f"transform {name!r} returned {type(out).__name__} of dtype {array.dtype} for "
            f"{where}; expected {wanted} of integers or floats (OME-Zarr stores no other "
            f"kind){hint}",
            time_index,
            channels,
        )
    if expected is not None and array.shape != expected:
        if array.shape == expected[1:] and len(expected) == 4 and expected[0] == 1:
            array = array[np.newaxis]
        elif len(expected) == 3 and array.shape == (1, *expected):
            array = array[0]
        else:
            raise _bad_output(
                f"transform {name!r} returned shape {array.shape} for {where}, but the output "
                f"expects {_describe_shape(expected)}",
                time_index,
                channels,
            )
    elif expected is None and array.ndim not in (3, 4):
        raise _bad_output(
            f"transform {name!r} returned {array.ndim} dimensions (shape {array.shape}) for "
            f"{where}; expected {wanted}",
            time_index,
            channels,
        )
    return array


def cast_to_output(
    array: np.ndarray,
    name: str,
    time_index: int,
    channels: ChannelIndex,
    dtype: Any,
    strict: bool = False,
) -> np.ndarray:
    """Cast a checked result to the output's dtype as numpy (and so zarr and iohub) casts.

    Parameters
    ----------
    array
        A result that passed :func:`check_result`.
    name, time_index, channels
        The transform and the input (t, c), for messages.
    dtype
        The output's dtype (None: keep the result's).
    strict
        Refuse a result that only an unsafe cast fits into the output (float
        into integers).

    Returns
    -------
    numpy.ndarray
        The array in the output's dtype; out-of-range values wrap.

    Raises
    ------
    TransformError
        NaN or infinite values bound for an integer output (a cast would store
        garbage), or with ``strict`` an unsafe cast.
    """
    if dtype is None or array.dtype == np.dtype(dtype):
        return array
    target = np.dtype(dtype)
    where = f"t={time_index}, c={channel_label(channels)}"
    if strict and not np.can_cast(array.dtype, target, "same_kind"):
        raise _bad_output(
            f"transform {name!r} returned {array.dtype} for {where}, but the output stores "
            f"{target}; return {target}, or declare the output dtype with "
            "@transform(output_dtype=...)",
            time_index,
            channels,
        )
    if array.dtype.kind == "f" and target.kind in "biu" and array.size:
        # NaN propagates through min and max, and inf shows in them: two cheap passes.
        lo, hi = float(np.min(array)), float(np.max(array))
        if not (np.isfinite(lo) and np.isfinite(hi)):
            what = "NaN" if np.isnan(lo) or np.isnan(hi) else "infinite values"
            raise _bad_output(
                f"transform {name!r} returned {what} for {where}, but the output stores "
                f"{target}, which cannot hold them; replace them (np.nan_to_num) or write a "
                "float output",
                time_index,
                channels,
            )
    return array.astype(target)


def raised_by_transform(exc: BaseException) -> bool:
    """Tell whether ``exc`` was raised by a transform (see :func:`apply_transform`)."""
    return bool(getattr(exc, TRANSFORM_ERROR_MARK, False))


def apply_transform(
    func: Callable[..., Any],
    block: np.ndarray,
    params: Mapping[str, Any],
    *,
    name: str,
    time_index: int,
    channels: ChannelIndex,
    source: str = "",
    expected_shape: tuple[int, ...] | None = None,
    output_dtype: Any = None,
    strict_dtype: bool = False,
) -> np.ndarray:
    """Call ``func`` on one input block as a run does, and return what the output stores.

    Parameters
    ----------
    func
        The transform, ``func(block, **params)``; it also gets
        ``input_time_index`` when its signature names it.
    block
        The ZYX (int channel group) or CZYX block read from the input.
    params
        The transform's parameters.
    name
        The transform's name, for messages.
    time_index, channels
        The input (t, c) the block comes from.
    source
        The input position, for the note on a transform's exception.
    expected_shape
        The shape the output expects for this block (None: any ZYX or CZYX).
    output_dtype, strict_dtype
        See :func:`cast_to_output`.

    Returns
    -------
    numpy.ndarray
        The result, checked and cast to the output's dtype.

    Raises
    ------
    Exception
        What ``func`` raised, unchanged, with a note (PEP 678) naming the
        transform and the (t, c), and marked (:func:`raised_by_transform`).
    TransformError
        The result cannot be stored (see :func:`check_result`,
        :func:`cast_to_output`).
    """
    kwargs = dict(params)
    if accepts_time_index(func):
        kwargs["input_time_index"] = time_index
    try:
        out = func(block, **kwargs)
    except Exception as exc:
        with contextlib.suppress(Exception):  # an exception type that takes no attributes
            of = f" of {source}" if source else ""
            exc.add_note(
                f"raised by transform {name!r} on t={time_index}, c={channel_label(channels)}{of}"
            )
            setattr(exc, TRANSFORM_ERROR_MARK, True)
        raise
    array = check_result(out, name, time_index, channels, expected_shape)
    return cast_to_output(array, name, time_index, channels, output_dtype, strict_dtype)
