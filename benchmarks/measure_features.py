"""Measurements as extra phase 2 features: do they help the linear heads?

    python -m benchmarks.measure_features BUNDLE PTBXL_DIR CHALLENGE_DIR --out OUT.json \
        [--heldout cpsc=DIR,DIR --heldout georgia=DIR ...]

For every frame of every record the bundle trained or validated on, the
frame's measurements (:func:`measurement_features`: heart rate, R-R
irregularity, share of beats with a P wave, PR, P, QRS, QT and QTc, frontal
axes, QRS voltage per lead; from the agent's own beat detector and
delineator on the cached 500 Hz signal, beats with R inside the frame) are
appended to the bundle's int8 extractor features. Phase 2 is fitted twice with
the bundle's own protocol (``trainer.heads.fit_heads_validated``: SVMs on the
training records, C, Platt calibration and thresholds on the validation
records, PTB-XL's fold 9), with and without the measurements, and both are
scored on the validation records. Also the measurements alone, for scale.
With ``--heldout NAME=DIR[,DIR]`` (a bundle trained without those sources:
``scripts/experiments.sh loso``), each head is also scored on every held-out
source's records, hospitals neither the extractor nor the heads saw: the
leave-one-source-out test of whether the measurements help.

The measurement features of each record are cached beside ``--out``
(``<out>.measure.npz``): computing them takes about 20 ms of CPU per 10 s record.
Accuracy figures only; no timing.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from edge.beats import BeatDetector
from edge.bundle import load_bundle
from edge.delineate import Delineator
from edge.framer import record_frames
from edge.measure import beat_measurements, median_measurements
from trainer.data import load_cache, scan
from trainer.heads import fit_heads_validated, record_max
from trainer.labels import NORMAL_CODE, class_codes, reward_matrix
from trainer.metrics import score_all
from trainer.pipeline import HOP_SAMPLES, edge_features

# The measurements of a frame as numbers for the linear heads (appended to the extractor's
# features here, an experiment: they did not transfer to other hospitals, so the device
# does not compute them): what a convolution with a receptive field of
# a second or two cannot see (the rhythm over 10 s) or keeps only loosely (intervals in
# ms, the axis, voltage). A missing value is 0 with its flag set, never a made-up interval.
FEATURE_NAMES = (
    "hr_per_100",
    "rr_cv",  # SD / mean of the R-R intervals: sinus arrhythmia, AF
    "rr_jump",  # largest |R-R change| / median R-R: premature beats
    "p_found",  # share of beats with a P wave: AF, flutter
    "pr_s",
    "p_s",
    "qrs_s",
    "qt_s",
    "qtc_bazett_s",
    "qtc_fridericia_s",
    "axis_qrs_sin",
    "axis_qrs_cos",
    "axis_t_sin",
    "axis_t_cos",
    "axis_p_sin",
    "axis_p_cos",
    "log_qrs_limb_max",  # low voltage: the largest limb-lead QRS
    "log_qrs_chest_max",
    *(f"log_qrs_{i}" for i in range(12)),
    "no_pr",
    "no_qt",
    "no_qrs_axis",
    "no_beats",
)


def _f(v: float | None, scale: float = 1.0) -> tuple[float, float]:
    """(value, missing flag)."""
    return (0.0, 1.0) if v is None else (float(v) * scale, 0.0)


def measurement_features(beats: list[dict], n_leads: int = 12) -> np.ndarray:
    """:data:`FEATURE_NAMES` of the beats of one frame (each a :func:`beat_measurements`)."""
    out = np.zeros(len(FEATURE_NAMES))
    if not beats:
        out[-1] = 1.0
        out[FEATURE_NAMES.index("no_pr")] = out[FEATURE_NAMES.index("no_qt")] = 1.0
        out[FEATURE_NAMES.index("no_qrs_axis")] = 1.0
        return out
    med = median_measurements(beats)
    rr = np.array([b["rr_ms"] for b in beats if b.get("rr_ms")], dtype=float)
    v: dict[str, float] = {}
    v["hr_per_100"] = _f(med["hr_bpm"], 0.01)[0]
    if len(rr) >= 2:
        v["rr_cv"] = float(rr.std() / rr.mean())
        v["rr_jump"] = float(np.abs(np.diff(rr)).max() / np.median(rr))
    v["p_found"] = sum(b.get("p_ms") is not None for b in beats) / len(beats)
    v["pr_s"], v["no_pr"] = _f(med["pr_ms"], 1e-3)
    v["p_s"] = _f(med["p_ms"], 1e-3)[0]
    v["qrs_s"] = _f(med["qrs_ms"], 1e-3)[0]
    v["qt_s"], v["no_qt"] = _f(med["qt_ms"], 1e-3)
    v["qtc_bazett_s"] = _f(med["qtc_bazett_ms"], 1e-3)[0]
    v["qtc_fridericia_s"] = _f(med["qtc_fridericia_ms"], 1e-3)[0]
    for wave in ("qrs", "t", "p"):
        a = med[f"axis_{wave}_deg"]
        if a is not None:
            v[f"axis_{wave}_sin"], v[f"axis_{wave}_cos"] = (
                math.sin(math.radians(a)),
                math.cos(math.radians(a)),
            )
    v["no_qrs_axis"] = 1.0 if med["axis_qrs_deg"] is None else 0.0
    amps = med.get("qrs_amplitude_mv") or [None] * n_leads
    logs = [math.log(max(a, 0.01)) if a is not None else 0.0 for a in amps[:n_leads]]
    for i, la in enumerate(logs):
        v[f"log_qrs_{i}"] = la
    limb = [a for a in amps[:6] if a is not None]
    chest = [a for a in amps[6:n_leads] if a is not None]
    v["log_qrs_limb_max"] = math.log(max(max(limb), 0.01)) if limb else 0.0
    v["log_qrs_chest_max"] = math.log(max(max(chest), 0.01)) if chest else 0.0
    for k, x in v.items():
        out[FEATURE_NAMES.index(k)] = x
    return out


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


def _measured(items, signals, cache: Path, reuse=()) -> tuple[np.ndarray, np.ndarray]:
    """Measurement features of every frame and each frame's record: from ``cache`` or an
    earlier run's cache in ``reuse`` that holds these records, else measured into ``cache``."""
    names = [it.name for it in items]
    for path in (cache, *reuse):
        if not path.is_file():
            continue
        z = np.load(path)
        known = {str(n): i for i, n in enumerate(z["names"])}
        if all(n in known for n in names):  # the same records' frames, in this order
            rows = [np.flatnonzero(z["groups"] == known[n]) for n in names]
            groups = np.concatenate([np.full(len(r), i) for i, r in enumerate(rows)])
            return z["features"][np.concatenate(rows)], groups
    t0, rows, groups = time.process_time(), [], []
    for i, x in enumerate(signals):
        for f in frame_measurements(np.asarray(x, dtype=np.float32)):
            rows.append(f)
            groups.append(i)
        if (i + 1) % 2000 == 0:
            print(f"  measured {i + 1}/{len(items)} ({time.process_time() - t0:.0f} s)")
    meas, mgroups = np.array(rows), np.array(groups)
    np.savez(cache, features=meas, groups=mgroups, names=np.array(names))
    print(f"measured {len(items)} records in {time.process_time() - t0:.0f} s of CPU", flush=True)
    return meas, mgroups


def _frames(bundle, items, signals, cache: Path, reuse=()) -> tuple[np.ndarray, ...]:
    """(int8 extractor features, measurement features, record index) of every frame."""
    meas, mgroups = _measured(items, signals, cache, reuse)
    rf = edge_features(
        items,
        {"int8": bundle.path / "extractor.onnx"},
        signals=signals,
        config=bundle.manifest.dsp,
    )
    if not np.array_equal(rf.groups, mgroups):
        raise SystemExit("frames of the extractor and of the measurements disagree")
    return rf.features["int8"], meas, rf.groups


def _variants(feats: np.ndarray, meas: np.ndarray) -> dict[str, np.ndarray]:
    """The head inputs compared: the extractor's features, with the measurements, these alone."""
    return {
        "extractor (as shipped)": feats,
        "extractor + measurements": np.hstack([feats, meas]),
        "measurements alone": meas,
    }


def _figures(head, f: np.ndarray, groups: np.ndarray, labels: np.ndarray, codes) -> dict:
    """Record-level figures (each record's highest frame score, as ecg-train evaluate)."""
    _, sv = record_max(head.scores(f), groups)
    res = score_all(labels, sv >= head.thresholds, sv, codes).to_json()
    res["brier"] = round(float(np.mean((head.probabilities(sv) - labels) ** 2)), 5)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.measure_features", description=__doc__)
    ap.add_argument("bundle", type=Path)
    ap.add_argument("data", type=Path, nargs="+")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--jobs", type=int, default=1, help="classes fitted at once")
    ap.add_argument(
        "--heldout",
        action="append",
        default=[],
        metavar="NAME=DIR[,DIR]",
        help="a source the bundle never saw, scored by every head (repeatable)",
    )
    ap.add_argument(
        "--reuse",
        type=Path,
        action="append",
        default=[],
        help="a measurement cache (<out>.measure.npz) of an earlier run holding these records",
    )
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
    names = [it.name for it in items]
    cache = a.out.with_suffix(".measure.npz")
    feats, meas, groups = _frames(bundle, items, signals, cache, a.reuse)
    labels = np.array([it.labels for it in items])
    codes = class_codes()
    weights, normal = reward_matrix(codes), codes.index(NORMAL_CODE)
    is_val = np.array([names[g] in val_names for g in groups])
    frame_labels = labels[groups]
    val_rec = np.array([it.name in val_names for it in items])

    held = {}
    for spec in a.heldout:
        src, _, dirs = spec.partition("=")
        hrep = scan([Path(d) for d in dirs.split(",")])
        hitems, hsignals = load_cache(hrep)
        hcache = a.out.with_name(f"{a.out.stem}.{src}.measure.npz")
        hf, hm, hg = _frames(bundle, hitems, hsignals, hcache, a.reuse)
        held[src] = (_variants(hf, hm), hg, np.array([it.labels for it in hitems]))
    results = {}
    for label, f in _variants(feats, meas).items():
        t0 = time.perf_counter()
        head, _ = fit_heads_validated(
            f[~is_val],
            frame_labels[~is_val],
            f[is_val],
            frame_labels[is_val],
            groups[is_val],
            codes,
            weights,
            normal,
            log=lambda *_: None,
            n_jobs=a.jobs,
        )
        res = {"validation": _figures(head, f[is_val], groups[is_val], labels[val_rec], codes)}
        for src, (hx, hg, hl) in held.items():
            res[src] = _figures(head, hx[label], hg, hl, codes)
        results[label] = res
        print(
            f"{label:28s} "
            + "  ".join(f"{k} {v['auroc']:.3f}/{v['challenge_metric']:.3f}" for k, v in res.items())
            + f"  ({time.perf_counter() - t0:.0f} s)",
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
