"""Do finer threshold candidates transfer? ``python -m benchmarks.thresholds BUNDLE PTBXL_DIR``.

Phase 2 chooses each class's threshold by coordinate ascent on the Challenge
metric (``trainer.heads.tune_thresholds``) over 41 quantiles of the class's
scores: a rare class (7 atrial flutters in fold 9's 2,193 records) can then
be called on none of its records or on the top 2.5 % (55), nothing between.
This compares that with finer candidates near the top (also the k-th highest
score, k log-spaced from 1 to n), on the bundle's int8 scores of PTB-XL fold
9: tuned on a random half of its patients, scored on the other half (and the
other way round), ``--splits`` times. In-sample figures (tuned and scored on
all of fold 9) are printed beside, to show how much of a gain is fitted.
Writes ``--out`` (JSON). Accuracy figures only.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from edge.bundle import load_bundle
from trainer.data import scan
from trainer.evaluate import evaluate_items
from trainer.heads import tune_thresholds
from trainer.labels import NORMAL_CODE, class_codes, reward_matrix
from trainer.metrics import challenge_metric


def fine_candidates(scores: np.ndarray) -> np.ndarray:
    """The 41 quantiles plus the k-th highest score, k log-spaced from 1 to n, and just above."""
    s = np.sort(scores)[::-1]
    tops = np.unique(np.round(np.geomspace(1, len(s), 60)).astype(int)) - 1
    q = np.quantile(s, np.linspace(0.0, 1.0, 41))
    return np.unique(np.concatenate([q, s[tops], [s[0] + 1e-3]]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.thresholds", description=__doc__)
    ap.add_argument("bundle", type=Path)
    ap.add_argument("ptbxl", type=Path)
    ap.add_argument("--fold", type=int, default=9)
    ap.add_argument("--splits", type=int, default=12)
    ap.add_argument("--out", type=Path, default=Path("thresholds.json"))
    a = ap.parse_args(argv)
    items = [it for it in scan([a.ptbxl]).items if it.strat_fold == a.fold]
    ev = evaluate_items(load_bundle(a.bundle), items, ["int8"])["int8"]
    scores, labels = ev.scores, ev.labels.astype(bool)  # calibrated probabilities: monotone
    codes = class_codes()
    weights, normal = reward_matrix(codes), codes.index(NORMAL_CODE)
    init = np.full(len(codes), 0.5)  # probability 0.5: where an SVM's raw score is about 0
    methods = {
        "quantiles (as trained)": lambda y, s: tune_thresholds(y, s, weights, normal, init=init),
        "finer near the top": lambda y, s: tune_thresholds(
            y, s, weights, normal, init=init, candidates=fine_candidates
        ),
    }
    patients = np.array([it.patient or it.name for it in items])
    uniq = np.unique(patients)
    rng = np.random.default_rng(0)
    held: dict[str, list[float]] = {m: [] for m in methods}
    for _ in range(a.splits):
        half = np.isin(patients, rng.permutation(uniq)[: len(uniq) // 2])
        for tune, test in ((half, ~half), (~half, half)):
            for m, fn in methods.items():
                t = fn(labels[tune], scores[tune])
                held[m].append(
                    float(challenge_metric(labels[test], scores[test] >= t, weights, normal))
                )
    out = {"bundle": str(a.bundle), "records": len(items), "splits": 2 * a.splits, "methods": {}}
    for m, fn in methods.items():
        t = fn(labels, scores)
        out["methods"][m] = {
            "in_sample": float(challenge_metric(labels, scores >= t, weights, normal)),
            "held_out_mean": float(np.mean(held[m])),
            "held_out_sd": float(np.std(held[m])),
        }
    d = np.array(held["finer near the top"]) - np.array(held["quantiles (as trained)"])
    out["paired_difference"] = {
        "mean": float(d.mean()),
        "sd": float(d.std()),
        "wins": int((d > 0).sum()),
    }
    for m, r in out["methods"].items():
        print(
            f"{m:24s} in-sample {r['in_sample']:.4f}  held-out half {r['held_out_mean']:.4f} "
            f"+- {r['held_out_sd']:.4f}"
        )
    print(
        f"paired (finer - quantiles) on held-out halves: {d.mean():+.4f} +- {d.std():.4f}, "
        f"finer better in {int((d > 0).sum())} of {len(d)}"
    )
    a.out.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
