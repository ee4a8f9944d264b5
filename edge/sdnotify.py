"""systemd's notify protocol (``Type=notify``, ``WatchdogSec=``), standard library only.

systemd passes ``NOTIFY_SOCKET`` (a unix datagram socket path, or ``@name``
for the abstract namespace) and, with ``WatchdogSec=``, ``WATCHDOG_USEC``
(and ``WATCHDOG_PID``). The service sends ``READY=1`` once it streams,
``WATCHDOG=1`` at least every ``WATCHDOG_USEC`` microseconds, ``STATUS=...``
for ``systemctl status``, and ``STOPPING=1`` / ``RELOADING=1``. Outside
systemd (no ``NOTIFY_SOCKET``) every call does nothing.

:class:`Watchdog` feeds the watchdog from the stream loop: it wraps the
sample source, so it knows whether the loop is waiting for the source (the
device may be silent or reconnecting; that is reported as no signal, it is
not a hang) or processing the chunk it was handed. Once one chunk has been
in processing for longer than half the watchdog interval, the pings stop and
systemd kills and restarts the service (``Restart=on-failure``).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator

from edge.sources import Chunk, SampleSource


class Notifier:
    """Send notify messages to systemd (or to ``address`` in tests); silent without one."""

    def __init__(self, address: str | None = None, watchdog_usec: int | None = None) -> None:
        env = os.environ
        self.address = address if address is not None else env.get("NOTIFY_SOCKET") or None
        if watchdog_usec is None:
            pid = env.get("WATCHDOG_PID")
            usec = env.get("WATCHDOG_USEC", "")
            mine = pid is None or pid == str(os.getpid())
            watchdog_usec = int(usec) if usec.isdigit() and mine else 0
        self.watchdog_s = watchdog_usec / 1e6 if watchdog_usec else None
        self._sock: socket.socket | None = None
        self.sent = 0

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *lines: str) -> bool:
        """Send ``KEY=value`` lines as one datagram; False (never raises) if it cannot."""
        if self.address is None:
            return False
        addr = self.address
        if addr.startswith("@"):
            addr = "\0" + addr[1:]
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto("\n".join(lines).encode(), addr)
        except OSError:
            return False
        self.sent += 1
        return True

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def reloading(self) -> bool:
        mono = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={mono}")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class Watchdog:
    """Ping ``WATCHDOG=1`` while the stream loop lives; stop when a chunk's processing hangs.

    ``watch(source)`` returns a source that yields the same chunks and marks
    when the loop holds one (between a yield and the next request). A thread
    pings every third of the interval unless a chunk has been held longer
    than ``hang_s`` (default: half the interval).
    """

    def __init__(self, notifier: Notifier, hang_s: float | None = None) -> None:
        self.notifier = notifier
        self.interval_s = notifier.watchdog_s
        self.hang_s = hang_s if hang_s is not None else (self.interval_s or 0) / 2
        self._held_since: float | None = None  # monotonic time the loop took a chunk
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.pings = 0

    @property
    def enabled(self) -> bool:
        return self.notifier.enabled and self.interval_s is not None

    def alive(self) -> bool:
        """The stream loop is waiting for samples, or has held its chunk for < ``hang_s``."""
        held = self._held_since
        return held is None or time.monotonic() - held < self.hang_s

    def start(self) -> Watchdog:
        if self.enabled and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="watchdog", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        period = self.interval_s / 3
        while not self._stop.wait(period):
            if self.alive() and self.notifier.notify("WATCHDOG=1"):
                self.pings += 1

    def watch(self, source: SampleSource) -> SampleSource:
        return _WatchedSource(source, self)


class _WatchedSource:
    """``source`` with the watchdog told when the loop holds a chunk."""

    def __init__(self, source: SampleSource, watchdog: Watchdog) -> None:
        self._source = source
        self._dog = watchdog

    def __getattr__(self, name: str):
        return getattr(self._source, name)

    def chunks(self) -> Iterator[Chunk]:
        try:
            for chunk in self._source.chunks():
                self._dog._held_since = time.monotonic()
                yield chunk
                self._dog._held_since = None  # the loop asks for the next: it is alive
        finally:
            self._dog._held_since = None

    def close(self) -> None:
        self._source.close()
