"""Two agents under one device id are detected and reported, not silently merged."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from bridge.publish import Publisher
from bridge.schema import sample_alert
from bridge.testing import Broker


def _wait(pred, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not pred() and time.monotonic() < deadline:
        time.sleep(0.05)
    return bool(pred())


class TestDeviceIdCollision:
    @pytest.mark.parametrize("same_client_id", [True, False])
    def test_two_agents_one_id(
        self,
        broker: Broker,
        tmp_path: Path,
        caplog: pytest.LogCaptureFixture,
        same_client_id: bool,
    ) -> None:
        device = f"twin-{int(same_client_id)}"
        kw = {"heartbeat_s": 0.5, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5}
        with caplog.at_level(logging.ERROR, logger="bridge.publish"):
            a = Publisher(broker.url, device, tmp_path / "a.db", **kw).start()
            assert a.wait_connected(10)
            b = Publisher(
                broker.url,
                device,
                tmp_path / "b.db",
                client_id=None if same_client_id else f"other-{device}",
                **kw,
            ).start()
            try:
                b.publish_alert(sample_alert(device))
                assert _wait(lambda: a.collision and b.collision, 30), (a.stats(), b.stats())
            finally:
                a.close(timeout_s=1)
                b.close(timeout_s=1)
        assert a.collision != b.collision  # each names the other instance
        assert any("device id collision" in r.getMessage() for r in caplog.records)

    def test_a_restart_is_not_a_collision(self, broker: Broker, tmp_path: Path) -> None:
        device = "restarted-1"
        first = Publisher(broker.url, device, tmp_path / "s.db", heartbeat_s=0.3).start()
        assert first.wait_connected(10)
        time.sleep(0.8)  # a heartbeat or two, retained
        first.close(timeout_s=2)
        again = Publisher(broker.url, device, tmp_path / "s.db", heartbeat_s=0.3).start()
        try:
            assert again.wait_connected(10)
            time.sleep(1.5)  # the retained status of the first run has arrived by now
            assert again.stats()["collision"] is None
        finally:
            again.close(timeout_s=1)
