"""The fleet simulator end to end: agents (real publisher and spool), Mosquitto, a station."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout

import pytest

from bridge._cli import run_app
from bridge.cli import app
from bridge.errors import ConfigError
from bridge.fleet import percentile, proc_sample, run_fleet
from bridge.testing import find_mosquitto


class TestFleetHelpers:
    def test_percentile(self) -> None:
        assert percentile([3.0, 1.0, 2.0], 50) == 2.0
        assert percentile(list(range(101)), 99) == 99.0

    def test_proc_sample_of_self(self) -> None:
        import os

        cpu, rss = proc_sample(os.getpid())  # type: ignore[misc]
        assert cpu > 0 and 5 < rss < 4000
        assert proc_sample(2**22 + 12345) is None

    @pytest.mark.parametrize("kw", [{"devices": 0}, {"devices": 5001}, {"seconds": 0}])
    def test_bounded(self, kw: dict) -> None:
        args = {"devices": 2, "rate": 1.0, "seconds": 1.0, **kw}
        with pytest.raises(ConfigError):
            run_fleet(args.pop("devices"), args.pop("rate"), args.pop("seconds"))


@pytest.mark.slow
@pytest.mark.skipif(find_mosquitto() is None, reason="the fleet starts a mosquitto")
class TestFleet:
    def test_small_fleet_loses_nothing(self) -> None:
        out = io.StringIO()
        argv = ["fleet", "--devices", "6", "--rate", "2", "--seconds", "3", "--heartbeat-s", "1"]
        with redirect_stdout(out):
            assert run_app(app, [*argv, "--frame-hz", "2"]) == 0
        r = json.loads(out.getvalue())
        assert r["alerts"] == 6 * 6
        assert r["received"] == r["alerts"] and r["lost"] == 0 and r["rejected"] == 0
        assert r["flushed"] is True
        assert 0 < r["latency_ms"]["p50"] <= r["latency_ms"]["p99"] <= r["latency_ms"]["max"]
        assert r["broker"]["cpu_pct"] is not None and r["broker"]["rss_mb"] > 0
        assert r["subscriber"]["rss_mb"] > 0 and r["agents_cpu_pct"] > 0
