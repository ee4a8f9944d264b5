"""A full disk is not a lost alert: quality rows go first, alerts are kept (in memory at worst)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from bridge._spool import Spool

ROOT = Path(__file__).resolve().parents[2]


class TestFullSpool:
    def test_size_limit_keeps_every_alert_in_order(self, tmp_path):
        sp = Spool(tmp_path / "s.db", max_rows=10**6, max_bytes=64 * 1024)
        alerts, dropped = [], 0
        for i in range(600):
            kind = "alert" if i % 10 == 0 else "quality"
            rid = sp.put(kind, "t", b"x" * 1000, 1)
            if kind == "alert":
                alerts.append(rid)
            dropped += rid is None
        rows = sp.after(0, 10**6)
        assert [r[0] for r in rows if r[1] == "alert"] == alerts  # all 60, in order
        assert dropped > 0 and sp.storage_problem and "alerts are kept" in sp.storage_problem
        assert sp.in_memory > 0  # alerts alone outgrew the 64 KiB limit
        assert [r[0] for r in rows] == sorted(r[0] for r in rows)
        sp.delete([r[0] for r in rows])
        assert len(sp) == 0 and sp.in_memory == 0
        sp.close()

    def test_file_size_limit(self, tmp_path):
        """RLIMIT_FSIZE makes the disk 'full' for this process: writes fail as on a full disk."""
        code = textwrap.dedent(
            f"""
            import json, resource, signal
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
            from bridge._spool import Spool
            sp = Spool({str(tmp_path / "s.db")!r}, 10**6)
            alerts = []
            for i in range(2000):
                kind = "alert" if i % 20 == 0 else "quality"
                rid = sp.put(kind, "t", b"x" * 1000, 1)
                if kind == "alert":
                    alerts.append(rid)
            stored = [r[0] for r in sp.after(0, 10**6) if r[1] == "alert"]
            print(json.dumps({{"same": stored == alerts, "n": len(alerts),
                              "problem": sp.storage_problem, "evicted": sp.evicted}}))
            """
        )
        p = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
        )
        assert p.returncode == 0, p.stderr
        out = json.loads(p.stdout)
        assert out["same"] and out["n"] == 100
        assert out["problem"] and out["evicted"] > 0


class TestAgentOnAFullSpool:
    def test_technical_alert_and_no_alert_lost(self, tmp_path, samples_dir):
        from bridge.publish import Publisher
        from edge.agent import Agent
        from edge.bundle import load_bundle
        from edge.reload import watch_storage
        from edge.replay import ReplaySource

        pub = Publisher(None, "bed-3", tmp_path / "s.db", max_spool_bytes=40_000).start()
        events: list[dict] = []
        agent = Agent(
            load_bundle(None), publisher=pub, sink=events.append, hop_s=5.0, device_id="bed-3"
        )
        lines: list[str] = []
        watch_storage(agent, pub, lines.append, every_s=0.01)
        src = ReplaySource([samples_dir / "cpsc2018", samples_dir / "georgia"], speed=20.0)
        agent.run(src)
        alerts = [e for e in events if e["type"] == "alert"]
        tech = [e for e in alerts if e["condition"] == "storage_full"]
        assert len(tech) == 1 and "is full" in tech[0]["reason"], [e["condition"] for e in alerts]
        kept = {json.loads(r[3])["alert_id"] for r in pub._spool.after(0, 10**6) if r[1] == "alert"}
        assert {e["alert_id"] for e in alerts} <= kept  # every alert, the technical one too
        s = pub.stats()
        assert s["evicted"] + s["in_memory"] > 0 and lines  # dropped quality, or alerts in RAM
        pub.close(timeout_s=0.1)
