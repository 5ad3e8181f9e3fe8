#!/usr/bin/env bash
# Create .venv (if missing) and install GreenRunner into it with the given extras.
# Usage: scripts/setup.sh [extras]   e.g. scripts/setup.sh dev
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "GreenRunner needs Python >= 3.11")'
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
fi
spec="."
[ -n "$extras" ] && spec=".[$extras]"
.venv/bin/python -m pip install --quiet --editable "$spec"
