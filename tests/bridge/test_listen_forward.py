"""Listener and forwarder against a real broker: fuzzed payloads, targets that fail."""

from __future__ import annotations

import io
import json
import random
import threading
import time
from contextlib import redirect_stderr, redirect_stdout
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from bridge.cli import app
from bridge.forward import Forwarder, JsonlTarget, fhir_observations, parse_target
from bridge.listen import listen
from bridge.schema import PayloadError, StatusMessage, encode, sample_alert, validate
from bridge.testing import Broker
from edge._cli import run_app
from edge.errors import PublishError


def _publisher(broker: Broker) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"raw-{random.random()}")
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    return c


def _bad_payloads(device: str, n: int, seed: int = 0) -> list[bytes]:
    rng = random.Random(seed)
    good = sample_alert(device).to_json()
    out: list[bytes] = [
        b"",
        b"null",
        b"[]",
        b"{",
        b"\xff\xfe",
        b"NaN",
        b'{"schema": 1}',
        encode({**good, "schema": "ecg-edge/alert/9"}),
        b"x" * 300_000,
    ]
    while len(out) < n:
        data = json.loads(json.dumps(good))
        key = rng.choice(sorted(data))
        choice = rng.random()
        if choice < 0.3:
            del data[key]
        elif choice < 0.6:
            data[key] = rng.choice([None, -1, "", [], {}, "x" * 5000, 1e308, True])
        elif choice < 0.8:
            data["findings"] = [{"code": rng.choice(["", "abc", 5]), "score": "s"}]
        else:
            raw = encode(data)
            out.append(raw[: rng.randrange(len(raw))])
            continue
        try:
            validate(data)  # some mutations are still valid (record None...): skip them
        except PayloadError:
            out.append(json.dumps(data).encode())
    return out


class TestListen:
    def test_fuzzed_stream(self, broker: Broker) -> None:
        device = "fuzz-1"
        good = [sample_alert(device) for _ in range(3)]
        out = io.StringIO()
        result: dict = {}
        t = threading.Thread(
            target=lambda: result.update(
                listener=listen(broker.url, device, json_lines=True, out=out, count=4, timeout_s=20)
            )
        )
        t.start()
        time.sleep(0.5)  # subscribed
        pub = _publisher(broker)
        topic = f"ecg/{device}/alerts"
        bad = _bad_payloads(device, 200)
        pub.publish(
            f"ecg/{device}/status", encode(StatusMessage(device, "online").to_json()), qos=1
        )
        for i, raw in enumerate(bad):
            pub.publish(topic, raw, qos=1)
            if i % 50 == 0:
                pub.publish(topic, encode(good[i // 100].to_json()), qos=1)  # some twice
        pub.publish(topic, encode(good[2].to_json()), qos=1)
        t.join(30)
        pub.disconnect()
        pub.loop_stop()
        listener = result["listener"]
        lines = [json.loads(x) for x in out.getvalue().splitlines()]
        alerts = [x["payload"]["alert_id"] for x in lines if x["kind"] == "alert"]
        assert alerts == [a.alert_id for a in good]
        assert [x["kind"] for x in lines].count("status") == 1
        assert listener.counts["rejected"] == len(bad)
        assert listener.counts["duplicates"] == 2

    def test_cli_readable(self, broker: Broker) -> None:
        out = io.StringIO()
        device = "cli-1"

        def send() -> None:
            time.sleep(0.7)
            pub = _publisher(broker)
            pub.publish(f"ecg/{device}/alerts", encode(sample_alert(device).to_json()), qos=1)
            time.sleep(0.2)
            pub.disconnect()
            pub.loop_stop()

        threading.Thread(target=send).start()
        err = io.StringIO()
        argv = [
            "listen",
            "--broker",
            broker.url,
            "--device",
            device,
            "--count",
            "1",
            "--timeout",
            "10",
        ]
        with redirect_stdout(out), redirect_stderr(err):
            assert run_app(app, argv) == 0
        assert "LOW DIAGNOSIS ONSET AF (164889003 atrial fibrillation)" in out.getvalue()


class _Flaky(BaseHTTPRequestHandler):
    fail_first = 3
    seen: list[tuple[str, dict, dict]] = []  # noqa: RUF012

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append((self.path, dict(self.headers), body))
        if len(type(self).seen) <= type(self).fail_first:
            self.send_response(503)
            self.end_headers()
            return
        self.send_response(201)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_target():
    _Flaky.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Flaky
    server.shutdown()


class TestForward:
    def _send(self, broker: Broker, device: str, alerts: list) -> None:
        pub = _publisher(broker)
        for a in alerts:
            pub.publish(f"ecg/{device}/alerts", encode(a.to_json()), qos=1).wait_for_publish(5)
        pub.publish(f"ecg/{device}/alerts", encode(alerts[0].to_json()), qos=1)  # redelivery
        pub.publish(f"ecg/{device}/alerts", b"not json", qos=1)
        time.sleep(0.2)
        pub.disconnect()
        pub.loop_stop()

    def test_webhook_down_then_up(self, broker: Broker, tmp_path: Path, http_target) -> None:
        url, handler = http_target
        device = "fwd-1"
        fwd = Forwarder(
            broker.url,
            parse_target(f"webhook:{url}/hook"),
            tmp_path / "o.db",
            device=device,
            client_id="fwd-test-1",
            retry_min_s=0.05,
            retry_max_s=0.2,
        ).start()
        alerts = [sample_alert(device) for _ in range(5)]
        self._send(broker, device, alerts)
        fwd.run(count=5, timeout_s=15)
        fwd.close()
        accepted = [b["alert_id"] for _, _, b in handler.seen[handler.fail_first :]]
        assert accepted == [a.alert_id for a in alerts]
        assert fwd.counts["failures"] == handler.fail_first

    def test_fhir(self, broker: Broker, tmp_path: Path, http_target) -> None:
        url, handler = http_target
        handler.fail_first = 0
        device = "fwd-2"
        fwd = Forwarder(
            broker.url,
            parse_target(f"fhir:{url}/fhir"),
            tmp_path / "o.db",
            device=device,
            client_id="fwd-test-2",
        ).start()
        alert = sample_alert(device)
        self._send(broker, device, [alert])
        fwd.run(count=1, timeout_s=10)
        fwd.close()
        handler.fail_first = 3
        assert len(handler.seen) == 1
        path, headers, obs = handler.seen[0]
        assert path == "/fhir/Observation" and obs == fhir_observations(alert)[0]
        assert obs["resourceType"] == "Observation"
        assert obs["code"]["coding"][0] == {
            "system": "http://snomed.info/sct",
            "code": "164889003",
            "display": "atrial fibrillation",
        }
        assert obs["device"]["identifier"]["value"] == device
        assert obs["effectivePeriod"]["start"] == alert.frame.start_utc
        assert headers["If-None-Exist"].endswith(f"{alert.alert_id}-164889003")

    def test_jsonl_and_restart(self, broker: Broker, tmp_path: Path) -> None:
        device = "fwd-3"
        path = tmp_path / "alerts.jsonl"
        fwd = Forwarder(
            broker.url, JsonlTarget(path), tmp_path / "o.db", device=device, client_id="fwd-test-3"
        ).start()
        fwd.close()  # persistent session: alerts sent now wait at the broker
        alerts = [sample_alert(device) for _ in range(4)]
        self._send(broker, device, alerts)
        fwd = Forwarder(
            broker.url, JsonlTarget(path), tmp_path / "o.db", device=device, client_id="fwd-test-3"
        ).start()
        fwd.run(count=4, timeout_s=10)
        fwd.close()
        lines = [json.loads(x)["alert_id"] for x in path.read_text().splitlines()]
        assert lines == [a.alert_id for a in alerts]

    @pytest.mark.parametrize("spec", ["jsonl", "ftp:x", "webhook:nothttp", "fhir:"])
    def test_bad_target(self, spec: str) -> None:
        with pytest.raises(PublishError, match="--to"):
            parse_target(spec)
