"""One magicgui widget per transform parameter, from its annotation and default.

``Annotated[float, {"min": 0, "max": 50, "step": 0.1}]`` gives a bounded
float spin box, ``Literal["a", "b"]`` a combo box, ``bool`` a check box; a
parameter with neither annotation nor default gets a text box read as a
Python literal.
"""

from __future__ import annotations

import ast
import inspect
from typing import Any

from magicgui.widgets import LineEdit, Widget, create_widget

from napari_process_position.transforms.params import split_annotated

__all__ = ["param_value", "param_widget", "show_param_value"]

#: Marks a text box whose text is read as a Python literal.
_LITERAL_ATTR = "_npp_literal"


def param_widget(param: inspect.Parameter, hint: Any) -> Widget:
    """Make the magicgui widget of one transform parameter (Annotated ranges, Literal choices)."""
    base, options = split_annotated(hint)  # the one reading of Annotated options
    options = dict(options)
    if base is inspect.Parameter.empty:
        base = None
    default = param.default
    has_default = default is not inspect.Parameter.empty
    if base is None and has_default and default is not None:
        base = type(default)
    kwargs: dict[str, Any] = {"name": param.name, "label": param.name.replace("_", " ")}
    if has_default:
        kwargs["value"] = default
    if base in (int, float):
        # magicgui's spin boxes default to 0..999; a transform's number is unbounded
        # unless its annotation says otherwise.
        limit = 1e9 if base is float else 2**31 - 1
        options.setdefault("min", -limit)
        options.setdefault("max", limit)
        if base is float:
            options.setdefault("step", 0.1)
    if base is None or base is Any:
        # Nothing to go by: a text box read as a Python literal.
        text = LineEdit(
            value=repr(default) if has_default else "",
            **{k: v for k, v in kwargs.items() if k != "value"},
        )
        text.tooltip = "a Python literal: 1.5, 'text', (1, 2), ..."
        setattr(text, _LITERAL_ATTR, True)
        return text
    widget: Any = create_widget(annotation=base, options=options, **kwargs)
    if base is float and hasattr(widget.native, "setDecimals"):
        # Enough decimals for the step and the default: a spin box rounds what it
        # shows, and would otherwise run the transform with a rounded default.
        wanted = [_decimals(options.get("step")), _decimals(default if has_default else None)]
        decimals = max(2, *wanted)
        if decimals > widget.native.decimals():
            widget.native.setDecimals(decimals)
            if has_default:
                widget.value = default
    return widget


def _decimals(value: Any) -> int:
    """Decimal places needed to show a number exactly (at most 8)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value == 0:
        return 0
    text = f"{abs(float(value)):.8f}".rstrip("0")
    return min(8, len(text.partition(".")[2]))


def param_value(widget: Any) -> Any:
    """Return the value a parameter widget holds (a literal text box's text, evaluated)."""
    value = widget.value
    if getattr(widget, _LITERAL_ATTR, False):
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
    return value


def show_param_value(widget: Any, value: Any) -> None:
    """Show ``value`` in a parameter widget (a literal text box shows its ``repr``)."""
    if param_value(widget) == value:
        return
    widget.value = repr(value) if getattr(widget, _LITERAL_ATTR, False) else value
