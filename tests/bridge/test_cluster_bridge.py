"""An edge Mosquitto bridged to a central Mosquitto (the shipped configuration).

Two real Mosquitto processes on loopback; agents publish to the edge broker;
the central broker is stopped for a while in the middle of the stream; every
alert reaches the central subscriber once (by alert id) and in order per device.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from bridge.listen import Listener
from bridge.publish import Publisher
from bridge.schema import Alert, sample_alert
from bridge.testing import Broker, find_mosquitto, seq_alert_id, start_broker

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto"
DEVICES = ("bed-1", "bed-2", "bed-3")
PER_DEVICE = 60
# Lines of the shipped file the loopback test replaces: TLS, credentials, address.
_LOCAL = ("address", "remote_username", "remote_password", "bridge_cafile", "restart_timeout")


def bridge_lines(central_port: int) -> list[str]:
    """The ``connection`` block of deploy/mosquitto/edge.conf, pointed at loopback."""
    text = (DEPLOY / "edge.conf").read_text().splitlines()
    block = text[next(i for i, x in enumerate(text) if x.startswith("connection ")) :]
    lines = [x for x in block if x.strip() and not x.startswith("#")]
    kept = [x for x in lines if x.split()[0] not in _LOCAL]
    return [*kept, f"address 127.0.0.1:{central_port}", "restart_timeout 1 2"]


def _wait(pred, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.skipif(find_mosquitto() is None, reason="needs two mosquitto processes")
class TestEdgeBridge:
    def test_shipped_configs_parse(self, tmp_path: Path) -> None:
        lines = bridge_lines(1)
        assert "cleansession false" in lines and "topic ecg/# out 1" in lines
        for name in ("edge.conf", "central.conf"):
            assert (DEPLOY / name).read_text().count("persistence true") == 1

    def test_central_down_during_stream(self, tmp_path: Path, collector_factory) -> None:
        central = start_broker(tmp_path / "central")
        edge = start_broker(tmp_path / "edge", extra=tuple(bridge_lines(central.port)))
        try:
            self._run(central, edge, tmp_path, collector_factory)
        finally:
            edge.stop()
            central.stop()

    def _run(self, central: Broker, edge: Broker, tmp_path: Path, collector_factory) -> None:
        state = collector_factory(edge.port, "ecg-bridge/+/state")
        _wait(lambda: (state.messages or [("", b"")])[-1][1] == b"1", 30, "the bridge")
        sub = collector_factory(
            central.port, "ecg/+/alerts", client_id="central-station", persistent=True
        )
        pubs = {d: Publisher(edge.url, d, tmp_path / f"spool-{d}.db").start() for d in DEVICES}
        ids = {d: [seq_alert_id(i, d) for i in range(PER_DEVICE)] for d in DEVICES}
        sent = {"n": 0}

        def feed(device: str) -> None:
            for alert_id in ids[device]:
                pubs[device].publish_alert(sample_alert(device, alert_id=alert_id))
                sent["n"] += 1
                time.sleep(0.02)

        feeders = [threading.Thread(target=feed, args=(d,)) for d in DEVICES]
        for t in feeders:
            t.start()
        total = len(DEVICES) * PER_DEVICE
        _wait(lambda: len(sub.messages) >= total // 5, 60, "alerts at the central broker")
        central.stop()  # the link is cut: the edge broker queues for the bridge
        cut_at = sent["n"]
        time.sleep(2.0)  # (the outage itself, not an assertion)
        during = sent["n"] - cut_at
        central.start()
        for t in feeders:
            t.join(60)
        for p in pubs.values():  # the agents never saw the outage: the edge broker acked
            assert p.flush(30), p.stats()
            p.close()
        assert during > 0, "no alert was published while the central broker was down"

        listener = Listener()
        got: list[Alert] = []
        seen = [0]

        def drain() -> int:
            batch = sub.messages[seen[0] :]
            seen[0] += len(batch)
            for topic, payload in batch:
                item = listener.handle(topic, payload)
                if item is not None:
                    got.append(item.message)
            return len(got)

        _wait(lambda: drain() >= total, 60, "every alert at the central subscriber")
        time.sleep(0.5)  # a late duplicate would show up now
        drain()
        assert listener.counts["rejected"] == 0
        assert len(got) == total  # once each, QoS 1 resends dropped by alert id
        for d in DEVICES:
            assert [a.alert_id for a in got if a.device_id == d] == ids[d], f"order of {d}"
        print(f"bridge test: {during} alerts during the cut, {listener.counts['duplicates']} dups")

    def test_edge_restart_while_cut(self, tmp_path: Path, collector_factory) -> None:
        """What the edge queued for the bridge survives a restart of the edge broker."""
        central = start_broker(tmp_path / "central")
        edge = start_broker(tmp_path / "edge", extra=tuple(bridge_lines(central.port)))
        try:
            state = collector_factory(edge.port, "ecg-bridge/+/state")
            _wait(lambda: (state.messages or [("", b"")])[-1][1] == b"1", 30, "the bridge")
            sub = collector_factory(
                central.port, "ecg/+/alerts", client_id="central-2", persistent=True
            )
            central.stop()
            ids = [seq_alert_id(i, "restart") for i in range(40)]
            pub = Publisher(edge.url, "bed-9", tmp_path / "spool.db").start()
            for alert_id in ids:
                pub.publish_alert(sample_alert("bed-9", alert_id=alert_id))
            assert pub.flush(30), pub.stats()  # acknowledged by the edge broker
            pub.close()
            edge.restart(down_s=0.5)  # the device reboots while the link is down
            central.start()
            listener = Listener()
            got: list[str] = []

            def drain() -> int:
                while sub.messages:
                    topic, payload = sub.messages.pop(0)
                    item = listener.handle(topic, payload)
                    if item is not None:
                        got.append(item.message.alert_id)
                return len(got)

            _wait(lambda: drain() >= len(ids), 60, "the queued alerts at the central broker")
            assert got == ids
        finally:
            edge.stop()
            central.stop()
