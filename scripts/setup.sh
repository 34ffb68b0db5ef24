#!/usr/bin/env bash
# Create .venv and install FaceParse Studio with what it needs. Idempotent: a second run is quick.
#   scripts/setup.sh          # Python environment (tests, CLI, offscreen Qt)
#   scripts/setup.sh --gui    # also the system libraries a real X display needs (Debian/Ubuntu)
set -euo pipefail
cd "$(dirname "$0")/.."

want_gui=0
[ "${1:-}" = "--gui" ] && want_gui=1

apt_install() {
    # Install Debian packages that are missing; needs root (or sudo) and apt-get.
    local missing=()
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    if ! command -v apt-get >/dev/null; then
        echo "setup: please install these system packages: ${missing[*]}" >&2
        return 0
    fi
    echo "setup: installing system packages: ${missing[*]}"
    $sudo apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

# Qt's offscreen platform (tests) needs only these shared libraries; most machines have them.
apt_install libglib2.0-0 libfontconfig1 libxkbcommon0 libegl1 libgl1
if [ "$want_gui" = 1 ] && [ -z "${CI:-}" ]; then
    # Qt 6's xcb platform plugin (a real X display); xvfb lets you try it headless.
    apt_install libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0 libxcb-image0 libxcb-render-util0 \
        libxcb-shape0 libxcb-xkb1 libxkbcommon-x11-0 libdbus-1-3 xvfb
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
    .venv/bin/pip install -q --upgrade pip
fi
if ! .venv/bin/python -c "import torch, torchvision" >/dev/null 2>&1; then
    if [ "$(uname -m)" = "x86_64" ]; then
        # These two releases are the pair that imports together on x86_64 (see README).
        .venv/bin/pip install -q torch==2.14.1 torchvision==0.29.1
    else
        .venv/bin/pip install -q torch==2.9.1 torchvision==0.24.1
    fi
fi
.venv/bin/pip install -q -e ".[test]"
echo "setup: ready (.venv)"
