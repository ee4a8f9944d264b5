"""What the alert's durability costs: one spool commit, fsynced or not, on the run's disk.

``Spool.put`` as ``Publisher.publish_alert`` calls it (WAL, ``synchronous=FULL``:
the commit is fsynced before it returns), beside the same put without its own
fsync (``fsync=False``, as strips are spooled: safe against a crash, not
against a power cut until the next fsynced commit). Real alert payloads,
one at a time, in a fresh spool in the output folder (so on the disk the
agent's spool would use when run from there).
"""

from __future__ import annotations

import inspect
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._common import pct, print_table


def measure(out: Path, n: int = 300) -> dict:
    """``spool_put_ms.{fsync,no_fsync}.{p50,p90,p99}``: one put's wall time."""
    from bridge._spool import Spool
    from bridge.schema import encode, sample_alert

    payload = encode(sample_alert("bench").to_json())
    has_flag = "fsync" in inspect.signature(Spool.put).parameters
    res: dict = {"payload_bytes": len(payload), "n": n}
    rows = []
    with tempfile.TemporaryDirectory(prefix="ecg-bench-spool-", dir=out) as tmp:
        spool = Spool(Path(tmp) / "spool.db", max_rows=10 * n)
        for name, kw in (("fsync", {}), ("no_fsync", {"fsync": False})):
            if kw and not has_flag:
                continue
            ts = []
            for _ in range(n):
                t0 = time.perf_counter()
                spool.put("alert", "ecg/bench/alerts", payload, 1, **kw)
                ts.append((time.perf_counter() - t0) * 1000.0)
            res[name] = pct(ts)
            res[name]["mean"] = float(np.mean(ts))
            rows.append([name, *res[name].values()])
        spool.close()
    print_table("Spool put (ms, one alert)", ["commit", "p50", "p90", "p99", "mean"], rows)
    return res


if __name__ == "__main__":
    from benchmarks._common import REPO

    measure(REPO / "benchmarks")
