"""SLURM jobs that host Dask workers: the ``slurm`` section of a :class:`.RunConfig`."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from napari_process_position.core.errors import ConfigError, InvalidArgumentError
from napari_process_position.core.sizes import parse_size

__all__ = ["SlurmSettings"]

_WALLTIME = re.compile(r"^(\d+-)?\d{1,3}(:\d{2}){0,2}$")


class SlurmSettings(BaseModel):
    """SLURM jobs that host Dask workers (dask-jobqueue's ``SLURMCluster``).

    Each job asks for ``cores`` CPUs and ``memory`` on one node and runs
    ``processes`` Dask workers of ``cores // processes`` threads each.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    cores: int = Field(default=4, ge=1, le=4096, description="CPU cores per job (--cpus-per-task).")
    processes: int | None = Field(
        default=None,
        ge=1,
        le=4096,
        description="Dask worker processes per job; default one per core (one thread each).",
    )
    memory: str = Field(default="16GB", description="Memory per job, e.g. '16GB' (--mem).")
    walltime: str = Field(default="01:00:00", description="Time limit per job, [D-]HH:MM:SS (-t).")
    partition: str | None = Field(default=None, description="SLURM partition (-p).")
    account: str | None = Field(default=None, description="SLURM account (-A).")
    jobs: int = Field(
        default=1, ge=1, le=100000, description="Jobs to keep running (lost ones are replaced)."
    )
    job_extra: list[str] = Field(
        default_factory=list, description="Extra #SBATCH directives, e.g. '--qos=normal'."
    )
    interface: str | None = Field(
        default=None, description="Network interface workers and scheduler use, e.g. 'ib0'."
    )

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: str) -> str:
        # The one grammar of amounts (core.sizes), as memory_limit reads them.
        try:
            parse_size(value, "slurm.memory")
        except InvalidArgumentError as exc:
            raise ConfigError("must be an amount such as '16GB', '4000MB' or '8GiB'") from exc
        return value.strip()

    @field_validator("walltime")
    @classmethod
    def _walltime(cls, value: str) -> str:
        if not _WALLTIME.match(value.strip()):
            raise ConfigError("must look like HH:MM:SS, MM:SS or D-HH:MM:SS")
        return value.strip()

    @model_validator(mode="after")
    def _processes_fit(self) -> SlurmSettings:
        if self.processes is not None and self.processes > self.cores:
            raise ConfigError(
                f"slurm.processes ({self.processes}) cannot exceed slurm.cores ({self.cores})"
            )
        return self

    @property
    def memory_bytes(self) -> int:
        """``memory`` in bytes (the one grammar of amounts, :func:`..core.sizes.parse_size`)."""
        return parse_size(self.memory, "slurm.memory")

    @property
    def worker_processes(self) -> int:
        """Dask worker processes per job."""
        return self.processes or self.cores

    @property
    def threads_per_worker(self) -> int:
        """Threads in each Dask worker."""
        return max(1, self.cores // self.worker_processes)
