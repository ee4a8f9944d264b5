"""A fast alarm travels: a real record made asystolic, replayed, over a real broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from bridge.testing import start_broker
from edge.records import read_record

BIN = os.path.dirname(sys.executable)
LEADS = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]


@pytest.fixture
def broker(tmp_path):
    b = start_broker(tmp_path / "broker")
    yield b
    b.stop()


def _asystolic_record(samples_dir, out_dir) -> str:
    """A0001 (15 s, 500 Hz) with a flat line and noise from 6 s to 12 s."""
    wfdb = pytest.importorskip("wfdb")
    rec = read_record(samples_dir / "cpsc2018" / "A0001")
    x = rec.signal.astype(np.float64).copy()
    noise = np.random.default_rng(0).normal(0, 0.015, (12, 3000))
    x[:, 3000:6000] = x[:, 2999:3000] + noise
    wfdb.wrsamp("FLAT1", fs=500, units=["mV"] * 12, sig_name=LEADS, p_signal=x.T,
                fmt=["16"] * 12, adc_gain=[1000.0] * 12, baseline=[0] * 12,
                write_dir=str(out_dir))  # fmt: skip
    return str(out_dir / "FLAT1")


class TestAlarmOverMqtt:
    @pytest.mark.slow
    def test_asystole_reaches_a_listener_with_its_priority(
        self, broker, tiny_bundle, samples_dir, tmp_path
    ):
        record = _asystolic_record(samples_dir, tmp_path)
        listener = subprocess.Popen(
            [os.path.join(BIN, "ecg-bridge"), "listen", "--broker", broker.url,
             "--device", "bed-9", "--timeout", "60"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(1.5)  # subscribed before the replay publishes
        replay = subprocess.run(
            [os.path.join(BIN, "ecg-edge"), "replay", record, "--speed", "max", "--json",
             "--bundle", str(tiny_bundle), "--broker", broker.url, "--device-id", "bed-9",
             "--spool", str(tmp_path / "spool.db")],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert replay.returncode == 0, replay.stderr
        events = [json.loads(line) for line in replay.stdout.splitlines()]
        alarms = [e for e in events if e["type"] == "alert" and e["condition"] == "asystole"]
        assert [a["event"] for a in alarms] == ["onset", "cleared"]
        onset = alarms[0]
        assert onset["priority"] == "high" and onset["kind"] == "physiological"
        assert onset["schema"] == "ecg-edge/alert/2"
        assert 3000 + 4 * 500 <= onset["onset_sample"] <= 3000 + 6 * 500
        assert alarms[1]["onset_sample"] == onset["onset_sample"]
        assert alarms[1]["cleared_sample"] > 6000
        time.sleep(3)
        listener.terminate()
        out, err = listener.communicate(timeout=10)
        lines = [ln for ln in out.splitlines() if "asystole" in ln]
        assert len(lines) == 2, out + err
        assert "HIGH PHYSIOLOGICAL ONSET asystole: no beat for" in lines[0]
        assert f"at sample {onset['onset_sample']}" in lines[0]
        assert "HIGH PHYSIOLOGICAL CLEARED asystole" in lines[1]
