"""Accuracy: the cross-validated tables written by the trainer (``runs/*/results.json``).

Nothing is recomputed here: the figures are read from the ``ecg-train``
cross-validation and leave-one-source-out outputs, ``pooled.<head>_<precision>``,
in the columns of the seed paper's Table 2 and the Challenge.
"""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks._common import REPO, print_table

METRICS = ("auroc", "auprc", "accuracy", "f_measure", "f_beta", "g_beta", "challenge_metric")
HEADS = ("svm", "sigmoid")
PRECISIONS = ("fp32", "int8")


def _table(path: Path) -> dict:
    pooled = json.loads(path.read_text()).get("pooled", {})
    out: dict = {}
    for head in HEADS:
        for prec in PRECISIONS:
            row = pooled.get(f"{head}_{prec}")
            if row:
                out.setdefault(head, {})[prec] = {m: row.get(m) for m in METRICS}
    return out


def measure(runs: Path | None = None) -> dict:
    """``accuracy.<model>.<head>.<precision>.<metric>`` (cv) and ``accuracy_lodo``."""
    runs = runs or REPO / "runs"
    out: dict = {"accuracy": {}, "accuracy_lodo": {}, "missing": []}
    for model in ("cnn", "resnet"):
        cv = runs / f"cv-{model}" / "results.json"
        if cv.is_file():
            out["accuracy"][model] = _table(cv)
            out["accuracy"][model]["source"] = str(
                cv.relative_to(REPO) if cv.is_relative_to(REPO) else cv
            )
        else:
            out["missing"].append(f"cv-{model}")
    for lodo in sorted(runs.glob("lodo-*/results.json")):
        out["accuracy_lodo"][lodo.parent.name] = _table(lodo)
    rows = []
    for model, heads in out["accuracy"].items():
        for head in HEADS:
            for prec in PRECISIONS:
                row = heads.get(head, {}).get(prec)
                if row:
                    rows.append([model, head, prec, *(row[m] for m in METRICS)])
            h = heads.get(head, {})
            if (
                "fp32" in h
                and "int8" in h
                and None
                not in (
                    h["fp32"]["challenge_metric"],
                    h["int8"]["challenge_metric"],
                )
            ):
                h["int8_minus_fp32_challenge_metric"] = (
                    h["int8"]["challenge_metric"] - h["fp32"]["challenge_metric"]
                )
    print_table("Accuracy (5-fold CV, pooled)", ["model", "head", "precision", *METRICS], rows)
    for m in out["missing"]:
        print(f"{m}: not available")
    return out
