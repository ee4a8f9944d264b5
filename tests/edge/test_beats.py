"""The beat detector and ``ecg-edge beats`` on real records, and on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge.beats import BeatDetector, detect_record, record_beats, resampler_delay_s
from edge.records import read_record

REPO = Path(__file__).resolve().parents[2]
PACED = ("LU0074", "LU0104", "LU0111")  # ventricular pacing (LUDB's diagnoses)


def _ludb_ref(shared_data: Path, name: str) -> tuple[np.ndarray, int, int]:
    wfdb = pytest.importorskip("wfdb")
    ann = wfdb.rdann(str(shared_data / "ludb" / name), "ii")
    ref = ann.sample[np.array(ann.symbol) == "N"]
    return ref, int(ann.sample.min()), int(ann.sample.max())


def _match(ref: np.ndarray, peaks: np.ndarray, lo: int, hi: int, tol: int) -> tuple[int, int]:
    """(missed marks, detections inside [lo, hi] matching no mark)."""
    peaks = np.asarray(peaks)
    near = [np.any(np.abs(peaks - r) <= tol) for r in ref]
    inside = peaks[(peaks >= lo) & (peaks <= hi)]
    extra = sum(not np.any(np.abs(ref - p) <= tol) for p in inside)
    return len(ref) - sum(near), int(extra)


class TestOnLudb:
    @pytest.mark.parametrize("name", ["LU0001", "LU0007", "LU0039", "LU0095", *PACED])
    def test_every_marked_beat_found(self, shared_data: Path, name: str) -> None:
        ref, lo, hi = _ludb_ref(shared_data, name)
        out = record_beats(shared_data / "ludb" / name, multi_lead=True)
        missed, extra = _match(ref, np.array(out["r_peaks"]), lo, hi, round(0.15 * 500))
        assert (missed, extra) == (0, 0)
        assert out["lead"] == "ii" and len(out["leads_used"]) == 12

    def test_257_hz_record_at_its_own_rate(self, shared_data: Path, tmp_path: Path) -> None:
        wfdb = pytest.importorskip("wfdb")
        from scipy.signal import resample_poly

        rec = read_record(shared_data / "ludb" / "LU0001")
        x = resample_poly(rec.signal.T.astype(np.float64), 257, 500, axis=0)
        wfdb.wrsamp(
            "R257",
            fs=257,
            units=["mV"] * 12,
            sig_name=["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"],
            p_signal=x,
            fmt=["16"] * 12,
            adc_gain=[1000.0] * 12,
            baseline=[0] * 12,
            write_dir=str(tmp_path),
        )
        ref, lo, hi = _ludb_ref(shared_data, "LU0001")
        out = record_beats(tmp_path / "R257")
        assert out["fs"] == 257.0 and resampler_delay_s(257.0) > 0
        ref257 = np.round(ref * 257 / 500)
        missed, extra = _match(
            ref257, np.array(out["r_peaks"]), lo * 257 // 500, hi * 257 // 500, 39
        )
        assert (missed, extra) == (0, 0)
        # located, not just found: within 20 ms of the cardiologists' marks
        err = [np.min(np.abs(np.array(out["r_peaks"]) - r)) for r in ref257]
        assert np.median(err) <= 0.02 * 257


class TestBadInput:
    def test_too_short_and_flat(self) -> None:
        det = BeatDetector()
        assert det.push(np.zeros((12, 100), np.float32)) == [] and det.flush() == []
        assert det.heart_rate().bpm is None
        beats, _ = detect_record(np.zeros((12, 5000), np.float32), 500.0)
        assert beats == []

    def test_a_zero_lead_does_not_stop_it(self, samples_dir: Path) -> None:
        rec = read_record(samples_dir / "cpsc2018" / "A0001")
        whole, _ = detect_record(rec.signal, rec.fs)
        sig = rec.signal.copy()
        sig[1] = 0.0  # lead II all zeros
        zero, _ = detect_record(sig, rec.fs)
        assert len(whole) > 10 and len(zero) == len(whole)  # the same beats, within 50 ms
        assert [b.sample for b in zero] == pytest.approx([b.sample for b in whole], abs=25)

    def test_1000_hz_record(self, samples_dir: Path) -> None:
        out = record_beats(samples_dir / "ptb" / "S0001")
        multi = record_beats(samples_dir / "ptb" / "S0001", multi_lead=True)
        assert out["fs"] == 1000.0 and out["r_peaks"] == sorted(set(out["r_peaks"]))
        assert 40 < out["heart_rate_bpm"] < 120 and len(out["r_peaks"]) > 30
        # lead II alone and the 12 leads find the same beats (within 150 ms at 1000 Hz)
        a, b = np.array(out["r_peaks"]), np.array(multi["r_peaks"])
        assert len(a) == len(b) and np.all(np.abs(a - b) <= 150)

    def test_wrong_shape_refused(self) -> None:
        with pytest.raises(ValueError, match="shape"):
            BeatDetector(n_leads=2).push(np.zeros((3, 10)))


class TestCli:
    def _run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "edge.cli", "beats", *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def test_json_and_text(self, samples_dir: Path) -> None:
        rec = str(samples_dir / "ludb" / "LU0001")
        p = self._run(rec, "--json")
        assert p.returncode == 0, p.stderr
        out = json.loads(p.stdout)
        assert set(out) >= {"record", "fs", "lead", "r_peaks"}
        assert out["record"] == "LU0001" and out["fs"] == 500.0 and out["lead"] == "ii"
        assert len(out["r_peaks"]) >= 7
        text = self._run(rec, "--lead", "V1")
        assert text.returncode == 0 and "lead v1 at 500 Hz" in text.stdout

    def test_unknown_lead_is_a_clear_error(self, samples_dir: Path) -> None:
        p = self._run(str(samples_dir / "ludb" / "LU0001"), "--lead", "V9")
        assert p.returncode != 0 and "no lead 'V9'" in p.stderr and "Traceback" not in p.stderr
