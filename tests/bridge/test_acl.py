"""A broker whose ACL refuses the agent: a clear error, nothing lost (real Mosquitto)."""

from __future__ import annotations

import json
import logging
import signal
import time
from pathlib import Path

import pytest

from bridge.publish import Publisher
from bridge.schema import sample_alert
from bridge.testing import find_mosquitto, start_broker

DEVICE = "bed-acl"


def _acl(path: Path, alerts_allowed: bool) -> None:
    lines = [
        "topic read ecg/#",  # the subscriber of the test (anonymous, as the agent)
        f"topic readwrite ecg/{DEVICE}/status",
        f"topic readwrite ecg/{DEVICE}/acks",
    ]
    if alerts_allowed:
        lines.append(f"topic readwrite ecg/{DEVICE}/#")
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def acl_broker(tmp_path: Path):
    if find_mosquitto() is None:
        pytest.skip("the ACL test needs mosquitto")
    acl = tmp_path / "acl"
    _acl(acl, alerts_allowed=False)
    b = start_broker(tmp_path / "broker", extra=(f"acl_file {acl}",))
    yield b, acl
    b.stop()


def _wait(pred, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def test_refused_alert_is_reported_kept_and_sent_once_allowed(
    acl_broker, tmp_path, collector_factory, caplog
) -> None:
    broker, acl = acl_broker
    sub = collector_factory(broker.port, f"ecg/{DEVICE}/alerts")
    pub = Publisher(broker.url, DEVICE, tmp_path / "spool.db", reconnect_max_s=1.0)
    pub.start()
    try:
        alert = sample_alert(DEVICE)
        with caplog.at_level(logging.ERROR, logger="bridge.publish"):
            pub.publish_alert(alert)
            assert _wait(lambda: pub.stats()["denied"] >= 1, 15), pub.stats()
        assert any("refused the message" in r.getMessage() for r in caplog.records)
        assert any("ACL" in r.getMessage() for r in caplog.records)
        assert pub.stats()["pending"] == 1 and pub.stats()["sent"] == 0  # still spooled
        assert sub.messages == []
        _acl(acl, alerts_allowed=True)  # the operator fixes the ACL; Mosquitto rereads it
        broker.proc.send_signal(signal.SIGHUP)
        assert sub.wait_for(lambda m: len(m) >= 1, 90), pub.stats()
        assert _wait(lambda: pub.stats()["pending"] == 0, 10)
        time.sleep(0.5)
        ids = [json.loads(p)["alert_id"] for _, p in sub.messages]
        assert ids == [alert.alert_id]  # delivered, once
    finally:
        pub.close()
