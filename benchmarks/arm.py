"""ARM: the int8 extractor under aarch64 emulation must give the x86 features and decisions.

Setup (once, outside the repo, per /work/shared/ARM.md): an aarch64 Python
3.11 unpacked in ``~/.cache/ecg-edge-arm/root`` and the aarch64 wheels of
numpy and onnxruntime 1.22.0 (+ its pure-Python dependencies) unzipped in
``~/.cache/ecg-edge-arm/site``; ``qemu-aarch64-static`` runs it. Emulated time
says nothing about a board and is not reported; the Cortex-A72 figure is an
*estimate* from the operation count: 2 x 128-bit NEON pipes = 8 fp32 MAC per
cycle; no SDOT on ARMv8.0, so int8 at best 16 MAC/cycle (SMLAL/SMLAL2 on
both pipes); 1.5 GHz (Raspberry Pi 4). Real kernels reach a fraction of peak.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._common import SAMPLES, BundleRef, print_table

CACHE = Path.home() / ".cache" / "ecg-edge-arm"
A72 = {"ghz": 1.5, "fp32_macs_per_cycle": 8, "int8_macs_per_cycle": 16}

_SCRIPT = """
import ctypes, platform, sys, numpy as np, onnxruntime as ort
libc = ctypes.CDLL(None); libc.getauxval.restype = ctypes.c_ulong
hwcap, hwcap2 = libc.getauxval(16), libc.getauxval(26)
x = np.load(sys.argv[1])
for i, path in enumerate(sys.argv[3:]):
    o = ort.SessionOptions(); o.intra_op_num_threads = 1
    s = ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])
    n = s.get_inputs()[0].name
    f = np.concatenate([s.run(None, {n: x[j:j+1]})[0] for j in range(len(x))])
    np.save(sys.argv[2] + f"/{i}.npy", f)
dot, i8mm = bool(hwcap & (1 << 20)), bool(hwcap2 & (1 << 13))
print(platform.machine(), "onnxruntime", ort.__version__, "numpy", np.__version__,
      "asimddp" if dot else "no-asimddp", "i8mm" if i8mm else "no-i8mm")
"""

# qemu CPU models: "max" has the dot-product (SDOT/UDOT) and i8mm extensions, so
# onnxruntime picks its Udot/Ummla kernels; "cortex-a72" (ARMv8.0, Raspberry Pi 4)
# has neither: the plain NEON kernels (widening multiplies, int16 pair sums).
QEMU_CPUS = ("max", "cortex-a72")


def _tools() -> tuple[str, Path, Path] | None:
    qemu = shutil.which("qemu-aarch64-static")
    py = CACHE / "root" / "usr" / "bin" / "python3.11"
    site = CACHE / "site"
    return (qemu, py, site) if (qemu and py.is_file() and site.is_dir()) else None


def run_aarch64(paths: list[Path], x: np.ndarray, qemu_cpu: str = "max") -> dict:
    """Each ONNX graph of ``paths`` run by aarch64 onnxruntime under qemu-user on ``x``."""
    tools = _tools()
    if tools is None:
        return {"status": "not run", "why": f"no aarch64 python/wheels under {CACHE} or no qemu"}
    qemu, py, site = tools
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "x.npy", np.ascontiguousarray(x, dtype=np.float32))
        (Path(tmp) / "run.py").write_text(_SCRIPT)
        env = {"PYTHONPATH": str(site), "PYTHONHOME": str(CACHE / "root" / "usr")}
        env["QEMU_CPU"] = qemu_cpu
        cmd = [qemu, "-L", str(CACHE / "root"), str(py), str(Path(tmp) / "run.py")]
        cmd += [str(Path(tmp) / "x.npy"), tmp, *map(str, paths)]
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
        if r.returncode != 0:
            return {"status": "failed", "why": r.stderr[-1000:]}
        outs = [np.load(Path(tmp) / f"{i}.npy") for i in range(len(paths))]
    return {"status": "run", "qemu_cpu": qemu_cpu, "versions": r.stdout.strip(), "outputs": outs}


def _diff(a: np.ndarray, b: np.ndarray) -> dict:
    return {
        "equal": bool(a.shape == b.shape and np.array_equal(a, b)),
        "n_different": int(np.count_nonzero(a != b)) if a.shape == b.shape else -1,
        "max_abs_diff": float(np.abs(a - b).max()) if a.shape == b.shape else float("nan"),
    }


def exact_check(graphs: dict[str, Path], x: np.ndarray, cpus=QEMU_CPUS) -> dict:
    """int8 graphs on the same inputs: x86 onnxruntime vs aarch64 (qemu) vs the integer reference.

    Returns, per graph, whether x86 equals the numpy integer reference
    (:mod:`trainer.int8_reference`; ``None`` where the graph has no
    CPU-independent integer result, e.g. the previous scheme's ResNet) and,
    per qemu CPU model, whether aarch64 equals x86 (exactly: ``np.array_equal``).
    """
    import onnxruntime as ort

    from trainer.int8_reference import run_reference

    names = list(graphs)
    out: dict = {"inputs": list(x.shape), "graphs": {}}
    x86 = {}
    for name in names:
        o = ort.SessionOptions()
        o.intra_op_num_threads = 1
        s = ort.InferenceSession(str(graphs[name]), o, providers=["CPUExecutionProvider"])
        n = s.get_inputs()[0].name
        x86[name] = np.concatenate([s.run(None, {n: x[j : j + 1]})[0] for j in range(len(x))])
        try:
            ref = _diff(x86[name], run_reference(graphs[name], x))
        except Exception as exc:  # the reference refuses graphs it cannot compute exactly
            ref = {"equal": None, "why": str(exc)[:200]}
        out["graphs"][name] = {"x86_vs_reference": ref, "aarch64_vs_x86": {}}
    for cpu in cpus:
        t0 = time.perf_counter()
        r = run_aarch64([graphs[n] for n in names], x, cpu)
        out.setdefault("aarch64", {})[cpu] = {k: v for k, v in r.items() if k != "outputs"} | {
            "emulated_s": round(time.perf_counter() - t0, 1)
        }
        for name, arm in zip(names, r.get("outputs", [])):
            out["graphs"][name]["aarch64_vs_x86"][cpu] = _diff(arm, x86[name])
    return out


def estimate(macs: dict[str, int]) -> dict:
    """Cortex-A72 frame time from the MAC count at peak NEON rate: an estimate, not measured."""
    hz = A72["ghz"] * 1e9
    return {
        "kind": "estimate",
        "assumptions": A72,
        "fp32_floor_ms": macs["fp32"] / (A72["fp32_macs_per_cycle"] * hz) * 1000.0,
        "int8_floor_ms": macs["int8"] / (A72["int8_macs_per_cycle"] * hz) * 1000.0,
    }


def _sample_windows(config, n_frames: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    """(n, 12, window) model windows of the first ``n_frames`` frames of the sample records."""
    from edge.dsp import preprocess
    from edge.framer import record_frames
    from edge.records import find_records, read_record

    out: list[np.ndarray] = []
    for h in find_records([SAMPLES]):
        r = read_record(h)
        x = preprocess(r.signal, r.fs, config)
        out += [f.model_input(config) for f in record_frames(x, 5000, config.frame_samples)]
        if len(out) >= n_frames:
            break
    return np.concatenate(out[:n_frames]).astype(np.float32)


def run_emulated(ref: BundleRef, n_frames: int = 8) -> dict:
    """x86 vs aarch64 (qemu-user) output of the bundle's int8 extractor on real frames.

    The extractor's raw output (its last feature map, format 2) is compared
    for exact equality, per qemu CPU model, and with the integer reference;
    the decisions of the heads are compared as well.
    """
    from edge.bundle import load_bundle
    from edge.classify import Classifier

    if _tools() is None:
        return {"status": "not run", "why": f"no aarch64 python/wheels under {CACHE} or no qemu"}
    bundle = load_bundle(ref.path)
    clf = Classifier(bundle, "int8", 1)
    wins = _sample_windows(bundle.manifest.dsp, n_frames)
    check = exact_check({"bundle int8": bundle.extractor_path("int8")}, wins)
    g = check["graphs"]["bundle int8"]
    runs = check.get("aarch64", {})
    if not runs or any(v["status"] != "run" for v in runs.values()):
        why = "; ".join(v.get("why", "") for v in runs.values())
        return {"status": "failed", "why": why[-1000:], "exact": check}
    x86 = clf.features(wins[:1])  # the pooled features of one window
    equal = all(v["equal"] for v in g["aarch64_vs_x86"].values())
    return {
        "status": "run",
        "versions": {c: v["versions"] for c, v in runs.items()},
        "frames": n_frames,
        "windows": len(wins),
        "bit_identical": equal,
        "x86_equals_reference": g["x86_vs_reference"]["equal"],
        "exact": check,
        "n_features": int(x86.shape[0]),
    }


def measure(ref: BundleRef, macs: dict[str, int], run: bool) -> dict:
    out = {"cortex_a72": estimate(macs)}
    out["emulation"] = run_emulated(ref) if run else {"status": "not run", "why": "skipped"}
    e = out["cortex_a72"]
    print_table(
        "ARM (Cortex-A72 figures are ESTIMATES from MACs at peak NEON rate)",
        ["figure", "value"],
        [
            ["A72 fp32 floor ms (estimate)", e["fp32_floor_ms"]],
            ["A72 int8 floor ms (estimate)", e["int8_floor_ms"]],
            ["aarch64 emulation", out["emulation"]["status"]],
        ],
    )
    return out


def render_exact(res: dict) -> str:
    from edge._cpu import cpu_line

    m = res["machine"]
    lines = [
        "# int8 on aarch64 (qemu-user) vs x86: exact equality",
        "",
        f"x86: {cpu_line(m['cpu_info'])}, onnxruntime {m['versions']['onnxruntime']}. "
        + "; ".join(
            f"qemu `-cpu {c}`: {v.get('versions', v.get('why', ''))}"
            for c, v in res["exact"].get("aarch64", {}).items()
        )
        + f". Inputs {res['exact']['inputs']} (10 s windows of {res['records']} real records), "
        f"models trained {res['steps']} Adam steps. Command: `{res['command']}`.",
        "",
        "| graph | x86 = integer reference | "
        + " | ".join(
            f"aarch64 {c} = x86 (elements differing)" for c in res["exact"].get("aarch64", {})
        )
        + " |",
        "|---|---|" + "---|" * len(res["exact"].get("aarch64", {})),
    ]
    for name, g in res["exact"]["graphs"].items():
        ref = g["x86_vs_reference"]
        cells = [f"{v['equal']} ({v['n_different']})" for v in g["aarch64_vs_x86"].values()]
        lines.append(
            f"| {name} | {ref['equal'] if ref['equal'] is not None else 'no exact result'} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    """``python -m benchmarks.arm``: Model 1 and 2 int8 graphs, portable and previous, aarch64."""
    import argparse
    import json

    from benchmarks._common import REPO, machine
    from benchmarks.quant_variants import brief_model, build_graphs, real_windows

    ap = argparse.ArgumentParser(prog="python -m benchmarks.arm", description=main.__doc__)
    ap.add_argument("--records", type=int, default=8, help="real records for the inputs")
    ap.add_argument("--steps", type=int, default=60, help="Adam steps per model")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    a = ap.parse_args(argv)
    x, y, rec = real_windows(a.records)
    graphs = {}
    with tempfile.TemporaryDirectory() as t:
        for model in ("cnn", "resnet"):
            d = Path(t) / model
            d.mkdir()
            g = build_graphs(brief_model(model, x, y, a.steps), d, x)
            graphs[f"{model} portable"] = g["portable"]
            graphs[f"{model} previous"] = g["previous"]
        check = exact_check(graphs, x)
    res = {
        "machine": machine(),
        "command": "python -m benchmarks.arm " + " ".join(sys.argv[1:] if argv is None else argv),
        "records": int(rec.max() + 1),
        "steps": a.steps,
        "exact": check,
    }
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "arm_int8_exact.json").write_text(json.dumps(res, indent=2) + "\n")
    text = render_exact(res)
    (a.out / "arm_int8_exact.md").write_text(text)
    print(text)
    return res


if __name__ == "__main__":
    main()
