"""A simulated serial device: plays a WFDB record into a pseudo-terminal.

``ecg-edge simulate-device RECORD`` opens a pty pair, prints the slave path
(the "device" to pass to ``ecg-edge run --device``) and writes the record's
12 leads into it in the wire format of :mod:`edge.protocol`, at the record's
own rate (``--fs`` of ``run`` must match it; resampling is the agent's job).
Samples are quantised with :func:`edge.protocol.mv_to_lsb`, so a test can
compute exactly what a reader should receive.

Like a device that is switched on when the host opens the port, playback
starts when a reader configures the port (pyserial, ``stty``, ``screen`` and
``minicom`` all do; pyserial flushes the input on open, so data written
before would be lost). POSIX only.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import os
import select
import struct
import termios
import threading
import time
import tty
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edge.errors import SourceError, check_choice, check_int, check_positive, invalid
from edge.protocol import (
    PACKET_SIZE,
    SEQ_MODULO,
    check_lsb_uv,
    encode_csv_line,
    encode_packets,
    mv_to_lsb,
)
from edge.sources import N_LEADS

PROTOCOLS = ("binary", "csv")
_MAX_BLOCK = 256  # samples per write when not paced
_TICK_S = 0.01  # pacing granularity
_SETTLE_S = 0.25  # after a reader configures the port, before the first byte
_MARKER_SPEED = termios.B50  # set on the slave; a reader's configuration changes it


def parse_speed(speed: float | str | None) -> float | None:
    """``--speed``: a positive factor of real time, or None / "max" for as fast as read."""
    if speed is None or (isinstance(speed, str) and speed.strip().lower() in ("max", "inf")):
        return None
    if isinstance(speed, str):
        try:
            speed = float(speed)
        except ValueError:
            raise invalid("speed", "a positive number or 'max'", speed) from None
    return float(check_positive("speed", speed))


class SimulatedDevice:
    """A pty that streams a (12, n) signal in mV as a serial ECG device would.

    ``speed``: 1.0 is real time, 10.0 ten times faster, None as fast as the
    reader drains the pty. ``loop`` replays the record forever (the sequence
    number keeps counting). ``wait_for_reader``: hold the first byte until a
    reader configures the port. ``port`` is the path to open.
    """

    def __init__(
        self,
        record_path: str | Path,
        *,
        protocol: str = "binary",
        speed: float | str | None = 1.0,
        loop: bool = False,
        lsb_uv: float = 1.0,
        wait_for_reader: bool = True,
        corrupt_every: int = 0,
    ) -> None:
        from edge.records import read_record

        record = read_record(record_path)
        self._init(record.signal, record.fs, record.name, protocol, speed, loop, lsb_uv)
        self.wait_for_reader = bool(wait_for_reader)
        self.corrupt_every = check_int("corrupt_every", corrupt_every, min_value=0)

    @classmethod
    def from_array(
        cls,
        signal_mv: np.ndarray,
        fs: float,
        *,
        name: str = "array",
        protocol: str = "binary",
        speed: float | str | None = 1.0,
        loop: bool = False,
        lsb_uv: float = 1.0,
        wait_for_reader: bool = True,
        corrupt_every: int = 0,
    ) -> SimulatedDevice:
        """A device playing ``signal_mv`` ((12, n) mV, LEADS order) at ``fs`` Hz."""
        self = cls.__new__(cls)
        self._init(signal_mv, fs, name, protocol, speed, loop, lsb_uv)
        self.wait_for_reader = bool(wait_for_reader)
        self.corrupt_every = check_int("corrupt_every", corrupt_every, min_value=0)
        return self

    def _init(self, signal, fs, name, protocol, speed, loop, lsb_uv) -> None:
        signal = np.asarray(signal)
        if signal.ndim != 2 or signal.shape[0] != N_LEADS or signal.shape[1] == 0:
            raise invalid("signal", f"an array of shape ({N_LEADS}, n), n > 0", signal.shape)
        self.name = name
        self.fs = float(check_positive("fs", fs))
        self.protocol = check_choice("protocol", protocol, PROTOCOLS)
        self.speed = parse_speed(speed)
        self.loop = bool(loop)
        self.lsb_uv = float(check_lsb_uv(lsb_uv))
        self.samples_lsb = mv_to_lsb(signal, self.lsb_uv)  # (12, n) int16: what goes out
        self.samples_sent = 0
        self.port: str | None = None
        self._master: int | None = None
        self._slave: int | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._done = threading.Event()
        self.error: BaseException | None = None

    @property
    def n_samples(self) -> int:
        return int(self.samples_lsb.shape[1])

    # ------------------------------------------------------------------ control

    def start(self) -> SimulatedDevice:
        """Open the pty and start playing in a thread; returns self."""
        if self._thread is not None:
            return self
        try:
            master, slave = os.openpty()
        except OSError as exc:
            raise SourceError(f"Cannot open a pseudo-terminal: {exc}") from exc
        tty.setraw(slave)
        attrs = termios.tcgetattr(slave)
        attrs[4] = attrs[5] = _MARKER_SPEED
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self.port = os.ttyname(slave)
        self._thread = threading.Thread(target=self._run, name="simulated-device", daemon=True)
        self._thread.start()
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the whole record was sent and read; True if it was (never with loop)."""
        return self._done.wait(timeout)

    def stop(self) -> None:
        """Stop playing and close the pty (a reader sees the device vanish); idempotent."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)
        for fd in (self._master, self._slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = None

    def __enter__(self) -> SimulatedDevice:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ thread

    def _run(self) -> None:
        try:
            if self.wait_for_reader and not self._wait_reader():
                return
            self._play()
            if not self._stop.is_set():
                self._drain()
                self._done.set()
        except OSError as exc:  # the pty went away under us
            if not self._stop.is_set():
                self.error = exc

    def _wait_reader(self) -> bool:
        while not self._stop.wait(0.01):
            attrs = termios.tcgetattr(self._slave)
            if attrs[4] != _MARKER_SPEED or attrs[5] != _MARKER_SPEED:
                return not self._stop.wait(_SETTLE_S)
        return False

    def corrupted(self, start: int, stop: int) -> list[int]:
        """The sample indices in ``[start, stop)`` sent corrupted (every ``corrupt_every``-th,
        the last of each run of that many: 999, 1999, ... for 1000)."""
        n = self.corrupt_every
        if n <= 0:
            return []
        first = start + (n - 1 - start) % n
        return list(range(first, stop, n))

    def _encode(self, start: int, stop: int) -> bytes:
        n = self.n_samples
        idx = np.arange(start, stop) % n
        block = self.samples_lsb[:, idx]
        bad = self.corrupted(start, stop)
        if self.protocol == "binary":
            data = bytearray(encode_packets(start % SEQ_MODULO, block))
            for k in bad:  # one flipped sample byte: the CRC fails, the packet is dropped
                data[(k - start) * PACKET_SIZE + 8] ^= 0xFF
            return bytes(data)
        lines = [encode_csv_line(block[:, k], index=start + k) for k in range(block.shape[1])]
        for k in bad:  # a byte garbled: the line no longer parses
            lines[k - start] = b"x" + lines[k - start][1:]
        return b"".join(lines)

    def _play(self) -> None:
        total = None if self.loop else self.n_samples
        rate = None if self.speed is None else self.fs * self.speed
        batch = _MAX_BLOCK if rate is None else max(1, int(rate * _TICK_S))
        t0 = time.monotonic()
        sent = 0
        while not self._stop.is_set() and (total is None or sent < total):
            target = sent + batch if total is None else min(sent + batch, total)
            if rate is None:
                due = target
            else:
                now = time.monotonic()
                if (now - t0) * rate - sent > rate * 0.5:  # blocked by the reader: no burst
                    t0 = now - sent / rate
                due = int((now - t0) * rate) + 1  # samples due by now
                if due < target:
                    self._stop.wait(max(0.0, (target - 1) / rate - (now - t0)))
                    continue
                due = min(due, sent + max(_MAX_BLOCK, batch))
                if total is not None:
                    due = min(due, total)
            if not self._write_all(self._encode(sent, due)):
                return
            sent = due
            self.samples_sent = sent

    def _write_all(self, data: bytes) -> bool:
        view = memoryview(data)
        while view:
            if self._stop.is_set():
                return False
            try:
                n = os.write(self._master, view)
            except BlockingIOError:
                select.select([], [self._master], [], 0.05)
                continue
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                raise
            view = view[n:]
        return True

    def _drain(self, timeout: float = 30.0) -> None:
        """Wait until the reader has taken every byte out of the pty.

        The slave's input count stays 0 for a while before it is trusted:
        bytes still in the kernel's flip buffer are not counted yet.
        """
        end = time.monotonic() + timeout
        buf = bytearray(4)
        quiet = 0
        while not self._stop.is_set() and time.monotonic() < end and quiet < 20:
            fcntl.ioctl(self._slave, termios.FIONREAD, buf)
            quiet = quiet + 1 if struct.unpack("i", bytes(buf))[0] == 0 else 0
            self._stop.wait(0.01)


def simulate_device_main(
    record: str | Path,
    protocol: str = "binary",
    speed: float | str | None = 1.0,
    loop: bool = False,
    lsb_uv: float = 1.0,
    out: Callable[[str], None] = print,
    corrupt_every: int = 0,
) -> int:
    """The ``simulate-device`` command: print the pty path first, then play until done.

    Returns 0 when the record was played (or on Ctrl-C). Errors are
    :class:`~edge.errors.EcgEdgeError` for the CLI to print on one line.
    """
    if out is print:
        out = functools.partial(print, flush=True)
    device = SimulatedDevice(
        record,
        protocol=protocol,
        speed=speed,
        loop=loop,
        lsb_uv=lsb_uv,
        corrupt_every=corrupt_every,
    )
    device.start()
    try:
        out(device.port)
        pace = "max speed" if device.speed is None else f"{device.speed:g}x real time"
        out(
            f"playing {device.name}: {device.n_samples} samples at {device.fs:g} Hz, "
            f"{device.protocol}, {pace}{', looping' if device.loop else ''}"
            f"{f', 1 packet in {corrupt_every} corrupted' if corrupt_every else ''}; "
            "starts when a reader opens the port. Read it with:"
        )
        out(
            f"  ecg-edge run --device {device.port} --protocol {device.protocol} "
            f"--fs {device.fs:g} --lsb-uv {device.lsb_uv:g}"
        )
        while not device.wait(0.2):
            if device.error is not None:
                raise SourceError(f"Simulated device {device.port} failed: {device.error}")
        out(f"done: sent {device.samples_sent} samples")
    except KeyboardInterrupt:
        out(f"stopped after {device.samples_sent} samples")
    finally:
        device.stop()
    return 0
