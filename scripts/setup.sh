#!/usr/bin/env bash
# Set up napari-process-position for trying it out and for development.
#
#   bash scripts/setup.sh            # .venv with the package (editable) and its test tools
#   bash scripts/setup.sh --system   # also the Debian packages for Qt, OpenGL (Mesa) and Xvfb
#
# Safe to run again: it only does what is still missing.
#
# Environment:
#   PYTHON     the interpreter to build .venv from (default: python3 if it is >= 3.11,
#              else the first of python3.11, python3.12, python3.13 found)
#   NPP_VENV   where to put the virtual environment (default: .venv in the repository)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${NPP_VENV:-$ROOT/.venv}"
EXTRAS="testing,lint"

# Debian packages needed to show napari (PyQt5's xcb platform plugin and vispy's
# OpenGL through Mesa) and to run it on a virtual screen (xvfb-run needs xauth).
# Found with ldd on PyQt5's libqxcb.so and Qt libraries; libxcb-cursor0 is only for
# Qt 6 bindings. python3-venv is for Debian's own python3 (no ensurepip without it).
SYSTEM_PACKAGES=(
    xvfb xauth
    libgl1 libegl1 libgl1-mesa-dri
    libglib2.0-0 libfontconfig1 fonts-dejavu-core libdbus-1-3
    libx11-xcb1 libxkbcommon-x11-0
    libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0
    libxcb-shape0 libxcb-xfixes0 libxcb-xinerama0 libxcb-cursor0
)

export PIP_DISABLE_PIP_VERSION_CHECK=1

say() { printf '[setup] %s\n' "$*" >&2; }
# Run pip without the warnings some machines' pip.conf causes about missing local indexes.
pip_quiet() {
    "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
    return "${PIPESTATUS[0]}"
}
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

usage() {
    sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

with_system=0
for arg in "$@"; do
    case "$arg" in
        --system) with_system=1 ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown option '$arg' (options: --system, --help)" ;;
    esac
done

# Run a command as root: directly when we are root, through sudo when it exists.
as_root() {
    if [ "$(id -u)" = 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "'$*' needs root and sudo is not installed; run it as root, then run this again"
    fi
}

# Install the Debian packages that are not installed yet (nothing when all are).
install_debian_packages() {
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install by hand: $*"
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$pkg")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        say "Debian packages: all installed"
        return 0
    fi
    say "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Prints the interpreter to build the venv from, or nothing.
find_python() {
    local candidate
    for candidate in ${PYTHON:-} python3 python3.11 python3.12 python3.13; do
        if command -v "$candidate" >/dev/null 2>&1 \
            && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
}

if [ "$with_system" = 1 ]; then
    packages=("${SYSTEM_PACKAGES[@]}")
    # Debian's python3 has no venv module without python3-venv.
    if ! python3 -c 'import ensurepip, venv' 2>/dev/null && [ ! -x "$VENV/bin/python" ]; then
        packages+=(python3-venv)
    fi
    install_debian_packages "${packages[@]}"
fi

if [ ! -x "$VENV/bin/python" ]; then
    PY="$(find_python)"
    [ -n "$PY" ] || die "no Python >= 3.11 found (tried: ${PYTHON:-} python3 python3.11 python3.12 python3.13); set PYTHON=/path/to/python3.11"
    "$PY" -c 'import ensurepip, venv' 2>/dev/null \
        || die "$PY cannot make virtual environments; run 'bash scripts/setup.sh --system' (or 'sudo apt-get install python3-venv')"
    say "creating $VENV with $PY ($("$PY" --version 2>&1))"
    "$PY" -m venv "$VENV"
fi

# Reinstall only when pyproject.toml changed since the last successful install.
STAMP="$VENV/.npp-installed"
want="$(cat pyproject.toml; echo "extras=$EXTRAS")"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] \
    && "$VENV/bin/python" -c 'import napari_process_position' 2>/dev/null; then
    say "$VENV is up to date"
else
    say "installing napari-process-position[$EXTRAS] (editable) into $VENV; this takes a few minutes the first time"
    pip_quiet "$VENV/bin/python" -m pip install --quiet -e ".[$EXTRAS]"
    printf '%s' "$want" >"$STAMP"
fi

say "ready: $VENV/bin/process-position --help"
