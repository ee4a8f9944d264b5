"""benchmarks.measure_features: a frame's measurements as numbers for the linear heads."""

from __future__ import annotations

import numpy as np

from benchmarks.measure_features import FEATURE_NAMES, frame_measurements, measurement_features
from edge.dsp import preprocess
from edge.records import read_record


def _features(shared_data, name: str) -> dict[str, float]:
    rec = read_record(shared_data / "ludb" / f"{name}.hea")
    (f,) = frame_measurements(preprocess(rec.signal, rec.fs))  # one 10 s frame
    return dict(zip(FEATURE_NAMES, f))


def test_no_beats_is_flagged_not_invented():
    f = dict(zip(FEATURE_NAMES, measurement_features([])))
    assert f["no_beats"] == f["no_pr"] == f["no_qt"] == f["no_qrs_axis"] == 1.0
    assert f["pr_s"] == f["qt_s"] == f["hr_per_100"] == 0.0


def test_atrial_fibrillation_reads_as_irregular_without_p(shared_data):
    af = _features(shared_data, "LU0038")  # #Dx: atrial fibrillation
    sinus = _features(shared_data, "LU0058")  # #Dx: sinus rhythm only
    assert af["rr_cv"] > 2 * sinus["rr_cv"] and af["rr_jump"] > sinus["rr_jump"]
    assert af["p_found"] < sinus["p_found"]
    assert sinus["no_pr"] == 0.0 and 0.08 < sinus["pr_s"] < 0.3
    assert 0.05 < sinus["qrs_s"] < 0.14 and 0.3 < sinus["qt_s"] < 0.5
    assert abs(sinus["axis_qrs_sin"] ** 2 + sinus["axis_qrs_cos"] ** 2 - 1) < 1e-9


def test_voltage_is_in_the_features(shared_data):
    rec = read_record(shared_data / "ludb" / "LU0058.hea")
    x = preprocess(rec.signal, rec.fs)
    (a,), (b,) = frame_measurements(x), frame_measurements(0.5 * x)
    i = FEATURE_NAMES.index("log_qrs_limb_max")
    assert abs((b[i] - a[i]) - np.log(0.5)) < 0.05  # half the voltage: log(0.5) less
