"""Phase 1 feature extractors: Model 1 (plain CNN) and Model 2 (16-block ResNet).

Both take (batch, n_leads, n_samples) float32 normalised frames (from
``edge.dsp``) and expose :meth:`features` (the output of the last layer before
the dense layers: global average and max pooling of the last convolution)
separately from :meth:`forward` (features -> dense layers -> one logit per
class). Only :meth:`features` is exported to ONNX for the edge.

The widths are small on purpose: the edge budget is a few ms per 30 s frame
on one core, and a few hundred training records do not support more.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class CnnConfig:
    """Model 1: conv + batch norm + ReLU + max pool, stacked."""

    n_leads: int = 12
    n_classes: int = 24
    # For 10 s windows at 100 Hz (1000 samples): 31 positions left after the pools.
    widths: tuple[int, ...] = (32, 64, 64, 128, 128)
    kernels: tuple[int, ...] = (7, 7, 5, 5, 3)
    pools: tuple[int, ...] = (2, 2, 2, 2, 2)
    # Dilation of each stage's convolution: (1, 1, 1, 2, 4) widens the receptive field
    # from about 1 s to about 2.3 s at 100 Hz (two or three beats: R-R irregularity) at
    # the same parameters and compute.
    dilations: tuple[int, ...] = (1, 1, 1, 1, 1)
    first_stride: int = 1
    dense: int = 64
    dropout: float = 0.3


@dataclass(frozen=True)
class ResNetConfig:
    """Model 2: stem, 16 residual blocks (two convs each), downsampling every 4 blocks."""

    n_leads: int = 12
    n_classes: int = 24
    stem_width: int = 24
    stem_kernel: int = 15
    stem_stride: int = 1
    stem_pool: int = 2
    widths: tuple[int, ...] = (24, 32, 48, 64)  # one per stage
    blocks_per_stage: int = 4
    kernel: int = 7
    dense: int = 64
    dropout: float = 0.3


class Cnn(nn.Module):
    """Model 1: stacked 1-D convolutions and max pooling, dense layers at the end."""

    def __init__(self, cfg: CnnConfig = CnnConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        layers: list[nn.Module] = []
        c_in = cfg.n_leads
        if len(cfg.dilations) != len(cfg.widths):
            raise ValueError(f"{len(cfg.widths)} stages need as many dilations: {cfg.dilations}")
        for i, (w, k, p, d) in enumerate(zip(cfg.widths, cfg.kernels, cfg.pools, cfg.dilations)):
            stride = cfg.first_stride if i == 0 else 1
            layers += [
                nn.Conv1d(c_in, w, k, stride=stride, padding=d * (k // 2), dilation=d, bias=False),
                nn.BatchNorm1d(w),
                nn.ReLU(inplace=True),
                nn.MaxPool1d(p),
            ]
            c_in = w
        self.body = nn.Sequential(*layers)
        self.n_features = 2 * c_in
        self.head = _dense_head(self.n_features, cfg.dense, cfg.n_classes, cfg.dropout)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, n_leads, n_samples) -> (batch, n_features / 2, n_positions)."""
        return self.body(x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, n_leads, n_samples) -> (batch, n_features)."""
        return global_pool(self.feature_map(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, n_leads, n_samples) -> (batch, n_classes) logits."""
        return self.head(self.features(x))


class ResBlock(nn.Module):
    """conv-BN-ReLU-conv-BN plus a skip (1x1 conv where the shape changes), then ReLU."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int) -> None:
        super().__init__()
        pad = kernel // 2
        self.conv1 = nn.Conv1d(c_in, c_out, kernel, stride=stride, padding=pad, bias=False)
        self.bn1 = nn.BatchNorm1d(c_out)
        self.conv2 = nn.Conv1d(c_out, c_out, kernel, padding=pad, bias=False)
        self.bn2 = nn.BatchNorm1d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.skip: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.skip = nn.Sequential(
                nn.Conv1d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm1d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + self.skip(x))


class ResNet(nn.Module):
    """Model 2: a deep 1-D residual network of 16 blocks (4 stages of 4)."""

    def __init__(self, cfg: ResNetConfig = ResNetConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        k = cfg.stem_kernel
        self.stem = nn.Sequential(
            nn.Conv1d(
                cfg.n_leads, cfg.stem_width, k, stride=cfg.stem_stride, padding=k // 2, bias=False
            ),
            nn.BatchNorm1d(cfg.stem_width),
            nn.ReLU(inplace=True),
            nn.MaxPool1d(cfg.stem_pool),
        )
        blocks: list[nn.Module] = []
        c_in = cfg.stem_width
        for s, w in enumerate(cfg.widths):
            for b in range(cfg.blocks_per_stage):
                stride = 2 if (b == 0 and s > 0) else 1
                blocks.append(ResBlock(c_in, w, cfg.kernel, stride))
                c_in = w
        self.blocks = nn.ModuleList(blocks)
        self.n_features = 2 * c_in
        self.head = _dense_head(self.n_features, cfg.dense, cfg.n_classes, cfg.dropout)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, n_leads, n_samples) -> (batch, n_features / 2, n_positions)."""
        y = self.stem(x)
        for block in self.blocks:
            y = block(y)
        return y

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, n_leads, n_samples) -> (batch, n_features)."""
        return global_pool(self.feature_map(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, n_leads, n_samples) -> (batch, n_classes) logits."""
        return self.head(self.features(x))


class FeatureExtractor(nn.Module):
    """Wraps a model so that ``forward`` is its ``feature_map``: what is exported to ONNX.

    The global pooling is left to the edge (``edge.classify.pool_features``),
    which does it exactly on the int8 graph's output: no float reduction
    whose order could differ between CPUs.
    """

    def __init__(self, model: Cnn | ResNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.feature_map(x)


def global_pool(y: torch.Tensor) -> torch.Tensor:
    """(batch, C, T) -> (batch, 2C): mean then max over time, as ``edge.classify`` does."""
    return torch.cat([y.mean(dim=-1), y.amax(dim=-1)], dim=1)


def _dense_head(n_in: int, n_hidden: int, n_out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Dropout(dropout),
        nn.Linear(n_in, n_hidden),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(n_hidden, n_out),
    )


MODELS = {"cnn": (Cnn, CnnConfig), "resnet": (ResNet, ResNetConfig)}


def build_model(name: str, n_classes: int, width: float = 1.0, **overrides) -> Cnn | ResNet:
    """Build Model 1 (``cnn``) or Model 2 (``resnet``) with its default configuration,
    every convolution's width (and the dense layer's) multiplied by ``width``."""
    from edge.errors import check_choice, check_positive

    cls, cfg_cls = MODELS[check_choice("model", name, tuple(MODELS))]
    check_positive("width", width)
    if width != 1.0:
        base = cfg_cls()
        scale = lambda w: max(4, round(w * width))  # noqa: E731
        overrides.setdefault("widths", tuple(scale(w) for w in base.widths))
        overrides.setdefault("dense", scale(base.dense))
        if isinstance(base, ResNetConfig):
            overrides.setdefault("stem_width", scale(base.stem_width))
    return cls(cfg_cls(n_classes=n_classes, **overrides))


def model_config(model: Cnn | ResNet) -> dict:
    """The model's hyperparameters as plain JSON (for checkpoints and the manifest)."""
    return asdict(model.cfg)
