"""Delineation against LUDB's manual annotations: ``python -m benchmarks.delineation``.

The reference: for each of the 200 LUDB records, the cardiologists' onsets
and offsets of P, QRS and T on the 12 leads, combined per beat the way a
global measurement is defined (IEC 60601-2-25, CSE): the earliest onset and
the latest offset over the leads. Intervals: P duration (P off - P on), PR
(QRS on - P on), QRS (QRS off - QRS on), QT (T off - QRS on).

Ours: the agent's path on each record (edge.dsp preprocessing, the streaming
beat detector edge.beats on 12 leads, the streaming delineator
edge.delineate). NeuroKit2's ``ecg_delineate(method="dwt")`` on the same
beats (our R peaks, moved to lead II's largest deflection), on NeuroKit2's
cleaned lead II, and combined over the 12 leads (earliest onset, latest
offset). A reference beat is *found* when a detected beat lies within 150 ms
of its QRS and the interval is measured (not absent); the differences (ms,
measured - reference) are over the beats found.

``--tune`` prints the mean differences per boundary on LU0001-LU0100 (the
tuning half, from which :attr:`DelineateConfig.bias_ms` was set); figures
are given for LU0101-LU0200 (never tuned on) and all 200. Correctness
figures only (no timing). Writes ``benchmarks/results/delineation.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np

from benchmarks._common import REPO
from edge.delineate import DelineateConfig, Delineator, measurement_filter
from edge.dsp import Preprocessor
from edge.records import read_record

LUDB = REPO.parent / "shared" / "data" / "challenge2020" / "ludb"
LUDB_LEADS = ("i", "ii", "iii", "avr", "avl", "avf", "v1", "v2", "v3", "v4", "v5", "v6")
INTERVALS = ("p_ms", "pr_ms", "qrs_ms", "qt_ms")
TOL_S = 0.150
# IEC 60601-2-25:2011, 201.12.4.102.3.2 (biological ECGs, CSE database): tolerated
# mean difference and standard deviation of the differences, ms
GOALS = {"p_ms": (10, 15), "pr_ms": (10, 10), "qrs_ms": (10, 10), "qt_ms": (25, 30)}


def reference(name: str) -> list[dict]:
    """Global reference beats of one LUDB record: r, p_on, p_off, qrs_on, qrs_off, t_off."""
    import wfdb

    waves: dict[str, list[tuple[int, int, int]]] = {"p": [], "N": [], "t": []}
    for lead in LUDB_LEADS:
        a = wfdb.rdann(str(LUDB / name), lead)
        sym, smp = list(a.symbol), list(a.sample)
        for k in range(1, len(sym) - 1):
            if sym[k - 1] == "(" and sym[k + 1] == ")" and sym[k] not in "()":
                kind = sym[k] if sym[k] in ("p", "t") else "N"
                waves[kind].append((int(smp[k - 1]), int(smp[k]), int(smp[k + 1])))
    qrs = sorted(waves["N"], key=lambda w: w[1])
    groups: list[list[tuple[int, int, int]]] = []
    for w in qrs:  # the same QRS on several leads: peaks within 100 ms
        if groups and w[1] - np.median([g[1] for g in groups[-1]]) <= 50:
            groups[-1].append(w)
        else:
            groups.append([w])
    beats = []
    for k, g in enumerate(groups):
        r = int(np.median([w[1] for w in g]))
        on, off = min(w[0] for w in g), max(w[2] for w in g)
        prev_off = max(w[2] for w in groups[k - 1]) if k else -(10**9)
        next_on = min(w[0] for w in groups[k + 1]) if k + 1 < len(groups) else 10**9
        ps = [p for p in waves["p"] if prev_off <= p[1] < on]
        ts = [t for t in waves["t"] if off <= t[1] < next_on]
        beats.append(
            {
                "r": r,
                "qrs_on": on,
                "qrs_off": off,
                "p_on": min(p[0] for p in ps) if ps else None,
                "p_off": max(p[2] for p in ps) if ps else None,
                "t_off": max(t[2] for t in ts) if ts else None,
                "n_leads": len(g),
            }
        )
    return beats


def intervals(b: dict, fs: float) -> dict:
    """P duration, PR, QRS, QT in ms from one beat's boundaries (None where one is absent)."""

    def d(a: str, z: str) -> float | None:
        if b.get(a) is None or b.get(z) is None:
            return None
        return (b[z] - b[a]) * 1000.0 / fs

    return {
        "p_ms": d("p_on", "p_off"),
        "pr_ms": d("p_on", "qrs_on"),
        "qrs_ms": d("qrs_on", "qrs_off"),
        "qt_ms": d("qrs_on", "t_off"),
    }


def _r_peaks(x500: np.ndarray) -> list[int]:
    from edge.beats import BeatDetector

    det = BeatDetector(n_leads=x500.shape[0])
    return [b.sample for b in det.push(x500) + det.flush()]


def streams(signal: np.ndarray, fs: float) -> tuple[np.ndarray, np.ndarray]:
    """The agent's two 500 Hz streams of a record: resampled, and band-passed (float32)."""
    pre = Preprocessor(fs, n_leads=signal.shape[0])
    raw = pre.resampler.push(signal)
    return raw, pre.bandpass.push(raw).astype(np.float32)


def ours(raw500: np.ndarray, r: list[int], config: DelineateConfig | None = None) -> list[dict]:
    """The delineator as the agent runs it: the resampled stream band-passed for
    measurement (whole blocks from the start, as edge.measure.Measurer: the same floats
    as one call), then chunk by chunk."""
    x = measurement_filter(500.0, raw500.shape[0]).push(raw500)
    d = Delineator(n_leads=raw500.shape[0], config=config)
    out = []
    for k in range(0, x.shape[1], 250):  # as the agent: chunks of 0.5 s
        out += d.push(x[:, k : k + 250], [p for p in r if k <= p < k + 250])
    out += d.flush()
    return [{"r": b.r, **b.glob.to_json()} for b in out]


def neurokit(raw: np.ndarray, fs: float, r: list[int]) -> dict[str, list[dict]]:
    """NeuroKit2 dwt at our R peaks: on lead II and combined over the 12 leads."""
    import neurokit2 as nk

    keys = {
        "p_on": "ECG_P_Onsets",
        "p_off": "ECG_P_Offsets",
        "qrs_on": "ECG_R_Onsets",
        "qrs_off": "ECG_R_Offsets",
        "t_off": "ECG_T_Offsets",
    }
    per_lead = []
    for i in range(raw.shape[0]):
        clean = nk.ecg_clean(raw[i].astype(np.float64), sampling_rate=fs)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _, w = nk.ecg_delineate(clean, rpeaks=np.asarray(r), sampling_rate=fs, method="dwt")
            lead = {k: np.asarray(w[v], float) for k, v in keys.items()}
        except Exception:
            lead = {k: np.full(len(r), np.nan) for k in keys}
        per_lead.append(lead)

    def beats(leads: list[dict]) -> list[dict]:
        out = []
        for j, rp in enumerate(r):
            b = {"r": rp}
            for k in keys:
                v = np.array([lead[k][j] if j < len(lead[k]) else np.nan for lead in leads])
                v = v[np.isfinite(v)]
                b[k] = None if len(v) == 0 else int(v.min() if k.endswith("on") else v.max())
            out.append(b)
        return out

    return {
        "NeuroKit2 dwt, lead II": beats([per_lead[1]]),
        "NeuroKit2 dwt, 12 leads": beats(per_lead),
    }


def match(ref: list[dict], det: list[dict], fs: float) -> list[tuple[dict, dict | None]]:
    """Each reference beat with the detected beat within 150 ms of its R (or None)."""
    tol = TOL_S * fs
    rs = np.array([b["r"] for b in det]) if det else np.zeros(0)
    out = []
    for b in ref:
        k = int(np.argmin(np.abs(rs - b["r"]))) if len(rs) else -1
        out.append((b, det[k] if k >= 0 and abs(rs[k] - b["r"]) <= tol else None))
    return out


def evaluate(pairs: list[tuple[dict, dict | None]], fs: float = 500.0) -> dict:
    """Mean and SD of the differences and the share found, per interval."""
    res = {}
    for iv in INTERVALS:
        diffs, n_ref = [], 0
        for ref, det in pairs:
            rv = intervals(ref, fs)[iv]
            if rv is None:
                continue
            n_ref += 1
            dv = intervals(det, fs)[iv] if det is not None else None
            if dv is not None:
                diffs.append(dv - rv)
        d = np.array(diffs)
        res[iv] = {
            "n_reference": n_ref,
            "found": len(d) / max(1, n_ref),
            "mean": float(d.mean()) if len(d) else None,
            "sd": float(d.std(ddof=1)) if len(d) > 1 else None,
        }
    absent = [ref for ref, _ in pairs if ref["p_on"] is None]
    res["p_absent_reported_absent"] = (
        sum(1 for ref, det in pairs if ref["p_on"] is None and (det is None or det["p_on"] is None))
        / len(absent)
        if absent
        else None
    )
    res["beats"] = len(pairs)
    res["beats_detected"] = sum(1 for _, det in pairs if det is not None) / max(1, len(pairs))
    return res


def boundary_bias(pairs: list[tuple[dict, dict | None]], fs: float = 500.0) -> dict:
    """Mean difference (ms) of each boundary, measured - reference, over the beats found."""
    out = {}
    for k in ("p_on", "p_off", "qrs_on", "qrs_off", "t_off"):
        d = [
            (det[k] - ref[k]) * 1000.0 / fs
            for ref, det in pairs
            if det is not None and ref[k] is not None and det[k] is not None
        ]
        out[k] = (round(float(np.mean(d)), 1), round(float(np.std(d)), 1), len(d))
    return out


def run(names: list[str], with_nk: bool, config: DelineateConfig | None = None) -> dict:
    from edge.beats import refine_peaks

    methods: dict[str, dict[str, list]] = {}
    seconds: dict[str, float] = {}
    for name in names:
        rec = read_record(LUDB / f"{name}.hea")
        fs = rec.fs
        ref = reference(name)
        raw500, x500 = streams(rec.signal, fs)
        r = _r_peaks(x500)
        t = time.perf_counter()
        got = {"ours (stream, 12 leads)": ours(raw500, r, config)}
        seconds["ours (stream, 12 leads)"] = seconds.get("ours (stream, 12 leads)", 0) + (
            time.perf_counter() - t
        )
        if with_nk:
            t = time.perf_counter()
            got.update(neurokit(rec.signal, fs, refine_peaks(x500[1], r)))
            seconds["NeuroKit2 (both)"] = seconds.get("NeuroKit2 (both)", 0) + (
                time.perf_counter() - t
            )
        for m, det in got.items():
            methods.setdefault(m, {})[name] = match(ref, det, fs)
    return {"pairs": methods, "seconds": seconds}


def _split(pairs: dict[str, list], names: list[str]) -> list:
    return [p for n in names if n in pairs for p in pairs[n]]


def table(res: dict) -> str:
    lines = []
    for part, r in res["results"].items():
        lines.append(f"\n{part}")
        lines.append(f"{'method':28s} " + " ".join(f"{iv:>22s}" for iv in INTERVALS))
        for m, e in r.items():
            cells = []
            for iv in INTERVALS:
                x = e[iv]
                if x["mean"] is None:
                    cells.append(f"{'-':>22s}")
                else:
                    cells.append(f"{x['mean']:+6.1f} ± {x['sd']:5.1f} ({100 * x['found']:5.1f}%)")
            lines.append(f"{m:28s} " + " ".join(f"{c:>22s}" for c in cells))
    lines.append("\nmean ± SD of the differences (ms, measured - reference), (beats found)")
    lines.append("IEC 60601-2-25 goals: P ±10/15, PR ±10/10, QRS ±10/10, QT ±25/30 (mean/SD, ms)")
    return "\n".join(lines)


def cost(n_records: int = 50, repeats: int = 3) -> dict:
    """What delineation costs: ms of CPU per second of 12-lead signal, and the agent's
    replay throughput (seconds of signal per CPU second) with and without it. A timing
    figure: run it on a quiet machine (not while a training runs)."""
    import edge.agent as agent_mod
    from benchmarks.throughput import _NoMeasurer  # the agent without delineation
    from edge.agent import Agent
    from edge.bundle import load_bundle
    from edge.replay import ReplaySource

    names = [f"LU{k:04d}" for k in range(1, n_records + 1)]
    data = []
    for name in names:
        rec = read_record(LUDB / f"{name}.hea")
        raw500, x500 = streams(rec.signal, rec.fs)
        data.append((raw500, _r_peaks(x500)))
    seconds = sum(x.shape[1] for x, _ in data) / 500.0
    best = float("inf")
    for _ in range(repeats):
        t = time.process_time()
        for x, r in data:
            ours(x, r)
        best = min(best, time.process_time() - t)
    beats = sum(len(r) for _, r in data)

    bundle = load_bundle()
    paths = [LUDB / f"{n}.hea" for n in names]
    rate = {}
    real = agent_mod.Measurer
    for label, cls in (("without", _NoMeasurer), ("with", real)):
        agent_mod.Measurer = cls
        try:
            tbest = float("inf")
            for _ in range(repeats):
                t = time.process_time()  # CPU seconds: one thread (onnxruntime --threads 1)
                Agent(bundle, sink=lambda e: None).run(ReplaySource(paths, speed=None))
                tbest = min(tbest, time.process_time() - t)
        finally:
            agent_mod.Measurer = real
        rate[label] = seconds / tbest
    return {
        "records": len(names),
        "signal_s": seconds,
        "beats": beats,
        "delineation_ms_per_signal_s": 1000.0 * best / seconds,
        "delineation_ms_per_beat": 1000.0 * best / max(1, beats),
        "agent_signal_s_per_s": rate,
        "agent_throughput_loss": 1.0 - rate["with"] / rate["without"],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.delineation", description=__doc__)
    ap.add_argument("--limit", type=int, default=None, help="first N records only")
    ap.add_argument("--no-neurokit", action="store_true", help="ours only (fast)")
    ap.add_argument("--tune", action="store_true", help="boundary biases on LU0001-LU0100")
    ap.add_argument("--cost", action="store_true", help="timing: cost per second, agent rate")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    a = ap.parse_args(argv)
    names = [f"LU{k:04d}" for k in range(1, 201)][: a.limit]
    if a.cost:
        c = cost(a.limit or 50)
        print(json.dumps(c, indent=1))
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / "delineation_cost.json").write_text(json.dumps(c, indent=1) + "\n")
        return 0
    if a.tune:
        cfg = DelineateConfig(bias_ms={})
        tune = [n for n in names if int(n[2:]) <= 100]
        r = run(tune, with_nk=False, config=cfg)
        pairs = _split(r["pairs"]["ours (stream, 12 leads)"], tune)
        print(json.dumps(boundary_bias(pairs), indent=1))
        print(table({"results": {"LU0001-LU0100, no bias": {"ours": evaluate(pairs)}}}))
        return 0
    r = run(names, with_nk=not a.no_neurokit)
    parts = {
        "LU0001-LU0100 (tuning)": [n for n in names if int(n[2:]) <= 100],
        "LU0101-LU0200 (held out)": [n for n in names if int(n[2:]) > 100],
        f"all {len(names)}": names,
    }
    results = {
        part: {m: evaluate(_split(p, ns)) for m, p in r["pairs"].items()}
        for part, ns in parts.items()
        if ns
    }
    per_record = {n: evaluate(r["pairs"]["ours (stream, 12 leads)"][n]) for n in names}
    worst = sorted(
        names,
        key=lambda n: -abs(per_record[n]["qt_ms"]["mean"] or 0),
    )[:10]
    out = {
        "records": len(names),
        "match_window_s": TOL_S,
        "goals_iec_60601_2_25": GOALS,
        "results": results,
        "seconds": {k: round(v, 1) for k, v in r["seconds"].items()},
        "worst_qt_records": {n: per_record[n]["qt_ms"] for n in worst},
        "config": {k: v for k, v in replace(DelineateConfig()).__dict__.items()},
    }
    print(table(out))
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "delineation.json").write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
