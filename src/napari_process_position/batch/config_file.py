"""Config files on disk: reading them (bounded), writing them (atomically), their paths."""

from __future__ import annotations

import contextlib
import os
import shlex
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from napari_process_position.core.errors import ConfigError, InvalidArgumentError, OutputWriteError
from napari_process_position.core.yamltext import MAX_CONFIG_BYTES, load_yaml

__all__ = [
    "PATH_FIELDS",
    "absolute_path",
    "command_line",
    "describe_validation_error",
    "parse_config_text",
    "read_config_text",
    "recorded_settings",
    "write_config_text",
]


def read_config_text(target: Path) -> str:
    """Return a config file's text; refuse a file too large or not UTF-8, in one line."""
    try:
        with open(target, "rb") as fh:
            raw = fh.read(MAX_CONFIG_BYTES + 1)  # (never more: /dev/zero is a "file" too)
    except OSError as exc:
        raise ConfigError(f"cannot read config {target}: {exc.strerror or exc}") from exc
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{target} is larger than {MAX_CONFIG_BYTES} bytes; a config is a few hundred "
            "(is it the right file?)"
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{target} is not UTF-8 text (byte {exc.start}); a config is a YAML file"
        ) from exc


def parse_config_text(text: str, source: str) -> dict[str, Any]:
    """Parse a config's YAML (plain data only, YAML 1.2 scalars, bounded) into a mapping.

    Raises
    ------
    ConfigError
        The YAML is malformed, too large once its aliases are expanded, uses
        tags that would build Python objects, or is not a mapping.
    """
    try:
        data = load_yaml(text)
    except InvalidArgumentError as exc:
        raise ConfigError(f"{source} {exc}") from None
    except yaml.constructor.ConstructorError as exc:
        raise ConfigError(
            f"{source} uses a YAML tag that safe loading refuses ({exc.problem}"
            f"{_where(exc)}); a config holds plain values only"
        ) from exc
    except yaml.YAMLError as exc:
        if isinstance(exc, yaml.MarkedYAMLError) and exc.problem:
            what = f"{exc.problem}{_where(exc)}"
        else:
            what = " ".join(str(exc).split())
        raise ConfigError(f"{source} is not valid YAML: {what}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must be a YAML mapping of fields, not {type(data).__name__}")
    return data


def write_config_text(target: Path, text: str, *, header: bool = False) -> None:
    """Write a config file atomically (a reader never sees half of it).

    ``header`` starts it with a comment: the command that runs it.
    """
    if header:
        text = (
            f"# napari-process-position run; reproduce with:\n#   {command_line(target)}\n"
            "# (paths are absolute; a relative path in a config is read from the config's folder)\n"
            + text
        )
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise OutputWriteError(
            f"cannot write the settings to {target}: {exc.strerror or exc}"
        ) from exc


#: The fields that hold local paths (made absolute when saved, read from a config's folder).
PATH_FIELDS = ("input", "output")


def absolute_path(value: str | None, base: str | None = None) -> str | None:
    """Return ``value`` as an absolute path (from ``base``, else the current folder).

    ``None``, empty values and URLs (``s3://...``) are returned as they are.
    """
    if not value or "://" in value:
        return value
    path = os.path.expanduser(value)
    if base is not None and not os.path.isabs(path):
        path = os.path.join(base, path)
    return os.path.abspath(path)


def command_line(config_path: str | os.PathLike[str], *extra: str) -> str:
    """Return the exact shell command that runs a saved config.

    The widget shows it after "Save settings for a batch run…".

    Examples
    --------
    >>> command_line("/data/run.yaml")
    'process-position run --config /data/run.yaml'
    >>> command_line("/data/my run.yaml", "--resume")
    "process-position run --config '/data/my run.yaml' --resume"
    """
    path = os.path.abspath(os.path.expanduser(os.fspath(config_path)))
    return shlex.join(["process-position", "run", "--config", path, *extra])


def _where(exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark
    return f" at line {mark.line + 1}" if mark is not None else ""


def recorded_settings(target: Path) -> tuple[dict[str, Any], str]:
    """Return the settings an output store records, and where they come from (for messages).

    Raises
    ------
    ConfigError
        The store records no settings.
    """
    from napari_process_position.store.provenance import PROVENANCE_KEY, read_provenance

    found = read_provenance(target)
    if found is None:
        raise ConfigError(
            f"{target} is a folder, not a config file, and records no run settings "
            f"(no {PROVENANCE_KEY!r} attributes: it was not made by "
            "process-position run); give a YAML file"
        )
    return dict(found["config"]), f"the settings recorded in {target}"


def describe_validation_error(
    exc: ValidationError, source: str, models: dict[str, type[BaseModel]]
) -> str:
    """Return a validation error as one line that names each bad field and what it got.

    ``models`` maps a top-level field to the model of its section (``""``: the
    config itself), to list the known fields of an unknown one.
    """
    parts = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        field = ".".join(loc) or "(top level)"
        if err["type"] == "extra_forbidden":
            section = loc[0] if len(loc) > 1 and loc[0] in models else ""
            known = ", ".join(models[section].model_fields)
            parts.append(f"unknown field {field!r} (known fields: {known})")
        elif err["type"] == "missing":
            parts.append(f"field {field!r} is required")
        elif not loc:
            parts.append(str(err["msg"]).removeprefix("Value error, "))
        else:
            msg = str(err["msg"]).removeprefix("Value error, ")
            parts.append(f"field {field!r}: {msg} (got {err.get('input')!r})")
    return f"{source}: " + "; ".join(parts)
