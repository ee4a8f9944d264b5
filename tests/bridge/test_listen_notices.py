"""``ecg-bridge listen`` says (on stderr) when it connects, loses the broker and reconnects."""

from __future__ import annotations

import threading
import time

from bridge.listen import listen


class TestConnectionNotices:
    def test_connect_loss_and_reconnect_are_said(self, own_broker):
        notices: list[str] = []
        t = threading.Thread(
            target=listen,
            args=(own_broker.url,),
            kwargs={"timeout_s": 8.0, "notice": notices.append},
            daemon=True,
        )
        t.start()
        deadline = time.monotonic() + 5
        while not notices and time.monotonic() < deadline:
            time.sleep(0.05)
        own_broker.restart(down_s=0.5)
        t.join(15)
        assert not t.is_alive()
        assert notices[0].startswith("connected to "), notices
        assert any(n.startswith("warning: lost the broker") for n in notices), notices
        assert any(n.startswith("reconnected to") for n in notices), notices
        assert notices[-1].startswith("reconnected to")  # the closing disconnect says nothing

    def test_the_cli_prints_them_on_stderr(self, broker):
        import subprocess
        import sys

        r = subprocess.run(
            [sys.executable, "-m", "bridge.cli", "listen", "--broker", broker.url,
             "--device", "nobody-here-1", "--timeout", "0.5"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert "connected to" in r.stderr and r.stdout == ""
