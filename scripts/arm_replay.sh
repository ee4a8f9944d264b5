#!/usr/bin/env bash
# ecg-edge replay under qemu-user (aarch64) against x86: the alerts must be equal.
#   bash scripts/arm_replay.sh [RECORDS...]     (default: the shipped cpsc2018 + georgia samples)
# Needs the aarch64 Python and wheels of `python -m benchmarks.arm` in ~/.cache/ecg-edge-arm
# (root/, site/), plus the edge's other dependencies, downloaded here as aarch64 wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
A="${ECG_EDGE_ARM_CACHE:-$HOME/.cache/ecg-edge-arm}"
[ -x "$A/root/usr/bin/python3.11" ] || { echo "arm: no aarch64 Python in $A/root (run python -m benchmarks.arm first)" >&2; exit 2; }
command -v qemu-aarch64-static >/dev/null || { echo "arm: qemu-aarch64-static missing (apt-get install qemu-user-static)" >&2; exit 2; }
W="$A/deploy-wheels"; S="$A/deploy-site"
if [ ! -d "$S" ]; then
  mkdir -p "$W"
  .venv/bin/python -m pip download -q --only-binary=:all: --python-version 3.11 --implementation cp \
    --platform manylinux_2_28_aarch64 --platform manylinux_2_17_aarch64 --platform manylinux2014_aarch64 \
    -d "$W" typer paho-mqtt jsonschema jsonschema-rs cryptography
  rm -rf "$S.tmp" && cp -r "$A/site" "$S.tmp"
  for w in "$W"/*.whl; do .venv/bin/python -m zipfile -e "$w" "$S.tmp" >/dev/null; done
  mv "$S.tmp" "$S"
fi
[ $# -gt 0 ] || set -- edge/samples/cpsc2018 edge/samples/georgia
out=$(mktemp -d)
PYTHONPATH="$S:$PWD" qemu-aarch64-static -L "$A/root" "$A/root/usr/bin/python3.11" \
  -m edge.cli replay "$@" --speed max --json > "$out/arm.jsonl"
.venv/bin/python -m edge.cli replay "$@" --speed max --json > "$out/x86.jsonl"
.venv/bin/python - "$out" <<'PY'
import json, sys
def load(p):
    ev = [json.loads(line) for line in open(p)]
    alerts = [(e["record"], e["event"], e["condition"], sorted(f["code"] for f in e["findings"]),
               e["onset_sample"]) for e in ev if e["type"] == "alert"]
    return alerts, [e["scores"] for e in ev if e["type"] == "frame"]
(aa, sa), (ax, sx) = load(sys.argv[1] + "/arm.jsonl"), load(sys.argv[1] + "/x86.jsonl")
diff = max((abs(a[k] - x[k]) for a, x in zip(sa, sx) for k in a), default=0.0)
print(f"aarch64 {len(aa)} alerts, x86 {len(ax)}: equal {aa == ax}; {len(sa)} frames, "
      f"largest score difference {diff:.3g}")
sys.exit(0 if aa == ax and len(sa) == len(sx) else 1)
PY
