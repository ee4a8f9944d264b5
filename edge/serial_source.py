"""A live serial device as a :class:`~edge.sources.SampleSource` (pyserial).

The device streams the wire format of :mod:`edge.protocol` (binary packets
or CSV lines, see ``docs/serial-protocol.md``). :class:`SerialSource` reads
it, turns LSB units into millivolts and yields :class:`~edge.sources.Chunk`
objects as soon as samples arrive (at most ``max_latency_s`` late).

What can go wrong, and what happens:

- the port does not exist, is busy or not permitted at start: :class:`SourceError`
  with one line saying what to fix;
- garbage, CRC failures, bad CSV lines: counted in ``stats``, skipped;
- a sequence jump: the next chunk has ``gap_before`` = samples lost, and
  ``start_sample`` advances past them (never a silent splice);
- the device disappears (unplugged): logged, reopened with exponential
  backoff and jitter; the first chunk after it has ``meta["reconnected"]``
  and a ``gap_before`` estimated from the wall-clock time lost x ``fs``;
- the device's real rate differs from ``fs`` (measured once over the first
  ``rate_window_s`` seconds when ``check_rate``): more than
  ``RATE_WARN`` (5 %) off is logged, more than ``RATE_REFUSE`` (10 %) off is a
  :class:`SourceError`. Either names the ``--fs`` to pass only when the
  measured rate is within 3 % of a usual ECG rate; otherwise (a simulated
  device played faster than real time, a misconfigured front end) it says so
  and advises nothing.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import serial

from edge.errors import SourceError, check_choice, check_int, check_positive
from edge.protocol import (
    PACKET_SIZE,
    Gap,
    Sample,
    check_lsb_uv,
    lsb_to_mv,
    make_parser,
)
from edge.sources import N_LEADS, Chunk

DEFAULT_BAUD = 921600
PROTOCOLS = ("binary", "csv")
RATE_WARN = 0.05  # measured rate this far off --fs: a warning
RATE_REFUSE = 0.10  # this far off: refused (the scores would be wrong)
_NO_DATA_WARN_S = 5.0
_GARBAGE_WARN_BYTES = 4096


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _available_ports() -> str:
    try:
        from serial.tools import list_ports

        names = sorted(p.device for p in list_ports.comports())
    except Exception:  # listing ports is only a hint; never fail on it
        names = []
    return ", ".join(names) if names else "none found"


def open_error_message(device: str, exc: BaseException) -> str:
    """One line saying why ``device`` cannot be opened and what to do about it."""
    code = getattr(exc, "errno", None)
    text = str(exc)
    if code == errno.ENOENT or "No such file" in text:
        return (
            f"Cannot open serial port {device}: no such device; check the cable, "
            f"or pass the right --device (serial ports here: {_available_ports()})"
        )
    if code in (errno.EACCES, errno.EPERM):
        return (
            f"Cannot open serial port {device}: permission denied; add your user to the "
            "'dialout' group (sudo usermod -aG dialout $USER) and log in again"
        )
    if code in (errno.EBUSY, errno.EAGAIN, errno.EWOULDBLOCK) or "lock" in text.lower():
        return (
            f"Cannot open serial port {device}: it is busy (another program has it open); "
            "close that program (screen, minicom, another ecg-edge) and retry"
        )
    if code == errno.ENOTTY or "Inappropriate ioctl" in text or "configure port" in text:
        return f"Cannot open serial port {device}: it is not a serial device; pass --device"
    return f"Cannot open serial port {device}: {text}"


def suggest_fs(rate: float) -> float | None:
    """The usual ECG rate the measured ``rate`` is (within 3 %: a busy host measures a
    little off), or None: then no rate can be advised.

    >>> suggest_fs(497.2), suggest_fs(9936.0)
    (500, None)
    """
    for family, tol in (((250, 257, 360, 500, 1000, 2000), 0.03),
                        ((125, 128, 256, 400, 512, 1024), 0.02)):  # fmt: skip
        best = min(family, key=lambda c: abs(c - rate))
        if abs(best - rate) <= tol * best:
            return best
    return None


def judge_rate(rate: float, fs: float) -> str:
    """``"ok"``, ``"warn"`` (more than 5 % off) or ``"refuse"`` (more than 10 % off).

    >>> judge_rate(503, 500), judge_rate(500, 530), judge_rate(500, 560)
    ('ok', 'warn', 'refuse')
    """
    off = abs(rate / fs - 1.0)
    return "refuse" if off > RATE_REFUSE else "warn" if off > RATE_WARN else "ok"


def rate_advice(device: str, rate: float, fs: float) -> str:
    """One line: the measured rate against ``--fs``, and what to pass, if anything is known."""
    off = rate / fs - 1.0
    said = (
        f"Serial device {device} sends about {rate:.0f} samples/s but --fs is {fs:g} ({off:+.0%})"
    )
    best = suggest_fs(rate)
    if best is not None:
        return f"{said}; pass --fs {best:g}"
    hint = " (or raise --baud: it may be too low for the rate)" if rate < fs else ""
    return (
        f"{said}; {rate:.0f} Hz is no usual ECG rate, so no --fs can be advised: check the "
        f"device's rate setting{hint}; a simulated device plays in real time only at --speed 1"
    )


class SerialSource:
    """Samples from a serial device, as chunks in mV (implements ``SampleSource``).

    ``device``: a port path (``/dev/ttyUSB0``, ``COM3``, a pty) or a pyserial
    URL. ``fs``: the device's sample rate in Hz (it is not on the wire; the
    rest of the stream resamples). ``lsb_uv``: microvolts per LSB unit.
    ``chunk_samples`` bounds a chunk; ``max_latency_s`` bounds how long a
    sample waits before its chunk is yielded. ``log`` receives one-line
    notices (disconnects, reopenings, likely misconfiguration); default stderr.

    The port is opened here, so a bad ``device`` fails at once. ``chunks()``
    runs until :meth:`close` (from any thread) and never ends on its own.
    """

    def __init__(
        self,
        device: str,
        *,
        baud: int = DEFAULT_BAUD,
        protocol: str = "binary",
        fs: float = 500.0,
        lsb_uv: float = 1.0,
        reopen: bool = True,
        max_backoff_s: float = 5.0,
        chunk_samples: int = 50,
        max_latency_s: float = 0.02,
        check_rate: bool = True,
        rate_window_s: float = 3.0,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.device = str(device)
        self.baud = check_int("baud", baud, min_value=1)
        self.protocol = check_choice("protocol", protocol, PROTOCOLS)
        self.fs = float(check_positive("fs", fs))
        self.lsb_uv = float(check_lsb_uv(lsb_uv))
        self.reopen = bool(reopen)
        self.max_backoff_s = float(check_positive("max_backoff_s", max_backoff_s))
        self.chunk_samples = check_int("chunk_samples", chunk_samples, min_value=1)
        self.max_latency_s = float(check_positive("max_latency_s", max_latency_s))
        self.check_rate = bool(check_rate)
        self.rate_window_s = float(check_positive("rate_window_s", rate_window_s))
        self._log = log or _stderr
        self._parser = make_parser(self.protocol)
        bytes_per_sample = PACKET_SIZE if self.protocol == "binary" else 64
        self._read_size = self.chunk_samples * bytes_per_sample
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.reconnects = 0
        self._next_sample = 0
        self._pending_gap = 0
        self._pending_meta: dict = {}
        self._last_sample_at: float | None = None
        self._lost_at: float | None = None
        self._rate_start: float | None = None
        self._rate_count = 0
        self._rate_checked = not self.check_rate
        self.measured_fs: float | None = None  # samples/s over the first rate_window_s
        self._warned_garbage = False
        self._ser: serial.Serial | None = self._open_port()

    # ------------------------------------------------------------------ public

    @property
    def stats(self):
        """The parser's counters (:class:`edge.protocol.ParserStats`)."""
        return self._parser.stats

    def chunks(self) -> Iterator[Chunk]:
        """Yield chunks as samples arrive; return once :meth:`close` was called."""
        last_data = time.monotonic()
        warned_silent = False
        try:
            while not self._stop.is_set():
                try:
                    data = self._read()
                except (serial.SerialException, OSError) as exc:
                    if self._stop.is_set():
                        break
                    if not self.reopen:
                        raise SourceError(
                            f"Serial port {self.device} failed while reading: {exc}"
                        ) from exc
                    self._reconnect(exc)
                    last_data = time.monotonic()
                    continue
                now = time.monotonic()
                if not data:
                    if not warned_silent and now - last_data > _NO_DATA_WARN_S:
                        self._log(
                            f"serial: no data from {self.device} for {_NO_DATA_WARN_S:g} s; "
                            "check that the device is streaming and --baud"
                        )
                        warned_silent = True
                    continue
                last_data, warned_silent = now, False
                yield from self._to_chunks(self._parser.feed(data), now)
                self._check_garbage()
        finally:
            self._close_port()

    def close(self) -> None:
        """Stop :meth:`chunks` and release the port; safe to call twice, from any thread,
        and from a signal handler that interrupted a read in this very thread."""
        self._stop.set()
        if self._lock.acquire(blocking=False):
            try:
                ser, self._ser = self._ser, None
            finally:
                self._lock.release()
            if ser is not None:
                with contextlib.suppress(serial.SerialException, OSError):
                    ser.close()
        # else a read holds the port (it returns within max_latency_s): chunks() sees the
        # stop flag and closes the port in its `finally`. Waiting for the lock here
        # would deadlock when a SIGTERM handler runs on top of that read.

    def __enter__(self) -> SerialSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ port

    def _open_port(self) -> serial.Serial:
        try:
            ser = serial.serial_for_url(
                self.device,
                baudrate=self.baud,
                timeout=self.max_latency_s,
                exclusive=True if os.name == "posix" else None,
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            raise SourceError(open_error_message(self.device, exc)) from exc
        return ser

    def _close_port(self) -> None:
        with self._lock:
            ser, self._ser = self._ser, None
        if ser is not None:
            with contextlib.suppress(serial.SerialException, OSError):
                ser.close()

    def _read(self) -> bytes:
        with self._lock:
            ser = self._ser
            if ser is None:
                if self._stop.is_set():
                    return b""
                raise serial.SerialException("port closed")
            return ser.read(self._read_size)

    def _reconnect(self, exc: BaseException) -> None:
        """Reopen the port with exponential backoff and jitter, until it opens or close()."""
        self._close_port()
        self._lost_at = self._last_sample_at or time.monotonic()
        lost_wall = time.monotonic()
        delay = min(0.1, self.max_backoff_s)
        self._log(f"serial: {self.device} disconnected ({exc}); reopening in {delay:.1f} s")
        last_reason, last_logged = "", time.monotonic()
        while not self._stop.wait(delay):
            try:
                ser = self._open_port()
            except SourceError as err:
                delay = min(self.max_backoff_s, delay * 2) * random.uniform(0.8, 1.2)
                reason = str(err)
                now = time.monotonic()
                if reason != last_reason or now - last_logged > 30.0:
                    self._log(f"serial: {reason}; retrying in {delay:.1f} s")
                    last_reason, last_logged = reason, now
                continue
            with self._lock:
                if self._stop.is_set():
                    ser.close()
                    return
                self._ser = ser
            self.reconnects += 1
            self._parser.restart_sequence()
            self._pending_meta["reconnected"] = True
            self._rate_start, self._rate_count = None, 0
            self._log(
                f"serial: {self.device} reopened after {time.monotonic() - lost_wall:.1f} s; "
                "the samples in between are reported as a gap"
            )
            return

    # ------------------------------------------------------------------ chunks

    def _to_chunks(self, items: list[Sample | Gap], now: float) -> Iterator[Chunk]:
        n_new = sum(1 for it in items if isinstance(it, Sample))
        if n_new and self._lost_at is not None:
            # samples lost while the device was away: estimated from the wall clock
            lost = round((now - self._lost_at) * self.fs) - n_new
            self._pending_gap += max(1, lost)
            self._lost_at = None
        rows: list[tuple] = []
        mask = 0
        for it in items:
            if isinstance(it, Gap):
                if rows:
                    yield self._make_chunk(rows, mask, now)
                    rows, mask = [], 0
                if it.reason == "reset":
                    self._pending_meta["seq_reset"] = True
                self._pending_gap += max(it.missing, 1)
                continue
            rows.append(it.values)
            mask |= it.lead_off
            if len(rows) >= self.chunk_samples:
                yield self._make_chunk(rows, mask, now)
                rows, mask = [], 0
        if rows:
            yield self._make_chunk(rows, mask, now)
        if n_new:
            self._last_sample_at = now
            self._track_rate(n_new, now)

    def _make_chunk(self, rows: list[tuple], mask: int, now: float) -> Chunk:
        lsb = np.asarray(rows, dtype=np.float64).T  # (n_leads, n_samples)
        lead_off = None
        if self.protocol == "binary":
            lead_off = np.array([bool(mask >> i & 1) for i in range(N_LEADS)])
        start = self._next_sample + self._pending_gap
        chunk = Chunk(
            samples=lsb_to_mv(lsb, self.lsb_uv),
            fs=self.fs,
            start_sample=start,
            gap_before=self._pending_gap,
            lead_off=lead_off,
            received_at=now,
            meta=self._pending_meta,
        )
        self._next_sample = start + lsb.shape[1]
        self._pending_gap = 0
        self._pending_meta = {}
        return chunk

    def _track_rate(self, n_new: int, now: float) -> None:
        if self._rate_checked:
            return
        if self._rate_start is None:  # the first read may hold a backlog: start after it
            self._rate_start, self._rate_count = now, 0
            return
        self._rate_count += n_new
        elapsed = now - self._rate_start
        if elapsed < self.rate_window_s:
            return
        self._rate_checked = True
        rate = self._rate_count / elapsed
        self.measured_fs = rate
        verdict = judge_rate(rate, self.fs)
        if verdict == "refuse":
            raise SourceError(rate_advice(self.device, rate, self.fs))
        if verdict == "warn":
            self._log(f"warning: {rate_advice(self.device, rate, self.fs)}")

    def _check_garbage(self) -> None:
        stats = self._parser.stats
        if (
            not self._warned_garbage
            and stats.packets_ok == 0
            and stats.bytes_discarded + stats.bad_lines * 32 >= _GARBAGE_WARN_BYTES
        ):
            self._warned_garbage = True
            other = "csv" if self.protocol == "binary" else "binary"
            self._log(
                f"serial: {stats.bytes_discarded} bytes from {self.device} but no valid "
                f"{self.protocol} data; check --baud and --protocol (try --protocol {other})"
            )
