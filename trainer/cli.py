"""ecg-train: the trainer's command line. Each command is a small function over a module."""

from __future__ import annotations

import json
import math
import sys
import warnings
from pathlib import Path

import typer

from edge._cli import entry_point
from edge.errors import ScoringError

app = typer.Typer(pretty_exceptions_enable=False, no_args_is_help=True, add_completion=False)
main = entry_point(app)


@app.callback()
def _root() -> None:
    """Train, evaluate and score 12-lead ECG classifiers (PhysioNet/CinC Challenge 2020)."""


_FIGURE_NAMES = {
    "auroc": "AUROC",
    "auprc": "AUPRC",
    "accuracy": "Accuracy",
    "f_measure": "F-measure",
    "f_beta": "Fbeta-measure",
    "g_beta": "Gbeta-measure",
    "challenge_metric": "Challenge metric",
}


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


@app.command()
def score(
    labels_dir: Path = typer.Argument(
        ..., help="Folder of WFDB headers (*.hea) with '#Dx:' lines."
    ),
    outputs_dir: Path = typer.Argument(..., help="Folder of Challenge output files <record>.csv."),
    json_path: Path | None = typer.Option(
        None, "--json", help="Also write the seven figures to this JSON file."
    ),
) -> None:
    """Score Challenge output files against header labels, as the 2020 Challenge does."""
    from trainer.challenge_io import load_scoring_set
    from trainer.metrics import score_all

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_scoring_set(labels_dir, outputs_dir)
    for w in caught:
        _warn(str(w.message))
    n = len(data.records)
    if data.missing:
        shown = ", ".join(data.missing[:5]) + (", ..." if len(data.missing) > 5 else "")
        _warn(f"{len(data.missing)} of {n} records have no output file, scored as all 0: {shown}")
    if data.unmatched:
        shown = ", ".join(data.unmatched[:5]) + (", ..." if len(data.unmatched) > 5 else "")
        _warn(f"{len(data.unmatched)} output files have no labelled record, ignored: {shown}")

    result = score_all(data.labels, data.outputs, data.scores, data.classes)
    figures = result.to_json()
    print(f"{n} records, {len(data.classes)} classes")
    for key, label in _FIGURE_NAMES.items():
        value = figures[key]
        print(f"{label:<17} {'nan' if value is None or math.isnan(value) else f'{value:.3f}'}")
    if json_path is not None:
        try:
            json_path.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            raise ScoringError(f"{json_path}: cannot be written ({exc.strerror})") from None
