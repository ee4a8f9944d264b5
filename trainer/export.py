"""Export: the extractor to ONNX (fp32), then int8 by static QDQ quantization.

Quantization is onnxruntime's ``quantize_static``: QDQ format, per-channel
int8 weights, int8 activations, calibrated on real training frames. At
export the int8 features are compared with fp32 (cosine, max difference);
the Challenge-metric check lives in :mod:`trainer.pipeline`, which refuses an
int8 extractor that loses more than 0.02 of the metric.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from edge.errors import EcgEdgeError
from trainer.models import FeatureExtractor

INPUT, OUTPUT = "frames", "features"
OPSET = 17


class _Frames(CalibrationDataReader):
    def __init__(self, frames: np.ndarray, batch: int = 8) -> None:
        # whole batches only: the percentile calibrator stacks batch outputs, one shape
        n = max(batch, len(frames) // batch * batch) if len(frames) >= batch else len(frames)
        self._it = iter([{INPUT: frames[i : i + batch]} for i in range(0, n, batch)])

    def get_next(self):
        return next(self._it, None)


def export_fp32(
    model: torch.nn.Module, path: Path, n_leads: int = 12, n_samples: int = 15000
) -> Path:
    """Write the model's feature extractor as fp32 ONNX with a dynamic batch axis."""
    wrapper = FeatureExtractor(model.cpu()).eval()  # eval before: the exporter restores modes
    dummy = torch.zeros(1, n_leads, n_samples)
    torch.onnx.export(
        wrapper,
        (dummy,),
        str(path),
        input_names=[INPUT],
        output_names=[OUTPUT],
        dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
        opset_version=OPSET,
        dynamo=False,
    )
    model.eval()
    onnx.checker.check_model(str(path))
    return path


def quantize_int8(
    fp32_path: Path, out_path: Path, calibration: np.ndarray, method: str = "minmax"
) -> Path:
    """Static QDQ quantization of ``fp32_path`` calibrated on (n, 12, 15000) frames.

    Weights int8 per channel (symmetric), activations uint8 (asymmetric):
    with int8 activations onnxruntime fused only 17 of the ResNet's 36
    convolutions into ``QLinearConv`` (the rest ran in fp32 between
    Dequantize/Quantize pairs); with uint8 all 36 fuse and a frame runs about
    2.7x faster (``python -m benchmarks.quant_variants``).
    """
    methods = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre),
            str(out_path),
            _Frames(calibration.astype(np.float32)),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=methods[method],
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )
    return out_path


def feature_session(path: Path, threads: int = 2) -> ort.InferenceSession:
    """An onnxruntime session over an exported extractor (the edge's own runtime)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def run_features(sess: ort.InferenceSession, frames: np.ndarray, batch: int = 16) -> np.ndarray:
    """(n, 12, 15000) frames -> (n, n_features) through ``sess``."""
    out = [
        sess.run([OUTPUT], {INPUT: frames[i : i + batch].astype(np.float32)})[0]
        for i in range(0, len(frames), batch)
    ]
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


@dataclass(frozen=True)
class FeatureAgreement:
    """int8 features against fp32 on the same frames."""

    cosine_median: float
    cosine_min: float
    max_abs_diff: float
    rel_max_diff: float

    def to_json(self) -> dict:
        return {k: round(float(v), 6) for k, v in self.__dict__.items()}


def compare_features(fp32: np.ndarray, int8: np.ndarray) -> FeatureAgreement:
    if fp32.shape != int8.shape:
        raise EcgEdgeError(f"feature shapes differ: fp32 {fp32.shape}, int8 {int8.shape}")
    num = (fp32 * int8).sum(1)
    den = np.linalg.norm(fp32, axis=1) * np.linalg.norm(int8, axis=1) + 1e-12
    cos = num / den
    diff = np.abs(fp32 - int8)
    return FeatureAgreement(
        float(np.median(cos)),
        float(cos.min()),
        float(diff.max()),
        float(diff.max() / (np.abs(fp32).max() + 1e-12)),
    )
