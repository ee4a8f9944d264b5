"""The central station in a real browser: Mosquitto, two stations, a live replay, Chromium.

Debian's ``chromium`` and ``chromium-driver`` (``apt-get install -y chromium
chromium-driver``), driven by selenium pointed at ``/usr/bin/chromium``;
nothing downloads a browser. Where they are missing the test is skipped with
the command to install them, and it FAILS instead under CI
(``ECG_REQUIRE_BROWSER=1``, set by ``.ci/run``, which installs them).
Screenshots are kept in ``build/test-artifacts/station/`` (or
``$ECG_TEST_ARTIFACTS``).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from bridge.testing import free_port, start_broker, wait_port

BIN = os.path.dirname(sys.executable)
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = (
    Path(os.environ.get("ECG_TEST_ARTIFACTS", ROOT / "build" / "test-artifacts")) / "station"
)
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1500,900",
)  # fmt: skip
INSTALL = "apt-get install -y chromium chromium-driver"


def _need_browser() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    try:
        import selenium  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        missing.append(f"python package {exc.name} (pip install -e '.[dev,station]')")
    if not missing:
        return
    reason = f"the browser test needs {', '.join(missing)}: {INSTALL}"
    if os.environ.get("ECG_REQUIRE_BROWSER") == "1":
        pytest.fail(f"CHROMIUM MISSING under CI: {reason}", pytrace=False)
    pytest.skip(reason)


def _cmd(name: str) -> str:
    return os.path.join(BIN, name)


class Lines:
    """Read a process's stream line by line in a thread, with arrival times."""

    def __init__(self, stream) -> None:  # type: ignore[no-untyped-def]
        self.lines: list[tuple[float, str]] = []
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream) -> None:  # type: ignore[no-untyped-def]
        for line in stream:
            self.lines.append((time.time(), line.rstrip("\n")))

    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)


def _wait(pred, timeout: float, every: float = 0.1):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(every)
    return pred()


def _station(broker_url: str, port: int, name: str) -> subprocess.Popen:
    p = subprocess.Popen(
        [_cmd("ecg-bridge"), "station", "--broker", broker_url, "--port", str(port),
         "--name", name],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert wait_port(port, 20), (
        f"station {name} did not start: {p.stderr.read() if p.poll() is not None else ''}"
    )
    return p


def _snapshot(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/snapshot", timeout=5) as r:
        return json.load(r)


def _blank_fraction(png: bytes) -> float:
    """Share of pixels that are the background (black)."""
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("L")
    hist = img.histogram()
    return sum(hist[:20]) / max(1, sum(hist))


@pytest.fixture
def browser(tmp_path):  # type: ignore[no-untyped-def]
    _need_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = CHROMIUM
    for flag in FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


class TestStationInChromium:
    @pytest.mark.slow
    def test_a_bed_its_waveform_alarm_ack_and_strip(self, browser, samples_dir, tmp_path):
        from selenium.webdriver.common.by import By

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        broker = start_broker(tmp_path / "broker")
        procs: list[subprocess.Popen] = []
        try:
            port_a, port_b = free_port(), free_port()
            procs.append(_station(broker.url, port_a, "ward-a"))
            procs.append(_station(broker.url, port_b, "ward-b"))
            browser.get(f"http://127.0.0.1:{port_a}/")
            assert _wait(lambda: "live" in browser.find_element(By.ID, "conn").text, 10)

            replay = subprocess.Popen(
                [_cmd("ecg-edge"), "replay", str(samples_dir / "cpsc2018" / "A0001"),
                 "--speed", "1", "--loop", "--hop-s", "2", "--json", "--live",
                 "--broker", broker.url, "--device-id", "bed-7",
                 "--spool", str(tmp_path / "spool.db")],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            procs.append(replay)
            out, err = Lines(replay.stdout), Lines(replay.stderr)

            # the bed's tile: name, online, a heart rate, a moving lead II
            tile = _wait(
                lambda: browser.find_elements(By.CSS_SELECTOR, '.bed[data-device="bed-7"]'), 15
            )
            assert tile, f"no tile for bed-7; agent stderr:\n{err.text()}"
            tile = tile[0]
            assert _wait(lambda: tile.find_element(By.CSS_SELECTOR, ".status").text == "online", 10)
            hr = _wait(lambda: tile.find_element(By.CSS_SELECTOR, ".hr").text.isdigit(), 45)
            assert hr, f"no heart rate shown: {tile.find_element(By.CSS_SELECTOR, '.hr').text!r}"
            bpm = int(tile.find_element(By.CSS_SELECTOR, ".hr").text)
            assert 40 <= bpm <= 200, bpm
            canvas = tile.find_element(By.CSS_SELECTOR, "canvas.wave")
            first = canvas.screenshot_as_png
            time.sleep(1.0)
            second = canvas.screenshot_as_png
            assert first != second, "the waveform did not move in 1 s"
            assert _blank_fraction(second) < 0.995, "the waveform canvas is empty"
            (ARTIFACTS / "wave-1.png").write_bytes(first)
            (ARTIFACTS / "wave-2.png").write_bytes(second)

            # the alarm: in the page within a few seconds of the agent emitting it
            def emitted():  # type: ignore[no-untyped-def]
                for t, line in out.lines:
                    if line.startswith("{"):
                        e = json.loads(line)
                        if e["type"] == "alert" and e["event"] == "onset":
                            return t, e
                return None

            got = _wait(emitted, 40)
            assert got, f"the agent emitted no alert; stderr:\n{err.text()}"
            t_emit, alert = got
            assert alert["strip"]["topic"] == f"ecg/bed-7/strips/{alert['alert_id']}"
            sel = f'.alarm[data-alert-id="{alert["alert_id"]}"]'
            shown = _wait(lambda: browser.find_elements(By.CSS_SELECTOR, sel), 10, every=0.05)
            delay = time.time() - t_emit
            assert shown, "the alarm never appeared in the page"
            assert delay < 5.0, f"the alarm took {delay:.1f} s to appear"
            item = shown[0]
            assert alert["priority"] in item.get_attribute("class")
            browser.save_screenshot(str(ARTIFACTS / "station.png"))

            # acknowledge: the page shows it, the other station has it, the agent logged it
            browser.find_element(By.ID, "who").send_keys("nurse-j")
            item.find_element(By.CSS_SELECTOR, "button.ack").click()
            acked = _wait(
                lambda: (
                    "acknowledged by nurse-j at ward-a"
                    in browser.find_element(By.CSS_SELECTOR, sel).text
                ),
                10,
            )
            assert acked, browser.find_element(By.CSS_SELECTOR, sel).text

            def acked_at_b():  # type: ignore[no-untyped-def]
                for a in _snapshot(port_b)["alarms"]:
                    if a["alert_id"] == alert["alert_id"]:
                        return a["acked"]
                return None

            assert _wait(acked_at_b, 10) == {
                "by": "nurse-j",
                "station": "ward-a",
                "at": acked_at_b()["at"],
            }
            assert _wait(lambda: f"acknowledged: alert {alert['alert_id']}" in err.text(), 10), (
                err.text()
            )
            browser.save_screenshot(str(ARTIFACTS / "station-acked.png"))

            # the strip on ECG paper
            browser.find_element(By.CSS_SELECTOR, sel).click()
            view = browser.find_element(By.ID, "strip-view")
            assert _wait(view.is_displayed, 5)
            loaded = _wait(
                lambda: browser.execute_script(
                    "const i = document.getElementById('strip-img');"
                    "return i.complete && i.naturalWidth;"
                ),
                15,
            )
            assert loaded and loaded > 800, f"the strip image did not load ({loaded})"
            browser.save_screenshot(str(ARTIFACTS / "strip-open.png"))
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()
            broker.stop()
