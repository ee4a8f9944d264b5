"""Collect a hospitals-never-seen run (``scripts/experiments.sh loso``) into benchmarks/results.

    python -m benchmarks.loso_summary runs/loso-cnn-s0 [runs/loso-cnn-s1 ...]
    python -m benchmarks.loso_summary --merge runs/loso-cnn-s1 runs/loso-cnn-s2

Copies each held-out source's Challenge-format outputs (one ``<record>.csv``
per record, int8) of the first run to ``benchmarks/results/loso/<source>/``,
writes ``benchmarks/results/loso/results.json`` (per source and seed; the
mean and standard deviation over every source and seed; per seed the mean
over the sources, and the mean and standard deviation of those over the
seeds) and prints a table. ``--merge`` adds runs to the ones recorded there
(seeds trained in another session) and leaves the recorded outputs alone.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from pathlib import Path

SOURCES = ("cpsc", "georgia", "ptb", "chapman-ningbo", "ludb")
FIGURES = ("auroc", "auprc", "accuracy", "f_measure", "f_beta", "challenge_metric", "brier")
OUT = Path(__file__).parent / "results" / "loso"


def _fmt(values: list[float]) -> str:
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="run folders (one per seed)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--merge", action="store_true", help="add to the runs recorded in --out")
    args = ap.parse_args(argv)
    per: dict[str, dict[str, dict]] = {}
    recorded: list[str] = []
    if args.merge:
        old = json.loads((args.out / "results.json").read_text())
        recorded = [r for r in old["runs"] if r not in {run.name for run in args.runs}]
        for src in SOURCES:
            per[src] = {r: old["per_source"][src][r] for r in recorded}
    for run in args.runs:
        for src in SOURCES:
            f = run / f"{src}.json"
            if not f.is_file():
                print(f"loso_summary: {f} is missing", file=sys.stderr)
                return 2
            per.setdefault(src, {})[run.name] = json.loads(f.read_text())["int8"]
    first = args.runs[0]
    for src in SOURCES if not args.merge else ():
        dst = args.out / src
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(first / "outputs" / src, dst)
    runs = recorded + [r.name for r in args.runs]
    by_seed = {  # per run (seed): the mean over the sources
        k: [statistics.mean(per[s][r][k] for s in SOURCES) for r in runs] for k in FIGURES
    }
    over_seeds = {
        k: {"mean": statistics.mean(v), "sd": statistics.stdev(v) if len(v) > 1 else 0.0}
        for k, v in by_seed.items()
    }
    rows, mean = [], {}
    for k in FIGURES:
        vals = [per[s][r][k] for s in SOURCES for r in per[s] if per[s][r].get(k) is not None]
        mean[k] = {
            "mean": statistics.mean(vals),
            "sd": statistics.stdev(vals) if len(vals) > 1 else 0.0,
        }
    header = "| held-out source | " + " | ".join(FIGURES) + " |"
    rows = [header, "|" + "---|" * (len(FIGURES) + 1)]
    for src in SOURCES:
        cells = [_fmt([per[src][r][k] for r in per[src] if per[src][r].get(k) is not None])
                 for k in FIGURES]  # fmt: skip
        rows.append(f"| {src} | " + " | ".join(cells) + " |")
    rows.append(
        "| **mean ± sd over sources** | "
        + " | ".join(f"**{mean[k]['mean']:.3f} ± {mean[k]['sd']:.3f}**" for k in FIGURES)
        + " |"
    )
    rows.append(
        f"| **per seed, mean over sources: mean ± sd over {len(runs)} seeds** | "
        + " | ".join(
            f"**{over_seeds[k]['mean']:.3f} ± {over_seeds[k]['sd']:.3f}**" for k in FIGURES
        )
        + " |"
    )
    table = "\n".join(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    result = {
        "scheme": "trained on PTB-XL folds 1-8 (fold 9 validation) only; each other source unseen",
        "runs": runs,
        "per_source": per,
        "mean_over_sources": mean,
        "mean_over_sources_by_run": {k: dict(zip(runs, v)) for k, v in by_seed.items()},
        "mean_over_sources_over_seeds": over_seeds,
    }
    (args.out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "results.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
