"""Where the whole agent's time goes, by stage: what holds throughput below the classifier's.

A worker pinned to one CPU (BLAS on one thread, as ``throughput.py``) replays
the same records through :class:`edge.agent.Agent` at full speed in 0.1 s
chunks, with each stage's entry point wrapped by a timer that counts
*exclusive* CPU time of the thread (a stage called from inside another, like the resampler
inside the classifier's windows, is counted for itself, not twice). Stages
that a checkout does not have (beats, alarms, strips) are skipped. The rest
(``other``) is the agent's own bookkeeping, events, the replay's reading and
what the timers themselves cost (about 1 us a call).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks._common import PY, REPO, BundleRef, print_table

# (module, class, method, stage name)
_STAGES = [
    ("edge.replay", "ReplaySource", "chunks", "replay (read, chunk)"),
    ("edge.dsp", "Resampler", "push", "resample"),
    ("edge.dsp", "BandPass", "push", "band-pass"),
    ("edge.framer", "Framer", "push", "framing"),
    ("edge.quality", "QualityChecker", "check", "quality"),
    ("edge.classify", "Classifier", "classify_frame", "classifier (windows, extractor, head)"),
    ("edge.alerts", "AlertTracker", "update", "alert tracker"),
    ("edge.beats", "BeatDetector", "push", "beats"),
    ("edge.alarms", "Monitor", "push", "fast alarms"),
    ("edge.evidence", "Evidence", "push", "strips / live"),
    ("edge.measure", "Measurer", "push", "measurements (intervals)"),
    ("edge.delineate", "Delineator", "push", "delineation (P, QRS, T)"),
]


def _install(acc: dict[str, float]) -> None:
    import importlib

    stack: list[float] = []  # child time accumulated by the frame on top

    def wrap(fn, name):  # type: ignore[no-untyped-def]
        def timed(*a, **k):  # type: ignore[no-untyped-def]
            stack.append(0.0)
            t0 = time.thread_time()
            try:
                return fn(*a, **k)
            finally:
                dt = time.thread_time() - t0
                child = stack.pop()
                acc[name] = acc.get(name, 0.0) + dt - child
                if stack:
                    stack[-1] += dt

        return timed

    for mod, cls, meth, name in _STAGES:
        try:
            c = getattr(importlib.import_module(mod), cls)
        except (ImportError, AttributeError):
            continue
        if meth == "chunks":  # a generator: time each step of it
            orig = c.chunks

            def chunks(self, _orig=orig, _name=name):  # type: ignore[no-untyped-def]
                it = _orig(self)
                step = wrap(lambda: next(it, None), _name)
                while (ch := step()) is not None:
                    yield ch

            c.chunks = chunks
        elif hasattr(c, meth):
            setattr(c, meth, wrap(getattr(c, meth), name))


def _worker(argv: list[str]) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cpu", type=int, default=0)
    ap.add_argument("--bundle", required=True)
    ap.add_argument("records", nargs="+")
    a = ap.parse_args(argv)
    os.sched_setaffinity(0, {a.cpu})
    acc: dict[str, float] = {}
    _install(acc)
    from edge.agent import Agent
    from edge.bundle import load_bundle
    from edge.replay import ReplaySource

    agent = Agent(load_bundle(a.bundle))
    c0, t0 = time.thread_time(), time.perf_counter()
    agent.run(ReplaySource(a.records, speed=None, chunk_s=0.1))
    wall, cpu = time.perf_counter() - t0, time.thread_time() - c0
    n = agent.summary.frames
    print(json.dumps({"total_s": cpu, "wall_s": wall, "stages_s": acc, "frames": n}))


def measure(ref: BundleRef, records: list[Path]) -> dict:
    """``stages.{total_s, share.<stage>}``: each stage's exclusive share of the run's CPU time.

    The timers read the thread's CPU clock (``time.thread_time``), so the
    shares hold on a busy machine; ``total_s`` is the agent thread's CPU time.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    cmd = [PY, "-m", "benchmarks.stages", "--worker", "--bundle", str(ref.path)]
    proc = subprocess.run(
        cmd + [str(r) for r in records], cwd=REPO, env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RuntimeError(f"stages worker failed: {proc.stderr[-2000:]}")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    total = r["total_s"]
    share = {k: v / total for k, v in sorted(r["stages_s"].items(), key=lambda kv: -kv[1])}
    share["other"] = max(0.0, 1.0 - sum(share.values()))
    out = {"total_s": total, "wall_s": r["wall_s"], "frames": r["frames"], "share": share}
    out["records"] = len(records)
    print_table(
        "Where the agent's time goes (exclusive share of CPU time, one core, 0.1 s chunks)",
        ["stage", "share", "ms per frame"],
        [[k, f"{v:.1%}", 1000.0 * v * total / max(1, r["frames"])] for k, v in share.items()],
    )
    return out


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        _worker(sys.argv[2:])
