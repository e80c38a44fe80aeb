#!/usr/bin/env bash
# The main job end to end on the built-in synthetic dataset (see README): setup, then tools/run_demo.py.
#   bash tools/demo.sh [run_demo.py args, e.g. --quick or --out runs/demo]
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
bash tools/setup.sh
exec .venv/bin/python tools/run_demo.py "$@"
