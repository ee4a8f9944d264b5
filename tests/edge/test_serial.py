"""SerialSource and SimulatedDevice on real pseudo-terminals (pyserial, no mocks)."""

from __future__ import annotations

import os
import sys
import threading
import time
import tty

import numpy as np
import pytest

from edge.errors import ConfigError, SourceError
from edge.protocol import PACKET_SIZE, encode_packets, lsb_to_mv, mv_to_lsb
from edge.serial_source import SerialSource
from edge.simulate import SimulatedDevice, parse_speed, simulate_device_main
from edge.sources import Chunk, SampleSource

pytestmark = [
    pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX only"),
    pytest.mark.timeout(60),
]


@pytest.fixture(scope="module")
def record_path(samples_dir):
    return samples_dir / "cpsc2018" / "A0001"


def _collect(source: SerialSource, n_samples: int, timeout: float = 15.0) -> list[Chunk]:
    """Chunks until ``n_samples`` samples (lost ones included) arrived, then close."""
    chunks: list[Chunk] = []
    timer = threading.Timer(timeout, source.close)
    timer.start()
    try:
        for chunk in source.chunks():
            chunks.append(chunk)
            if chunk.start_sample + chunk.n_samples >= n_samples:
                break
    finally:
        timer.cancel()
        source.close()
    return chunks


def _signal(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((12, n)) * 0.5).astype(np.float32)


class TestSimulatedDeviceToSerialSource:
    @pytest.mark.parametrize("protocol", ["binary", "csv"])
    def test_samples_equal_the_quantised_record(self, record_path, protocol):
        from edge.records import read_record

        record = read_record(record_path)
        with SimulatedDevice(record_path, protocol=protocol, speed=None) as device:
            source = SerialSource(device.port, protocol=protocol, fs=record.fs, check_rate=False)
            assert isinstance(source, SampleSource)
            chunks = _collect(source, record.signal.shape[1])
            assert device.wait(5.0)
        got = np.concatenate([c.samples for c in chunks], axis=1)
        expected = lsb_to_mv(mv_to_lsb(record.signal, 1.0), 1.0)
        assert got.dtype == np.float32
        assert np.array_equal(got, expected)
        assert [c.start_sample for c in chunks] == list(
            np.cumsum([0] + [c.n_samples for c in chunks[:-1]])
        )
        assert all(c.gap_before == 0 and c.fs == record.fs for c in chunks)
        assert max(c.n_samples for c in chunks) <= source.chunk_samples
        assert source.stats.crc_errors == 0 and source.stats.bad_lines == 0
        if protocol == "binary":
            assert all(c.lead_off is not None and not c.lead_off.any() for c in chunks)
        else:
            assert all(c.lead_off is None for c in chunks)

    def test_lsb_uv_scales_both_ends(self):
        signal = _signal(300)
        with SimulatedDevice.from_array(signal, 500, speed=None, lsb_uv=2.5) as device:
            source = SerialSource(device.port, lsb_uv=2.5, check_rate=False)
            got = np.concatenate([c.samples for c in _collect(source, 300)], axis=1)
        assert np.array_equal(got, lsb_to_mv(mv_to_lsb(signal, 2.5), 2.5))
        assert np.abs(got - signal).max() <= 1.25e-3 + 1e-6

    def test_real_time_pacing(self):
        signal = _signal(100)
        with SimulatedDevice.from_array(signal, 500, speed=1.0) as device:
            source = SerialSource(device.port, check_rate=False)
            t0 = time.monotonic()
            chunks = _collect(source, 100)
            elapsed = time.monotonic() - t0 - 0.25  # the device settles after the open
        assert 0.12 < elapsed < 1.5
        assert len(chunks) > 2  # delivered as it came, not in one block


class TestGarbageOnTheLine:
    def test_garbage_crc_error_and_dropped_packet(self):
        master, slave = os.openpty()
        tty.setraw(slave)
        try:
            source = SerialSource(os.ttyname(slave), check_rate=False, chunk_samples=1000)
            block = mv_to_lsb(_signal(60), 1.0)
            packets = encode_packets(65500, block)  # wraps past 65535
            parts = [b"\x00\xff garbage \xa5\x5a\x01\x02"]
            for i in range(60):
                packet = bytearray(packets[i * PACKET_SIZE : (i + 1) * PACKET_SIZE])
                if i == 20:
                    continue  # dropped
                if i == 40:
                    packet[12] ^= 0xFF  # corrupted on the line
                parts.append(bytes(packet))
                if i % 7 == 0:
                    parts.append(os.urandom(13).replace(b"\xa5", b"\x00"))
            os.write(master, b"".join(parts))
            chunks = _collect(source, 60)
        finally:
            os.close(master)
            os.close(slave)
        assert [c.gap_before for c in chunks] == [0, 1, 1]
        assert [c.start_sample for c in chunks] == [0, 21, 41]
        got = np.concatenate([c.samples for c in chunks], axis=1)
        kept = [i for i in range(60) if i not in (20, 40)]
        assert np.array_equal(got, lsb_to_mv(block[:, kept]))
        stats = source.stats
        # CRC failures: the false sync word in the leading garbage, and packet 40
        assert (stats.crc_errors, stats.gaps, stats.samples_lost) == (2, 2, 2)
        assert stats.bytes_discarded > 0

    def test_wrong_protocol_is_logged_not_fatal(self):
        logs: list[str] = []
        with SimulatedDevice.from_array(_signal(400), 500, speed=None, protocol="csv") as dev:
            source = SerialSource(dev.port, protocol="binary", check_rate=False, log=logs.append)
            threading.Timer(1.0, source.close).start()
            assert list(source.chunks()) == []
        assert any("--protocol csv" in line for line in logs)


class TestOpenErrors:
    def test_missing_device(self, tmp_path):
        with pytest.raises(SourceError) as info:
            SerialSource(str(tmp_path / "ttyUSB9"))
        message = str(info.value)
        assert "ttyUSB9" in message and "no such device" in message and "--device" in message
        assert "\n" not in message

    def test_busy_device(self):
        with SimulatedDevice.from_array(_signal(10), 500) as device:
            first = SerialSource(device.port, check_rate=False)
            try:
                with pytest.raises(SourceError, match="busy"):
                    SerialSource(device.port)
            finally:
                first.close()

    def test_not_a_serial_device(self, tmp_path):
        path = tmp_path / "file"
        path.write_bytes(b"")
        with pytest.raises(SourceError, match="not a serial device"):
            SerialSource(str(path))

    @pytest.mark.parametrize(
        "kwargs", [{"fs": -500}, {"protocol": "json"}, {"baud": 0}, {"lsb_uv": 0}]
    )
    def test_bad_options(self, kwargs, tmp_path):
        with pytest.raises(ConfigError):
            SerialSource(str(tmp_path / "x"), **kwargs)

    def test_wrong_fs_is_detected(self):
        with SimulatedDevice.from_array(_signal(2000), 1000, speed=1.0) as device:
            source = SerialSource(device.port, fs=500, rate_window_s=0.6)
            with pytest.raises(SourceError, match=r"--fs 1000"):
                _collect(source, 2000)

    def test_speed_parsing(self):
        assert parse_speed("max") is None and parse_speed(None) is None
        assert parse_speed("2.5") == 2.5
        with pytest.raises(ConfigError):
            parse_speed("fast")


class TestUnplug:
    def test_reopened_with_backoff_through_a_symlink(self, tmp_path):
        signal = _signal(3000)
        link = tmp_path / "ttyECG"
        first = SimulatedDevice.from_array(signal, 500, speed=4.0).start()
        link.symlink_to(first.port)
        logs: list[str] = []
        source = SerialSource(str(link), check_rate=False, max_backoff_s=0.2, log=logs.append)
        holder: dict = {}

        def replug():
            time.sleep(0.4)
            second = SimulatedDevice.from_array(signal, 500, speed=None).start()
            holder["second"] = second
            link.unlink()
            link.symlink_to(second.port)

        chunks: list[Chunk] = []
        at = None  # index of the first chunk after the reopening
        timer = threading.Timer(15.0, source.close)
        timer.start()
        try:
            for chunk in source.chunks():
                chunks.append(chunk)
                if "replug" not in holder and sum(c.n_samples for c in chunks) >= 300:
                    first.stop()  # unplugged
                    holder["replug"] = threading.Thread(target=replug)
                    holder["replug"].start()
                if at is None and chunk.meta.get("reconnected"):
                    at = len(chunks) - 1
                if at is not None and sum(c.n_samples for c in chunks[at:]) >= 3000:
                    break
        finally:
            timer.cancel()
            source.close()
            first.stop()
            if "replug" in holder:
                holder["replug"].join()
            if "second" in holder:
                holder["second"].stop()
        assert at is not None and source.reconnects == 1
        assert not any(c.meta.get("reconnected") for c in chunks[at + 1 :])
        chunk, last = chunks[at], chunks[at - 1]
        assert chunk.gap_before >= 1
        assert chunk.start_sample == last.start_sample + last.n_samples + chunk.gap_before
        after = np.concatenate([c.samples for c in chunks[at:]], axis=1)
        assert np.array_equal(after, lsb_to_mv(mv_to_lsb(signal)))  # second device, whole
        assert any("disconnected" in line for line in logs)
        assert any("reopened" in line for line in logs)

    def test_no_reopen_raises(self):
        device = SimulatedDevice.from_array(_signal(5000), 500, speed=4.0).start()
        source = SerialSource(device.port, check_rate=False, reopen=False)
        with pytest.raises(SourceError, match="failed while reading"):
            for i, _ in enumerate(source.chunks()):
                if i == 2:
                    device.stop()
        device.stop()


class TestClose:
    def test_close_from_another_thread_ends_chunks(self):
        with SimulatedDevice.from_array(_signal(50), 500, speed=None) as device:
            source = SerialSource(device.port, check_rate=False)
            threading.Timer(0.5, source.close).start()
            t0 = time.monotonic()
            n = sum(c.n_samples for c in source.chunks())
            assert time.monotonic() - t0 < 2.0
            assert n == 50
            source.close()
            source.close()

    def test_close_from_a_signal_handler_during_a_read(self):
        """SIGTERM lands on the main thread while it blocks in a read (holding the port):
        close() must not wait for that read (it once deadlocked the agent)."""
        import signal

        master, slave = os.openpty()
        tty.setraw(slave)
        try:
            source = SerialSource(os.ttyname(slave), check_rate=False)
            old = signal.signal(signal.SIGALRM, lambda *_: source.close())
            signal.setitimer(signal.ITIMER_REAL, 0.3, 0.01)  # repeats: some land in a read
            t0 = time.monotonic()
            try:
                assert list(source.chunks()) == []  # a silent device: no samples
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, old)
            assert time.monotonic() - t0 < 5.0
        finally:
            os.close(master)
            os.close(slave)


class TestSimulateDeviceMain:
    def test_prints_the_port_first_and_plays_the_record(self, record_path):
        from edge.records import read_record

        record = read_record(record_path)
        lines: list[str] = []
        result: dict = {}
        ready = threading.Event()

        def out(line: str) -> None:
            lines.append(line)
            ready.set()

        thread = threading.Thread(
            target=lambda: result.setdefault(
                "rc", simulate_device_main(record_path, "csv", None, False, 1.0, out=out)
            )
        )
        thread.start()
        assert ready.wait(10.0)
        port = lines[0]
        assert os.path.exists(port)
        source = SerialSource(port, protocol="csv", fs=record.fs, check_rate=False)
        chunks = _collect(source, record.signal.shape[1])
        thread.join(10.0)
        assert result["rc"] == 0
        assert sum(c.n_samples for c in chunks) == record.signal.shape[1]
        assert any(f"--fs {record.fs:g}" in line for line in lines)
        assert lines[-1].startswith("done")


class TestSampleRateCheck:
    """Warn beyond 5 %, refuse beyond 10 %, and advise a --fs only when it is a real ECG rate."""

    def test_verdicts(self):
        from edge.serial_source import judge_rate

        assert judge_rate(500, 500) == judge_rate(515, 500) == "ok"
        assert judge_rate(500, 530) == judge_rate(500, 472) == "warn"
        assert judge_rate(500, 560) == judge_rate(9936, 1000) == "refuse"

    def test_advice_only_for_a_usual_rate(self):
        from edge.serial_source import rate_advice

        said = rate_advice("/dev/x", 497.0, 560)
        assert said.endswith("pass --fs 500") and "(-11%)" in said
        said = rate_advice("/dev/x", 9936.0, 1000)  # a 1000 Hz record played at --speed 10
        assert "--fs 9936" not in said and "no --fs can be advised" in said
        assert "pass --fs" not in said

    def test_560_on_a_500_hz_device_is_not_silent(self):
        logged: list[str] = []
        with SimulatedDevice.from_array(_signal(1500), 500, speed=1.0) as device:
            source = SerialSource(device.port, fs=560, rate_window_s=1.5, log=logged.append)
            try:
                _collect(source, 1500)
            except SourceError as exc:  # refused (the usual case: about 11 % off) ...
                logged.append(str(exc))
        said = [m for m in logged if "samples/s but --fs is 560" in m]
        assert said and said[0].endswith("pass --fs 500")  # ... or at least warned

    def test_a_fast_replay_gets_no_wrong_advice(self):
        with SimulatedDevice.from_array(_signal(20000), 1000, speed=10.0) as device:
            source = SerialSource(device.port, fs=1000, rate_window_s=1.0, log=lambda m: None)
            with pytest.raises(SourceError, match="no --fs can be advised") as err:
                _collect(source, 20000)
        assert "pass --fs" not in str(err.value)
