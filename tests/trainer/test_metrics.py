"""trainer.metrics against hand-worked cases and the official 2020 evaluation code."""
# ruff: noqa: RUF059  (the official reference below is kept literal)

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edge.errors import ConfigError, ScoringError
from trainer.labels import NORMAL_CODE, class_codes, reward_matrix
from trainer.metrics import (
    FIGURES,
    Scores,
    accuracy,
    auroc_auprc,
    beta_measures,
    challenge_metric,
    f_measure,
    per_class_f_measure,
    score_all,
)

# ---------------------------------------------------------------------------
# Reference: a literal transcription of the scoring functions of the official
# evaluation code, evaluate_12ECG_score.py, final version of
# https://github.com/physionetchallenges/evaluation-2020 (BSD-2-Clause,
# Copyright (c) 2020 PhysioNet/Computing in Cardiology Challenges; the licence
# is in trainer/scoring/LICENSE). Only changes: np.bool -> bool, and the
# "Mean of empty slice" warning of np.nanmean silenced (our pytest config makes
# numpy warnings errors; the official value is still nan).
# ---------------------------------------------------------------------------


def _ref_nanmean(x):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(x)


def ref_compute_accuracy(labels, outputs):
    num_recordings, num_classes = np.shape(labels)
    num_correct_recordings = 0
    for i in range(num_recordings):
        if np.all(labels[i, :] == outputs[i, :]):
            num_correct_recordings += 1
    return float(num_correct_recordings) / float(num_recordings)


def ref_compute_confusion_matrices(labels, outputs, normalize=False):
    num_recordings, num_classes = np.shape(labels)
    A = np.zeros((num_classes, 2, 2))
    for i in range(num_recordings):
        normalization = float(max(np.sum(labels[i, :]), 1)) if normalize else 1.0
        for j in range(num_classes):
            if labels[i, j] == 1 and outputs[i, j] == 1:  # TP
                A[j, 1, 1] += 1.0 / normalization
            elif labels[i, j] == 0 and outputs[i, j] == 1:  # FP
                A[j, 1, 0] += 1.0 / normalization
            elif labels[i, j] == 1 and outputs[i, j] == 0:  # FN
                A[j, 0, 1] += 1.0 / normalization
            elif labels[i, j] == 0 and outputs[i, j] == 0:  # TN
                A[j, 0, 0] += 1.0 / normalization
    return A


def ref_compute_f_measure(labels, outputs):
    num_recordings, num_classes = np.shape(labels)
    A = ref_compute_confusion_matrices(labels, outputs)
    f_measure = np.zeros(num_classes)
    for k in range(num_classes):
        tp, fp, fn, _tn = A[k, 1, 1], A[k, 1, 0], A[k, 0, 1], A[k, 0, 0]
        if 2 * tp + fp + fn:
            f_measure[k] = float(2 * tp) / float(2 * tp + fp + fn)
        else:
            f_measure[k] = float("nan")
    return _ref_nanmean(f_measure), f_measure


def ref_compute_beta_measures(labels, outputs, beta):
    num_recordings, num_classes = np.shape(labels)
    A = ref_compute_confusion_matrices(labels, outputs, normalize=True)
    f_beta_measure = np.zeros(num_classes)
    g_beta_measure = np.zeros(num_classes)
    for k in range(num_classes):
        tp, fp, fn, _tn = A[k, 1, 1], A[k, 1, 0], A[k, 0, 1], A[k, 0, 0]
        if (1 + beta**2) * tp + fp + beta**2 * fn:
            f_beta_measure[k] = float((1 + beta**2) * tp) / float(
                (1 + beta**2) * tp + fp + beta**2 * fn
            )
        else:
            f_beta_measure[k] = float("nan")
        if tp + fp + beta * fn:
            g_beta_measure[k] = float(tp) / float(tp + fp + beta * fn)
        else:
            g_beta_measure[k] = float("nan")
    return _ref_nanmean(f_beta_measure), _ref_nanmean(g_beta_measure)


def ref_compute_auc(labels, outputs):
    num_recordings, num_classes = np.shape(labels)
    auroc = np.zeros(num_classes)
    auprc = np.zeros(num_classes)
    for k in range(num_classes):
        thresholds = np.unique(outputs[:, k])
        thresholds = np.append(thresholds, thresholds[-1] + 1)
        thresholds = thresholds[::-1]
        num_thresholds = len(thresholds)
        tp = np.zeros(num_thresholds)
        fp = np.zeros(num_thresholds)
        fn = np.zeros(num_thresholds)
        tn = np.zeros(num_thresholds)
        fn[0] = np.sum(labels[:, k] == 1)
        tn[0] = np.sum(labels[:, k] == 0)
        idx = np.argsort(outputs[:, k])[::-1]
        i = 0
        for j in range(1, num_thresholds):
            tp[j] = tp[j - 1]
            fp[j] = fp[j - 1]
            fn[j] = fn[j - 1]
            tn[j] = tn[j - 1]
            while i < num_recordings and outputs[idx[i], k] >= thresholds[j]:
                if labels[idx[i], k]:
                    tp[j] += 1
                    fn[j] -= 1
                else:
                    fp[j] += 1
                    tn[j] -= 1
                i += 1
        tpr = np.zeros(num_thresholds)
        tnr = np.zeros(num_thresholds)
        ppv = np.zeros(num_thresholds)
        for j in range(num_thresholds):
            if tp[j] + fn[j]:
                tpr[j] = float(tp[j]) / float(tp[j] + fn[j])
            else:
                tpr[j] = float("nan")
            if fp[j] + tn[j]:
                tnr[j] = float(tn[j]) / float(fp[j] + tn[j])
            else:
                tnr[j] = float("nan")
            if tp[j] + fp[j]:
                ppv[j] = float(tp[j]) / float(tp[j] + fp[j])
            else:
                ppv[j] = float("nan")
        for j in range(num_thresholds - 1):
            auroc[k] += 0.5 * (tpr[j + 1] - tpr[j]) * (tnr[j + 1] + tnr[j])
            auprc[k] += (tpr[j + 1] - tpr[j]) * ppv[j + 1]
    return _ref_nanmean(auroc), _ref_nanmean(auprc), auroc, auprc


def ref_compute_modified_confusion_matrix(labels, outputs):
    num_recordings, num_classes = np.shape(labels)
    A = np.zeros((num_classes, num_classes))
    for i in range(num_recordings):
        normalization = float(max(np.sum(np.any((labels[i, :], outputs[i, :]), axis=0)), 1))
        for j in range(num_classes):
            if labels[i, j]:
                for k in range(num_classes):
                    if outputs[i, k]:
                        A[j, k] += 1.0 / normalization
    return A


def ref_compute_challenge_metric(weights, labels, outputs, classes, normal_class):
    num_recordings, num_classes = np.shape(labels)
    normal_index = classes.index(normal_class)
    A = ref_compute_modified_confusion_matrix(labels, outputs)
    observed_score = np.nansum(weights * A)
    correct_outputs = labels
    A = ref_compute_modified_confusion_matrix(labels, correct_outputs)
    correct_score = np.nansum(weights * A)
    inactive_outputs = np.zeros((num_recordings, num_classes), dtype=bool)
    inactive_outputs[:, normal_index] = 1
    A = ref_compute_modified_confusion_matrix(labels, inactive_outputs)
    inactive_score = np.nansum(weights * A)
    if correct_score != inactive_score:
        normalized_score = float(observed_score - inactive_score) / float(
            correct_score - inactive_score
        )
    else:
        normalized_score = 0.0
    return normalized_score


# ---------------------------------------------------------------------------

CODES = class_codes()
AF, IAVB = "164889003", "270492004"
SMALL = [AF, IAVB, NORMAL_CODE]


def _close(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def _random_case(seed: int, n_records: int, n_classes: int, p: float):
    rng = np.random.default_rng(seed)
    labels = rng.random((n_records, n_classes)) < p
    outputs = rng.random((n_records, n_classes)) < p
    # Coarse scores so that ties occur, as with real quantized outputs.
    scores = np.round(rng.random((n_records, n_classes)) * 0.5 + 0.4 * labels, 1)
    return labels, outputs, scores


class TestHandWorked:
    # Classes (AF, IAVB, NSR); rewards W[AF,IAVB]=0.3, W[AF,NSR]=0.25, W[IAVB,NSR]=0.45.
    #   r1: labels {AF}       outputs {AF}
    #   r2: labels {AF, IAVB} outputs {IAVB}
    #   r3: labels {NSR}      outputs {AF}
    LABELS = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1]], dtype=bool)
    OUTPUTS = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0]], dtype=bool)

    def test_challenge_metric(self):
        # Modified confusion matrix, each record's entries divided by |labels ∪ outputs|:
        #   observed: r1 A[AF,AF]=1; r2 (union 2) A[AF,IAVB]=A[IAVB,IAVB]=1/2;
        #             r3 (union 2) A[NSR,AF]=1/2
        #             -> 1 + 0.5*0.3 + 0.5*1 + 0.5*0.25 = 1.775
        #   correct:  r1 1; r2 (union 2) four entries of 1/2: 0.5+0.15+0.15+0.5 = 1.3; r3 1
        #             -> 3.3
        #   inactive: r1 (union 2) A[AF,NSR]=1/2 -> 0.125; r2 (union 3) A[AF,NSR]=A[IAVB,NSR]=1/3
        #             -> 0.25/3 + 0.45/3 = 0.2333...; r3 A[NSR,NSR]=1 -> 1.3583333 = 163/120
        #   (1.775 - 163/120) / (3.3 - 163/120) = (5/12) / (233/120) = 50/233
        w = reward_matrix(SMALL)
        got = challenge_metric(self.LABELS, self.OUTPUTS, w, 2)
        assert got == pytest.approx(50 / 233, rel=1e-12)

    def test_accuracy(self):
        # Only r1 matches in every class.
        assert accuracy(self.LABELS, self.OUTPUTS) == pytest.approx(1 / 3)

    def test_f_measure(self):
        # AF: TP r1, FN r2, FP r3 -> 2/(2+1+1) = 0.5; IAVB: TP r2 -> 1; NSR: FN r3 -> 0.
        per = per_class_f_measure(self.LABELS, self.OUTPUTS)
        np.testing.assert_allclose(per, [0.5, 1.0, 0.0])
        assert f_measure(self.LABELS, self.OUTPUTS) == pytest.approx(0.5)

    def test_beta_measures(self):
        # Per-record weight 1/|labels|: r1 1, r2 1/2, r3 1.
        # AF: TP 1, FN 1/2, FP 1 -> F2 = 5/(5+1+4*0.5) = 5/8, G2 = 1/(1+1+2*0.5) = 1/3
        # IAVB: TP 1/2 -> F2 = G2 = 1; NSR: FN 1 -> F2 = G2 = 0
        f_beta, g_beta = beta_measures(self.LABELS, self.OUTPUTS, beta=2)
        assert f_beta == pytest.approx((5 / 8 + 1 + 0) / 3)
        assert g_beta == pytest.approx((1 / 3 + 1 + 0) / 3)

    def test_auroc_auprc_with_ties_and_a_class_without_positives(self):
        # Class 0: scores (0.9, 0.8, 0.8, 0.1), labels (1, 0, 1, 0); P = N = 2.
        #   threshold  TP FP  TPR  TNR  PPV
        #   1.9 (max+1) 0  0  0    1    -
        #   0.9         1  0  1/2  1    1
        #   0.8         2  1  1    1/2  2/3
        #   0.1         2  2  1    0    1/2
        #   AUROC = 1/2*1/2*(1+1) + 1/2*1/2*(1+1/2) + 0 = 0.875
        #   AUPRC = 1/2*1 + 1/2*2/3 + 0 = 5/6
        # Class 1 has no positive record: nan, left out of the macro average.
        labels = np.array([[1, 0], [0, 0], [1, 0], [0, 0]], dtype=bool)
        scores = np.array([[0.9, 0.2], [0.8, 0.3], [0.8, 0.1], [0.1, 0.5]])
        auroc, auprc, per_auroc, per_auprc = auroc_auprc(labels, scores)
        assert auroc == pytest.approx(0.875)
        assert auprc == pytest.approx(5 / 6)
        assert per_auroc[0] == pytest.approx(0.875)
        assert math.isnan(per_auroc[1]) and math.isnan(per_auprc[1])

    def test_auroc_is_nan_for_a_class_of_positives_only_but_auprc_is_defined(self):
        # Every record positive: TNR undefined -> AUROC nan; PPV is 1 everywhere -> AUPRC 1.
        labels = np.ones((3, 1), dtype=bool)
        _, auprc, per_auroc, _ = auroc_auprc(labels, np.array([[0.1], [0.5], [0.9]]))
        assert math.isnan(per_auroc[0])
        assert auprc == pytest.approx(1.0)

    def test_all_classes_undefined_gives_nan_without_warning(self):
        labels = np.zeros((2, 2), dtype=bool)
        auroc, auprc, _, _ = auroc_auprc(labels, np.zeros((2, 2)))
        assert math.isnan(auroc) and math.isnan(auprc)
        assert math.isnan(f_measure(labels, labels))

    def test_metric_is_zero_when_perfect_equals_inactive(self):
        # Every record normal only: perfect == always-normal; official returns 0.0, not nan.
        labels = np.zeros((2, 3), dtype=bool)
        labels[:, 2] = True
        assert challenge_metric(labels, labels, reward_matrix(SMALL), 2) == 0.0

    def test_record_with_no_label_and_no_output_adds_nothing(self):
        # Normalisation max(|union|, 1): an all-zero record neither divides by 0 nor scores.
        labels = np.array([[1, 0, 0], [0, 0, 0]], dtype=bool)
        outputs = np.array([[1, 0, 0], [0, 0, 0]], dtype=bool)
        assert challenge_metric(labels, outputs, reward_matrix(SMALL), 2) == pytest.approx(1.0)


class TestAgainstOfficial:
    @pytest.mark.parametrize("seed", range(8))
    @pytest.mark.parametrize(("n_records", "p"), [(5, 0.3), (40, 0.1), (60, 0.04)])
    def test_all_figures_match(self, seed, n_records, p):
        labels, outputs, scores = _random_case(seed, n_records, len(CODES), p)
        if seed % 2:  # the official loader leaves all-zero rows all-zero; half the cases
            labels[:, CODES.index(NORMAL_CODE)] |= ~labels.any(axis=1)
        got = score_all(labels, outputs, scores, CODES)
        weights = reward_matrix(CODES)

        ref_auroc, ref_auprc, ref_per_auroc, ref_per_auprc = ref_compute_auc(labels, scores)
        ref_f, ref_per_f = ref_compute_f_measure(labels, outputs)
        ref_fb, ref_gb = ref_compute_beta_measures(labels, outputs, beta=2)
        expected = {
            "auroc": ref_auroc,
            "auprc": ref_auprc,
            "accuracy": ref_compute_accuracy(labels, outputs),
            "f_measure": ref_f,
            "f_beta": ref_fb,
            "g_beta": ref_gb,
            "challenge_metric": ref_compute_challenge_metric(
                weights, labels, outputs, CODES, NORMAL_CODE
            ),
        }
        for name, value in expected.items():
            assert _close(getattr(got, name), float(value)), (name, getattr(got, name), value)
        np.testing.assert_allclose(got.per_class_auroc, ref_per_auroc, rtol=1e-12)
        np.testing.assert_allclose(got.per_class_auprc, ref_per_auprc, rtol=1e-12)
        np.testing.assert_allclose(got.per_class_f_measure, ref_per_f, rtol=1e-12)

    @settings(max_examples=60, deadline=None)
    @given(
        labels=hnp.arrays(bool, st.tuples(st.integers(1, 12), st.just(3))),
        data=st.data(),
    )
    def test_small_cases_match(self, labels, data):
        outputs = data.draw(hnp.arrays(bool, labels.shape))
        scores = data.draw(
            hnp.arrays(np.float64, labels.shape, elements=st.sampled_from([0, 0.5, 1]))
        )
        w = reward_matrix(SMALL)
        assert _close(
            challenge_metric(labels, outputs, w, 2),
            ref_compute_challenge_metric(w, labels, outputs, SMALL, NORMAL_CODE),
        )
        got = auroc_auprc(labels, scores)
        ref = ref_compute_auc(labels, scores)
        assert _close(got[0], float(ref[0])) and _close(got[1], float(ref[1]))
        fb, gb = beta_measures(labels, outputs)
        rfb, rgb = ref_compute_beta_measures(labels, outputs, 2)
        assert _close(fb, float(rfb)) and _close(gb, float(rgb))


class TestProperties:
    @settings(max_examples=50, deadline=None)
    @given(labels=hnp.arrays(bool, st.tuples(st.integers(1, 20), st.just(len(CODES)))))
    def test_perfect_is_one_and_always_normal_is_zero(self, labels):
        normal = CODES.index(NORMAL_CODE)
        w = reward_matrix(CODES)
        inactive = np.zeros_like(labels)
        inactive[:, normal] = True
        perfect = challenge_metric(labels, labels, w, normal)
        baseline = challenge_metric(labels, inactive, w, normal)
        assert baseline == pytest.approx(0.0, abs=1e-12)
        # 1, or the official 0.0 where perfect and always-normal score alike.
        assert perfect == pytest.approx(1.0) or perfect == 0.0

    @settings(max_examples=50, deadline=None)
    @given(data=st.data(), n_records=st.integers(1, 20))
    def test_bounds(self, data, n_records):
        shape = (n_records, len(CODES))
        labels = data.draw(hnp.arrays(bool, shape))
        outputs = data.draw(hnp.arrays(bool, shape))
        scores = data.draw(hnp.arrays(np.float64, shape, elements=st.floats(0, 1, allow_nan=False)))
        s = score_all(labels, outputs, scores, CODES)
        for name in ("auroc", "auprc", "accuracy", "f_measure", "f_beta", "g_beta"):
            value = getattr(s, name)
            assert math.isnan(value) or -1e-12 <= value <= 1 + 1e-12, name
        # Not bounded by 1: the official formula gives partial credit for extra outputs,
        # so e.g. one record labelled with 23 of 24 classes and output with all 24
        # scores 1.0003 (hypothesis found it). Finite is what holds.
        assert math.isfinite(s.challenge_metric)

    def test_inputs_are_not_mutated(self):
        labels, outputs, scores = _random_case(3, 10, len(CODES), 0.2)
        copies = labels.copy(), outputs.copy(), scores.copy()
        score_all(labels, outputs, scores, CODES)
        for a, b in zip((labels, outputs, scores), copies):
            np.testing.assert_array_equal(a, b)


class TestScores:
    def test_to_json_has_exactly_the_seven_figures(self):
        labels, outputs, scores = _random_case(0, 10, len(CODES), 0.2)
        s = score_all(labels, outputs, scores, CODES)
        doc = s.to_json()
        assert tuple(doc) == FIGURES
        assert set(doc) == {
            "auroc", "auprc", "accuracy", "f_measure", "f_beta", "g_beta", "challenge_metric"
        }  # fmt: skip
        json.dumps(doc, allow_nan=False)
        per = s.per_class_json()
        assert list(per) == CODES
        json.dumps(per, allow_nan=False)  # nan per class becomes null

    def test_is_frozen(self):
        s = Scores(0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5)
        with pytest.raises(AttributeError):
            s.auroc = 1.0  # type: ignore[misc]

    def test_rejects_misshapen_per_class(self):
        with pytest.raises(ConfigError, match="per_class_auroc"):
            Scores(0, 0, 0, 0, 0, 0, 0, classes=("a",), per_class_auroc=np.zeros(2))


class TestValidation:
    def test_shape_mismatch(self):
        with pytest.raises(ConfigError, match="outputs"):
            accuracy(np.zeros((2, 3), bool), np.zeros((2, 2), bool))

    def test_empty(self):
        with pytest.raises(ConfigError, match="labels"):
            f_measure(np.zeros((0, 3), bool), np.zeros((0, 3), bool))

    def test_nan_scores_refused(self):
        with pytest.raises(ConfigError, match="NaN"):
            auroc_auprc(np.zeros((2, 1), bool), np.array([[np.nan], [0.1]]))

    def test_normal_class_required(self):
        with pytest.raises(ScoringError, match=NORMAL_CODE):
            score_all(np.zeros((1, 2), bool), np.zeros((1, 2), bool), np.zeros((1, 2)), [AF, IAVB])

    def test_bad_weights_and_normal_index(self):
        lab = np.zeros((2, 3), bool)
        with pytest.raises(ConfigError, match="weights"):
            challenge_metric(lab, lab, np.eye(2), 0)
        with pytest.raises(ConfigError, match="normal_index"):
            challenge_metric(lab, lab, np.eye(3), 3)
