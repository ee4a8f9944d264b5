"""End to end: last sample of a frame into the agent -> alert delivered by a loopback Mosquitto.

``ecg-edge replay --speed max --broker`` runs as a subprocess; a paho
subscriber (QoS 1) on the same broker stamps each alert on arrival. The
figure is arrival wall time minus the alert's ``frame.end_utc`` (the wall
time the chunk holding the frame's last sample entered the agent; it has
millisecond resolution, truncated, so figures read up to 1 ms high).
Mosquitto sends the PUBACK to the publisher and the PUBLISH to the
subscriber from the same handler, so arrival at the subscriber is when the
broker has the alert. The agent's own ``latency_ms`` (to handing the alert
to the publisher's spool) is reported beside it.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from benchmarks._common import PY, BundleRef, pct, print_table


def _utc_s(s: str) -> float:
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


def measure(ref: BundleRef, records: list[Path], min_alerts: int = 5) -> dict:
    """``end_to_end_ms.{p50,p99}`` (+ agent-side latency, counts)."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from bridge.testing import start_broker

    with tempfile.TemporaryDirectory(prefix="ecg-bench-e2e-") as tmp:
        work = Path(tmp)
        broker = start_broker(work / "broker")
        got: list[tuple[float, bytes]] = []
        sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-sub")
        sub.on_message = lambda c, u, m: got.append((time.time(), m.payload))
        sub.on_connect = lambda c, u, f, rc, p: c.subscribe("ecg/bench/alerts", qos=1)
        try:
            sub.connect("127.0.0.1", broker.port)
            sub.loop_start()
            time.sleep(0.5)
            exe = str(Path(PY).parent / "ecg-edge")
            cmd = [exe, "replay", *map(str, records), "--speed", "max", "--json"]
            cmd += ["--bundle", str(ref.path), "--broker", broker.url, "--device-id", "bench"]
            cmd += ["--spool", str(work / "spool.db")]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            if proc.returncode != 0:
                raise RuntimeError(f"ecg-edge replay failed: {proc.stderr[-2000:]}")
            n_sent = 0
            agent_ms = []
            for line in proc.stdout.splitlines():
                ev = json.loads(line)
                if ev.get("type") == "alert":
                    n_sent += 1
                    agent_ms.append(ev["latency_ms"])
            deadline = time.time() + 10
            while len(got) < n_sent and time.time() < deadline:
                time.sleep(0.05)
        finally:
            sub.loop_stop()
            sub.disconnect()
            broker.stop()
    e2e = []
    for t, payload in got:
        p = json.loads(payload)
        e2e.append((t - _utc_s(p["frame"]["end_utc"])) * 1000.0)
    if len(e2e) < min_alerts:
        raise RuntimeError(f"only {len(e2e)} alerts reached the broker (sent {n_sent})")
    out = pct(e2e)
    out.update(
        alerts_sent=n_sent,
        alerts_received=len(e2e),
        agent_to_publish_ms=pct(agent_ms),
        records=len(records),
        bundle=str(ref.path),
    )
    print_table(
        "End to end (ms): frame's last sample in -> alert at a loopback Mosquitto",
        ["path", "p50", "p90", "p99", "n"],
        [
            ["agent -> publisher", *out["agent_to_publish_ms"].values(), n_sent],
            ["agent -> broker -> subscriber", out["p50"], out["p90"], out["p99"], len(e2e)],
        ],
    )
    return out
