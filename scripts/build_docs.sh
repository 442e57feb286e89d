#!/usr/bin/env bash
# Build the documentation site (mkdocs.yml, docs/) with warnings as errors:
#
#   bash scripts/build_docs.sh                    # into build/site (open build/site/index.html)
#   bash scripts/build_docs.sh --site-dir DIR     # elsewhere; other arguments go to `mkdocs build`
#
# It runs `mkdocs build --strict`: a broken link or anchor, a page missing from the nav, a
# docstring griffe cannot parse or an API object that no longer exists fails the build. The
# command line reference is generated from the CLI during the build (scripts/gen_cli_docs.py).
# The build needs no network: no web fonts, no plugin that downloads.
#
# Uses .venv (scripts/setup.sh makes it; NPP_VENV chooses another) and installs the `docs`
# extra of pyproject.toml into it when it is missing or pyproject.toml changed it.
# scripts/test.sh runs this script (NPP_SKIP_DOCS=1 skips it there).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${NPP_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"

export PIP_DISABLE_PIP_VERSION_CHECK=1
# mkdocs-material prints a banner about its end of life and MkDocs 2 on every build.
export NO_MKDOCS_2_WARNING=1

say() { printf '[docs] %s\n' "$*" >&2; }
die() { printf '[docs] error: %s\n' "$*" >&2; exit 1; }
# Run pip without the warnings some machines' pip.conf causes about missing local indexes.
pip_quiet() {
    "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
    return "${PIPESTATUS[0]}"
}

if [ ! -x "$PY" ] || ! "$PY" -c 'import napari_process_position' 2>/dev/null; then
    say "$VENV has no napari-process-position: running scripts/setup.sh first"
    bash scripts/setup.sh
fi

# The docs extra, as pyproject.toml lists it today.
requirements="$("$PY" -c '
import tomllib
with open("pyproject.toml", "rb") as f:
    print("\n".join(tomllib.load(f)["project"]["optional-dependencies"]["docs"]))
')"
STAMP="$VENV/.npp-docs-installed"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$requirements" ] \
    && "$PY" -c 'import mkdocs, material, mkdocstrings_handlers.python, griffe_pydantic' 2>/dev/null; then
    :
else
    say "installing the docs extra into $VENV"
    mapfile -t reqs <<<"$requirements"
    pip_quiet "$PY" -m pip install --quiet "${reqs[@]}" || die "could not install: ${reqs[*]}"
    printf '%s' "$requirements" >"$STAMP"
fi

site_args=(--site-dir "$ROOT/build/site")
for arg in "$@"; do
    case "$arg" in --site-dir | --site-dir=* | -d) site_args=() ;; esac
done

start=$SECONDS
say "mkdocs build --strict ${site_args[*]} $*"
"$PY" -m mkdocs build --strict "${site_args[@]}" "$@" || die "docs build failed (see the warnings above)"
say "built in $((SECONDS - start)) s"
