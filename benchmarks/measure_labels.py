"""Measurements beside the labels: ``python -m benchmarks.measure_labels``.

For every record of the Challenge set (494) and PTB-XL's 48-record sample
(100 Hz), the record's median measurements (``edge.measure.record_measure``,
the agent's path) against the labels that measurements define:

- PR > 200 ms against first-degree AV block (IAVB, 270492004);
- QTc (Bazett) > 460 ms against prolonged QT (LQT, 111975006);
- QRS axis < -30 deg against left axis deviation (LAD, 39732003), > 90 deg
  against right axis deviation (RAD, 47665007);
- QRS >= 120 ms against complete bundle branch blocks and NSIVCB (CRBBB
  59118001 / RBBB 713427006, LBBB 164909002 / CLBBB 733534002, NSIVCB 698252002);
- QRS amplitude below 0.5 mV on every limb lead against low QRS voltage (LQRSV, 251146004).

Per rule: the 2 x 2 table, sensitivity, specificity, and how many records
had the measurement (absent: no P, no T...). Correctness figures only.
Writes ``benchmarks/results/measure_labels.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchmarks._common import REPO
from edge.measure import record_measure
from edge.records import find_records, parse_dx, read_header

DATA = REPO.parent / "shared" / "data"
LIMBS = ("i", "ii", "iii", "avr", "avl", "avf")


def _low_voltage(m: dict) -> bool | None:
    amps = {k.lower(): v for k, v in (m.get("qrs_amplitude_mv") or {}).items()}
    limb = [amps[k] for k in LIMBS if k in amps]
    return None if len(limb) < 6 else max(limb) < 0.5


RULES = {
    "IAVB: PR > 200 ms": (
        ("270492004",),
        lambda m: None if m["pr_ms"] is None else m["pr_ms"] > 200,
    ),
    "LQT: QTc Bazett > 460 ms": (
        ("111975006",),
        lambda m: None if m["qtc_bazett_ms"] is None else m["qtc_bazett_ms"] > 460,
    ),
    "LAD: QRS axis < -30 deg": (
        ("39732003",),
        lambda m: None if m["axis_qrs_deg"] is None else m["axis_qrs_deg"] < -30,
    ),
    "RAD: QRS axis > 90 deg": (
        ("47665007",),
        lambda m: None if m["axis_qrs_deg"] is None else m["axis_qrs_deg"] > 90,
    ),
    "BBB/NSIVCB: QRS >= 120 ms": (
        ("59118001", "713427006", "164909002", "733534002", "698252002"),
        lambda m: None if m["qrs_ms"] is None else m["qrs_ms"] >= 120,
    ),
    "LQRSV: limb QRS < 0.5 mV": (("251146004",), _low_voltage),
}


def agreement(paths: list[Path]) -> dict:
    rows = []
    for p in paths:
        dx = set(parse_dx(read_header(p).comments) or ())
        try:
            m = record_measure(p)["median"]
        except Exception as e:
            rows.append((p.stem, dx, None, str(e)))
            continue
        rows.append((p.stem, dx, m, None))
    out: dict = {"records": len(rows), "failed": [r[0] for r in rows if r[2] is None]}
    for name, (codes, rule) in RULES.items():
        t = {"tp": 0, "fn": 0, "fp": 0, "tn": 0, "not_measured_pos": 0, "not_measured_neg": 0}
        for _, dx, m, _ in rows:
            pos = bool(dx & set(codes))
            v = None if m is None else rule(m)
            if v is None:
                t["not_measured_pos" if pos else "not_measured_neg"] += 1
            elif pos:
                t["tp" if v else "fn"] += 1
            else:
                t["fp" if v else "tn"] += 1
        t["sensitivity"] = t["tp"] / (t["tp"] + t["fn"]) if t["tp"] + t["fn"] else None
        t["specificity"] = t["tn"] / (t["tn"] + t["fp"]) if t["tn"] + t["fp"] else None
        out[name] = t
    return out


def table(res: dict) -> str:
    lines = []
    for part, r in res.items():
        lines.append(f"\n{part}: {r['records']} records ({len(r['failed'])} failed)")
        lines.append(f"{'rule':28s} {'TP':>4s} {'FN':>4s} {'FP':>4s} {'TN':>4s}  Se     Sp   n/m")
        for name in RULES:
            t = r[name]
            se = "-" if t["sensitivity"] is None else f"{t['sensitivity']:.2f}"
            sp = "-" if t["specificity"] is None else f"{t['specificity']:.2f}"
            nm = t["not_measured_pos"] + t["not_measured_neg"]
            lines.append(
                f"{name:28s} {t['tp']:4d} {t['fn']:4d} {t['fp']:4d} {t['tn']:4d}  "
                f"{se:5s} {sp:5s} {nm}"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.measure_labels", description=__doc__)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    a = ap.parse_args(argv)
    parts = {
        "Challenge 2020 set (494)": find_records([DATA / "challenge2020"])[: a.limit],
        "PTB-XL sample (48, 100 Hz)": find_records([DATA / "ptbxl" / "sample"])[: a.limit],
    }
    res = {k: agreement(v) for k, v in parts.items() if v}
    print(table(res))
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "measure_labels.json").write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
