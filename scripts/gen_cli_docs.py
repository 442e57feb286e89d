"""Generate the command line reference (``cli.md``) from the click group itself.

mkdocs loads this file as a hook (``hooks:`` in ``mkdocs.yml``): every build renders
``process-position --help`` and the ``--help`` of each sub-command, walked from
``napari_process_position.cli:main``, into the page ``cli.md``. No copy of the help
text lives in the repository, so the reference cannot go stale, and a new command or
option appears in the docs by itself.

Run it alone to print the page::

    python scripts/gen_cli_docs.py
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import click

PROG = "process-position"
# Help text is wrapped as in a terminal this wide (it fits the page's code blocks);
# fixed so that a build does not depend on the terminal it runs in.
WIDTH = 80
PAGE = "cli.md"

INTRO = f"""\
# Command line reference

`{PROG}` is installed with the package. Each section below is the command's own
`--help`, generated from the code when this site was built, so it always matches the
installed version. [Getting started](getting-started.md) shows the commands in use, and
[batch and cluster runs](batch.md) the `run` options for Dask and SLURM.

Exit codes: 0 on success; 1 on bad input (a missing store, an unknown transform, ...), with
one line starting with `error:` that says what is wrong; 2 on a mistake in the command itself
(an unknown option, a missing argument). `run` also exits with 1 when a position failed, 130
when interrupted (Ctrl-C) and 143 on SIGTERM.
"""


def _main_group() -> click.Group:
    from napari_process_position.cli import main

    return main


def _root_context(group: click.Command) -> click.Context:
    settings: dict[str, Any] = dict(group.context_settings)
    settings["terminal_width"] = WIDTH
    return click.Context(group, info_name=PROG, **settings)


def iter_commands(
    ctx: click.Context,
) -> Iterator[tuple[str, click.Command, click.Context]]:
    """Yield ``(full name, command, context)`` for every command below ``ctx``, depth first."""
    group = ctx.command
    if not isinstance(group, click.Group):
        return
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is None or command.hidden:
            continue
        sub = click.Context(command, info_name=name, parent=ctx)
        yield sub.command_path, command, sub
        yield from iter_commands(sub)


def command_names(group: click.Command | None = None) -> list[str]:
    """Full names (``process-position run``) of every visible sub-command."""
    ctx = _root_context(group or _main_group())
    return [name for name, _, _ in iter_commands(ctx)]


def _section(title: str, anchor: str, command: click.Command, ctx: click.Context) -> str:
    help_text = command.get_help(ctx).rstrip()
    return f"## `{title}` {{#{anchor}}}\n\n```text\n{help_text}\n```\n"


def render(group: click.Command | None = None) -> str:
    """Return the Markdown of the command line reference page."""
    root = _root_context(group or _main_group())
    parts = [INTRO]
    commands = list(iter_commands(root))
    parts.append("| command | what it does |\n| --- | --- |")
    for name, command, _ in commands:
        anchor = _anchor(name)
        parts[-1] += f"\n| [`{name}`](#{anchor}) | {command.get_short_help_str(limit=90)} |"
    parts[-1] += "\n"
    parts.append(_section(PROG, "process-position", root.command, root))
    for name, command, ctx in commands:
        parts.append(_section(name, _anchor(name), command, ctx))
    return "\n".join(parts)


def _anchor(full_name: str) -> str:
    # "process-position run" -> "run"; nested groups keep their path: "group-sub".
    return "-".join(full_name.split()[1:]) or PROG


# -- mkdocs hook ----------------------------------------------------------------------


def on_files(files: Any, config: Any) -> Any:
    """Add the generated ``cli.md`` to the site (mkdocs hook)."""
    from mkdocs.exceptions import PluginError
    from mkdocs.structure.files import File

    if files.get_file_from_path(PAGE) is not None:
        raise PluginError(
            f"docs/{PAGE} exists, but the command line reference is generated at build "
            f"time by scripts/gen_cli_docs.py: delete docs/{PAGE}"
        )
    files.append(File.generated(config, PAGE, content=render()))
    return files


if __name__ == "__main__":
    print(render(), end="")
