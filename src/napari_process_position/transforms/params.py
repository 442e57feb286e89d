"""Transform parameters: the one way a value becomes what the transform's annotation asks for.

A value from a config file, the widget or the command line goes through
:func:`coerce`: pydantic's ``TypeAdapter`` of the annotation converts and
checks it (strictly for Python values; command-line text is parsed first),
then the ``min``/``max``/``choices`` of an ``Annotated`` options dict apply.
pydantic is imported on first use: spawned workers import this package to
find a transform and have no use for it.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import numbers
import typing
from functools import lru_cache
from typing import Any

import numpy as np

from napari_process_position.core.errors import InvalidArgumentError, TransformParameterError

__all__ = ["coerce", "parse_text", "split_annotated", "type_name"]


def split_annotated(hint: Any) -> tuple[Any, dict[str, Any]]:
    """Return ``(type, options)`` of an ``Annotated[type, {...}]`` hint (options may be empty)."""
    options: dict[str, Any] = {}
    if typing.get_origin(hint) is typing.Annotated:
        hint, *extras = typing.get_args(hint)
        for extra in extras:
            if isinstance(extra, dict):
                options.update(extra)
    return hint, options


def type_name(hint: Any) -> str:
    """``float``, ``Literal['a', 'b']``, ``int | None``: a hint as a user reads it."""
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _untyped(hint: Any) -> bool:
    return hint is inspect.Parameter.empty or hint is Any or hint is None


@lru_cache(maxsize=256)
def _adapter(hint: Any, strict: bool) -> Any:
    from pydantic import ConfigDict, TypeAdapter

    return TypeAdapter(hint, config=ConfigDict(strict=strict, arbitrary_types_allowed=True))


def _is_numeric(hint: Any) -> bool:
    arms = (
        typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, type(int | None)) else ()
    )
    return hint in (int, float) or any(a in (int, float) for a in arms)


def _validate(value: Any, hint: Any, strict: bool) -> Any:
    """Return ``TypeAdapter(hint).validate_python(value)``; InvalidArgumentError says why not."""
    from pydantic import ValidationError

    if isinstance(value, bool) and _is_numeric(hint) and bool not in typing.get_args(hint):
        raise InvalidArgumentError("a yes/no value is not a number")
    try:
        adapter = _adapter(hint, strict)
    except (TypeError, ValueError):  # a hint pydantic cannot build: left to the transform
        return value
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        raise InvalidArgumentError(exc.errors(include_url=False)[0]["msg"]) from exc


def coerce(value: Any, hint: Any, *, transform: str = "", name: str = "") -> Any:
    """Return ``value`` as the parameter annotated ``hint`` takes it, or raise saying why not.

    Parameters
    ----------
    value
        A Python value (from a config, the widget or :func:`parse_text`).
    hint
        The parameter's annotation; ``Annotated[type, {"min": .., "max": ..,
        "choices": [..]}]`` adds bounds and choices.
    transform, name
        The transform and the parameter, for the message.

    Returns
    -------
    Any
        The value converted to the annotated type (an int where a float is
        annotated becomes a float).

    Raises
    ------
    TransformParameterError
        The value does not fit the type, is not a finite number, is out of
        bounds or not one of the choices; the message names the parameter
        and what would be accepted.
    """
    base, options = split_annotated(hint)
    where = f"transform {transform!r}: parameter {name!r}"
    if isinstance(value, np.generic):  # numpy scalars count as the Python numbers they hold
        value = value.item()
    if not _untyped(base):
        strict = not (base is int and isinstance(value, float) and float(value).is_integer())
        try:
            value = _validate(value, base, strict)
        except InvalidArgumentError as exc:
            if typing.get_origin(base) is typing.Literal:
                choices = ", ".join(repr(c) for c in typing.get_args(base))
                raise TransformParameterError(
                    f"{where} must be one of {choices}, not {value!r}"
                ) from exc
            raise TransformParameterError(
                f"{where} expects {type_name(base)}, not {value!r} ({type(value).__name__}): {exc}"
            ) from exc
    given = options.get("choices")
    if given is not None and not callable(given):
        allowed = [c[1] if isinstance(c, tuple) and len(c) == 2 else c for c in given]
        if value not in allowed:
            raise TransformParameterError(
                f"{where} must be one of {', '.join(map(repr, allowed))}, not {value!r}"
            )
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            raise TransformParameterError(f"{where} must be a finite number, not {value!r}")
        low, high = options.get("min"), options.get("max")
        if low is not None and value < low:
            raise TransformParameterError(f"{where} must be at least {low}, not {value!r}")
        if high is not None and value > high:
            raise TransformParameterError(f"{where} must be at most {high}, not {value!r}")
    return value


def parse_text(text: str, hint: Any, *, transform: str = "", name: str = "") -> Any:
    """Turn command-line text (``-p KEY=TEXT``) into a value for :func:`coerce`.

    The text is read as YAML 1.2, as config files are (``2``, ``1.5``,
    ``1e-3``, ``true``, ``null``, ``[1, 2]``; ``2:30`` and ``yes`` stay text:
    see :func:`..core.yamltext.load_yaml`), a comma-separated list where the
    annotation is a list or tuple (``1,2,3``), and otherwise kept as text, then
    coerced.

    Returns
    -------
    Any
        The coerced value.

    Raises
    ------
    TransformParameterError
        As :func:`coerce`.
    """
    import yaml

    from napari_process_position.core.yamltext import load_yaml

    base, _ = split_annotated(hint)
    try:
        value = load_yaml(text)
    except yaml.YAMLError:
        value = text
    except InvalidArgumentError as exc:
        raise TransformParameterError(
            f"transform {transform!r}: parameter {name!r}: the value {exc}"
        ) from None
    origin = typing.get_origin(base)
    if (origin in (list, tuple) or base in (list, tuple)) and isinstance(value, str):
        value = [s.strip() for s in text.strip().strip("()[]").split(",") if s.strip()]
        if not _untyped(base):
            with contextlib.suppress(InvalidArgumentError):  # coerce says what is wrong
                value = _validate(value, base, strict=False)
    elif value is None and text.strip().lower() not in ("none", "null", "~", ""):
        value = text
    if isinstance(value, (int, float)) and base is str:
        value = text  # a name that looks like a number
    return coerce(value, hint, transform=transform, name=name)
