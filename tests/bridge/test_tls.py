"""TLS and passwords against a real Mosquitto with generated certificates."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from bridge._conn import connect_blocking, make_client, parse_broker_url
from bridge.publish import Publisher
from bridge.schema import sample_alert
from bridge.testing import (
    Broker,
    TLSFiles,
    find_mosquitto,
    make_certificates,
    start_broker,
    write_password_file,
)
from edge._cli import run_app
from edge.errors import PublishError


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Broker, dict]]:
    if find_mosquitto() is None:
        pytest.skip("the TLS test needs mosquitto")
    work = tmp_path_factory.mktemp("tls")
    certs = make_certificates(work / "certs")
    pw = write_password_file(work / "passwd", {"edge": "right-password"})
    tls = TLSFiles(certs["ca"], certs["server_cert"], certs["server_key"], pw)
    broker = start_broker(work / "broker", tls=tls)
    yield broker, certs
    broker.stop()


def _connect(url: str, ca: Path) -> None:
    broker = parse_broker_url(url, env={})
    client = make_client(broker, f"t-{uuid.uuid4().hex[:6]}", ca_file=ca)
    try:
        connect_blocking(client, broker, timeout_s=5)
    finally:
        client.disconnect()


@pytest.mark.slow
class TestTLS:
    def test_right_ca_and_password(self, tls_broker, tmp_path: Path) -> None:
        broker, certs = tls_broker
        url = f"mqtts://edge:right-password@127.0.0.1:{broker.port}"
        _connect(url, certs["ca"])
        pub = Publisher(url, "tls-1", tmp_path / "s.db", ca_file=certs["ca"]).start()
        pub.publish_alert(sample_alert("tls-1"))
        assert pub.flush(10)
        pub.close()

    def test_credentials_from_environment(self, tls_broker, monkeypatch) -> None:
        broker, certs = tls_broker
        monkeypatch.setenv("ECG_MQTT_USERNAME", "edge")
        monkeypatch.setenv("ECG_MQTT_PASSWORD", "right-password")
        out, err = io.StringIO(), io.StringIO()
        from bridge.cli import app

        argv = [
            "check",
            "--broker",
            f"mqtts://127.0.0.1:{broker.port}",
            "--ca-file",
            str(certs["ca"]),
        ]
        with redirect_stdout(out), redirect_stderr(err):
            assert run_app(app, argv) == 0
        assert "connected" in out.getvalue() and "right-password" not in out.getvalue()

    def test_wrong_ca_refused(self, tls_broker) -> None:
        broker, certs = tls_broker
        url = f"mqtts://edge:right-password@127.0.0.1:{broker.port}"
        with pytest.raises(PublishError, match="certificate not trusted") as info:
            _connect(url, certs["other_ca"])
        assert "right-password" not in str(info.value)

    def test_wrong_password_refused(self, tls_broker) -> None:
        broker, certs = tls_broker
        url = f"mqtts://edge:wrong@127.0.0.1:{broker.port}"
        with pytest.raises(PublishError, match="refused the connection: Not authorized"):
            _connect(url, certs["ca"])

    def test_cli_says_why_in_one_line(self, tls_broker) -> None:
        broker, certs = tls_broker
        from bridge.cli import app

        err = io.StringIO()
        argv = [
            "listen",
            "--broker",
            f"mqtts://edge:wrong@127.0.0.1:{broker.port}",
            "--ca-file",
            str(certs["ca"]),
            "--timeout",
            "1",
        ]
        with redirect_stderr(err):
            assert run_app(app, argv) == 2
        lines = err.getvalue().strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "wrong" not in lines[0]
        assert "Not authorized" in lines[0]

    def test_missing_ca_file(self, tmp_path: Path) -> None:
        with pytest.raises(PublishError, match="ca_file"):
            Publisher("mqtts://h", "tls-2", tmp_path / "s.db", ca_file=tmp_path / "nope.pem")
