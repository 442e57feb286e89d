"""The one YAML reader: plain data, YAML 1.2 scalars, bounded size and alias expansion.

Config files and ``-p KEY=VALUE`` text both come through :func:`load_yaml`, so a
value reads the same everywhere:

- Scalars follow the YAML 1.2 core schema, not PyYAML's YAML 1.1: ``1e-3`` is a
  float, ``2:30`` and ``1:00`` are text (1.1 read them as base-60 numbers, 150
  and 60), ``010`` is ten, ``yes``/``no``/``on``/``off`` are text, and dates
  stay text. ``true``/``false``, ``null``/``~``, ``0x1f``, ``0o17``, ``.inf`` and
  ``.nan`` are what they were.
- Only plain data is built (PyYAML's safe loader: no Python objects).
- The text is at most ``max_bytes`` long, and its aliases may not expand it
  beyond ``max_nodes`` values: a "billion laughs" document (aliases of aliases,
  9 levels deep, a few hundred bytes) is refused before it is built, instead of
  growing to gigabytes in whatever walks it next.
"""

from __future__ import annotations

import math
import re
from typing import Any

import yaml

from napari_process_position.core.errors import InvalidArgumentError

__all__ = ["MAX_CONFIG_BYTES", "MAX_NODES", "dump_yaml", "load_yaml"]

#: Largest config text read (a config is a few hundred bytes; a flat-field array inline
#: in ``params`` is the largest legitimate one).
MAX_CONFIG_BYTES = 16 * 2**20
#: Most values (scalars, lists and mappings) a document may expand to through its aliases.
MAX_NODES = 1_000_000

_INT = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT = re.compile(
    r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_REPLACED = {
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:timestamp",
    "tag:yaml.org,2002:value",
}


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with the YAML 1.2 core schema's implicit scalars."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in _REPLACED]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", _BOOL, list("tTfF"))
_Loader.add_implicit_resolver("tag:yaml.org,2002:null", _NULL, ["~", "n", "N", ""])
_Loader.add_implicit_resolver("tag:yaml.org,2002:int", _INT, list("-+0123456789"))
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


def _scalar(loader: _Loader, node: yaml.Node) -> str:
    return str(loader.construct_scalar(node))  # type: ignore[arg-type]


def _int(loader: _Loader, node: yaml.Node) -> int:
    text = _scalar(loader, node)
    try:
        if text.startswith("0o"):
            return int(text[2:], 8)
        if text.startswith("0x"):
            return int(text[2:], 16)
        return int(text, 10)
    except ValueError as exc:  # more digits than Python converts
        raise yaml.constructor.ConstructorError(
            None, None, f"the number {text[:20]}... has too many digits", node.start_mark
        ) from exc


def _float(loader: _Loader, node: yaml.Node) -> float:
    text = _scalar(loader, node).lower()
    if text.endswith(".inf"):
        return -math.inf if text.startswith("-") else math.inf
    if text == ".nan":
        return math.nan
    return float(text)


_Loader.add_constructor("tag:yaml.org,2002:int", _int)
_Loader.add_constructor("tag:yaml.org,2002:float", _float)
_Loader.add_constructor(
    "tag:yaml.org,2002:bool", lambda loader, node: _scalar(loader, node)[0] in "tT"
)
_Loader.add_constructor("tag:yaml.org,2002:null", lambda loader, node: None)
_Loader.add_constructor("tag:yaml.org,2002:timestamp", _scalar)


class _Dumper(yaml.SafeDumper):
    """PyYAML's safe dumper that also quotes text YAML 1.2 would read as something else."""


for _tag, _rx, _first in (
    ("tag:yaml.org,2002:int", _INT, "-+0123456789"),
    ("tag:yaml.org,2002:float", _FLOAT, "-+0123456789."),
    ("tag:yaml.org,2002:bool", _BOOL, "tTfF"),
):
    _Dumper.add_implicit_resolver(_tag, _rx, list(_first))


def dump_yaml(data: Any) -> str:
    """Write plain data as YAML that both :func:`load_yaml` and YAML 1.1 readers read back.

    Examples
    --------
    >>> print(dump_yaml({"a": "1e3", "b": "2:30", "c": 1e-3}), end="")
    a: '1e3'
    b: '2:30'
    c: 0.001
    """
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False)


def _expanded_size(root: yaml.Node, limit: int) -> int:
    """Values ``root`` stands for once every alias is expanded (stops counting past ``limit``)."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise InvalidArgumentError("an alias refers to a value that holds it (a cycle)")
        active.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            children: list[yaml.Node] = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        else:
            children = []
        for child in children:
            total += size(child)
            if total > limit:
                break
        active.discard(key)
        sizes[key] = min(total, limit + 1)
        return sizes[key]

    return size(root)


def load_yaml(text: str, *, max_bytes: int = MAX_CONFIG_BYTES, max_nodes: int = MAX_NODES) -> Any:
    """Read YAML text as plain data (see the module docstring for what differs from PyYAML).

    Parameters
    ----------
    text
        The YAML document.
    max_bytes, max_nodes
        Bounds on the text's length (UTF-8 bytes) and on the number of values it
        expands to through aliases.

    Returns
    -------
    Any
        Dicts, lists, str, int, float, bool and None.

    Raises
    ------
    InvalidArgumentError
        The text is longer than ``max_bytes`` or expands beyond ``max_nodes``
        values, or an alias refers to a value that holds it.
    yaml.YAMLError
        The text is not valid YAML, or uses a tag that would build Python objects.

    Examples
    --------
    >>> load_yaml("[1e-3, 2:30, 010, yes, 0x10]")
    [0.001, '2:30', 10, 'yes', 16]
    """
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise InvalidArgumentError(
            f"is {size} bytes long; at most {max_bytes} are read (a config is a few hundred)"
        )
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, max_nodes) > max_nodes:
            raise InvalidArgumentError(
                f"expands to more than {max_nodes} values through its aliases (&anchor / "
                "*alias); write the values out, or use fewer aliases"
            )
        return loader.construct_document(node)
    finally:
        loader.dispose()
