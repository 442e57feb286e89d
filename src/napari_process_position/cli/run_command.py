"""Commands that run: run, init-output, and the progress bar and summary of a run."""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import time
from collections.abc import Callable
from typing import Any

import click

from napari_process_position.cli.main import fail, guard, main
from napari_process_position.cli.options import _settings_options, build_config
from napari_process_position.cli.summary import TABLE_LIMIT, print_summary

__all__ = ["SIGTERM_GRACE_S", "init_output", "run"]

#: Seconds the volumes in flight get to finish after SIGTERM (SLURM sends SIGKILL 30 s later).
SIGTERM_GRACE_S = 20.0


def _install_sigterm(run: Any) -> Callable[[], bool]:
    """On SIGTERM (scheduler pre-emption): stop starting tasks, let writes finish."""
    received = {"flag": False}

    def handler(signum: int, frame: Any) -> None:
        if received["flag"]:  # a second SIGTERM: stop now
            run.cancel()
            return
        received["flag"] = True
        click.echo(
            f"\nSIGTERM received: finishing the volumes in flight (up to "
            f"{SIGTERM_GRACE_S:.0f} s), then stopping",
            err=True,
        )
        run.cancel(wait=SIGTERM_GRACE_S)

    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGTERM, handler)
    return lambda: received["flag"]


@main.command("run")
@_settings_options
@click.option(
    "--print-job-script",
    is_flag=True,
    help="With --slurm: print the sbatch script each job runs, submit nothing, and exit.",
)
@click.option(
    "--show-schema", is_flag=True, help="Print the JSON schema of the config file and exit."
)
@click.option(
    "--no-progress",
    is_flag=True,
    help="No progress bar; with -v, a line per volume (for job logs).",
)
@click.option(
    "--full-summary",
    is_flag=True,
    help=f"A row per position in the summary even for more than {TABLE_LIMIT} positions.",
)
@click.option(
    "--wait",
    is_flag=True,
    help="When another run is writing OUTPUT (or its positions), wait for it to end instead "
    "of refusing.",
)
def run(
    show_schema: bool,
    print_job_script: bool,
    no_progress: bool,
    full_summary: bool,
    wait: bool,
    **opts: Any,
) -> None:
    """Apply a transform to every (time, channel) volume of INPUT and write OUTPUT.

    INPUT is a plate (every position unless --position) or a single position
    (a store that is one image, or a plate's A/1/0 folder). OUTPUT becomes a new
    plate with the selected position keys for a plate, and a new single image
    for a single position. Level 0 of each input is read; its other levels,
    labels and tables are not copied (positions --details lists them). The
    output has the input's axes (any of t, c, z may be missing), named in lower
    case, with level 0's scale and translation. The tasks run on this
    machine (--workers, --threads/--processes), on a Dask cluster
    (--dask-scheduler, --dask-local) or on Dask workers in SLURM jobs (--slurm).
    """
    from napari_process_position.batch.config import RunConfig

    if show_schema:
        click.echo(json.dumps(RunConfig.json_schema(), indent=2))
        return
    if print_job_script:
        _print_job_script(opts)
        return
    # A line per volume for job logs only when asked (-v): a big plate made thousands.
    verbose = click.get_current_context().find_root().params.get("verbose") or 0
    raise SystemExit(_run(opts, no_progress, wait, full_summary, no_progress and verbose > 0))


@guard
def _print_job_script(opts: dict[str, Any]) -> None:
    from napari_process_position.batch.slurm import slurm_job_script

    config = build_config(opts, need_output=False)
    _quiet_dask()
    if config.slurm is None:
        fail("--print-job-script needs --slurm (or a config with a slurm section)")
    click.echo(slurm_job_script(config.slurm, config.memory_limit_bytes), nl=False)


@guard
def _run(
    opts: dict[str, Any],
    no_progress: bool,
    wait: bool,
    full_summary: bool = False,
    volume_lines: bool = False,
) -> int:
    from napari_process_position.batch.prepare import prepare_run

    config = build_config(opts)
    if config.uses_dask:
        _quiet_dask()
    batch = prepare_run(config, wait=wait)
    _say_where_a_link_leads(config.output)  # (a refusal names the link itself)
    if opts.get("save_config") is not None:
        config.save(opts["save_config"])
    return _execute(batch, no_progress, full_summary, volume_lines)


def _grouped(errors: list[str]) -> list[str]:
    """Say once an error that every position met alike (``A/1/0, A/2/0: message``)."""
    keys: dict[str, list[str]] = {}
    for line in errors:
        key, sep, message = line.partition(": ")
        if not sep or "/" not in key or " " in key:
            keys.setdefault(line, [])
            continue
        keys.setdefault(message, []).append(key)
    out = []
    for message, where in keys.items():
        if not where:
            out.append(message)
        else:
            shown = ", ".join(where[:5]) + (f" and {len(where) - 5} more" if len(where) > 5 else "")
            out.append(f"{shown}: {message}")
    return out


def _say_where_a_link_leads(output: str | None) -> None:
    """Say first when OUTPUT is (or passes through) a symbolic link: it is written elsewhere."""
    from napari_process_position.store.paths import link_target

    target = link_target(output) if output else None
    if target is not None:
        click.echo(f"note: the output {output} is a link to {target}; writing there", err=True)


def _quiet_dask() -> None:
    """Keep Dask's INFO chatter (it configures its own loggers on import) out of the CLI.

    Warnings (a worker that died, a task that is retried) still show; -vv shows everything.
    """
    if logging.getLogger().getEffectiveLevel() <= logging.DEBUG:
        return
    try:
        import distributed  # noqa: F401  (its import sets its loggers' levels)
    except ImportError:
        return  # prepare_run() says how to install it
    for name in ("distributed", "dask_jobqueue", "bokeh", "tornado"):
        logging.getLogger(name).setLevel(logging.WARNING)


@main.command("init-output")
@_settings_options
def init_output(**opts: Any) -> None:
    """Create the output plate OUTPUT for INPUT once, before per-position jobs fill it.

    Takes the same settings as `run` (or its --config). Afterwards, independent
    jobs (a SLURM job array, Nextflow, ...) each run one position into it, e.g.
    `process-position run --config run.yaml --position A/1/0 --resume`; they
    change no plate metadata, so they never race on it. With --save-config the
    saved settings already have resume set, so the jobs need only --position.
    """
    _init_output(opts)


@guard
def _init_output(opts: dict[str, Any]) -> None:
    import numpy as np

    from napari_process_position.batch.prepare import prepare_run

    config = build_config(opts)
    local = config.model_copy(update={"dask_scheduler": None, "dask_local": None, "slurm": None})
    batch = prepare_run(local)
    batch.close()  # (nothing runs: the output's writer locks are released at once)
    _say_where_a_link_leads(config.output)
    layout = batch.layouts[batch.keys[0]]
    click.echo(
        f"output {config.output}: {len(batch.keys)} position(s), TCZYX {layout.shape} "
        f"{np.dtype(layout.dtype).name}, channels {', '.join(layout.channel_names)}"
    )
    job_config = config.model_copy(update={"resume": True, "overwrite": False, "positions": None})
    if opts.get("save_config") is not None:
        from napari_process_position.batch.config import command_line

        path = job_config.save(opts["save_config"])
        click.echo("run one position per job with:")
        click.echo(f"  {command_line(path, '--position', 'KEY')}")
    else:
        click.echo(
            "run one position per job with: process-position run ... --position KEY --resume"
        )
    click.echo(f"list the keys with: process-position positions {config.input}")


def _execute(
    batch: Any, no_progress: bool, full_summary: bool = False, volume_lines: bool = False
) -> int:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = Console(stderr=True)
    cfg = batch.config
    where = batch.start()
    terminated = _install_sigterm(batch)
    console.print(
        f"[bold]{batch.spec.display_name}[/] on {len(batch.keys)} position(s) of "
        f"{batch.store.path} "
        f"-> {cfg.output}  (on {where})",
        highlight=False,
    )
    if cfg.sample is not None:
        console.print(
            f"positions picked at random: --sample {cfg.sample} --seed {cfg.seed} "
            f"({', '.join(batch.keys[:6])}{' ...' if len(batch.keys) > 6 else ''})",
            highlight=False,
        )
    if batch.workers_reason and not logging.getLogger("napari_process_position").isEnabledFor(
        logging.INFO
    ):
        console.print(batch.workers_reason, highlight=False, soft_wrap=True)  # as logged
    start = time.perf_counter()
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        disable=no_progress,
        transient=False,
    )
    per_position = batch.volumes_per_position
    try:
        with progress:
            overall = progress.add_task("volumes", total=batch.total, rate="")
            pos_task = progress.add_task("positions", total=len(batch.keys), rate="")
            counts: dict[str, int] = {}
            for done, (key, result) in enumerate(batch, start=1):
                counts[key] = counts.get(key, 0) + 1
                if counts[key] == per_position:
                    progress.advance(pos_task)
                elapsed = time.perf_counter() - start
                progress.update(
                    overall,
                    advance=1,
                    rate=f"{done / max(elapsed, 1e-9):.1f} vol/s",
                    description=f"volumes ({key})",
                )
                if volume_lines:
                    console.print(f"{key} {result.label}: {result.status}", highlight=False)
    except KeyboardInterrupt:
        batch.cancel()
        console.print("[yellow]interrupted: completed volumes are kept; rerun with --resume[/]")
        return 130
    finally:
        batch.close()
    print_summary(console, list(batch.summaries.values()), full=full_summary)
    for line in _grouped(batch.errors):
        console.print(f"[red]error:[/] {line}", highlight=False, soft_wrap=True)
    if batch.not_started and (batch.failed or batch.cancelled or terminated()):
        console.print(f"not started: {len(batch.not_started)} position(s)", highlight=False)
    if terminated() or (batch.cancelled and not batch.failed):
        console.print("stopped early: completed volumes are kept; rerun with --resume to finish")
        return 143 if terminated() else 130
    if batch.failed:
        console.print("some positions failed; fix the cause and rerun with --resume to finish")
        return 1
    console.print(f"done in {time.perf_counter() - start:.1f} s: {cfg.output}", highlight=False)
    console.print(f"view it: process-position gui {cfg.output}", highlight=False)
    return 0
