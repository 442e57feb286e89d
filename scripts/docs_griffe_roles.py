"""Griffe extension for the API reference: Sphinx roles in docstrings become Markdown.

The docstrings use numpydoc with Sphinx cross-reference roles (``:func:`stream_position```),
which mkdocstrings would print literally. This extension (``extensions:`` of the python
handler in ``mkdocs.yml``) rewrites each role before the docstring is parsed:

- a public name of ``napari_process_position`` (or a member of one, ``PositionRun.cancel``)
  becomes a link to its entry in the API reference;
- anything else (private helpers, ``:mod:`` references) becomes inline code.

A link whose target is not rendered makes ``mkdocs build --strict`` fail, so a stale
reference cannot slip through.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

import griffe

PACKAGE = "napari_process_position"
_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|attr|exc|mod|data|obj|const):`(~?)([^`]+)`")


def _public_target(target: str) -> str | None:
    """Return the API identifier for ``target`` when it is public, else None."""
    package = importlib.import_module(PACKAGE)
    path = target.removeprefix(f"{PACKAGE}.").removesuffix("()")
    public = set(getattr(package, "__all__", ()))
    head, *rest = path.split(".")
    if head not in public and rest and rest[-1] in public:
        # a module path to a public object: core.tasks.Result -> Result
        head, rest = rest[-1], []
    if head not in public or head.startswith("_"):
        return None
    obj: Any = getattr(package, head)
    for part in rest:
        if part.startswith("_") or not hasattr(obj, part):
            return None
        obj = getattr(obj, part)
    if rest and not getattr(obj, "__doc__", None):
        return None  # undocumented members are not rendered
    return ".".join([PACKAGE, head, *rest])


def rewrite(text: str) -> str:
    """Replace the Sphinx roles in ``text`` by Markdown links or inline code."""

    def replace(match: re.Match[str]) -> str:
        short, target = match.group(1), match.group(2).strip()
        shown = target.rsplit(".", 1)[-1] if short else target
        if shown.startswith("."):
            shown = shown.lstrip(".")
        identifier = _public_target(target)
        if identifier is None:
            return f"`{shown}`"
        return f"[`{shown}`][{identifier}]"

    return _ROLE.sub(replace, text)


class SphinxRoles(griffe.Extension):
    """Rewrite Sphinx roles in every docstring of the package (see the module docstring)."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:  # noqa: D102
        if obj.docstring is not None and ":`" in obj.docstring.value:
            obj.docstring.value = rewrite(obj.docstring.value)
