#!/usr/bin/env bash
# The whole test suite: setup (apt, venv, fork build — cached), Caffe's C++ tests through CTest, then pytest.
#   bash tools/test.sh [pytest args...]
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
bash tools/setup.sh
echo "[test] C++ tests (CTest: upstream layer/solver gtests + mfuse layer gtests, CPU)"
ctest --test-dir .venv/mfuse-fork-cpu --output-on-failure
echo "[test] Python tests (pytest)"
exec .venv/bin/python -m pytest -q "$@"
