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


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _int_list(flag: str, text: str) -> tuple[int, ...]:
    """``"1,1,2"`` -> (1, 1, 2); a bad list is a one-line error naming the flag."""
    from edge.errors import ConfigError

    if not text.strip():
        return ()
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(
            f"Invalid value for '{flag}': {text!r} (expected integers separated by commas)"
        ) from None


def _train_config(
    model: str,
    epochs: int,
    device: str,
    seed: int,
    batch_size: int,
    patience: int,
    threads: int,
    width: float = 1.0,
    p_shorten: float = 0.3,
    ema: float = 0.0,
    norm: str = "lead",
    dilations: str = "",
):
    from trainer.fit import TrainConfig

    return TrainConfig(
        model=model,
        width=width,
        p_shorten=p_shorten,
        ema=ema,
        norm=norm,
        dilations=_int_list("--dilations", dilations),
        epochs=epochs,
        device=device,
        seed=seed,
        batch_size=batch_size,
        patience=patience,
        threads=threads,
    )


@app.command()
def fit(
    data: list[Path] = typer.Argument(..., help="Folders or records of WFDB training data."),
    model: str = typer.Option(
        "cnn", "--model", help="cnn (Model 1, the shipped one) or resnet (Model 2)."
    ),
    out: Path = typer.Option(..., "--out", help="Bundle folder to write."),
    width: float = typer.Option(
        1.0, "--width", min=0.25, max=8.0, help="Multiply every layer's width (1: the default)."
    ),
    epochs: int = typer.Option(30, "--epochs", min=1),
    p_shorten: float = typer.Option(
        0.3,
        "--p-shorten",
        min=0.0,
        max=1.0,
        help="Share of training crops cut shorter than 10 s (2.5 s at least); 0: whole windows.",
    ),
    ema: float = typer.Option(
        0.0,
        "--ema",
        min=0.0,
        max=0.99999,
        help="Keep an exponential moving average of the weights with this decay per step "
        "(e.g. 0.999) and validate and export it; 0: off.",
    ),
    norm: str = typer.Option(
        "lead",
        "--norm",
        help="What the model sees: lead (each lead z-scored) or mv (millivolts kept, "
        "each lead centred: low voltage and the axis stay visible). Written into the bundle.",
    ),
    dilations: str = typer.Option(
        "",
        "--dilations",
        help="Model 1: the dilation of each stage's convolution, comma-separated "
        "(e.g. 1,1,1,2,4 for a receptive field of about 2.3 s); default: none.",
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    folds: int = typer.Option(
        5, "--folds", min=2, help="Inner folds: one for early stopping, all for C and thresholds."
    ),
    seed: int = typer.Option(0, "--seed"),
    batch_size: int = typer.Option(32, "--batch-size", min=1),
    patience: int = typer.Option(8, "--patience", min=1),
    threads: int = typer.Option(0, "--threads", min=0, help="torch threads (0: default)."),
    workdir: Path | None = typer.Option(
        None, "--workdir", help="Checkpoints and logs (default OUT/../OUT.work)."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint."),
    limit: int = typer.Option(0, "--limit", min=0, help="Use only the first N records (tests)."),
    val_fold: int = typer.Option(
        9,
        "--val-fold",
        min=0,
        help="Hold out the patients of PTB-XL's #StratFold N for early stopping, C, "
        "calibration and thresholds (0, or data without #StratFold: inner folds instead).",
    ),
) -> None:
    """Train a bundle: phase 1 extractor, int8 export, phase 2 linear SVMs per class."""
    import numpy as np

    from trainer.data import load_cache, scan, tqdm_progress
    from trainer.pipeline import fit_bundle

    cfg = _train_config(
        model,
        epochs,
        device,
        seed,
        batch_size,
        patience,
        threads,
        width,
        p_shorten,
        ema,
        norm,
        dilations,
    )
    from trainer.fit import pick_device

    pick_device(cfg.device)  # fail early on --device cuda without CUDA
    rep = scan(data)
    if limit:
        rep.items = rep.items[:limit]
    _log(rep.describe())
    items, signals = load_cache(rep, progress=tqdm_progress("caching"))
    _, signals_model = load_cache(rep, model_rate=True)
    if len(items) < folds:
        raise ScoringError(f"only {len(items)} usable records: too few to train with {folds} folds")
    work = workdir or out.parent / (out.name + ".work")
    train_idx, val_idx = np.arange(len(items)), None
    if val_fold and any(it.strat_fold == val_fold for it in items):
        from trainer.data import validation_split

        train_idx, val_idx = validation_split(items, val_fold)
        _log(
            f"validation: the {len(val_idx)} records of #StratFold {val_fold} "
            f"({len({items[i].patient for i in val_idx})} patients); {len(train_idx)} train"
        )
    fit_bundle(
        items,
        signals,
        train_idx,
        cfg,
        out,
        work,
        rep.summary(),
        inner_folds=folds,
        resume=resume,
        log=_log,
        val_idx=val_idx,
        signals_model=signals_model,
    )


@app.command()
def evaluate(
    bundle: Path = typer.Argument(..., help="Bundle folder or archive."),
    data: list[Path] = typer.Argument(..., help="Folders or records to score."),
    precision: str = typer.Option("int8", "--precision", help="int8, fp32 or both."),
    outputs: Path | None = typer.Option(None, "--outputs", help="Write Challenge output files."),
    report: Path | None = typer.Option(None, "--report", help="Write a Markdown report + PNGs."),
    json_path: Path | None = typer.Option(None, "--json", help="Write the figures as JSON."),
    leads: str = typer.Option(
        "as-recorded",
        "--leads",
        help="as-recorded; restored (a reversal or inverted lead found by the agent's lead "
        "checks is undone first, as the agent does); reversed (LA/RA swapped on every "
        "record); reversed-restored (swapped, then checked and restored).",
    ),
    fold: int = typer.Option(
        0, "--fold", min=0, help="Only the records of PTB-XL's #StratFold N (0: all)."
    ),
) -> None:
    """Score records through a bundle exactly as the edge does; print the seven figures."""
    from trainer.evaluate import evaluate as run

    run(bundle, data, precision, outputs, report, json_path, log=_log, leads=leads, fold=fold)


@app.command()
def crossval(
    data: list[Path] = typer.Argument(..., help="Folders or records of WFDB data."),
    model: str = typer.Option("cnn", "--model", help="cnn (Model 1) or resnet (Model 2)."),
    out: Path = typer.Option(..., "--out", help="Folder for per-fold bundles and results."),
    folds: int = typer.Option(5, "--folds", min=2),
    by_source: bool = typer.Option(
        False, "--by-source", help="Leave one source (hospital) out instead of k-fold."
    ),
    epochs: int = typer.Option(30, "--epochs", min=1),
    device: str = typer.Option("auto", "--device"),
    seed: int = typer.Option(0, "--seed"),
    patience: int = typer.Option(8, "--patience", min=1),
    threads: int = typer.Option(0, "--threads", min=0),
    resume: bool = typer.Option(
        False, "--resume", help="Reuse each fold's finished phase 1, continue unfinished ones."
    ),
) -> None:
    """Cross-validated figures of both heads at both precisions (results.json, results.md)."""
    from trainer.crossval import crossval as run

    cfg = _train_config(model, epochs, device, seed, 32, patience, threads)
    run(data, cfg, out, folds, by_source, resume=resume, log=_log)


@app.command()
def sign(
    bundle: Path = typer.Argument(..., help="The bundle folder (sign it, then pack it)."),
    key: Path = typer.Option(..., "--key", help="Ed25519 private key (ecg-edge keygen OUT)."),
) -> None:
    """Sign a bundle's manifest (which pins every file's sha256) into manifest.sig."""
    from edge.signing import key_id, load_private_key, sign_bundle

    private = load_private_key(key)
    out = sign_bundle(bundle, private)
    raw = private.public_key().public_bytes_raw()
    print(f"signed {bundle} with key {key_id(raw)}: {out}")


if __name__ == "__main__":
    main()
