"""The ``process-position`` command group, and how a command reports a failure.

Every command prints one ``error:`` line and exits non-zero for an error of
this package (:class:`ProcessPositionError`); anything else is a bug and
shows its traceback.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, NoReturn

import click

from napari_process_position.core.errors import ProcessPositionError

__all__ = ["fail", "guard", "main"]


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    click.echo(f"error: {message}", err=True)
    raise SystemExit(code)


def guard(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn this package's errors into one line on stderr and exit code 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ProcessPositionError as exc:
            fail(str(exc))

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
