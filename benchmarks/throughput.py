"""Throughput: signal seconds per CPU second through the whole agent, pinned to one core.

A worker process (``python -m benchmarks.throughput --worker``) pins itself
to one CPU, loads the bundle, then replays records at full speed through
:class:`edge.agent.Agent` (dsp, framing, quality, classification, alerts;
no broker) at the default hop and the replay's default 0.1 s chunks (as a
serial device delivers them; 1 s chunks are measured beside, to show the
per-chunk overhead) and reports its CPU time
(``time.process_time``) and wall time. One worker alone gives the one-core
figure; two at once on CPUs 0 and 1 give the scaling. The same run without
the measurements (``--without-measurements``: no delineation, no intervals)
gives what they cost (``measurements_share``; the goal is at most 20 %).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks._common import PY, REPO, BundleRef, print_table, shown, spread


class _NoMeasurer:
    """Stands in for edge.measure.Measurer: nothing delineated, no measurements."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        pass

    def push(self, *args, **kwargs) -> int:  # type: ignore[no-untyped-def]
        return 0

    def restart(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        pass

    def span(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        return None

    def recent(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        return None


def _worker(argv: list[str]) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cpu", type=int, required=True)
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--chunk-s", type=float, default=0.1)
    ap.add_argument("--without-measurements", action="store_true")
    ap.add_argument("records", nargs="+")
    a = ap.parse_args(argv)
    os.sched_setaffinity(0, {a.cpu})
    if a.without_measurements:
        import edge.agent

        edge.agent.Measurer = _NoMeasurer  # type: ignore[misc, assignment]
    from edge.agent import Agent
    from edge.bundle import load_bundle
    from edge.records import read_header
    from edge.replay import ReplaySource

    bundle = load_bundle(a.bundle)
    signal_s = 0.0
    for r in a.records:
        h = read_header(r)
        signal_s += h.n_samples / h.fs
    counts = {"frame": 0, "alert": 0, "quality": 0}

    def sink(ev: dict) -> None:
        if ev["type"] in counts:
            counts[ev["type"]] += 1

    agent = Agent(bundle, sink=sink)
    c0, w0 = time.process_time(), time.perf_counter()
    agent.run(ReplaySource(a.records, speed=None, chunk_s=a.chunk_s))
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    print(json.dumps({"signal_s": signal_s, "cpu_s": cpu, "wall_s": wall, **counts}))


def _spawn(
    cpu: int, ref: BundleRef, records: list[Path], chunk_s: float = 0.1, measure: bool = True
) -> subprocess.Popen:
    cmd = [
        PY,
        "-m",
        "benchmarks.throughput",
        "--worker",
        "--cpu",
        str(cpu),
        "--chunk-s",
        str(chunk_s),
    ]
    cmd += [] if measure else ["--without-measurements"]
    cmd += ["--bundle", str(ref.path), *map(str, records)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True, env=env)


def _collect(procs: list[subprocess.Popen]) -> list[dict]:
    outs = []
    for p in procs:
        stdout, _ = p.communicate(timeout=900)
        if p.returncode != 0:
            raise RuntimeError("throughput worker failed")
        outs.append(json.loads(stdout.strip().splitlines()[-1]))
    return outs


def measure(ref: BundleRef, records: list[Path], repeats: int) -> dict:
    """``realtime_factor_one_core``, ``streams_per_core`` and the two-process scaling."""
    n_cpu = len(os.sched_getaffinity(0))
    one_cpu, one_wall, two_wall, big_chunks, runs, bare = [], [], [], [], [], []
    for _ in range(repeats):
        (r,) = _collect([_spawn(0, ref, records)])
        one_cpu.append(r["signal_s"] / r["cpu_s"])
        one_wall.append(r["signal_s"] / r["wall_s"])
        runs.append(r)
        (rb,) = _collect([_spawn(0, ref, records, chunk_s=1.0)])
        big_chunks.append(rb["signal_s"] / rb["cpu_s"])
        (rn,) = _collect([_spawn(0, ref, records, measure=False)])
        bare.append(rn["signal_s"] / rn["cpu_s"])
        if n_cpu >= 2:
            rs = _collect([_spawn(0, ref, records), _spawn(1, ref, records)])
            two_wall.append(sum(x["signal_s"] for x in rs) / max(x["wall_s"] for x in rs))
    rt = float(np.median(one_cpu))
    frames_per_signal_s = runs[0]["frame"] / runs[0]["signal_s"]
    out = {
        "realtime_factor_one_core": rt,
        "realtime_factor_one_core_spread": spread(one_cpu),
        "realtime_factor_one_core_wall": float(np.median(one_wall)),
        "streams_per_core": rt,
        "realtime_factor_one_core_1s_chunks": float(np.median(big_chunks)),
        "realtime_factor_one_core_1s_chunks_spread": spread(big_chunks),
        "realtime_factor_one_core_without_measurements": float(np.median(bare)),
        # the share of the agent's time that delineation and measurements take
        "measurements_share": 1.0 - rt / float(np.median(bare)),
        "chunk_s": 0.1,
        "frames_per_signal_s": frames_per_signal_s,
        "signal_s": runs[0]["signal_s"],
        "frames": runs[0]["frame"],
        "alerts": runs[0]["alert"],
        "records": len(records),
        "repeats": repeats,
        "bundle": shown(ref.path),
        "hop_s": 10.0,
    }
    rows = [["1 process, CPU 0", rt, float(np.median(one_wall)), rt]]
    rows.append(["1 process, CPU 0, 1 s chunks", float(np.median(big_chunks)), "", ""])
    rows.append(["1 process, CPU 0, no measurements", float(np.median(bare)), "", ""])
    if two_wall:
        two = float(np.median(two_wall))
        out["two_process"] = {
            "realtime_factor_wall": two,
            "spread": spread(two_wall),
            "scaling_vs_one": two / float(np.median(one_wall)),
        }
        rows.append(["2 processes, CPUs 0+1", "", two, ""])
    print_table(
        "Throughput (signal s per s, hop 10 s, whole agent, no broker)",
        ["setup", "per CPU s", "per wall s", "500 Hz streams/core"],
        rows,
    )
    return out


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        _worker(sys.argv[2:])
