"""The whole method on one split: phase 1, export, int8 check, phase 2, bundle.

Phase 2 is fitted on the features of the extractor the edge will run (int8):
a prototype showed SVMs fitted on fp32 features and fed int8 ones lose far
more than SVMs fitted on the int8 features themselves (DESIGN.md).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from edge.bundle import Bundle, ClassInfo, Head, Manifest, write_bundle
from edge.dsp import DspConfig, output_length, preprocess
from edge.errors import EcgEdgeError
from edge.framer import record_frames
from edge.records import read_record
from trainer.data import Item, kfold, progress
from trainer.export import (
    compare_features,
    export_fp32,
    feature_session,
    quantize_int8,
    run_features,
)
from trainer.fit import TrainConfig, train_extractor
from trainer.heads import HeadReport, fit_heads, record_max, tune_thresholds
from trainer.labels import NORMAL_CODE, class_codes, reward_matrix, scored_classes

HOP_SAMPLES = 5000  # the edge's default hop, 10 s at 500 Hz
MAX_INT8_LOSS = 0.02


def record_model_inputs(
    item: Item, config: DspConfig | None = None, hop_samples: int = HOP_SAMPLES
) -> np.ndarray:
    """(n_frames, 12, 15000) model inputs of one record, cut by the edge's own code."""
    config = config or DspConfig()
    rec = read_record(item.header)
    x = preprocess(rec.signal, rec.fs, config)
    frames = record_frames(x, hop_samples, config.frame_samples)
    return np.stack([fr.model_input(config) for fr in frames])


def n_frames_of(item: Item, hop_samples: int = HOP_SAMPLES) -> int:
    """How many frames the edge emits for a record, from its header alone."""
    n = output_length(item.n_samples, item.fs)
    return n // hop_samples + (1 if n % hop_samples else 0)


@dataclass
class RecordFeatures:
    """Extractor features of every frame of every record (frames are not kept)."""

    features: dict[str, np.ndarray]  # extractor name -> (n_frames, n_features)
    groups: np.ndarray  # (n_frames,) index of the record of each frame


def edge_features(
    items: list[Item], extractors: dict[str, Path], hop_samples: int = HOP_SAMPLES
) -> RecordFeatures:
    """Features of each extractor for every frame, one record in memory at a time.

    The full Challenge set (43,101 records) would need some 60 GB as frames.
    """
    sessions = {k: feature_session(p) for k, p in extractors.items()}
    feats: dict[str, list[np.ndarray]] = {k: [] for k in extractors}
    groups = []
    for i, it in enumerate(progress(items, "features")):
        frames = record_model_inputs(it, None, hop_samples)
        for k, sess in sessions.items():
            feats[k].append(run_features(sess, frames))
        groups.append(np.full(len(frames), i))
    return RecordFeatures({k: np.concatenate(v) for k, v in feats.items()}, np.concatenate(groups))


def calibration_frames(items: list[Item], n: int, seed: int) -> np.ndarray:
    """``n`` frames drawn at random among all the records' frames (for int8 calibration)."""
    counts = np.array([n_frames_of(it) for it in items])
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    picks = np.random.default_rng(seed).permutation(int(counts.sum()))[:n]
    rec_of = np.searchsorted(starts, picks, side="right") - 1
    out = np.empty((len(picks), 12, DspConfig().frame_samples), dtype=np.float32)
    for r in np.unique(rec_of):
        frames = record_model_inputs(items[r])
        for j in np.where(rec_of == r)[0]:
            out[j] = frames[picks[j] - starts[r]]
    return out


@dataclass
class FitSummary:
    bundle: Bundle
    model: torch.nn.Module
    sigmoid_thresholds: np.ndarray
    seconds_per_epoch: float
    best_epoch: int


def fit_bundle(
    items: list[Item],
    signals: list[np.ndarray],
    train_idx: np.ndarray,
    cfg: TrainConfig,
    out_dir: Path,
    workdir: Path,
    data_summary: dict,
    inner_folds: int = 5,
    resume: bool = False,
    log=print,
) -> FitSummary | None:
    """Train, export, check and write a bundle from the records ``train_idx``."""
    labels = np.array([it.labels for it in items])
    codes = class_codes()
    weights = reward_matrix(codes)
    normal = codes.index(NORMAL_CODE)
    train_idx = np.asarray(train_idx)
    inner = kfold(labels[train_idx], inner_folds, cfg.seed)
    p1_val = train_idx[inner == 0]
    p1_train = train_idx[inner != 0]
    log(f"phase 1: {cfg.model} on {len(p1_train)} records, {len(p1_val)} for early stopping")
    t0 = time.perf_counter()
    fit = train_extractor(signals, labels, p1_train, p1_val, cfg, workdir, resume, log)
    if int(os.environ.get("RANK", "0")) != 0:
        return None  # under torchrun, rank 0 alone exports and fits phase 2
    log(
        f"phase 1 done in {time.perf_counter() - t0:.0f} s "
        f"(best epoch {fit.best_epoch}, {fit.seconds_per_epoch:.1f} s/epoch)"
    )

    train_items = [items[i] for i in train_idx]
    workdir.mkdir(parents=True, exist_ok=True)
    fp32_path = export_fp32(fit.model, workdir / "extractor.fp32.onnx")
    calib = calibration_frames(train_items, 96, cfg.seed)
    int8_path = quantize_int8(fp32_path, workdir / "extractor.onnx", calib, "minmax")
    rf = edge_features(train_items, {"fp32": fp32_path, "int8": int8_path})
    feats_fp32 = rf.features["fp32"]
    frame_labels = labels[train_idx][rf.groups]
    phase2_folds, phase2_scheme = _phase2_folds(train_items, inner)
    frame_folds = phase2_folds[rf.groups]
    log(f"phase 2 folds: {phase2_scheme}")

    def heads_for(features: np.ndarray, tag: str) -> tuple[Head, HeadReport]:
        log(f"phase 2 ({tag} features): {len(codes)} linear SVMs on {len(features)} frames")
        return fit_heads(
            features, frame_labels, rf.groups, frame_folds, codes, weights, normal, log
        )

    _, rep_fp32 = heads_for(feats_fp32, "fp32")
    chosen = None
    for method in ("minmax", "percentile"):
        if method == "minmax":
            feats_int8 = rf.features["int8"]
        else:
            int8_path = quantize_int8(fp32_path, workdir / "extractor.onnx", calib, method)
            feats_int8 = edge_features(train_items, {"int8": int8_path}).features["int8"]
        agree = compare_features(feats_fp32, feats_int8)
        head_int8, rep_int8 = heads_for(feats_int8, f"int8 {method}")
        loss = rep_fp32.oof_challenge_metric - rep_int8.oof_challenge_metric
        log(
            f"int8 ({method} calibration): feature cosine median {agree.cosine_median:.4f}, "
            f"min {agree.cosine_min:.4f}; challenge metric fp32 "
            f"{rep_fp32.oof_challenge_metric:.3f} vs int8 {rep_int8.oof_challenge_metric:.3f}"
        )
        if loss <= MAX_INT8_LOSS:
            chosen = (method, agree, head_int8, rep_int8)
            break
    if chosen is None:
        raise EcgEdgeError(
            f"refusing to write the int8 extractor: it loses {loss:.3f} of the Challenge "
            f"metric against fp32 (limit {MAX_INT8_LOSS}) with every calibration tried"
        )
    method, agree, head, rep = chosen

    # The sigmoid head of phase 1, thresholds tuned on the early-stopping records.
    in_val = np.isin(train_idx[rf.groups], p1_val)
    probs = head_probabilities(fit.model, feats_fp32[in_val])
    _, prec = record_max(probs, rf.groups[in_val])  # records in train_idx order, like p1_val
    sig_thr = tune_thresholds(labels[p1_val], prec, weights, normal, init=np.full(len(codes), 0.5))

    manifest = Manifest(
        model=cfg.model,
        n_features=int(feats_fp32.shape[1]),
        classes=tuple(ClassInfo(c.code, c.abbreviation, c.name) for c in scored_classes()),
        normal_code=NORMAL_CODE,
        dsp=DspConfig(),
        training={
            "data": data_summary,
            "train_records": len(train_idx),
            "phase1": {
                "config": json.loads(json.dumps(cfg.__dict__)),
                "model": fit.model.cfg.__dict__,
                "best_epoch": fit.best_epoch,
                "epochs_run": len(fit.history),
                "seconds_per_epoch": round(fit.seconds_per_epoch, 2),
            },
            "phase2": {
                "C": rep.C,
                "skipped_classes": rep.skipped,
                "fitted_on": "int8 extractor features",
            },
            "quantization": {
                "format": "QDQ",
                "per_channel": True,
                "calibration": method,
                "calibration_frames": len(calib),
                "feature_agreement": agree.to_json(),
            },
            "hop_samples": HOP_SAMPLES,
        },
        validation={
            "oof_challenge_metric_int8": round(rep.oof_challenge_metric, 4),
            "oof_challenge_metric_fp32": round(rep_fp32.oof_challenge_metric, 4),
            "note": "out-of-fold on the training records' inner folds",
        },
    )
    bundle = write_bundle(out_dir, manifest, head, workdir / "extractor.onnx", fp32_path)
    log(f"bundle written to {out_dir} (sha256 {bundle.sha256[:12]})")
    return FitSummary(bundle, fit.model, sig_thr, fit.seconds_per_epoch, fit.best_epoch)


def _phase2_folds(train_items: list[Item], stratified: np.ndarray) -> tuple[np.ndarray, str]:
    """Inner folds for C and thresholds: one per source (hospital) when there are 3+.

    Out-of-fold scores of models that never saw a record's hospital shift as a
    new hospital's scores will, so thresholds tuned on them transfer better:
    on leave-one-source-out runs of Model 1 this raised the mean held-out
    Challenge metric from 0.170 to 0.191 (README). With fewer sources, the
    stratified folds.
    """
    sources = sorted({it.source for it in train_items})
    if len(sources) >= 3:
        folds = np.array([sources.index(it.source) for it in train_items])
        return folds, "one per source: " + ", ".join(sources)
    return stratified, f"{len(np.unique(stratified))} stratified folds (fewer than 3 sources)"


def with_validation(bundle: Bundle, figures: dict) -> Bundle:
    """Rewrite a bundle's manifest with validation figures added."""
    m = bundle.manifest
    new = replace(m, validation={**m.validation, **figures}, files={})
    return write_bundle(
        bundle.path,
        new,
        bundle.head,
        bundle.path / "extractor.onnx",
        bundle.path / "extractor.fp32.onnx",
    )


def head_probabilities(model: torch.nn.Module, features: np.ndarray) -> np.ndarray:
    """Phase 1's dense sigmoid head on extractor features: (n, D) -> (n, K) probabilities."""
    with torch.no_grad():
        return torch.sigmoid(model.head(torch.from_numpy(features))).numpy()
