#!/usr/bin/env bash
# Create .venv and install ecg-edge into it.
#   scripts/setup.sh edge   the device side only (no torch)
#   scripts/setup.sh all    + trainer (torch 2.13.0 CPU, installed first) + dev tools + station
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-all}"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($PY --version)" >&2
  "$PY" -m venv .venv
fi
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }
stamp=".venv/.ecg-edge-$what-$(cat pyproject.toml scripts/setup.sh | sha1sum | cut -c1-12)"
if [ -f "$stamp" ]; then exit 0; fi
echo "setup: installing ($what) into .venv; the first time takes a few minutes" >&2
pip install --upgrade pip wheel setuptools
case "$what" in
  edge) pip install -e . ;;
  all)
    # torch first and pinned: the CPU build on this kind of machine, never a CUDA download
    pip install "torch==2.13.0"
    pip install -e ".[train,dev,station]"
    ;;
  *) echo "setup: unknown target '$what' (edge or all)" >&2; exit 2 ;;
esac
touch "$stamp"
