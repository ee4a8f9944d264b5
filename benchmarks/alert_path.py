"""Where an alert's latency goes: each stage's time on the chunks that complete a frame.

``ecg-edge replay --speed max --broker`` runs in this process against a
loopback Mosquitto (as ``e2e.py``, but in-process so that stages can be
timed), with each stage's entry point wrapped by a wall-clock timer
(inclusive: a stage called from inside another is counted in both). Only the
chunks that complete a frame are kept, the ones an alert waits for; per stage,
the p50, p90 and p99 of its time on those chunks (0 where it did not run),
and ``chunk``: the whole chunk. ``alert`` is the making of the alert payload
and everything ``_emit`` does with it (spool commit with fsync, hand-over to
the sender, then the strip); the alert's own ``latency_ms`` is stamped when
its payload is made, before the commit.

Run alone: ``python -m benchmarks.alert_path [--records N]`` (prints a table,
writes ``alert_path.json``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._common import (
    REPO,
    BundleRef,
    machine,
    print_table,
    resolve_bundles,
    sample_records,
    shown,
)

# (module, class, method, stage): the work on the path of a frame's last chunk
_STAGES = [
    ("edge.alarms", "Monitor", "push", "beats, fast alarms, lead check"),
    ("edge.alarms", "Monitor", "_check_leads", "  of which the 10-s lead check"),
    ("edge.quality", "QualityChecker", "check", "frame quality check"),
    ("edge.classify", "Classifier", "classify_frame", "classifier"),
    ("edge.agent", "Agent", "_frame_event", "frame event (with its measurements)"),
    ("edge.measure", "Measurer", "push", "delineation (after the frame)"),
    ("bridge.publish", "Publisher", "publish_alert", "alert: spool commit (fsync)"),
    ("bridge.publish", "Publisher", "wait_handed", "alert: hand-over to the sender"),
    ("edge.agent", "Agent", "_alert_event", "alert: made and emitted, strip included"),
]


_QS = (("p50", 50), ("p90", 90), ("p99", 99))


def _install(cur: dict[str, float]) -> None:
    import importlib

    for mod, cls, meth, name in _STAGES:
        klass = getattr(importlib.import_module(mod), cls)
        fn = getattr(klass, meth)

        def timed(*a, _fn=fn, _name=name, **k):  # type: ignore[no-untyped-def]
            t0 = time.perf_counter()
            try:
                return _fn(*a, **k)
            finally:
                cur[_name] = cur.get(_name, 0.0) + (time.perf_counter() - t0) * 1000.0

        setattr(klass, meth, timed)


def measure(ref: BundleRef, records: list[Path]) -> dict:
    """``alert_path.{chunks, stages.<stage>.{p50,p90,p99}}`` over the frame-completing chunks."""
    import edge.agent
    from bridge._cli import run_app
    from bridge.testing import start_broker
    from edge.cli import app

    cur: dict[str, float] = {}
    rows: list[dict[str, float]] = []
    _install(cur)
    agent_cls = edge.agent.Agent
    real_process, real_frames = agent_cls.process, agent_cls._frames

    def frames(self, fr, raws, chunk):  # type: ignore[no-untyped-def]
        if fr:
            cur["_frame"] = 1.0
        return real_frames(self, fr, raws, chunk)

    def process(self, chunk):  # type: ignore[no-untyped-def]
        cur.clear()
        t0 = time.perf_counter()
        try:
            return real_process(self, chunk)
        finally:
            if cur.pop("_frame", 0.0):
                rows.append({**cur, "chunk": (time.perf_counter() - t0) * 1000.0})

    agent_cls.process, agent_cls._frames = process, frames
    try:
        with tempfile.TemporaryDirectory(prefix="ecg-bench-path-") as tmp:
            broker = start_broker(Path(tmp) / "broker")
            argv = ["replay", *map(str, records), "--speed", "max", "--json"]
            argv += ["--bundle", str(ref.path), "--broker", broker.url, "--device-id", "path"]
            argv += ["--spool", str(Path(tmp) / "spool.db"), "--allow-unsigned"]
            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    rc = run_app(app, argv)
            finally:
                broker.stop()
            if rc != 0:
                raise RuntimeError(f"ecg-edge replay exited {rc}")
    finally:
        agent_cls.process, agent_cls._frames = real_process, real_frames
    names = [s[3] for s in _STAGES] + ["chunk"]
    stages = {
        n: {q: float(np.percentile([r.get(n, 0.0) for r in rows], p)) for q, p in _QS}
        for n in names
    }
    print_table(
        "Where an alert waits: per stage, ms on the chunks that complete a frame",
        ["stage", "p50", "p90", "p99"],
        [[n, *stages[n].values()] for n in names],
    )
    return {
        "chunks": len(rows),
        "records": len(records),
        "bundle": shown(ref.path),
        "stages": stages,
    }


if __name__ == "__main__":
    from benchmarks.__main__ import DATA

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=0, help="the first N records (0: all)")
    ap.add_argument("--cnn-bundle", default=str(REPO / "edge" / "default_bundle"))
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    refs = resolve_bundles(a.cnn_bundle, None, a.out.resolve())
    recs = sorted(DATA.glob("*.hea")) if DATA.is_dir() else sample_records()
    recs = recs[: a.records] if a.records else recs
    doc = {"machine": machine(), "alert_path": measure(refs["cnn"], recs)}
    (a.out / "alert_path.json").write_text(json.dumps(doc, indent=2) + "\n")
    sys.exit(0)
