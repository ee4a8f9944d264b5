# ruff: noqa: F811  (pytest fixtures imported from agent_fixtures)
"""ecg-edge CLI: real subprocesses; JSON lines only on stdout; one clear line for bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest
from agent_fixtures import CLI, ROOT, agent_bundle, json_lines, run_cli  # noqa: F401

from edge.cli import parse_speed
from edge.errors import ConfigError


class TestReplay:
    def test_json_lines_only(self, samples_dir, agent_bundle):
        p = run_cli(
            "replay", str(samples_dir / "georgia"), "--speed", "max", "--json",
            "--bundle", str(agent_bundle),
        )  # fmt: skip
        assert p.returncode == 0, p.stderr
        events = json_lines(p.stdout)
        frames = [e for e in events if e["type"] == "frame"]
        assert {e["record"] for e in frames} == {"E00005", "E00015"}
        for e in frames:
            assert {"record", "start_sample", "end_sample", "scores"} <= set(e)
        assert events[-1]["type"] == "status" and events[-1]["state"] == "offline"

    def test_readable_output(self, samples_dir, agent_bundle):
        p = run_cli(
            "replay", str(samples_dir / "ptb-xl" / "HR00001"), "--speed", "max",
            "--bundle", str(agent_bundle),
        )  # fmt: skip
        assert p.returncode == 0, p.stderr
        assert "HR00001" in p.stdout and "\033[" not in p.stdout  # no ANSI off a terminal
        assert "frames" in p.stderr

    def test_sigterm_stops_cleanly(self, samples_dir, agent_bundle):
        proc = subprocess.Popen(
            [
                *CLI,
                "replay",
                str(samples_dir),
                "--speed",
                "max",
                "--loop",
                "--json",
                "--bundle",
                str(agent_bundle),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            lines = []
            while sum('"type":"frame"' in ln for ln in lines) < 3:
                line = proc.stdout.readline()
                assert line, proc.stderr.read()
                lines.append(line)
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, err
        events = json_lines("".join(lines) + out)
        assert events[-1]["state"] == "offline"

    def test_info(self, agent_bundle):
        p = run_cli("info", str(agent_bundle))
        assert p.returncode == 0, p.stderr
        assert "atrial fibrillation" in p.stdout and "challenge_metric" in p.stdout
        p = run_cli("info", str(agent_bundle), "--json")
        assert json.loads(p.stdout)["normal_code"] == "426783006"


class TestBadInput:
    def _fails(self, *args, match):
        p = run_cli(*args)
        assert p.returncode == 2, (p.stdout, p.stderr)
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
        assert match in lines[0], lines[0]
        assert "Traceback" not in p.stderr
        return lines[0]

    def test_not_wfdb(self, tmp_path, agent_bundle):
        (tmp_path / "x.hea").write_text("garbage\n")
        self._fails("replay", str(tmp_path / "x.hea"), "--bundle", str(agent_bundle), match="x")

    def test_missing_lead(self, tmp_path, samples_dir, agent_bundle):
        src = samples_dir / "ptb-xl" / "HR00001"
        text = src.with_suffix(".hea").read_text().replace(" V6", " V7")
        (tmp_path / "HR00001.hea").write_text(text)
        (tmp_path / "HR00001.mat").write_bytes(src.with_suffix(".mat").read_bytes())
        self._fails(
            "replay", str(tmp_path / "HR00001"), "--bundle", str(agent_bundle),
            match="missing lead(s) V6",
        )  # fmt: skip

    def test_altered_bundle(self, tmp_path, agent_bundle):
        import shutil

        b = tmp_path / "b"
        shutil.copytree(agent_bundle, b)
        with open(b / "head.npz", "ab") as fh:
            fh.write(b"x")
        self._fails("info", str(b), match="altered")

    def test_missing_bundle(self, samples_dir, tmp_path):
        self._fails(
            "replay", str(samples_dir / "ptb"), "--bundle", str(tmp_path / "nope"),
            match="does not exist",
        )  # fmt: skip

    def test_bad_options(self, samples_dir, agent_bundle):
        self._fails(
            "replay", str(samples_dir / "ptb"), "--bundle", str(agent_bundle), "--speed", "fast",
            match="--speed",
        )  # fmt: skip
        self._fails(
            "replay", str(samples_dir / "ptb"), "--bundle", str(agent_bundle), "--hop-s", "40",
            match="--hop-s",
        )  # fmt: skip
        self._fails(
            "replay", str(samples_dir / "ptb"), "--bundle", str(agent_bundle),
            "--precision", "fp16", match="--precision",
        )  # fmt: skip

    def test_no_such_serial_port(self, agent_bundle):
        self._fails("run", "--device", "/dev/ttyNOPE0", "--bundle", str(agent_bundle), match="NOPE")

    def test_bad_fs(self, agent_bundle):
        self._fails(
            "run", "--device", "/dev/ttyNOPE0", "--fs", "-500", "--bundle", str(agent_bundle),
            match="--fs",
        )  # fmt: skip


class TestCliBasics:
    def test_parse_speed(self):
        assert parse_speed("1") == 1.0 and parse_speed("max") is None and parse_speed("10") == 10.0
        for bad in ("0", "-1", "x", "inf"):
            if bad == "inf":
                assert parse_speed(bad) is None
                continue
            with pytest.raises(ConfigError):
                parse_speed(bad)

    def test_help_lists_commands(self):
        p = run_cli("--help")
        assert p.returncode == 0
        for cmd in ("replay", "run", "simulate-device", "info"):
            assert cmd in p.stdout
