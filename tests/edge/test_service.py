"""The systemd service: the unit verifies; READY and WATCHDOG pings; pings stop on a hang."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time

import pytest
from agent_fixtures import CLI, ROOT, agent_bundle  # noqa: F401

from edge.sdnotify import Notifier, Watchdog

UNIT = ROOT / "deploy" / "systemd" / "ecg-edge.service"
UDEV = ROOT / "deploy" / "udev" / "99-ecg-edge.rules"


@pytest.fixture
def notify_socket(tmp_path):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.05)
    yield path, sock
    sock.close()


def _drain(sock, seconds: float) -> list[tuple[float, str]]:
    out, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            out.append((time.monotonic(), sock.recv(4096).decode()))
        except TimeoutError:
            continue
    return out


class TestUnit:
    def test_systemd_analyze_verify(self, tmp_path):
        tool = shutil.which("systemd-analyze")
        if tool is None:
            pytest.skip("systemd-analyze is not installed (Debian package 'systemd')")
        text = UNIT.read_text()
        for needed in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "StateDirectory=",
                       "SupplementaryGroups=dialout", "User=ecg-edge", "ExecReload="):  # fmt: skip
            assert needed in text
        # verify checks that ExecStart exists: point it at this checkout's ecg-edge
        exe = str((ROOT / ".venv" / "bin" / "ecg-edge").resolve())
        unit = tmp_path / "ecg-edge.service"
        unit.write_text(text.replace("/opt/ecg-edge/venv/bin/ecg-edge", exe))
        p = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True, timeout=60)
        problems = [line for line in p.stderr.splitlines() if "ecg-edge.service" in line]
        assert p.returncode == 0 and not problems, p.stderr

    def test_udev_rule_names_the_device(self):
        rule = next(
            line for line in UDEV.read_text().splitlines() if line and not line.startswith("#")
        )
        assert 'SUBSYSTEM=="tty"' in rule and 'SYMLINK+="ecg0"' in rule
        assert 'GROUP="dialout"' in rule


class TestWatchdog:
    def test_notifier_speaks_the_protocol(self, notify_socket, monkeypatch):
        path, sock = notify_socket
        n = Notifier(path, watchdog_usec=2_000_000)
        assert n.watchdog_s == 2.0
        assert n.ready("streaming") and n.stopping()
        msgs = [m for _, m in _drain(sock, 0.2)]
        assert msgs == ["READY=1\nSTATUS=streaming", "STOPPING=1"]
        monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
        assert not Notifier().enabled and not Notifier().ready()  # outside systemd: silent

    def test_pings_stop_when_the_stream_loop_hangs(self, notify_socket, samples_dir):
        from edge.agent import Agent
        from edge.bundle import load_bundle
        from edge.replay import ReplaySource

        path, sock = notify_socket
        dog = Watchdog(Notifier(path, watchdog_usec=600_000)).start()  # ping every 0.2 s
        release, hung = threading.Event(), threading.Event()

        def sink(event):  # the loop hangs inside the second frame's processing
            if event["type"] == "frame" and event["end_sample"] >= 10000:
                hung.set()
                release.wait(30)

        agent = Agent(load_bundle(None), sink=sink, hop_s=10.0)
        src = ReplaySource([samples_dir / "cpsc2018" / "A0005"], speed=10.0)
        t = threading.Thread(target=agent.run, args=(dog.watch(src),), daemon=True)
        t.start()
        before = _drain(sock, 0.8)  # streaming at 10x: about 0.5 s per 10-s hop
        assert hung.wait(20)
        t_hang = time.monotonic()
        during = _drain(sock, 1.5)
        release.set()
        after = _drain(sock, 1.0)
        agent.stop()
        t.join(10)
        dog.stop()
        assert sum(m == "WATCHDOG=1" for _, m in before) >= 2
        late = [t for t, m in during if m == "WATCHDOG=1" and t > t_hang + dog.hang_s + 0.25]
        assert late == [], "pings went on while the loop hung"
        assert any(m == "WATCHDOG=1" for _, m in after), "pings did not resume"

    def test_cli_reports_ready_under_systemd(self, notify_socket, samples_dir, agent_bundle):
        path, sock = notify_socket
        env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "600000", "PYTHONUNBUFFERED": "1"}
        p = subprocess.run(
            [*CLI, "replay", str(samples_dir / "cpsc2018" / "A0005"), "--speed", "5", "--json",
             "--bundle", str(agent_bundle)],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
            env={**os.environ, **env},
        )  # fmt: skip
        assert p.returncode == 0, p.stderr
        msgs = [m for _, m in _drain(sock, 0.3)]
        assert msgs[0].startswith("READY=1\nSTATUS=streaming with bundle ")
        assert "WATCHDOG=1" in msgs  # 25 s at 5x: about 5 s of pings every 0.2 s


# ruff: noqa: F811  (pytest fixtures imported from agent_fixtures)
