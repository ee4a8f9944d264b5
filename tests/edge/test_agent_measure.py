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
