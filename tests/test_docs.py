"""The documentation's generated and hand-written parts agree with the code.

Quick checks that need neither mkdocs nor a site build (scripts/build_docs.sh does the
full `mkdocs build --strict`): the command line reference covers every command and option
of the click group, the API page every public name, and the Quick start of the README is
the one of the getting-started page.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import click
import pytest
import yaml
from click.testing import CliRunner

import napari_process_position
from napari_process_position.cli import main

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _load_script(name: str) -> ModuleType:
    path = ROOT / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"npp_docs_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cli_page() -> str:
    return _load_script("gen_cli_docs").render()


def _walk(group: click.Group, prefix: tuple[str, ...] = ()):
    """Every visible sub-command as (names, command), straight from the click objects."""
    for name, command in sorted(group.commands.items()):
        if command.hidden:
            continue
        yield (*prefix, name), command
        if isinstance(command, click.Group):
            yield from _walk(command, (*prefix, name))


def _squash(text: str) -> str:
    return " ".join(text.split())


def test_cli_reference_has_a_section_for_every_command(cli_page: str) -> None:
    commands = list(_walk(main))
    assert len(commands) >= 6  # demo-data, positions, transforms, run, init-output, gui
    headings = set(re.findall(r"^## `([^`]+)`", cli_page, flags=re.MULTILINE))
    for names, _ in commands:
        assert "process-position " + " ".join(names) in headings


def test_cli_reference_lists_every_option(cli_page: str) -> None:
    for names, command in _walk(main):
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                for opt in param.opts + param.secondary_opts:
                    assert opt in cli_page, f"{' '.join(names)}: {opt} missing"


def test_cli_reference_is_the_help_the_command_prints(cli_page: str) -> None:
    """Each section is what `process-position NAME --help` prints (wrapping aside)."""
    runner = CliRunner()
    page = _squash(cli_page)
    for names, _ in _walk(main):
        result = runner.invoke(main, [*names, "--help"], prog_name="process-position")
        assert result.exit_code == 0, result.output
        assert _squash(result.output) in page, f"{' '.join(names)} --help differs"


def test_api_reference_covers_every_public_name() -> None:
    api = (DOCS / "api.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^::: napari_process_position\.(\w+)\s*$", api, re.MULTILINE))
    public = {name for name in napari_process_position.__all__ if not name.startswith("_")}
    assert public - documented == set(), "public names missing from docs/api.md"


def _quick_start(markdown: str) -> str:
    """The first bash code block after the first mention of the setup script."""
    start = markdown.index("bash scripts/setup.sh")
    block = markdown.rfind("```bash", 0, start)
    end = markdown.index("```", start)
    return markdown[block:end]


def test_readme_quick_start_is_the_getting_started_one() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert section.count("```bash") == 1, "the Quick start keeps one code block"
    assert "bash scripts/test.sh" in _quick_start(section)
    guide = (DOCS / "getting-started.md").read_text(encoding="utf-8")
    assert _quick_start(section) == _quick_start(guide)


def test_docs_config_builds_offline() -> None:
    """No web fonts and no plugin that downloads (the build machines have no network)."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    assert config["theme"]["font"] is False
    plugins = {next(iter(p)) if isinstance(p, dict) else p for p in config["plugins"]}
    assert plugins <= {"search", "mkdocstrings"}
    handler = config["plugins"][1]["mkdocstrings"]["handlers"]["python"]
    assert "inventories" not in handler  # other projects' objects.inv would be fetched
    assert "scripts/gen_cli_docs.py" in config["hooks"]
    assert "cli.md" in [next(iter(entry.values())) for entry in config["nav"]]


def test_sphinx_roles_become_links_or_code() -> None:
    pytest.importorskip("griffe")
    roles = _load_script("docs_griffe_roles")
    text = roles.rewrite(
        "See :func:`stream_position`, :meth:`PositionRun.cancel`, "
        ":class:`~napari_process_position.core.tasks.Result` and :func:`_private_helper`."
    )
    assert "[`stream_position`][napari_process_position.stream_position]" in text
    assert "[`PositionRun.cancel`][napari_process_position.PositionRun.cancel]" in text
    assert "[`Result`][napari_process_position.Result]" in text
    assert "`_private_helper`" in text and "][napari_process_position._private" not in text
    assert ":func:" not in text and ":class:" not in text


#: Public functions that never raise (their docstrings say so in Notes).
NEVER_RAISE = {"available_cpus", "list_transforms"}


def test_every_public_function_documents_returns_and_raises() -> None:
    """numpydoc ``Returns`` and ``Raises`` sections on every function of ``__all__``."""
    import inspect

    missing = []
    for name in napari_process_position.__all__:
        obj = getattr(napari_process_position, name)
        if not inspect.isfunction(obj):
            continue
        doc = inspect.getdoc(obj) or ""
        if "Returns\n-------" not in doc:
            missing.append(f"{name}: Returns")
        if name in NEVER_RAISE:
            assert "Never raises" in doc, name
        elif "Raises\n------" not in doc:
            missing.append(f"{name}: Raises")
    assert not missing, missing


def test_sizing_page_is_in_the_nav_and_its_report_is_the_command_s() -> None:
    """docs/sizing.md quotes a real estimate: its lines are the ones Estimate.lines() writes."""
    import json

    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    assert "sizing.md" in [next(iter(entry.values())) for entry in config["nav"]]
    page = (DOCS / "sizing.md").read_text(encoding="utf-8")
    report = page.split("```text\n", 1)[1].split("```", 1)[0].splitlines()
    prefixes = ["gaussian_blur on ", "per volume: ", "selection: ", "budget: ", "workers: "]
    prefixes += ["projected: ", "advice: ", "RESOURCES:"]
    assert len(report) == len(prefixes)
    for line, prefix in zip(report, prefixes, strict=True):
        assert line.startswith(prefix), (line, prefix)
    resources = json.loads(report[-1].removeprefix("RESOURCES:"))
    assert set(resources) == {"cpus", "mem_gb", "time_minutes"}
    assert all(isinstance(v, int) for v in resources.values())


def test_every_page_s_examples_run() -> None:
    """Each page with shell or Python blocks is run by the root conftest.py (Sybil).

    The examples themselves run as the items of ``pytest README.md docs/`` (``testpaths``).
    """
    spec = importlib.util.spec_from_file_location("npp_docs_conftest", ROOT / "conftest.py")
    assert spec is not None and spec.loader is not None
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)
    fence = re.compile(r"^ *```(bash|console|python)\b", re.MULTILINE)
    pages = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
    with_examples = {str(p.relative_to(ROOT)) for p in pages if fence.search(p.read_text("utf-8"))}
    assert with_examples <= set(conftest.PAGES)
    for page in conftest.PAGES:
        text = (ROOT / page).read_text(encoding="utf-8")
        for reason in re.findall(r"<!-- skip: next (.*?) -->", text):
            assert reason.startswith('"') and len(reason) > 10, (page, reason)


def test_the_quick_start_is_not_run_by_the_docs_tests() -> None:
    """It installs .venv and runs scripts/test.sh: the docs tests start from what it writes."""
    for page in (ROOT / "README.md", DOCS / "getting-started.md"):
        text = page.read_text(encoding="utf-8")
        block = text.rfind("```bash", 0, text.index("bash scripts/setup.sh"))
        assert text[:block].rstrip().endswith("-->")
        assert "<!-- skip: next " in text[:block].rstrip().rsplit("\n", 1)[-1]
