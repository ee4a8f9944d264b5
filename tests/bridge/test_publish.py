from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from bridge._conn import parse_broker_url, redact
from bridge._spool import Spool
from bridge.publish import Publisher
from bridge.schema import QualityEvent, sample_alert
from bridge.testing import Broker
from edge.errors import ConfigError, PublishError


def _ids(messages: list[tuple[str, bytes]], topic: str) -> list[str]:
    return [json.loads(p)["alert_id"] for t, p in messages if t == topic]


class TestBrokerUrl:
    def test_parse(self) -> None:
        url = parse_broker_url("mqtts://ann:s%40cret@example.org", env={})
        assert (url.host, url.port, url.tls, url.username, url.password) == (
            "example.org",
            8883,
            True,
            "ann",
            "s@cret",
        )
        assert "s@cret" not in str(url) and "s@cret" not in repr(url)
        env = {"ECG_MQTT_USERNAME": "bob", "ECG_MQTT_PASSWORD": "pw"}
        url = parse_broker_url("mqtt://localhost", env=env)
        assert (url.port, url.username, url.password) == (1883, "bob", "pw")
        assert redact("mqtt://a:b@h:1") == "mqtt://a:***@h:1"

    @pytest.mark.parametrize("bad", ["localhost:1883", "http://x", "mqtt://", "mqtt://h:99999"])
    def test_bad_urls(self, bad: str) -> None:
        with pytest.raises(PublishError):
            parse_broker_url(bad, env={})


class TestSpool:
    def test_bound_policy(self, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
        spool = Spool(tmp_path / "s.db", max_rows=4)
        spool.put("quality", "q", b"q1", 1)
        spool.put("alert", "a", b"a1", 1)
        spool.put("quality", "q", b"q2", 1)
        spool.put("alert", "a", b"a2", 1)
        spool.put("alert", "a", b"a3", 1)  # evicts q1
        spool.put("alert", "a", b"a4", 1)  # evicts q2
        assert [r[3] for r in spool.after(0, 10)] == [b"a1", b"a2", b"a3", b"a4"]
        assert spool.put("quality", "q", b"q3", 1) is None  # full of alerts: refused
        spool.put("alert", "a", b"a5", 1)  # alerts are kept beyond the bound
        assert len(spool) == 5 and spool.over_bound == 1 and spool.evicted == 3
        assert "full" in caplog.text
        spool.close()
        again = Spool(tmp_path / "s.db", max_rows=4)  # durable
        assert len(again) == 5
        again.close()


class TestPublisher:
    def test_in_order_and_status(self, broker: Broker, tmp_path: Path, collector_factory) -> None:
        sub = collector_factory(broker.port, "ecg/pub-1/#")
        pub = Publisher(broker.url, "pub-1", tmp_path / "spool.db", heartbeat_s=0.3).start()
        alerts = [sample_alert("pub-1") for _ in range(50)]
        for a in alerts:
            pub.publish_alert(a)
        pub.publish_quality(QualityEvent("pub-1", alerts[0].frame, alerts[0].quality))
        assert pub.flush(10)
        time.sleep(0.5)
        assert pub.stats()["sent"] == 51 and pub.stats()["pending"] == 0
        pub.close()
        got = sub.messages
        assert sub.wait_for(lambda m: any(b'"offline"' in p for _, p in m), 5)
        assert _ids(got, "ecg/pub-1/alerts") == [a.alert_id for a in alerts]
        states = [json.loads(p)["state"] for t, p in got if t == "ecg/pub-1/status"]
        assert states[0] == "online" and "heartbeat" in states and states[-1] == "offline"

    def test_misuse_raises(self, tmp_path: Path) -> None:
        pub = Publisher(None, "pub-2", tmp_path / "s.db")
        with pytest.raises(ConfigError, match="device_id"):
            pub.publish_alert(sample_alert("other"))
        with pytest.raises(ConfigError):
            pub.publish_alert({"alert_id": "x"})  # type: ignore[arg-type]
        with pytest.raises(ConfigError):
            Publisher(None, "a/b", tmp_path / "s.db")
        pub.close()

    def test_broker_down_at_start(
        self, own_broker: Broker, tmp_path: Path, collector_factory
    ) -> None:
        # A persistent subscriber session exists; then the broker goes down.
        sub = collector_factory(
            own_broker.port, "ecg/pub-3/alerts", client_id="sub-3", persistent=True
        )
        own_broker.stop()
        pub = Publisher(
            own_broker.url, "pub-3", tmp_path / "s.db", reconnect_min_s=0.1, reconnect_max_s=0.3
        ).start()
        alerts = [sample_alert("pub-3") for _ in range(20)]
        for a in alerts:
            pub.publish_alert(a)
        assert not pub.flush(0.5)
        assert pub.stats()["pending"] == 20 and "refused" in pub.stats()["last_error"]
        own_broker.start()
        assert pub.flush(15)
        pub.close()
        assert sub.wait_for(lambda m: len(m) >= 20, 10)
        assert _ids(sub.messages, "ecg/pub-3/alerts") == [a.alert_id for a in alerts]

    def test_unsent_stay_for_next_start(
        self, broker: Broker, tmp_path: Path, collector_factory
    ) -> None:
        spool = tmp_path / "s.db"
        offline = Publisher(None, "pub-4", spool)
        alerts = [sample_alert("pub-4") for _ in range(5)]
        for a in alerts:
            offline.publish_alert(a)
        assert not offline.close(0.1)
        sub = collector_factory(broker.port, "ecg/pub-4/alerts")
        pub = Publisher(broker.url, "pub-4", spool).start()
        assert pub.flush(10)
        pub.close()
        assert sub.wait_for(lambda m: len(m) >= 5, 5)
        assert _ids(sub.messages, "ecg/pub-4/alerts") == [a.alert_id for a in alerts]
