"""Fleet benchmark: N = 10, 100, 500 simulated agents on one loopback Mosquitto.

``python -m benchmarks.fleet [--devices 10 100 500] [--rate 1] [--seconds 30]``
runs :func:`bridge.fleet.run_fleet` once per N (agents as threads in worker
processes, each a real Publisher with its own sqlite spool), writes
``benchmarks/results/fleet.json`` and ``fleet.md`` and prints the table, with
the sizing rule derived from the broker's CPU per message.

Everything runs on one machine: agents, broker and subscriber share its cores,
so the agents' CPU is reported beside the broker's; the broker's own figure is
what sizes a real broker.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

from bridge.fleet import run_fleet

RESULTS = Path(__file__).resolve().parent / "results"


def messages_per_s(r: dict) -> float:
    """Messages the broker routed a second: alerts, heartbeats, frames (in and out once)."""
    n = r["devices"]
    return n * (r["rate_per_device"] + 1 / r["heartbeat_s"] + r["frame_hz"])


def kept_up(r: dict) -> bool:
    """Whether a run delivered its alerts as fast as they were offered (no backlog)."""
    return r["alerts_per_s"] >= 0.9 * r["devices"] * r["rate_per_device"]


def sizing(rows: list[dict], bed_msgs_per_s: float) -> dict[str, float]:
    """Beds one broker core serves at ``bed_msgs_per_s`` messages a bed, from the largest
    run that kept up (in a backlogged run fewer messages passed than were offered)."""
    ok = [r for r in rows if kept_up(r)] or rows
    big = max(ok, key=lambda r: r["devices"])
    cpu = (big["broker"]["cpu_pct"] or 0) / 100  # cores
    per_msg_s = cpu / messages_per_s(big)
    return {
        "from_devices": big["devices"],
        "broker_cpu_us_per_message": round(1e6 * per_msg_s, 1),
        "messages_per_core_s": round(1 / per_msg_s) if per_msg_s else 0,
        "bed_messages_per_s": bed_msgs_per_s,
        "beds_per_core": round(1 / (per_msg_s * bed_msgs_per_s)) if per_msg_s else 0,
    }


def table(rows: list[dict]) -> str:
    head = (
        "| devices | alerts | lost | dup | alerts/s end to end | latency p50 / p99 ms "
        "| broker CPU % / RSS MB | subscriber CPU % / RSS MB | agents CPU % |\n"
        "|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in rows:
        lat, b, s = r["latency_ms"], r["broker"], r["subscriber"]
        lines.append(
            f"| {r['devices']} | {r['alerts']} | {r['lost']} | {r['duplicates']} "
            f"| {r['alerts_per_s']:.0f} | {lat['p50']:.1f} / {lat['p99']:.1f} "
            f"| {b['cpu_pct']:.1f} / {b['rss_mb']:.0f} | {s['cpu_pct']:.1f} / {s['rss_mb']:.0f} "
            f"| {r['agents_cpu_pct']:.0f} |"
        )
    return head + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.fleet", description=__doc__)
    ap.add_argument("--devices", type=int, nargs="+", default=[10, 100, 500])
    ap.add_argument("--rate", type=float, default=1.0, help="alerts/s per device")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--heartbeat-s", type=float, default=30.0)
    ap.add_argument("--frame-hz", type=float, default=0.1, help="frame scores/s per device")
    ap.add_argument(
        "--bed-msgs-per-s",
        type=float,
        default=0.2,
        help="a bed's load for the sizing rule (frames every 10 s, heartbeat 30 s, alerts)",
    )
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    rows = []
    for n in args.devices:
        r = run_fleet(
            n, args.rate, args.seconds, heartbeat_s=args.heartbeat_s, frame_hz=args.frame_hz
        )
        print(json.dumps(r), flush=True)
        rows.append(r)
    size = sizing(rows, args.bed_msgs_per_s)
    doc = {
        "command": "python -m benchmarks.fleet " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": f"{platform.machine()}, {platform.system()}, Python {platform.python_version()}",
        "runs": rows,
        "sizing": size,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "fleet.json").write_text(json.dumps(doc, indent=2) + "\n")
    md = table(rows) + (
        f"\nBroker CPU per message (the {size['from_devices']}-device run, the largest that "
        f"kept up): {size['broker_cpu_us_per_message']} us "
        f"(~{size['messages_per_core_s']} messages/s per core); at "
        f"{size['bed_messages_per_s']} messages/s a bed: ~{size['beds_per_core']} beds per core.\n"
    )
    (args.out / "fleet.md").write_text(md)
    print(md)
    return 0 if all(r["lost"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
