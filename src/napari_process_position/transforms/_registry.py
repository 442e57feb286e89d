"""Find transforms: built-ins, entry points, ``module:function`` strings and ``.py`` files.

A transform is a plain function ``f(czyx, **params) -> array`` with typed
parameters and defaults. The optional :func:`transform` decorator adds a
display name, says how the transform changes shape, scale, dtype and
channel names, and how much context (``margin``) a region of the output
needs; nothing requires it.
"""

from __future__ import annotations

import inspect
import logging
import math
import numbers
import os
import re
import sys
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from napari_process_position.core.errors import TransformNotFoundError, TransformParameterError
from napari_process_position.core.transform_ref import resolve_transform

__all__ = [
    "ENTRY_POINT_GROUP",
    "INJECTED_PARAMETERS",
    "Margin",
    "TransformMeta",
    "TransformSpec",
    "entry_points",
    "get_transform",
    "list_transforms",
    "transform",
]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "napari_process_position.transforms"
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
    fixed = _normalise_margin(margin)
    return lambda **_: fixed


def _normalise_margin(value: Any) -> Margin:
    if isinstance(value, int | np.integer) or value is None:
        value = (value, value, value)
    items = tuple(value)
    if len(items) != 3:
        raise ValueError(f"a margin is three values (z, y, x), not {value!r}")
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
            raise ValueError(
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
            ),
        )
        return f

    return wrap(func) if func is not None else wrap


# -- parameter checking ----------------------------------------------------------------------


def _split_annotated(hint: Any) -> tuple[Any, dict[str, Any]]:
    options: dict[str, Any] = {}
    if typing.get_origin(hint) is typing.Annotated:
        hint, *extras = typing.get_args(hint)
        for extra in extras:
            if isinstance(extra, dict):
                options.update(extra)
    return hint, options


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _coerce(value: Any, hint: Any) -> tuple[bool, Any]:
    """``(ok, value)``: whether ``value`` fits ``hint`` and its canonical form."""
    if hint is inspect.Parameter.empty or hint is Any or hint is None:
        return True, value
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        choices = typing.get_args(hint)
        for choice in choices:
            if value == choice and type(value) is type(choice):
                return True, choice
        return False, value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None:
            return type(None) in args, value
        for arm in args:
            if arm is type(None):
                continue
            ok, coerced = _coerce(value, _split_annotated(arm)[0])
            if ok:
                return True, coerced
        return False, value
    if hint is bool:
        if isinstance(value, bool | np.bool_):
            return True, bool(value)
        return False, value
    if hint is int:
        if isinstance(value, bool | np.bool_):
            return False, value
        if isinstance(value, numbers.Integral):
            return True, int(value)
        if isinstance(value, float | np.floating) and float(value).is_integer():
            return True, int(value)
        return False, value
    if hint is float:
        if isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_):
            return True, float(value)
        return False, value
    if hint is str:
        return isinstance(value, str), value
    if isinstance(hint, type) and origin is None:
        return isinstance(value, hint), value
    return True, value  # tuples, lists, custom generics: left to the transform


def _check_value(transform_name: str, name: str, value: Any, hint: Any) -> Any:
    base, options = _split_annotated(hint)
    where = f"transform {transform_name!r}: parameter {name!r}"
    ok, value_out = _coerce(value, base)
    if not ok:
        if typing.get_origin(base) is typing.Literal:
            choices = ", ".join(repr(c) for c in typing.get_args(base))
            raise TransformParameterError(f"{where} must be one of {choices}, not {value!r}")
        raise TransformParameterError(
            f"{where} expects {_type_name(base)}, not {value!r} ({type(value).__name__})"
        )
    given = options.get("choices")
    if given is not None and not callable(given):
        allowed = [c[1] if isinstance(c, tuple) and len(c) == 2 else c for c in given]
        if value_out not in allowed:
            raise TransformParameterError(
                f"{where} must be one of {', '.join(map(repr, allowed))}, not {value_out!r}"
            )
    if isinstance(value_out, numbers.Real) and not isinstance(value_out, bool):
        if isinstance(value_out, float) and not math.isfinite(value_out):
            raise TransformParameterError(f"{where} must be a finite number, not {value_out!r}")
        low, high = options.get("min"), options.get("max")
        if low is not None and value_out < low:
            raise TransformParameterError(f"{where} must be at least {low}, not {value_out!r}")
        if high is not None and value_out > high:
            raise TransformParameterError(f"{where} must be at most {high}, not {value_out!r}")
    return value_out


# -- specs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TransformSpec:
    """A transform found by the registry.

    Attributes
    ----------
    name
        What users type (``gaussian_blur``, ``mypkg.mod:func``).
    ref
        What travels to a worker: ``"module:function"`` or ``"/abs/file.py:function"``.
    func
        The function itself.
    source
        ``"built-in"``, ``"entry point (package)"``, ``"module"`` or ``"file"``.
    """

    name: str
    ref: str
    func: Callable[..., Any] = field(compare=False)
    source: str = "module"

    @property
    def meta(self) -> TransformMeta:
        """The decorator's metadata (empty when the function is undecorated)."""
        return getattr(self.func, _META_ATTR, None) or TransformMeta()

    @property
    def display_name(self) -> str:
        """Name for menus and layer names."""
        return self.meta.display_name or self.name

    @property
    def summary(self) -> str:
        """First line of the docstring, without reST literal quotes."""
        doc = (inspect.getdoc(self.func) or "").strip()
        return doc.splitlines()[0].replace("``", "") if doc else ""

    def parameters(self) -> list[inspect.Parameter]:
        """Return the user-set parameters: all but the data argument and injected ones."""
        params = list(inspect.signature(self.func).parameters.values())[1:]
        return [
            p
            for p in params
            if p.name not in INJECTED_PARAMETERS
            and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        ]

    def type_hints(self) -> dict[str, Any]:
        """Return the resolved type hints of the parameters (``Annotated`` kept)."""
        try:
            return typing.get_type_hints(self.func, include_extras=True)
        except Exception:
            return {
                p.name: p.annotation
                for p in self.parameters()
                if p.annotation is not inspect.Parameter.empty
            }

    def defaults(self) -> dict[str, Any]:
        """Defaults of the parameters that have one."""
        empty = inspect.Parameter.empty
        return {p.name: p.default for p in self.parameters() if p.default is not empty}

    def parameter_help(self) -> dict[str, str]:
        """One line of help per parameter, from a numpydoc ``Parameters`` section."""
        doc = inspect.getdoc(self.func) or ""
        section = r"^Parameters\n-+\n(.*?)(?:\n\n[A-Z][A-Za-z ]*\n-+\n|\Z)"
        match = re.search(section, doc, re.S | re.M)
        if not match:
            return {}
        out: dict[str, str] = {}
        current: list[str] = []
        for line in match.group(1).splitlines():
            if line and not line[0].isspace():
                current = [n.strip() for n in line.split(":")[0].split(",")]
                for n in current:
                    out.setdefault(n, "")
            elif line.strip() and current:
                for n in current:
                    out[n] = (out[n] + " " + line.strip()).strip()
        known = {p.name for p in self.parameters()}
        return {k: v for k, v in out.items() if k in known}

    def check_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """Complete ``params`` with defaults and check them against the annotations.

        Values are checked against their type (``int``, ``float``, ``bool``,
        ``str``, ``Literal`` choices, optional ``None``) and against the
        ``min``/``max``/``choices`` of an ``Annotated`` options dict; ints are
        accepted for floats and converted.

        Raises
        ------
        TransformParameterError
            For an unknown, missing, mistyped or out-of-range parameter; the
            message names it and what would be accepted.
        """
        known = {p.name: p for p in self.parameters()}
        accepts_any = any(
            p.kind == inspect.Parameter.VAR_KEYWORD
            for p in inspect.signature(self.func).parameters.values()
        )
        unknown = [k for k in params if k not in known]
        if unknown and not accepts_any:
            raise TransformParameterError(
                f"transform {self.name!r} has no parameter {unknown[0]!r}; "
                f"its parameters are: {', '.join(known) or 'none'}"
            )
        merged = {**self.defaults(), **params}
        missing = [k for k in known if k not in merged]
        if missing:
            raise TransformParameterError(
                f"transform {self.name!r} needs a value for {', '.join(missing)}"
            )
        hints = self.type_hints()
        for key in known:
            if key in params:  # defaults are the author's business
                merged[key] = _check_value(
                    self.name, key, merged[key], hints.get(key, known[key].annotation)
                )
        return merged

    def margin(self, params: dict[str, Any] | None = None) -> Margin:
        """Input voxels of context ``(z, y, x)`` a region of the output needs.

        ``None`` in an axis means the whole axis; a transform that declares
        no margin gets ``(None, None, None)``. ``params`` are completed with
        the defaults first.
        """
        func = self.meta.margin
        if func is None:
            return (None, None, None)
        full = {**self.defaults(), **(params or {})}
        return _normalise_margin(func(**full))

    def signature_text(self) -> str:
        """``sigma=1.0, mode='reflect'`` style text of the parameters."""
        parts = []
        for p in self.parameters():
            has_default = p.default is not inspect.Parameter.empty
            parts.append(f"{p.name}={p.default!r}" if has_default else p.name)
        return ", ".join(parts)


# -- discovery -------------------------------------------------------------------------------


def entry_points(**selection: Any) -> Any:
    """``importlib.metadata.entry_points``, imported only when plug-ins are looked up.

    Spawned workers resolve built-ins through this module; they should not pay
    for importlib.metadata (about 40 ms) on every start.
    """
    from importlib.metadata import entry_points as _entry_points

    return _entry_points(**selection)


def _builtins() -> dict[str, TransformSpec]:
    from napari_process_position.transforms import _builtins as module

    specs = {}
    for attr in module.__all__:
        func = getattr(module, attr)
        meta = getattr(func, _META_ATTR, None) or TransformMeta()
        name = meta.name or attr
        specs[name] = TransformSpec(name, f"{func.__module__}:{func.__name__}", func, "built-in")
    return specs


_plugin_cache: dict[tuple[str, ...], dict[str, TransformSpec]] = {}
_warned: set[tuple[str, str]] = set()


def _warn_once(name: str, value: str, message: str, *args: Any) -> None:
    if (name, value) not in _warned:
        _warned.add((name, value))
        log.warning(message, *args)


def _entry_point_specs(refresh: bool = False) -> dict[str, TransformSpec]:
    """Load the transforms other installed packages register; cached per ``sys.path``."""
    key = tuple(sys.path)
    if not refresh and key in _plugin_cache:
        return _plugin_cache[key]
    builtin_names = set(_builtins())
    specs: dict[str, TransformSpec] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in builtin_names:
            _warn_once(
                ep.name,
                ep.value,
                "ignoring transform %r from %s: a built-in has that name",
                ep.name,
                ep.value,
            )
            continue
        if ep.name in specs:
            _warn_once(
                ep.name,
                ep.value,
                "ignoring transform %r from %s: %s registered it first",
                ep.name,
                ep.value,
                specs[ep.name].ref,
            )
            continue
        spec = _load_entry_point(ep)
        if spec is not None:
            specs[ep.name] = spec
    _plugin_cache.clear()
    _plugin_cache[key] = specs
    return specs


def _load_entry_point(ep: Any) -> TransformSpec | None:
    """Import one plug-in transform; None (and a warning) when it is broken."""
    try:
        func = ep.load()
    except Exception as exc:  # a broken plug-in must not break the others
        _warn_once(
            ep.name,
            ep.value,
            "cannot load transform %r from %s: %s: %s",
            ep.name,
            ep.value,
            type(exc).__name__,
            exc,
        )
        return None
    if not callable(func):
        _warn_once(
            ep.name, ep.value, "ignoring transform %r: %s is not callable", ep.name, ep.value
        )
        return None
    dist = getattr(ep, "dist", None)
    package = getattr(dist, "name", None) or ep.module.split(".")[0]
    ref = f"{ep.module}:{ep.attr}" if ep.attr else ep.value
    return TransformSpec(ep.name, ref, func, f"entry point ({package})")


def _entry_point_named(name: str) -> TransformSpec | None:
    """Load the plug-in transform called ``name``, importing no other plug-in."""
    cached = _plugin_cache.get(tuple(sys.path))
    if cached is not None:
        return cached.get(name)
    for ep in entry_points(group=ENTRY_POINT_GROUP, name=name):
        spec = _load_entry_point(ep)
        if spec is not None:
            return spec
    return None


def list_transforms(*, refresh: bool = False) -> list[TransformSpec]:
    """Every registered transform: built-ins first, then entry points sorted by name.

    Entry points are read once per ``sys.path``; ``refresh=True`` reads them
    again (after installing a package into the running interpreter).
    """
    plugins = _entry_point_specs(refresh)
    return list(_builtins().values()) + sorted(plugins.values(), key=lambda s: s.name)


def _looks_like_file(target: str) -> bool:
    return target.endswith(".py") or "/" in target or os.sep in target


def get_transform(name: str | Callable[..., Any]) -> TransformSpec:
    """Find a transform by registry name, ``module:function`` or ``path/to/file.py:function``.

    A ``.py`` file is imported under a private module name, and its spec's
    ``ref`` carries the absolute path, so worker processes load it too.

    Raises
    ------
    TransformNotFoundError
        With the known names, or with the import error.
    """
    if callable(name):
        func = name
        module = getattr(func, "__module__", "") or ""
        qual = getattr(func, "__qualname__", getattr(func, "__name__", "transform"))
        return TransformSpec(qual, f"{module}:{qual}", func, "module")
    if not isinstance(name, str) or not name.strip():
        raise TransformNotFoundError(f"a transform name must be a non-empty string, not {name!r}")
    name = name.strip()
    # A reference imports its own module only; a name imports the built-ins and at most
    # the one plug-in registered under it (loading a config imports nothing else).
    if ":" not in name:
        builtins = _builtins()
        if name in builtins:
            return builtins[name]
        plugin = _entry_point_named(name)
        if plugin is not None:
            return plugin
    else:
        target, _, attr = name.rpartition(":")
        is_file = _looks_like_file(target)
        ref = name
        if is_file:
            path = os.path.abspath(os.path.expanduser(target))
            if not os.path.isfile(path):
                raise TransformNotFoundError(f"transform file {target!r} does not exist")
            ref = f"{path}:{attr}"
        try:
            func = resolve_transform(ref)
        except Exception as exc:  # the user's module may raise anything on import
            raise TransformNotFoundError(
                f"cannot load transform {name!r}: {type(exc).__name__}: {exc}"
            ) from exc
        return TransformSpec(name, ref, func, "file" if is_file else "module")
    plugin_names = {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}
    known = ", ".join(sorted(set(builtins) | plugin_names))
    raise TransformNotFoundError(
        f"unknown transform {name!r}; known transforms: {known} "
        "(or give 'module:function' or 'file.py:function')"
    )
