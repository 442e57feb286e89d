"""The examples of README.md and docs/ run as tests (Sybil collects them; see CONTRIBUTING.md).

Each page runs in its own scratch folder, in page order, starting from what the README's Quick
start leaves (``demo.zarr`` and ``demo-blur.zarr``); ``process-position``, ``python`` and
``.venv/bin/process-position`` there run this checkout's code. What each kind of block does:

- ``bash``: run with ``bash -e -o pipefail``; it must exit 0.
- ``console``: each ``$ command`` is run; the lines after it are its output, checked loosely
  (whitespace squashed, ``...`` elides, decimal numbers such as timings match any, lines of
  box drawing are ignored). A command whose output starts with ``error:`` or ``Traceback``
  must fail.
- ``python``: run as a script in a fresh interpreter. ``python title="FILE"`` is written to
  FILE instead, for a later block to import or run.
- ``text`` right after a ``bash`` or ``python`` block: that block's output, checked as above.
  With ``<!-- numbers vary -->`` between the two (a measurement: sizes, counts of CPUs or
  workers), every number in it matches any number.
- ``<!-- skip: next "reason" -->`` before a block skips it, visibly, with the reason.
"""

from __future__ import annotations

import atexit
import functools
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import pytest
from sybil import Document, Example, Sybil
from sybil.parsers.markdown import SkipParser
from sybil.parsers.markdown.lexers import FencedCodeBlockLexer

ROOT = Path(__file__).resolve().parent
#: The folder the docs' printed outputs were recorded in; replaced by the scratch folder.
DOCS_SCRATCH = "/tmp/scratch/example"
#: The pages whose examples run.
PAGES = [
    "README.md",
    "docs/getting-started.md",
    "docs/batch.md",
    "docs/transforms.md",
    "docs/widget.md",
    "docs/iohub.md",
    "docs/api.md",
    "docs/formats.md",
    "docs/failures.md",
    "docs/sizing.md",
]
#: Between a block and its ``text`` output: the output's numbers are measurements.
NUMBERS_VARY = "<!-- numbers vary -->"


def _shell(command: str, cwd: Path, *, fails: bool = False) -> str:
    """Run ``command`` with bash in ``cwd``; return stdout and stderr.

    An exit code other than 0 raises, or with ``fails`` an exit code of 0 does.
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "NO_COLOR": "1", "COLUMNS": "100"}
    env["PATH"] = f"{cwd / '.venv' / 'bin'}{os.pathsep}{env['PATH']}"
    done = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", command.replace(DOCS_SCRATCH, str(cwd))],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
    )
    if (done.returncode != 0) != fails:
        expected = "a failure" if fails else "exit 0"
        raise AssertionError(
            f"exit {done.returncode} ({expected} expected) from:\n{command}\n"
            f"--- output:\n{done.stdout}"
        )
    return done.stdout


def _squash(text: str) -> str:
    return " ".join(text.split())


def _missing_lines(expected: str, actual: str, cwd: Path, *, any_number: bool = False) -> list[str]:
    """Return the expected lines that the actual output lacks (see the module docstring)."""
    haystack = _squash(actual)
    missing = []
    for line in expected.replace(DOCS_SCRATCH, str(cwd)).splitlines():
        line = _squash(line)
        if not re.search(r"\w", line) or line.startswith("..."):
            continue
        pattern = re.escape(line).replace(r"\.\.\.", ".*")
        number = r"\d+(\\\.\d+)?" if any_number else r"\d+\\\.\d+"
        pattern = re.sub(number, r"[\\d.]+", pattern)
        if not re.search(pattern, haystack):
            missing.append(line)
    return missing


def _write_shims(folder: Path) -> None:
    """``process-position`` and ``python`` in ``folder/.venv/bin``: this checkout's code."""
    bin_dir = folder / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    python = shlex.quote(sys.executable)
    shims = {
        "process-position": f'exec {python} -m napari_process_position.cli "$@"\n',
        "python": f'exec {python} "$@"\n',
    }
    for name, body in shims.items():
        path = bin_dir / name
        path.write_text("#!/bin/sh\n" + body, encoding="utf-8")
        path.chmod(0o755)


@functools.cache
def _quick_start_state() -> Path:
    """Make a folder with what the Quick start writes, once per test session."""
    folder = Path(tempfile.mkdtemp(prefix="npp-qs-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    _write_shims(folder)
    _shell("process-position demo-data demo.zarr", folder)
    _shell("process-position run demo.zarr demo-blur.zarr -t gaussian_blur -w 2", folder)
    return folder


def _setup(namespace: dict) -> None:
    scratch = Path(tempfile.mkdtemp(prefix="npp-docs-"))
    for name in ("demo.zarr", "demo-blur.zarr"):
        shutil.copytree(_quick_start_state() / name, scratch / name)
    _write_shims(scratch)
    namespace["scratch"] = scratch


def _teardown(namespace: dict) -> None:
    shutil.rmtree(namespace["scratch"], ignore_errors=True)


def _remember(example: Example, output: str) -> None:
    example.namespace["last_output"] = (example.region.end, output)


def _run_bash(example: Example) -> None:
    source, _ = example.parsed
    _remember(example, _shell(source, example.namespace["scratch"]))


def _run_python(example: Example) -> None:
    source, attrs = example.parsed
    scratch = example.namespace["scratch"]
    if "title" in attrs:  # a file for later blocks
        (scratch / attrs["title"]).write_text(source, encoding="utf-8")
        return
    script = scratch / f"_example_line_{example.line}.py"
    script.write_text(source, encoding="utf-8")
    _remember(example, _shell(f"python {script.name}", scratch))


def _run_console(example: Example) -> str | None:
    source, _ = example.parsed
    scratch = example.namespace["scratch"]
    sessions: list[tuple[str, list[str]]] = []
    for line in source.splitlines():
        if line.startswith("$ "):
            sessions.append((line[2:], []))
        elif sessions:
            sessions[-1][1].append(line)
    for command, lines in sessions:
        expected = "\n".join(lines)
        fails = expected.startswith(("error:", "Traceback"))
        output = _shell(command, scratch, fails=fails)
        missing = _missing_lines(expected, output, scratch)
        if missing:
            lines = "\n".join(missing)
            return f"$ {command}\nexpected lines not in the output:\n{lines}\n---\n{output}"
    return None


def _check_text(example: Example) -> str | None:
    """Check a ``text`` block right after a block that ran: it is that block's output."""
    source, _ = example.parsed
    end, output = example.namespace.get("last_output", (-1, ""))
    between = example.document.text[end : example.region.start].strip()
    if end < 0 or between not in ("", NUMBERS_VARY):
        return None  # not an output: text of its own
    scratch = example.namespace["scratch"]
    missing = _missing_lines(source, output, scratch, any_number=between == NUMBERS_VARY)
    if missing:
        return "expected lines not in the output:\n" + "\n".join(missing) + f"\n---\n{output}"
    return None


EVALUATORS = {
    "bash": _run_bash,
    "console": _run_console,
    "python": _run_python,
    "text": _check_text,
}


class DocsBlockParser:
    """Fenced blocks of the languages in ``EVALUATORS``, with their ``key="value"`` options."""

    def __init__(self) -> None:
        self.lexer = FencedCodeBlockLexer(
            language=r".+", mapping={"language": "arguments", "source": "source"}
        )

    def __call__(self, document: Document):  # noqa: D102
        for region in self.lexer(document):
            info = str(region.lexemes["arguments"])
            evaluator = EVALUATORS.get(info.split()[0])
            if evaluator is None:
                continue
            attrs = dict(re.findall(r'(\w+)="([^"]*)"', info))
            region.parsed = (str(region.lexemes["source"]), attrs)
            region.evaluator = evaluator
            yield region


pytest_collect_file = Sybil(
    parsers=[DocsBlockParser(), SkipParser()],
    patterns=PAGES,
    setup=_setup,
    teardown=_teardown,
).pytest()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    """Report a skipped block with its page, line and reason."""
    try:
        return (yield)
    except unittest.SkipTest as skip:
        example = getattr(item, "example", None)
        if example is None:
            raise
        pytest.skip(f"{Path(example.path).relative_to(ROOT)} line {example.line}: {skip}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the docs' examples ``slow``: they run the command line in fresh processes."""
    for item in items:
        if hasattr(item, "example"):
            item.add_marker(pytest.mark.slow)
