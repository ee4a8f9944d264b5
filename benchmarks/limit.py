"""The limit: multiply-accumulates per frame (from the ONNX graph) over this core's peak rate.

MACs: every Conv, MatMul and Gemm of the fp32 extractor, with
shapes from ``onnx.shape_inference`` at batch 1 (the int8 graph does the same
products). Peak rate: a 1024 x 1024 x 1024 product through onnxruntime on one
thread, ``MatMul`` in float32 and ``MatMulInteger`` (uint8 x int8, the MLAS
u8s8 kernel the quantized convolutions use) for int8.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from benchmarks._common import BundleRef, print_table


def count_macs(path) -> dict:  # type: ignore[no-untyped-def]
    """Multiply-accumulates of one batch-1 inference, by op type, from the graph's shapes."""
    m = onnx.load(str(path))
    for inp in m.graph.input:
        dims = inp.type.tensor_type.shape.dim
        if dims:
            dims[0].ClearField("dim_param")
            dims[0].dim_value = 1
    m = onnx.shape_inference.infer_shapes(m)
    shapes = {}
    for vi in list(m.graph.value_info) + list(m.graph.input) + list(m.graph.output):
        d = vi.type.tensor_type.shape.dim
        shapes[vi.name] = [x.dim_value for x in d]
    for init in m.graph.initializer:
        shapes[init.name] = list(init.dims)
    by_op: dict[str, int] = {}
    for node in m.graph.node:
        op = node.op_type
        if op == "Conv":
            w, y = shapes.get(node.input[1]), shapes.get(node.output[0])
            if not w or not y:
                raise ValueError(f"no shape for {node.name}")
            macs = int(np.prod(y)) * int(np.prod(w[1:]))
        elif op in ("MatMul", "Gemm"):
            a, y = shapes.get(node.input[0]), shapes.get(node.output[0])
            if not a or not y:
                raise ValueError(f"no shape for {node.name}")
            trans_a = any(at.name == "transA" and at.i for at in node.attribute)
            k = a[-2] if trans_a else a[-1]
            macs = int(np.prod(y)) * k
        else:
            continue
        by_op[op] = by_op.get(op, 0) + macs
    return {"total": sum(by_op.values()), "by_op": by_op}


def _session(model: onnx.ModelProto):  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def peak_rates(n: int = 1024, repeats: int = 7) -> dict:
    """Peak MAC/s of one core: onnxruntime MatMul (fp32) and MatMulInteger (u8 x s8)."""
    out = {}
    for prec in ("fp32", "int8"):
        if prec == "fp32":
            a_t, y_t, op = TensorProto.FLOAT, TensorProto.FLOAT, "MatMul"
            a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
            b = np.random.default_rng(1).standard_normal((n, n)).astype(np.float32)
        else:
            a_t, y_t, op = (
                TensorProto.UINT8,
                TensorProto.INT32,
                "MatMulInteger",
            )
            a = np.random.default_rng(0).integers(0, 255, (n, n), dtype=np.uint8)
            b = np.random.default_rng(1).integers(-127, 127, (n, n), dtype=np.int8)
        g = helper.make_graph(
            [helper.make_node(op, ["A", "B"], ["Y"])],
            "peak",
            [helper.make_tensor_value_info("A", a_t, [n, n])],
            [helper.make_tensor_value_info("Y", y_t, [n, n])],
            [onnx.numpy_helper.from_array(b, "B")],
        )
        model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        s = _session(model)
        s.run(None, {"A": a})
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            s.run(None, {"A": a})
            ts.append(time.perf_counter() - t0)
        rates = [n**3 / t for t in ts]
        out[prec] = {
            "peak_macs_per_s": float(max(rates)),
            "median_macs_per_s": float(np.median(rates)),
            "how": f"onnxruntime {op} {n}x{n}x{n}, intra_op_num_threads=1, best of {repeats}",
        }
    return out


def op_profile(path, frames: np.ndarray, n: int = 20) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Share of onnxruntime kernel time by op type (its own profiler, one thread, n frames)."""
    import json
    import os

    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.enable_profiling = True
    s = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    for i in range(n):
        s.run(None, {name: frames[i % len(frames)][None]})
    prof = s.end_profiling()
    by_op: dict[str, float] = {}
    try:
        for ev in json.loads(Path(prof).read_text()):
            if ev.get("cat") == "Node" and ev.get("name", "").endswith("_kernel_time"):
                op = ev.get("args", {}).get("op_name", "?")
                by_op[op] = by_op.get(op, 0.0) + ev["dur"]
    finally:
        os.remove(prof)
    total = sum(by_op.values()) or 1.0
    return {k: v / total for k, v in sorted(by_op.items(), key=lambda kv: -kv[1])}


def measure(refs: dict[str, BundleRef], latency: dict, repeats: int = 7) -> dict:
    """``limit.<model>.<precision>.{macs,peak_macs_per_s,floor_ms,ratio}``."""
    peaks = peak_rates(repeats=repeats)
    out: dict = {"peak": peaks}
    rows = []
    for model, ref in refs.items():
        from benchmarks._common import sample_frames
        from edge.bundle import load_bundle

        macs = count_macs(ref.path / "extractor.fp32.onnx")
        frames = sample_frames(load_bundle(ref.path).manifest.dsp, 8)
        out[model] = {}
        for prec in ("int8", "fp32"):
            peak = peaks[prec]["peak_macs_per_s"]
            floor_ms = macs["total"] / peak * 1000.0
            p50 = latency.get(model, {}).get(prec, {}).get("p50", float("nan"))
            out[model][prec] = {
                "macs": macs["total"],
                "macs_by_op": macs["by_op"],
                "peak_macs_per_s": peak,
                "floor_ms": floor_ms,
                "measured_p50_ms": p50,
                "ratio": p50 / floor_ms,
                "op_time_share": op_profile(
                    ref.path / ("extractor.onnx" if prec == "int8" else "extractor.fp32.onnx"),
                    frames,
                ),
            }
            rows.append(
                [
                    model,
                    prec,
                    f"{macs['total'] / 1e6:.1f} M",
                    f"{peak / 1e9:.1f} G/s",
                    floor_ms,
                    p50,
                    p50 / floor_ms,
                ]
            )
    print_table(
        "Limit (floor = MACs / peak MAC rate of one core)",
        ["model", "precision", "MACs/frame", "peak", "floor ms", "p50 ms", "p50/floor"],
        rows,
    )
    return out
