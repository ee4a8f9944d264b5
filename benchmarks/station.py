"""The central station: strip size and cost, alert -> page latency, 50 live beds.

``python -m benchmarks.station [--out benchmarks/results/station.json]``

* ``strip``: the strip's size on the wire for the sample records (12 leads x
  10 s), and what it adds to the alert path: ``Evidence.attach`` (encode) plus
  ``Publisher.publish_strip`` (the sqlite commit), per alert, p50/p99, against
  ``publish_alert`` alone;
* ``page``: a loopback Mosquitto, ``ecg-bridge station``, headless Chromium
  on its page; alerts published through the real spooling publisher every
  0.3 s; the page stamps each alarm when it first draws it
  (``window.ecgSeen``): publish call -> visible, p50/p99;
* ``load``: 50 simulated beds publishing ``ecg-edge/live/1`` 4 times a second
  (lead II of real records, one paho client each) into the same station with
  the page open: station CPU (% of one core) and RSS (psutil), the page's
  animation frame intervals p50/p99 (the page stays responsive when they stay
  near 16.7 ms) and the alarm latency under that load.

Timing figures: run them on a quiet machine. ``--screenshot PATH`` instead
writes a picture of the station with three replayed beds (for the README).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "edge" / "samples"
BIN = Path(sys.executable).parent
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1600,1000",
)  # fmt: skip


def _pct(xs: list[float]) -> dict[str, float]:
    a = np.asarray(xs, dtype=float)
    return {
        "n": len(xs),
        "p50": round(float(np.percentile(a, 50)), 3),
        "p99": round(float(np.percentile(a, 99)), 3),
        "max": round(float(a.max()), 3),
    }


def _records() -> list[Path]:
    return sorted(p.with_suffix("") for p in SAMPLES.glob("*/*.hea"))


# ------------------------------------------------------------------ strip


def bench_strip(n_alerts: int = 200) -> dict:
    """Wire size per record; added cost per alert on the alert path (ms)."""
    from bridge.publish import Publisher
    from bridge.schema import encode, sample_alert
    from bridge.strip import Strip
    from edge.bundle import load_bundle
    from edge.dsp import preprocess
    from edge.evidence import Evidence
    from edge.records import read_record

    cfg = load_bundle(None).manifest.dsp
    sizes, alert_sizes = {}, []
    ev = Evidence("bed-1", cfg.fs)
    for path in _records():
        rec = read_record(path)
        x = preprocess(rec.signal, rec.fs, cfg)
        ev.push(x, 0, time.monotonic())
        a = sample_alert("bed-1")
        a = dataclasses.replace(a, frame={**a.frame.to_json(), "end_sample": x.shape[1]})
        a2, payload = ev.attach(a)
        raw = encode(payload)
        s = Strip.parse(raw)
        sizes[path.name] = {"bytes": len(raw), "seconds": s.seconds, "leads": len(s.leads)}
        alert_sizes.append(len(encode(a2.to_json())))
        ev.reset(0)
    full = [v["bytes"] for v in sizes.values() if v["seconds"] == 10.0]
    # the alert path: what the agent does per alert with and without the strip
    rec = read_record(_records()[0])
    x = preprocess(rec.signal, rec.fs, cfg)
    with tempfile.TemporaryDirectory() as tmp:
        pub = Publisher(None, "bed-1", Path(tmp) / "spool.db")
        ev.push(x, 0, time.monotonic())
        base, added = [], []
        for _ in range(n_alerts):
            a = sample_alert("bed-1")
            a = dataclasses.replace(a, frame={**a.frame.to_json(), "end_sample": x.shape[1]})
            t0 = time.perf_counter()
            pub.publish_alert(a)
            t1 = time.perf_counter()
            a2, payload = ev.attach(a)
            pub.publish_strip(payload)
            t2 = time.perf_counter()
            base.append((t1 - t0) * 1e3)
            added.append((t2 - t1) * 1e3)
        pub.close(0.1)
    return {
        "strip_bytes": sizes,
        "strip_bytes_10s_median": int(statistics.median(full)) if full else None,
        "alert_bytes_median": int(statistics.median(alert_sizes)),
        "json_int_bytes_10s": "~230 000 (60 000 integers as JSON text)",
        "publish_alert_ms": _pct(base),
        "strip_added_ms": _pct(added),
    }


# ---------------------------------------------------------------- browser


def _browser(tmp: Path):  # type: ignore[no-untyped-def]
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = "/usr/bin/chromium"
    for f in FLAGS:
        opts.add_argument(f)
    opts.add_argument(f"--user-data-dir={tmp / 'profile'}")
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


def _station(url: str, port: int) -> subprocess.Popen:
    from bridge.testing import wait_port

    p = subprocess.Popen(
        [str(BIN / "ecg-bridge"), "station", "--broker", url, "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    if not wait_port(port, 20):
        raise RuntimeError("the station did not start")
    return p


class _Beds:
    """``n`` simulated beds publishing live lead II (real records) 4 times a second."""

    def __init__(self, url: str, port: int, n: int) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        from edge.bundle import load_bundle
        from edge.dsp import preprocess
        from edge.records import read_record

        cfg = load_bundle(None).manifest.dsp
        leads = []
        for path in _records():
            rec = read_record(path)
            leads.append(np.rint(preprocess(rec.signal, rec.fs, cfg)[1, ::4] * 1000).astype(int))
        self.leads = leads
        self.clients = []
        for i in range(n):
            c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sim-bed-{i}")
            c.connect("127.0.0.1", port)
            c.loop_start()
            self.clients.append(c)
        self.n = n
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> _Beds:
        self._thread.start()
        return self

    def _run(self) -> None:
        from bridge.schema import encode
        from bridge.wave import LiveWave

        k = 0
        t_next = time.monotonic()
        for i, c in enumerate(self.clients):  # retained status: the beds are online
            c.publish(
                f"ecg/sim-{i:02d}/status",
                encode(
                    {"schema": "ecg-edge/status/1", "device_id": f"sim-{i:02d}", "state": "online",
                     "at": _now(), "bundle_sha256": None, "agent_version": "0.1.0", "extra": {}}
                ),
                qos=1, retain=True,
            )  # fmt: skip
        while not self._stop.is_set():
            for i, c in enumerate(self.clients):
                lead = self.leads[i % len(self.leads)]
                a = (k * 31) % (len(lead) - 31)
                w = LiveWave(f"sim-{i:02d}", "II", 125.0, k * 31, tuple(lead[a : a + 31]), 70 + i)
                c.publish(f"ecg/sim-{i:02d}/live", encode(w.to_json()), qos=0)
                self.sent += 1
            k += 1
            t_next += 0.25
            self._stop.wait(max(0.0, t_next - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for c in self.clients:
            c.disconnect()
            c.loop_stop()


def _now() -> str:
    from bridge.schema import utc_now

    return utc_now()


def _alarm_latency(url: str, driver, n: int, tmp: Path, device: str = "bed-x") -> dict:  # type: ignore[no-untyped-def]
    from bridge.publish import Publisher
    from bridge.schema import sample_alarm

    pub = Publisher(url, device, tmp / f"spool-{device}.db").start()
    pub.wait_connected(10)
    sent = {}
    for i in range(n):
        a = dataclasses.replace(sample_alarm(device), priority=("high", "medium", "low")[i % 3])
        sent[a.alert_id] = time.time() * 1000.0
        pub.publish_alert(a)
        time.sleep(0.3)
    pub.flush(10)
    time.sleep(2)
    seen = driver.execute_script("return window.ecgSeen")
    pub.close(2)
    lat = [seen[k] - t for k, t in sent.items() if k in seen]
    return {**_pct(lat), "lost": len(sent) - len(lat)}


def bench_page(n_alerts: int = 60, n_beds: int = 50, load_s: float = 30.0) -> dict:
    """Alert -> visible (idle, then with ``n_beds`` live beds); station CPU/RSS; page frames."""
    import psutil

    from bridge.testing import free_port, start_broker

    out: dict = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        broker = start_broker(tmp / "broker")
        port = free_port()
        st = _station(broker.url, port)
        driver = _browser(tmp)
        try:
            driver.get(f"http://127.0.0.1:{port}/")
            time.sleep(1.5)
            out["alert_to_page_ms_idle"] = _alarm_latency(broker.url, driver, n_alerts, tmp)
            beds = _Beds(broker.url, broker.port, n_beds).start()
            time.sleep(5)  # warm up: tiles made
            proc = psutil.Process(st.pid)
            driver.execute_script("window.ecgPerf.frames = []")
            c0, t0 = proc.cpu_times(), time.monotonic()
            rss = []
            lat = {}

            def alarms() -> None:
                lat.update(_alarm_latency(broker.url, driver, n_alerts // 2, tmp, "bed-y"))

            th = threading.Thread(target=alarms)
            th.start()
            while time.monotonic() - t0 < load_s:
                rss.append(proc.memory_info().rss / 2**20)
                time.sleep(0.5)
            th.join()
            c1, t1 = proc.cpu_times(), time.monotonic()
            frames = driver.execute_script("return window.ecgPerf.frames")
            tiles = driver.execute_script("return document.querySelectorAll('.bed').length")
            beds.stop()
            cpu = (c1.user + c1.system - c0.user - c0.system) / (t1 - t0) * 100
            out["load"] = {
                "beds": n_beds,
                "live_messages_per_s": round(n_beds * 4.0, 1),
                "seconds": round(t1 - t0, 1),
                "station_cpu_percent_of_one_core": round(cpu, 1),
                "station_rss_mb": {
                    "median": round(statistics.median(rss), 1),
                    "max": round(max(rss), 1),
                },
                "tiles_in_page": tiles,
                "page_frame_interval_ms": _pct(frames),
                "alert_to_page_ms": lat,
            }
        finally:
            driver.quit()
            st.terminate()
            st.wait(10)
            broker.stop()
    return out


def screenshot(path: Path, wait_s: float = 28.0) -> Path:
    """Three replayed beds with --live into a station; the page as Chromium shows it."""
    from bridge.testing import free_port, start_broker

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        broker = start_broker(tmp / "broker")
        port = free_port()
        st = _station(broker.url, port)
        procs = [st]
        try:
            records = ["cpsc2018/A0001", "ptb-xl/HR00001", "georgia/E00005"]
            for i, r in enumerate(records):
                procs.append(
                    subprocess.Popen(
                        [
                            str(BIN / "ecg-edge"),
                            "replay",
                            str(SAMPLES / r),
                            "--loop",
                            "--live",
                            "--hop-s",
                            "5",
                            "--broker",
                            broker.url,
                            "--device-id",
                            f"bed-{i + 1}",
                            "--spool",
                            str(tmp / f"s{i}.db"),
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
            driver = _browser(tmp)
            try:
                driver.get(f"http://127.0.0.1:{port}/")
                time.sleep(wait_s)
                path.parent.mkdir(parents=True, exist_ok=True)
                driver.save_screenshot(str(path))
            finally:
                driver.quit()
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(15)
            broker.stop()
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.station", description=__doc__)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "station.json")
    ap.add_argument("--beds", type=int, default=50)
    ap.add_argument("--alerts", type=int, default=60)
    ap.add_argument("--load-s", type=float, default=30.0)
    ap.add_argument("--only", choices=("strip", "page"), default=None)
    ap.add_argument("--screenshot", type=Path, default=None, help="write the README picture")
    args = ap.parse_args(argv)
    if args.screenshot is not None:
        print(screenshot(args.screenshot))
        return 0
    if os.path.exists("/work/TRAINING"):
        print("note: a training job is running; timing figures are not representative",
              file=sys.stderr)  # fmt: skip
    res: dict = {"date": _now(), "cpus": os.cpu_count()}
    if args.only in (None, "strip"):
        res["strip"] = bench_strip()
    if args.only in (None, "page"):
        res["page"] = bench_page(args.alerts, args.beds, args.load_s)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
