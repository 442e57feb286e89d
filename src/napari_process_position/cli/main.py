"""The ``process-position`` command line."""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import signal
import sys
import time
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click

from napari_process_position.core.errors import ProcessPositionError

__all__ = [
    "SIGTERM_GRACE_S",
    "build_config",
    "demo_data",
    "gui",
    "init_output",
    "main",
    "parse_indices",
    "parse_params",
    "parse_value",
    "positions",
    "run",
    "transforms",
]

log = logging.getLogger("napari_process_position")


def _fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    raise SystemExit(code)


def _guard(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn expected errors into one line on stderr and a non-zero exit."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ProcessPositionError as exc:
            _fail(str(exc))
        except (ValueError, TypeError, IndexError, KeyError, OSError) as exc:
            text = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            _fail(f"{text}")

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="napari-process-position")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def main(verbose: int) -> None:
    """Preview a transform on one OME-Zarr position, then run it over every position."""
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(
        level=max(level, logging.DEBUG), format="%(levelname)s %(name)s: %(message)s"
    )


# -- demo-data / positions / transforms ----------------------------------------------


@main.command("demo-data")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
@click.option(
    "--shape", default="5,2,16,128,128", show_default=True, help="T,C,Z,Y,X of each position."
)
@click.option("--ome-version", type=click.Choice(["0.4", "0.5"]), default="0.5", show_default=True)
@_guard
def demo_data(out: Path, overwrite: bool, shape: str, ome_version: str) -> None:
    """Write a synthetic HCS plate (drifting cells, two channels, noise) to OUT."""
    from napari_process_position.store.demo import make_demo_plate

    try:
        dims = tuple(int(s) for s in shape.split(","))
    except ValueError:
        _fail(f"--shape must be five integers T,C,Z,Y,X, not {shape!r}")
    if len(dims) != 5 or min(dims) < 1:
        _fail(f"--shape must be five positive integers T,C,Z,Y,X, not {shape!r}")
    if out.exists() and not overwrite:
        _fail(f"{out} already exists; pass --overwrite to replace it")
    store = make_demo_plate(out, shape=dims, version=ome_version, overwrite=overwrite)  # type: ignore[arg-type]
    click.echo(f"wrote {store.path}: positions {', '.join(store.position_keys)}, TCZYX {dims}")


@main.command("positions")
@click.argument("store", type=click.Path(path_type=Path))
@click.option("--details", is_flag=True, help="Also print shape, dtype and channel names.")
@_guard
def positions(store: Path, details: bool) -> None:
    """List the positions of STORE, one key per line."""
    from napari_process_position.store.metadata import open_store, read_position

    info = open_store(store)
    for key in info.position_keys:
        if details:
            pos = read_position(info.position_path(key), key)
            shape = "x".join(map(str, pos.shape))
            click.echo(f"{key}\t{shape}\t{pos.dtype}\t{','.join(pos.channel_names)}")
        else:
            click.echo(key)
    if details:
        _echo_provenance(Path(info.path))


def _echo_provenance(store: Path) -> None:
    """Print how an output was made (its recorded settings), when it says."""
    import yaml

    from napari_process_position.batch.config import command_line
    from napari_process_position.store.provenance import read_provenance

    found = read_provenance(store)
    if found is None:
        return
    click.echo(
        f"made by napari-process-position {found.get('version', '?')} "
        f"at {found.get('written', '?')} with these settings:"
    )
    shown = {k: v for k, v in found["config"].items() if v is not None and k != "format_version"}
    text = yaml.safe_dump(shown, sort_keys=False).rstrip("\n")
    click.echo("\n".join(f"  {line}" for line in text.splitlines()))
    click.echo(f"run them again: {command_line(store, '--overwrite')}")


@main.command("transforms")
@_guard
def transforms() -> None:
    """List the transforms, one per line: name, parameters with defaults, summary."""
    from napari_process_position.transforms import list_transforms

    for spec in list_transforms():
        click.echo(f"{spec.name}({spec.signature_text()})  {spec.summary}  [{spec.source}]")


# -- run ------------------------------------------------------------------------------------


def _unwrap(hint: Any) -> Any:
    if typing.get_origin(hint) is typing.Annotated:
        return typing.get_args(hint)[0]
    return hint


def parse_value(text: str, hint: Any, name: str) -> Any:
    """Convert ``text`` to the type ``hint`` of parameter ``name``."""
    import yaml

    hint = _unwrap(hint)
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        choices = typing.get_args(hint)
        for choice in choices:
            if str(choice) == text:
                return choice
        raise ValueError(
            f"parameter {name!r} must be one of {', '.join(map(str, choices))}, not {text!r}"
        )
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if text.lower() in ("none", "null", "") and len(args) < len(typing.get_args(hint)):
            return None
        if len(args) == 1:
            return parse_value(text, args[0], name)
    try:
        if hint is bool:
            lowered = text.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if hint is int:
            return int(text)
        if hint is float:
            return float(text)
        if hint is str:
            return text
        if origin in (tuple, list) or hint in (tuple, list):
            items = [s for s in text.replace("(", "").replace(")", "").split(",") if s.strip()]
            item_args = typing.get_args(hint)
            item_hint = item_args[0] if item_args else float
            container: Any = hint if origin is None else origin
            return container(parse_value(s.strip(), item_hint, name) for s in items)
    except ValueError:
        tname = getattr(hint, "__name__", str(hint))
        raise ValueError(f"parameter {name!r} expects {tname}, not {text!r}") from None
    return yaml.safe_load(text)


def parse_params(spec: Any, items: tuple[str, ...]) -> dict[str, Any]:
    """``key=value`` strings -> parameters typed by the transform's hints."""
    hints = spec.type_hints()
    known = {p.name for p in spec.parameters()}
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--param takes key=value, not {item!r}")
        if key not in known:
            raise ValueError(
                f"transform {spec.name!r} has no parameter {key!r}; its parameters are: "
                f"{', '.join(sorted(known)) or 'none'}"
            )
        params[key] = parse_value(value, hints.get(key, inspect.Parameter.empty), key)
    return params


def parse_indices(text: str | None, what: str) -> list[int] | None:
    """``"0,2,4-6"`` -> ``[0, 2, 4, 5, 6]``; None or "all" -> None."""
    if text is None or text.strip().lower() in ("", "all"):
        return None
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo, hi = (int(p) for p in part.split("-", 1))
                if hi < lo:
                    raise ValueError
                out.extend(range(lo, hi + 1))
            else:
                out.append(int(part))
        except ValueError:
            raise ValueError(f"{what} must look like 0,2,4-6, not {text!r}") from None
    return out


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


_SETTINGS_OPTIONS = [
    click.argument("input_path", metavar="INPUT", required=False),
    click.argument("output_path", metavar="OUTPUT", required=False),
    click.option(
        "-t",
        "--transform",
        "transform_name",
        help="Transform name, module:function or file.py:function.",
    ),
    click.option(
        "-p",
        "--param",
        "params",
        multiple=True,
        metavar="KEY=VALUE",
        help="A transform parameter (repeatable).",
    ),
    click.option(
        "--position",
        "positions",
        multiple=True,
        metavar="KEY",
        help="Position key or glob (repeatable); default all.",
    ),
    click.option("--channels", help="Input channel indices, e.g. 0,2 or 0-1; default all."),
    click.option("--times", help="Input time indices, e.g. 0-3,7; default all."),
    click.option(
        "--resume",
        is_flag=True,
        default=None,
        help="Continue an interrupted run into OUTPUT (or join an init-output plate).",
    ),
    click.option("--overwrite", is_flag=True, default=None, help="Replace OUTPUT if it exists."),
    click.option(
        "--ome-version",
        type=click.Choice(["0.4", "0.5"]),
        default=None,
        help="OME-Zarr version to write (default 0.5).",
    ),
    click.option(
        "--config",
        "config_path",
        type=click.Path(path_type=Path),
        help="Run settings from a YAML file, or from an output plate made by `run` "
        "(the settings it records); flags override them.",
    ),
    click.option(
        "--save-config",
        type=click.Path(path_type=Path),
        help="Write the effective settings to this YAML file.",
    ),
    click.option(
        "-w",
        "--workers",
        type=int,
        help="Parallel workers on this machine (capped by the CPUs available).",
    ),
    click.option(
        "--threads/--processes",
        "use_threads",
        default=None,
        help="Threads or spawned processes (default processes).",
    ),
    click.option(
        "--dask-scheduler",
        metavar="ADDRESS",
        help="Run on an existing Dask cluster: tcp://host:8786 or a scheduler JSON file.",
    ),
    click.option(
        "--dask-local",
        type=int,
        metavar="N",
        help="Run on a Dask LocalCluster of N single-threaded worker processes.",
    ),
    click.option(
        "--no-dask",
        is_flag=True,
        help="Run on this machine even if the config names a Dask cluster or SLURM.",
    ),
    click.option(
        "--slurm",
        is_flag=True,
        default=None,
        help="Run on Dask workers in SLURM jobs (dask-jobqueue); see --slurm-* options.",
    ),
    click.option("--slurm-cores", type=int, help="CPU cores per SLURM job (default 4)."),
    click.option(
        "--slurm-processes", type=int, help="Dask worker processes per job (default one per core)."
    ),
    click.option("--slurm-memory", help="Memory per job, e.g. 16GB (default 16GB)."),
    click.option("--slurm-walltime", help="Time limit per job, HH:MM:SS (default 01:00:00)."),
    click.option("--slurm-partition", help="SLURM partition."),
    click.option("--slurm-account", help="SLURM account."),
    click.option("--slurm-jobs", type=int, help="SLURM jobs to keep running (default 1)."),
    click.option(
        "--slurm-job-extra",
        multiple=True,
        metavar="DIRECTIVE",
        help="Extra #SBATCH directive, e.g. --qos=normal (repeatable).",
    ),
    click.option("--slurm-interface", help="Network interface for workers, e.g. ib0."),
]

_SLURM_FIELDS = (
    "cores",
    "processes",
    "memory",
    "walltime",
    "partition",
    "account",
    "jobs",
    "job_extra",
    "interface",
)


def _settings_options(func: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_SETTINGS_OPTIONS):
        func = option(func)
    return func


def build_config(opts: dict[str, Any], *, need_output: bool = True) -> Any:
    """Build the RunConfig of a command line: the config file (if any), then the flags over it."""
    from napari_process_position.batch.config import RunConfig
    from napari_process_position.transforms import get_transform

    data: dict[str, Any] = {}
    if opts.get("config_path") is not None:
        data = RunConfig.load(opts["config_path"]).model_dump(exclude_none=False)
        data.pop("written_by", None)
    overrides = {
        "input": opts.get("input_path"),
        "output": opts.get("output_path"),
        "transform": opts.get("transform_name"),
        "positions": list(opts.get("positions") or ()) or None,
        "channels": parse_indices(opts.get("channels"), "--channels"),
        "times": parse_indices(opts.get("times"), "--times"),
        "num_workers": opts.get("workers"),
        "use_threads": opts.get("use_threads"),
        "resume": opts.get("resume"),
        "overwrite": opts.get("overwrite"),
        "ome_version": opts.get("ome_version"),
    }
    if opts.get("resume") and opts.get("overwrite"):
        _fail("--resume and --overwrite contradict each other; pick one")
    if opts.get("resume"):
        data["overwrite"] = False
    if opts.get("overwrite"):
        data["resume"] = False
    data.update({k: v for k, v in overrides.items() if v is not None})

    # Where the tasks run: a flag replaces whatever the config file chose.
    slurm_given = {f: opts.get(f"slurm_{f}") for f in _SLURM_FIELDS}
    slurm_given = {
        k: (list(v) if k == "job_extra" else v)
        for k, v in slurm_given.items()
        if v is not None and v != ()
    }
    wants_slurm = bool(opts.get("slurm")) or bool(slurm_given)
    chosen = [
        name
        for name, on in (
            ("--dask-scheduler", opts.get("dask_scheduler") is not None),
            ("--dask-local", opts.get("dask_local") is not None),
            ("--slurm", wants_slurm),
            ("--no-dask", opts.get("no_dask")),
        )
        if on
    ]
    if len(chosen) > 1:
        _fail(f"{' and '.join(chosen)} are alternatives (where the tasks run); give only one")
    if chosen:
        previous_slurm = data.get("slurm") or {}
        data.update(dask_scheduler=None, dask_local=None, slurm=None)
        if opts.get("dask_scheduler") is not None:
            data["dask_scheduler"] = opts["dask_scheduler"]
        elif opts.get("dask_local") is not None:
            data["dask_local"] = opts["dask_local"]
        elif wants_slurm:
            data["slurm"] = {**previous_slurm, **slurm_given}

    if "input" not in data:
        _fail("give INPUT (or --config FILE)")
    if "transform" not in data:
        _fail("give --transform NAME (see `process-position transforms`)")
    if need_output and not data.get("output"):
        _fail("give OUTPUT, the plate to write")
    if opts.get("params"):
        spec = get_transform(data["transform"])
        data["params"] = {**data.get("params", {}), **parse_params(spec, opts["params"])}
    return RunConfig.from_dict(data, "settings")


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
@click.option("--no-progress", is_flag=True, help="No progress bar (log lines only).")
def run(show_schema: bool, print_job_script: bool, no_progress: bool, **opts: Any) -> None:
    """Apply a transform to every (time, channel) volume of INPUT and write OUTPUT.

    INPUT is a plate (every position unless --position) or a single position;
    OUTPUT is a new plate with the same position keys. The tasks run on this
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
    raise SystemExit(_run(opts, no_progress))


@_guard
def _print_job_script(opts: dict[str, Any]) -> None:
    from napari_process_position.batch.slurm import slurm_job_script

    config = build_config(opts, need_output=False)
    _quiet_dask()
    if config.slurm is None:
        _fail("--print-job-script needs --slurm (or a config with a slurm section)")
    click.echo(slurm_job_script(config.slurm), nl=False)


@_guard
def _run(opts: dict[str, Any], no_progress: bool) -> int:
    from napari_process_position.batch.prepare import prepare

    config = build_config(opts)
    if config.uses_dask:
        _quiet_dask()
    batch = prepare(config)
    if opts.get("save_config") is not None:
        config.save(opts["save_config"])
    return _execute(batch, no_progress)


def _quiet_dask() -> None:
    """Keep Dask's INFO chatter (it configures its own loggers on import) out of the CLI.

    Warnings (a worker that died, a task that is retried) still show; -vv shows everything.
    """
    if logging.getLogger().getEffectiveLevel() <= logging.DEBUG:
        return
    try:
        import distributed  # noqa: F401  (its import sets its loggers' levels)
    except ImportError:
        return  # prepare() says how to install it
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


@_guard
def _init_output(opts: dict[str, Any]) -> None:
    import numpy as np

    from napari_process_position.batch.prepare import prepare

    config = build_config(opts)
    local = config.model_copy(update={"dask_scheduler": None, "dask_local": None, "slurm": None})
    batch = prepare(local)
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


def _execute(batch: Any, no_progress: bool) -> int:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.table import Table

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
                if no_progress:  # one plain line per volume, for job logs
                    console.print(f"{key} {result.label}: {result.status}", highlight=False)
    except KeyboardInterrupt:
        batch.cancel()
        console.print("[yellow]interrupted: completed volumes are kept; rerun with --resume[/]")
        return 130
    finally:
        batch.close()
    table = Table(title="Summary", show_lines=False)
    for col in ("position", "written", "skipped (empty)", "resumed", "failed", "seconds"):
        table.add_column(col, justify="right" if col != "position" else "left")
    for s in batch.summaries.values():
        table.add_row(
            s.key,
            str(s.written + s.preview),
            str(s.skipped),
            str(s.resumed),
            str(s.failed),
            f"{s.seconds:.1f}",
        )
    console.print(table)
    for line in batch.errors:
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


# -- gui ------------------------------------------------------------------------------------


@main.command("gui")
@click.argument("store", required=False, type=click.Path(path_type=Path))
def gui(store: Path | None) -> None:
    """Open napari with the Process position widget docked (and STORE picked)."""
    try:
        import napari
    except ImportError:
        _fail(
            'napari is not installed; install it with: pip install "napari-process-position[all]"'
        )
    from napari_process_position.widget import ProcessPositionWidget

    viewer = napari.Viewer(title="napari-process-position")
    widget = ProcessPositionWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Process position", area="right")
    if store is not None:
        widget.input_path.value = store.expanduser().resolve()
    napari.run()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
