"""Evaluate a bundle on records exactly as the edge runs it.

Each record goes through ``edge.records`` -> ``edge.dsp`` -> ``edge.framer``
-> ``edge.classify`` (onnxruntime + the bundle's heads): the frames the edge
would emit, scored as it scores them. A record's score per class is the
maximum over its frames (an alert fires if any frame is positive); its
decision is that score against the bundle's threshold.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.agent import score_record
from edge.bundle import Bundle, load_bundle
from edge.classify import Classifier
from edge.errors import EcgEdgeError, check_choice
from edge.records import read_record
from trainer.data import Item, progress, scan
from trainer.labels import NORMAL_CODE, reward_matrix
from trainer.metrics import Scores, score_all
from trainer.pipeline import HOP_SAMPLES


@dataclass
class Evaluation:
    """Record-level scores and figures of one bundle at one precision."""

    precision: str
    names: list[str]
    labels: np.ndarray  # (n, K) bool
    scores: np.ndarray  # (n, K) float
    decisions: np.ndarray  # (n, K) bool
    figures: Scores


def evaluate_items(
    bundle: Bundle,
    items: list[Item],
    precisions: list[str],
    threads: int = 2,
    leads: str = "as-recorded",
) -> dict[str, Evaluation]:
    """Score ``items`` at each precision through :func:`edge.agent.score_record`.

    ``leads``: ``as-recorded``; ``restored`` (a reversal or inverted lead the
    agent's lead checks find on the first 10 s is undone first, as the agent
    does once its alarm is confirmed); ``reversed`` (LA/RA swapped on every
    record, to measure what a swap costs); ``reversed-restored`` (swapped, then
    checked and restored).
    """
    check_choice("leads", leads, LEAD_MODES)
    if not items:
        raise EcgEdgeError("no usable records to evaluate")
    codes = list(bundle.manifest.codes)
    labels = np.array([it.labels for it in items])
    classifiers = {p: Classifier(bundle, p, threads=threads) for p in precisions}
    scores = {p: np.zeros(labels.shape) for p in precisions}
    # one record in memory at a time: the full Challenge set is 43,101 of them
    for i, it in enumerate(progress(items, "scoring")):
        rec = _leads(read_record(it.header), leads)
        for p, clf in classifiers.items():
            scores[p][i] = np.max([s for _, s in score_record(clf, rec, HOP_SAMPLES)], axis=0)
    out = {}
    head = bundle.head
    for p, s in scores.items():
        d = s >= head.thresholds  # decided on the raw scores, as the edge decides
        shown = head.probabilities(s) if head.calibrated else s  # probabilities when calibrated
        figures = score_all(labels, d, shown, codes)
        out[p] = Evaluation(p, [it.name for it in items], labels, shown, d, figures)
    return out


LEAD_MODES = ("as-recorded", "restored", "reversed", "reversed-restored")


def _leads(rec, mode: str):
    """The record with its leads as ``mode`` says (see :func:`evaluate_items`)."""
    from dataclasses import replace

    from edge.reversal import restore_record, reverse_la_ra

    if mode == "as-recorded" or rec.signal.shape[0] != 12:
        return rec
    x = rec.signal
    if mode.startswith("reversed"):
        x = reverse_la_ra(x)
    if mode.endswith("restored"):
        x, _ = restore_record(x, rec.fs)
    return replace(rec, signal=x)


def brier(ev: Evaluation) -> float | None:
    """Mean squared error of the probabilities against the labels (None for raw scores)."""
    if ev.scores.min() < 0 or ev.scores.max() > 1:
        return None
    return float(np.mean((ev.scores - ev.labels) ** 2))


def evaluate(
    bundle_path: Path | None,
    data: list[Path],
    precision: str = "int8",
    outputs: Path | None = None,
    report: Path | None = None,
    json_path: Path | None = None,
    log=print,
    leads: str = "as-recorded",
    fold: int = 0,
) -> dict[str, Evaluation]:
    """The ``ecg-train evaluate`` command."""
    check_choice("precision", precision, ("int8", "fp32", "both"))
    precisions = ["int8", "fp32"] if precision == "both" else [precision]
    bundle = load_bundle(bundle_path)
    rep = scan(data)
    if rep.skipped:
        log(rep.describe())
    items = rep.items
    if fold:
        items = [it for it in items if it.strat_fold == fold]
        log(f"#StratFold {fold}: {len(items)} of {len(rep.items)} records")
    if not items:
        raise EcgEdgeError(f"no usable records under {', '.join(map(str, data))}")
    log(f"scoring {len(items)} records with bundle {bundle.path} ({bundle.manifest.model})")
    if leads != "as-recorded":
        log(f"leads: {leads}")
    results = evaluate_items(bundle, items, precisions, leads=leads)
    for p, ev in results.items():
        f = {**ev.figures.to_json(), "brier": brier(ev)}
        log(f"{p:>5}: " + "  ".join(f"{k} {_fmt(v)}" for k, v in f.items()))
        if outputs is not None:
            write_outputs(outputs / p if len(results) > 1 else outputs, ev, bundle.manifest.codes)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(
            json.dumps(
                {p: {**ev.figures.to_json(), "brier": brier(ev)} for p, ev in results.items()},
                indent=2,
            )
            + "\n"
        )
    if report is not None:
        write_report(report, bundle, results)
        log(f"report written to {report / 'report.md'}")
    return results


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def write_outputs(folder: Path, ev: Evaluation, codes: tuple[str, ...]) -> None:
    """One Challenge-format ``<record>.csv`` per record."""
    from trainer.challenge_io import write_output

    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(ev.names):
        write_output(folder / f"{name}.csv", name, list(codes), ev.decisions[i], ev.scores[i])


def write_report(folder: Path, bundle: Bundle, results: dict[str, Evaluation]) -> None:
    """Markdown tables (overall, per class) and PNG plots (ROC/PR per class, reward picture)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    m = bundle.manifest
    abbr = {c.code: c.abbreviation for c in m.classes}
    lines = [f"# Evaluation of bundle `{bundle.sha256[:12]}` ({m.model})", ""]
    lines += [
        "| precision | AUROC | AUPRC | accuracy | F-measure | F-beta | G-beta | Challenge |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p, ev in results.items():
        f = {**ev.figures.to_json(), "brier": brier(ev)}
        lines.append(f"| {p} | " + " | ".join(_fmt(v) for v in f.values()) + " |")
    for p, ev in results.items():
        lines += [
            "",
            f"## Per class ({p})",
            "",
            "| class | code | positives | predicted | AUROC | AUPRC | F-measure |",
            "|---|---|---|---|---|---|---|",
        ]
        per = ev.figures.per_class_json()
        for j, code in enumerate(m.codes):
            pc = per[code]
            lines.append(
                f"| {abbr[code]} | {code} | {int(ev.labels[:, j].sum())} | "
                f"{int(ev.decisions[:, j].sum())} | {_fmt(pc['auroc'])} | {_fmt(pc['auprc'])} | "
                f"{_fmt(pc['f_measure'])} |"
            )
        fig = _curves(plt, ev, [abbr[c] for c in m.codes])
        fig.savefig(folder / f"curves_{p}.png", dpi=80)
        plt.close(fig)
        fig = _reward_picture(plt, ev, [abbr[c] for c in m.codes], list(m.codes))
        fig.savefig(folder / f"confusion_{p}.png", dpi=80)
        plt.close(fig)
        lines += [
            "",
            f"![ROC and PR curves]({'curves_' + p + '.png'})",
            f"![Confusion over the reward matrix]({'confusion_' + p + '.png'})",
        ]
    (folder / "report.md").write_text("\n".join(lines) + "\n")


def _roc_pr(y: np.ndarray, s: np.ndarray):
    order = np.argsort(-s, kind="stable")
    y = y[order]
    tp = np.cumsum(y)
    fp = np.cumsum(~y)
    tpr = tp / max(y.sum(), 1)
    fpr = fp / max((~y).sum(), 1)
    prec = tp / np.arange(1, len(y) + 1)
    return np.r_[0, fpr], np.r_[0, tpr], np.r_[0, tpr], np.r_[1, prec]


def _curves(plt, ev: Evaluation, names: list[str]):
    k = len(names)
    cols = 6
    rows = -(-k // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 2.6 * rows))
    for j, ax in enumerate(np.ravel(axes)):
        if j >= k:
            ax.axis("off")
            continue
        y = ev.labels[:, j].astype(bool)
        ax.set_title(f"{names[j]} (n+={int(y.sum())})", fontsize=8)
        if y.any() and (~y).any():
            fpr, tpr, rec, prec = _roc_pr(y, ev.scores[:, j])
            ax.plot(fpr, tpr, label="ROC")
            ax.plot(rec, prec, label="PR")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.tick_params(labelsize=6)
    np.ravel(axes)[0].legend(fontsize=6)
    fig.tight_layout()
    return fig


def _reward_picture(plt, ev: Evaluation, names: list[str], codes: list[str]):
    """The Challenge's modified confusion matrix, shaded by the reward of each cell."""
    lab, out = ev.labels.astype(bool), ev.decisions.astype(bool)
    k = lab.shape[1]
    a = np.zeros((k, k))
    for i in range(len(lab)):
        norm = max(np.any([lab[i], out[i]], axis=0).sum(), 1)
        a += np.outer(lab[i], out[i]) / norm
    w = reward_matrix(codes)
    fig, ax = plt.subplots(figsize=(9, 8))
    ax.imshow(w, cmap="Greens", vmin=0, vmax=1, alpha=0.5)
    for (r, c), v in np.ndenumerate(a):
        if v > 0:
            ax.text(
                c, r, f"{v:.0f}" if v >= 1 else f"{v:.1f}", ha="center", va="center", fontsize=6
            )
    ax.set_xticks(range(k), names, rotation=90, fontsize=6)
    ax.set_yticks(range(k), names, fontsize=6)
    ax.set_xlabel("output")
    ax.set_ylabel("label")
    ax.set_title(f"Modified confusion ({ev.precision}); shade = reward; normal = {NORMAL_CODE}")
    fig.tight_layout()
    return fig
