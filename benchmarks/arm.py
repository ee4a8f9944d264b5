"""ARM: the int8 extractor under aarch64 emulation must give the x86 features and decisions.

Setup (once, outside the repo, per /work/shared/ARM.md): an aarch64 Python
3.11 unpacked in ``~/.cache/ecg-edge-arm/root`` and the aarch64 wheels of
numpy and onnxruntime 1.22.0 (+ its pure-Python dependencies) unzipped in
``~/.cache/ecg-edge-arm/site``; ``qemu-aarch64-static`` runs it. Emulated time
says nothing about a board and is not reported; the Cortex-A72 figure is an
*estimate* from the operation count: 2 x 128-bit NEON pipes = 8 fp32 MAC per
cycle; no SDOT on ARMv8.0, so int8 at best 16 MAC/cycle (SMLAL/SMLAL2 on
both pipes); 1.5 GHz (Raspberry Pi 4). Real kernels reach a fraction of peak.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from benchmarks._common import BundleRef, print_table, sample_frames

CACHE = Path.home() / ".cache" / "ecg-edge-arm"
A72 = {"ghz": 1.5, "fp32_macs_per_cycle": 8, "int8_macs_per_cycle": 16}

_SCRIPT = """
import platform, sys, numpy as np, onnxruntime as ort
o = ort.SessionOptions(); o.intra_op_num_threads = 1
s = ort.InferenceSession(sys.argv[1], o, providers=["CPUExecutionProvider"])
x = np.load(sys.argv[2])
f = np.concatenate([s.run(None, {s.get_inputs()[0].name: x[i:i+1]})[0] for i in range(len(x))])
np.save(sys.argv[3], f)
print(platform.machine(), "onnxruntime", ort.__version__, "numpy", np.__version__)
"""


def estimate(macs: dict[str, int]) -> dict:
    """Cortex-A72 frame time from the MAC count at peak NEON rate: an estimate, not measured."""
    hz = A72["ghz"] * 1e9
    return {
        "kind": "estimate",
        "assumptions": A72,
        "fp32_floor_ms": macs["fp32"] / (A72["fp32_macs_per_cycle"] * hz) * 1000.0,
        "int8_floor_ms": macs["int8"] / (A72["int8_macs_per_cycle"] * hz) * 1000.0,
    }


def run_emulated(ref: BundleRef, n_frames: int = 8) -> dict:
    """x86 vs aarch64 (qemu-user) features of the int8 extractor on real frames."""
    from edge.bundle import load_bundle
    from edge.classify import Classifier

    qemu = shutil.which("qemu-aarch64-static")
    py = CACHE / "root" / "usr" / "bin" / "python3.11"
    site = CACHE / "site"
    if not (qemu and py.is_file() and site.is_dir()):
        return {"status": "not run", "why": f"no aarch64 python/wheels under {CACHE} or no qemu"}
    bundle = load_bundle(ref.path)
    clf = Classifier(bundle, "int8", 1)
    frames = sample_frames(bundle.manifest.dsp, n_frames)
    x86 = clf.features(frames)
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "x.npy", frames)
        (Path(tmp) / "run.py").write_text(_SCRIPT)
        env = {"PYTHONPATH": str(site), "PYTHONHOME": str(CACHE / "root" / "usr")}
        cmd = [qemu, "-L", str(CACHE / "root"), str(py), str(Path(tmp) / "run.py")]
        cmd += [
            str(bundle.extractor_path("int8")),
            str(Path(tmp) / "x.npy"),
            str(Path(tmp) / "f.npy"),
        ]
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
        if r.returncode != 0:
            return {"status": "failed", "why": r.stderr[-1000:]}
        arm = np.load(Path(tmp) / "f.npy")
    rel = np.abs(arm - x86).max() / max(np.abs(x86).max(), 1e-12)
    cos = np.sum(arm * x86, 1) / (np.linalg.norm(arm, axis=1) * np.linalg.norm(x86, axis=1))
    h = bundle.head
    dec_x86 = h.scores(x86) >= h.thresholds
    dec_arm = h.scores(arm) >= h.thresholds
    return {
        "status": "run",
        "versions": r.stdout.strip(),
        "frames": n_frames,
        "max_rel_diff": float(rel),
        "cosine_min": float(cos.min()),
        "decisions_equal": float((dec_x86 == dec_arm).mean()),
        "within_tolerance": bool(rel < 0.01 and (dec_x86 == dec_arm).all()),
    }


def measure(ref: BundleRef, macs: dict[str, int], run: bool) -> dict:
    out = {"cortex_a72": estimate(macs)}
    out["emulation"] = run_emulated(ref) if run else {"status": "not run", "why": "skipped"}
    e = out["cortex_a72"]
    print_table(
        "ARM (Cortex-A72 figures are ESTIMATES from MACs at peak NEON rate)",
        ["figure", "value"],
        [
            ["A72 fp32 floor ms (estimate)", e["fp32_floor_ms"]],
            ["A72 int8 floor ms (estimate)", e["int8_floor_ms"]],
            ["aarch64 emulation", out["emulation"]["status"]],
        ],
    )
    return out
