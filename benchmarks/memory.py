"""Memory and size: resident memory of a running agent, bundle size on disk, import time.

The agent is ``ecg-edge replay --loop --speed max`` (the real CLI, int8, one
thread), sampled with psutil every 20 ms for ``seconds``, then stopped with
SIGTERM. Peak is the largest sample (and the child's ``ru_maxrss``); steady
is the median over the second half of the run. Import time is the time of
``import edge.agent`` in a fresh interpreter, repeated.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import psutil

from benchmarks._common import PY, REPO, BundleRef, print_table, shown, spread

BUNDLE_FILES = ("extractor.onnx", "extractor.fp32.onnx", "head.npz", "manifest.json")


def bundle_mb(path: Path) -> float:
    """Size of the bundle's own files (what ``ecg-edge`` loads), in MB."""
    return sum((path / f).stat().st_size for f in BUNDLE_FILES if (path / f).is_file()) / 1e6


def _rss(ref: BundleRef, records: list[Path], seconds: float) -> dict:
    exe = str(Path(PY).parent / "ecg-edge")
    cmd = [exe, "replay", *map(str, records), "--speed", "max", "--loop", "--json"]
    cmd += ["--bundle", str(ref.path), "--allow-unsigned"]  # trained bundles are not signed
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ps = psutil.Process(proc.pid)
    samples = []
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds and proc.poll() is None:
        try:
            samples.append((time.monotonic() - t0, ps.memory_info().rss / 1e6))
        except psutil.NoSuchProcess:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    if not samples:
        raise RuntimeError("the agent ended before its memory could be sampled")
    rss = np.array([s for _, s in samples])
    half = rss[len(rss) // 2 :]
    return {"peak": float(rss.max()), "steady": float(np.median(half)), "samples": len(rss)}


def import_time(repeats: int) -> dict:
    code = "import time;t=time.perf_counter();import edge.agent;print(time.perf_counter()-t)"
    ts = []
    for _ in range(repeats):
        r = subprocess.run([PY, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
        ts.append(float(r.stdout.strip()) * 1000.0)
    return {
        "median_ms": float(np.median(ts)),
        **{k + "_ms": v for k, v in spread(ts).items() if k != "median"},
    }


def measure(refs: dict[str, BundleRef], records: list[Path], seconds: float, repeats: int) -> dict:
    """``rss_mb.{peak,steady}``, ``bundle_mb``, ``import_ms``."""
    ref = refs["resnet"]
    runs = [_rss(ref, records, seconds) for _ in range(repeats)]
    out = {
        "rss_mb": {
            "peak": float(np.median([r["peak"] for r in runs])),
            "steady": float(np.median([r["steady"] for r in runs])),
            "peak_spread": spread([r["peak"] for r in runs]),
            "steady_spread": spread([r["steady"] for r in runs]),
            "seconds": seconds,
            "bundle": shown(ref.path),
        },
        "bundle_mb": bundle_mb(ref.path),
        "bundle_mb_by_model": {m: bundle_mb(r.path) for m, r in refs.items()},
        "bundle_files_mb": {
            f: (ref.path / f).stat().st_size / 1e6 for f in BUNDLE_FILES if (ref.path / f).is_file()
        },
        "import_ms": import_time(repeats=max(3, repeats)),
    }
    print_table(
        "Memory and size",
        ["figure", "value"],
        [
            ["agent RSS peak (MB)", out["rss_mb"]["peak"]],
            ["agent RSS steady (MB)", out["rss_mb"]["steady"]],
            ["bundle on disk (MB)", out["bundle_mb"]],
            ["import edge.agent (ms)", out["import_ms"]["median_ms"]],
        ],
    )
    json.dumps(out)
    return out
