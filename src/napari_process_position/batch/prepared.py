"""A prepared run: what :func:`.prepare.prepare_run` decided, once, as one value.

A :class:`PreparedRun` is a plan (the positions with their metadata read once,
the transform, the selection, each output's layout), the output positions
created for it, and an :class:`.execution.Execution` (where the tasks run and
why). :class:`.batch_run.BatchRun` runs it; the command line, the widget and the
estimate read it rather than deciding any of it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from napari_process_position.batch.config import RunConfig
from napari_process_position.batch.execution import Execution
from napari_process_position.batch.plan import RunPlan
from napari_process_position.store.layout import OutputLayout, PositionInfo, StoreInfo
from napari_process_position.transforms import TransformSpec

__all__ = ["PreparedRun"]


@dataclass(frozen=True)
class PreparedRun:
    """A run checked, planned and placed; nothing of it has run yet.

    Attributes
    ----------
    config
        The settings as run (``num_workers: auto`` resolved; the output
        records them as given).
    plan
        Positions, their input metadata, the transform and its checked
        parameters, the channels and time points, the output layouts.
    execution
        Where the tasks run, how many workers and why, who owns the pool or
        the Dask session.
    output_paths
        Position key -> its output position (None: a preview without output).
    """

    config: RunConfig
    plan: RunPlan
    execution: Execution
    output_paths: dict[str, str | None]

    @property
    def spec(self) -> TransformSpec:
        """The transform."""
        if self.plan.spec is None:  # pragma: no cover - prepare_run plans with the transform
            raise RuntimeError("a prepared run has a transform")
        return self.plan.spec

    @property
    def params(self) -> dict[str, Any]:
        """The transform's checked parameters."""
        return self.plan.params

    @property
    def store(self) -> StoreInfo:
        """The input store."""
        return self.plan.store

    @property
    def keys(self) -> list[str]:
        """The positions, in the order they run."""
        return self.plan.keys

    def input(self, key: str) -> PositionInfo:
        """Return the metadata of input position ``key`` (read once, when planned)."""
        return self.plan.inputs[key]

    def layout(self, key: str) -> OutputLayout:
        """Return what output position ``key`` holds."""
        return self.plan.layouts[key]

    def output_path(self, key: str) -> str | None:
        """Return output position ``key`` (None: a preview without output)."""
        return self.output_paths[key]

    @property
    def volumes_per_position(self) -> int:
        """(t, c) volumes of one position."""
        return len(self.plan.times) * len(self.plan.channels)
