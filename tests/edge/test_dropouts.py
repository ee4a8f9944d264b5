# ruff: noqa: F811  (pytest fixtures imported from agent_fixtures)
"""Short dropouts are bridged (interpolated, state kept), long ones restart the filters."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from agent_fixtures import agent_bundle, loaded_bundle  # noqa: F401  (fixtures)

from edge.agent import Agent
from edge.records import read_record
from edge.serial_source import SerialSource
from edge.simulate import SimulatedDevice
from edge.sources import Chunk

# With 1 packet in 1000 lost and filled in, a frame's scores move by less than this
# (tiny random bundle: scores of order 0.4; measured 2.3e-5) and the frames and alerts are the same.
SCORE_TOL = 1e-3


def _signal(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 500
    return (np.sin(2 * np.pi * 1.2 * t) * 0.5 + rng.normal(0, 0.01, (12, n))).astype(np.float32)


class _Chunks:
    fs = 500.0

    def __init__(self, chunks):
        self._chunks = chunks

    def chunks(self):
        yield from self._chunks

    def close(self):
        pass


def _run(bundle, chunks, **kw):
    events: list[dict] = []
    summary = Agent(bundle, sink=events.append, precision="fp32", **kw).run(_Chunks(chunks))
    return events, summary


class TestShortGapsAreBridged:
    def test_one_lost_sample_keeps_the_frames(self, loaded_bundle):
        x = _signal(12000)
        now = time.monotonic()
        clean, _ = _run(
            loaded_bundle, [Chunk(x[:, :6000], 500.0, 0), Chunk(x[:, 6000:], 500.0, 6000)]
        )
        lost = [Chunk(x[:, :6000], 500.0, 0, received_at=now),
                Chunk(x[:, 6001:], 500.0, 6001, gap_before=1, received_at=now)]  # fmt: skip
        events, summary = _run(loaded_bundle, lost)
        frames = [e for e in events if e["type"] == "frame"]
        want = [(e["start_sample"], e["end_sample"]) for e in clean if e["type"] == "frame"]
        assert (
            [(f["start_sample"], f["end_sample"]) for f in frames]
            == want
            == [
                (0, 5000),
                (0, 10000),
            ]
        )
        assert frames[0]["filled"] == {"samples": 0, "runs": []}
        assert frames[1]["filled"] == {"samples": 1, "runs": [[6000, 1]]}
        assert summary.gaps == 0 and summary.filled_gaps == 1 and summary.filled_samples == 1
        assert not [e for e in events if e["type"] == "quality"]
        offline = events[-1]["extra"]
        assert offline["filled_gaps"] == 1 and offline["filled_samples"] == 1

    def test_fill_is_linear_between_the_neighbours(self, loaded_bundle):
        agent = Agent(loaded_bundle, precision="fp32")
        x = np.zeros((12, 100), np.float32)
        agent.process(Chunk(x, 500.0, 0))
        y = np.full((12, 10), 4.0, np.float32)
        out = agent._fill(Chunk(y, 500.0, 103, gap_before=3), 3)
        np.testing.assert_allclose(out[0, :3], [1.0, 2.0, 3.0])
        assert out.shape == (12, 13)

    def test_long_gap_restarts_without_saying_the_stream_restarted(self, loaded_bundle):
        x = _signal(12000)
        chunks = [Chunk(x[:, :6000], 500.0, 0), Chunk(x[:, 6100:], 500.0, 6100, gap_before=100)]
        events, summary = _run(loaded_bundle, chunks, max_fill_s=0.1)
        reasons = [r for e in events if e["type"] == "quality" for r in e["quality"]["reasons"]]
        assert summary.gaps == 1 and summary.filled_gaps == 0
        assert len(reasons) == 1 and "signal lost for 100 samples (0.200 s)" in reasons[0]
        assert "stream restarted" not in reasons[0] and "filters restarted" in reasons[0]
        # the same gap is bridged when allowed
        _, summary = _run(loaded_bundle, chunks, max_fill_s=0.25)
        assert summary.gaps == 0 and summary.filled_samples == 100

    def test_device_restart_is_named_as_such(self, loaded_bundle):
        x = _signal(8000)
        chunks = [
            Chunk(x[:, :4000], 500.0, 0),
            Chunk(x[:, 4000:], 500.0, 4001, gap_before=1, meta={"seq_reset": True}),
        ]
        events, summary = _run(loaded_bundle, chunks)
        reasons = [r for e in events if e["type"] == "quality" for r in e["quality"]["reasons"]]
        assert summary.gaps == 1 and summary.filled_gaps == 0
        assert reasons and "the device restarted" in reasons[0]

    def test_a_frame_mostly_filled_in_is_not_diagnosed(self, loaded_bundle):
        x = _signal(6000)
        chunks, start = [], 0
        while start + 40 < 6000:  # 40 samples, then 40 lost, over and over: 50 % filled
            chunks.append(
                Chunk(x[:, start : start + 40], 500.0, start, gap_before=40 if start else 0)
            )
            start += 80
        events, summary = _run(loaded_bundle, chunks)
        assert summary.frames == 0 and summary.quality_failures >= 1
        q = [e for e in events if e["type"] == "quality"]
        assert "filled in across dropouts" in q[0]["quality"]["reasons"][0]
        assert q[0]["frame"]["filled"]["samples"] > 0

    def test_filled_runs_travel_in_the_alert_payload(self, loaded_bundle):
        from bridge.schema import Alert, parse

        x = _signal(12000)
        # the gap lies in the first frame, which raises the first onset
        chunks = [Chunk(x[:, :3000], 500.0, 0), Chunk(x[:, 3002:], 500.0, 3002, gap_before=2)]
        events, _ = _run(loaded_bundle, chunks)
        alerts = [e for e in events if e["type"] == "alert"]
        with_fill = [a for a in alerts if "filled" in a["frame"]]
        assert with_fill, alerts
        a = with_fill[0]
        assert a["frame"]["filled"] == {"samples": 2, "runs": [[3000, 2]]}
        payload = {k: v for k, v in a.items() if k != "type"}
        assert isinstance(parse(payload), Alert)


def _device_run(bundle, record, protocol: str, corrupt_every: int) -> tuple[list[dict], object]:
    """Play ``record`` through a pty (real pyserial) into the agent; return events, parser stats."""
    rec = read_record(record)
    events: list[dict] = []
    with SimulatedDevice(
        record, protocol=protocol, speed=None, corrupt_every=corrupt_every
    ) as device:
        src = SerialSource(device.port, protocol=protocol, fs=rec.fs, check_rate=False,
                           log=lambda m: None)  # fmt: skip
        agent = Agent(bundle, sink=events.append, precision="fp32")
        t = threading.Thread(target=agent.run, args=(src,), daemon=True)
        t.start()
        assert device.wait(120), "the device did not finish"
        time.sleep(0.5)
        agent.stop()
        t.join(30)
        assert not t.is_alive()
    return events, src.stats


@pytest.mark.slow
class TestNoisyCable:
    """1 corrupted packet (CSV line) per 1000, through a pty: the same frames as a clean run."""

    @pytest.mark.parametrize("protocol", ["binary", "csv"])
    def test_frames_scores_alerts_match_a_clean_run(self, samples_dir, loaded_bundle, protocol):
        record = samples_dir / "cpsc2018-extra" / "Q0005"  # 47.7 s at 500 Hz
        clean, _ = _device_run(loaded_bundle, record, protocol, 0)
        noisy, stats = _device_run(loaded_bundle, record, protocol, 1000)
        lost = stats.crc_errors if protocol == "binary" else stats.bad_lines
        assert lost == 23  # 23853 samples: 999, 1999, ..., 22999
        cf = [e for e in clean if e["type"] == "frame"]
        nf = [e for e in noisy if e["type"] == "frame"]
        assert len(cf) == 4  # at 10, 20, 30, 40 s (a live device has no end: no flush)
        assert [(e["start_sample"], e["end_sample"]) for e in nf] == [
            (e["start_sample"], e["end_sample"]) for e in cf
        ]
        for c, n in zip(cf, nf):
            diff = max(abs(c["scores"][k] - n["scores"][k]) for k in c["scores"])
            assert diff < SCORE_TOL, (c["start_sample"], diff)
            assert n["filled"]["samples"] == sum(
                1 for k in range(c["start_sample"], c["end_sample"]) if k % 1000 == 999
            )

        def alerts(events):
            return [(a["event"], [f["code"] for f in a["findings"]], a["frame"]["start_sample"])
                    for a in events if a["type"] == "alert"]  # fmt: skip

        assert alerts(noisy) == alerts(clean)
        offline = noisy[-1]["extra"]
        assert offline["gaps"] == 0 and offline["filled_gaps"] == 23
        # the parser's counters are in the status event (and so in the heartbeat)
        serial = offline["serial"]
        assert serial["crc_errors" if protocol == "binary" else "bad_lines"] == 23
        assert serial["gaps"] == 23 and serial["samples_lost"] == 23
        assert serial["bytes_discarded"] >= 23 and serial["packets_ok"] == 23853 - 23


@pytest.mark.slow
class TestRunSummary:
    """``ecg-edge run`` on a simulated noisy device: the summary shows what the parser counted."""

    def test_summary_and_json_status_show_the_counters(self, samples_dir, agent_bundle):
        import os
        import signal
        import subprocess

        from agent_fixtures import CLI, ROOT

        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        record = samples_dir / "cpsc2018" / "A0005"  # 25 s
        outs = {}
        for as_json in (False, True):
            sim = subprocess.Popen(
                [*CLI, "simulate-device", str(record), "--speed", "max", "--corrupt-every", "1000"],
                cwd=ROOT, stdout=subprocess.PIPE, text=True, env=env,
            )  # fmt: skip
            port = sim.stdout.readline().strip()
            run = subprocess.Popen(
                [*CLI, "run", "--device", port, "--fs", "500", "--bundle", str(agent_bundle),
                 "--precision", "fp32", *(["--json"] if as_json else [])],
                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
            )  # fmt: skip
            sim.wait(120)
            time.sleep(2.0)
            run.send_signal(signal.SIGTERM)
            outs[as_json] = run.communicate(timeout=60)
            assert run.returncode == 0, outs[as_json][1]
        err = outs[False][1]
        assert "2 frames diagnosed" in err and "record(s)" not in err
        assert "dropouts: 12 filled in (12 samples), 0 too long to fill" in err
        assert "12 CRC errors" in err and "12 sequence gaps (12 samples lost)" in err
        status = [json.loads(x) for x in outs[True][0].splitlines() if '"status"' in x]
        assert status[-1]["state"] == "offline"
        assert status[-1]["extra"]["serial"]["crc_errors"] == 12
        assert status[-1]["extra"]["filled_samples"] == 12
