# ruff: noqa: E501  (Markdown table rows read best on one line)
"""results.json -> results.md: the tables, the machine, and where the goals stand."""

from __future__ import annotations

from benchmarks.accuracy import METRICS

_ENGINE_NAMES = {
    "int8": "onnxruntime int8",
    "fp32": "onnxruntime fp32",
    "torch": "torch eager fp32",
    "openvino_int8": "OpenVINO int8 (same ONNX)",
    "openvino_fp32": "OpenVINO fp32 (same ONNX)",
}


def _f(v, nd: int = 2) -> str:  # type: ignore[no-untyped-def]
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{nd}f}" if abs(v) < 1e4 else f"{v:.3g}"
    return str(v)


def goals(r: dict) -> list[tuple[str, str, bool | None]]:
    """(goal, where we stand, met?) for each goal of the issue."""
    out: list[tuple[str, str, bool | None]] = []
    lat = r.get("frame_latency_ms", {}).get("resnet", {})
    if "int8" in lat:
        p99 = lat["int8"]["p99"]
        out.append(("Model 2 int8 p99 < 10 ms", f"{p99:.2f} ms", p99 < 10))
        s = lat.get("speedup_int8_vs_fp32")
        out.append(("int8 >= 1.5x fp32 onnxruntime (p50)", f"{_f(s)}x", s is not None and s >= 1.5))
        s = lat.get("speedup_int8_vs_torch")
        out.append(("int8 >= 2x torch eager (p50)", f"{_f(s)}x", None if s is None else s >= 2))
    rt = r.get("realtime_factor_one_core")
    if rt is not None:
        out.append(("pipeline >= 1000x real time on one core", f"{rt:.0f}x", rt >= 1000))
    e = r.get("end_to_end_ms", {}).get("p99")
    if e is not None:
        out.append(("end-to-end p99 < 50 ms", f"{e:.1f} ms", e < 50))
    m = r.get("rss_mb", {}).get("peak")
    if m is not None:
        out.append(("agent RSS < 150 MB (peak)", f"{m:.0f} MB", m < 150))
    for model, heads in r.get("accuracy", {}).items():
        for head in ("svm", "sigmoid"):
            d = (
                heads.get(head, {}).get("int8_minus_fp32_challenge_metric")
                if isinstance(heads, dict)
                else None
            )
            if d is not None:
                out.append((f"{model}/{head}: int8 loses <= 0.02 metric", f"{d:+.3f}", d >= -0.02))
    for model, res in r.get("incremental", {}).items():  # issue 13
        x = res.get("int8")
        if x:
            ok = x["ratio"] <= 0.4 and x["scores_equal"]
            out.append((f"{model}: per-hop cost <= 0.4 of a full-frame pass, same scores",
                        f"{x['ratio']:.2f}, equal {x['scores_equal']}", ok))  # fmt: skip
    t = r.get("throughput", {})
    if "ratio_to_classifier_ceiling" in t:
        q = t["ratio_to_classifier_ceiling"]
        out.append(
            ("whole agent >= 0.5 of the classifier-alone ceiling (one core)", f"{q:.2f}", q >= 0.5)
        )
    if e is not None:
        out.append(("end-to-end p99 <= 10 ms", f"{e:.1f} ms", e <= 10))
    if "measurements_share" in t:  # issue 17
        q = t["measurements_share"]
        out.append(("delineation and measurements <= 20 % of the agent", f"{q:.0%}", q <= 0.2))
    return out


def render(r: dict) -> str:
    m = r["machine"]
    lines = [
        "# ecg-edge benchmarks",
        "",
        f"Machine: {m['cpu']}"
        + (f" (ISA: {' '.join(m['cpu_info']['flags'])})" if "cpu_info" in m else "")
        + f", {m['cores']} cores (load average at start "
        f"{', '.join(f'{x:.1f}' for x in m['load_avg_at_start'])}), "
        f"{m['os']}. Python {m['versions']['python']}, onnxruntime {m['versions']['onnxruntime']}, "
        f"torch {m['versions'].get('torch')}, numpy {m['versions']['numpy']}. "
        f"Commit {m['commit'][:10]}{' (dirty)' if m['dirty'] else ''}, {m['date_utc']}. "
        f"Mode: {'quick' if r['quick'] else 'full'}.",
        "",
        "Bundles: "
        + "; ".join(f"{k} = `{v['path']}` ({v['source']})" for k, v in r["bundles"].items()),
        "",
        "## Frame latency (ms, one 12 x 15000 frame, one thread)",
        "",
        "Median over repeats of each repeat's percentile; [min-max of p50 over repeats].",
        "",
        "| model | engine | p50 | p90 | p99 | p50 range | min cosine vs fp32 (4 frames) |",
        "|---|---|---|---|---|---|---|",
    ]
    for model, res in r.get("frame_latency_ms", {}).items():
        for p in ("int8", "fp32", "torch", "openvino_int8", "openvino_fp32"):
            if p in res:
                x = res[p]
                sp = x["spread_p50"]
                lines.append(
                    f"| {model} | {_ENGINE_NAMES.get(p, p)} | {_f(x['p50'])} | "
                    f"{_f(x['p90'])} | {_f(x['p99'])} | {_f(sp['min'])}-{_f(sp['max'])} | "
                    f"{x['cosine_vs_fp32_min']:.4f} |"
                )
        n, rep = res["n_frames"], res["repeats"]
        ratios = ", ".join(
            f"{k.replace('speedup_', '')} {v:.2f}x"
            for k, v in res.items()
            if k.startswith("speedup_")
        )
        lines.append(
            f"| {model} | {n} frames x {rep} repeats | speed-ups (p50): {ratios} | | | | |"
        )
    lim = r.get("limit", {})
    if lim:
        pk = lim["peak"]
        lines += [
            "",
            "## The limit",
            "",
            f"Peak MAC rate of one core: fp32 {pk['fp32']['peak_macs_per_s'] / 1e9:.1f} G/s "
            f"({pk['fp32']['how']}); int8 {pk['int8']['peak_macs_per_s'] / 1e9:.1f} G/s "
            f"({pk['int8']['how']}). MACs counted from the ONNX graph (Conv/MatMul/Gemm, batch 1).",
            "",
            "| model | precision | MACs/frame | floor ms | measured p50 ms | p50 / floor |",
            "|---|---|---|---|---|---|",
        ]
        for model in ("cnn", "resnet"):
            for p in ("int8", "fp32"):
                x = lim.get(model, {}).get(p)
                if x:
                    lines.append(
                        f"| {model} | {p} | {x['macs'] / 1e6:.1f} M | {_f(x['floor_ms'])} | "
                        f"{_f(x['measured_p50_ms'])} | {_f(x['ratio'], 1)} |"
                    )
        lines += [
            "",
            "Where the kernel time goes (onnxruntime profiler, share by op type, top 5):",
            "",
        ]
        for model in ("cnn", "resnet"):
            for p in ("int8", "fp32"):
                x = lim.get(model, {}).get(p)
                if x and x.get("op_time_share"):
                    top = list(x["op_time_share"].items())[:5]
                    lines.append(f"- {model} {p}: " + ", ".join(f"{k} {v:.0%}" for k, v in top))
    inc = r.get("incremental", {})
    if inc:
        lines += [
            "",
            "## Incremental extractor (per 10 s hop vs a full 30 s frame)",
            "",
            "The classifier stage as the agent runs it, from a frame's preprocessed 500 Hz samples to its "
            "features (windows to 100 Hz, normalised, extractor, pooling), one thread, over real records "
            "streamed in order; only 30 s frames after a 30 s frame are timed. With the window cache a hop "
            "computes one of its three windows. Every frame's scores are compared with the full pass, bit for bit.",
            "",
            "| model | precision | full frame p50 ms | per hop p50 ms | per hop p99 ms | ratio (p50) | ratio with head | scores equal |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for model, res in inc.items():
            for p in ("int8", "fp32"):
                x = res.get(p)
                if x:
                    lines.append(
                        f"| {model} | {p} | {_f(x['full_frame_ms']['p50'])} | {_f(x['per_hop_ms']['p50'])} | "
                        f"{_f(x['per_hop_ms']['p99'])} | {_f(x['ratio'])} | {_f(x['classify_ratio'])} | "
                        f"{x['frames_equal']}/{x['frames_compared']} |"
                    )
                elif "note" in res and p == "int8":
                    lines.append(f"| {model} | | | | | | | {res['note']} |")
    e = r.get("end_to_end_ms")
    if e:
        a = e["agent_to_publish_ms"]
        lines += [
            "",
            "## End to end (ms)",
            "",
            "Last sample of the frame entering the agent -> alert at a subscriber of a loopback "
            "Mosquitto (QoS 1), `ecg-edge replay --speed max --broker`; end_utc has 1 ms resolution. "
            f"Median over {e.get('repeats', 1)} runs of each run's percentile; p99 over runs "
            f"{e['spread_p99']['min']:.1f}-{e['spread_p99']['max']:.1f} ms, p50 "
            f"{e['spread_p50']['min']:.1f}-{e['spread_p50']['max']:.1f} ms.",
            "",
            "| path | p50 | p90 | p99 | alerts |",
            "|---|---|---|---|---|",
            f"| agent -> publisher spool | {_f(a['p50'])} | {_f(a['p90'])} | {_f(a['p99'])} | {e['alerts_sent']} (all runs) |",
            f"| agent -> broker -> subscriber | {_f(e['p50'])} | {_f(e['p90'])} | {_f(e['p99'])} | {e['alerts_received']} |",
        ]
    ap = r.get("alert_path")
    if ap:
        lines += [
            "",
            f"Where an alert waits (`alert_path.py`): per stage, ms on the {ap['chunks']} chunks "
            "that complete a frame (wall clock, in-process replay to a loopback Mosquitto; "
            "inclusive: the alert row holds its commit and hand-over):",
            "",
            "| stage | p50 | p90 | p99 |",
            "|---|---|---|---|",
        ]
        for name, v in ap["stages"].items():
            lines.append(f"| {name} | {_f(v['p50'])} | {_f(v['p90'])} | {_f(v['p99'])} |")
    sput = r.get("spool_put_ms")
    if sput and "fsync" in sput:
        lines += [
            "",
            f"What durability costs on this disk: one alert's spool commit (sqlite WAL, {sput['n']} puts of "
            f"{sput['payload_bytes']} B): fsynced (`publish_alert`: on disk before it returns) p50 "
            f"{_f(sput['fsync']['p50'])} ms, p99 {_f(sput['fsync']['p99'])} ms"
            + (
                f"; without its own fsync p50 {_f(sput['no_fsync']['p50'])} ms, p99 {_f(sput['no_fsync']['p99'])} ms."
                if "no_fsync" in sput
                else "."
            ),
        ]
    t = r.get("throughput")
    if t:
        sp = t["realtime_factor_one_core_spread"]
        lines += [
            "",
            "## Throughput (whole agent: dsp, framing, quality, classification, alerts; hop 10 s; int8)",
            "",
            "| figure | median | range over repeats |",
            "|---|---|---|",
            f"| signal s per CPU s, one core (= 500 Hz 12-lead streams per core) | {t['realtime_factor_one_core']:.0f} | {sp['min']:.0f}-{sp['max']:.0f} |",
            f"| signal s per wall s, 1 process pinned to CPU 0 | {t['realtime_factor_one_core_wall']:.0f} | |",
            f"| signal s per CPU s, one core, 1 s chunks instead of 0.1 s | {t['realtime_factor_one_core_1s_chunks']:.0f} | {t['realtime_factor_one_core_1s_chunks_spread']['min']:.0f}-{t['realtime_factor_one_core_1s_chunks_spread']['max']:.0f} |",
        ]
        if "measurements_share" in t:
            lines.append(
                f"| signal s per CPU s, one core, without delineation and measurements | {t['realtime_factor_one_core_without_measurements']:.0f} | (they take {t['measurements_share']:.0%} of the agent) |"
            )
        if "two_process" in t:
            tp = t["two_process"]
            lines.append(
                f"| signal s per wall s, 2 processes on CPUs 0+1 | {tp['realtime_factor_wall']:.0f} | "
                f"{tp['spread']['min']:.0f}-{tp['spread']['max']:.0f} (scaling {tp['scaling_vs_one']:.2f}x) |"
            )
        lat = r.get("frame_latency_ms", {}).get("resnet", {}).get("int8")
        if "classifier_ceiling_one_core" in t:
            lines += [
                f"| classifier alone, per hop with the window cache (same bundle, hop 10 s) | {t['classifier_ceiling_one_core']:.0f} | |",
                f"| classifier alone, full-frame pass | {t['classifier_ceiling_one_core_full_frame']:.0f} | |",
                f"| whole agent / classifier alone (per hop) | {t['ratio_to_classifier_ceiling']:.2f} | |",
            ]
        elif lat:
            lines.append(
                f"| classifier alone (hop 10 s / int8 p50 {lat['p50']:.2f} ms) | {10000 / lat['p50']:.0f} | |"
            )
        lines.append(
            f"| workload | {t['records']} records, {t['signal_s']:.0f} s of signal, {t['frames']} frames, "
            f"{t['repeats']} repeats | |"
        )
        stg = t.get("stages")
        if stg:
            lines += [
                "",
                "Where the agent's time goes (`benchmarks/stages.py`: exclusive share of the agent thread's CPU "
                f"time per stage, same records, 0.1 s chunks; {stg['frames']} frames):",
                "",
                "| stage | share | ms per frame |",
                "|---|---|---|",
            ]
            for k, v in stg["share"].items():
                lines.append(
                    f"| {k} | {v:.1%} | {1000 * v * stg['total_s'] / max(1, stg['frames']):.2f} |"
                )
    if "rss_mb" in r:
        rs, im = r["rss_mb"], r["import_ms"]
        lines += [
            "",
            "## Memory and size",
            "",
            "| figure | median | range |",
            "|---|---|---|",
            f"| agent RSS peak (MB) | {rs['peak']:.0f} | {rs['peak_spread']['min']:.0f}-{rs['peak_spread']['max']:.0f} |",
            f"| agent RSS steady (MB) | {rs['steady']:.0f} | {rs['steady_spread']['min']:.0f}-{rs['steady_spread']['max']:.0f} |",
            f"| bundle on disk (MB), Model 2 | {r['bundle_mb']:.2f} | |",
            f"| import edge.agent (ms) | {im['median_ms']:.0f} | {im['min_ms']:.0f}-{im['max_ms']:.0f} |",
        ]
    acc = r.get("accuracy", {})
    lines += [
        "",
        "## Accuracy (5-fold cross-validation, pooled; from `runs/cv-*/results.json`)",
        "",
    ]
    lines += [
        "| model | head | precision | " + " | ".join(METRICS) + " |",
        "|---" * (3 + len(METRICS)) + "|",
    ]
    for model in ("cnn", "resnet"):
        if model not in acc:
            lines.append(f"| {model} | not available | | " + " | " * len(METRICS))
            continue
        for head in ("svm", "sigmoid"):
            for p in ("fp32", "int8"):
                row = acc[model].get(head, {}).get(p)
                if row:
                    lines.append(
                        f"| {model} | {head} | {p} | "
                        + " | ".join(_f(row[k], 3) for k in METRICS)
                        + " |"
                    )
    lodo = r.get("accuracy_lodo", {})
    lines.append("")
    lines.append(
        "Leave-one-source-out: "
        + (", ".join(f"`{k}`" for k in lodo) + " (in results.json)" if lodo else "not available")
        + "."
    )
    arm = r.get("arm", {})
    if arm:
        a = arm["cortex_a72"]
        em = arm["emulation"]
        lines += [
            "",
            "## ARM",
            "",
            f"aarch64 emulation (qemu-user, int8 extractor output vs x86): {em['status']}"
            + (
                f" ({em.get('why', '')})"
                if em["status"] != "run"
                else f": bit-identical {em['bit_identical']} on {em['windows']} windows "
                f"(qemu CPUs {', '.join(em['versions'])}); x86 = integer reference: "
                f"{em['x86_equals_reference']}"
            )
            + ".",
            "",
            f"Cortex-A72 (**estimate**, not measured: {a['assumptions']['ghz']} GHz, "
            f"{a['assumptions']['fp32_macs_per_cycle']} fp32 / {a['assumptions']['int8_macs_per_cycle']} int8 "
            f"MAC per cycle at peak, Model 2): floor fp32 {a['fp32_floor_ms']:.1f} ms, int8 {a['int8_floor_ms']:.1f} ms "
            "per frame; real kernels run several times above the floor (see the x86 ratio above).",
        ]
    lines += ["", "## Goals", "", "| goal | measured | met |", "|---|---|---|"]
    for g, v, ok in goals(r):
        lines.append(f"| {g} | {v} | {'n/a' if ok is None else ('yes' if ok else 'NO')} |")
    return "\n".join(lines) + "\n"
