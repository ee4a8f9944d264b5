"""Phase 1: train a feature extractor (Model 1 or 2) with a multi-label sigmoid head.

Input windows come from the cached ``edge.dsp`` signals at the model rate
(``edge.dsp.to_model_rate``) and are cut as the edge cuts them
(``edge.dsp.make_frame`` + ``normalize_window``, one window of ``window_samples``),
with augmentation for what differs between a training record and a new
device: random crops of longer records, random shorter lengths (2.5 s and
up) padded at the end (short records, the first frames of a live stream),
random noise and baseline wander, and a random gain: per lead (0.7-1.3, a no-op
after per-lead z-scoring except through the noise it scales), or, where the
model sees millivolts (``norm="mv"``), one gain for the whole record (0.8-1.25,
as front ends and skin differ) times a small one per lead (0.95-1.05), so that
the ratios between leads (the axis) and low voltage survive.

Runs on one CPU, one GPU, or several processes under ``torchrun``
(DistributedDataParallel; each rank trains on its shard of every epoch,
rank 0 validates, checkpoints and logs).
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edge.dsp import MODEL_FS, NORMS, WINDOW_SAMPLES, DspConfig, make_frame, normalize_window
from edge.errors import ConfigError, EcgEdgeError, check_choice
from trainer.labels import NORMAL_CODE, class_codes, reward_matrix
from trainer.metrics import challenge_metric
from trainer.models import CnnConfig, build_model, model_config


@dataclass(frozen=True)
class TrainConfig:
    """Phase 1 hyperparameters (all of them: nothing hides in ``__main__``)."""

    model: str = "cnn"  # Model 1: as good as Model 2 across hospitals here (README)
    width: float = 1.0  # multiplies every layer's width (trainer.models.build_model)
    epochs: int = 30
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-2
    patience: int = 8  # counted only in the schedule's last third (stopped_early)
    seed: int = 0
    device: str = "auto"
    threads: int = 0  # 0: torch's default
    min_seconds: float = 2.5  # shortest random crop
    p_shorten: float = 0.3
    noise_mv: float = 0.05
    wander_mv: float = 0.1
    pos_weight_max: float = 10.0
    ema: float = 0.0  # decay of an exponential moving average of the weights, per step; 0: off
    norm: str = "lead"  # edge.dsp.DspConfig.norm: "lead" z-scores each lead, "mv" keeps amplitude
    dilations: tuple[int, ...] = ()  # Model 1's per-stage dilations; (): its default (all 1)

    def __post_init__(self) -> None:
        check_choice("model", self.model, ("cnn", "resnet"))
        check_choice("device", self.device, ("auto", "cpu", "cuda"))
        check_choice("norm", self.norm, NORMS)
        n_stages = len(CnnConfig().widths)
        if self.dilations and (
            self.model != "cnn" or min(self.dilations) < 1 or len(self.dilations) != n_stages
        ):
            raise ConfigError(
                f"Invalid value for 'dilations': {self.dilations} "
                f"(Model 1 only, one integer >= 1 for each of its {n_stages} stages)"
            )
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("Invalid value for 'epochs'/'batch_size': expected >= 1")
        if not 0.0 <= self.ema < 1.0:
            raise ConfigError(f"Invalid value for 'ema': {self.ema} (expected 0 <= ema < 1)")


def stopped_early(epochs_done: int, best_epoch: int, cfg: TrainConfig) -> bool:
    """Whether patience has run out: counted only in the last third of the one-cycle schedule.

    While the learning rate is high the validation metric wanders; a patience counted from
    the first epoch stopped a run before its rate came down (trainer/EXPERIMENTS.md).
    """
    last_third = math.ceil(cfg.epochs * 2 / 3)
    return epochs_done - max(best_epoch, last_third) >= cfg.patience


def pick_device(name: str) -> torch.device:
    """``auto`` takes CUDA when there is one; ``cuda`` without one is an error."""
    if name == "cuda" and not torch.cuda.is_available():
        raise EcgEdgeError("--device cuda was asked for but no CUDA device is available here")
    if name in ("cuda", "auto") and torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def augment(
    x: np.ndarray,
    rng: np.random.Generator,
    cfg: TrainConfig,
    fs: float = MODEL_FS,
    n_frame: int = WINDOW_SAMPLES,
) -> tuple[np.ndarray, int]:
    """One random training view of a record at the model rate (n_leads, n) -> (window, n_valid)."""
    n = x.shape[1]
    if n > n_frame:
        start = int(rng.integers(0, n - n_frame + 1))
        x = x[:, start : start + n_frame]
        n = n_frame
    min_n = int(cfg.min_seconds * fs)
    if n > min_n and rng.random() < cfg.p_shorten:
        x = x[:, : int(rng.integers(min_n, n + 1))]
    x = x.astype(np.float32)
    if cfg.noise_mv > 0:
        x = x + rng.normal(0, rng.uniform(0, cfg.noise_mv), x.shape).astype(np.float32)
    if cfg.wander_mv > 0:
        t = np.arange(x.shape[1]) / fs
        f = rng.uniform(0.05, 0.5)
        amp = rng.uniform(0, cfg.wander_mv, (x.shape[0], 1))
        x = x + (amp * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))).astype(np.float32)
    if cfg.norm == "mv":
        gain = np.exp(rng.uniform(np.log(0.8), np.log(1.25))) * rng.uniform(0.95, 1.05, (len(x), 1))
    else:
        gain = rng.uniform(0.7, 1.3, (x.shape[0], 1))
    x = x * gain.astype(np.float32)
    return make_frame(x, n_frame)


def dsp_config(cfg: TrainConfig) -> DspConfig:
    """The preprocessing this run trains with (and writes into its bundle's manifest)."""
    return DspConfig(norm=cfg.norm)


def eval_frame(
    x: np.ndarray, n_frame: int = WINDOW_SAMPLES, config: DspConfig | None = None
) -> np.ndarray:
    """The deterministic window of a record for validation: its last one, as the edge's last."""
    frame, n_valid = make_frame(x.astype(np.float32), n_frame)
    return normalize_window(frame, n_valid, config)


def batches(
    signals: list[np.ndarray],
    labels: np.ndarray,
    idx: np.ndarray,
    cfg: TrainConfig,
    rng: np.random.Generator,
):
    """Yield (x, y) float tensors of augmented frames for the records ``idx``."""
    config = dsp_config(cfg)
    for s in range(0, len(idx), cfg.batch_size):
        chunk = idx[s : s + cfg.batch_size]
        frames = []
        for i in chunk:
            frame, n_valid = augment(signals[i], rng, cfg)
            frames.append(normalize_window(frame, n_valid, config))
        yield torch.from_numpy(np.stack(frames)), torch.from_numpy(labels[chunk].astype(np.float32))


def predict(
    model: nn.Module, frames: np.ndarray, device: torch.device, batch: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """(n, 12, window) windows -> (sigmoid probabilities (n, K), features (n, D))."""
    model.eval()
    probs, feats = [], []
    with torch.no_grad():
        for s in range(0, len(frames), batch):
            x = torch.from_numpy(frames[s : s + batch]).to(device)
            f = model.features(x)
            probs.append(torch.sigmoid(model.head(f)).cpu().numpy())
            feats.append(f.cpu().numpy())
    return np.concatenate(probs), np.concatenate(feats)


@dataclass
class FitResult:
    model: nn.Module
    history: list[dict]
    best_epoch: int
    best_metric: float
    seconds_per_epoch: float


def _dist() -> tuple[int, int]:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            dist.init_process_group(backend)
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _stop_agreed(stop: bool, world: int) -> bool:
    """Rank 0's early-stopping decision, the same on every rank (else the others wait forever)."""
    if world == 1:
        return stop
    import torch.distributed as dist

    flag = torch.tensor([int(stop)])
    dist.broadcast(flag, src=0)
    return bool(flag.item())


def _leave_group() -> None:
    """Every rank waits here for the others, then the process group is torn down cleanly.

    A rank that exits with its group still open while another still trains or writes
    can abort in gloo's teardown (SIGABRT), and torchrun then kills the survivor.
    """
    import torch.distributed as dist

    dist.barrier()
    dist.destroy_process_group()


def train_extractor(
    signals: list[np.ndarray],
    labels: np.ndarray,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    cfg: TrainConfig,
    workdir: Path,
    resume: bool = False,
    log=print,
    stop_after: int | None = None,
) -> FitResult:
    """Train Model 1 or 2 on ``train_idx``, early-stopping on the Challenge metric of ``val_idx``.

    Writes ``checkpoint.pt`` (last epoch, for ``resume``), ``best.pt`` and
    ``train_log.jsonl`` (one line per epoch) into ``workdir``.
    """
    from tqdm import tqdm

    rank, world = _dist()
    device = pick_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    workdir.mkdir(parents=True, exist_ok=True)
    n_classes = labels.shape[1]
    extra = {"dilations": tuple(cfg.dilations)} if cfg.dilations else {}
    model = build_model(cfg.model, n_classes, width=cfg.width, **extra).to(device)
    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(train_idx) / world / cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=max(1, cfg.epochs * steps_per_epoch), pct_start=0.2
    )
    pos = labels[train_idx].sum(0)
    neg = len(train_idx) - pos
    pw = np.clip(neg / np.maximum(pos, 1), 1.0, cfg.pos_weight_max).astype(np.float32)
    ema = _ema_model(model, cfg.ema)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.from_numpy(pw).to(device))
    dsp = dsp_config(cfg)
    val_frames = (
        np.stack([eval_frame(signals[i], config=dsp) for i in val_idx]) if len(val_idx) else None
    )
    weights = reward_matrix(class_codes()) if n_classes == len(class_codes()) else None
    normal = class_codes().index(NORMAL_CODE) if weights is not None else 0

    start_epoch, history, best, best_epoch = 0, [], -np.inf, -1
    ckpt_path, best_path = workdir / "checkpoint.pt", workdir / "best.pt"
    if resume and ckpt_path.is_file():
        ck = torch.load(ckpt_path, map_location=device, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        sched.load_state_dict(ck["sched"])
        if ema is not None:
            if ck.get("ema") is None:
                raise ConfigError(f"{ckpt_path} was trained without --ema: resume it without")
            ema.load_state_dict(ck["ema"])
        start_epoch, history = ck["epoch"] + 1, ck["history"]
        best, best_epoch = ck["best"], ck["best_epoch"]
        if start_epoch >= cfg.epochs or stopped_early(start_epoch, best_epoch, cfg):
            start_epoch = cfg.epochs  # that run had finished (or stopped early): nothing to do
            log(f"{ckpt_path} is a finished run (best epoch {best_epoch}); reusing it")
        else:
            log(f"resumed from {ckpt_path} at epoch {start_epoch}")
    elif resume:
        log(f"no checkpoint in {workdir}; starting from scratch")
    times = []
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        if stop_after is not None and epoch - start_epoch >= stop_after:
            break  # an interruption, as a test would make one
        rng = np.random.default_rng([cfg.seed, epoch])
        torch.manual_seed(cfg.seed * 100_003 + epoch)  # per epoch, so a resumed run repeats
        order = rng.permutation(train_idx)
        order = order[: len(order) // world * world][rank::world]  # equal shards: DDP steps agree
        net.train()
        total, count = 0.0, 0
        bar = tqdm(
            batches(signals, labels, order, cfg, rng),
            total=math.ceil(len(order) / cfg.batch_size),
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            file=sys.stderr,
            leave=False,
            disable=rank != 0 or not sys.stderr.isatty(),
        )
        for x, y in bar:
            x, y = x.to(device), y.to(device)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(x), y)
            loss.backward()
            opt.step()
            sched.step()
            if ema is not None:
                ema.update_parameters(model)
            total += loss.item() * len(x)
            count += len(x)
            bar.set_postfix(loss=f"{total / count:.4f}")
        times.append(time.perf_counter() - t0)
        if rank != 0:
            if _stop_agreed(False, world):
                break
            continue
        row = {"epoch": epoch + 1, "loss": total / max(count, 1), "seconds": times[-1]}
        judged = model if ema is None else ema.module  # what is validated and kept
        if val_frames is not None and weights is not None:
            probs, _ = predict(judged, val_frames, device)
            row["val_challenge_metric"] = float(
                challenge_metric(labels[val_idx], probs >= 0.5, weights, normal)
            )
        metric = row.get("val_challenge_metric", -row["loss"])
        if metric > best:
            best, best_epoch = metric, epoch + 1
            torch.save(
                {
                    "model": judged.state_dict(),
                    "config": model_config(model),
                    "train": asdict(cfg),
                    "epoch": epoch + 1,
                },
                best_path,
            )
        history.append(row)
        with open(workdir / "train_log.jsonl", "a") as fh:
            fh.write(json.dumps(row) + "\n")
        torch.save(
            {
                "model": model.state_dict(),
                "opt": opt.state_dict(),
                "sched": sched.state_dict(),
                "ema": ema.state_dict() if ema is not None else None,
                "epoch": epoch,
                "history": history,
                "best": best,
                "best_epoch": best_epoch,
            },
            ckpt_path,
        )
        vm = row.get("val_challenge_metric")
        left_min = (cfg.epochs - epoch - 1) * float(np.median(times)) / 60
        log(
            f"epoch {epoch + 1:3d}  loss {row['loss']:.4f}  "
            + (f"val challenge {vm:.3f}  " if vm is not None else "")
            + f"({times[-1]:.1f} s; at most ~{left_min:.0f} min left)"
        )
        stop = stopped_early(epoch + 1, best_epoch, cfg)
        if stop:
            log(f"early stop: no better validation metric for {cfg.patience} epochs")
        if _stop_agreed(stop, world):
            break
    if world > 1:
        _leave_group()  # phase 1 is the only distributed part: rank 0 goes on alone
    if rank == 0 and best_path.is_file():
        model.load_state_dict(torch.load(best_path, map_location=device)["model"])
    model.eval()
    if not times:  # a finished run reused: report the time it took
        times = [r["seconds"] for r in history]
    return FitResult(
        model.cpu(), history, best_epoch, float(best), float(np.median(times)) if times else 0.0
    )


def _ema_model(model: nn.Module, decay: float):
    """A running average of ``model``'s weights and batch-norm statistics (None when decay is 0).

    Averaging the weights of the last few thousand steps smooths the noise of the final
    epochs of SGD, for the price of one copy of the model; the average is what is validated,
    checkpointed as the best model and exported.
    """
    if not decay:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def load_checkpoint(path: Path) -> nn.Module:
    """Rebuild a model from a ``best.pt`` checkpoint."""
    ck = torch.load(path, map_location="cpu", weights_only=False)
    cfg = dict(ck["config"])
    name = ck["train"]["model"]
    n_classes = cfg.pop("n_classes")
    model = build_model(
        name, n_classes, **{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()}
    )
    model.load_state_dict(ck["model"])
    return model.eval()
