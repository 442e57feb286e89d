"""RunConfig: the one description of a run, shared by the widget, the CLI and batch jobs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ._errors import ProcessPositionError

__all__ = ["ConfigError", "RunConfig"]


class ConfigError(ProcessPositionError, ValueError):
    """A run configuration is invalid; the message names the field."""


def _project_version() -> str:
    from . import __version__

    return __version__


class RunConfig(BaseModel):
    """Everything that determines a run, saved and loaded as YAML.

    Examples
    --------
    >>> cfg = RunConfig(input="plate.zarr", output="out.zarr", transform="gaussian_blur",
    ...                 params={"sigma_y": 3.0})
    >>> RunConfig.from_yaml(cfg.to_yaml()) == cfg
    True
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    input: str = Field(description="Input OME-Zarr plate or position.")
    output: str | None = Field(
        default=None, description="Output plate to create; empty for a preview without output."
    )
    positions: list[str] | None = Field(
        default=None,
        description="Position keys ('A/1/0') or glob patterns ('A/*/0'); all positions when empty.",
    )
    transform: str = Field(description="Transform name, 'module:function' or 'file.py:function'.")
    params: dict[str, Any] = Field(default_factory=dict, description="Transform parameters.")
    channels: list[int] | None = Field(
        default=None, description="Input channel indices, one task group each; all when empty."
    )
    times: list[int] | None = Field(default=None, description="Input time indices; all when empty.")
    num_workers: int = Field(default=1, ge=1, le=4096, description="Parallel workers.")
    use_threads: bool = Field(default=False, description="Threads instead of processes.")
    ome_version: Literal["0.4", "0.5"] = Field(default="0.5", description="OME-Zarr version written.")
    resume: bool = Field(default=False, description="Continue an interrupted run into the same output.")
    overwrite: bool = Field(default=False, description="Replace an existing output.")
    written_by: str = Field(
        default_factory=_project_version, description="napari-process-position version that wrote it."
    )

    @field_validator("input", "transform")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value or not value.strip():
            raise ValueError("must not be empty")
        return value.strip()

    @field_validator("output")
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        return value.strip() if value and value.strip() else None

    @field_validator("channels", "times")
    @classmethod
    def _non_negative(cls, value: list[int] | None) -> list[int] | None:
        if value is None:
            return None
        if not value:
            return None
        bad = [v for v in value if v < 0]
        if bad:
            raise ValueError(f"indices must be 0 or more, got {bad}")
        if len(set(value)) != len(value):
            raise ValueError(f"indices repeat: {value}")
        return value

    # -- YAML ----------------------------------------------------------------------
    def to_yaml(self) -> str:
        """The config as YAML text."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the config as YAML to ``path``."""
        target = Path(path)
        target.write_text(
            "# napari-process-position run; reproduce with: process-position run --config "
            f"{target.name}\n" + self.to_yaml(),
            encoding="utf-8",
        )
        return target

    @classmethod
    def from_yaml(cls, text: str, source: str = "config") -> RunConfig:
        """Parse YAML text (safe loader) into a validated config.

        Raises
        ------
        ConfigError
            The YAML is malformed, or a field is missing or has a bad value;
            the message names the field.
        """
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{source} must be a YAML mapping of fields, not {type(data).__name__}")
        return cls.from_dict(data, source)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> RunConfig:
        """Validate a mapping into a config, with errors that name the field."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(_describe(exc, source)) from None

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> RunConfig:
        """Read a YAML config file."""
        target = Path(path)
        try:
            text = target.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config {target}: {exc.strerror or exc}") from exc
        return cls.from_yaml(text, str(target))

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        """The JSON schema of the config file."""
        return cls.model_json_schema()


def _describe(exc: ValidationError, source: str) -> str:
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            known = ", ".join(RunConfig.model_fields)
            parts.append(f"unknown field {field!r} (known fields: {known})")
        elif err["type"] == "missing":
            parts.append(f"field {field!r} is required")
        else:
            parts.append(f"field {field!r}: {err['msg']} (got {err.get('input')!r})")
    return f"{source}: " + "; ".join(parts)
