"""Evidence for the central station: the strip of every alert, and the live lead II.

:class:`Evidence` sees the band-passed 500 Hz stream (the signal the
classifier and the beat detector see), keeps its last
:data:`~bridge.strip.STRIP_SECONDS` plus a frame's worth in a ring buffer, and:

* :meth:`Evidence.attach`: for an alert, the 12 leads of the 10 s that end at
  the alert's decision sample (the frame's end), as an ``ecg-edge/strip/1``
  payload, and the alert with its ``strip`` member referring to it;
* :meth:`Evidence.push` (with ``live``): every 0.25 s, the new samples of lead
  II decimated to 125 Hz as an ``ecg-edge/live/1`` payload, with the heart rate.

Encoding is numpy (about 1-2 ms for a 12-lead 10 s strip); the wire format is
:mod:`bridge.strip`'s, decoded there with the standard library.
"""

from __future__ import annotations

import base64
import dataclasses
import time
import zlib
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import numpy as np

from edge.sources import LEADS

STRIP_SAMPLES = 5000  # 10 s at 500 Hz
_KEEP = 20000  # ring buffer: 40 s (a 30 s frame's end is never older than the chunk)
LIVE_LEAD = "II"
LIVE_DECIMATE = 4  # 500 Hz -> 125 Hz
LIVE_EVERY = 125  # samples at 500 Hz between live messages (0.25 s)


def encode_uv(x_mv: np.ndarray) -> str:
    """(n_leads, n) mV -> the ``int16-delta-zlib-base64`` data string of :mod:`bridge.strip`."""
    uv = np.clip(np.rint(np.asarray(x_mv, dtype=np.float64) * 1000.0), -32768, 32767)
    uv = uv.astype("<i2")
    delta = np.diff(uv, axis=1, prepend=np.zeros((uv.shape[0], 1), dtype="<i2"))
    return base64.b64encode(zlib.compress(delta.astype("<i2").tobytes(), 1)).decode("ascii")


def _utc(t: float) -> str:
    dt = datetime.fromtimestamp(t, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


class Evidence:
    """Keep the recent band-passed signal; make strips for alerts and live messages.

    ``fs``: the stream rate (500 Hz); ``live``: also make live messages;
    ``heart_rate``: a callable giving the monitor's current rate (bpm or None);
    without one, a single-lead beat detector on lead II gives it (``live`` only).
    """

    def __init__(
        self,
        device_id: str,
        fs: float = 500.0,
        *,
        live: bool = False,
        heart_rate: Callable[[], float | None] | None = None,
        band: str = "band-pass 0.5-45 Hz",
    ) -> None:
        self.device_id = device_id
        self.fs = float(fs)
        self.live = bool(live)
        self.band = band
        self._heart_rate = heart_rate
        self._beats: Any = None
        self._ii = LEADS.index(LIVE_LEAD)
        self.reset(0)

    def reset(self, start_sample: int) -> None:
        """A new stream segment starts at ``start_sample`` (the buffer is emptied)."""
        self._buf = np.zeros((len(LEADS), _KEEP), dtype=np.float32)
        self._end = int(start_sample)  # stream index after the last sample held
        self._held = 0
        self._received_at = time.monotonic()
        self._live_next = self._end  # next 500 Hz sample to send live
        self._live_parts: list[np.ndarray] = []
        if self._beats is not None:
            self._beats.reset()

    def push(self, x: np.ndarray, start_sample: int, received_at: float) -> list[dict[str, Any]]:
        """Add (n_leads, n) band-passed mV samples starting at ``start_sample``.

        Returns the live payloads (dicts) now due (none unless ``live``).
        """
        n = x.shape[1]
        if start_sample != self._end:
            self.reset(start_sample)
        self._received_at = received_at
        if n >= _KEEP:
            self._buf[:] = x[:, -_KEEP:]
        else:
            self._buf = np.roll(self._buf, -n, axis=1) if n else self._buf
            self._buf[:, _KEEP - n :] = x
        self._end += n
        self._held = min(_KEEP, self._held + n)
        if not self.live or n == 0:
            return []
        return self._live(x[self._ii], start_sample, received_at)

    def window(self, end_sample: int, n: int = STRIP_SAMPLES) -> tuple[int, np.ndarray] | None:
        """``(start_sample, (n_leads, m) mV)``: up to ``n`` samples ending at ``end_sample``."""
        end = min(int(end_sample), self._end)
        first = self._end - self._held
        start = max(first, end - n)
        if end <= start:
            return None
        a, b = _KEEP - (self._end - start), _KEEP - (self._end - end)
        return start, self._buf[:, a:b]

    def attach(self, alert: Any) -> tuple[Any, dict[str, Any] | None]:
        """``(alert with its strip member, strip payload)``; ``(alert, None)`` with no signal.

        The strip's time is reckoned from the last chunk pushed (its ``received_at``).
        """
        alert, build = self.attach_later(alert)
        return alert, None if build is None else build()

    def attach_later(self, alert: Any) -> tuple[Any, Callable[[], dict[str, Any]] | None]:
        """:meth:`attach`, the strip payload built when asked: ``(alert, build)``.

        The alert (with its strip reference) can be spooled first and the strip's
        encoding and checking (a few ms) done after it, off the alert's path.
        """
        from bridge.strip import alert_summary, strip_payload, strip_reference

        if alert.kind == "diagnosis":  # the frame the classifier decided on
            end = alert.frame.end_sample
        else:  # an alarm: the signal up to its onset (or its end)
            end = alert.cleared_sample if alert.event == "cleared" else alert.onset_sample
        got = self.window(end)
        if got is None:
            return alert, None
        start, x = got
        x = x.copy()  # the buffer moves on with the next chunk
        n = x.shape[1]
        received = self._received_at
        wall_end = time.time() - (time.monotonic() - received) - (self._end - start - n) / self.fs
        ref = strip_reference(self.device_id, alert.alert_id, start, n, self.fs, LEADS)
        alert = dataclasses.replace(alert, strip=ref)

        def build() -> dict[str, Any]:
            return strip_payload(
                alert.alert_id,
                self.device_id,
                self.fs,
                start,
                n,
                _utc(wall_end - n / self.fs),
                LEADS,
                encode_uv(x),
                alert_summary(alert),
                filter=self.band,
            )

        return alert, build

    # ------------------------------------------------------------------ live

    def _rate(self, lead_ii: np.ndarray) -> float | None:
        if self._heart_rate is not None:
            return self._heart_rate()
        if self._beats is None:
            try:
                from edge.beats import BeatDetector
            except ImportError:  # pragma: no cover - the beat detector ships with the edge
                self._heart_rate = lambda: None
                return None
            self._beats = BeatDetector(self.fs, n_leads=1)
        self._beats.push(lead_ii[None, :].astype(np.float64))
        return self._beats.heart_rate().bpm

    def _live(self, lead_ii: np.ndarray, start: int, received_at: float) -> list[dict[str, Any]]:
        from bridge.wave import LiveWave

        bpm = self._rate(lead_ii)
        self._live_parts.append(lead_ii)
        if self._end - self._live_next < LIVE_EVERY:
            return []
        seg = np.concatenate(self._live_parts)[-(self._end - self._live_next) :]
        self._live_parts = []
        # samples on the 125 Hz grid (multiples of 4 in the 500 Hz stream)
        first = -(-self._live_next // LIVE_DECIMATE) * LIVE_DECIMATE
        picked = seg[first - self._live_next :: LIVE_DECIMATE]
        self._live_next = self._end
        uv = np.clip(np.rint(picked * 1000.0), -32768, 32767).astype(np.int64).tolist()
        at = _utc(time.time() - (time.monotonic() - received_at))
        fs_live, s0 = self.fs / LIVE_DECIMATE, first // LIVE_DECIMATE
        step = round(fs_live)  # a big chunk (a fast replay) goes out as 1 s messages
        return [
            LiveWave(
                self.device_id, LIVE_LEAD, fs_live, s0 + i, tuple(uv[i : i + step]), bpm, at=at
            ).to_json()
            for i in range(0, len(uv), step)
        ]
