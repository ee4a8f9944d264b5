"""What the portable int8 scheme costs against the previous one: agreement with fp32 and latency.

``python -m benchmarks.quant_variants [--records N] [--steps N] [--no-timing]``
trains Model 1 and Model 2 briefly (``--steps`` Adam steps on 10 s windows
of real records of ``../shared/data/challenge2020``, their Dx labels), exports
each to fp32 ONNX and quantizes it twice (``trainer.export.quantize_int8``):

- ``portable``: 7-bit weights, one scale per residual Add (what ships);
- ``previous``: 8-bit weights, per-tensor Add scales (``portable=False``).

On held-out windows of other records it reports, per variant, the feature
cosine against fp32 (the pooled features the heads see: mean and max over
time, as ``edge.classify.pool_features``; and the raw feature map), the
weights' int16 pair-sum bound, whether onnxruntime equals the integer
reference, and the median latency of one frame (three 10 s windows, one
thread). Latency is a timing figure: it is skipped while /work/TRAINING
exists (a training runs) unless ``--timing`` forces it. JSON and a table go
to ``benchmarks/results/quant_variants.{json,md}``, with the CPU they ran on.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._common import REPO, machine

DATA = REPO.parent / "shared" / "data" / "challenge2020"
DATABASES = ("cpsc2018", "chapman-ningbo", "ptb-xl", "georgia")
TRAINING_FLAG = Path("/work/TRAINING")


def real_windows(n_records: int, skip: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n, 12, 1000) windows of the first 30 s of real records, (n, 24) labels, (n,) record index.

    Records are taken in turn from :data:`DATABASES`, ``skip`` per database
    first (so that two calls give disjoint records).
    """
    from edge.dsp import DspConfig, model_windows, preprocess
    from edge.records import find_records, read_record
    from trainer.labels import label_vector

    cfg = DspConfig()
    lists = [find_records([DATA / db]) for db in DATABASES if (DATA / db).is_dir()]
    wins, labels, rec = [], [], []
    k = 0
    for i in range(skip, skip + n_records):
        for lst in lists:
            if k >= n_records or i >= len(lst):
                continue
            r = read_record(lst[i])
            w = model_windows(preprocess(r.signal, r.fs, cfg)[:, : cfg.frame_samples], cfg)
            wins.append(w)
            labels += [label_vector(r.dx)] * len(w)
            rec += [k] * len(w)
            k += 1
    return np.concatenate(wins).astype(np.float32), np.array(labels, np.float32), np.array(rec)


def brief_model(name: str, windows: np.ndarray, labels: np.ndarray, steps: int, seed: int = 0):
    """Model 1 or 2 after ``steps`` Adam steps (batch 32, BCE) on the windows: briefly trained."""
    import torch

    from trainer.models import build_model

    torch.manual_seed(seed)
    model = build_model(name, labels.shape[1])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    rng = np.random.default_rng(seed)
    x, y = torch.from_numpy(windows), torch.from_numpy(labels)
    model.train()
    for _ in range(steps):
        idx = torch.from_numpy(rng.choice(len(x), size=min(32, len(x)), replace=False))
        opt.zero_grad()
        loss_fn(model(x[idx]), y[idx]).backward()
        opt.step()
    return model.eval()


def build_graphs(model, tmp: Path, calibration: np.ndarray) -> dict[str, Path]:  # type: ignore[no-untyped-def]
    """fp32, portable int8 and previous-scheme int8 ONNX graphs of ``model``."""
    from trainer.export import export_fp32, quantize_int8

    fp32 = export_fp32(model, tmp / "fp32.onnx", n_samples=calibration.shape[-1])
    return {
        "fp32": fp32,
        "portable": quantize_int8(fp32, tmp / "portable.onnx", calibration),
        "previous": quantize_int8(fp32, tmp / "previous.onnx", calibration, portable=False),
    }


def _session(path: Path, optimized: Path | None = None):  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    o = ort.SessionOptions()
    o.intra_op_num_threads = 1
    o.inter_op_num_threads = 1
    o.log_severity_level = 3
    if optimized is not None:
        o.optimized_model_filepath = str(optimized)
    return ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-30)


def _pooled(fmap: np.ndarray) -> np.ndarray:
    return np.concatenate([fmap.mean(axis=2), fmap.max(axis=2)], axis=1)


def _latency_ms(sess, frame: np.ndarray, n: int = 200) -> float:  # type: ignore[no-untyped-def]
    name = sess.get_inputs()[0].name
    for _ in range(10):
        sess.run(None, {name: frame})
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        sess.run(None, {name: frame})
        ts.append((time.perf_counter() - t0) * 1000.0)
    return float(np.median(ts))


def evaluate(graphs: dict[str, Path], test: np.ndarray, tmp: Path, timing: bool) -> dict:
    """Per variant: cosine vs fp32, exactness, pair bound, fused ops, latency of one frame."""
    import onnx

    from trainer.int8_reference import pair_sum_bound, run_reference

    ref = _session(graphs["fp32"]).run(None, {"frames": test})[0]
    frame = test[:3]  # one 30 s frame: three 10 s windows
    out = {}
    for name, path in graphs.items():
        opt = tmp / f"{name}.opt.onnx"
        sess = _session(path, opt)
        f = sess.run(None, {"frames": test})[0]
        ops = collections.Counter(n.op_type for n in onnx.load(str(opt)).graph.node)
        r: dict = {
            "cosine_pooled_vs_fp32": {
                "median": float(np.median(_cosine(_pooled(f), _pooled(ref)))),
                "min": float(_cosine(_pooled(f), _pooled(ref)).min()),
            },
            "cosine_feature_map_vs_fp32": {
                "median": float(np.median(_cosine(f, ref))),
                "min": float(_cosine(f, ref).min()),
            },
            "ops": {
                k: ops[k] for k in ("QLinearConv", "QLinearAdd", "Conv", "FusedConv") if ops[k]
            },
        }
        if name != "fp32":
            r["pair_sum_bound"] = pair_sum_bound(path)
            try:
                r["equals_integer_reference"] = bool(np.array_equal(f, run_reference(path, test)))
            except Exception as exc:  # the previous ResNet: unequal Add scales
                r["equals_integer_reference"] = None
                r["why_no_reference"] = str(exc)[:160]
        r["frame_p50_ms"] = _latency_ms(sess, frame) if timing else None
        out[name] = r
    return out


def render(res: dict) -> str:
    from edge._cpu import cpu_line

    m = res["machine"]
    lines = [
        "# int8 schemes: portable (7-bit weights, shared Add scales) vs previous (8-bit)",
        "",
        f"CPU: {cpu_line(m['cpu_info'])}. onnxruntime {m['versions']['onnxruntime']}, "
        f"commit {m['commit'][:10]}{' (dirty)' if m['dirty'] else ''}, {m['date_utc']}.",
        f"Models trained briefly ({res['steps']} Adam steps on {res['train_windows']} windows "
        f"of {res['train_records']} records); figures on {res['test_windows']} windows of "
        f"{res['test_records']} other records. Command: `{res['command']}`.",
        "",
        "| model | variant | cosine pooled vs fp32 (median / min) | cosine map (min) "
        "| pair-sum bound (<= 32767) | = integer reference | frame p50 ms (1 thread) |",
        "|---|---|---|---|---|---|---|",
    ]
    for model, variants in res["models"].items():
        for v, r in variants.items():
            cp, cm = r["cosine_pooled_vs_fp32"], r["cosine_feature_map_vs_fp32"]
            ms = r["frame_p50_ms"]
            lines.append(
                f"| {model} | {v} | {cp['median']:.5f} / {cp['min']:.5f} | {cm['min']:.5f} "
                f"| {r.get('pair_sum_bound', '-')} | {r.get('equals_integer_reference', '-')} "
                f"| {'not measured' if ms is None else f'{ms:.3f}'} |"
            )
    if res.get("timing_note"):
        lines += ["", res["timing_note"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    import torch

    ap = argparse.ArgumentParser(prog="python -m benchmarks.quant_variants", description=__doc__)
    ap.add_argument("--records", type=int, default=120, help="training records (default 120)")
    ap.add_argument("--test-records", type=int, default=40)
    ap.add_argument("--steps", type=int, default=150, help="Adam steps per model")
    ap.add_argument("--no-timing", action="store_true", help="skip the latency figures")
    ap.add_argument("--timing", action="store_true", help="time even while a training runs")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    a = ap.parse_args(argv)
    torch.set_num_threads(2)
    timing = not a.no_timing and (a.timing or not TRAINING_FLAG.exists())
    train_x, train_y, train_rec = real_windows(a.records)
    test_x, _, test_rec = real_windows(a.test_records, skip=a.records)
    res: dict = {
        "machine": machine(),
        "command": "python -m benchmarks.quant_variants "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "steps": a.steps,
        "train_windows": len(train_x),
        "train_records": int(train_rec.max() + 1),
        "test_windows": len(test_x),
        "test_records": int(test_rec.max() + 1),
        "models": {},
    }
    if not timing:
        res["timing_note"] = (
            "Latency not measured: "
            + ("--no-timing." if a.no_timing else "a training was running (/work/TRAINING).")
            + " Measure with `python -m benchmarks.quant_variants` on an idle machine."
        )
    rng = np.random.default_rng(0)
    calib = train_x[rng.choice(len(train_x), size=min(128, len(train_x)), replace=False)]
    for name in ("cnn", "resnet"):
        model = brief_model(name, train_x, train_y, a.steps)
        with tempfile.TemporaryDirectory() as t:
            graphs = build_graphs(model, Path(t), calib)
            res["models"][name] = evaluate(graphs, test_x, Path(t), timing)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "quant_variants.json").write_text(json.dumps(res, indent=2) + "\n")
    text = render(res)
    (a.out / "quant_variants.md").write_text(text)
    print(text)
    return res


if __name__ == "__main__":
    main()
