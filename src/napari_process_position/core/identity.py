"""What made an output volume, as a digest: the identity that resume checks.

A completion record is trusted only when it names exactly what the current
run would compute into that volume. The run-wide part of that identity is a
digest of:

- the transform: its module and qualified name, and its source (the whole
  file for a ``file.py:function`` transform, so an edited helper counts too);
  a ``functools.partial`` adds its bound arguments;
- the parameters, hashed by value: arrays by dtype, shape and bytes (never
  ``repr``, which numpy abbreviates for large arrays), containers item by
  item;
- the caller's ``resume_token``;
- the input array and the output array's dtype and layout.

The per-volume part (input time and channels, output time and channels) is
kept in the record in clear, so a mismatch can be explained.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import inspect
import math
import os
import pickle
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["IDENTITY_FORMAT", "digest_value", "run_identity", "transform_identity"]

#: Bumped when the identity's composition changes: older records are then not trusted.
IDENTITY_FORMAT = 2


class _Hasher:
    """Feeds a canonical, typed encoding of plain values into a sha256."""

    def __init__(self) -> None:
        self._h = hashlib.sha256()

    def _tag(self, tag: str, payload: bytes = b"") -> None:
        self._h.update(tag.encode())
        self._h.update(len(payload).to_bytes(8, "little"))
        self._h.update(payload)

    def feed(self, value: Any) -> None:
        """Add ``value``: equal values give equal bytes, different values different ones."""
        if value is None:
            self._tag("none")
        elif isinstance(value, (bool, np.bool_)):
            self._tag("bool", b"1" if value else b"0")
        elif isinstance(value, (int, np.integer)):
            self._tag("int", str(int(value)).encode())
        elif isinstance(value, (float, np.floating)):
            number = float(value)
            text = "nan" if math.isnan(number) else number.hex()
            self._tag("float", text.encode())
        elif isinstance(value, (complex, np.complexfloating)):
            self._tag("complex", repr(complex(value)).encode())
        elif isinstance(value, str):
            self._tag("str", value.encode("utf-8", "surrogatepass"))
        elif isinstance(value, (bytes, bytearray, memoryview)):
            self._tag("bytes", bytes(value))
        elif isinstance(value, np.ndarray):
            self._array(value)
        elif isinstance(value, enum.Enum):
            self._tag("enum", f"{type(value).__module__}.{type(value).__qualname__}".encode())
            self.feed(value.value)
        elif isinstance(value, os.PathLike):
            self._tag("path", os.fspath(value).encode("utf-8", "surrogatepass"))
        elif isinstance(value, Mapping):
            items = [(_sort_key(k), k, v) for k, v in value.items()]
            self._tag("map", str(len(items)).encode())
            for _, key, item in sorted(items, key=lambda kv: kv[0]):
                self.feed(key)
                self.feed(item)
        elif isinstance(value, (list, tuple)):
            self._tag("list" if isinstance(value, list) else "tuple", str(len(value)).encode())
            for item in value:
                self.feed(item)
        elif isinstance(value, (set, frozenset)):
            keys = sorted(_sort_key(v) for v in value)
            self._tag("set", str(len(keys)).encode())
            for key in keys:
                self._tag("item", key.encode())
        elif isinstance(value, slice):
            self._tag("slice")
            for part in (value.start, value.stop, value.step):
                self.feed(part)
        elif hasattr(value, "__array__") and not callable(value):
            self._array(np.asarray(value))
        elif callable(value):
            self._tag("callable")
            self.feed(transform_identity(value))
        else:
            # Anything else by its pickle (its state), else by its type and repr.
            kind = f"{type(value).__module__}.{type(value).__qualname__}"
            try:
                payload = pickle.dumps(value, protocol=4)
            except Exception:
                payload = repr(value).encode()
            self._tag("object:" + kind, payload)

    def _array(self, array: np.ndarray) -> None:
        if array.dtype.hasobject:
            self._tag("object-array", repr(array.shape).encode())
            for item in array.ravel():
                self.feed(item)
            return
        self._tag("array", f"{array.dtype.str}{array.shape}".encode())
        self._h.update(np.ascontiguousarray(array).tobytes())

    def hexdigest(self) -> str:
        return self._h.hexdigest()


def _sort_key(value: Any) -> str:
    hasher = _Hasher()
    hasher.feed(value)
    return hasher.hexdigest()


def digest_value(value: Any) -> str:
    """Return a sha256 hex digest of a (nested) value, by value.

    Examples
    --------
    >>> a = np.zeros(10_000); b = a.copy(); b[5_000] = 1
    >>> digest_value({"flat": a}) == digest_value({"flat": b})
    False
    >>> digest_value({"x": 1, "y": [2.0]}) == digest_value({"y": [2.0], "x": 1})
    True
    """
    hasher = _Hasher()
    hasher.feed(value)
    return hasher.hexdigest()


def _file_digest(path: str) -> str | None:
    try:
        with open(path, "rb") as fh:
            return hashlib.sha256(fh.read()).hexdigest()
    except OSError:
        return None


def _source_digest(target: Any) -> str | None:
    try:
        return hashlib.sha256(inspect.getsource(target).encode()).hexdigest()
    except (OSError, TypeError):
        return None


@functools.lru_cache(maxsize=256)
def _function_source_digest(func: Any) -> str | None:
    """:func:`_source_digest` of a function, once per function object.

    A batch asks for every position (tokenizing the module each time); the
    code a function runs never changes, and a reloaded module makes new
    function objects.
    """
    return _source_digest(func)


def transform_identity(func: Any) -> dict[str, Any]:
    """Describe a transform by what determines its results.

    Parameters
    ----------
    func
        A callable, a ``"module:function"`` / ``"file.py:function"``
        reference or a pickled transform (resolved here, so every form of one
        function agrees).

    Returns
    -------
    dict
        ``name`` (``module:qualname``, or ``file:<path>:qualname``), ``source``
        (a digest of the function's source, or of the whole file for a
        transform loaded from a ``.py`` file; None when no source exists) and,
        for a ``functools.partial``, ``bound`` (a digest of its arguments).
    """
    from napari_process_position.core.transform_ref import PickledTransform, resolve_transform

    if isinstance(func, (str, PickledTransform)):
        func = resolve_transform(func)
    bound = None
    if isinstance(func, functools.partial):
        bound = digest_value([list(func.args), dict(func.keywords)])
        inner = transform_identity(func.func)
        return {**inner, "bound": digest_value([inner.get("bound"), bound])}
    target = inspect.unwrap(func) if inspect.isfunction(func) else func
    module_name = getattr(target, "__module__", None) or ""
    qualname = getattr(target, "__qualname__", None) or type(target).__qualname__
    module = sys.modules.get(module_name)
    file_path = getattr(module, "__npp_path__", None)
    if file_path is not None:  # loaded from a .py file by the registry
        return {
            "name": f"file:{file_path}:{qualname}",
            "source": _file_digest(file_path),
        }
    if inspect.isfunction(target):
        source = _function_source_digest(target)
    else:
        source = _source_digest(target)
    identity: dict[str, Any] = {"name": f"{module_name}:{qualname}", "source": source}
    if not (inspect.isfunction(target) or inspect.isbuiltin(target) or inspect.isclass(target)):
        # A callable object: its state matters (a configured instance).
        try:
            identity["bound"] = hashlib.sha256(pickle.dumps(target, protocol=4)).hexdigest()
        except Exception:
            identity["bound"] = None
    return identity


def run_identity(
    *,
    transform: Any,
    params: Mapping[str, Any],
    resume_token: str | None,
    input_array: str,
    output: Mapping[str, Any],
) -> str:
    """Return the digest of everything a run's volumes share: see the module docstring.

    Parameters
    ----------
    transform, params
        What is applied.
    resume_token
        The caller's own fingerprint of its settings (iohub's ``resume_token``).
    input_array
        Path of the input array (resolved to its real path).
    output
        The output array's dtype and layout (shape, chunks, shards, format,
        fill value).
    """
    return digest_value(
        {
            "format": IDENTITY_FORMAT,
            "transform": transform_identity(transform),
            "params": digest_value(dict(params)),
            "resume_token": resume_token or "",
            "input": os.path.realpath(input_array),
            "output": dict(output),
        }
    )
