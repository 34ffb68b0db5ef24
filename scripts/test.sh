#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite, CPU only, Qt offscreen.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export QT_QPA_PLATFORM=offscreen HF_HUB_OFFLINE=1
.venv/bin/ruff check trainer faceparse_app tests bench
exec .venv/bin/python -m pytest -q "$@"
