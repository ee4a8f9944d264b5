"""The publisher's sender wakes when an alert is spooled (no polling tick), durability kept."""

from __future__ import annotations

import json
import random
import threading
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from bridge._spool import Spool
from bridge.publish import Publisher
from bridge.schema import sample_alert
from bridge.testing import Broker


class _Stamper:
    """A QoS 1 subscriber that notes when each alert arrives (time.monotonic)."""

    def __init__(self, port: int, topic: str) -> None:
        self.got: dict[str, float] = {}
        self.order: list[str] = []
        self._ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"stamp-{random.random()}")
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *a: self._ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._ready.wait(10)

    def _on_message(self, client, userdata, msg) -> None:  # type: ignore[no-untyped-def]
        t = time.monotonic()
        alert_id = json.loads(msg.payload)["alert_id"]
        self.got[alert_id] = t
        self.order.append(alert_id)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def idle_2s(monkeypatch):
    """The sender's idle sleep made 2 s long: only a wake-up sends an alert at once."""
    import bridge.publish

    monkeypatch.setattr(bridge.publish, "_IDLE_S", 2.0)


def _receive(sub: _Stamper, n: int, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while len(sub.got) < n and time.monotonic() < deadline:
        time.sleep(0.01)


class TestWakeUp:
    def test_an_alert_leaves_as_soon_as_it_is_spooled(
        self, broker: Broker, tmp_path: Path, idle_2s
    ):
        # A polling sender would hold an alert about 1 s on average; one woken by
        # publish_alert sends it at once. The bound below is far from both, so a loaded
        # machine cannot flip the verdict.
        sub = _Stamper(broker.port, "ecg/wake-1/alerts")
        pub = Publisher(broker.url, "wake-1", tmp_path / "spool.db").start()
        try:
            assert pub.wait_connected(10)
            time.sleep(0.3)
            sent: dict[str, float] = {}
            alerts = [sample_alert("wake-1") for _ in range(40)]
            rng = random.Random(0)
            for a in alerts:
                time.sleep(rng.uniform(0.0, 0.03))  # arrivals at any phase of a would-be tick
                sent[a.alert_id] = time.monotonic()
                pub.publish_alert(a)  # durable on return (one fsynced sqlite commit)
            assert pub.flush(10)
            _receive(sub, len(alerts))
        finally:
            pub.close()
            sub.close()
        assert sub.order == [a.alert_id for a in alerts]
        ms = np.array([(sub.got[k] - sent[k]) * 1000.0 for k in sent])
        print("publish_alert -> subscriber ms p50/p90/p99", np.percentile(ms, [50, 90, 99]))
        assert np.median(ms) < 300.0, np.percentile(ms, [50, 90, 99])

    def test_alert_is_on_disk_before_publish_alert_returns(self, tmp_path: Path):
        path = tmp_path / "spool.db"
        pub = Publisher(None, "wake-2", path)
        alert = sample_alert("wake-2")
        pub.publish_alert(alert)
        other = Spool(path, 100)  # another connection sees the committed row
        try:
            rows = other.after(0, 10)
            assert len(rows) == 1 and json.loads(rows[0][3])["alert_id"] == alert.alert_id
        finally:
            other.close()
            pub.close(0.1)

    def test_an_idle_sender_sleeps(self, broker: Broker, tmp_path: Path):
        """Nothing to send: the sender thread wakes about once a second, not 50 times."""
        pub = Publisher(broker.url, "wake-3", tmp_path / "spool.db").start()
        calls = 0
        real = pub._loop_once

        def counted(client):  # type: ignore[no-untyped-def]
            nonlocal calls
            calls += 1
            return real(client)

        pub._loop_once = counted  # type: ignore[method-assign]
        try:
            assert pub.wait_connected(10)
            time.sleep(0.2)
            calls = 0
            time.sleep(2.0)
            idle_calls = calls
            pub.publish_alert(sample_alert("wake-3"))
            assert pub.flush(5)
        finally:
            pub.close()
        assert idle_calls <= 5

    def test_wait_handed_returns_once_the_alert_is_on_its_way(
        self, broker: Broker, tmp_path: Path, idle_2s
    ):
        # The agent waits for this after an alert and before its next work: only the
        # wake-up can hand the alert over within the wait.
        sub = _Stamper(broker.port, "ecg/wake-4/alerts")
        pub = Publisher(broker.url, "wake-4", tmp_path / "spool.db").start()
        try:
            assert pub.wait_connected(10)
            assert pub.wait_handed(0.0)  # nothing published: nothing to wait for
            alerts = [sample_alert("wake-4") for _ in range(5)]
            for a in alerts:
                pub.publish_alert(a)
                assert pub.wait_handed(1.0)
            _receive(sub, len(alerts))
        finally:
            pub.close()
            sub.close()
        assert sub.order == [a.alert_id for a in alerts]

    def test_wait_handed_does_not_wait_without_a_broker(self, tmp_path: Path):
        pub = Publisher("mqtt://127.0.0.1:9", "wake-5", tmp_path / "spool.db").start()
        try:
            pub.publish_alert(sample_alert("wake-5"))
            t0 = time.monotonic()
            assert not pub.wait_handed(5.0)  # not connected: False at once, alert kept
            assert time.monotonic() - t0 < 1.0
            assert pub.stats()["pending"] == 1
        finally:
            pub.close(0.1)
