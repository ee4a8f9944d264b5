"""Beats and fast alarms, measured on real records: ``python -m benchmarks.beats``.

1. QRS detection on LUDB (200 records, 10 s, 500 Hz): sensitivity and
   positive predictive value against the cardiologists' QRS marks of lead II,
   with a 150 ms match window (a detection within 150 ms of a mark matches
   it, one to one), counted inside the annotated stretch only. Ours (the
   streaming detector, on all 12 leads as the agent runs it, and on lead II
   alone) beside ``wfdb.processing.xqrs_detect`` and NeuroKit2's
   ``ecg_peaks`` (default method) on lead II.
2. Time to alarm on real records made abnormal: asystole (the signal
   becomes a flat line with noise at a known sample: Gaussian 15 uV,
   50 Hz mains 10 uV, 0.3 Hz wander 50 uV) from the last beat to the alarm;
   tachycardia (from a known sample, the record's own beats spliced one
   after another at 180 beats/min) from that sample to the alarm.
3. False asystole alarms over every real record of the Challenge set (494).
4. Lead checks: LA/RA reversal, and each lead inverted in turn, applied to
   each record (first 10 s): detection rates, and false alarms on the records
   as they are; with ``--ptbxl DIR`` also on PTB-XL records, which the
   thresholds were not chosen on.

Correctness figures: they do not depend on the machine's speed. Writes
``benchmarks/results/beats.json`` (``--out``) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks._common import REPO
from edge.alarms import Monitor
from edge.beats import BeatDetector, refine_peaks, resampler_delay_s
from edge.dsp import preprocess
from edge.records import find_records, read_record
from edge.sources import LEADS

DATA = REPO.parent / "shared" / "data" / "challenge2020"
WINDOW_S = 0.150


def _match(ref: np.ndarray, det: np.ndarray, lo: int, hi: int, tol: int) -> tuple[int, int, int]:
    """(TP, FN, FP): greedy one-to-one matching in time order within ``tol`` samples."""
    det = np.sort(det[(det >= lo - tol) & (det <= hi + tol)])
    used = np.zeros(len(det), bool)
    tp = fn = 0
    for r in np.sort(ref):
        cand = np.flatnonzero(~used & (np.abs(det - r) <= tol))
        if len(cand):
            used[cand[np.argmin(np.abs(det[cand] - r))]] = True
            tp += 1
        else:
            fn += 1
    fp = int((~used & (det >= lo) & (det <= hi)).sum())
    return tp, fn, fp


def _ours(x500: np.ndarray, lead_row: int | None) -> np.ndarray:
    x = x500 if lead_row is None else x500[lead_row : lead_row + 1]
    det = BeatDetector(n_leads=x.shape[0])
    beats = [b.sample for b in det.push(x) + det.flush()]
    return np.array(refine_peaks(x500[1], beats), dtype=np.int64)


def ludb(limit: int | None = None) -> dict:
    """Se/PPV of four detectors on LUDB's lead II marks."""
    import warnings

    import neurokit2 as nk
    import wfdb
    from wfdb import processing

    paths = sorted((DATA / "ludb").glob("LU*.hea"))[:limit]
    names = ("ours, 12 leads", "ours, lead II", "xqrs, lead II", "NeuroKit2, lead II")
    counts = {n: [0, 0, 0] for n in names}
    errors: dict[str, list[str]] = {n: [] for n in names}
    seconds = {n: 0.0 for n in names}
    for hea in paths:
        rec = read_record(hea)
        base = str(hea.with_suffix(""))
        ann = wfdb.rdann(base, "ii")
        ref = ann.sample[np.array(ann.symbol) == "N"]
        lo, hi = int(ann.sample.min()), int(ann.sample.max())
        fs = rec.fs
        tol = round(WINDOW_S * fs)
        x500 = preprocess(rec.signal, fs)
        raw = rec.signal[1].astype(np.float64)
        out = {}
        t = time.perf_counter()
        out[names[0]] = _ours(x500, None)
        seconds[names[0]] += time.perf_counter() - t
        t = time.perf_counter()
        out[names[1]] = _ours(x500, 1)
        seconds[names[1]] += time.perf_counter() - t
        t = time.perf_counter()
        out[names[2]] = np.asarray(processing.xqrs_detect(raw, fs=fs, verbose=False), int)
        seconds[names[2]] += time.perf_counter() - t
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, info = nk.ecg_peaks(nk.ecg_clean(raw, sampling_rate=fs), sampling_rate=fs)
        out[names[3]] = np.asarray(info["ECG_R_Peaks"], int)
        seconds[names[3]] += time.perf_counter() - t
        for n in names:
            tp, fn, fp = _match(ref, out[n], lo, hi, tol)
            c = counts[n]
            c[0], c[1], c[2] = c[0] + tp, c[1] + fn, c[2] + fp
            if fn or fp:
                errors[n].append(f"{rec.name} (FN {fn}, FP {fp})")
    res = {}
    for n in names:
        tp, fn, fp = counts[n]
        res[n] = {
            "tp": tp,
            "fn": fn,
            "fp": fp,
            "se": tp / max(1, tp + fn),
            "ppv": tp / max(1, tp + fp),
            "records_with_errors": errors[n],
            "seconds": round(seconds[n], 2),
        }
    return {"records": len(paths), "window_s": WINDOW_S, "lead": "II", "detectors": res}


def _noise(n: int, fs: float, n_leads: int, seed: int) -> np.ndarray:
    """Realistic noise of a flat ECG (mV): white 15 uV, 50 Hz 10 uV, 0.3 Hz wander 50 uV."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / fs
    phase = rng.uniform(0, 2 * np.pi, (n_leads, 2))
    white = rng.normal(0, 0.015, (n_leads, n))
    mains = 0.010 * np.sin(2 * np.pi * 50 * t + phase[:, :1]) if fs > 100 else 0.0
    wander = 0.050 * np.sin(2 * np.pi * 0.3 * t + phase[:, 1:])
    return (white + mains + wander).astype(np.float32)


def _run_monitor(signal: np.ndarray, fs: float, chunk_s: float = 0.5) -> tuple[list, Monitor]:
    x = preprocess(signal, fs)
    mon = Monitor(LEADS)
    step = round(chunk_s * 500)
    events = []
    for i in range(0, x.shape[1], step):
        events += mon.push(x[:, i : i + step])
    return events, mon


def _sources(n: int) -> list[Path]:
    """Records of every database, at least 10 s, round-robin: the same each run."""
    by_db: dict[str, list[Path]] = {}
    for p in find_records([DATA]):
        by_db.setdefault(p.parent.name, []).append(p)
    out: list[Path] = []
    lists = [sorted(v) for _, v in sorted(by_db.items())]
    k = 0
    while len(out) < n and any(k < len(v) for v in lists):
        out += [v[k] for v in lists if k < len(v)]
        k += 1
    return out[:n]


def time_to_asystole(n: int = 60, cut_s: float = 6.0, flat_s: float = 10.0) -> dict:
    """Flat line + noise from ``cut_s``: seconds from the last detected beat to the alarm."""
    delays, after_cut, missed, used = [], [], [], []
    for i, p in enumerate(_sources(n)):
        rec = read_record(p)
        fs = rec.fs
        k = round(cut_s * fs)
        if rec.signal.shape[1] < k:
            continue
        hold = rec.signal[:, k - 1 : k]
        flat = hold + _noise(round(flat_s * fs), fs, rec.signal.shape[0], seed=i)
        sig = np.concatenate([rec.signal[:, :k], flat], axis=1)
        events, mon = _run_monitor(sig, fs)
        cut500 = round(cut_s * 500)
        beats = [b for b in mon.beats if b < cut500]
        on = [e for e in events if e.condition == "asystole" and e.event == "onset"]
        on = [e for e in on if e.onset_sample >= cut500]
        if not beats:
            continue
        used.append(rec.name)
        if not on:
            missed.append(rec.name)
            continue
        delays.append((on[0].onset_sample - beats[-1]) / 500.0)
        after_cut.append((on[0].onset_sample - cut500) / 500.0)
    d = np.array(delays)
    return {
        "records": len(used),
        "alarmed": len(delays),
        "missed": missed,
        "from_last_beat_s": _stats(d),
        "from_flat_line_s": _stats(np.array(after_cut)),
        "goal_s": 6.0,
        "within_goal": int((d <= 6.0).sum()),
    }


def _spliced_fast(signal: np.ndarray, fs: float, beats500: list[int], bpm: float, n: int):
    """The record's own beats, one after another every 60/bpm s: (n_leads, n) at ``fs``.

    Each beat is cut from 35 % of a cycle before its R peak to 65 % after (QRS
    intact, T wave shortened as in a real tachycardia), its baseline levelled
    to 0 at both ends so that the joins do not step.
    """
    w = round(fs * 60.0 / bpm)
    pre = round(0.35 * w)
    shift = resampler_delay_s(fs)
    peaks = [round((b / 500.0 - shift) * fs) for b in beats500]
    cuts = [
        signal[:, p - pre : p - pre + w]
        for p in peaks
        if p - pre >= 0 and p - pre + w <= signal.shape[1]
    ]
    out, k = [], 0
    while sum(c.shape[1] for c in out) < n:
        c = cuts[k % len(cuts)].astype(np.float64)
        ramp = np.linspace(0.0, 1.0, w)[None, :]
        out.append(c - (c[:, :1] + (c[:, -1:] - c[:, :1]) * ramp))
        k += 1
    return np.concatenate(out, axis=1)[:, :n].astype(np.float32)


def time_to_tachycardia(n: int = 60, cut_s: float = 6.0, target_bpm: float = 180.0) -> dict:
    """The record, then from ``cut_s`` its own beats spliced at ``target_bpm``: seconds to alarm."""
    delays, missed, used = [], [], []
    for p in _sources(n):
        rec = read_record(p)
        fs = rec.fs
        k = round(cut_s * fs)
        _, mon = _run_monitor(rec.signal, fs)
        rr = np.diff(mon.beats) / 500.0
        if rec.signal.shape[1] < k or len(rr) < 4:
            continue
        bpm = 60.0 / float(np.median(rr))
        if not 50 <= bpm <= 110:  # a normal rate before the onset
            continue
        fast = _spliced_fast(rec.signal, fs, mon.beats, target_bpm, round(12 * fs))
        level = rec.signal[:, k - 1 : k]
        sig = np.concatenate([rec.signal[:, :k], fast + level], axis=1)
        events, _ = _run_monitor(sig, fs)
        cut500 = round(cut_s * 500)
        on = [
            e
            for e in events
            if e.condition == "extreme_tachycardia"
            and e.event == "onset"
            and e.onset_sample > cut500
        ]
        used.append(rec.name)
        if not on:
            missed.append(rec.name)
            continue
        delays.append((on[0].onset_sample - cut500) / 500.0)
    d = np.array(delays)
    return {
        "records": len(used),
        "alarmed": len(delays),
        "missed": missed,
        "target_bpm": target_bpm,
        "from_onset_s": _stats(d),
        "goal_s": 8.0,
        "within_goal": int((d <= 8.0).sum()),
    }


def false_alarms(limit: int | None = None) -> dict:
    """Every alarm onset raised on the unaltered real records (asystole should be none)."""
    paths = find_records([DATA])[:limit]
    per: dict[str, list[str]] = {}
    seconds = 0.0
    for p in paths:
        rec = read_record(p)
        seconds += rec.signal.shape[1] / rec.fs
        events, _ = _run_monitor(rec.signal, rec.fs)
        for e in events:
            if e.event == "onset":
                per.setdefault(e.condition, []).append(rec.name)
    return {
        "records": len(paths),
        "hours": round(seconds / 3600.0, 2),
        "asystole": len(per.get("asystole", [])),
        "asystole_records": per.get("asystole", []),
        "onsets_by_condition": {k: len(v) for k, v in sorted(per.items())},
    }


def lead_checks(limit: int | None = None, folders: list[Path] | None = None) -> dict:
    """LA/RA reversal, and each of the 12 leads inverted in turn, applied to the first
    10 s of each record.

    Detection rates on the altered copies (the reversal found; the inverted lead
    named), false alarms on the records as they are (one check of 10 s; the
    agent's alarm needs two in a row, so these are upper bounds).
    """
    from edge.reversal import check_leads, check_record, reverse_la_ra

    n = fa_rev = fa_inv = hit_rev = 0
    hit_lead = np.zeros(len(LEADS))
    false_names: list[str] = []
    for p in find_records(folders or [DATA])[:limit]:
        rec = read_record(p)
        if rec.signal.shape[0] != len(LEADS):
            continue
        x, beats, c = check_record(rec.signal, rec.fs)
        if c is None:
            continue
        n += 1
        fa_rev += c.reversed
        fa_inv += bool(c.inverted)
        if c.reversed or c.inverted:
            false_names.append(rec.name)
        hit_rev += check_leads(reverse_la_ra(x), beats).reversed
        for k, lead in enumerate(LEADS):
            y = x.copy()
            y[k] = -y[k]
            hit_lead[k] += lead in check_leads(y, beats).inverted
    n1 = max(1, n)
    return {
        "records": n,
        "reversal_detected": hit_rev / n1,
        "reversal_false_alarms": fa_rev / n1,
        "inversion_detected": float(hit_lead.sum() / (n1 * len(LEADS))),
        "inversion_detected_by_lead": {
            lead: round(float(h / n1), 4) for lead, h in zip(LEADS, hit_lead)
        },
        "inversion_false_alarms": fa_inv / n1,
        "false_alarm_records": false_names,
    }


def _stats(d: np.ndarray) -> dict:
    if not len(d):
        return {"n": 0}
    return {
        "n": len(d),
        "median": round(float(np.median(d)), 2),
        "p90": round(float(np.percentile(d, 90)), 2),
        "max": round(float(d.max()), 2),
        "min": round(float(d.min()), 2),
    }


def table(r: dict) -> str:
    lines = [
        f"QRS detection, LUDB ({r['ludb']['records']} records, lead II marks, "
        f"{r['ludb']['window_s'] * 1000:.0f} ms window)",
        "| detector | TP | FN | FP | Se | PPV |",
        "|---|---|---|---|---|---|",
    ]
    for name, d in r["ludb"]["detectors"].items():
        lines.append(
            f"| {name} | {d['tp']} | {d['fn']} | {d['fp']} | "
            f"{100 * d['se']:.2f} % | {100 * d['ppv']:.2f} % |"
        )
    a, t, f = r["asystole"], r["tachycardia"], r["false_alarms"]
    fa, ft = a["from_last_beat_s"], t["from_onset_s"]
    lines += [
        "",
        "| alarm figure | value |",
        "|---|---|",
        f"| asystole, last beat -> alarm ({a['alarmed']}/{a['records']} records) | "
        f"median {fa.get('median')} s, max {fa.get('max')} s (goal <= 6 s) |",
        f"| extreme tachycardia ({t['target_bpm']:g} bpm), onset -> alarm "
        f"({t['alarmed']}/{t['records']} records) | "
        f"median {ft.get('median')} s, max {ft.get('max')} s (goal <= 8 s) |",
        f"| false asystole alarms, {f['records']} real records ({f['hours']} h) | "
        f"{f['asystole']} |",
        f"| all alarm onsets on those records | {json.dumps(f['onsets_by_condition'])} |",
    ]
    for key, what in (("lead_checks", "Challenge"), ("lead_checks_ptbxl", "PTB-XL, not tuned on")):
        c = r.get(key)
        if not c:
            continue
        lines += [
            f"| LA/RA reversal applied, detected ({c['records']} {what} records, "
            f"one 10 s check) | {100 * c['reversal_detected']:.1f} % (false alarms "
            f"{100 * c['reversal_false_alarms']:.1f} % on unaltered records) |",
            f"| each lead inverted in turn, named ({what}) | "
            f"{100 * c['inversion_detected']:.1f} % (false alarms "
            f"{100 * c['inversion_false_alarms']:.1f} %; worst lead "
            f"{min(c['inversion_detected_by_lead'].items(), key=lambda kv: kv[1])[0]} "
            f"{100 * min(c['inversion_detected_by_lead'].values()):.1f} %) |",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few records of each part")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    ap.add_argument(
        "--ptbxl",
        type=Path,
        help="also run the lead checks on PTB-XL records in this folder (thresholds "
        "were not chosen on them)",
    )
    ap.add_argument("--ptbxl-limit", type=int, default=2000, help="how many of them")
    ap.add_argument(
        "--lead-checks-only",
        action="store_true",
        help="run part 4 only and update it in the existing JSON",
    )
    args = ap.parse_args(argv)
    q = args.quick
    name = "beats-quick.json" if q else "beats.json"
    if args.lead_checks_only:
        if not (args.out / name).exists():
            ap.error(f"--lead-checks-only updates {args.out / name}: run without it first")
        r = json.loads((args.out / name).read_text())
        r["lead_checks"] = lead_checks(20 if q else None)
    else:
        r = {
            "ludb": ludb(10 if q else None),
            "asystole": time_to_asystole(6 if q else 60),
            "tachycardia": time_to_tachycardia(6 if q else 60),
            "false_alarms": false_alarms(20 if q else None),
            "lead_checks": lead_checks(20 if q else None),
        }
    if args.ptbxl:
        r["lead_checks_ptbxl"] = lead_checks(args.ptbxl_limit, [args.ptbxl])
    r["command"] = (
        "python -m benchmarks.beats"
        + (" --quick" if q else "")
        + (f" --ptbxl PTBXL_DIR --ptbxl-limit {args.ptbxl_limit}" if args.ptbxl else "")
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / name).write_text(json.dumps(r, indent=2) + "\n")
    print(table(r))
    print(f"wrote {args.out / name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
