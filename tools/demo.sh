#!/usr/bin/env bash
# The main job end to end on the built-in synthetic dataset (see README): setup, then the reproduction recipe
# with experiments/demo.toml (tools/reproduce.py; docs/reproducing.md).
#   bash tools/demo.sh [reproduce.py flags, e.g. --dry-run, --out runs/demo, --seeds 1]
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
bash tools/setup.sh
exec .venv/bin/python tools/reproduce.py experiments/demo.toml "$@"
