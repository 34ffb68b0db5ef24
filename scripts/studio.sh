#!/usr/bin/env bash
# Set up (if needed) and launch the desktop tool: scripts/studio.sh [FOLDER]
#
# Setup (pip install -e, system libraries) runs only when the environment is missing or
# pyproject.toml / scripts/setup.sh changed since it last ran: the install is editable, so code
# changes need none, and a launch skips the 7 s of pip.
set -euo pipefail
here=$(pwd)
cd "$(dirname "$0")/.."
stamp=.venv/.studio-setup-stamp
wanted=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ ! -x .venv/bin/faceparse-studio ] || [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    bash scripts/setup.sh --gui
    echo "$wanted" > "$stamp"
fi
project=""
if [ $# -gt 0 ]; then
    project=$(cd "$here" && realpath "$1")
fi
exec .venv/bin/faceparse-studio ${project:+"$project"}
