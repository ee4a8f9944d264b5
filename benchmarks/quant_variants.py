"""What-if for the int8 export: which quantization settings let onnxruntime fuse every conv.

``python -m benchmarks.quant_variants [BUNDLE]`` re-quantizes the bundle's
fp32 extractor (QDQ, per-channel, MinMax, calibrated on 16 frames of
``edge/samples``: enough to compare speed, not to ship) with int8 and with
uint8 activations, and prints, for each and for the shipped int8 graph, the
median latency of one frame on one thread, how many convolutions onnxruntime
turned into ``QLinearConv`` (the rest run in fp32 behind a
``DequantizeLinear``), and the smallest feature cosine against fp32. Not part
of the main run: a changed extractor needs its heads refit (phase 2 fits on
the int8 extractor's own features) and its accuracy measured.
"""

from __future__ import annotations

import collections
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from benchmarks._common import REPO, sample_frames


def _session(path: Path, optimized: Path) -> ort.InferenceSession:
    o = ort.SessionOptions()
    o.intra_op_num_threads = 1
    o.inter_op_num_threads = 1
    o.log_severity_level = 3
    o.optimized_model_filepath = str(optimized)
    return ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])


def _bench(path: Path, frames: np.ndarray, ref: np.ndarray, tmp: Path, n: int = 60) -> dict:
    opt = tmp / (path.stem + ".opt.onnx")
    s = _session(path, opt)
    name = s.get_inputs()[0].name
    for i in range(5):
        s.run(None, {name: frames[i : i + 1]})
    ts = []
    for i in range(n):
        x = frames[i % len(frames)][None]
        t0 = time.perf_counter()
        s.run(None, {name: x})
        ts.append((time.perf_counter() - t0) * 1000.0)
    ops = collections.Counter(nd.op_type for nd in onnx.load(str(opt)).graph.node)
    f = s.run(None, {name: frames[:4]})[0]
    cos = np.sum(f * ref, 1) / (np.linalg.norm(f, axis=1) * np.linalg.norm(ref, axis=1))
    return {
        "p50_ms": float(np.median(ts)),
        "qlinearconv": ops.get("QLinearConv", 0),
        "fp32_conv": ops.get("Conv", 0) + ops.get("FusedConv", 0),
        "min_cosine_vs_fp32": float(cos.min()),
    }


def main(bundle: Path) -> dict:
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    from edge.bundle import load_bundle
    from trainer.export import _Frames

    b = load_bundle(bundle)
    frames = sample_frames(b.manifest.dsp, 24)
    fp32 = b.extractor_path("fp32")
    out = {}
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        ref = _session(fp32, tmp / "ref.opt.onnx").run(None, {"frames": frames[:4]})[0]
        pre = tmp / "pre.onnx"
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        paths = {"shipped int8": b.extractor_path("int8"), "fp32": fp32}
        for name, act in (
            ("s8 activations", QuantType.QInt8),
            ("u8 activations", QuantType.QUInt8),
        ):
            p = tmp / f"{name.split()[0]}.onnx"
            quantize_static(
                str(pre),
                str(p),
                _Frames(frames[:16]),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=act,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
                extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
            )
            paths[name] = p
        for name, p in paths.items():
            out[name] = _bench(p, frames, ref, tmp)
            r = out[name]
            print(
                f"{name:16s} p50 {r['p50_ms']:.2f} ms  QLinearConv {r['qlinearconv']:2d}  "
                f"fp32 conv {r['fp32_conv']:2d}  min cosine {r['min_cosine_vs_fp32']:.4f}"
            )
    return out


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "edge" / "default_bundle")
