"""What every benchmark shares: bundles, real frames, percentiles, the machine."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "edge" / "samples"
PY = sys.executable


@dataclass(frozen=True)
class BundleRef:
    """A bundle to measure: its folder, its torch checkpoint (or None), where it came from."""

    model: str
    path: Path
    checkpoint: Path | None
    source: str


def _has_manifest(p: Path | None, model: str | None = None) -> bool:
    """A bundle folder (of ``model``, when given: the default bundle may be either)."""
    if p is None or not (p / "manifest.json").is_file():
        return False
    import json

    return model is None or json.loads((p / "manifest.json").read_text())["model"] == model


def _checkpoint_for(bundle: Path) -> Path | None:
    cands = [Path(str(bundle) + ".work") / "best.pt", bundle.parent / "work" / "best.pt"]
    if bundle.resolve() == (REPO / "edge" / "default_bundle").resolve():
        # the shipped bundle has no torch checkpoint; it was copied from runs/cnn-full
        cands.append(REPO / "runs" / "cnn-full" / "bundle.work" / "best.pt")
    return next((c for c in cands if c.is_file()), None)


def _build_tiny(model: str, out: Path) -> Path:
    """Train a tiny bundle on the shipped samples (seconds), as CI does."""
    target = out / "bundles" / model
    if not _has_manifest(target):
        exe = Path(PY).parent / "ecg-train"
        cmd = [str(exe), "fit", str(SAMPLES), "--model", model, "--out", str(target)]
        cmd += ["--epochs", "1", "--folds", "2"]
        subprocess.run(cmd, check=True, cwd=REPO, capture_output=True, text=True)
    return target


def resolve_bundles(cnn: str | None, resnet: str | None, out: Path) -> dict[str, BundleRef]:
    """Model 1 (cnn) and Model 2 (resnet): the option, else the trained one, else a tiny one."""
    choices = {
        "cnn": [Path(cnn)]
        if cnn
        else [
            REPO / "runs" / "cnn-full" / "bundle",
            REPO / "edge" / "default_bundle",
            REPO / "runs" / "cv-cnn" / "fold0" / "bundle",
        ],
        "resnet": [Path(resnet)]
        if resnet
        else [
            REPO / "runs" / "resnet-full-u8" / "bundle",
            REPO / "runs" / "resnet-full" / "bundle",
            REPO / "edge" / "default_bundle",
        ],
    }
    refs = {}
    for model, paths in choices.items():
        # a bundle with its torch checkpoint (torch eager is measured beside onnxruntime)
        found = next(
            (p for p in paths if _has_manifest(p, model) and _checkpoint_for(p) is not None),
            None,
        )
        given = (model == "cnn" and cnn) or (model == "resnet" and resnet)
        if found is None and given and _has_manifest(paths[0], model):
            # a bundle named on the command line without its checkpoint (the shipped
            # one): measured as it is, torch eager left out (latency.py says so)
            found, source = paths[0], "option (no torch checkpoint)"
        elif found is None:
            if given:
                raise SystemExit(f"error: {paths[0]} is not a {model} bundle")
            found, source = _build_tiny(model, out), "tiny (edge/samples, 1 epoch)"
        else:
            source = "option" if given else "trained"
            if "cv-" in str(found):
                source = "cv fold 0 (trained on 4/5 of the records)"
        found = found.resolve()
        refs[model] = BundleRef(model, found, _checkpoint_for(found), source)
    return refs


def shown(p: Path | None) -> str:
    """A path as reported: relative to the repository where it lies inside it."""
    if p is None:
        return "None"
    p = Path(p).resolve()
    return str(p.relative_to(REPO)) if p.is_relative_to(REPO) else str(p)


def sample_frames(config, n_max: int = 64) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Real (n, 12, window_samples) model inputs (windows) from the shipped sample records.

    A 30 s frame is 3 such windows (10 s each at the model rate) for a bundle
    of format 2, one for format 1: latency is per window of the extractor.
    """
    from edge.dsp import preprocess
    from edge.framer import record_frames
    from edge.records import find_records, read_record

    out = []
    for h in find_records([SAMPLES]):
        r = read_record(h)
        x = preprocess(r.signal, r.fs, config)
        for f in record_frames(x, 5000, config.frame_samples):
            out.extend(f.model_input(config))
        if len(out) >= n_max:
            break
    return np.stack(out[:n_max]).astype(np.float32)


def sample_records(n: int | None = None) -> list[Path]:
    from edge.records import find_records

    recs = find_records([SAMPLES])
    return recs if n is None else recs[:n]


def pct(xs: list[float] | np.ndarray) -> dict[str, float]:
    a = np.asarray(xs, dtype=float)
    return {f"p{q}": float(np.percentile(a, q)) for q in (50, 90, 99)}


def spread(values: list[float]) -> dict[str, float]:
    """Median, min and max of one figure over repeats."""
    a = np.asarray(values, dtype=float)
    return {"median": float(np.median(a)), "min": float(a.min()), "max": float(a.max())}


def machine() -> dict:
    """What ran it: CPU, cores, load, OS, versions, commit, date."""
    import onnxruntime as ort

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "onnxruntime": ort.__version__,
    }
    for mod in ("torch", "onnx", "paho.mqtt"):
        try:
            m = __import__(mod, fromlist=["__version__"])
            versions[mod] = getattr(m, "__version__", "?")
        except ImportError:
            versions[mod] = "not installed"
    try:
        mosq = subprocess.run(["/usr/sbin/mosquitto", "-h"], capture_output=True, text=True)
        versions["mosquitto"] = (mosq.stdout or mosq.stderr).splitlines()[0]
    except (OSError, IndexError):
        versions["mosquitto"] = "not installed"

    def git(*a: str) -> str:
        r = subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True)
        return r.stdout.strip()

    from edge._cpu import cpu_info

    return {
        "cpu": cpu,
        "cpu_info": cpu_info(),  # model, arch and the ISA flags that pick the int8 kernels
        "cores": os.cpu_count(),
        "load_avg_at_start": list(os.getloadavg()),
        "machine": platform.machine(),
        "os": platform.platform(),
        "versions": versions,
        "commit": git("rev-parse", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def print_table(title: str, header: list[str], rows: list[list]) -> None:
    print(f"\n## {title}")
    print(" | ".join(header))
    for r in rows:
        print(" | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in r))
