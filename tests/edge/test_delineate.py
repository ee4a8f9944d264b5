"""The streaming delineator and the measurements, on real records (LUDB, PTB-XL, PTB)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge.beats import BeatDetector
from edge.delineate import BOUNDARIES, Delineator, measurement_filter
from edge.dsp import Preprocessor
from edge.measure import beat_measurements, frontal_axis, median_measurements, qtc, record_measure
from edge.records import read_record

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"
LUDB = DATA / "challenge2020" / "ludb"


def _needs(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not found")
    return path


@pytest.fixture(scope="module")
def lu0001_raw():
    """LU0001 resampled (the agent's stream before any band-pass) and its R peaks."""
    rec = read_record(_needs(LUDB / "LU0001.hea"))
    pre = Preprocessor(rec.fs)
    raw = pre.resampler.push(rec.signal)
    det = BeatDetector()
    x = pre.bandpass.push(raw).astype(np.float32)
    r = [b.sample for b in det.push(x) + det.flush()]
    return raw, r


@pytest.fixture(scope="module")
def lu0001(lu0001_raw):
    """LU0001 as the delineator sees it (the measurement band) and its R peaks."""
    raw, r = lu0001_raw
    return measurement_filter().push(raw), r


def _run(x: np.ndarray, r: list[int], chunks: list[int]) -> list:
    d = Delineator(n_leads=x.shape[0])
    out, k = [], 0
    for c in chunks:
        out += d.push(x[:, k : k + c], [p for p in r if k <= p < k + c])
        k += c
    out += d.push(x[:, k:], [p for p in r if p >= k])
    return out + d.flush()


def _key(beats: list) -> list:
    return [(b.r, b.glob, b.leads, b.leads_used) for b in beats]


class TestFastHelpers:
    """The delineator's own moving average and slope give numpy's floats, bit for bit."""

    @pytest.mark.parametrize("n", [599, 600, 2, 3])
    def test_box_and_slope_equal_the_straightforward_ones(self, n):
        from edge.delineate import _box, _slope

        rng = np.random.default_rng(n)
        x = rng.standard_normal((3, 12, n)) * 1e-3 + rng.standard_normal((3, 12, 1))
        x[1, 4, n // 2] = np.nan  # a NaN row: numpy's median keeps it
        for w in (2, 3, 20):
            pad = np.concatenate(
                [np.repeat(x[..., :1], w // 2, -1), x, np.repeat(x[..., -1:], w - 1 - w // 2, -1)],
                -1,
            )  # the definition: a running sum of the edge-held signal, differenced w apart
            c = np.concatenate([np.zeros((*x.shape[:-1], 1)), np.cumsum(pad, axis=-1)], -1)
            want = (c[..., w:] - c[..., :-w]) / w
            np.testing.assert_array_equal(_box(x, w), want)
        np.testing.assert_array_equal(_slope(x), np.gradient(x, axis=-1))


class TestDelineator:
    def test_chunking_does_not_change_the_waves(self, lu0001):
        x, r = lu0001
        whole = _run(x, r, [])
        rng = np.random.default_rng(0)
        for _ in range(3):
            sizes = list(rng.integers(1, 700, size=60))
            assert _key(_run(x, r, sizes)) == _key(whole)
        assert len(whole) == len(r) >= 7

    def test_reset_and_input_unchanged(self, lu0001):
        x, r = lu0001
        copy = x.copy()
        d = Delineator()
        first = d.push(x, r) + d.flush()
        d.reset()
        again = d.push(x, r) + d.flush()
        assert _key(first) == _key(again)
        assert np.array_equal(x, copy)

    def test_beat_waits_for_its_lookahead(self, lu0001):
        x, r = lu0001
        d = Delineator()
        assert d.delay_s == pytest.approx(0.7)
        got = d.push(x[:, : r[2] + 349], r[:3])
        assert [b.r for b in got] == r[:2]  # r[2] needs 350 samples after it
        assert [b.r for b in d.push(x[:, r[2] + 349 : r[2] + 350])] == [r[2]]

    def test_order_of_waves_on_a_sinus_record(self, lu0001):
        x, r = lu0001
        beats = _run(x, r, [250] * 20)
        full = [b.glob for b in beats[1:-1]]
        assert all(w.p_on is not None and w.t_off is not None for w in full)
        for w in full:
            assert w.p_on < w.p_off <= w.qrs_on < w.qrs_off < w.t_peak < w.t_off

    def test_flat_lead_left_out_and_said(self, lu0001):
        x, r = lu0001
        y = x.copy()
        y[4] = 0.0  # aVL off
        beats = _run(y, r, [])
        assert all(4 not in b.leads_used for b in beats)
        assert all(b.leads[4] == b.leads[4].__class__() for b in beats)
        assert sum(b.glob.qrs_on is not None for b in beats) >= len(beats) - 1

    def test_flat_signal_gives_absent_waves(self):
        x = np.zeros((12, 5000))
        d = Delineator()
        beats = d.push(x, [1000, 2000]) + d.flush()
        assert [b.r for b in beats] == [1000, 2000]
        for b in beats:
            assert all(getattr(b.glob, k) is None for k in BOUNDARIES)
            assert b.leads_used == ()
            m = beat_measurements(b)
            assert m["qrs_ms"] is None and m["qt_ms"] is None

    def test_too_short(self):
        d = Delineator()
        assert d.push(np.zeros((12, 40)), [20]) + d.flush() != []  # the beat, empty
        assert Delineator().flush() == []

    def test_rejects_bad_input(self):
        d = Delineator()
        with pytest.raises(Exception, match="shape"):
            d.push(np.zeros((3, 10)))
        d.push(np.zeros((12, 10)), [5])
        with pytest.raises(Exception, match="increasing"):
            d.push(np.zeros((12, 10)), [4])


class TestMeasurements:
    def test_formulas(self):
        b, f = qtc(400.0, 640.0)
        assert b == pytest.approx(500.0) and f == pytest.approx(400 / 0.64 ** (1 / 3))
        assert frontal_axis(0.0, -1.0) == pytest.approx(-90.0)
        assert frontal_axis(1.0, np.sqrt(3) / 2) == pytest.approx(45.0)

    def test_median_skips_absent(self):
        beats = [{"qrs_ms": 100.0, "axis_qrs_deg": 179.0}, {"qrs_ms": None, "axis_qrs_deg": -179.0}]
        m = median_measurements(beats)
        assert m["qrs_ms"] == 100.0 and m["pr_ms"] is None and m["n_beats"] == 2
        assert abs(abs(m["axis_qrs_deg"]) - 180.0) < 1.5  # circular, not 0

    def test_ludb_records_near_the_cardiologists(self):
        """LU0101-LU0108 (not tuned on): record medians of QRS and QT, mean |difference|."""
        from benchmarks.delineation import intervals, reference

        diffs: dict[str, list[float]] = {"qrs_ms": [], "qt_ms": []}
        for k in range(101, 109):
            name = f"LU{k:04d}"
            res = record_measure(_needs(LUDB / f"{name}.hea"))
            ref = [intervals(b, 500.0) for b in reference(name)]
            for iv, d in diffs.items():
                vals = [b[iv] for b in ref if b[iv] is not None]
                assert res["median"][iv] is not None, (name, iv)
                if vals:
                    d.append(abs(res["median"][iv] - float(np.median(vals))))
        assert np.mean(diffs["qrs_ms"]) <= 20, diffs["qrs_ms"]
        assert np.mean(diffs["qt_ms"]) <= 40, diffs["qt_ms"]

    def test_paced_and_fibrillating_records(self):
        """Paced LU0045 (wide QRS) and AF LU0008: every beat found, QRS measured, in order."""
        paced = record_measure(_needs(LUDB / "LU0045.hea"))
        assert len(paced["beats"]) >= 9 and paced["median"]["qrs_ms"] >= 140
        af = record_measure(_needs(LUDB / "LU0008.hea"))
        assert len(af["beats"]) >= 10
        for b in af["beats"] + paced["beats"]:
            order = [b[k] for k in ("p_on", "p_off", "qrs_on", "qrs_off", "t_off")]
            known = [v for v in order if v is not None]
            assert known == sorted(known), b

    def test_100_hz_record(self):
        hea = sorted(_needs(DATA / "ptbxl" / "sample").glob("*.hea"))[0]
        res = record_measure(hea)
        assert res["fs"] == 100.0
        assert len(res["beats"]) >= 5
        n = read_record(hea).signal.shape[1]
        for b in res["beats"]:
            assert all(v is None or 0 <= v < n for v in b.values())
        assert 60 <= res["median"]["qrs_ms"] <= 200

    def test_1000_hz_record(self):
        hea = _needs(DATA / "challenge2020" / "ptb" / "S0001.hea")
        res = record_measure(hea)
        assert res["fs"] == 1000.0 and len(res["beats"]) > 20
        assert 200 <= res["median"]["qt_ms"] <= 600


class TestMeasureCli:
    def test_json_shape(self):
        hea = _needs(LUDB / "LU0002.hea")
        p = subprocess.run(
            [sys.executable, "-m", "edge.cli", "measure", str(hea), "--json"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        lines = p.stdout.strip().splitlines()
        assert len(lines) == 1
        d = json.loads(lines[0])
        assert set(d) == {"record", "fs", "beats", "median"}
        assert d["record"] == "LU0002" and d["fs"] == 500.0
        assert set(d["beats"][0]) == {"r", *BOUNDARIES}
        assert all(isinstance(b["r"], int) for b in d["beats"])
        for k in (
            "rr_ms",
            "pr_ms",
            "qrs_ms",
            "qt_ms",
            "qtc_bazett_ms",
            "qtc_fridericia_ms",
            "axis_qrs_deg",
        ):
            assert k in d["median"]
        assert isinstance(d["median"]["qrs_ms"], float)

    def test_table_and_lead(self):
        hea = _needs(LUDB / "LU0002.hea")
        p = subprocess.run(
            [sys.executable, "-m", "edge.cli", "measure", str(hea), "--lead", "V1"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert p.returncode == 0, p.stderr
        assert "boundaries lead v1" in p.stdout and "qtc bazett" in p.stdout
        p = subprocess.run(
            [sys.executable, "-m", "edge.cli", "measure", str(hea), "--lead", "X9"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert p.returncode != 0 and "no lead 'X9'" in p.stderr and "Traceback" not in p.stderr


class TestMeasurementsInTheAlert:
    def test_measurer_fills_a_valid_alert(self, lu0001_raw):
        from bridge.schema import Alert, PayloadError, parse, sample_alert, validate
        from edge.measure import Measurer
        from edge.sources import LEADS

        x, r = lu0001_raw  # the Measurer band-passes it
        m = Measurer(LEADS)
        for k in range(0, x.shape[1], 500):  # chunks of 1 s, R peaks as they come
            m.push(x[:, k : k + 500], [p for p in r if k <= p < k + 500])
        got = m.span(0, x.shape[1])
        assert got is not None and got["n_beats"] >= 6
        assert 80 <= got["qrs_ms"] <= 160 and got["leads_used"][0] == "I"
        assert m.span(10**6, 10**6 + 10) is None
        alert = sample_alert()
        d = alert.to_json()
        d["measurements"] = got
        validate(d)
        back = parse(d)
        assert isinstance(back, Alert) and back.measurements == got
        bad = dict(d, measurements={**got, "qrs_ms": -5.0})
        with pytest.raises(PayloadError, match="qrs_ms"):
            validate(bad)
        with pytest.raises(PayloadError, match="qrs_width"):
            validate(dict(d, measurements={**got, "qrs_width": 1.0}))  # not a member
        assert m.recent(10.0)["n_beats"] >= 6

    def test_beats_deferred_or_not_give_the_same_measurements(self, lu0001, lu0001_raw):
        """Random chunks and deferred beats give the floats of the whole record in one
        call: the measurement band runs on whole blocks from the segment's start."""
        from edge.measure import GROUP, Measurer
        from edge.sources import LEADS

        x, r = lu0001  # the whole record band-passed in one call
        d = Delineator()
        direct = [beat_measurements(b, 500.0, LEADS) for b in d.push(x, r) + d.flush()]
        x, _ = lu0001_raw
        rng = np.random.default_rng(1)
        m, k, waited = Measurer(LEADS), 0, 0
        for size in rng.integers(20, 900, size=200):  # random chunks, soon now and then
            m.push(x[:, k : k + size], [p for p in r if k <= p < k + size], rng.random() < 0.1)
            waited = max(waited, m._delineator.n_ready)
            k += size
            if k >= x.shape[1]:
                break
        m.finish()
        assert waited > 1 and waited < GROUP  # beats did wait, never more than GROUP - 1
        assert [b[1] for b in m._beats] == direct
        assert m.span(0, x.shape[1])["n_beats"] == len(direct) == len(r)

    def test_listen_line_and_fhir_components(self, lu0001_raw):
        import dataclasses

        from bridge.forward import fhir_observations
        from bridge.listen import Received, format_line
        from bridge.schema import sample_alert
        from edge.measure import Measurer
        from edge.sources import LEADS

        x, r = lu0001_raw  # the Measurer band-passes it
        m = Measurer(LEADS)
        m.push(x, r)
        got = m.span(0, x.shape[1])
        got["pr_ms"] = 236.0
        got["axis_p_deg"] = None  # absent: no component
        alert = dataclasses.replace(sample_alert(), measurements=got)
        line = format_line(Received("alert", alert.device_id, "ecg/x/alerts", alert))
        assert "PR 236 ms" in line and f"QRS {got['qrs_ms']:.0f} ms" in line
        obs = fhir_observations(alert)[0]
        codes = {
            c["code"]["coding"][0]["code"]: c for c in obs["component"] if "coding" in c["code"]
        }
        assert codes["8625-6"]["valueQuantity"]["value"] == 236.0
        assert codes["8633-0"]["valueQuantity"]["unit"] == "ms"
        assert "8626-4" not in codes  # the absent P axis


class TestBenchmark:
    def test_ludb_benchmark_runs_and_writes(self, tmp_path):
        """benchmarks.delineation on 3 records without NeuroKit2: the table and its JSON."""
        from benchmarks import delineation

        _needs(LUDB / "LU0001.hea")
        assert delineation.main(["--limit", "3", "--no-neurokit", "--out", str(tmp_path)]) == 0
        d = json.loads((tmp_path / "delineation.json").read_text())
        ours = d["results"]["all 3"]["ours (stream, 12 leads)"]
        assert ours["qrs_ms"]["found"] == 1.0 and abs(ours["qrs_ms"]["mean"]) < 30
        assert ours["beats"] >= 20
