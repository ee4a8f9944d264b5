"""``python -m benchmarks.beats --quick`` runs and its figures are sane."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
class TestBeatsBenchmark:
    def test_quick_run(self, tmp_path: Path, shared_data: Path) -> None:
        pytest.importorskip("neurokit2")
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.beats", "--quick", "--out", str(tmp_path)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        r = json.loads((tmp_path / "beats-quick.json").read_text())
        ours = r["ludb"]["detectors"]["ours, 12 leads"]
        assert ours["se"] >= 0.995 and ours["ppv"] >= 0.995
        assert set(r["ludb"]["detectors"]) >= {"xqrs, lead II", "NeuroKit2, lead II"}
        assert r["asystole"]["alarmed"] == r["asystole"]["records"] > 0
        assert r["asystole"]["from_last_beat_s"]["max"] <= 6.0
        assert r["tachycardia"]["from_onset_s"]["max"] <= 8.0
        assert r["false_alarms"]["asystole"] == 0
        assert "| ours, 12 leads |" in proc.stdout
