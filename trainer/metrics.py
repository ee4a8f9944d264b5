"""The PhysioNet/CinC Challenge 2020 scores, as its official evaluation code computes them.

A vectorised reimplementation of ``evaluate_12ECG_score.py`` (final version of
physionetchallenges/evaluation-2020, BSD-2-Clause); the tests check it against
a literal transcription of the official functions. Inputs, for ``n_records``
records and ``n_classes`` classes (already merged: equivalent codes scored as
one, as the official loader does before scoring):

- ``labels``: (n_records, n_classes) bool, the diagnoses;
- ``outputs``: (n_records, n_classes) bool, the classifier's decisions;
- ``scores``: (n_records, n_classes) float, the classifier's scores.

Classes where a figure is undefined are ``nan`` and left out of the macro
average (the official ``np.nanmean``): for AUROC a class with no positive or
no negative record, for AUPRC a class with no positive record, for the
F-measures a class that is neither in the labels nor in the outputs. A macro
average over no defined class is ``nan``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge.errors import ScoringError, invalid
from trainer.labels import NORMAL_CODE, reward_matrix


def _check_pair(labels: Any, other: Any, other_name: str, dtype: type) -> tuple[np.ndarray, ...]:
    lab = np.asarray(labels)
    oth = np.asarray(other)
    if lab.ndim != 2 or lab.shape[0] == 0 or lab.shape[1] == 0:
        raise invalid("labels", "a non-empty array of shape (n_records, n_classes)", lab.shape)
    if oth.shape != lab.shape:
        raise invalid(other_name, f"an array of shape {lab.shape} like labels", oth.shape)
    return lab.astype(bool), oth.astype(dtype)


def _nanmean(values: np.ndarray) -> float:
    """Mean of the finite entries; nan when there are none (without numpy's warning)."""
    ok = ~np.isnan(values)
    return float(np.mean(values[ok])) if ok.any() else math.nan


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, nan where den == 0 (the official ``if den: ... else: nan``)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


def accuracy(labels: Any, outputs: Any) -> float:
    """Fraction of records whose decisions match their labels in every class."""
    lab, out = _check_pair(labels, outputs, "outputs", bool)
    return float(np.mean(np.all(lab == out, axis=1)))


def per_class_f_measure(labels: Any, outputs: Any) -> np.ndarray:
    """F1 (n_classes,) of each class, nan where 2·TP + FP + FN = 0."""
    lab, out = _check_pair(labels, outputs, "outputs", bool)
    tp = np.sum(lab & out, axis=0)
    fp = np.sum(~lab & out, axis=0)
    fn = np.sum(lab & ~out, axis=0)
    return _safe_div(2 * tp, 2 * tp + fp + fn)


def f_measure(labels: Any, outputs: Any) -> float:
    """Macro F1 over the classes where it is defined.

    >>> f_measure([[True, False], [False, True]], [[True, False], [True, False]])
    0.3333333333333333
    """
    return _nanmean(per_class_f_measure(labels, outputs))


def beta_measures(labels: Any, outputs: Any, beta: float = 2.0) -> tuple[float, float]:
    """Macro F-beta and G-beta of the 2020 unofficial phase: ``(f_beta, g_beta)``.

    Each record adds 1 / (its number of positive labels, at least 1) to the
    per-class TP/FP/FN counts, so heavily labelled records do not dominate.
    F_beta = (1+β²)TP / ((1+β²)TP + FP + β²FN); G_beta = TP / (TP + FP + β·FN).
    """
    lab, out = _check_pair(labels, outputs, "outputs", bool)
    w = 1.0 / np.maximum(lab.sum(axis=1), 1).astype(np.float64)
    tp = w @ (lab & out)
    fp = w @ (~lab & out)
    fn = w @ (lab & ~out)
    b2 = beta**2
    f_beta = _safe_div((1 + b2) * tp, (1 + b2) * tp + fp + b2 * fn)
    g_beta = _safe_div(tp, tp + fp + beta * fn)
    return _nanmean(f_beta), _nanmean(g_beta)


def _auc_one(positive: np.ndarray, score: np.ndarray) -> tuple[float, float]:
    """AUROC and AUPRC of one class, by the official sweep over distinct scores."""
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    # Thresholds: max + 1 (nothing predicted positive), then each distinct score, descending.
    # Index 0 is the "nothing positive" point whatever the value of max + 1 (as in the loop).
    thresholds = np.unique(score)[::-1]
    pos_sorted = np.sort(score[positive])
    neg_sorted = np.sort(score[~positive])
    tp = np.concatenate(([0], n_pos - np.searchsorted(pos_sorted, thresholds, side="left")))
    fp = np.concatenate(([0], n_neg - np.searchsorted(neg_sorted, thresholds, side="left")))
    tpr = _safe_div(tp, np.full(tp.shape, n_pos))
    tnr = _safe_div(n_neg - fp, np.full(fp.shape, n_neg))
    ppv = _safe_div(tp, tp + fp)
    dtpr = np.diff(tpr)
    auroc = float(np.sum(0.5 * dtpr * (tnr[1:] + tnr[:-1])))
    auprc = float(np.sum(dtpr * ppv[1:]))
    return auroc, auprc


def auroc_auprc(labels: Any, scores: Any) -> tuple[float, float, np.ndarray, np.ndarray]:
    """Macro AUROC and AUPRC, and the per-class values: ``(auroc, auprc, per_auroc, per_auprc)``.

    Not sklearn's: the official sweep over each class's distinct scores, AUROC
    as the trapezoidal area under specificity against sensitivity, AUPRC as the
    step area under precision against recall. NaN scores are refused (the
    official loader turns them into 0 before scoring; do that first if wanted).
    """
    lab, sc = _check_pair(labels, scores, "scores", np.float64)
    if np.isnan(sc).any():
        raise invalid("scores", "no NaN (the official loader reads NaN as 0)", "NaN values")
    n_classes = lab.shape[1]
    per_auroc = np.empty(n_classes)
    per_auprc = np.empty(n_classes)
    for k in range(n_classes):
        per_auroc[k], per_auprc[k] = _auc_one(lab[:, k], sc[:, k])
    return _nanmean(per_auroc), _nanmean(per_auprc), per_auroc, per_auprc


def _modified_confusion(labels: np.ndarray, outputs: np.ndarray) -> np.ndarray:
    """A[j, k]: sum over records of labels[j]·outputs[k] / |labels ∪ outputs| (at least 1)."""
    norm = np.maximum(np.sum(labels | outputs, axis=1), 1).astype(np.float64)
    return (labels / norm[:, None]).T @ outputs.astype(np.float64)


def challenge_metric(labels: Any, outputs: Any, weights: Any, normal_index: int) -> float:
    """The Challenge 2020 metric: reward-weighted, 0 for always-normal, 1 for perfect.

    ``weights`` is the (n_classes, n_classes) reward matrix (rows labels,
    columns outputs), ``normal_index`` the column of sinus rhythm. Where the
    perfect and the always-normal classifier score the same (e.g. every record
    is labelled normal only), the official code returns 0.0 and so does this.
    """
    lab, out = _check_pair(labels, outputs, "outputs", bool)
    w = np.asarray(weights, dtype=np.float64)
    n_classes = lab.shape[1]
    if w.shape != (n_classes, n_classes):
        raise invalid("weights", f"an array of shape ({n_classes}, {n_classes})", w.shape)
    if not (isinstance(normal_index, (int, np.integer)) and 0 <= normal_index < n_classes):
        raise invalid("normal_index", f"an integer in [0, {n_classes})", normal_index)
    inactive = np.zeros_like(lab)
    inactive[:, normal_index] = True
    observed = np.nansum(w * _modified_confusion(lab, out))
    correct = np.nansum(w * _modified_confusion(lab, lab))
    baseline = np.nansum(w * _modified_confusion(lab, inactive))
    if correct == baseline:
        return 0.0
    return float((observed - baseline) / (correct - baseline))


FIGURES = ("auroc", "auprc", "accuracy", "f_measure", "f_beta", "g_beta", "challenge_metric")


def _json_float(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


@dataclass(frozen=True)
class Scores:
    """The seven Challenge figures and the per-class values behind them.

    Per-class arrays are (n_classes,) in the order of ``classes``; nan where undefined.
    """

    auroc: float
    auprc: float
    accuracy: float
    f_measure: float
    f_beta: float
    g_beta: float
    challenge_metric: float
    classes: tuple[str, ...] = ()
    per_class_auroc: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    per_class_auprc: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    per_class_f_measure: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)

    def __post_init__(self) -> None:
        n = len(self.classes)
        for name in ("per_class_auroc", "per_class_auprc", "per_class_f_measure"):
            arr = np.asarray(getattr(self, name), dtype=np.float64)
            if arr.shape != (n,):
                raise invalid(name, f"an array of shape ({n},) like classes", arr.shape)
            object.__setattr__(self, name, arr)

    def to_json(self) -> dict[str, float | None]:
        """The seven figures, keyed as the Challenge reports them; nan becomes null."""
        return {name: _json_float(getattr(self, name)) for name in FIGURES}

    def per_class_json(self) -> dict[str, dict[str, float | None]]:
        """``{code: {"auroc", "auprc", "f_measure"}}``; nan becomes null."""
        return {
            code: {
                "auroc": _json_float(self.per_class_auroc[i]),
                "auprc": _json_float(self.per_class_auprc[i]),
                "f_measure": _json_float(self.per_class_f_measure[i]),
            }
            for i, code in enumerate(self.classes)
        }


def score_all(labels: Any, outputs: Any, scores: Any, classes: Sequence[str]) -> Scores:
    """All seven figures for ``classes`` (merged SNOMED CT codes, one per column).

    The reward matrix comes from ``trainer/scoring/weights.csv``; the normal
    class (426783006) must be one of ``classes``.
    """
    codes = tuple(str(c) for c in classes)
    lab, out = _check_pair(labels, outputs, "outputs", bool)
    if len(codes) != lab.shape[1]:
        raise invalid("classes", f"{lab.shape[1]} codes, one per column", len(codes))
    if NORMAL_CODE not in codes:
        raise ScoringError(f"The normal class {NORMAL_CODE} must be one of the scored classes")
    macro_auroc, macro_auprc, per_auroc, per_auprc = auroc_auprc(lab, scores)
    f_beta, g_beta = beta_measures(lab, out, beta=2)
    return Scores(
        auroc=macro_auroc,
        auprc=macro_auprc,
        accuracy=accuracy(lab, out),
        f_measure=f_measure(lab, out),
        f_beta=f_beta,
        g_beta=g_beta,
        challenge_metric=challenge_metric(lab, out, reward_matrix(codes), codes.index(NORMAL_CODE)),
        classes=codes,
        per_class_auroc=per_auroc,
        per_class_auprc=per_auprc,
        per_class_f_measure=per_class_f_measure(lab, out),
    )
