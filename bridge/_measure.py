"""Measure the publisher: alerts per second (spool included) and recovery after a restart.

``python -m bridge._measure [--n 2000]`` starts a loopback Mosquitto, prints a
JSON object; :func:`measure_throughput` and :func:`measure_recovery` are what
a benchmark imports.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from bridge.publish import Publisher
from bridge.schema import encode, sample_alert
from bridge.testing import Broker, start_broker


def _subscriber(broker: Broker, topic: str, client_id: str):  # type: ignore[no-untyped-def]
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    got: list[tuple[float, bytes]] = []
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    c.reconnect_delay_set(1, 1)
    c.on_message = lambda cl, u, m: got.append((time.perf_counter(), m.payload))
    c.on_connect = lambda cl, u, f, rc, p: cl.subscribe(topic, qos=1)
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    time.sleep(0.3)
    return c, got


def measure_throughput(broker: Broker, workdir: Path, n: int = 2000) -> dict[str, float]:
    """Publish ``n`` prebuilt alerts as fast as possible; time until all are acknowledged."""
    device = "bench-1"
    alerts = [sample_alert(device) for _ in range(n)]
    sub, got = _subscriber(broker, f"ecg/{device}/alerts", "bench-sub")
    pub = Publisher(broker.url, device, workdir / "bench-spool.db").start()
    pub.wait_connected(10)
    t0 = time.perf_counter()
    for a in alerts:
        pub.publish_alert(a)
    t_spooled = time.perf_counter()
    assert pub.flush(120), pub.stats()
    t_acked = time.perf_counter()
    deadline = time.monotonic() + 30
    while len(got) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    t_received = got[-1][0] if got else float("nan")
    pub.close()
    sub.disconnect()
    sub.loop_stop()
    return {
        "alerts": n,
        "payload_bytes": len(encode(alerts[0].to_json())),
        "spool_ms_per_alert": (t_spooled - t0) / n * 1e3,
        "acked_alerts_per_s": n / (t_acked - t0),
        "received_alerts_per_s": n / (t_received - t0),
        "received": len(got),
    }


def measure_recovery(
    broker: Broker, workdir: Path, down_s: float = 2.0, reconnect_max_s: float = 5.0
) -> dict[str, float]:
    """Stop the broker, spool an alert, restart it after ``down_s``.

    ``recovery_acked_s``: from the broker's port answering to the alert's PUBACK
    (the publisher's reconnect backoff is most of it); ``recovery_delivered_s``:
    to its arrival at a persistent subscriber (which reconnects every 1 s).
    """
    device = "bench-2"
    sub, got = _subscriber(broker, f"ecg/{device}/alerts", "bench-sub-2")
    pub = Publisher(
        broker.url, device, workdir / "bench-spool-2.db", reconnect_max_s=reconnect_max_s
    ).start()
    pub.wait_connected(10)
    broker.stop()
    time.sleep(0.2)
    pub.publish_alert(sample_alert(device))
    time.sleep(down_s)
    t_up = time.perf_counter()
    broker.start()
    t_port = time.perf_counter()
    deadline = time.monotonic() + 60
    t_acked = float("nan")
    while (not got or t_acked != t_acked) and time.monotonic() < deadline:
        if t_acked != t_acked and pub.stats()["pending"] == 0:
            t_acked = time.perf_counter()
        time.sleep(0.002)
    t_got = got[0][0] if got else float("nan")
    acked = pub.flush(10)
    pub.close()
    sub.disconnect()
    sub.loop_stop()
    return {
        "down_s": down_s,
        "broker_start_s": t_port - t_up,
        "recovery_acked_s": t_acked - t_port,
        "recovery_delivered_s": t_got - t_port,
        "acked": acked,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bridge._measure")
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--down", type=float, nargs="*", default=[2.0, 10.0])
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        broker = start_broker(Path(tmp) / "broker")
        try:
            out = {"throughput": measure_throughput(broker, Path(tmp), args.n)}
            out["recovery"] = [measure_recovery(broker, Path(tmp), d) for d in args.down]
            out["broker"] = broker.kind
        finally:
            broker.stop()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
