"""``--config STORE``: a run's settings read back from an output store, trusted only when asked.

A store can come from anyone (a plate received from a collaborator), and the
settings it records name a transform: ``file.py:function`` or
``module:function`` imports and calls code. So before anything is imported the
command says what would run, and runs code named by a store only when the user
confirms on a terminal or passes ``--yes``. Built-in transforms and installed
plug-ins (names without ``:``) run what the user installed, and need no
confirmation.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from napari_process_position.cli.main import fail

__all__ = ["confirm_store_code", "is_store", "target_the_store"]

#: A reference into this package itself is as safe as a built-in name.
_OWN_MODULE = "napari_process_position."


def is_store(config_path: Path | None) -> bool:
    """Tell whether ``--config`` names a store (a folder) rather than a YAML file."""
    return config_path is not None and Path(config_path).expanduser().is_dir()


def names_code(transform: str) -> bool:
    """Tell whether a transform reference imports code beyond this package and its plug-ins."""
    if ":" not in transform:
        return False  # a built-in or an installed plug-in's registered name
    return not transform.strip().startswith(_OWN_MODULE)


def on_a_terminal() -> bool:
    """Tell whether a person can answer on standard input."""
    return sys.stdin is not None and sys.stdin.isatty()


def _same(a: str, b: Path) -> bool:
    return os.path.realpath(os.path.expanduser(a)) == os.path.realpath(b.expanduser())


def target_the_store(store: Path, data: dict[str, Any], output_given: bool) -> None:
    """Make the run's output the store named, not the output path it records.

    A store moved or copied since it was written records its old path; a
    ``--overwrite`` or ``--resume`` from its settings must act on the store
    the user named, never on whatever now stands at the recorded path.
    """
    if output_given:
        return
    recorded = data.get("output")
    data["output"] = str(store)
    if recorded and not _same(recorded, store):
        click.echo(
            f"note: {store} records its output as {recorded} (moved or copied since); "
            f"this run's output is {store}, the store named",
            err=True,
        )


def confirm_store_code(store: Path, data: dict[str, Any], yes: bool) -> None:
    """Say what the settings recorded in ``store`` run; ask before importing code they name.

    Raises ``SystemExit`` (through :func:`fail`) when the code is not confirmed.
    """
    transform = str(data.get("transform", ""))
    outside = names_code(transform)
    target, _, function = transform.rpartition(":")
    if not outside:
        what = f"{transform} (built-in or installed plug-in)"
    elif target.endswith(".py") or os.sep in target:
        what = f"function {function!r} of the Python file {target}"
    else:
        what = f"function {function!r} of the Python module {target!r}"
    click.echo(
        f"settings recorded in {store}: transform {what}, input {data.get('input')}, "
        f"output {data.get('output') or '(none)'}",
        err=True,
    )
    if not outside or yes:
        return
    if on_a_terminal():
        if click.confirm(
            "These settings come from a store, which anyone may have written. Import and run "
            f"{transform!r}?",
            default=False,
            err=True,
        ):
            return
        fail("not confirmed: nothing was imported, run or written")
    fail(
        f"the settings recorded in {store} would import and run {transform!r}; read that code, "
        "then pass --yes to run it (nothing was imported, run or written)"
    )
