"""Measurements as extra phase 2 features: do they help the linear heads?

    python -m benchmarks.measure_features BUNDLE PTBXL_DIR CHALLENGE_DIR --out OUT.json

For every frame of every record the bundle trained or validated on, the
frame's measurements (``edge.measure.measurement_features``: heart rate, R-R
irregularity, share of beats with a P wave, PR, P, QRS, QT and QTc, frontal
axes, QRS voltage per lead; from the agent's own beat detector and
delineator on the cached 500 Hz signal, beats with R inside the frame) are
appended to the bundle's int8 extractor features. Phase 2 is fitted twice with
the bundle's own protocol (``trainer.heads.fit_heads_validated``: SVMs on the
training records, C, Platt calibration and thresholds on the validation
records, PTB-XL's fold 9), with and without the measurements, and both are
scored on the validation records. Also the measurements alone, for scale.

The measurement features of each record are cached beside ``--out``
(``<out>.measure.npz``): computing them takes about 25 ms of CPU per 10 s record.
Accuracy figures only; no timing.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from edge.beats import BeatDetector
from edge.bundle import load_bundle
from edge.delineate import Delineator
from edge.framer import record_frames
from edge.measure import FEATURE_NAMES, beat_measurements, measurement_features
from trainer.data import load_cache, scan
from trainer.heads import fit_heads_validated, record_max
from trainer.labels import NORMAL_CODE, class_codes, reward_matrix
from trainer.metrics import score_all
from trainer.pipeline import HOP_SAMPLES, edge_features

LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")


def frame_measurements(x: np.ndarray, hop: int = HOP_SAMPLES) -> list[np.ndarray]:
    """The measurement features of each frame the edge emits for a preprocessed record."""
    det = BeatDetector(n_leads=x.shape[0])
    r = [b.sample for b in det.push(x) + det.flush()]
    d = Delineator(n_leads=x.shape[0])
    beats = [(b.r, beat_measurements(b, 500.0, LEADS)) for b in d.push(x, r) + d.flush()]
    out = []
    for fr in record_frames(x, hop):
        inside = [m for r0, m in beats if fr.start_sample <= r0 < fr.end_sample]
        out.append(measurement_features(inside))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.measure_features", description=__doc__)
    ap.add_argument("bundle", type=Path)
    ap.add_argument("data", type=Path, nargs="+")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--jobs", type=int, default=1, help="classes fitted at once")
    a = ap.parse_args(argv)
    bundle = load_bundle(a.bundle)
    t = bundle.manifest.training
    train_names, val_names = set(t["train_record_names"]), set(t["validation_record_names"])
    rep = scan(a.data)
    rep.items = [it for it in rep.items if it.name in train_names or it.name in val_names]
    items, signals = load_cache(rep)
    n_val = sum(it.name in val_names for it in items)
    print(f"{len(items)} records ({n_val} validation)", flush=True)

    a.out.parent.mkdir(parents=True, exist_ok=True)
    cache = a.out.with_suffix(".measure.npz")
    names = [it.name for it in items]
    if cache.is_file() and list(np.load(cache)["names"]) == names:
        z = np.load(cache)
        meas, mgroups = z["features"], z["groups"]
    else:
        t0, rows, mgroups = time.process_time(), [], []
        for i, x in enumerate(signals):
            for f in frame_measurements(np.asarray(x, dtype=np.float32)):
                rows.append(f)
                mgroups.append(i)
            if (i + 1) % 2000 == 0:
                print(f"  measured {i + 1}/{len(items)} ({time.process_time() - t0:.0f} s)")
        meas, mgroups = np.array(rows), np.array(mgroups)
        np.savez(cache, features=meas, groups=mgroups, names=np.array(names))
        print(f"measured in {time.process_time() - t0:.0f} s of CPU", flush=True)

    rf = edge_features(
        items,
        {"int8": bundle.path / "extractor.onnx"},
        signals=signals,
        config=bundle.manifest.dsp,
    )
    if not np.array_equal(rf.groups, mgroups):
        raise SystemExit("frames of the extractor and of the measurements disagree")
    feats = rf.features["int8"]
    labels = np.array([it.labels for it in items])
    codes = class_codes()
    weights, normal = reward_matrix(codes), codes.index(NORMAL_CODE)
    is_val = np.array([names[g] in val_names for g in rf.groups])
    frame_labels = labels[rf.groups]
    val_rec = np.array([it.name in val_names for it in items])

    results = {}
    variants = {
        "extractor (as shipped)": feats,
        "extractor + measurements": np.hstack([feats, meas]),
        "measurements alone": meas,
    }
    for label, f in variants.items():
        t0 = time.perf_counter()
        head, _ = fit_heads_validated(
            f[~is_val],
            frame_labels[~is_val],
            f[is_val],
            frame_labels[is_val],
            rf.groups[is_val],
            codes,
            weights,
            normal,
            log=lambda *_: None,
            n_jobs=a.jobs,
        )
        _, sv = record_max(head.scores(f[is_val]), rf.groups[is_val])
        figs = score_all(labels[val_rec], sv >= head.thresholds, sv, codes)
        per_class = figs.to_json().get("per_class")
        res = {k: v for k, v in figs.to_json().items() if k != "per_class"}
        pv = head.probabilities(sv)
        res["brier"] = round(float(np.mean((pv - labels[val_rec]) ** 2)), 5)
        if per_class is not None:
            res["per_class"] = per_class
        results[label] = res
        print(
            f"{label:28s} auroc {res['auroc']:.3f}  challenge {res['challenge_metric']:.3f}  "
            f"({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
    out = {
        "bundle": str(a.bundle),
        "bundle_sha256": bundle.sha256,
        "validation_records": int(val_rec.sum()),
        "measurement_features": list(FEATURE_NAMES),
        "results": results,
    }
    a.out.write_text(json.dumps(out, indent=1))
    print(f"written {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
