"""The configuration file: every option of run/replay, flags override, one line per problem."""

from __future__ import annotations

import json
import os

import pytest
from agent_fixtures import ROOT, agent_bundle, json_lines, run_cli  # noqa: F401

from edge.config import KEYS, check_document, read_document

EXAMPLE = ROOT / "deploy" / "agent.toml"


def _params(command: str) -> set[str]:
    import typer.main

    from edge.cli import app

    cmd = typer.main.get_command(app).commands[command]
    return {p.name for p in cmd.params}


class TestSchema:
    @pytest.mark.parametrize("command", ["run", "replay"])
    def test_every_option_has_a_key_named_after_its_flag(self, command):
        keys = {k.target for k in KEYS if command in k.commands}
        options = _params(command) - {"config"}
        assert options <= keys, f"options without a configuration key: {options - keys}"
        for k in KEYS:
            if command in k.commands:
                assert k.target in options, k.name

    def test_example_file_is_valid(self):
        values, problems = read_document(EXAMPLE)
        assert problems == []
        assert values["device"] == "/dev/ecg0" and values["hop_s"] == 10.0

    @pytest.mark.parametrize(
        "doc, problem",
        [
            ({"mqtt": {"brokr": "x"}}, "unknown key 'brokr' in [mqtt] (did you mean 'broker'?)"),
            ({"stream": {"hop_s": 45}}, "[stream] 'hop_s' must be a number in (0, 30], got 45"),
            ({"stream": {"hop_s": "10"}}, "[stream] 'hop_s' must be a number in (0, 30], got '10'"),
            ({"stream": {"confirm": 1.5}}, "[stream] 'confirm' must be an integer >= 1, got 1.5"),
            ({"mqtt": {"hop_s": 5}}, "unknown key 'hop_s' in [mqtt] (it belongs in [stream])"),
            ({"modle": {}}, "unknown section [modle] (did you mean 'model'?)"),
            ({"model": {"precision": "int4"}}, "[model] 'precision' must be one of 'int8', 'fp32'"),
            ({"mqtt": {"publish_frames": "yes"}}, "[mqtt] 'publish_frames' must be true or false"),
            ({"mqtt": {"ca_file": "missing.pem"}}, "[mqtt] 'ca_file': "),
            ({"mqtt": {"device_id": "bed/1"}}, "[mqtt] 'device_id'"),
        ],
    )  # fmt: skip
    def test_problems_name_the_key(self, tmp_path, doc, problem):
        _, problems = check_document(doc, tmp_path)
        assert len(problems) == 1 and problems[0].startswith(problem), problems

    def test_open_private_key_is_refused(self, tmp_path):
        key = tmp_path / "client.key"
        key.write_text("not really a key")
        os.chmod(key, 0o644)
        _, problems = check_document({"mqtt": {"key_file": "client.key"}}, tmp_path)
        assert "readable or writable by others (mode 0644)" in problems[0]
        os.chmod(key, 0o640)
        assert check_document({"mqtt": {"key_file": "client.key"}}, tmp_path)[1] == []


class TestCommands:
    def test_check_names_every_problem(self, tmp_path):
        f = tmp_path / "agent.toml"
        f.write_text('[mqtt]\nbrokr = "mqtt://x"\n[stream]\nhop_s = 0\n')
        p = run_cli("config", "check", str(f))
        assert p.returncode == 2
        lines = p.stderr.strip().splitlines()
        assert lines == [
            f"{f}: unknown key 'brokr' in [mqtt] (did you mean 'broker'?)",
            f"{f}: [stream] 'hop_s' must be a number in (0, 30], got 0",
        ]
        assert run_cli("config", "check", str(EXAMPLE)).returncode == 0

    def test_bad_toml_is_one_line(self, tmp_path):
        f = tmp_path / "agent.toml"
        f.write_text("[mqtt\n")
        p = run_cli("config", "check", str(f))
        assert p.returncode == 2 and "not valid TOML" in p.stderr

    def test_show_gives_sources(self, tmp_path):
        f = tmp_path / "agent.toml"
        f.write_text('[stream]\nhop_s = 5\n[mqtt]\ndevice_id = "bed-7"\n')
        p = run_cli("config", "show", "--config", str(f), "--command", "replay")
        assert p.returncode == 0, p.stderr
        assert f"hop_s = 5.0  # {f}" in p.stdout
        assert "confirm = 1  # default" in p.stdout
        assert f'device_id = "bed-7"  # {f}' in p.stdout
        assert "baud" not in p.stdout  # a run-only key

    def test_replay_reads_the_file_and_flags_win(self, tmp_path, samples_dir, agent_bundle):
        f = tmp_path / "agent.toml"
        f.write_text(
            f'[source]\nrecords = ["{samples_dir / "cpsc2018" / "A0005"}"]\nspeed = "max"\n'
            f'[model]\nbundle = "{agent_bundle}"\n[stream]\nhop_s = 30\n'
            '[mqtt]\ndevice_id = "bed-7"\n[output]\njson = true\n'
        )
        p = run_cli("replay", "--config", str(f))
        assert p.returncode == 0, p.stderr
        events = json_lines(p.stdout)
        frames = [e for e in events if e["type"] == "frame"]
        assert events[-1]["device_id"] == "bed-7"
        over = run_cli("replay", "--config", str(f), "--hop-s", "10", "--device-id", "bed-8")
        assert over.returncode == 0, over.stderr
        more = [e for e in json_lines(over.stdout) if e["type"] == "frame"]
        assert len(more) > len(frames)  # --hop-s 10 on the command line beat hop_s = 30
        assert json.loads(over.stdout.splitlines()[-1])["device_id"] == "bed-8"

    def test_bad_file_stops_before_running(self, tmp_path, samples_dir):
        f = tmp_path / "agent.toml"
        f.write_text('[mqtt]\nca_file = "nope.pem"\n')
        p = run_cli("replay", str(samples_dir / "georgia"), "--config", str(f), "--json")
        assert p.returncode == 2 and p.stdout == ""
        (line,) = p.stderr.strip().splitlines()
        assert line.startswith("error: ") and "'ca_file'" in line and "does not exist" in line

    def test_missing_certificate_flag_is_one_line(self, tmp_path, samples_dir):
        p = run_cli(
            "replay", str(samples_dir / "georgia"), "--json", "--ca-file", str(tmp_path / "x.pem"),
        )  # fmt: skip
        assert p.returncode == 2 and p.stdout == ""
        (line,) = p.stderr.strip().splitlines()
        assert line.startswith("error: --ca-file: ") and "does not exist" in line


# ruff: noqa: F811  (pytest fixtures imported from agent_fixtures)
