#!/usr/bin/env bash
# Set up and run the whole test suite: lint, format, types, tests (what CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh dev,all
.venv/bin/ruff check src tests benchmarks scripts
.venv/bin/ruff format --check src tests benchmarks scripts
.venv/bin/mypy
.venv/bin/pytest -q -n 2 "$@"
