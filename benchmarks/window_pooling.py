"""A frame's windows: features averaged before the heads, or scores max-pooled after them?

    python -m benchmarks.window_pooling BUNDLE [BUNDLE ...] --source cpsc=DIR[,DIR] ...

Issue 16's question, asked where it can be answered. A frame of 30 s holds
three 10 s windows; the edge averages their pooled features and applies
each class's dot product once (``edge.classify``). The alternative scores
each window and takes the largest. On PTB-XL (10 s records: one window a
frame) the two are the same numbers, so fold 9 cannot tell them apart; the
records of the other sources that are longer than 10 s can. For each bundle
(trained on PTB-XL alone: these sources are hospitals it never saw) and
source, a record's score per class is the maximum over its frames either
way (as ``trainer.evaluate``), decided against the bundle's thresholds
(chosen on fold 9), and scored with the Challenge's metrics. Prints a table,
writes ``benchmarks/results/window_pooling.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

from benchmarks._common import REPO


def record_scores(clf, rec) -> tuple[np.ndarray, np.ndarray, int]:  # type: ignore[no-untyped-def]
    """(K,) record scores with the windows' features averaged, and with their scores
    max-pooled; the number of windows of the record's longest frame."""
    from edge.dsp import preprocess
    from edge.framer import record_frames

    cfg = clf.bundle.manifest.dsp
    x = preprocess(rec.signal, rec.fs, cfg)
    mean_f, max_s, most = [], [], 0
    for f in record_frames(x, 5000, cfg.frame_samples):
        rows = clf.window_rows(f.model_input(cfg))  # (n_windows, D): each window's features
        mean_f.append(rows.mean(axis=0))
        max_s.append(clf.head.scores(rows).max(axis=0))
        most = max(most, len(rows))
    return clf.head.scores(np.stack(mean_f)).max(axis=0), np.max(max_s, axis=0), most


def measure(bundle_path: Path, folders: list[Path]) -> dict:
    from edge.bundle import load_bundle
    from edge.classify import Classifier
    from edge.records import read_record
    from trainer.data import scan
    from trainer.metrics import score_all

    bundle = load_bundle(bundle_path)
    clf = Classifier(bundle, "int8")
    items = scan(folders).items
    labels = np.array([it.labels for it in items])
    codes = list(bundle.manifest.codes)
    a, b, windows = [], [], []
    for it in items:
        s_mean, s_max, n = record_scores(clf, read_record(it.header))
        a.append(s_mean)
        b.append(s_max)
        windows.append(n)
    head = bundle.head
    out = {"records": len(items), "records_with_3_windows": int(sum(w >= 3 for w in windows))}
    for name, s in (("features_averaged", np.array(a)), ("scores_max_pooled", np.array(b))):
        d = s >= head.thresholds
        shown = head.probabilities(s) if head.calibrated else s
        figs = score_all(labels, d, shown, codes)
        out[name] = {
            k: float(getattr(figs, k)) for k in ("auroc", "auprc", "f_measure", "challenge_metric")
        }
        out[name]["findings_per_record"] = float(d.sum(axis=1).mean())
    out["labels_per_record"] = float(labels.sum(axis=1).mean())
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundles", nargs="+", type=Path)
    ap.add_argument("--source", action="append", required=True, help="NAME=DIR[,DIR]")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = ap.parse_args(argv)
    sources = {}
    for spec in args.source:
        name, _, dirs = spec.partition("=")
        sources[name] = [Path(d) for d in dirs.split(",")]
    res: dict = {}
    for src, folders in sources.items():
        for b in args.bundles:
            r = measure(b, folders)
            res.setdefault(src, {})[b.parent.name if b.name == "bundle" else b.name] = r
            print(src, b, json.dumps(r), flush=True)
    print("\n| source | bundles | records (3 windows) | labels / record | "
          "features averaged: AUROC, Challenge, findings / record | "
          "scores max-pooled: AUROC, Challenge, findings / record |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for src, by in res.items():
        rs = list(by.values())

        def m(key: str, fig: str, rs=rs) -> str:
            v = [r[key][fig] for r in rs]
            return f"{statistics.mean(v):.3f}" + (
                f" ± {statistics.stdev(v):.3f}" if len(v) > 1 else ""
            )

        row = [
            src,
            str(len(rs)),
            f"{rs[0]['records']} ({rs[0]['records_with_3_windows']})",
            f"{rs[0]['labels_per_record']:.2f}",
        ]
        for key in ("features_averaged", "scores_max_pooled"):
            row.append(
                ", ".join(m(key, f) for f in ("auroc", "challenge_metric", "findings_per_record"))
            )
        print("| " + " | ".join(row) + " |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "window_pooling.json").write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
