#!/usr/bin/env bash
# Set up and run the main job on the bundled default: the real demo. A zoo of digit
# classifiers (trained here on clean digits on first use, about a minute, then cached) is
# searched for the best model for a shifted target set: a drone use case becomes weights
# (offline advisor), then the selection runs within 10% of brute force's MACs, with its
# energy measured. Writes out/demo-result.json and out/demo-report.md.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh demo
.venv/bin/greenrunner demo --out out "$@"
