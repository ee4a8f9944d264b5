"""The whole system as a user runs it: processes, a real broker, real records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from bridge.testing import start_broker

BIN = os.path.dirname(sys.executable)


def _cmd(name: str) -> str:
    return os.path.join(BIN, name)


@pytest.fixture
def broker(tmp_path):
    b = start_broker(tmp_path / "broker")
    yield b
    b.stop()


class TestReplayToListener:
    @pytest.mark.slow
    def test_alerts_reach_a_subscriber(self, broker, tiny_bundle, samples_dir, tmp_path):
        listener = subprocess.Popen(
            [_cmd("ecg-bridge"), "listen", "--broker", broker.url, "--device", "bed-1",
             "--json", "--timeout", "60"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(1.5)  # the listener subscribes before the replay publishes
        replay = subprocess.run(
            [_cmd("ecg-edge"), "replay", str(samples_dir / "cpsc2018"), "--speed", "max",
             "--json", "--bundle", str(tiny_bundle), "--broker", broker.url,
             "--device-id", "bed-1", "--spool", str(tmp_path / "spool.db")],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert replay.returncode == 0, replay.stderr
        events = [json.loads(line) for line in replay.stdout.splitlines()]
        sent = [e["alert_id"] for e in events if e["type"] == "alert"]
        assert sent, "the tiny bundle raised no alert on the CPSC samples"
        time.sleep(3)  # alerts were acknowledged by the broker before replay exited
        listener.terminate()
        out, err = listener.communicate(timeout=10)
        received = [json.loads(line) for line in out.splitlines() if line.strip()]
        alerts = [m["payload"] for m in received if m["kind"] == "alert"]
        assert [a["alert_id"] for a in alerts] == sent, err
        assert all(a["device_id"] == "bed-1" for a in alerts)
        # diagnoses name their bundle; the fast alarms (heart rate here) need none
        assert all(a["bundle_sha256"] or a["kind"] != "diagnosis" for a in alerts)
        assert any(m["kind"] == "status" for m in received)
