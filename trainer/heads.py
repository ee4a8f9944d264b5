"""Phase 2: one linear SVM per scored class on the extractor's features.

Features are standardised; each class gets a ``LinearSVC`` (positives: frames
of records with the class; negatives: all others; balanced class weights).
``C`` is chosen per class by cross-validation on the training folds only
(average precision of out-of-fold decision values). Per-class thresholds on
the decision values are then tuned on those out-of-fold values to maximise
the Challenge metric, by coordinate ascent. A class with no positive (or no
negative) training record cannot be learned: it is reported and gets a head
that never fires.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from joblib import Parallel, delayed
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import average_precision_score
from sklearn.svm import LinearSVC

from edge.bundle import Head
from trainer.metrics import challenge_metric

C_GRID = (0.001, 0.01, 0.1, 1.0)


@dataclass
class HeadReport:
    """What phase 2 chose, for the manifest and the log."""

    C: dict[str, float]
    skipped: dict[str, str]
    oof_challenge_metric: float


def _svm(C: float) -> LinearSVC:
    return LinearSVC(C=C, class_weight="balanced", max_iter=5000, dual="auto")


def _fit_scores(z_tr, y_tr, z_te, C) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return _svm(C).fit(z_tr, y_tr).decision_function(z_te)


def record_max(scores: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Aggregate frame scores to records by their maximum (as the alerts do: any frame)."""
    uniq, inv = np.unique(groups, return_inverse=True)
    out = np.full((len(uniq), scores.shape[1]), -np.inf, dtype=np.float64)
    np.maximum.at(out, inv, scores)
    return uniq, out


def quantile_candidates(scores: np.ndarray) -> np.ndarray:
    """The 41 quantiles of one class's scores, then just above its highest (calls nothing)."""
    cands = np.unique(np.quantile(scores, np.linspace(0.0, 1.0, 41)))
    return np.concatenate([cands, [scores.max() + 1e-3]])


def tune_thresholds(
    labels: np.ndarray,
    scores: np.ndarray,
    weights: np.ndarray,
    normal: int,
    init: np.ndarray | None = None,
    passes: int = 2,
    candidates=None,
) -> np.ndarray:
    """Per-class thresholds maximising the Challenge metric (coordinate ascent).

    ``candidates``: one class's scores -> the thresholds to try for it
    (default :func:`quantile_candidates`).
    """
    k = labels.shape[1]
    candidates = candidates or quantile_candidates
    thr = np.zeros(k) if init is None else init.astype(np.float64).copy()
    best = challenge_metric(labels, scores >= thr, weights, normal)
    for _ in range(passes):
        for j in range(k):
            for c in candidates(scores[:, j]):
                trial = thr.copy()
                trial[j] = c
                m = challenge_metric(labels, scores >= trial, weights, normal)
                if m > best + 1e-12:
                    best, thr = m, trial
    return thr


def fit_heads(
    features: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    folds: np.ndarray,
    codes: list[str],
    weights: np.ndarray,
    normal: int,
    log=print,
) -> tuple[Head, HeadReport]:
    """Fit the heads on frame features (n, D) with record labels (n, K).

    ``groups`` names the record of each frame (frames of one record stay in
    one fold); ``folds`` is the inner fold of each frame.
    """
    mean = features.mean(0)
    scale = features.std(0)
    scale = np.where(scale > 1e-6, scale, 1.0)
    z = (features - mean) / scale
    n_feat, k = z.shape[1], labels.shape[1]
    W = np.zeros((k, n_feat))
    b = np.full(k, -1.0)
    oof = np.full(labels.shape, -1.0)
    chosen, skipped = {}, {}
    fold_ids = np.unique(folds)
    for j, code in enumerate(codes):
        y = labels[:, j].astype(bool)
        if y.all() or not y.any():
            skipped[code] = "no positive record" if not y.any() else "no negative record"
            log(f"class {code}: {skipped[code]} in the training data; skipped (never fires)")
            continue
        best_c, best_ap, best_oof = C_GRID[1], -1.0, None
        for C in C_GRID:
            s = np.full(len(y), np.nan)
            for f in fold_ids:
                te = folds == f
                tr = ~te
                if y[tr].all() or not y[tr].any():
                    s[te] = 0.0
                    continue
                s[te] = _fit_scores(z[tr], y[tr], z[te], C)
            ap = average_precision_score(y, s) if y.sum() >= 2 else 0.0
            if ap > best_ap:
                best_c, best_ap, best_oof = C, ap, s
        chosen[code] = best_c
        oof[:, j] = best_oof
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            svm = _svm(best_c).fit(z, y)
        W[j], b[j] = svm.coef_[0], svm.intercept_[0]
    head, oof_metric, n_rec = _calibrated_head(
        codes, W, b, mean, scale, oof, labels, groups, skipped, weights, normal
    )
    log(f"phase 2: out-of-fold challenge metric {oof_metric:.3f} over {n_rec} records")
    return head, HeadReport(chosen, skipped, oof_metric)


def _calibrated_head(codes, W, b, mean, scale, scores, labels, groups, skipped, weights, normal):
    """Thresholds (record level, Challenge metric) and Platt calibration (frame level) from
    held-out ``scores`` of frames with ``labels`` of records ``groups``: the head, its
    Challenge metric on those records and their number."""
    k = len(codes)
    _, rec_scores = record_max(scores, groups)
    _, rec_labels = record_max(labels.astype(float), groups)
    rec_labels = rec_labels > 0.5
    thr = tune_thresholds(rec_labels, rec_scores, weights, normal)
    pa, pb = np.ones(k), np.zeros(k)
    for j in range(k):
        pa[j], pb[j] = platt(scores[:, j], labels[:, j])
    for code in skipped:
        thr[codes.index(code)] = 0.0  # with W = 0, b = -1: never positive
    metric = float(challenge_metric(rec_labels, rec_scores >= thr, weights, normal))
    head = Head(
        codes=tuple(codes),
        W=W.astype(np.float32),
        b=b.astype(np.float32),
        thresholds=thr.astype(np.float32),
        feature_mean=mean.astype(np.float32),
        feature_scale=scale.astype(np.float32),
        platt_a=pa.astype(np.float32),
        platt_b=pb.astype(np.float32),
    )
    return head, metric, len(rec_labels)


def platt(scores: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Platt scaling of one class's decision values: (a, b) with P = 1 / (1 + exp(-(a s + b))).

    A logistic regression on the validation scores; ``a`` is kept positive
    (probabilities in the order of the scores) and ``b`` follows the base rate
    when the class has no positive there.
    """
    from sklearn.linear_model import LogisticRegression

    y = np.asarray(y, dtype=bool)
    if y.all() or not y.any():
        p = (y.sum() + 0.5) / (len(y) + 1.0)
        return 1e-3, float(np.log(p / (1 - p)))
    lr = LogisticRegression(C=1e4, max_iter=1000).fit(scores.reshape(-1, 1), y)
    return max(float(lr.coef_[0, 0]), 1e-3), float(lr.intercept_[0])


def _best_svm(z_tr, y, z_va, yv, c_grid):
    """One class: the SVM of the ``C`` with the best validation average precision, as
    (C, weights, intercept, validation decision values)."""
    y, yv = np.asarray(y, dtype=bool), np.asarray(yv, dtype=bool)
    best = None
    for C in c_grid:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            svm = _svm(C).fit(z_tr, y)
        s = svm.decision_function(z_va)
        ap = average_precision_score(yv, s) if yv.any() else -float(C)  # none: smallest C
        if best is None or ap > best[0]:
            best = (ap, C, svm.coef_[0].copy(), float(svm.intercept_[0]), s)
    return best[1:]


def fit_heads_validated(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    val_features: np.ndarray,
    val_labels: np.ndarray,
    val_groups: np.ndarray,
    codes: list[str],
    weights: np.ndarray,
    normal: int,
    log=print,
    c_grid: tuple[float, ...] = (0.001, 0.01, 0.1),
    n_jobs: int = 1,
) -> tuple[Head, HeadReport]:
    """Heads fitted on training frames; C, Platt calibration and thresholds on validation.

    For sets large enough to hold out patients (PTB-XL's fold 9): one fit per
    ``C`` and class instead of one per inner fold, and thresholds chosen on
    records the extractor never trained on, which transfer (the inner folds'
    out-of-fold scores of a network that saw those records do not).
    ``val_groups`` names the record of each validation frame; ``n_jobs``
    classes are fitted at once, in as many processes (the result does not
    depend on it).
    """
    mean = train_features.mean(0)
    scale = train_features.std(0)
    scale = np.where(scale > 1e-6, scale, 1.0)
    z_tr = (train_features - mean) / scale
    z_va = (val_features - mean) / scale
    k = train_labels.shape[1]
    W = np.zeros((k, z_tr.shape[1]))
    b = np.full(k, -1.0)
    val_scores = np.full((len(z_va), k), -1.0)
    chosen, skipped = {}, {}
    todo = []
    for j, code in enumerate(codes):
        y = train_labels[:, j].astype(bool)
        if y.all() or not y.any():
            skipped[code] = "no positive record" if not y.any() else "no negative record"
            log(f"class {code}: {skipped[code]} in the training data; skipped (never fires)")
            continue
        todo.append(j)
    # Classes are independent: one process per core (liblinear is single-threaded).
    fitted = Parallel(n_jobs=min(max(1, n_jobs), max(1, len(todo))))(
        delayed(_best_svm)(z_tr, train_labels[:, j], z_va, val_labels[:, j], c_grid) for j in todo
    )
    for j, (C, w, b0, s) in zip(todo, fitted):
        chosen[codes[j]], W[j], b[j], val_scores[:, j] = C, w, b0, s
        log(f"phase 2: class {codes[j]}: C {C:g}")
    head, metric, n_rec = _calibrated_head(
        codes, W, b, mean, scale, val_scores, val_labels, val_groups, skipped, weights, normal
    )
    log(f"phase 2: validation challenge metric {metric:.3f} over {n_rec} records")
    return head, HeadReport(chosen, skipped, metric)
