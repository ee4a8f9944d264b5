"""Per-frame latency, one thread: onnxruntime int8 and fp32, torch eager fp32 and OpenVINO.

OpenVINO is the other engine a user would pick for a CPU: it reads the same
ONNX files (fp32 and the int8 QDQ graph) with no conversion step, targets x86
and ARM CPUs, and is on PyPI (``openvino``, benchmarks only, never on the
device). It runs with one inference thread and the latency hint.

Each repeat times ``n_frames`` real frames (after warm-up) one at a time,
interleaving the three engines frame by frame (the order rotates), so a
burst of load from a neighbour hits all of them alike. Figures are the median
over repeats of each repeat's percentile; ``spread`` keeps min/max.
"""

from __future__ import annotations

import time

import numpy as np

from benchmarks._common import BundleRef, pct, print_table, sample_frames, shown, spread


def _engines(ref: BundleRef) -> dict:
    from edge.bundle import load_bundle
    from edge.classify import Classifier

    bundle = load_bundle(ref.path)
    # per window: the extractor and its pooling (as torch's model.features)
    eng = {p: Classifier(bundle, p, threads=1).window_rows for p in ("int8", "fp32")}
    if ref.checkpoint is not None:
        import torch

        from trainer.fit import load_checkpoint

        torch.set_num_threads(1)
        model = load_checkpoint(ref.checkpoint)

        def run_torch(x: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return model.features(torch.from_numpy(x)).numpy()

        eng["torch"] = run_torch
    try:
        import openvino
    except ImportError:  # the dev extra installs it; without it, not measured
        return bundle, eng
    core = openvino.Core()
    for p in ("int8", "fp32"):
        compiled = core.compile_model(
            core.read_model(str(bundle.extractor_path(p))),
            "CPU",
            {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": 1},
        )
        request = compiled.create_infer_request()
        eng[f"openvino_{p}"] = _openvino_rows(request, bundle.manifest.pools_in_graph)
    return bundle, eng


def _openvino_rows(request, pooled: bool):  # type: ignore[no-untyped-def]
    """As ``Classifier.window_rows``: the extractor through OpenVINO, then the same pooling."""
    from edge.classify import pool_windows

    def run(x: np.ndarray) -> np.ndarray:
        out = next(iter(request.infer({0: np.ascontiguousarray(x, dtype=np.float32)}).values()))
        return out.astype(np.float64) if pooled else pool_windows(out)

    return run


def measure(refs: dict[str, BundleRef], n_frames: int, repeats: int, warmup: int = 5) -> dict:
    """``frame_latency_ms.<model>.<precision>.{p50,p90,p99}`` (+ spread, agreement)."""
    out: dict = {}
    rows = []
    for model, ref in refs.items():
        bundle, eng = _engines(ref)
        frames = sample_frames(bundle.manifest.dsp, 64)
        names = list(eng)
        agree = {}
        f32 = eng["fp32"](frames[:4]).reshape(4, -1)
        for p in names:
            f = eng[p](frames[:4]).reshape(4, -1)
            cos = np.sum(f * f32, 1) / (np.linalg.norm(f, axis=1) * np.linalg.norm(f32, axis=1))
            agree[p] = float(cos.min())
        for i in range(warmup):
            for p in names:
                eng[p](frames[i % len(frames)][None])
        per_rep: dict[str, list[dict]] = {p: [] for p in names}
        for _ in range(repeats):
            times: dict[str, list[float]] = {p: [] for p in names}
            for i in range(n_frames):
                x = frames[i % len(frames)][None]
                k = i % len(names)
                for p in names[k:] + names[:k]:
                    t0 = time.perf_counter()
                    eng[p](x)
                    times[p].append((time.perf_counter() - t0) * 1000.0)
            for p in names:
                per_rep[p].append(pct(times[p]))
        res = {}
        for p in names:
            reps = per_rep[p]
            res[p] = {q: float(np.median([r[q] for r in reps])) for q in ("p50", "p90", "p99")}
            res[p]["spread_p50"] = spread([r["p50"] for r in reps])
            res[p]["spread_p99"] = spread([r["p99"] for r in reps])
            res[p]["cosine_vs_fp32_min"] = agree[p]
            rows.append([model, p, res[p]["p50"], res[p]["p90"], res[p]["p99"], agree[p]])
        res["n_frames"], res["repeats"], res["bundle"] = n_frames, repeats, shown(ref.path)
        res["bundle_source"] = ref.source
        if "torch" not in eng:
            res["torch_note"] = "no torch checkpoint next to the bundle: torch not measured"
        pairs = [("fp32", "int8"), ("torch", "int8"), ("torch", "fp32")]
        pairs += [("openvino_int8", "int8"), ("openvino_fp32", "fp32")]
        for a, b in pairs:
            if a in res and b in res:
                res[f"speedup_{b}_vs_{a}"] = res[a]["p50"] / res[b]["p50"]
        out[model] = res
    print_table(
        "Frame latency (ms, one thread; median over repeats)",
        ["model", "engine", "p50", "p90", "p99", "cos vs fp32"],
        rows,
    )
    return out
