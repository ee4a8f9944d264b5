#!/usr/bin/env bash
# The main job: replay the bundled sample records through the shipped default bundle,
# frames and alerts on screen. Extra arguments go to `ecg-edge replay`
# (e.g. --speed 1 for real time, --broker mqtt://localhost:1883, --json).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh edge
exec .venv/bin/ecg-edge replay edge/samples --speed max "$@"
