"""Commands that look: demo-data, positions (with how an output was made), transforms."""

from __future__ import annotations

from pathlib import Path

import click

from napari_process_position.cli.main import fail, guard, main
from napari_process_position.core.errors import ProcessPositionError

__all__ = ["demo_data", "positions", "transforms"]


@main.command("demo-data")
@click.argument("out", type=click.Path(path_type=Path))
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace OUT if process-position wrote it (anything else there is refused).",
)
@click.option(
    "--shape", default="5,2,16,128,128", show_default=True, help="T,C,Z,Y,X of each position."
)
@click.option(
    "--wells",
    metavar="ROWSxCOLS",
    help="A plate of ROWS x COLS wells with one field each (e.g. 3x3); "
    "default: wells A/1, A/2 and B/1.",
)
@click.option("--ome-version", type=click.Choice(["0.4", "0.5"]), default="0.5", show_default=True)
@guard
def demo_data(out: Path, overwrite: bool, shape: str, wells: str | None, ome_version: str) -> None:
    """Write a synthetic HCS plate (drifting cells, two channels, noise) to OUT."""
    from napari_process_position.core.errors import InvalidArgumentError
    from napari_process_position.store.demo import (
        DEMO_POSITIONS,
        check_demo_shape,
        make_demo_plate,
    )

    try:
        dims = check_demo_shape(tuple(int(s) for s in shape.split(",")))
    except (ValueError, InvalidArgumentError) as exc:
        reason = str(exc) if isinstance(exc, InvalidArgumentError) else "not integers"
        fail(f"--shape {shape!r}: {reason}")
    positions: tuple[str, ...] = DEMO_POSITIONS
    if wells is not None:
        rows, _, cols = wells.lower().partition("x")
        if not (
            rows.isdigit() and cols.isdigit() and 1 <= int(rows) <= 26 and 1 <= int(cols) <= 99
        ):
            fail(f"--wells {wells!r}: give ROWSxCOLS, e.g. 3x3 (1 to 26 rows, 1 to 99 columns)")
        positions = tuple(
            f"{chr(65 + r)}/{c + 1}/0" for r in range(int(rows)) for c in range(int(cols))
        )
    try:
        store = make_demo_plate(
            out, shape=dims, positions=positions, version=ome_version, overwrite=overwrite
        )
    except ProcessPositionError:
        raise  # one line, from guard (an existing OUT is an OSError too)
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror or exc}")
    click.echo(f"wrote {store.path}: positions {', '.join(store.position_keys)}, TCZYX {dims}")


@main.command("positions")
@click.argument("store", type=click.Path(path_type=Path))
@click.option(
    "--details",
    is_flag=True,
    help="Also print axes, shape, dtype and channel names, and each position's resolution "
    "levels, labels and tables (a run reads level 0 and writes none of the others).",
)
@guard
def positions(store: Path, details: bool) -> None:
    """List the positions of STORE, one key per line."""
    from napari_process_position.store.contents import position_contents, store_tables
    from napari_process_position.store.metadata import open_store, read_position

    info = open_store(store)
    for key in info.position_keys:
        if details:
            pos = read_position(info.position_path(key), key)
            axes = pos.array_axes
            shape = "x".join(str(n) for n, a in zip(pos.shape, "tczyx", strict=True) if a in axes)
            click.echo(f"{key}\t{axes.upper()} {shape}\t{pos.dtype}\t{','.join(pos.channel_names)}")
            contents = position_contents(pos)
            levels = [f"{contents.levels[0]} (read)", *contents.levels[1:]]
            click.echo(f"  levels: {', '.join(levels)}")
            for kind, names in (("labels", contents.labels), ("tables", contents.tables)):
                if names:
                    click.echo(f"  {kind} (not in outputs): {', '.join(names)}")
        else:
            click.echo(key)
    if details and info.kind == "plate" and store_tables(info.path):
        click.echo(f"plate tables (not in outputs): {', '.join(store_tables(info.path))}")
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
@guard
def transforms() -> None:
    """List the transforms, one per line: name, parameters with defaults, summary."""
    from napari_process_position.transforms import list_transforms

    for spec in list_transforms():
        click.echo(f"{spec.name}({spec.signature_text()})  {spec.summary}  [{spec.source}]")
