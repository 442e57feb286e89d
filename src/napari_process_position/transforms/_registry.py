"""Find transforms: built-ins, entry points, ``module:function`` strings and ``.py`` files.

A transform is a plain function ``f(czyx, **params) -> array`` with typed
parameters and defaults. The optional :func:`transform` decorator adds a
display name and says how the transform changes shape, scale, dtype and
channel names; nothing requires it.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, TypeVar

import numpy as np

from .._errors import TransformNotFoundError
from .._worker import resolve_transform

__all__ = [
    "ENTRY_POINT_GROUP",
    "INJECTED_PARAMETERS",
    "TransformMeta",
    "TransformSpec",
    "get_transform",
    "list_transforms",
    "transform",
]

ENTRY_POINT_GROUP = "napari_process_position.transforms"
#: Parameters the engine fills in itself; never shown to users.
INJECTED_PARAMETERS = frozenset({"input_time_index"})
_META_ATTR = "__process_position__"

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


def transform(
    func: F | None = None,
    *,
    name: str | None = None,
    display_name: str | None = None,
    output_zyx_shape: Callable[..., tuple[int, int, int]] | None = None,
    output_scale: Callable[..., tuple[float, float, float]] | None = None,
    output_dtype: Callable[..., Any] | str | None = None,
    output_channel_names: Callable[..., Sequence[str]] | None = None,
    same_shape: bool = False,
) -> Any:
    """Describe a transform; optional, the function stays a plain function.

    Parameters
    ----------
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
        Declares that the output has the input's shape and dtype, so no
        probe run is needed to learn it.

    Examples
    --------
    >>> @transform(display_name="Invert")
    ... def invert(czyx, maximum: float = 1.0):
    ...     return maximum - czyx
    """

    def wrap(f: F) -> F:
        dtype_func: Callable[..., Any] | None
        if isinstance(output_dtype, str) or (output_dtype is not None and not callable(output_dtype)):
            fixed = np.dtype(output_dtype)
            dtype_func = lambda dtype, **_: fixed  # noqa: E731
        elif isinstance(output_dtype, type) and issubclass(output_dtype, np.generic):
            fixed = np.dtype(output_dtype)
            dtype_func = lambda dtype, **_: fixed  # noqa: E731
        else:
            dtype_func = output_dtype
        setattr(f, _META_ATTR, TransformMeta(
            name=name,
            display_name=display_name,
            output_zyx_shape=output_zyx_shape,
            output_scale=output_scale,
            output_dtype=dtype_func,
            output_channel_names=output_channel_names,
            same_shape=same_shape,
        ))
        return f

    return wrap(func) if func is not None else wrap


@dataclass(frozen=True)
class TransformSpec:
    """A transform found by the registry.

    Attributes
    ----------
    name
        What users type (``gaussian_blur``, ``mypkg.mod:func``).
    ref
        What travels to a worker: ``"module:function"`` or ``"file.py:function"``.
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
        """First line of the docstring."""
        doc = inspect.getdoc(self.func) or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""

    def parameters(self) -> list[inspect.Parameter]:
        """The user-set parameters: all but the data argument and engine-injected ones."""
        params = list(inspect.signature(self.func).parameters.values())[1:]
        return [
            p for p in params
            if p.name not in INJECTED_PARAMETERS
            and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        ]

    def type_hints(self) -> dict[str, Any]:
        """Resolved type hints of the parameters (``Annotated`` kept)."""
        import typing

        try:
            return typing.get_type_hints(self.func, include_extras=True)
        except Exception:
            return {p.name: p.annotation for p in self.parameters()
                    if p.annotation is not inspect.Parameter.empty}

    def defaults(self) -> dict[str, Any]:
        """Defaults of the parameters that have one."""
        return {p.name: p.default for p in self.parameters() if p.default is not inspect.Parameter.empty}

    def check_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """Complete ``params`` with defaults; raise on unknown or missing ones."""
        known = {p.name: p for p in self.parameters()}
        accepts_any = any(p.kind == inspect.Parameter.VAR_KEYWORD
                          for p in inspect.signature(self.func).parameters.values())
        unknown = [k for k in params if k not in known]
        if unknown and not accepts_any:
            raise TypeError(
                f"transform {self.name!r} has no parameter {unknown[0]!r}; "
                f"its parameters are: {', '.join(known) or 'none'}"
            )
        merged = {**self.defaults(), **params}
        missing = [k for k in known if k not in merged]
        if missing:
            raise TypeError(f"transform {self.name!r} needs a value for {', '.join(missing)}")
        return merged

    def signature_text(self) -> str:
        """``sigma=1.0, mode='reflect'`` style text of the parameters."""
        parts = []
        for p in self.parameters():
            parts.append(p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.default!r}")
        return ", ".join(parts)


def _builtins() -> dict[str, TransformSpec]:
    from . import _builtins as module

    specs = {}
    for attr in module.__all__:
        func = getattr(module, attr)
        meta = getattr(func, _META_ATTR, None) or TransformMeta()
        name = meta.name or attr
        specs[name] = TransformSpec(name, f"{module.__name__}:{attr}", func, "built-in")
    return specs


def _entry_point_specs() -> dict[str, TransformSpec]:
    specs = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            func = ep.load()
        except Exception as exc:  # a broken plug-in must not break the others
            import logging

            logging.getLogger(__name__).warning("cannot load transform %r from %s: %s", ep.name, ep.value, exc)
            continue
        dist = getattr(ep, "dist", None)
        package = getattr(dist, "name", None) or ep.value.split(":")[0]
        specs[ep.name] = TransformSpec(ep.name, ep.value, func, f"entry point ({package})")
    return specs


def list_transforms() -> list[TransformSpec]:
    """Every transform found: built-ins first, then entry points, sorted by name."""
    builtins = _builtins()
    plugins = {k: v for k, v in _entry_point_specs().items() if k not in builtins}
    return list(builtins.values()) + sorted(plugins.values(), key=lambda s: s.name)


def get_transform(name: str | Callable[..., Any]) -> TransformSpec:
    """Find a transform by registry name, ``module:function`` or ``path/to/file.py:function``.

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
    builtins = _builtins()
    if name in builtins:
        return builtins[name]
    plugins = _entry_point_specs()
    if name in plugins:
        return plugins[name]
    if ":" in name:
        target = name.rpartition(":")[0]
        is_file = target.endswith(".py") or os.sep in target
        ref = name
        if is_file:
            path = os.path.abspath(os.path.expanduser(target))
            if not os.path.isfile(path):
                raise TransformNotFoundError(f"transform file {target!r} does not exist")
            ref = f"{path}:{name.rpartition(':')[2]}"
        try:
            func = resolve_transform(ref)
        except (ImportError, AttributeError, TypeError, ValueError, SyntaxError) as exc:
            raise TransformNotFoundError(f"cannot load transform {name!r}: {type(exc).__name__}: {exc}") from exc
        return TransformSpec(name, ref, func, "file" if is_file else "module")
    known = ", ".join(sorted({**builtins, **plugins}))
    raise TransformNotFoundError(
        f"unknown transform {name!r}; known transforms: {known} "
        "(or give 'module:function' or 'file.py:function')"
    )
