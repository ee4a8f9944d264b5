# ruff: noqa: F811  (pytest fixtures imported from agent_fixtures)
"""The agent: parity with the trainer's scoring path, segments, gaps, latency, simulated device."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time

import numpy as np
import pytest
from agent_fixtures import (  # noqa: F401  (fixtures)
    CLI,
    ROOT,
    agent_bundle,
    json_lines,
    loaded_bundle,
    one_record_per_database,
    parity_bundle,
    run_cli,
)

from edge.agent import Agent, hop_samples_for, score_record
from edge.bundle import load_bundle
from edge.classify import Classifier
from edge.errors import ConfigError
from edge.records import read_record
from edge.replay import ReplaySource
from edge.sources import Chunk

TOL = 1e-4


def _collect(agent_kw, bundle, source):
    events: list[dict] = []
    agent = Agent(bundle, sink=events.append, **agent_kw)
    summary = agent.run(source)
    return events, summary


@pytest.mark.slow
@pytest.mark.full_data
class TestParity:
    """``ecg-edge replay REC --speed max --json`` == :func:`score_record`, every database."""

    @pytest.mark.parametrize("precision", ["fp32", "int8"])
    def test_replay_cli_matches_score_record(self, shared_data, parity_bundle, precision):
        records = one_record_per_database(shared_data)
        assert len(records) >= 7
        proc = run_cli(
            "replay",
            *map(str, records),
            "--speed",
            "max",
            "--json",
            "--precision",
            precision,
            "--bundle",
            str(parity_bundle),
        )
        assert proc.returncode == 0, proc.stderr
        events = json_lines(proc.stdout)
        got = {
            (e["record"], e["start_sample"], e["end_sample"]): e["scores"]
            for e in events
            if e["type"] == "frame"
        }
        failed = {
            (e["record"], e["frame"]["start_sample"], e["frame"]["end_sample"])
            for e in events
            if e["type"] == "quality"
        }
        clf = Classifier(load_bundle(parity_bundle), precision)
        n_compared = 0
        worst = 0.0
        for h in records:
            rec = read_record(h)
            ref = score_record(clf, rec, 5000)
            assert ref, rec.name
            for frame, scores in ref:
                key = (rec.name, frame.start_sample, frame.end_sample)
                if key in failed:
                    continue
                assert key in got, f"frame {key} missing from the replay"
                stream = np.array([got[key][c] for c in clf.codes])
                shown = clf.classification(scores).scores  # events carry probabilities
                worst = max(worst, float(np.max(np.abs(stream - shown))))
                n_compared += 1
            n_stream = sum(1 for k in got if k[0] == rec.name) + sum(
                1 for k in failed if k[0] == rec.name
            )
            assert n_stream == len(ref), rec.name
        assert n_compared >= len(records)
        assert worst <= TOL, f"max abs score difference {worst:g}"

    def test_hop_5s_matches(self, samples_dir, loaded_bundle):
        rec = read_record(samples_dir / "ptb" / "S0001")
        clf = Classifier(loaded_bundle, "fp32")
        ref = score_record(clf, rec, 2500)
        events, _ = _collect(
            {"hop_s": 5.0, "classifier": clf}, loaded_bundle, ReplaySource([rec.header.path])
        )
        frames = [e for e in events if e["type"] == "frame"]
        assert len(frames) == len(ref)
        for e, (f, s) in zip(frames, ref):
            assert (e["start_sample"], e["end_sample"]) == (f.start_sample, f.end_sample)
            np.testing.assert_allclose([e["scores"][c] for c in clf.codes], s, atol=TOL)


class TestAgent:
    def test_events_and_status(self, samples_dir, loaded_bundle):
        src = ReplaySource([samples_dir / "cpsc2018"], speed=None)
        events, summary = _collect({"precision": "fp32"}, loaded_bundle, src)
        assert events[0]["type"] == "status" and events[0]["state"] == "online"
        assert events[-1]["type"] == "status" and events[-1]["state"] == "offline"
        assert summary.records == ["A0001", "A0003", "A0005"]
        frames = [e for e in events if e["type"] == "frame"]
        assert len(frames) == summary.frames > 0
        for e in frames:
            assert e["latency_ms"] >= 0 and set(e["scores"]) == set(loaded_bundle.head.codes)
        for e in events:
            if e["type"] == "alert":
                assert "426783006" not in [f["code"] for f in e["findings"]]
                assert e["latency_ms"] >= 0
                if e["kind"] == "diagnosis":
                    assert e["bundle_sha256"] == loaded_bundle.sha256
                    assert e["priority"] == "low"
                else:  # a fast alarm (edge.alarms); never an asystole on these records
                    assert e["condition"] != "asystole" and not e["findings"]
        for e in frames:  # heart rate in every frame event, method stated
            assert e["heart_rate"]["method"] and 40 < e["heart_rate"]["bpm"] < 200

    def test_gap_resets_segment_and_reports(self, loaded_bundle):
        rng = np.random.default_rng(0)
        t = np.arange(10000) / 500
        x = (np.sin(2 * np.pi * 1.2 * t) * 0.5 + rng.normal(0, 0.01, (12, 10000))).astype(
            np.float32
        )

        class Src:
            fs = 500.0

            def chunks(self):
                yield Chunk(x[:, :6000], 500.0, 0, received_at=time.monotonic())
                yield Chunk(x[:, 6000:], 500.0, 6500, gap_before=500, received_at=time.monotonic())

            def close(self):
                pass

        events, summary = _collect({"precision": "fp32"}, loaded_bundle, Src())
        q = [e for e in events if e["type"] == "quality"]
        assert summary.gaps == 1 and any(
            "signal lost for 500 samples" in r for r in q[0]["quality"]["reasons"]
        )
        frames = [e for e in events if e["type"] == "frame"]
        # first segment: a frame at 5000; second starts at 6500: no hop complete in 4000 samples
        assert [(f["start_sample"], f["end_sample"]) for f in frames] == [(0, 5000)]

    def test_rate_change_is_reported(self, loaded_bundle):
        x = np.zeros((12, 1000), np.float32)
        x[:, ::100] = 1.0

        class Src:
            fs = 500.0

            def chunks(self):
                yield Chunk(x, 500.0, 0)
                yield Chunk(x, 250.0, 500)

            def close(self):
                pass

        events, _ = _collect({}, loaded_bundle, Src())
        reasons = [r for e in events if e["type"] == "quality" for r in e["quality"]["reasons"]]
        assert any("sample rate changed from 500 to 250 Hz" in r for r in reasons)

    def test_flat_frame_is_not_diagnosed(self, samples_dir, loaded_bundle):
        rec = read_record(samples_dir / "cpsc2018" / "A0001")
        sig = rec.signal.copy()
        sig[7] = 0.0  # V2 disconnected

        class Src:
            fs = rec.fs

            def chunks(self):
                yield Chunk(sig, rec.fs, 0, record="X", end_of_record=True)

            def close(self):
                pass

        events, summary = _collect({}, loaded_bundle, Src())
        assert summary.frames == 0 and summary.quality_failures == 2
        assert not [e for e in events if e["type"] == "frame"]
        alerts = [e for e in events if e["type"] == "alert"]
        assert all(e["kind"] == "technical" for e in alerts)  # no diagnosis, no asystole
        by = {e["condition"]: e for e in alerts}
        assert by["lead_off"]["leads"] == ["V2"] and by["lead_off"]["priority"] == "low"
        assert by["lead_off"]["onset_sample"] == 500  # the first evaluation, after 1 s
        assert by["poor_signal"]["priority"] == "low"
        q = [e for e in events if e["type"] == "quality"]
        assert q[0]["quality"]["bad_leads"] == ["V2"]
        assert q[0]["quality"]["reasons"] == ["flat line on V2"]

    def test_stop_finishes_cleanly(self, samples_dir, loaded_bundle):
        src = ReplaySource([samples_dir], speed=None, loop=True)
        events: list[dict] = []
        agent = Agent(loaded_bundle, sink=events.append)

        def sink(e):
            events.append(e)
            if sum(1 for x in events if x["type"] == "frame") == 5:
                agent.stop()

        agent.sink = sink
        summary = agent.run(src)
        assert summary.stopped and summary.frames == 5
        assert events[-1]["state"] == "offline"

    def test_bad_options(self, loaded_bundle):
        with pytest.raises(ConfigError, match="hop_s"):
            hop_samples_for(31.0)
        with pytest.raises(ConfigError, match="hop_s"):
            hop_samples_for(-1.0)
        with pytest.raises(ConfigError, match="confirm"):
            Agent(loaded_bundle, confirm=0)


@pytest.mark.slow
class TestSimulatedDevice:
    """``simulate-device`` on a pty, ``run --device`` reading it: real processes, real record."""

    def test_run_reads_simulated_device(self, samples_dir, loaded_bundle, agent_bundle):
        rec_path = samples_dir / "ptb" / "S0001"
        rec = read_record(rec_path)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        sim = subprocess.Popen(
            [*CLI, "simulate-device", str(rec_path), "--speed", "max"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        agent = None
        try:
            port = sim.stdout.readline().strip()
            assert port.startswith("/dev/"), port + sim.stderr.read()
            agent = subprocess.Popen(
                [
                    *CLI,
                    "run",
                    "--device",
                    port,
                    "--fs",
                    f"{rec.fs:g}",
                    "--json",
                    "--precision",
                    "fp32",
                    "--bundle",
                    str(agent_bundle),
                ],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            want = rec.signal.shape[1] * 500 // int(rec.fs) // 5000  # full hops, no flush
            lines: list[str] = []
            deadline = time.monotonic() + 120
            while sum('"type":"frame"' in ln for ln in lines) < want:
                assert time.monotonic() < deadline, lines
                ready, _, _ = select.select([agent.stdout], [], [], 1.0)
                if ready:
                    line = agent.stdout.readline()
                    assert line, agent.stderr.read()
                    lines.append(line)
            agent.send_signal(signal.SIGTERM)
            rest, err = agent.communicate(timeout=120)
            assert agent.returncode == 0, err
            events = json_lines("".join(lines) + rest)
            assert events[-1]["type"] == "status" and events[-1]["state"] == "offline"
            frames = [e for e in events if e["type"] == "frame"]
            ref = score_record(Classifier(loaded_bundle, "fp32"), rec, 5000)[:want]
            for e, (f, s) in zip(frames, ref):
                assert (e["start_sample"], e["end_sample"]) == (f.start_sample, f.end_sample)
                got = np.array([e["scores"][c] for c in loaded_bundle.head.codes])
                # the wire carries 1 uV integers: S0001 is stored at 1 uV, so nothing is lost
                np.testing.assert_allclose(got, s, atol=TOL)
        finally:
            for p in (agent, sim):
                if p is not None and p.poll() is None:
                    p.kill()
                    p.wait()


class TestLeadsRestored:
    """A confirmed LA/RA reversal is undone before classification (``--keep-leads``: not)."""

    @staticmethod
    def _source(x: np.ndarray, chunk: int = 1000):
        class Src:
            fs = 500.0

            def chunks(self):
                for i in range(0, x.shape[1], chunk):
                    yield Chunk(x[:, i : i + chunk], 500.0, i, received_at=time.monotonic())

            def close(self):
                pass

        return Src()

    def test_reversed_frames_score_as_the_wired_record(self, samples_dir, loaded_bundle):
        from edge.reversal import reverse_la_ra

        rec = read_record(samples_dir / "ptb-xl" / "HR00001")
        x = np.tile(rec.signal[:, :5000], (1, 4)).astype(np.float32)  # 40 s of its beats
        runs = {}
        for name, sig, kw in (
            ("wired", x, {}),
            ("reversed", reverse_la_ra(x), {}),
            ("kept", reverse_la_ra(x), {"restore_leads": False}),
        ):
            events, summary = _collect(
                {"precision": "fp32", **kw}, loaded_bundle, self._source(sig)
            )
            runs[name] = ([e for e in events if e["type"] == "frame"], events, summary)
        wired, reversed_, kept = (runs[k][0] for k in ("wired", "reversed", "kept"))
        assert len(wired) == len(reversed_) == len(kept) == 4
        alarms = [e for e in runs["reversed"][1] if e["type"] == "alert"]
        onset = [a for a in alarms if a.get("condition") == "lead_reversal"]
        assert onset and onset[0]["onset_sample"] <= 20000  # two checks in a row
        at = onset[0]["onset_sample"]
        for w, r, k in zip(wired, reversed_, kept):
            if r["end_sample"] < at:  # before the alarm: classified as recorded
                assert r["leads_restored"] is None and k["scores"] == r["scores"]
            else:  # after it: the wired record's scores (the filters are linear, odd)
                assert "LA/RA reversal" in r["leads_restored"]
                assert r["scores"] == pytest.approx(w["scores"], abs=1e-5)
                assert k["leads_restored"] is None
                assert max(abs(k["scores"][c] - w["scores"][c]) for c in w["scores"]) > 1e-3
        n_after = sum(r["end_sample"] >= at for r in reversed_)
        assert n_after >= 3 and runs["reversed"][2].frames_restored == n_after
        assert runs["kept"][2].frames_restored == 0
        assert runs["wired"][2].frames_restored == 0
