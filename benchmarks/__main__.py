"""``python -m benchmarks [--quick] [--out DIR]``: every measurement, results.json, results.md."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from benchmarks import (
    accuracy,
    alert_path,
    arm,
    e2e,
    incremental,
    latency,
    limit,
    memory,
    report,
    spool,
    stages,
    throughput,
)
from benchmarks._common import REPO, machine, resolve_bundles, sample_records, shown

DATA = Path("/work/shared/data/challenge2020/cpsc2018")


def _walk(d, prefix: str = ""):  # type: ignore[no-untyped-def]
    if isinstance(d, dict):
        for k, v in d.items():
            yield from _walk(v, f"{prefix}.{k}" if prefix else str(k))
    else:
        yield prefix, d


def sanity(r: dict) -> list[str]:
    """What is wrong with the figures: non-finite, non-positive, p99 < p50, missing."""
    bad = []
    for model, res in r["frame_latency_ms"].items():
        for p in ("int8", "fp32", "torch"):
            x = res.get(p)
            if x is None:
                continue
            for q in ("p50", "p90", "p99"):
                if not (math.isfinite(x[q]) and x[q] > 0):
                    bad.append(f"frame_latency_ms.{model}.{p}.{q} = {x[q]}")
            if x["p99"] < x["p50"]:
                bad.append(f"frame_latency_ms.{model}.{p}: p99 < p50")
    for model in r["frame_latency_ms"]:
        for p in ("int8", "fp32"):
            for k in ("macs", "peak_macs_per_s", "floor_ms", "ratio"):
                v = r["limit"][model][p][k]
                if not (math.isfinite(v) and v > 0):
                    bad.append(f"limit.{model}.{p}.{k} = {v}")
    e = r["end_to_end_ms"]
    if not (math.isfinite(e["p50"]) and e["p50"] > 0 and e["p99"] >= e["p50"]):
        bad.append(f"end_to_end_ms = {e['p50']}, {e['p99']}")
    ap = r.get("alert_path")
    if ap is not None and not (ap["chunks"] > 0 and ap["stages"]["chunk"]["p50"] > 0):
        bad.append(f"alert_path: {ap['chunks']} frame-completing chunks timed")
    for k in ("realtime_factor_one_core", "streams_per_core", "bundle_mb"):
        if not (math.isfinite(r[k]) and r[k] > 0):
            bad.append(f"{k} = {r[k]}")
    for model, res in r.get("incremental", {}).items():
        for p in ("int8", "fp32"):
            if p in res and not res[p]["scores_equal"]:
                n = res[p]["frames_compared"] - res[p]["frames_equal"]
                bad.append(f"incremental.{model}.{p}: window cache changed {n} frames' scores")
    rss = r["rss_mb"]
    if not (0 < rss["steady"] <= rss["peak"] * 1.001):
        bad.append(f"rss_mb = {rss}")
    return bad


STREAMED = "cnn"  # the stream benchmarks (throughput, stages, end to end) run the shipped model


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="CI mode: fewer frames, no ARM")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out")
    ap.add_argument("--cnn-bundle", help="Model 1 bundle (default runs/cnn-full/bundle)")
    ap.add_argument("--resnet-bundle", help="Model 2 bundle (default runs/resnet-full-u8)")
    ap.add_argument("--skip-arm", action="store_true", help="do not run the aarch64 emulation")
    ap.add_argument("--repeats", type=int, default=None, help="repeats of each timing")
    a = ap.parse_args(argv)
    q = a.quick
    out = a.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    refs = resolve_bundles(a.cnn_bundle, a.resnet_bundle, out)
    reps = a.repeats or (2 if q else 3)
    if q or not DATA.is_dir():
        records = sample_records()
    else:
        from edge.records import find_records

        records = find_records([DATA])
    r: dict = {"machine": machine(), "quick": q, "timings_s": {}}
    r["bundles"] = {
        m: {"path": shown(b.path), "source": b.source, "checkpoint": shown(b.checkpoint)}
        for m, b in refs.items()
    }

    def step(name: str, fn):  # type: ignore[no-untyped-def]
        t0 = time.perf_counter()
        res = fn()
        r["timings_s"][name] = round(time.perf_counter() - t0, 1)
        return res

    r["frame_latency_ms"] = step("latency", lambda: latency.measure(refs, 30 if q else 200, reps))
    r["incremental"] = step(
        "incremental", lambda: incremental.measure(refs, records, 40 if q else 300, reps)
    )
    for model, res in r["incremental"].items():
        if "int8" in res:  # the classifier stage per hop, beside the extractor-only int8 figure
            r["frame_latency_ms"][model]["int8_incremental"] = res["int8"]["per_hop_ms"]
            r["frame_latency_ms"][model]["int8_frame_pass"] = res["int8"]["full_frame_ms"]
    r["limit"] = step("limit", lambda: limit.measure(refs, r["frame_latency_ms"], 3 if q else 7))
    r["end_to_end_ms"] = step(
        "e2e", lambda: e2e.measure(refs[STREAMED], records, reps, 3 if q else 20)
    )
    r["alert_path"] = step("alert_path", lambda: alert_path.measure(refs[STREAMED], records))
    r["spool_put_ms"] = step("spool", lambda: spool.measure(out, 100 if q else 500))
    tp = step("throughput", lambda: throughput.measure(refs[STREAMED], records, reps))
    inc = r["incremental"][STREAMED].get("int8")
    if inc is not None:  # same bundle, same hop: the classifier stage alone, per CPU second
        hop_ms = tp["hop_s"] * 1000.0
        tp["classifier_ceiling_one_core"] = hop_ms / (inc["per_hop_ms"]["p50"] + inc["head_ms"])
        tp["classifier_ceiling_one_core_full_frame"] = hop_ms / (
            inc["full_frame_ms"]["p50"] + inc["head_ms"]
        )
        tp["ratio_to_classifier_ceiling"] = (
            tp["realtime_factor_one_core"] / tp["classifier_ceiling_one_core"]
        )
    tp["stages"] = step("stages", lambda: stages.measure(refs[STREAMED], records))
    r["throughput"] = tp
    r["realtime_factor_one_core"] = tp["realtime_factor_one_core"]
    r["streams_per_core"] = tp["streams_per_core"]
    mem = step("memory", lambda: memory.measure(refs, sample_records(), 3.0 if q else 10.0, reps))
    r.update(mem)
    r.update(step("accuracy", accuracy.measure))
    macs = {p: r["limit"]["resnet"][p]["macs"] for p in ("int8", "fp32")}
    r["arm"] = step("arm", lambda: arm.measure(refs["resnet"], macs, run=not (q or a.skip_arm)))
    r["timings_s"]["total"] = round(time.perf_counter() - t_start, 1)
    bad = sanity(r)
    r["sanity"] = {"ok": not bad, "problems": bad}
    (out / "results.json").write_text(json.dumps(r, indent=2, default=str) + "\n")
    (out / "results.md").write_text(report.render(r))
    print(f"\nwrote {out / 'results.json'} and {out / 'results.md'} in {r['timings_s']['total']} s")
    if bad:
        print("SANITY CHECK FAILED:\n  " + "\n  ".join(bad), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
