"""``process-position estimate``: measure one task, then size the run (and a cluster job)."""

from __future__ import annotations

import json
from typing import Any

import click

from napari_process_position.cli.main import guard, main
from napari_process_position.cli.options import _settings_options, build_config

__all__ = ["estimate"]


@main.command("estimate")
@_settings_options
@click.option(
    "--json", "as_json", is_flag=True, help="Print the figures as one JSON object instead."
)
def estimate(as_json: bool, **opts: Any) -> None:
    """Measure one (time, channel) task of INPUT's first position and size the whole run.

    The task runs in a fresh worker process, as a run runs it, into a scratch
    output (beside OUTPUT when given, removed afterwards); its wall time and
    its peak memory above the worker's own are measured. The report gives
    them per volume and for the selection (volumes, positions, projected time
    with the chosen workers, output size), the workers that fit the CPUs and
    the memory, and one line of advice. Its last line is
    RESOURCES:{"cpus": N, "mem_gb": N, "time_minutes": N} for one position,
    the line biahub prints for Nextflow. Takes the settings of `run`.
    """
    _estimate(opts, as_json)


@guard
def _estimate(opts: dict[str, Any], as_json: bool) -> None:
    from napari_process_position.batch.estimate import estimate_run

    config = build_config(opts, need_output=False)
    result = estimate_run(config)
    if as_json:
        click.echo(json.dumps(result.to_json()))
        return
    for line in result.lines():
        click.echo(line)
