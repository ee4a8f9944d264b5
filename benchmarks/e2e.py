"""End to end: last sample of a frame into the agent -> alert delivered by a loopback Mosquitto.

``ecg-edge replay --speed max --broker`` runs as a subprocess; a paho
subscriber (QoS 1) on the same broker stamps each alert on arrival. The
figure is arrival wall time minus the alert's ``emitted_at`` (wall time when
the agent made the alert; millisecond resolution, truncated, so figures read
up to 1 ms high) plus its ``latency_ms`` (from the chunk holding the frame's
last sample entering the agent to that moment). ``frame.end_utc`` is on the
stream's clock (sample 0's time plus samples / fs), which a replay at full
speed runs ahead of the wall clock.
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

import numpy as np

from benchmarks._common import PY, REPO, BundleRef, pct, print_table, shown, spread


def _utc_s(s: str) -> float:
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


def _one_run(ref: BundleRef, records: list[Path]) -> tuple[list[float], list[float], int]:
    """One replay through a fresh broker: (end-to-end ms, agent-side ms, alerts sent)."""
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
            cmd += ["--spool", str(work / "spool.db"), "--allow-unsigned"]  # measured bundles
            proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
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
        e2e.append((t - _utc_s(p["emitted_at"])) * 1000.0 + p["latency_ms"])
    return e2e, agent_ms, n_sent


def measure(ref: BundleRef, records: list[Path], repeats: int = 1, min_alerts: int = 5) -> dict:
    """``end_to_end_ms.{p50,p99}``: median over repeats (+ spread, agent-side latency, counts)."""
    runs = []
    for _ in range(repeats):
        e2e, agent_ms, n_sent = _one_run(ref, records)
        if len(e2e) < min_alerts:
            raise RuntimeError(f"only {len(e2e)} alerts reached the broker (sent {n_sent})")
        runs.append((pct(e2e), pct(agent_ms), n_sent, len(e2e)))
    qs = ("p50", "p90", "p99")
    out: dict = {q: float(np.median([r[0][q] for r in runs])) for q in qs}
    out.update(
        spread_p50=spread([r[0]["p50"] for r in runs]),
        spread_p99=spread([r[0]["p99"] for r in runs]),
        alerts_sent=sum(r[2] for r in runs),
        alerts_received=sum(r[3] for r in runs),
        agent_to_publish_ms={q: float(np.median([r[1][q] for r in runs])) for q in qs},
        records=len(records),
        repeats=repeats,
        bundle=shown(ref.path),
    )
    n_sent = out["alerts_sent"]
    print_table(
        "End to end (ms): frame's last sample in -> alert at a loopback Mosquitto",
        ["path", "p50", "p90", "p99", "n"],
        [
            ["agent -> publisher", *out["agent_to_publish_ms"].values(), n_sent],
            ["agent -> broker -> subscriber", out["p50"], out["p90"], out["p99"], n_sent],
        ],
    )
    return out
