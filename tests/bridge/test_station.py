"""The station's state (pure) and its MQTT and HTTP sides on a real broker (no browser here)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from bridge.publish import Publisher
from bridge.schema import encode, sample_alarm, sample_alert
from bridge.station.state import StationState
from bridge.testing import free_port, wait_port
from bridge.wave import Ack, LiveWave

BIN = os.path.dirname(sys.executable)


def _feed(state: StationState, topic: str, payload: dict) -> list[dict]:
    return state.handle(topic, encode(payload))


def _alarm(device: str, priority: str, **kw):  # type: ignore[no-untyped-def]
    return dataclasses.replace(sample_alarm(device), priority=priority, **kw)


class TestState:
    def test_alarms_most_urgent_first_and_cleared_last(self) -> None:
        st = StationState()
        low = sample_alert("bed-1")
        high = _alarm("bed-2", "high")
        med = _alarm("bed-3", "medium", condition="high_heart_rate", reason="HR 130")
        for a in (low, high, med):
            _feed(st, f"ecg/{a.device_id}/alerts", a.to_json())
        order = [a["alert_id"] for a in st.snapshot()["alarms"]]
        assert order == [high.alert_id, med.alert_id, low.alert_id]
        cleared = dataclasses.replace(
            high, event="cleared", alert_id="c" * 32, cleared_sample=high.onset_sample + 500
        )
        events = _feed(st, "ecg/bed-2/alerts", cleared.to_json())
        assert any(e["t"] == "alarm" and e["alarm"]["alert_id"] == high.alert_id for e in events)
        alarms = st.snapshot()["alarms"]
        assert [a["alert_id"] for a in alarms][:2] == [med.alert_id, low.alert_id]
        assert {a["alert_id"]: a["cleared"] for a in alarms}[high.alert_id] is True

    def test_findings_and_heart_rate_of_a_bed(self) -> None:
        st = StationState()
        a = sample_alert("bed-1")
        _feed(st, "ecg/bed-1/alerts", a.to_json())
        assert st.snapshot()["devices"][0]["findings"] == ["AF"]
        w = LiveWave("bed-1", "II", 125.0, 0, (1, 2, 3), 88.0)
        events = _feed(st, "ecg/bed-1/live", w.to_json())
        assert [e["t"] for e in events] == ["device", "live"]
        assert (
            events[0]["device"]["heart_rate"] == 88.0 and events[0]["device"]["status"] == "online"
        )
        cleared = dataclasses.replace(a, event="cleared", alert_id="d" * 32)
        _feed(st, "ecg/bed-1/alerts", cleared.to_json())
        assert st.snapshot()["devices"][0]["findings"] == []

    def test_an_ack_counts_even_before_its_alert(self) -> None:
        st = StationState()
        a = _alarm("bed-5", "high")
        _feed(st, "ecg/bed-5/acks", Ack(a.alert_id, "bed-5", "ward-b", "sam").to_json())
        _feed(st, "ecg/bed-5/alerts", a.to_json())
        assert st.alarm(a.alert_id)["acked"]["by"] == "sam"

    def test_what_is_invalid_is_counted_never_raised(self) -> None:
        st = StationState()
        assert st.handle("ecg/bed-1/live", b"{not json") == []
        w = LiveWave("bed-2", "II", 125.0, 0, (1,), None).to_json()
        assert st.handle("ecg/bed-1/live", encode(w)) == []  # device mismatch
        assert st.counts["rejected"] == 2
        assert st.handle("ecg/bed-1/alerts", b"[]") == []  # the listener rejects and logs it


class TestAcknowledgement:
    @pytest.mark.slow
    def test_reaches_the_agent_and_every_station(self, broker, tmp_path) -> None:
        from bridge.station.server import Station

        heard: list[Ack] = []
        pub = Publisher(broker.url, "bed-6", tmp_path / "spool.db", on_ack=heard.append).start()
        a, b = (
            Station(broker.url, name="ward-a").start(),
            Station(broker.url, name="ward-b").start(),
        )
        try:
            assert pub.wait_connected(10) and a.connected.wait(5) and b.connected.wait(5)
            alarm = _alarm("bed-6", "high")
            pub.publish_alert(alarm)
            assert pub.flush(10)
            deadline = time.monotonic() + 10
            while b.state.alarm(alarm.alert_id) is None and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.3)  # the publisher's ack subscription is in place
            sent = a.acknowledge(alarm.alert_id, "bed-6", "jo")
            while (not heard or b.state.alarm(alarm.alert_id)["acked"] is None) and (
                time.monotonic() < deadline
            ):
                time.sleep(0.05)
            assert [h.ack_id for h in heard] == [sent.ack_id]
            assert b.state.alarm(alarm.alert_id)["acked"]["station"] == "ward-a"
            assert a.state.alarm(alarm.alert_id)["acked"]["by"] == "jo"
        finally:
            a.stop()
            b.stop()
            pub.close()


class TestHttp:
    @pytest.mark.slow
    def test_a_token_guards_every_request(self, broker) -> None:
        port = free_port()
        p = subprocess.Popen(
            [os.path.join(BIN, "ecg-bridge"), "station", "--broker", broker.url,
             "--port", str(port), "--token", "s3cret"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert wait_port(port, 20)
            base = f"http://127.0.0.1:{port}"
            for path in ("/", "/api/snapshot", "/strip/" + "a" * 32 + ".png"):
                with pytest.raises(urllib.error.HTTPError) as err:
                    urllib.request.urlopen(base + path, timeout=5)
                assert err.value.code == 401
            with urllib.request.urlopen(base + "/?token=s3cret", timeout=5) as r:
                assert r.status == 200 and "ecg_station_token=s3cret" in r.headers["set-cookie"]
                assert b"station.js" in r.read()
            req = urllib.request.Request(
                base + "/static/station.js", headers={"Cookie": "ecg_station_token=s3cret"}
            )
            with urllib.request.urlopen(req, timeout=5) as r:  # static files are public code
                assert b"WebSocket" in r.read()
            req = urllib.request.Request(
                base + "/api/snapshot", headers={"Authorization": "Bearer s3cret"}
            )
            with urllib.request.urlopen(req, timeout=5) as r:
                assert r.status == 200
        finally:
            p.terminate()
            p.wait(10)

    @pytest.mark.slow
    def test_exposed_without_a_token_makes_one_up(self, broker) -> None:
        port = free_port()
        p = subprocess.Popen(
            [os.path.join(BIN, "ecg-bridge"), "station", "--broker", broker.url,
             "--port", str(port), "--host", "0.0.0.0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert wait_port(port, 20)
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5)
            assert err.value.code == 401
        finally:
            p.terminate()
            _, stderr = p.communicate(timeout=10)
        assert "a token is required (generated)" in stderr and "/?token=" in stderr


class TestThroughTheEdgeBridge:
    @pytest.mark.slow
    def test_an_ack_comes_down_to_the_agent_once(self, tmp_path, collector_factory) -> None:
        from pathlib import Path

        from bridge.station.server import Station
        from bridge.testing import find_mosquitto, start_broker

        if find_mosquitto() is None:
            pytest.skip("needs two mosquitto processes (apt-get install -y mosquitto)")
        conf = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto" / "edge.conf"
        text = conf.read_text().splitlines()
        block = text[next(i for i, x in enumerate(text) if x.startswith("connection ")) :]
        local = ("address", "remote_username", "remote_password", "bridge_cafile")
        lines = [x for x in block if x.strip() and not x.startswith("#")]
        lines = [
            x for x in lines if x.split()[0] not in local and x.split()[0] != "restart_timeout"
        ]
        central = start_broker(tmp_path / "central")
        edge = start_broker(
            tmp_path / "edge",
            extra=(*lines, f"address 127.0.0.1:{central.port}", "restart_timeout 1 2"),
        )
        heard: list[Ack] = []
        try:
            pub = Publisher(edge.url, "bed-6", tmp_path / "spool.db", on_ack=heard.append).start()
            at_central = collector_factory(central.port, "ecg/+/acks")
            station = Station(central.url, name="ward-c").start()
            assert pub.wait_connected(10) and station.connected.wait(5)
            time.sleep(2.0)  # the bridge is up and has subscribed
            alarm = _alarm("bed-6", "high")
            pub.publish_alert(alarm)
            assert pub.flush(10)
            sent = station.acknowledge(alarm.alert_id, "bed-6", "kim")
            deadline = time.monotonic() + 10
            while not heard and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(1.0)  # would a loop send it round again?
            assert [h.ack_id for h in heard] == [sent.ack_id]
            assert len(at_central.messages) == 1
            station.stop()
            pub.close()
        finally:
            edge.stop()
            central.stop()
