"""The import contract: the engine never loads a GUI toolkit, a worker loads little.

Each check imports modules in a fresh interpreter and reads ``sys.modules``
there, so what this test process has already imported does not matter.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import pytest

import napari_process_position

PACKAGE = "napari_process_position"

#: The only modules allowed to import a GUI toolkit (docs/architecture.md, "Layers").
GUI_MODULES = {f"{PACKAGE}.widget"}

#: The packages docs/architecture.md names outside the widget; each must exist and stay GUI-free.
NAMED_ENGINE_MODULES = [
    PACKAGE,
    f"{PACKAGE}.core",
    f"{PACKAGE}.store",
    f"{PACKAGE}.engine",
    f"{PACKAGE}.engine.worker",
    f"{PACKAGE}.transforms",
    f"{PACKAGE}.batch",
    f"{PACKAGE}.cli",
]

#: Top-level packages the engine must never load.
GUI_PACKAGES = {
    "qtpy",
    "PyQt5",
    "PyQt6",
    "PySide2",
    "PySide6",
    "magicgui",
    "napari",
    "vispy",
    "superqt",
}

#: Packages a spawned worker has no use for: each one costs start-up time in every process.
WORKER_FORBIDDEN = {"zarr", "pydantic", "click", "rich", "yaml"}


def all_package_modules() -> list[str]:
    """Every module of the package, found on disk (so a new module is covered too)."""
    names = [PACKAGE]
    for info in pkgutil.walk_packages(napari_process_position.__path__, prefix=PACKAGE + "."):
        names.append(info.name)
    return sorted(names)


def engine_modules() -> list[str]:
    # (a GUI module may be a package: its submodules are GUI modules too)
    return [
        m
        for m in all_package_modules()
        if not any(m == g or m.startswith(g + ".") for g in GUI_MODULES)
        and m != f"{PACKAGE}._version"
    ]


def loaded_top_level(code: str) -> set[str]:
    """Top-level package names in ``sys.modules`` after running ``code`` in a new interpreter."""
    script = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, f"the import failed:\n{proc.stderr[-3000:]}"
    names = json.loads(proc.stdout.strip().splitlines()[-1])
    return {name.split(".")[0] for name in names}


def test_named_engine_modules_exist():
    found = set(all_package_modules())
    missing = [m for m in NAMED_ENGINE_MODULES if m not in found]
    assert not missing, f"modules named in docs/architecture.md are missing: {missing}"


@pytest.mark.parametrize("module", engine_modules())
def test_engine_module_imports_no_gui(module):
    loaded = loaded_top_level(f"import {module}")
    leaked = sorted(loaded & GUI_PACKAGES)
    assert not leaked, f"importing {module} loads {leaked}; only {sorted(GUI_MODULES)} may"


def test_all_engine_modules_together_import_no_gui():
    code = "\n".join(f"import {m}" for m in engine_modules())
    leaked = sorted(loaded_top_level(code) & GUI_PACKAGES)
    assert not leaked, f"importing the engine loads {leaked}"


def test_public_api_resolves_without_gui():
    # The package's lazy attributes import their modules on first use.
    code = f"import {PACKAGE} as p\nfor name in p.__all__:\n    getattr(p, name)\n"
    leaked = sorted(loaded_top_level(code) & GUI_PACKAGES)
    assert not leaked, f"resolving {PACKAGE}.__all__ loads {leaked}"


@pytest.mark.parametrize("module", ["engine.worker", "engine.measure"])
def test_worker_module_imports_little(module):
    # engine.measure runs in a spawned worker for `estimate` and `--workers auto`.
    loaded = loaded_top_level(f"import {PACKAGE}.{module}")
    heavy = sorted(loaded & (WORKER_FORBIDDEN | GUI_PACKAGES))
    assert not heavy, f"a spawned worker importing {PACKAGE}.{module} loads {heavy}"


def test_worker_resolving_a_builtin_transform_imports_little():
    # What a worker does for a built-in transform: import the worker module, then resolve
    # the reference it was sent.
    from napari_process_position.transforms import get_transform

    ref = get_transform("gaussian_blur").ref
    assert isinstance(ref, str), ref
    code = (
        f"from {PACKAGE}.engine.worker import resolve_transform\n"
        f"assert callable(resolve_transform({ref!r}))\n"
    )
    heavy = sorted(loaded_top_level(code) & (WORKER_FORBIDDEN | GUI_PACKAGES))
    assert not heavy, f"a worker resolving {ref} loads {heavy}"


def test_the_check_sees_a_gui_import():
    # The checks above read sys.modules of a child interpreter: make sure that works.
    assert "qtpy" in loaded_top_level("import qtpy")


def _module_name(path) -> str:
    from pathlib import Path

    src = Path(napari_process_position.__file__).parent.parent
    parts = list(Path(path).relative_to(src).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _subpackage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_no_module_takes_a_private_name_from_another_subpackage():
    """``from napari_process_position.engine.x import _helper`` in the widget: a hidden coupling.

    (The import-linter contracts in pyproject.toml check the layers; this checks names.)
    """
    import ast
    from pathlib import Path

    root = Path(napari_process_position.__file__).parent
    crossings = []
    for path in sorted(root.rglob("*.py")):
        module = _module_name(path)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom) or not node.module or node.level:
                continue
            if not node.module.startswith(PACKAGE + "."):
                continue
            other = _subpackage(node.module)
            if other == _subpackage(module):
                continue
            private_module = any(p.startswith("_") for p in node.module.split(".")[1:])
            names = [a.name for a in node.names if a.name.startswith("_")]
            if (private_module and node.module != f"{PACKAGE}._version") or names:
                crossings.append(f"{module}: from {node.module} import {names or '...'}")
    assert not crossings, "\n".join(crossings)


def test_the_private_name_check_sees_a_crossing(tmp_path):
    import ast

    code = "from napari_process_position.engine.position_run import _secret\n"
    node = ast.parse(code).body[0]
    assert isinstance(node, ast.ImportFrom) and node.names[0].name.startswith("_")
    assert _subpackage("napari_process_position.widget.live") != _subpackage(node.module)
