"""Per hop vs full frame: what the window cache saves, and that it changes no score.

Real records are cut into the frames the agent emits (30 s, hop 10 s) and
classified in order, as a stream, by two classifiers on the same bundle: one
with the window cache (:meth:`edge.classify.Classifier.frame_features`: one
new window per hop), one without (``cache_windows=0``: all three windows
resampled to the model rate, normalised, through the extractor, pooled). Both
start from the frame's preprocessed 500 Hz samples, so each time covers the
whole classifier stage as the agent runs it; the head (one ``math.fsum`` per
class) is timed apart and added for the classify figures. Timings alternate
frame by frame between the two (a burst of load hits both alike); only 30 s
frames one hop after a 30 s frame of the same record are timed (steady state;
a record's flushed last frame is shifted by a partial hop and shares nothing).
Every frame's scores are compared, bit for bit.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from benchmarks._common import BundleRef, pct, print_table, shown, spread


def _frames(config, records: list[Path], n_max: int) -> list[list]:  # type: ignore[no-untyped-def]
    """Per record, its frames' preprocessed samples, in stream order (records >= 40 s first)."""
    from edge.dsp import preprocess
    from edge.framer import record_frames
    from edge.records import read_record

    out, n = [], 0
    for h in records:
        r = read_record(h)
        x = preprocess(r.signal, r.fs, config).astype(np.float32)
        fr = record_frames(x, 5000, config.frame_samples)
        if len(fr) >= 3:
            out.append(fr)
            n += len(fr)
        if n >= n_max:
            break
    return out


def measure_one(ref: BundleRef, records: list[Path], n_frames: int, repeats: int) -> dict:
    from edge.bundle import load_bundle
    from edge.classify import Classifier

    bundle = load_bundle(ref.path)
    cfg = bundle.manifest.dsp
    res: dict = {"bundle": shown(ref.path), "windows_per_frame": 3}
    if bundle.manifest.pools_in_graph:  # format 1: one 30 s window per frame, nothing shared
        return {**res, "windows_per_frame": 1, "note": "format 1 bundle: no window to reuse"}
    seqs = _frames(cfg, records, n_frames)
    for prec in ("int8", "fp32"):
        inc, full = Classifier(bundle, prec), Classifier(bundle, prec, cache_windows=0)
        t_inc: list[list[float]] = []
        t_full: list[list[float]] = []
        compared = equal = 0
        for rep in range(repeats):
            ti, tf = [], []
            inc.reset()
            for seq in seqs:
                prev = None
                for k, f in enumerate(seq):
                    order = (inc, full) if (k + rep) % 2 == 0 else (full, inc)
                    got = {}
                    for clf in order:
                        t0 = time.perf_counter()
                        got[clf is inc] = clf.frame_features(f.samples)
                        dt = (time.perf_counter() - t0) * 1000.0
                        # a 30 s frame one hop after a 30 s frame (not the flushed last one)
                        steady = (
                            prev is not None
                            and prev.n_valid == f.n_valid == cfg.frame_samples
                            and f.start_sample == prev.start_sample + 5000
                        )
                        if steady:
                            (ti if clf is inc else tf).append(dt)
                    prev = f
                    if rep == 0:
                        a, b = got[True], got[False]
                        compared += 1
                        equal += bool(
                            np.array_equal(a, b)
                            and np.array_equal(inc.head.scores(a[None]), full.head.scores(b[None]))
                        )
            t_inc.append(ti)
            t_full.append(tf)
        feats = inc.frame_features(seqs[0][-1].samples)[None]
        head = []
        for _ in range(50):
            t0 = time.perf_counter()
            inc.head.scores(feats)
            head.append((time.perf_counter() - t0) * 1000.0)
        head_ms = float(np.median(head))
        pi = [pct(x) for x in t_inc]
        pf = [pct(x) for x in t_full]
        q = ("p50", "p90", "p99")
        r = {
            "per_hop_ms": {k: float(np.median([p[k] for p in pi])) for k in q},
            "full_frame_ms": {k: float(np.median([p[k] for p in pf])) for k in q},
            "head_ms": head_ms,
            "spread_ratio_p50": spread([a["p50"] / b["p50"] for a, b in zip(pi, pf)]),
            "frames_timed": len(t_inc[0]),
            "frames_compared": compared,
            "scores_equal": equal == compared,
            "frames_equal": equal,
        }
        r["ratio"] = r["per_hop_ms"]["p50"] / r["full_frame_ms"]["p50"]
        r["classify_ratio"] = (r["per_hop_ms"]["p50"] + head_ms) / (
            r["full_frame_ms"]["p50"] + head_ms
        )
        res[prec] = r
    res["records"], res["repeats"] = len(seqs), repeats
    return res


def measure(refs: dict[str, BundleRef], records: list[Path], n_frames: int, repeats: int) -> dict:
    """``incremental.<model>.<precision>.{per_hop_ms, full_frame_ms, ratio, scores_equal}``."""
    out, rows = {}, []
    for model, ref in refs.items():
        res = measure_one(ref, records, n_frames, repeats)
        out[model] = res
        for p in ("int8", "fp32") if "int8" in res else ():
            x = res[p]
            rows.append(
                [
                    model,
                    p,
                    x["full_frame_ms"]["p50"],
                    x["per_hop_ms"]["p50"],
                    x["ratio"],
                    x["classify_ratio"],
                    f"{x['frames_equal']}/{x['frames_compared']}",
                ]
            )
    print_table(
        "Incremental extractor (ms per frame, frame samples -> features, one thread)",
        ["model", "precision", "full frame p50", "per hop p50", "ratio", "+head ratio", "equal"],
        rows,
    )
    return out


if __name__ == "__main__":  # python -m benchmarks.incremental [--quick]: this table alone
    import argparse
    import json

    from benchmarks.__main__ import DATA
    from benchmarks._common import REPO, machine, resolve_bundles, sample_records

    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    refs = resolve_bundles(None, None, a.out.resolve())
    recs = sample_records() if a.quick or not DATA.is_dir() else sorted(DATA.glob("*.hea"))
    res = measure(refs, recs, 40 if a.quick else 300, 2 if a.quick else 3)
    doc = {"machine": machine(), "incremental": res}
    (a.out / "incremental.json").write_text(json.dumps(doc, indent=2) + "\n")
    bad = [
        f"{m}.{p}"
        for m, x in res.items()
        for p in ("int8", "fp32")
        if p in x and not x[p]["scores_equal"]
    ]
    raise SystemExit(f"scores differ with the cache: {bad}" if bad else 0)
