"""Every alert's strip and the live lead II are the monitor's signal (real broker and record)."""

from __future__ import annotations

import json
import time

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from bridge.publish import Publisher
from bridge.strip import Strip, decode_leads, encode_leads
from bridge.testing import start_broker
from bridge.wave import LiveWave
from edge.agent import Agent
from edge.bundle import load_bundle
from edge.dsp import preprocess
from edge.evidence import Evidence, encode_uv
from edge.records import read_record
from edge.replay import ReplaySource


def test_numpy_encoding_is_the_wire_format() -> None:
    rng = np.random.default_rng(0)
    x = np.cumsum(rng.normal(0, 0.05, (12, 3000)), axis=1).astype(np.float32)
    x[3, 10] = 40.0  # clipped: +32.767 mV
    uv = np.clip(np.rint(x.astype(np.float64) * 1000), -32768, 32767).astype(int)
    assert encode_uv(x) == encode_leads(uv.tolist())
    assert decode_leads(encode_uv(x), 12, 3000) == uv.tolist()


def test_the_window_follows_the_stream_and_restarts_with_it() -> None:
    ev = Evidence("bed-1", 500.0)
    x = np.arange(12 * 9000, dtype=np.float32).reshape(12, 9000)
    ev.push(x[:, :4000], 100, time.monotonic())
    ev.push(x[:, 4000:], 4100, time.monotonic())
    start, w = ev.window(9100)
    assert start == 4100 and np.array_equal(w, x[:, 4000:9000])
    start, w = ev.window(3000)  # before the stream's start: what there is
    assert start == 100 and np.array_equal(w, x[:, :2900])
    ev.push(x[:, :10], 50_000, time.monotonic())  # a new segment
    assert ev.window(9100) is None and ev.window(50_010)[0] == 50_000


@pytest.mark.slow
def test_strips_and_live_equal_the_preprocessed_record(samples_dir, tmp_path) -> None:
    broker = start_broker(tmp_path / "broker")
    got: list[tuple[str, bytes]] = []
    c = mqtt.Client(CallbackAPIVersion.VERSION2)
    c.on_message = lambda cl, u, m: got.append((m.topic, m.payload))
    c.connect("127.0.0.1", broker.port)
    c.subscribe([("ecg/bed-3/#", 1)])
    c.loop_start()
    try:
        time.sleep(0.3)
        bundle = load_bundle(None)
        path = samples_dir / "cpsc2018" / "A0001"
        pub = Publisher(broker.url, "bed-3", tmp_path / "spool.db").start()
        assert pub.wait_connected(10)
        agent = Agent(bundle, publisher=pub, device_id="bed-3", live=True, hop_s=5)
        agent.run(ReplaySource([path], speed=None))
        assert pub.flush(10)
        pub.close()
        time.sleep(0.5)
    finally:
        c.loop_stop()
        broker.stop()
    rec = read_record(path)
    uv = np.clip(
        np.rint(preprocess(rec.signal, rec.fs, bundle.manifest.dsp) * 1000.0), -32768, 32767
    )
    alerts = [json.loads(p) for t, p in got if t.endswith("/alerts")]
    strips = {t.rsplit("/", 1)[1]: Strip.parse(p) for t, p in got if "/strips/" in t}
    assert alerts, "no alert on A0001"
    for a in alerts:
        ref = a["strip"]
        s = strips[a["alert_id"]]
        assert ref["topic"] == f"ecg/bed-3/strips/{a['alert_id']}"
        assert (ref["start_sample"], ref["n_samples"]) == (s.start_sample, s.n_samples)
        assert s.start_sample + s.n_samples == a["frame"]["end_sample"]  # ends at the decision
        assert s.n_samples == min(5000, a["frame"]["end_sample"])
        want = uv[:, s.start_sample : s.start_sample + s.n_samples]
        assert np.abs(np.array(s.samples) - want).max() <= 1, np.abs(
            np.array(s.samples) - want
        ).max()
        assert s.alert["findings"] and s.alert["priority"] == a["priority"]
    waves = [LiveWave.parse(p) for t, p in got if t.endswith("/live")]
    assert all(len(w.samples) <= 125 for w in waves)  # at most 1 s a message
    idx = np.concatenate(
        [np.arange(w.start_sample, w.start_sample + len(w.samples)) for w in waves]
    )
    assert np.array_equal(idx, np.arange(idx[0], idx[0] + len(idx)))  # no gap, no overlap
    vals = np.concatenate([w.samples for w in waves])
    assert np.abs(vals - uv[1, idx * 4]).max() <= 1  # lead II at 125 Hz
    assert idx[0] == 0 and idx[-1] >= rec.header.n_samples // 4 - 40  # the whole record
    assert all(w.fs == 125.0 and w.lead == "II" for w in waves)
    assert any(w.heart_rate is not None and 60 < w.heart_rate < 160 for w in waves)


def test_the_agent_and_its_cli_never_import_matplotlib_or_the_station() -> None:
    import subprocess
    import sys

    code = (
        "import sys, edge.agent, edge.cli, edge.evidence, bridge.publish; "
        "bad = [m for m in ('matplotlib', 'starlette', 'uvicorn', 'bridge.strip_png') "
        "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.slow
def test_ecg_edge_strip_draws_a_record_to_scale(samples_dir, tmp_path) -> None:
    import os
    import subprocess
    import sys

    from PIL import Image

    out = tmp_path / "strip.png"
    exe = os.path.join(os.path.dirname(sys.executable), "ecg-edge")
    r = subprocess.run(
        [exe, "strip", str(samples_dir / "ptb-xl" / "HR00001"), "--out", str(out), "--dpi", "127"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "HR00001:" in r.stdout and "NSR" in r.stdout
    w, h = Image.open(out).size
    # 262 mm wide (8 mm calibration + 10 s at 25 mm/s + 4 mm) at 127 dpi = 5 px/mm
    assert abs(w - 262 * 5) <= 2, (w, h)
    r = subprocess.run(
        [exe, "strip", str(samples_dir / "ptb-xl" / "HR00001"), "--start", "60", "--out",
         str(out)], capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 2 and "--start" in r.stderr
