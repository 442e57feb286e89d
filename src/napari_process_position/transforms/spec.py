"""A transform as the registry found it: its name, reference, function, parameters and margin."""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from napari_process_position.core.errors import TransformParameterError
from napari_process_position.transforms.decorator import (
    INJECTED_PARAMETERS,
    Margin,
    TransformMeta,
    normalise_margin,
    transform_meta,
)
from napari_process_position.transforms.params import coerce

__all__ = ["TransformSpec"]


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
        return transform_meta(self.func)

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

        Then the ``check`` the transform declares with ``@transform`` (a check
        of parameters together, ``low < high``) runs on the completed values.

        Raises
        ------
        TransformParameterError
            For an unknown, missing, mistyped or out-of-range parameter, or
            parameters the transform's ``check`` refuses; the message names it
            and what would be accepted.
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
                merged[key] = coerce(
                    merged[key],
                    hints.get(key, known[key].annotation),
                    transform=self.name,
                    name=key,
                )
        check = self.meta.check
        if check is not None:
            try:
                check(**merged)
            except (ValueError, TypeError) as exc:  # TransformParameterError too
                text = str(exc)
                if not text.startswith(f"transform {self.name!r}"):
                    text = f"transform {self.name!r}: {text}"
                raise TransformParameterError(text) from exc
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
        return normalise_margin(func(**full))

    def signature_text(self) -> str:
        """``sigma=1.0, mode='reflect'`` style text of the parameters."""
        parts = []
        for p in self.parameters():
            has_default = p.default is not inspect.Parameter.empty
            parts.append(f"{p.name}={p.default!r}" if has_default else p.name)
        return ", ".join(parts)
