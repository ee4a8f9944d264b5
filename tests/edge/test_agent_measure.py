"""Measurements reach the agent's frame events, diagnostic alerts and status heartbeat."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from agent_fixtures import build_tiny_bundle

from bridge.schema import Alert, validate
from edge.agent import Agent
from edge.bundle import load_bundle
from edge.replay import ReplaySource

LUDB = Path(__file__).resolve().parents[3] / "shared" / "data" / "challenge2020" / "ludb"


@pytest.fixture(scope="module")
def always_positive(tmp_path_factory):
    """A tiny bundle whose every class fires: each frame makes a diagnostic alert."""
    return load_bundle(
        build_tiny_bundle(tmp_path_factory.mktemp("b") / "pos", thresholds=np.full(4, -1e9))
    )


class TestAgentMeasurements:
    def test_frame_alert_and_status_carry_measurements(self, always_positive):
        hea = LUDB / "LU0002.hea"
        if not hea.exists():
            pytest.skip("LUDB not found")
        events: list[dict] = []
        agent = Agent(always_positive, sink=events.append, precision="fp32")
        agent.run(ReplaySource([hea], speed=None))
        frames = [e for e in events if e["type"] == "frame"]
        assert frames
        m = frames[0]["measurements"]
        assert m is not None and m["n_beats"] >= 8  # 10 s of sinus rhythm
        assert 60 <= m["qrs_ms"] <= 160 and 250 <= m["qt_ms"] <= 550
        assert m["qtc_bazett_ms"] is not None and m["leads_used"]
        alerts = [e for e in events if e["type"] == "alert" and e.get("kind") == "diagnosis"]
        assert alerts, "the always-positive bundle makes an alert"
        for e in alerts:
            payload = {k: v for k, v in e.items() if k != "type"}
            validate(payload)
            assert Alert.from_json(payload).measurements["qrs_ms"] == m["qrs_ms"]
        assert agent.counters()["measurements"]["n_beats"] >= 8

    def test_each_record_measured_on_its_own_beats(self, always_positive):
        """Records replayed one after another restart the stream clock at 0: the
        second record's frame holds its own beats, never the first one's again."""
        heas = [LUDB / "LU0002.hea", LUDB / "LU0003.hea", LUDB / "LU0002.hea"]
        if not all(h.exists() for h in heas):
            pytest.skip("LUDB not found")
        events: list[dict] = []
        agent = Agent(always_positive, sink=events.append, precision="fp32")
        agent.run(ReplaySource(heas, speed=None))
        frames = [e for e in events if e["type"] == "frame"]
        by_record: dict[str, list[dict]] = {}
        for e in frames:
            by_record.setdefault(e["record"], []).append(e["measurements"])
        first, again = by_record["LU0002"][0], by_record["LU0002"][-1]
        assert len(by_record["LU0002"]) == 2  # the same record twice: the same figures
        assert again == first and 8 <= first["n_beats"] <= 20  # 10 s, not 20 s of beats
        assert by_record["LU0003"][0]["n_beats"] <= 20


class TestNothingLeftForTheFrame:
    def test_a_frames_alert_waits_for_no_delineation(self, always_positive, monkeypatch):
        """Beats wait to be delineated many at a time; once a frame is due within a second
        (or a replayed record's end), the ready ones are delineated in one batch. The
        frame's measurements are those of the beats measured by then: asking for them
        delineates nothing, so a frame's alert never waits for delineation (nor do the
        counters the publisher is given every second)."""
        from edge.delineate import Delineator
        from edge.measure import Measurer

        # CPSC records of 15-36 s: each ends in a partial, flushed frame
        heas = [LUDB.parent / "cpsc2018" / f"{n}.hea" for n in ("A0001", "A0005", "A0011", "A0012")]
        if not all(h.exists() for h in heas):
            pytest.skip("the Challenge records are not here")
        batches: list[int] = []
        in_span: list[int] = []
        real_measure, real_span = Delineator._measure, Measurer.span

        def measure(self, todo):  # type: ignore[no-untyped-def]
            batches.append(len(todo))
            return real_measure(self, todo)

        def span(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            before = len(batches)
            out = real_span(self, *args, **kwargs)
            in_span.append(len(batches) - before)
            return out

        monkeypatch.setattr(Delineator, "_measure", measure)
        monkeypatch.setattr(Measurer, "span", span)
        events: list[dict] = []
        in_counters: list[int] = []

        def sink(ev: dict) -> None:  # the counters (every second to the publisher), mid-stream
            events.append(ev)
            before = len(batches)
            agent.counters()
            in_counters.append(len(batches) - before)

        agent = Agent(always_positive, sink=sink, precision="fp32")
        agent.run(ReplaySource(heas, speed=None))
        frames = [e for e in events if e["type"] == "frame"]
        assert len(frames) >= 4 and all(e["measurements"]["n_beats"] >= 8 for e in frames)
        assert in_span and in_span == [0] * len(in_span)  # nothing delineated for a frame
        assert in_counters and in_counters == [0] * len(in_counters)  # nor for the counters
        beats = sum(b for b in batches)
        assert beats >= 60 and len(batches) <= beats / 3  # in batches, not beat by beat
