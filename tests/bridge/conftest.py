"""Real brokers: Mosquitto on a free loopback port when installed, else amqtt."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from bridge.testing import Broker, find_mosquitto, start_broker


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """One loopback broker for the session (tests that restart it make their own)."""
    b = start_broker(tmp_path_factory.mktemp("broker"))
    yield b
    b.stop()


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Broker]:
    """A broker this test may stop and restart (Mosquitto with persistence)."""
    if find_mosquitto() is None:
        pytest.skip("needs mosquitto (persistence across restarts); amqtt has none")
    b = start_broker(tmp_path / "broker")
    yield b
    b.stop()


class Collector:
    """A paho subscriber that records (topic, payload) as they arrive."""

    def __init__(
        self, port: int, topic: str, *, client_id: str | None = None, persistent: bool = False
    ) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"collector-{uuid.uuid4().hex[:8]}",
            clean_session=not persistent,
        )
        self.client.reconnect_delay_set(1, 1)
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload))
        subscribed = []
        self.client.on_subscribe = lambda *a: subscribed.append(1)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        deadline = time.monotonic() + 5
        while not subscribed and time.monotonic() < deadline:
            time.sleep(0.02)

    def wait_for(self, pred: Callable[[list[tuple[str, bytes]]], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred(self.messages):
                return True
            time.sleep(0.05)
        return pred(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def collector_factory() -> Iterator[Callable[..., Collector]]:
    made: list[Collector] = []

    def make(port: int, topic: str, **kw: object) -> Collector:
        c = Collector(port, topic, **kw)  # type: ignore[arg-type]
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()
