#!/usr/bin/env bash
# Set up (if needed) and launch the desktop tool: scripts/studio.sh [FOLDER]
set -euo pipefail
here=$(pwd)
cd "$(dirname "$0")/.."
bash scripts/setup.sh --gui
project=""
if [ $# -gt 0 ]; then
    project=$(cd "$here" && realpath "$1")
fi
exec .venv/bin/faceparse-studio ${project:+"$project"}
