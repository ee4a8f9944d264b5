"""edge.quality: real records pass; flat, clipped, noisy, wandering and lead-off leads fail."""

from __future__ import annotations

import numpy as np
import pytest

from edge.dsp import Preprocessor
from edge.errors import ConfigError
from edge.framer import Frame, Framer
from edge.quality import QualityChecker, QualityConfig, _noise_ratio
from edge.sources import LEADS

FS = 500


def _frames(signal: np.ndarray, fs: float):
    """Filtered and raw (resampled, unfiltered) frames of a whole record, as the agent cuts them."""
    pre = Preprocessor(fs)
    raw = pre.resampler.push(signal)
    y = pre.bandpass.push(raw).astype(np.float32)
    f1, f2 = Framer(5000), Framer(5000)
    return list(
        zip(f1.push(y) + f1.flush(), f2.push(raw.astype(np.float32)) + f2.flush(), strict=True)
    )


def _ecg(seconds: float = 30.0, seed: int = 0) -> np.ndarray:
    """A crude 12-lead ECG at 500 Hz: a QRS spike train at 72 bpm plus a T wave, in mV."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * FS)) / FS
    phase = (t * 1.2) % 1.0
    beat = 1.2 * np.exp(-(((phase - 0.2) / 0.012) ** 2)) + 0.3 * np.exp(
        -(((phase - 0.5) / 0.05) ** 2)
    )
    gains = rng.uniform(0.4, 1.2, (12, 1)) * rng.choice([-1, 1], (12, 1))
    return (gains * beat + rng.normal(0, 0.005, (12, t.size))).astype(np.float32)


def _check(signal, lead_off=None, config=None):
    qc = QualityChecker(config)
    (frame, raw), *_ = _frames(signal, FS)[-1:]
    return qc.check(frame, lead_off, raw.samples)


class TestRealRecords:
    def test_sample_records_pass(self, sample_records):
        qc = QualityChecker()
        n = 0
        for rec in sample_records:
            for frame, raw in _frames(rec.signal, rec.fs):
                report = qc.check(frame, None, raw.samples)
                assert report.ok, (rec.name, frame.start_sample, report.reasons)
                n += 1
        assert n >= 14


class TestSegments:
    """Noise is judged per 10-s segment (the classifier's windows), the worst counting."""

    def test_ten_seconds_of_noise_fail_the_frame(self):
        x = _ecg()
        x[9, 20 * FS :] += np.random.default_rng(1).normal(0, 0.3, 10 * FS).astype(np.float32)
        (frame, raw), *_ = _frames(x, FS)[-1:]
        r = QualityChecker().check(frame, None, raw.samples)
        assert not r.ok and r.reasons == ("excessive noise on V4",)
        # a median over the whole 30 s sees two clean thirds and lets the frame pass
        whole = _noise_ratio(raw.samples, frame.samples, 0.01)
        assert whole[9] < QualityConfig().noise_max_ratio < r.stats[9].noise_ratio

    def test_segments_kept_change_no_verdict(self, sample_records):
        stream, steady = QualityChecker(), 0
        for rec in sample_records:
            prev = None
            for frame, raw in _frames(rec.signal, rec.fs):
                got = stream.check(frame, None, raw.samples)
                alone = QualityChecker().check(frame, None, raw.samples)
                assert got == alone and got.stats == alone.stats
                steady += prev is not None and prev.n_valid == frame.n_valid == 15000
                prev = frame
        assert steady > 0 and stream._segments.hits >= 2 * steady  # two of three segments

    def test_a_restarted_stream_is_not_confused(self):
        # the same sample positions with other samples: found by content, not position
        qc = QualityChecker()
        noisy = _ecg()
        noisy[2] += np.random.default_rng(2).normal(0, 0.3, noisy.shape[1]).astype(np.float32)
        for x, ok in ((_ecg(), True), (noisy, False), (_ecg(), True)):
            (frame, raw), *_ = _frames(x, FS)[-1:]
            assert qc.check(frame, None, raw.samples).ok is ok


class TestSynthetic:
    def test_clean_passes(self):
        r = _check(_ecg())
        assert r.ok and r.reasons == () and r.bad_leads == ()
        assert len(r.stats) == 12

    def test_flat_lead(self):
        x = _ecg()
        x[3] = 0.2  # constant: disconnected, DC only
        r = _check(x)
        assert not r.ok and r.bad_leads == ("aVR",) and r.reasons == ("flat line on aVR",)

    def test_clipped_lead(self):
        x = _ecg()
        x[6] = np.clip(x[6] * 3, -0.5, 0.5)
        r = _check(x)
        assert not r.ok and r.bad_leads == ("V1",) and r.reasons == ("clipping on V1",)

    def test_noisy_lead(self):
        x = _ecg()
        x[9] += np.random.default_rng(1).normal(0, 0.3, x.shape[1]).astype(np.float32)
        r = _check(x)
        assert not r.ok and r.bad_leads == ("V4",) and r.reasons == ("excessive noise on V4",)

    def test_baseline_wander(self):
        x = _ecg()
        t = np.arange(x.shape[1]) / FS
        x[11] += (6.0 * np.sin(2 * np.pi * 0.1 * t)).astype(np.float32)
        r = _check(x)
        assert not r.ok and r.bad_leads == ("V6",)
        assert r.reasons == ("baseline wander on V6",)

    def test_lead_off_bits(self):
        off = np.zeros(12, bool)
        off[[0, 1]] = True
        r = _check(_ecg(), lead_off=off)
        assert not r.ok and r.bad_leads == ("I", "II") and r.reasons == ("lead off on I, II",)

    def test_several_problems_one_line_each(self):
        x = _ecg()
        x[0] = 0.0
        x[5] = 0.0
        x[7] = np.clip(x[7] * 3, -0.5, 0.5)
        r = _check(x)
        assert r.reasons == ("flat line on I, aVF", "clipping on V2")
        assert r.bad_leads == ("I", "aVF", "V2")

    def test_max_bad_leads_tolerates(self):
        x = _ecg()
        x[0] = 0.0
        assert _check(x, config=QualityConfig(max_bad_leads=1)).ok

    def test_short_frames_are_not_judged(self):
        x = np.zeros((12, 100), np.float32)
        r = QualityChecker().check(Frame(x, 0, 100))
        assert r.ok

    def test_report_json(self):
        r = _check(_ecg())
        d = r.to_json()
        assert d["ok"] is True and set(d["stats"]) == set(LEADS)

    def test_bad_config(self):
        with pytest.raises(ConfigError, match="flat_max_fraction"):
            QualityConfig(flat_max_fraction=2.0)
        with pytest.raises(ConfigError, match="noise_max_ratio"):
            QualityConfig(noise_max_ratio=-1)

    def test_bad_shapes(self):
        f = Frame(np.zeros((12, 1000), np.float32), 0, 1000)
        with pytest.raises(ConfigError, match="raw"):
            QualityChecker().check(f, raw=np.zeros((12, 10), np.float32))
        with pytest.raises(ConfigError, match="lead_off"):
            QualityChecker().check(f, lead_off=np.zeros(3, bool))
