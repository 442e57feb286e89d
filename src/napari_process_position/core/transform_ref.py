"""Transform references: what travels to a worker, and how a worker finds the function.

A transform travels as a picklable callable, a ``"module:function"`` or
``"/path/to/file.py:function"`` string, or a :class:`PickledTransform`.
Standard library only: spawned workers import this.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import pickle
import sys
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from napari_process_position.core.errors import (
    InvalidArgumentError,
    TransformError,
    TransformNotFoundError,
)

__all__ = [
    "PickledTransform",
    "TransformRef",
    "check_picklable",
    "check_reference",
    "portable",
    "resolve_transform",
    "transform_name",
]


class PickledTransform:
    """A callable transform, pickled once in the caller and unpickled in the worker's task.

    Sent this way, a transform that a worker process cannot import (its
    module exists only in the caller) fails inside the task with a message
    naming it, instead of breaking the pool's queue, which would look like a
    crashed worker.
    """

    __slots__ = ("name", "payload")

    def __init__(self, name: str, payload: bytes) -> None:
        self.name = name
        self.payload = payload

    def __reduce__(self) -> tuple[Any, ...]:
        return (PickledTransform, (self.name, self.payload))

    def __repr__(self) -> str:
        return f"PickledTransform({self.name!r})"


#: A transform as it travels to a worker: a picklable callable, a
#: ``"module:function"`` / ``"/path/to/file.py:function"`` string, or a
#: :class:`PickledTransform`.
TransformRef = Callable[..., Any] | str | PickledTransform


def _load_file_module(path: str) -> Any:
    """Import a transform file; again when it changed since (users edit and re-run)."""
    path = os.path.abspath(path)
    mtime = os.stat(path).st_mtime_ns
    digest = hashlib.sha1(path.encode()).hexdigest()[:12]
    name = f"_npp_transform_{digest}"
    loaded = sys.modules.get(name)
    if loaded is not None and getattr(loaded, "__npp_mtime__", None) == mtime:
        return loaded
    folder = os.path.dirname(path)
    if folder not in sys.path:
        sys.path.append(folder)  # so the file can import modules next to it
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise TransformNotFoundError(f"cannot load transforms from {path}")
    module = importlib.util.module_from_spec(spec)
    module.__npp_mtime__ = mtime  # type: ignore[attr-defined]
    module.__npp_path__ = path  # type: ignore[attr-defined]
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _split_ref(ref: str) -> tuple[str, str]:
    target, sep, func_name = ref.rpartition(":")
    if not sep or not target or not func_name:
        raise InvalidArgumentError(
            f"a transform reference looks like 'module:function' or 'file.py:function', not {ref!r}"
        )
    return target, func_name


def check_reference(transform: TransformRef) -> None:
    """Refuse, at once, a string that is not a ``module:function`` or ``file.py:function``.

    A bare name such as ``"gaussian_blur"`` names a transform of the registry,
    which the command line and the widget look up; the engine takes callables
    and references only, and would otherwise fail in every task.
    """
    if isinstance(transform, str) and ":" not in transform.strip(":"):
        raise InvalidArgumentError(
            f"transform {transform!r} is a name, not a reference: give a callable or "
            "'module:function' / 'file.py:function' (a built-in or installed transform: "
            f"napari_process_position.transforms.get_transform({transform!r}).func)"
        )


def _is_file_ref(target: str) -> bool:
    return target.endswith(".py") or os.sep in target


@lru_cache(maxsize=64)
def _resolve_module_ref(ref: str) -> Callable[..., Any]:
    target, func_name = _split_ref(ref)
    return _attribute(importlib.import_module(target), func_name, ref)


def _attribute(module: Any, func_name: str, ref: str) -> Callable[..., Any]:
    func = module
    for part in func_name.split("."):
        func = getattr(func, part)
    if not callable(func):
        raise InvalidArgumentError(f"{ref} is not callable")
    return func  # type: ignore[no-any-return]


@lru_cache(maxsize=64)
def _unpickle(payload: bytes) -> Callable[..., Any]:
    return pickle.loads(payload)  # type: ignore[no-any-return]


def resolve_transform(ref: TransformRef) -> Callable[..., Any]:
    """Return the callable a reference names (a ``.py`` file is re-read when it changes)."""
    if isinstance(ref, PickledTransform):
        return _unpickle(ref.payload)
    if callable(ref):
        return ref
    target, func_name = _split_ref(ref)
    if _is_file_ref(target):
        return _attribute(_load_file_module(target), func_name, ref)
    return _resolve_module_ref(ref)


def transform_name(transform: TransformRef) -> str:
    """Return a readable name for a transform reference."""
    if isinstance(transform, str):
        return transform
    if isinstance(transform, PickledTransform):
        return transform.name
    return (
        getattr(transform, "__qualname__", None)
        or getattr(transform, "__name__", None)
        or repr(transform)
    )


def portable(transform: TransformRef) -> TransformRef:
    """Return what to send to worker processes: strings as they are, callables pickled once.

    The worker unpickles the callable inside the task, so a transform it
    cannot import is reported as that, not as a crashed worker.
    """
    if isinstance(transform, (str, PickledTransform)):
        return transform
    return PickledTransform(transform_name(transform), pickle.dumps(transform))


def check_picklable(transform: TransformRef, params: dict[str, Any]) -> None:
    """Check that a transform and its parameters can be sent to worker processes.

    Raises
    ------
    TransformError
        The transform is defined in an interactive session, is a lambda or a
        nested function, or it or a parameter does not pickle; the message
        says what to do instead.
    """
    name = transform_name(transform)
    module = getattr(transform, "__module__", None)
    if module == "__main__":
        import __main__

        if not getattr(__main__, "__file__", None):
            raise TransformError(
                f"transform {name!r} is defined in an interactive session, so worker processes "
                "cannot import it; put it in a .py file and pass 'file.py:function', or use threads"
            )
    try:
        pickle.dumps(transform)
    except Exception as exc:
        raise TransformError(
            f"transform {name!r} cannot be sent to worker processes ({exc}); define it at the "
            "top level of an importable module or a .py file ('module:function' or "
            "'file.py:function'), not as a lambda or a nested function, or use threads"
        ) from exc
    try:
        pickle.dumps(params)
    except Exception as exc:
        raise TransformError(
            f"the parameters of transform {name!r} cannot be sent to worker processes: {exc}"
        ) from exc
