"""Export: the extractor to ONNX (fp32), then int8 by static QDQ quantization.

Quantization is onnxruntime's ``quantize_static``: QDQ format, per-channel
7-bit int8 weights, uint8 activations, calibrated on real training frames,
made to give the same integers on every CPU (:func:`quantize_int8`,
:mod:`trainer.int8_reference`). At
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
from onnx import numpy_helper
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
    fp32_path: Path,
    out_path: Path,
    calibration: np.ndarray,
    method: str = "minmax",
    *,
    portable: bool = True,
) -> Path:
    """Static QDQ quantization of ``fp32_path`` calibrated on (n, 12, window) frames.

    Weights int8 per channel (symmetric), activations uint8 (asymmetric):
    with int8 activations onnxruntime fused only 17 of the ResNet's 36
    convolutions into ``QLinearConv`` (the rest ran in fp32 between
    Dequantize/Quantize pairs); with uint8 all 36 fuse and a frame runs about
    2.7x faster (measured on the 15000-sample Model 2 of November 2026).

    ``portable`` (the default, and what bundles ship) makes the graph give
    the same integers on every CPU (x86 AVX2, AVX-512, VNNI, aarch64):

    - 7-bit weights (``reduce_range``: codes in [-64, 64]), so that no pair
      sum ``u8 x w1 + u8' x w2`` of x86's ``vpmaddubsw`` (AVX2 and AVX-512
      without VNNI) saturates int16: ``255 * 2 * 64 = 32640 <= 32767``;
    - one scale for both inputs and the output of every residual Add
      (:func:`share_add_scales`), so that every ``QLinearAdd`` kernel (float
      with FMA on AVX2, without on SSE2, fixed point on NEON) adds integers
      and rounds nothing.

    The result is checked (:func:`trainer.int8_reference.check_portable`)
    and refused if either does not hold. ``portable=False`` is the earlier
    scheme (8-bit weights, per-tensor Add scales), kept for measuring what
    the portable one costs (``python -m benchmarks.quant_variants``).
    """
    from trainer.int8_reference import check_portable

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
            reduce_range=portable,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=methods[method],
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )
    if portable:
        model = share_add_scales(onnx.load(str(out_path)))
        check_portable(model)
        onnx.save(model, str(out_path))
    return out_path


def share_add_scales(model: onnx.ModelProto) -> onnx.ModelProto:
    """Give both inputs and the output of every quantized ``Add`` one scale (in place).

    Tensors joined by Adds form groups (a ResNet stage: its blocks' second
    convolutions, its skip convolution and its block outputs); each group
    takes the largest scale among its members, so no range shrinks. Zero
    points follow the scale (``zp * s_old / s_new``; 0 stays 0, so a ReLU
    folded into a zero point stays folded), and the int32 bias of every
    convolution reading a rescaled tensor is requantized to its new
    ``input scale x weight scale``.
    """
    g = model.graph
    init = {i.name: i for i in g.initializer}
    arr = {k: numpy_helper.to_array(v) for k, v in init.items()}
    prod = {o: n for n in g.node for o in n.output}
    qdq = [n for n in g.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    parent: dict[str, str] = {}

    def find(a: str) -> str:
        while parent.setdefault(a, a) != a:
            a = parent[a]
        return a

    for n in g.node:
        if n.op_type != "Add":
            continue
        names = [
            prod[i].input[1] for i in n.input if i in prod and prod[i].op_type == "DequantizeLinear"
        ]
        names += [
            c.input[1]
            for c in g.node
            if c.op_type == "QuantizeLinear" and c.input[0] == n.output[0]
        ]
        if len(names) != 3:
            raise EcgEdgeError(f"Add {n.name!r} is not quantized on both inputs and its output")
        for other in names[1:]:
            parent[find(other)] = find(names[0])
    groups: dict[str, list[str]] = {}
    for name in parent:
        groups.setdefault(find(name), []).append(name)
    new_scale: dict[str, np.float32] = {}
    for members in groups.values():
        s = max(np.float32(arr[m]) for m in members)
        new_scale.update({m: s for m in members if np.float32(arr[m]) != s})
    zp_of = {}
    for n in qdq:
        if (
            n.input[1] in new_scale
            and len(n.input) > 2
            and zp_of.setdefault(n.input[2], n.input[1]) != n.input[1]
        ):
            raise EcgEdgeError(f"zero point {n.input[2]!r} is shared by two scales")
    for zp_name, s_name in zp_of.items():
        zp = arr[zp_name]
        ratio = np.float64(arr[s_name]) / np.float64(new_scale[s_name])
        info = np.iinfo(zp.dtype)
        new_zp = np.clip(np.rint(zp.astype(np.float64) * ratio), info.min, info.max).astype(
            zp.dtype
        )
        init[zp_name].CopyFrom(numpy_helper.from_array(new_zp, zp_name))
    for n in g.node:  # biases of convolutions whose input scale changed
        if n.op_type != "Conv" or len(n.input) < 3 or not n.input[2]:
            continue
        x_scale = prod[n.input[0]].input[1]
        if x_scale not in new_scale:
            continue
        w_scale = arr[prod[n.input[1]].input[1]].astype(np.float32)
        b_dq = prod[n.input[2]]
        b_name, bs_name = b_dq.input[0], b_dq.input[1]
        b_scale = (new_scale[x_scale] * w_scale).astype(np.float32)
        b_float = arr[b_name].astype(np.float64) * arr[bs_name].astype(np.float64)
        b_new = np.rint(b_float / b_scale.astype(np.float64))
        b_new = np.clip(b_new, -(2**31) + 1, 2**31 - 1).astype(np.int32)
        init[b_name].CopyFrom(numpy_helper.from_array(b_new, b_name))
        init[bs_name].CopyFrom(
            numpy_helper.from_array(b_scale.reshape(arr[bs_name].shape), bs_name)
        )
    for s_name, s in new_scale.items():
        init[s_name].CopyFrom(
            numpy_helper.from_array(np.asarray(s, np.float32).reshape(arr[s_name].shape), s_name)
        )
    return model


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
