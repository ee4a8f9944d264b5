"""Forwarders sharing one MQTT 5 shared subscription on a real Mosquitto.

Three ``ecg-bridge forward --group ward`` processes post to a FHIR stand-in
(conditional create); one is SIGKILLed mid-run and started again, as a
supervisor would; a publisher resends alerts it had already sent. Every alert
must be created exactly once.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bridge.errors import ConfigError, PublishError
from bridge.forward import ALERT_ID_SYSTEM, Forwarder, parse_target
from bridge.publish import Publisher
from bridge.schema import sample_alert
from bridge.testing import (
    Broker,
    FhirStandIn,
    find_mosquitto,
    seq_alert_id,
    start_broker,
    write_password_file,
)

DEVICES = ("bed-1", "bed-2", "bed-3")
PER_DEVICE = 80


def _wait(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


class _ForwardProc:
    """``python -m bridge.cli forward --group ...`` with its stderr collected."""

    def __init__(self, broker: Broker, fhir: FhirStandIn, workdir: Path, name: str) -> None:
        self.name = name
        self.argv = [
            sys.executable,
            "-m",
            "bridge.cli",
            "forward",
            "--broker",
            broker.url,
            "--to",
            f"fhir:{fhir.url}",
            "--outbox",
            str(workdir / f"{name}.db"),
            "--client-id",
            name,
            "--group",
            "ward",
        ]
        self.lines: list[str] = []
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.argv, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
        )
        self.reader = threading.Thread(target=self._read, args=(self.proc,), daemon=True)
        self.reader.start()

    def _read(self, proc: subprocess.Popen) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            self.lines.append(line.rstrip())

    def wait_subscribed(self, timeout: float = 30) -> None:
        _wait(
            lambda: (
                any(x.startswith("forwarding alerts") for x in self.lines)
                or self.proc.poll() is not None
            ),
            timeout,
            f"{self.name} to subscribe",
        )
        assert self.proc.poll() is None, self.lines

    def stop(self) -> str:
        """SIGINT (a clean stop): returns its summary line."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(30)
        self.reader.join(10)  # its last line (the summary) is read
        return next((x for x in reversed(self.lines) if "delivered" in x), "")


def _publish(broker: Broker, workdir: Path, device: str, ids: list[str]) -> None:
    pub = Publisher(broker.url, device, workdir / f"spool-{device}.db").start()
    for alert_id in ids:
        pub.publish_alert(sample_alert(device, alert_id=alert_id))
        time.sleep(0.005)
    assert pub.flush(60), pub.stats()
    pub.close()


@pytest.mark.slow
class TestSharedForwarders:
    def test_three_forwarders_one_killed(self, own_broker: Broker, tmp_path: Path) -> None:
        fhir = FhirStandIn().start()
        fwds = [_ForwardProc(own_broker, fhir, tmp_path, f"fwd-{i}") for i in range(3)]
        try:
            for f in fwds:
                f.wait_subscribed()
            ids = {d: [seq_alert_id(i, d) for i in range(PER_DEVICE)] for d in DEVICES}
            pubs = [
                threading.Thread(target=_publish, args=(own_broker, tmp_path, d, ids[d]))
                for d in DEVICES
            ]
            for t in pubs:
                t.start()
            total = len(DEVICES) * PER_DEVICE
            _wait(lambda: len(fhir.created) >= total // 4, 60, "a quarter of the alerts")
            fwds[1].proc.kill()  # SIGKILL mid-run
            fwds[1].proc.wait()
            for t in pubs:
                t.join(90)
            # A publisher resends alerts it had sent (same ids): a redelivery that
            # the shared subscription may hand to a member that never saw them.
            _publish(own_broker, tmp_path, DEVICES[0], ids[DEVICES[0]][:30])
            # The two members alive keep forwarding while the third is down.
            _wait(lambda: len(fhir.created) >= total // 2, 60, "the survivors to go on")
            fwds[1].start()  # the supervisor restarts it: same client id, same outbox
            fwds[1].wait_subscribed()
            _wait(lambda: len(fhir.created) >= total, 90, "every alert at the FHIR server")
            time.sleep(1.0)  # let any late duplicate arrive before counting
            summaries = [f.stop() for f in fwds]
        finally:
            for f in fwds:
                if f.proc.poll() is None:
                    f.proc.kill()
            fhir.stop()
        expected = {f"{ALERT_ID_SYSTEM}|{i}-164889003" for d in DEVICES for i in ids[d]}
        assert len(fhir.created) == len(set(fhir.created)) == total, "an alert created twice"
        assert set(fhir.created) == expected
        # Redeliveries happened and were absorbed by the conditional create or the outbox.
        assert fhir.posts == total + fhir.existing
        delivered = [int(s.split()[0]) for s in summaries if s]
        assert len(delivered) == 3, summaries
        # The alerts were shared, not copied: the members delivered about total in all.
        assert sum(delivered) <= total + 30
        assert all(n > 0 for n in delivered), summaries
        # Each of the 30 resent alerts was dropped by an outbox that knew it or
        # reached the FHIR server again and was not created twice.
        dropped = sum(int(s.split(", ")[1].split()[0]) for s in summaries)
        assert fhir.existing > 0
        assert dropped + fhir.existing >= 30


class TestGroupErrors:
    def test_bad_group_name(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="group"):
            Forwarder(
                "mqtt://127.0.0.1:1",
                parse_target(f"jsonl:{tmp_path / 'a.jsonl'}"),
                tmp_path / "o.db",
                group="ward/3",
            )

    @pytest.mark.skipif(find_mosquitto() is None, reason="needs mosquitto (password file)")
    def test_broker_refuses_the_client(self, tmp_path: Path) -> None:
        users = write_password_file(tmp_path / "passwd", {"station": "right"})
        extra = ("allow_anonymous false", f"password_file {users}")
        broker = start_broker(tmp_path / "b", extra=extra)
        try:
            fwd = Forwarder(
                broker.url.replace("mqtt://", "mqtt://station:wrong@"),
                parse_target(f"jsonl:{tmp_path / 'a.jsonl'}"),
                tmp_path / "o.db",
                group="ward",
            )
            with pytest.raises(PublishError, match="refused the connection: Not authorized"):
                fwd.start()
            fwd.close()
        finally:
            broker.stop()

    def test_falls_back_to_mqtt311(self, tmp_path: Path) -> None:
        """amqtt speaks MQTT 3.1.1 only: the group member connects with 3.1.1."""
        pytest.importorskip("amqtt")
        broker = start_broker(tmp_path / "b", kind="amqtt")
        try:
            fwd = Forwarder(
                broker.url,
                parse_target(f"jsonl:{tmp_path / 'a.jsonl'}"),
                tmp_path / "o.db",
                group="ward",
                client_id="old-broker",
            ).start(timeout_s=5)
            assert fwd.mqtt5 is False
            fwd.close()
        finally:
            broker.stop()

    def test_slow_target_warns_and_keeps_everything(
        self, broker: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        fhir = FhirStandIn(delay_s=0.05).start()
        fwd = Forwarder(
            broker.url,
            parse_target(f"fhir:{fhir.url}"),
            tmp_path / "o.db",
            device="slow-1",
            client_id="slow-fwd",
            max_outbox=10,
        ).start()
        try:
            with caplog.at_level(logging.WARNING, logger="bridge.forward"):
                _publish(broker, tmp_path, "slow-1", [seq_alert_id(i, "slow") for i in range(40)])
                _wait(lambda: fwd.counts["received"] == 40, 30, "the outbox to take all")
                assert fwd.outbox.pending() > 10  # the target is behind; the outbox holds them
                fwd.run(count=40, timeout_s=60)
        finally:
            fwd.close()
            fhir.stop()
        assert len(set(fhir.created)) == 40
        assert any("outbox over its limit" in r.getMessage() for r in caplog.records)
