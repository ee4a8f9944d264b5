"""Fast alarms on real records made abnormal, and on bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge.alarms import AlarmConfig, Monitor, Priority, RateAlarm
from edge.dsp import preprocess
from edge.records import read_record
from edge.sources import LEADS


def _run(signal: np.ndarray, fs: float, chunk: int = 173) -> tuple[list, Monitor]:
    x = preprocess(signal, fs)
    mon = Monitor(LEADS)
    events = [e for i in range(0, x.shape[1], chunk) for e in mon.push(x[:, i : i + chunk])]
    return events, mon


def _noise(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.015, shape).astype(np.float32)


class TestAsystole:
    def test_flat_line_alarms_within_6_s_then_clears(self, samples_dir: Path) -> None:
        rec = read_record(samples_dir / "cpsc2018" / "A0001")
        k = 3000  # 6 s at 500 Hz (the record has 15 s)
        sig = rec.signal.copy()
        sig[:, k : 2 * k] = sig[:, k - 1 : k] + _noise((12, k))  # 6 s of flat line + noise
        events, mon = _run(sig, rec.fs)
        on = [e for e in events if e.condition == "asystole" and e.event == "onset"]
        off = [e for e in events if e.condition == "asystole" and e.event == "cleared"]
        assert len(on) == 1 and len(off) == 1
        last = max(b for b in mon.beats if b < k)
        assert on[0].priority is Priority.HIGH and on[0].kind == "physiological"
        assert 4.0 <= (on[0].onset_sample - last) / 500 <= 6.0
        assert on[0].onset_sample % 500 == 0  # evaluated on whole seconds of stream time
        assert off[0].onset_sample == on[0].onset_sample and off[0].sample > 2 * k
        assert on[0].heart_rate is None

    def test_no_asystole_when_every_lead_is_off(self) -> None:
        events, _ = _run(np.zeros((12, 6000), np.float32), 500.0)
        conditions = {(e.condition, e.event) for e in events}
        assert ("asystole", "onset") not in conditions
        off = [e for e in events if e.condition == "lead_off"]
        assert off[0].priority is Priority.MEDIUM and len(off[0].leads) == 12

    def test_too_short_record(self) -> None:
        events, mon = _run(np.zeros((12, 200), np.float32) + 0.1, 500.0)
        assert events == [] and mon.close() == []

    def test_paced_records_no_asystole(self, shared_data: Path) -> None:
        for name in ("LU0074", "LU0104", "LU0111"):
            rec = read_record(shared_data / "ludb" / name)
            events, mon = _run(rec.signal, rec.fs)
            assert not [e for e in events if e.condition == "asystole"], name
            assert len(mon.beats) >= 8


class TestRate:
    def test_spliced_tachycardia_alarms(self, samples_dir: Path) -> None:
        rec = read_record(samples_dir / "cpsc2018" / "A0001")
        _, mon = _run(rec.signal, rec.fs)
        w = round(rec.fs / 3)  # 180 beats/min
        beats = [b for b in mon.beats if 0.35 * w < b < rec.signal.shape[1] - w]
        cuts = [rec.signal[:, round(b - 0.35 * w) : round(b - 0.35 * w) + w] for b in beats]
        fast = np.concatenate(cuts * 3, axis=1)[:, : 10 * 500]
        sig = np.concatenate(
            [rec.signal[:, :3000], fast - fast[:, :1] + rec.signal[:, 2999:3000]], 1
        )
        events, _ = _run(sig, rec.fs)
        on = [e for e in events if e.condition == "extreme_tachycardia" and e.event == "onset"]
        assert len(on) == 1 and on[0].priority is Priority.HIGH
        assert 0 < (on[0].onset_sample - 3000) / 500 <= 8.0
        assert on[0].heart_rate > 160
        medium = [e for e in events if e.condition == "high_heart_rate" and e.event == "onset"]
        assert all(e.onset_sample < on[0].onset_sample for e in medium)  # not beside it

    def test_confirm_and_hysteresis(self) -> None:
        a = RateAlarm("high_heart_rate", Priority.MEDIUM, 120, 160, confirm=2, hysteresis=5)
        assert a.push(500, 130, (0, 500)) == []
        (on,) = a.push(1000, 131, (500, 1000))
        assert on.event == "onset" and on.onset_sample == 1000
        assert a.push(1500, 118, (1000, 1500)) == [] and a.push(2000, 117, (1500, 2000)) == []
        assert a.push(2500, 110, (2000, 2500)) == []
        (off,) = a.push(3000, None, (2500, 3000))
        assert off.event == "cleared" and off.onset_sample == 1000 and off.sample == 3000

    def test_limits_checked(self) -> None:
        with pytest.raises(ValueError, match="limits"):
            AlarmConfig(high_heart_rate_bpm=200.0)


class TestLeadChecks:
    def test_la_ra_reversal_raised_after_two_checks(self, samples_dir: Path) -> None:
        from edge.reversal import check_leads, reverse_la_ra

        rec = read_record(samples_dir / "ptb-xl" / "HR00001")
        x = preprocess(rec.signal, rec.fs)
        sig = np.concatenate([x, x], axis=1)  # 20 s: two checks
        mon = Monitor(LEADS)
        assert [e.condition for e in mon.push(sig) if "lead_" in e.condition] == []
        mon = Monitor(LEADS)
        events = [e for e in mon.push(reverse_la_ra(sig)) if e.condition == "lead_reversal"]
        assert len(events) == 1 and events[0].onset_sample == 10000
        assert "reversed" in events[0].reason and events[0].priority is Priority.LOW
        y = x.copy()
        y[7] = -y[7]  # V2 inverted
        c = check_leads(y, [b - 0 for b in mon.beats if b < 5000])
        assert c is not None and c.inverted == ("V2",) and "inverted" in c.reason


class TestAlarmLimitsOption:
    def test_limits_from_the_command_line(self, samples_dir: Path) -> None:
        import json
        import subprocess
        import sys

        rec = str(samples_dir / "cpsc2018" / "A0003")  # AF at about 140-160 bpm
        base = [sys.executable, "-m", "edge.cli", "replay", rec, "--speed", "max", "--json"]

        def conditions(*extra: str) -> set[str]:
            p = subprocess.run([*base, *extra], capture_output=True, text=True, timeout=120)
            assert p.returncode == 0, p.stderr
            events = [json.loads(line) for line in p.stdout.splitlines()]
            return {e["condition"] for e in events if e["type"] == "alert"}

        assert "high_heart_rate" in conditions()
        assert "high_heart_rate" not in conditions("--alarm-limits", "high=190,extreme_high=200")
        bad = subprocess.run([*base, "--alarm-limits", "high=300"], capture_output=True, text=True)
        assert bad.returncode == 2 and "alarm-limits" in bad.stderr


class TestBoundedMemory:
    def test_beats_kept_are_bounded_and_new_ones_all_reported(self, samples_dir: Path) -> None:
        rec = read_record(samples_dir / "ptb-xl" / "HR00001")
        x = preprocess(rec.signal, rec.fs)
        mon = Monitor(LEADS)
        mon.KEEP_BEATS = 8  # a small bound, as a day of beats would meet the real one
        seen: list[int] = []
        for _ in range(6):  # 60 s of its beats
            before = mon.n_beats
            mon.push(x)
            seen += mon.beats_since(before)
            assert len(mon.beats) <= 2 * 8 + mon.n_beats - before
        assert len(seen) == mon.n_beats > 40  # nothing missed by the trimming
        assert seen == sorted(seen) and len(set(seen)) == len(seen)
        assert len(mon.beats) < mon.n_beats and mon.beats == seen[-len(mon.beats) :]


class TestLeadOffChurn:
    def test_an_electrode_flapping_every_second_gives_one_alarm(self, samples_dir: Path) -> None:
        rec = read_record(samples_dir / "ptb-xl" / "HR00001")
        x = np.tile(preprocess(rec.signal, rec.fs), (1, 2))  # 20 s
        mon = Monitor(LEADS)
        events = []
        bits = np.zeros(12, bool)
        for sec in range(10):
            bits[7] = sec % 2 == 0  # V2 off, on, off, on ... a loose electrode
            events += mon.push(x[:, sec * 500 : (sec + 1) * 500], bits.copy())
        off = [e for e in events if e.condition == "lead_off"]
        assert [(e.event, e.leads) for e in off] == [("onset", ("V2",))]
        for sec in range(10, 13):  # back for good: cleared after two clean seconds
            events += mon.push(x[:, sec * 500 : (sec + 1) * 500], np.zeros(12, bool))
        off = [e for e in events if e.condition == "lead_off"]
        assert [e.event for e in off] == ["onset", "cleared"]
        # V2 is back from second 9 on: clean evaluations at 10 s and 11 s
        assert off[1].sample == 11 * 500 and off[1].onset_sample == off[0].onset_sample
