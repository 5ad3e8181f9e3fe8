#!/usr/bin/env bash
# Set up and run the main job on the bundled default: select a model for the paper's drone
# weights on the bundled objectnet-sim replay, within 10% of brute force's MACs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
mkdir -p out
.venv/bin/greenrunner select --replay objectnet-sim \
  --weights accuracy=0.63,size=0.25,complexity=0.21 \
  --strategy default --budget 0.1 --budget-unit macs --seed 0 \
  --json out/demo-result.json "$@"
