# ruff: noqa: F811  (pytest fixtures imported from agent_fixtures)
"""The CLI a user expects (issue 9 §5): exit codes, --version/-h, flags, NO_COLOR, --quiet,
flag names in errors, true CLEARED text, abbreviations, early frames, one clock, state dir."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from agent_fixtures import ROOT, agent_bundle, loaded_bundle, run_cli  # noqa: F401

from edge.agent import Agent, AgentSummary
from edge.sources import Chunk

CLIS = ["edge.cli", "bridge.cli", "trainer.cli"]


def _py(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


class TestEveryCli:
    @pytest.mark.parametrize("module", CLIS)
    def test_version_and_short_help(self, module):
        v = _py("-m", module, "--version")
        assert v.returncode == 0 and v.stdout.strip().endswith("0.1.0"), v.stderr
        h = _py("-m", module, "-h")
        assert h.returncode == 0 and "Usage" in h.stdout
        assert "--quiet" in h.stdout and "--log-level" in h.stdout and "--version" in h.stdout

    @pytest.mark.parametrize("module", CLIS)
    def test_help_names_no_file_a_user_lacks_and_shows_flags_as_flags(self, module):
        from bridge._cli import _walk, build_command

        app = __import__(module, fromlist=["app"]).app
        root = build_command(app)
        for cmd in _walk(root):
            path = [] if cmd is root else [cmd.name]
            if cmd is not root and module == "edge.cli" and cmd.name not in ("replay", "run"):
                continue  # enough: the two long commands and every root
            out = _py("-m", module, *path, "-h").stdout
            assert "<bool>" not in out, (module, path)
            assert "DESIGN.md" not in out and "../shared" not in out, (module, path)

    def test_user_facing_docs_name_no_missing_file(self):
        for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
            text = doc.read_text("utf-8")
            assert "DESIGN.md" not in text and "../shared" not in text, doc

    def test_mosquitto_clients_package_is_named(self):
        for doc in (ROOT / "README.md", ROOT / "docs" / "mqtt.md"):
            assert "mosquitto-clients" in doc.read_text("utf-8"), doc

    def test_ecg_train_without_the_training_extras_is_one_line(self, tmp_path):
        code = (
            "import sys\n"
            "for m in ('torch', 'sklearn', 'onnx', 'matplotlib', 'tqdm'): sys.modules[m] = None\n"
            "from trainer.cli import main\n"
            f"sys.argv = ['ecg-train', 'fit', 'edge/samples', '--out', {str(tmp_path / 'b')!r}]\n"
            "main()\n"
        )
        r = _py("-c", code)
        assert r.returncode == 2
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "pip install -e '.[train]'" in lines[0], r.stderr

    def test_bad_log_level_is_bad_input(self):
        r = _py("-m", "edge.cli", "--log-level", "loud", "info")
        assert r.returncode == 2 and "loud" in r.stderr


class TestEcgEdge:
    def test_errors_name_the_flag(self, samples_dir, agent_bundle):
        r = run_cli("replay", str(samples_dir / "cpsc2018" / "A0001"), "--hop-s", "99",
                    "--bundle", str(agent_bundle))  # fmt: skip
        assert r.returncode == 2 and "--hop-s" in r.stderr and "'hop_s'" not in r.stderr
        r = run_cli("replay", str(samples_dir / "cpsc2018" / "A0001"), "--max-fill-s", "-1",
                    "--bundle", str(agent_bundle))  # fmt: skip
        assert r.returncode == 2 and "--max-fill-s" in r.stderr, r.stderr

    def test_a_flag_given_a_value_is_explained(self, samples_dir, agent_bundle):
        r = run_cli("replay", "--json", "true", "--bundle", str(agent_bundle))
        assert r.returncode == 2 and "take no value" in r.stderr, r.stderr

    def test_a_folder_of_bad_records_fails_a_partly_bad_one_does_not(
        self, tmp_path, samples_dir, agent_bundle
    ):
        bad = tmp_path / "bad"
        bad.mkdir()
        for name in ("X1", "X2"):
            (bad / f"{name}.hea").write_text("this is not a header\n")
        r = run_cli("replay", str(bad), "--speed", "max", "--bundle", str(agent_bundle))
        assert r.returncode == 2 and "none of the 2 record(s) could be read" in r.stderr
        mixed = tmp_path / "mixed"
        mixed.mkdir()
        (mixed / "X1.hea").write_text("this is not a header\n")
        for ext in ("hea", "mat"):
            src = samples_dir / "cpsc2018" / f"A0003.{ext}"
            (mixed / src.name).write_bytes(src.read_bytes())
        r = run_cli("replay", str(mixed), "--speed", "max", "--bundle", str(agent_bundle),
                    "--precision", "fp32")  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert "1 record(s) played, 1 skipped (unreadable)" in r.stderr

    def test_quiet_prints_alerts_only(self, samples_dir, agent_bundle):
        rec = str(samples_dir / "cpsc2018" / "A0005")
        loud = run_cli("replay", rec, "--speed", "max", "--bundle", str(agent_bundle),
                       "--precision", "fp32")  # fmt: skip
        quiet = run_cli("replay", rec, "--speed", "max", "--bundle", str(agent_bundle),
                        "--precision", "fp32", "--quiet")  # fmt: skip
        assert loud.returncode == quiet.returncode == 0
        assert "frames diagnosed" in loud.stderr and "frames diagnosed" not in quiet.stderr

        def without_latency(lines):
            return [ln.split(", latency")[0] for ln in lines]

        alerts = [ln for ln in loud.stdout.splitlines() if ln.startswith(">>> ALERT")]
        assert alerts and len(alerts) < len(loud.stdout.splitlines())
        assert without_latency(quiet.stdout.splitlines()) == without_latency(alerts)


def _alert_event(event: str, score: float, threshold: float) -> dict:
    return {
        "type": "alert",
        "event": event,
        "findings": [
            {
                "code": "17338001",
                "abbreviation": "PVC/VPB",
                "name": "premature ventricular contractions",
                "score": score,
                "threshold": threshold,
            }
        ],
        "frame": {"start_sample": 0, "end_sample": 10000, "fs": 500.0},
        "record": "A0001",
        "device_id": "edge-1",
        "latency_ms": 1.0,
    }


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


class TestConsole:
    def test_cleared_says_what_is_true(self, loaded_bundle):
        from edge.cli import console_sink

        out = io.StringIO()
        sink = console_sink({}, out)
        sink(_alert_event("cleared", -0.14, 0.15))
        sink(_alert_event("onset", 0.30, 0.15))
        cleared, onset = out.getvalue().splitlines()
        assert "score -0.14 < 0.15" in cleared and ">=" not in cleared
        assert "score 0.30 >= 0.15" in onset

    def test_no_color(self, monkeypatch):
        from edge.cli import console_sink

        out = _Tty()
        console_sink({}, out)(_alert_event("onset", 0.3, 0.15))
        assert "\033[" in out.getvalue()  # a terminal gets colours ...
        monkeypatch.setenv("NO_COLOR", "1")
        out = _Tty()
        console_sink({}, out)(_alert_event("onset", 0.3, 0.15))
        assert "\033[" not in out.getvalue()  # ... unless NO_COLOR is set

    def test_early_frames_say_their_length(self, loaded_bundle):
        from edge.cli import console_sink

        classes = {c.code: c for c in loaded_bundle.manifest.classes}
        codes = list(classes)
        out = io.StringIO()
        sink = console_sink(classes, out)
        for n in (5000, 10000, 15000):
            event = {"type": "frame", "record": "A", "start_sample": max(0, n - 15000),
                     "end_sample": n, "fs": 500.0, "n_valid": min(n, 15000), "positives": [],
                     "scores": dict.fromkeys(codes, 0.0), "latency_ms": 1.0}  # fmt: skip
            sink(event)
        first, second, full = out.getvalue().splitlines()
        assert "(10 s)" in first and "(20 s)" in second and "(30 s)" not in full

    def test_summary_uses_abbreviations_and_no_records_for_a_device(self, loaded_bundle):
        from edge.cli import status_line, summary_lines

        classes = {c.code: c for c in loaded_bundle.manifest.classes}
        s = AgentSummary(frames=3, alerts=1, gaps=1, filled_gaps=2, filled_samples=2,
                         standing=("164889003",), seconds=30.0)  # fmt: skip
        counters = {"serial": {"packets_ok": 100, "crc_errors": 2, "bytes_discarded": 66,
                               "bad_lines": 0, "gaps": 2, "samples_lost": 2, "seq_resets": 0,
                               "reconnects": 0}}  # fmt: skip
        lines = summary_lines(s, counters, classes, replay=False)
        text = "\n".join(lines)
        assert "record(s)" not in text and "164889003" not in text
        assert "still positive at the end: AF" in text
        assert "1 too long to fill" in text and "2 CRC errors" in text
        line = status_line({"state": "offline", "extra": {"standing": ["164889003"]}}, classes)
        assert line == "status offline: standing=AF"


class TestOneClock:
    def test_a_sample_has_one_utc_whenever_an_event_names_it(self, loaded_bundle):
        agent = Agent(loaded_bundle, precision="fp32")
        x = np.zeros((12, 1000), np.float32)
        agent.process(Chunk(x, 500.0, 0, received_at=time.monotonic()))
        a = agent._span(0, 5000, time.monotonic())
        time.sleep(0.2)  # an event made later about the same samples
        b = agent._span(0, 10000, time.monotonic() - 5.0)
        assert a["start_utc"] == b["start_utc"]

        def t(s):
            return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()

        assert abs(t(b["end_utc"]) - t(b["start_utc"]) - 20.0) < 1e-3  # 10000 samples = 20 s

    def test_replay_at_speed_10_keeps_record_time(self, samples_dir, loaded_bundle):
        from edge.replay import ReplaySource

        events: list[dict] = []
        agent = Agent(loaded_bundle, precision="fp32", sink=events.append)
        agent.run(ReplaySource([samples_dir / "cpsc2018" / "A0005"], speed=10.0))
        spans = [e["frame"] for e in events if e["type"] in ("alert", "quality")]
        assert spans
        starts = {(s["start_sample"], s["start_utc"]) for s in spans if s["start_sample"] == 0}
        assert len(starts) <= 1  # the same start_sample, the same start_utc


class TestStateDirectory:
    def test_default_is_xdg_state_home_then_overridable(self, tmp_path, monkeypatch):
        from bridge._state import state_dir

        monkeypatch.delenv("ECG_EDGE_STATE_DIR", raising=False)
        monkeypatch.delenv("STATE_DIRECTORY", raising=False)
        monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
        assert state_dir() == tmp_path / "xdg" / "ecg-edge"
        monkeypatch.delenv("XDG_STATE_HOME")
        assert state_dir() == Path.home() / ".local" / "state" / "ecg-edge"
        monkeypatch.setenv("ECG_EDGE_STATE_DIR", str(tmp_path / "mine"))
        assert state_dir() == tmp_path / "mine"
        assert state_dir(tmp_path / "flag") == tmp_path / "flag"

    def test_the_agent_spool_goes_there(self, tmp_path, monkeypatch, loaded_bundle):
        from edge.cli import _publisher

        monkeypatch.delenv("ECG_EDGE_STATE_DIR", raising=False)
        monkeypatch.delenv("STATE_DIRECTORY", raising=False)
        monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
        monkeypatch.chdir(tmp_path)
        pub = _publisher("mqtt://127.0.0.1:1", "bed-3", None, None, None, None, False,
                         loaded_bundle, 30.0)  # fmt: skip
        try:
            assert (tmp_path / "xdg" / "ecg-edge" / "bed-3.db").exists()
            assert not list(tmp_path.glob("*.db"))
        finally:
            pub.close(timeout_s=0.1)
