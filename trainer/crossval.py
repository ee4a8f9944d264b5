"""Cross-validated figures: k-fold by record, or leave one source (hospital) out.

For every split the whole method runs on the training part (phase 1, export,
int8, phase 2) and the held-out part is scored as the edge scores it, with
both heads (the linear SVMs and phase 1's own sigmoid head) at both
precisions. Figures are computed on the pooled held-out predictions, and per
fold.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from trainer.data import kfold, load_cache, scan, source_folds, tqdm_progress
from trainer.fit import TrainConfig
from trainer.heads import record_max
from trainer.labels import class_codes
from trainer.metrics import score_all
from trainer.pipeline import edge_features, fit_bundle, head_probabilities

HEADS = ("svm", "sigmoid")
PRECISIONS = ("fp32", "int8")


def crossval(
    data: list[Path],
    cfg: TrainConfig,
    out: Path,
    folds: int = 5,
    by_source: bool = False,
    resume: bool = False,
    log=print,
) -> dict:
    rep = scan(data)
    log(rep.describe())
    items, signals = load_cache(rep, progress=tqdm_progress("caching"))
    labels = np.array([it.labels for it in items])
    codes = class_codes()
    if by_source:
        fold_of, fold_names = source_folds(items)
    else:
        fold_of = kfold(labels, folds, cfg.seed)
        fold_names = [f"fold{i}" for i in range(folds)]
    pooled_s = {(h, p): np.zeros(labels.shape) for h in HEADS for p in PRECISIONS}
    pooled_d = {(h, p): np.zeros(labels.shape, bool) for h in HEADS for p in PRECISIONS}
    per_fold, epoch_s = [], []
    for f, fname in enumerate(fold_names):
        test = np.where(fold_of == f)[0]
        train = np.where(fold_of != f)[0]
        log(f"== {fname}: train {len(train)}, test {len(test)}")
        t0 = time.perf_counter()
        s = fit_bundle(
            items,
            signals,
            train,
            cfg,
            out / fname / "bundle",
            out / fname / "work",
            rep.summary(),
            resume=resume,
            log=log,
        )
        epoch_s.append(s.seconds_per_epoch)
        rf = edge_features(
            [items[i] for i in test],
            {p: s.bundle.extractor_path(p) for p in PRECISIONS},
        )
        row = {"fold": fname, "n_test": len(test), "seconds": 0.0}
        for p in PRECISIONS:
            feats = rf.features[p]
            _, sv = record_max(s.bundle.head.scores(feats), rf.groups)
            _, sg = record_max(head_probabilities(s.model, feats), rf.groups)
            for h, sc, thr in (
                ("svm", sv, s.bundle.head.thresholds),
                ("sigmoid", sg, s.sigmoid_thresholds),
            ):
                pooled_s[(h, p)][test] = sc
                pooled_d[(h, p)][test] = sc >= thr
                fig = score_all(labels[test], sc >= thr, sc, codes).to_json()
                row[f"{h}_{p}"] = fig
        row["seconds"] = round(time.perf_counter() - t0, 1)
        per_fold.append(row)
        log(
            f"{fname}: svm int8 challenge {_f(row['svm_int8']['challenge_metric'])}, "
            f"sigmoid fp32 {_f(row['sigmoid_fp32']['challenge_metric'])} ({row['seconds']} s)"
        )
    pooled = {
        f"{h}_{p}": score_all(labels, pooled_d[(h, p)], pooled_s[(h, p)], codes).to_json()
        for h in HEADS
        for p in PRECISIONS
    }
    result = {
        "scheme": "leave-one-source-out" if by_source else f"{folds}-fold stratified",
        "model": cfg.model,
        "n_records": len(items),
        "epochs": cfg.epochs,
        "seconds_per_epoch_median": round(float(np.median(epoch_s)), 2),
        "pooled": pooled,
        "per_fold": per_fold,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "results.md").write_text(results_table(result))
    log(results_table(result))
    return result


def _f(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


COLUMNS = ("auroc", "auprc", "accuracy", "f_measure", "f_beta", "challenge_metric")


def fold_means(result: dict) -> dict:
    """Mean of each figure over the folds (None where a fold's figure is undefined)."""
    out = {}
    for key in result["pooled"]:
        rows = [f[key] for f in result["per_fold"]]
        out[key] = {
            c: (
                float(np.mean(vals)) if (vals := [r[c] for r in rows if r[c] is not None]) else None
            )
            for c in rows[0]
        }
    return out


def results_table(result: dict) -> str:
    """Markdown: the seed paper's columns, one row per head and precision.

    Pooled: figures over all held-out predictions together (thresholds and
    score scales of different fold models mixed). Fold mean: each held-out
    part scored on its own, then averaged (closer to "a new hospital").
    """
    means = fold_means(result)
    lines = [
        f"{result['model']}, {result['scheme']}, {result['n_records']} records",
        "",
        "| head | precision | figures | AUROC | AUPRC | accuracy | F-measure | F-beta |"
        " Challenge |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, fig in result["pooled"].items():
        h, p = key.split("_")
        for kind, f in (("pooled", fig), ("fold mean", means[key])):
            lines.append(f"| {h} | {p} | {kind} | " + " | ".join(_f(f[c]) for c in COLUMNS) + " |")
    return "\n".join(lines) + "\n"
