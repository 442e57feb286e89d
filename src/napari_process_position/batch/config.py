"""RunConfig: the one description of a run, shared by the widget, the CLI and batch jobs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from napari_process_position.batch.config_file import (
    PATH_FIELDS,
    absolute_path,
    command_line,
    describe_validation_error,
    parse_config_text,
    read_config_text,
    recorded_settings,
    write_config_text,
)
from napari_process_position.batch.execution import requested_mode
from napari_process_position.batch.slurm_settings import SlurmSettings
from napari_process_position.core.errors import ConfigError, InvalidArgumentError
from napari_process_position.core.ranges import parse_ranges
from napari_process_position.core.sizes import parse_size
from napari_process_position.core.yamltext import dump_yaml
from napari_process_position.store.paths import check_path_text

__all__ = ["CONFIG_FORMAT_VERSION", "RunConfig", "SlurmSettings", "absolute_path", "command_line"]

#: Version of the config file format this package reads and writes. Raise it
#: when a field changes meaning; configs with a higher number are refused.
CONFIG_FORMAT_VERSION = 1


def _project_version() -> str:
    from napari_process_position.core.version import package_version

    return package_version()


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

    format_version: int = Field(
        default=CONFIG_FORMAT_VERSION,
        description=f"Version of this file's format (this package writes {CONFIG_FORMAT_VERSION}).",
    )
    input: str = Field(description="Input OME-Zarr plate or position.")
    output: str | None = Field(
        default=None, description="Output plate to create; empty for a preview without output."
    )
    positions: list[str] | None = Field(
        default=None,
        description="Position keys ('A/1/0') or glob patterns ('A/*/0'); all positions when empty.",
    )
    sample: int | None = Field(
        default=None, ge=1, description="Run on this many of those positions, picked at random."
    )
    seed: int | None = Field(
        default=None,
        ge=0,
        description="Seed of the sample's pick (a new one is recorded when empty).",
    )
    transform: str = Field(description="Transform name, 'module:function' or 'file.py:function'.")
    params: dict[str, Any] = Field(default_factory=dict, description="Transform parameters.")
    channels: list[int] | None = Field(
        default=None,
        description="Input channel indices, one task group each ('0,2' or a list); all when empty.",
    )
    times: list[int] | None = Field(
        default=None, description="Input time indices ('0-3,7' or a list); all when empty."
    )
    num_workers: int = Field(
        default=1,
        ge=1,
        le=4096,
        description="Parallel workers on this machine (on Dask the cluster's workers are used); "
        "'auto' picks as many as the CPUs and the memory a measured task needs allow.",
    )
    auto_workers: bool = Field(
        default=False,
        description="Set by `num_workers: auto`: the run measures one task and picks "
        "num_workers (until then num_workers holds the CPUs available, the upper bound).",
    )
    use_threads: bool = Field(default=False, description="Threads instead of processes.")
    memory_limit: str | None = Field(
        default=None,
        description="Memory limit of each process or Dask worker, e.g. '8GB', '512MiB'; a task "
        "that needs more fails with an out-of-memory error.",
    )
    ome_version: Literal["0.4", "0.5"] = Field(
        default="0.5", description="OME-Zarr version written."
    )
    pyramid_levels: int | Literal["auto"] = Field(
        default=1,
        description="Resolution levels written (1: full resolution only); each task writes its "
        "volume's 2x mean downsamplings over Z, Y and X, as iohub's compute_pyramid; 'auto' adds "
        "levels until Y and X are at most 512.",
    )
    resume: bool = Field(
        default=False, description="Continue an interrupted run into the same output."
    )
    overwrite: bool = Field(
        default=False,
        description=(
            "Replace an existing output that napari-process-position wrote (or an empty "
            "folder); anything else at the output path is refused."
        ),
    )
    dask_scheduler: str | None = Field(
        default=None,
        description="Run on an existing Dask cluster: scheduler address (tcp://host:8786) "
        "or a scheduler JSON file.",
    )
    dask_local: int | None = Field(
        default=None,
        ge=1,
        le=4096,
        description="Run on a Dask LocalCluster of this many single-threaded worker processes.",
    )
    slurm: SlurmSettings | None = Field(
        default=None, description="Run on Dask workers in SLURM jobs (dask-jobqueue)."
    )
    written_by: str = Field(
        default_factory=_project_version,
        description="napari-process-position version that wrote it.",
    )

    @model_validator(mode="before")
    @classmethod
    def _auto(cls, data: Any) -> Any:
        # `num_workers: auto` (YAML, the command line, RunConfig(num_workers="auto")).
        if isinstance(data, dict):
            value = data.get("num_workers")
            if isinstance(value, str) and value.strip().lower() == "auto":
                from napari_process_position.core.budget import available_cpus

                data = {**data, "num_workers": min(4096, available_cpus()), "auto_workers": True}
        return data

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        # Written as `num_workers: auto`, read back the same; without it, as before.
        if data.pop("auto_workers", False) and "num_workers" in data:
            data["num_workers"] = "auto"
        # Left out at its default, so a config without pyramids reads in older versions too.
        if data.get("pyramid_levels") == 1:
            del data["pyramid_levels"]
        return data

    @field_validator("pyramid_levels", mode="before")
    @classmethod
    def _levels(cls, value: Any) -> Any:
        text = str(value).strip().lower() if isinstance(value, (str, int)) else None
        if text == "auto":
            return "auto"
        if (
            isinstance(value, bool)
            or text is None
            or not text.isdigit()
            or not 1 <= int(text) <= 32
        ):
            raise ConfigError(f"must be a whole number from 1 to 32, or 'auto'; not {value!r}")
        return int(text)

    @field_validator("memory_limit", mode="before")
    @classmethod
    def _memory_limit(cls, value: Any) -> Any:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        try:
            parse_size(value, "memory_limit")
        except InvalidArgumentError as exc:
            raise ConfigError(str(exc)) from None
        return str(value).strip()

    @property
    def memory_limit_bytes(self) -> int | None:
        """``memory_limit`` in bytes (None when not set)."""
        return parse_size(self.memory_limit) if self.memory_limit else None

    @field_validator("format_version")
    @classmethod
    def _known_format(cls, value: int) -> int:
        if value < 1:
            raise ConfigError("must be 1 or more")
        if value > CONFIG_FORMAT_VERSION:
            raise ConfigError(
                f"this config uses format {value}, newer than this napari-process-position "
                f"({_project_version()}) reads (up to {CONFIG_FORMAT_VERSION}); upgrade it"
            )
        return value

    @field_validator("input", "transform")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value or not value.strip():
            raise ConfigError("must not be empty")
        return value.strip()

    @field_validator("input", "output")
    @classmethod
    def _path_text(cls, value: str | None) -> str | None:
        if value:
            try:
                check_path_text(value)
            except ValueError as exc:
                raise ConfigError(str(exc)) from exc
        return value

    @field_validator("output", "dask_scheduler")
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        return value.strip() if value and value.strip() else None

    @field_validator("channels", "times", mode="before")
    @classmethod
    def _ranges(cls, value: Any) -> Any:
        # "0-3,7" as the command line and the widget write it (the one range parser).
        return parse_ranges(value, "index") if isinstance(value, str) else value

    @field_validator("channels", "times")
    @classmethod
    def _non_negative(cls, value: list[int] | None) -> list[int] | None:
        if value is None:
            return None
        if not value:
            return None
        bad = [v for v in value if v < 0]
        if bad:
            raise ConfigError(f"indices must be 0 or more, got {bad}")
        if len(set(value)) != len(value):
            raise ConfigError(f"indices repeat: {value}")
        return value

    @model_validator(mode="after")
    def _seeded(self) -> RunConfig:
        # A sample without a seed gets one now, so that the recorded settings pick it again.
        if self.sample is not None and self.seed is None:
            from napari_process_position.batch.sampling import new_seed

            self.seed = new_seed()
        return self

    @model_validator(mode="after")
    def _resume_or_overwrite(self) -> RunConfig:
        if self.resume and self.overwrite:
            raise ConfigError(
                "resume (continue the output) and overwrite (replace it) contradict each other; "
                "set only one"
            )
        return self

    @model_validator(mode="after")
    def _limit_fits_the_job(self) -> RunConfig:
        if self.slurm is not None and self.memory_limit is not None:
            job = self.slurm.memory_bytes
            limit = parse_size(self.memory_limit, "memory_limit")
            if limit * self.slurm.worker_processes > job:
                raise ConfigError(
                    f"memory_limit {self.memory_limit} x {self.slurm.worker_processes} worker(s) "
                    f"per job is more than the job's memory ({self.slurm.memory}); lower it or "
                    "raise slurm.memory"
                )
        return self

    @model_validator(mode="after")
    def _one_cluster(self) -> RunConfig:
        chosen = [
            name
            for name in ("dask_scheduler", "dask_local", "slurm")
            if getattr(self, name) is not None
        ]
        if len(chosen) > 1:
            raise ConfigError(
                f"{' and '.join(chosen)} are alternatives (where the tasks run); set only one"
            )
        return self

    # -- what runs where ---------------------------------------------------------
    @property
    def uses_dask(self) -> bool:
        """True when the tasks run on Dask (a scheduler, a LocalCluster or SLURM)."""
        return any(v is not None for v in (self.dask_scheduler, self.dask_local, self.slurm))

    def describe_executor(self) -> str:
        """Where the tasks run, in words."""
        if self.dask_scheduler is not None:
            return f"the Dask cluster at {self.dask_scheduler}"
        if self.dask_local is not None:
            return f"a Dask LocalCluster of {self.dask_local} worker process(es)"
        if self.slurm is not None:
            s = self.slurm
            return (
                f"Dask workers in {s.jobs} SLURM job(s) of {s.worker_processes} worker(s) "
                f"x {s.threads_per_worker} thread(s)"
            )
        kind = "thread" if self.use_threads else "process"
        if self.auto_workers:
            return f"'auto' {kind} workers (up to {self.num_workers})"
        mode = requested_mode(
            num_workers=self.num_workers,
            use_threads=self.use_threads,
            memory_limit=self.memory_limit,
        )
        if mode == "serial":
            return "this process (serial)"
        return f"{self.num_workers} local {kind} worker(s)"

    def as_batch(
        self, output: str | os.PathLike[str], positions: list[str] | None = None, **changes: Any
    ) -> RunConfig:
        """Turn this config into a batch run: same transform and settings, every position.

        ``positions`` None means every position of the input; ``changes``
        set other fields (``num_workers=8``, ``dask_scheduler=...``).
        """
        data = self.model_dump()
        data.pop("written_by", None)
        data.update(output=str(output), positions=positions, resume=False, overwrite=False)
        data.update(changes)
        return type(self).from_dict(data, "batch settings")

    # -- YAML ----------------------------------------------------------------------
    def to_yaml(self) -> str:
        """Return the config as YAML text."""
        return dump_yaml(self.model_dump(mode="json"))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the config as YAML to ``path`` (atomically) and return the path.

        The first line is a comment with the command that runs it. Input and
        output are written as absolute paths, so that the file runs the same
        from any folder.
        """
        target = Path(path).expanduser()
        absolute = self.model_copy(
            update={key: absolute_path(getattr(self, key)) for key in PATH_FIELDS}
        )
        write_config_text(target, absolute.to_yaml(), header=True)
        return target

    @classmethod
    def from_yaml(cls, text: str, source: str = "config") -> RunConfig:
        """Parse YAML text (plain data only, YAML 1.2 scalars, bounded) into a validated config.

        See :func:`..core.yamltext.load_yaml`: ``1e-3`` is a float and ``2:30``
        text; a text longer than 16 MiB or whose aliases expand it beyond a
        million values is refused.

        Raises
        ------
        ConfigError
            The YAML is malformed or uses tags that would build Python
            objects, or a field is missing or has a bad value; the message
            names the field.
        """
        data = parse_config_text(text, source)
        return cls.from_dict(data, source)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> RunConfig:
        """Validate a mapping into a config, with errors that name the field."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(
                describe_validation_error(exc, source, {"": cls, "slurm": SlurmSettings})
            ) from exc

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> RunConfig:
        """Read a YAML config file, or the settings an output plate records.

        Parameters
        ----------
        path
            A YAML file, or an output store this package made: the settings
            of the run that made it are in its attributes (nothing is
            imported or run while reading either). Relative input and output
            paths in a YAML file are read from the file's folder.

        Raises
        ------
        ConfigError
            The file cannot be read or is not a valid config, or the store
            records no settings.
        """
        target = Path(path).expanduser()
        if target.is_dir():
            return cls.from_dict(*recorded_settings(target))
        text = read_config_text(target)
        config = cls.from_yaml(text, str(target))
        # A relative path is read from the config file's folder, not from wherever the
        # command runs (another folder's in.zarr/out.zarr must never be picked up).
        folder = os.path.dirname(os.path.abspath(target))
        return config.model_copy(
            update={key: absolute_path(getattr(config, key), folder) for key in PATH_FIELDS}
        )

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        """Return the JSON schema of the config file."""
        return cls.model_json_schema()
