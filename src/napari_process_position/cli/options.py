"""The settings options that run and init-output share, and the RunConfig they build.

A config file (or an output plate's recorded settings) comes first, the flags
override it; the result is validated by :class:`RunConfig` like any config.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from napari_process_position.cli.main import fail
from napari_process_position.core.errors import TransformParameterError
from napari_process_position.core.ranges import parse_ranges

__all__ = ["build_config", "parse_params"]


def parse_params(spec: Any, items: tuple[str, ...]) -> dict[str, Any]:
    """``key=value`` strings -> parameters typed by the transform's hints.

    Raises
    ------
    TransformParameterError
        ``key=value`` malformed, an unknown key, or a value the annotation
        does not take.
    """
    from napari_process_position.transforms.params import parse_text

    hints = spec.type_hints()
    known = {p.name: p for p in spec.parameters()}
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise TransformParameterError(f"--param takes key=value, not {item!r}")
        if key not in known:
            raise TransformParameterError(
                f"transform {spec.name!r} has no parameter {key!r}; its parameters are: "
                f"{', '.join(sorted(known)) or 'none'}"
            )
        hint = hints.get(key, known[key].annotation)
        params[key] = parse_text(value, hint, transform=spec.name, name=key)
    return params


class _Workers(click.ParamType):
    """``--workers``: a count, or ``auto``."""

    name = "N|auto"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, int) or (isinstance(value, str) and value.strip().lower() == "auto"):
            return value if isinstance(value, int) else "auto"
        try:
            return int(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of workers or 'auto'", param, ctx)


class _Size(click.ParamType):
    """``--memory-limit``: an amount such as 8GB, 512MiB, 2G or plain bytes."""

    name = "SIZE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from napari_process_position.core.errors import InvalidArgumentError
        from napari_process_position.core.sizes import parse_size

        try:
            parse_size(value, "--memory-limit")
        except InvalidArgumentError as exc:
            self.fail(str(exc), param, ctx)
        return str(value).strip()


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
    click.option(
        "--sample",
        type=click.IntRange(min=1),
        metavar="N",
        help="Run on N of the positions (those --position picks), picked at random.",
    ),
    click.option(
        "--seed",
        type=click.IntRange(min=0),
        metavar="S",
        help="Seed of --sample's pick (default: a new one, printed and recorded).",
    ),
    click.option("--channels", help="Input channel indices, e.g. 0,2 or 0-1; default all."),
    click.option("--times", help="Input time indices, e.g. 0-3,7; default all."),
    click.option(
        "--resume",
        is_flag=True,
        default=None,
        help="Continue an interrupted run into OUTPUT (or join an init-output plate).",
    ),
    click.option(
        "--overwrite",
        is_flag=True,
        default=None,
        help="Replace OUTPUT if process-position wrote it (anything else there is refused).",
    ),
    click.option(
        "--ome-version",
        type=click.Choice(["0.4", "0.5"]),
        default=None,
        help="OME-Zarr version to write (default 0.5).",
    ),
    click.option(
        "--pyramid-levels",
        metavar="N|auto",
        default=None,
        help="Resolution levels to write: each volume's 2x mean downsamplings over Z, Y and X "
        "(as iohub's compute_pyramid), in the same run; 'auto': until Y and X are at most 512 "
        "(default 1: full resolution only).",
    ),
    click.option(
        "--config",
        "config_path",
        type=click.Path(path_type=Path),
        help="Run settings from a YAML file, or from an output plate made by `run` "
        "(the settings it records); flags override them.",
    ),
    click.option(
        "--yes",
        is_flag=True,
        default=None,
        help="With --config STORE: run the transform file or module its settings name without "
        "asking (read that code first: a store can come from anyone).",
    ),
    click.option(
        "--save-config",
        type=click.Path(path_type=Path),
        help="Write the effective settings to this YAML file.",
    ),
    click.option(
        "-w",
        "--workers",
        type=_Workers(),
        help="Parallel workers on this machine (capped by the CPUs available), or 'auto': as "
        "many as the CPUs and the memory allow, from one task measured first.",
    ),
    click.option(
        "--memory-limit",
        type=_Size(),
        help="Memory limit of each process or Dask worker, e.g. 8GB, 512MiB, 2G; a task that "
        "needs more fails with an out-of-memory error.",
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
    from napari_process_position.cli.store_settings import (
        confirm_store_code,
        is_store,
        target_the_store,
    )
    from napari_process_position.transforms import get_transform

    data: dict[str, Any] = {}
    store = opts.get("config_path") if is_store(opts.get("config_path")) else None
    if opts.get("config_path") is not None:
        data = RunConfig.load(opts["config_path"]).model_dump(exclude_none=False)
        data.pop("written_by", None)
    overrides = {
        "input": opts.get("input_path"),
        "output": opts.get("output_path"),
        "transform": opts.get("transform_name"),
        "positions": list(opts.get("positions") or ()) or None,
        "sample": opts.get("sample"),
        "seed": opts.get("seed"),
        "channels": parse_ranges(opts.get("channels"), "channel"),
        "times": parse_ranges(opts.get("times"), "time point"),
        "num_workers": opts.get("workers"),
        "memory_limit": opts.get("memory_limit"),
        "use_threads": opts.get("use_threads"),
        "resume": opts.get("resume"),
        "overwrite": opts.get("overwrite"),
        "ome_version": opts.get("ome_version"),
        "pyramid_levels": opts.get("pyramid_levels"),
    }
    if opts.get("resume") and opts.get("overwrite"):
        fail("--resume and --overwrite contradict each other; pick one")
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
        fail(f"{' and '.join(chosen)} are alternatives (where the tasks run); give only one")
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
        fail("give INPUT (or --config FILE)")
    if "transform" not in data:
        fail("give --transform NAME (see `process-position transforms`)")
    if store is not None:  # (nothing it names is imported before the user agrees)
        if need_output:
            target_the_store(store, data, output_given=opts.get("output_path") is not None)
        confirm_store_code(store, data, yes=bool(opts.get("yes")))
    if need_output and not data.get("output"):
        fail("give OUTPUT, the plate to write")
    if opts.get("params"):
        spec = get_transform(data["transform"])
        data["params"] = {**data.get("params", {}), **parse_params(spec, opts["params"])}
    return RunConfig.from_dict(data, "settings")
