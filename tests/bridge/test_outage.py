"""Alerts survive broker restarts and a SIGKILLed publisher (real processes)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bridge.testing import Broker, seq_alert_id

N = 300


class _Feeder:
    """The publisher process; remembers the last sequence number it spooled."""

    def __init__(self, broker: Broker, spool: Path, start: int, count: int) -> None:
        self.last = start - 1
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bridge.testing",
                "--broker",
                broker.url,
                "--spool",
                str(spool),
                "--device",
                "outage-1",
                "--start",
                str(start),
                "--count",
                str(count),
                "--interval",
                "0.01",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())
            if line.startswith("spooled "):
                self.last = int(line.split()[1])

    def wait_seq(self, seq: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.last < seq:
            assert time.monotonic() < deadline, f"publisher stuck at {self.last}: {self.lines[-5:]}"
            assert self.proc.poll() is None or self.last >= seq, self.lines[-10:]
            time.sleep(0.01)


@pytest.mark.slow
class TestOutage:
    def test_nothing_lost(self, own_broker: Broker, tmp_path: Path, collector_factory) -> None:
        sub = collector_factory(
            own_broker.port, "ecg/outage-1/alerts", client_id="outage-sub", persistent=True
        )
        spool = tmp_path / "spool.db"
        feeder = _Feeder(own_broker, spool, 0, N)

        feeder.wait_seq(60)
        own_broker.restart(down_s=0.5)  # 1st broker restart
        feeder.wait_seq(130)
        feeder.proc.kill()  # SIGKILL mid-stream
        feeder.proc.wait()
        feeder.thread.join(5)
        resume = feeder.last + 1
        feeder = _Feeder(own_broker, spool, resume, N - resume)
        feeder.wait_seq(min(resume + 70, N - 1))
        own_broker.restart(down_s=0.5)  # 2nd broker restart
        feeder.wait_seq(N - 1)
        assert feeder.proc.wait(60) == 0, feeder.lines[-5:]

        want = [seq_alert_id(i) for i in range(N)]
        assert sub.wait_for(lambda m: len({json.loads(p)["alert_id"] for _, p in m}) >= N, 30)
        ids = [json.loads(p)["alert_id"] for _, p in sub.messages]
        first_seen = list(dict.fromkeys(ids))
        assert first_seen == want  # all N, in order, once duplicates are dropped
        dups = len(ids) - len(first_seen)
        assert dups <= 100, f"{dups} duplicates"  # QoS 1 resends around the cuts only
