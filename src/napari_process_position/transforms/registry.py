"""Find transforms: built-ins, entry points, ``module:function`` strings and ``.py`` files.

A transform is a plain function ``f(czyx, **params) -> array`` with typed
parameters and defaults. The optional :func:`transform` decorator adds a
display name, says how the transform changes shape, scale, dtype and
channel names, and how much context (``margin``) a region of the output
needs; nothing requires it.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from napari_process_position.core.errors import TransformNotFoundError
from napari_process_position.core.transform_ref import resolve_transform
from napari_process_position.transforms.decorator import transform_meta
from napari_process_position.transforms.spec import TransformSpec

__all__ = ["ENTRY_POINT_GROUP", "entry_points", "get_transform", "list_transforms"]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "napari_process_position.transforms"


# -- parameter checking ----------------------------------------------------------------------


# -- specs ---------------------------------------------------------------------------------


# -- discovery -------------------------------------------------------------------------------


def entry_points(**selection: Any) -> Any:
    """``importlib.metadata.entry_points``, imported only when plug-ins are looked up.

    Spawned workers resolve built-ins through this module; they should not pay
    for importlib.metadata (about 40 ms) on every start.
    """
    from importlib.metadata import entry_points as _entry_points

    return _entry_points(**selection)


def _builtins() -> dict[str, TransformSpec]:
    from napari_process_position.transforms import builtins as module

    specs = {}
    for attr in module.__all__:
        func = getattr(module, attr)
        meta = transform_meta(func)
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

    Returns
    -------
    list of TransformSpec

    Notes
    -----
    Never raises: a plug-in that fails to load is left out, with a warning
    naming it and the error.
    """
    plugins = _entry_point_specs(refresh)
    return list(_builtins().values()) + sorted(plugins.values(), key=lambda s: s.name)


def _looks_like_file(target: str) -> bool:
    return target.endswith(".py") or "/" in target or os.sep in target


def get_transform(name: str | Callable[..., Any]) -> TransformSpec:
    """Find a transform by registry name, ``module:function`` or ``path/to/file.py:function``.

    A ``.py`` file is imported under a private module name, and its spec's
    ``ref`` carries the absolute path, so worker processes load it too.

    Parameters
    ----------
    name
        A registered name (``gaussian_blur``, or a plug-in's), a reference,
        or a callable (which is described, not looked up).

    Returns
    -------
    TransformSpec

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
