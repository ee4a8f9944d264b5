"""A fleet you can run here: N simulated agents, one broker, one subscriber, measured.

``ecg-bridge fleet --devices N --rate R --seconds S`` starts a loopback
Mosquitto (or uses ``--broker``), one subscriber process (paho, persistent
session, each message validated and de-duplicated by :class:`~bridge.listen.Listener`,
as a central station does) and worker processes that host the agents: each
agent is a real :class:`~bridge.publish.Publisher` with its own sqlite spool,
client id, heartbeat and last will, publishing ``R`` alerts a second (and
frame scores at QoS 0 with ``--frame-hz``). Alert ids and send times are
logged by the workers, arrival times by the subscriber; the parent samples
broker and subscriber CPU and memory from ``/proc`` (Linux).

Result (a dict, printed as JSON): ``alerts``, ``received``, ``lost``,
``duplicates``, ``alerts_per_s`` (end to end: first send to last arrival),
``latency_ms`` (``publish_alert`` call to arrival at the subscriber: p50,
p99, max), ``broker`` and ``subscriber`` (``cpu_pct`` of one core over the
run, ``rss_mb`` peak), ``agents_cpu_pct`` (all workers together).
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bridge.errors import EcgEdgeError, PublishError, invalid

AGENTS_PER_WORKER = 125
_CLK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def proc_sample(pid: int) -> tuple[float, float] | None:
    """(CPU seconds so far, RSS in MB) of process ``pid`` from /proc; None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    cpu = (int(fields[11]) + int(fields[12])) / _CLK
    rss = next((int(x.split()[1]) for x in status.splitlines() if x.startswith("VmRSS:")), 0)
    return cpu, rss / 1024


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation; nan when empty."""
    if not values:
        return math.nan
    xs = sorted(values)
    k = (len(xs) - 1) * q / 100
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


# ---- the worker process: agents -------------------------------------------------


def _worker(args: argparse.Namespace) -> int:
    from bridge.publish import Publisher
    from bridge.schema import FrameScores, sample_alert

    devices = [f"{args.prefix}-{i:04d}" for i in range(args.first, args.first + args.count)]
    workdir = Path(args.workdir)
    pubs = {
        d: Publisher(
            args.broker,
            d,
            workdir / f"spool-{d}.db",
            heartbeat_s=args.heartbeat_s,
            publish_frames=args.frame_hz > 0,
        ).start()
        for d in devices
    }
    for p in pubs.values():
        p.wait_connected(60)
    print("ready", flush=True)
    sys.stdin.readline()  # the parent says go (all workers and the subscriber are up)
    rng = random.Random(args.first)
    t0 = time.monotonic()
    n_alerts = round(args.seconds * args.rate)
    due: list[tuple[float, int, str, str]] = []
    for d in devices:
        if n_alerts:
            heapq.heappush(due, (t0 + rng.uniform(0, 1 / args.rate), 0, "alert", d))
        if args.frame_hz > 0:
            heapq.heappush(due, (t0 + rng.uniform(0, 1 / args.frame_hz), 0, "frame", d))
    sent: list[tuple[str, float]] = []
    alert = sample_alert(devices[0])
    end = t0 + args.seconds
    while due:
        at, k, kind, d = heapq.heappop(due)
        if kind == "frame" and at > end:
            continue
        delay = at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if kind == "alert":
            a = type(alert)(**{**alert.__dict__, "device_id": d, "alert_id": os.urandom(16).hex()})
            sent.append((a.alert_id, time.time()))
            pubs[d].publish_alert(a)
            if k + 1 < n_alerts:
                heapq.heappush(due, (at + 1 / args.rate, k + 1, kind, d))
        else:
            pubs[d].publish_frame(FrameScores(d, alert.frame, {"164889003": 0.1}))
            heapq.heappush(due, (at + 1 / args.frame_hz, k + 1, kind, d))
    flushed = all(p.flush(120) for p in pubs.values())
    stats = [p.stats() for p in pubs.values()]
    for p in pubs.values():
        p.close(timeout_s=2)
    out = {
        "sent": sent,
        "flushed": flushed,
        "reconnects": sum(s["reconnects"] for s in stats),
        "frames_sent": sum(s["frames_sent"] for s in stats),
    }
    Path(args.result).write_text(json.dumps(out))
    return 0


# ---- the subscriber process ------------------------------------------------------


def _subscriber(args: argparse.Namespace) -> int:

    from bridge._conn import connect_blocking, make_client, parse_broker_url
    from bridge.listen import Listener

    broker = parse_broker_url(args.broker)
    listener = Listener(dedup_size=1_000_000)
    got: list[tuple[str, float]] = []
    lock = threading.Lock()
    done = threading.Event()

    def on_message(client, userdata, msg):  # type: ignore[no-untyped-def]
        now = time.time()
        item = listener.handle(msg.topic, msg.payload)
        if item is not None and item.kind == "alert":
            with lock:
                got.append((item.message.alert_id, now))
                if len(got) >= args.expect:
                    done.set()

    client = make_client(broker, "ecg-fleet-station", clean_session=False)
    client.on_message = on_message
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(
        [("ecg/+/alerts", 1), ("ecg/+/status", 1), ("ecg/+/frames", 0)]
    )
    connect_blocking(client, broker)
    client.loop_start()
    time.sleep(0.5)
    print("ready", flush=True)
    done.wait(args.timeout)
    client.disconnect()
    client.loop_stop()
    Path(args.result).write_text(json.dumps({"got": got, "counts": listener.counts}))
    return 0 if done.is_set() else 1


# ---- the parent ------------------------------------------------------------------


def _spawn(argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "bridge.fleet", *argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _wait_ready(proc: subprocess.Popen, what: str, timeout_s: float) -> None:
    assert proc.stdout is not None
    box: list[str] = []
    t = threading.Thread(target=lambda: box.append(proc.stdout.readline()), daemon=True)
    t.start()
    t.join(timeout_s)
    if not box or box[0].strip() != "ready":
        proc.kill()
        raise EcgEdgeError(f"{what} did not start (exit {proc.poll()})")


def run_fleet(
    devices: int,
    rate: float,
    seconds: float,
    *,
    broker_url: str | None = None,
    heartbeat_s: float = 30.0,
    frame_hz: float = 0.0,
    workdir: Path | None = None,
    per_worker: int = AGENTS_PER_WORKER,
) -> dict[str, Any]:
    """Run ``devices`` agents for ``seconds`` at ``rate`` alerts/s each; the figures.

    Bounded: at most 2000 devices, 600 s; one worker process per ``per_worker``
    agents (threads). A broker is started on loopback unless ``broker_url``.
    """
    from bridge.testing import find_mosquitto, start_broker

    if not 1 <= devices <= 2000:
        raise invalid("devices", "1-2000", devices)
    if not 0 < seconds <= 600:
        raise invalid("seconds", "a number of seconds in (0, 600]", seconds)
    if not 0 < rate <= 100:
        raise invalid("rate", "alerts per second per device in (0, 100]", rate)
    tmp = tempfile.TemporaryDirectory(prefix="ecg-fleet-") if workdir is None else None
    work = Path(tmp.name if tmp else workdir)  # type: ignore[arg-type]
    broker = None
    if broker_url is None and find_mosquitto() is None:
        raise PublishError("the fleet needs mosquitto installed, or --broker URL")
    if broker_url is None:
        broker = start_broker(work / "broker", kind="mosquitto")
        broker_url = broker.url
    n_alerts = devices * round(seconds * rate)
    procs: list[subprocess.Popen] = []
    try:
        sub = _spawn(
            ["subscriber", "--broker", broker_url, "--expect", str(n_alerts),
             "--timeout", str(seconds + 180), "--result", str(work / "sub.json")]
        )  # fmt: skip
        procs.append(sub)
        _wait_ready(sub, "the subscriber", 60)
        workers = []
        for first in range(0, devices, per_worker):
            w = _spawn(
                ["worker", "--broker", broker_url, "--workdir", str(work),
                 "--first", str(first), "--count", str(min(per_worker, devices - first)),
                 "--rate", str(rate), "--seconds", str(seconds),
                 "--heartbeat-s", str(heartbeat_s), "--frame-hz", str(frame_hz),
                 "--result", str(work / f"worker-{first}.json")]
            )  # fmt: skip
            workers.append(w)
            procs.append(w)
        for w in workers:
            _wait_ready(w, "an agent worker", 120)
        pids = {"broker": broker.proc.pid if broker and broker.proc else None, "sub": sub.pid}
        start = {k: proc_sample(p) for k, p in pids.items() if p}
        wstart = {w.pid: proc_sample(w.pid) for w in workers}
        peak = {k: 0.0 for k in pids}
        t0 = time.monotonic()
        for w in workers:
            assert w.stdin is not None
            w.stdin.write("go\n")
            w.stdin.flush()
        wend: dict[int, tuple[float, float] | None] = {}
        end: dict[str, tuple[float, float] | None] = {}
        while sub.poll() is None or any(w.poll() is None for w in workers):
            for k, p in pids.items():
                s = proc_sample(p) if p else None
                if s:
                    peak[k] = max(peak[k], s[1])
                    end[k] = s
            for w in workers:
                s = proc_sample(w.pid)
                if s:
                    wend[w.pid] = s
            if time.monotonic() - t0 > seconds + 240:
                break
            time.sleep(0.25)
        wall = time.monotonic() - t0
        for p in procs:
            p.wait(30)
        sent: dict[str, float] = {}
        reconnects = 0
        flushed = True
        for first in range(0, devices, per_worker):
            res = json.loads((work / f"worker-{first}.json").read_text())
            sent.update(dict(res["sent"]))
            reconnects += res["reconnects"]
            flushed &= res["flushed"]
        subres = json.loads((work / "sub.json").read_text())
        got = dict(subres["got"])
        lat = [1000 * (got[a] - t) for a, t in sent.items() if a in got]
        first_send = min(sent.values()) if sent else 0.0
        last_recv = max(got.values()) if got else 0.0

        def cpu_pct(a, b) -> float | None:  # type: ignore[no-untyped-def]
            return round(100 * (b[0] - a[0]) / wall, 1) if a and b else None

        agents_cpu = sum((wend[p][0] - wstart[p][0]) for p in wend if wstart.get(p) and wend.get(p))
        return {
            "devices": devices,
            "rate_per_device": rate,
            "seconds": seconds,
            "heartbeat_s": heartbeat_s,
            "frame_hz": frame_hz,
            "alerts": len(sent),
            "received": len(set(got) & set(sent)),
            "lost": len(set(sent) - set(got)),
            "duplicates": subres["counts"]["duplicates"],
            "rejected": subres["counts"]["rejected"],
            "flushed": flushed,
            "reconnects": reconnects,
            "alerts_per_s": round(len(got) / max(last_recv - first_send, 1e-9), 1),
            "latency_ms": {
                "p50": round(percentile(lat, 50), 2) if lat else None,
                "p99": round(percentile(lat, 99), 2) if lat else None,
                "max": round(max(lat), 2) if lat else None,
            },
            "broker": {
                "cpu_pct": cpu_pct(start.get("broker"), end.get("broker")),
                "rss_mb": round(peak["broker"], 1),
            },
            "subscriber": {
                "cpu_pct": cpu_pct(start.get("sub"), end.get("sub")),
                "rss_mb": round(peak["sub"], 1),
            },
            "agents_cpu_pct": round(100 * agents_cpu / wall, 1),
            "wall_s": round(wall, 1),
        }
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        if broker is not None:
            broker.stop()
        if tmp is not None:
            tmp.cleanup()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bridge.fleet")
    sp = ap.add_subparsers(dest="role", required=True)
    w = sp.add_parser("worker")
    for name in ("--broker", "--workdir", "--result"):
        w.add_argument(name, required=True)
    w.add_argument("--prefix", default="bed")
    w.add_argument("--first", type=int, required=True)
    w.add_argument("--count", type=int, required=True)
    w.add_argument("--rate", type=float, required=True)
    w.add_argument("--seconds", type=float, required=True)
    w.add_argument("--heartbeat-s", type=float, default=30.0)
    w.add_argument("--frame-hz", type=float, default=0.0)
    s = sp.add_parser("subscriber")
    s.add_argument("--broker", required=True)
    s.add_argument("--result", required=True)
    s.add_argument("--expect", type=int, required=True)
    s.add_argument("--timeout", type=float, required=True)
    args = ap.parse_args(argv)
    return _worker(args) if args.role == "worker" else _subscriber(args)


if __name__ == "__main__":
    sys.exit(main())
