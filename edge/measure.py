"""ECG measurements from delineated beats: intervals, QTc, frontal axes, QRS amplitude.

Per beat (:func:`beat_measurements`) and per frame or record
(:func:`median_measurements`: the median over the beats of each measurement,
over the beats where it exists; absent when no beat has it, never 0):

- ``rr_ms`` (to the previous beat) and ``hr_bpm`` = 60000 / RR;
- ``p_ms`` (P offset - P onset), ``pr_ms`` (QRS onset - P onset),
  ``qrs_ms`` (QRS offset - QRS onset), ``qt_ms`` (T offset - QRS onset), from
  the global boundaries (edge.delineate);
- ``qtc_bazett_ms`` = QT / sqrt(RR in s), ``qtc_fridericia_ms`` = QT / cbrt(RR in s);
- ``axis_p_deg``, ``axis_qrs_deg``, ``axis_t_deg``: the frontal-plane axes
  from the net areas of the wave in leads I and aVF, on Einthoven's triangle:
  ``atan2(2 aVF / sqrt(3), I)``, in degrees (-90, 180];
- ``qrs_amplitude_mv``: per lead, the QRS peak to peak.

Intervals computed on the 500 Hz stream have a 2 ms resolution; a 100 Hz
record (PTB-XL) carries no more than 10 ms of timing, whatever the rate it
is brought to.

>>> qtc(400.0, 1000.0)
(400.0, 400.0)
>>> round(frontal_axis(1.0, 0.0)), round(frontal_axis(0.0, 1.0)), round(frontal_axis(-1.0, 0.0))
(0, 90, 180)
"""

from __future__ import annotations

import bisect
import math
from pathlib import Path

import numpy as np

from edge.delineate import BAND_BLOCK, BOUNDARIES, BeatWaves, Delineator, measurement_filter
from edge.dsp import Preprocessor
from edge.errors import RecordError
from edge.records import read_signals

SCALARS = (
    "rr_ms",
    "hr_bpm",
    "p_ms",
    "pr_ms",
    "qrs_ms",
    "qt_ms",
    "qtc_bazett_ms",
    "qtc_fridericia_ms",
    "axis_p_deg",
    "axis_qrs_deg",
    "axis_t_deg",
)


def qtc(qt_ms: float, rr_ms: float) -> tuple[float, float]:
    """(Bazett, Fridericia) corrected QT in ms from QT and RR in ms."""
    rr_s = rr_ms / 1000.0
    return qt_ms / math.sqrt(rr_s), qt_ms / rr_s ** (1.0 / 3.0)


def frontal_axis(lead_i: float, lead_avf: float) -> float:
    """Frontal-plane axis in degrees (-90, 180] from the net deflections in I and aVF."""
    return math.degrees(math.atan2(2.0 * lead_avf / math.sqrt(3.0), lead_i))


def _ms(a: int | None, b: int | None, fs: float) -> float | None:
    return None if a is None or b is None else (b - a) * 1000.0 / fs


def beat_measurements(
    beat: BeatWaves, fs: float = 500.0, lead_names: tuple[str, ...] | None = None
) -> dict:
    """The measurements of one beat (None where a wave or the previous beat is absent)."""
    g = beat.glob
    m: dict = {k: None for k in SCALARS}
    if beat.rr is not None and beat.rr > 0:
        m["rr_ms"] = beat.rr * 1000.0 / fs
        m["hr_bpm"] = 60000.0 / m["rr_ms"]
    m["p_ms"] = _ms(g.p_on, g.p_off, fs)
    m["pr_ms"] = _ms(g.p_on, g.qrs_on, fs)
    m["qrs_ms"] = _ms(g.qrs_on, g.qrs_off, fs)
    m["qt_ms"] = _ms(g.qrs_on, g.t_off, fs)
    if m["qt_ms"] is not None and m["rr_ms"] is not None:
        m["qtc_bazett_ms"], m["qtc_fridericia_ms"] = qtc(m["qt_ms"], m["rr_ms"])
    names = [n.lower() for n in (lead_names or ())]
    if "i" in names and "avf" in names:
        i, f = names.index("i"), names.index("avf")
        for wave in ("p", "qrs", "t"):
            areas = beat.areas.get(wave)
            if areas is None or areas[i] is None or areas[f] is None:
                continue
            if abs(areas[i]) + abs(areas[f]) > 0:
                m[f"axis_{wave}_deg"] = frontal_axis(areas[i], areas[f])
    m["qrs_amplitude_mv"] = list(beat.qrs_amplitude_mv)
    return m


def _median(values: list[float]) -> float:
    """np.median of a few finite numbers, the same float, without numpy's per-call cost."""
    v = sorted(values)
    h = len(v) // 2
    return float(v[h]) if len(v) % 2 else (v[h - 1] + v[h]) / 2.0


def _circular_median_deg(values: list[float]) -> float:
    """Median of angles: the median of the values unwrapped around their circular mean."""
    mean = math.degrees(
        math.atan2(*(sum(f(math.radians(v)) for v in values) for f in (math.sin, math.cos)))
    )
    d = [(v - mean + 180.0) % 360.0 - 180.0 for v in values]
    out = mean + _median(d)
    return (out + 180.0) % 360.0 - 180.0 if out <= -180.0 or out > 180.0 else out


def median_measurements(beats: list[dict]) -> dict:
    """Median of each measurement over the beats that have it (None if none has); ``n_beats``."""
    out: dict = {"n_beats": len(beats)}
    for k in SCALARS:
        v = [b[k] for b in beats if b.get(k) is not None]
        if not v:
            out[k] = None
        elif k.startswith("axis"):
            out[k] = round(_circular_median_deg(v), 1)
        else:
            out[k] = round(_median(v), 1)
    amps = [b["qrs_amplitude_mv"] for b in beats if b.get("qrs_amplitude_mv")]
    if amps:
        cols = list(zip(*amps))
        out["qrs_amplitude_mv"] = [
            None
            if not [a for a in c if a is not None]
            else round(_median([a for a in c if a is not None]), 3)
            for c in cols
        ]
    else:
        out["qrs_amplitude_mv"] = None
    return out


FEED = 4 * BAND_BLOCK  # band-pass once this many samples wait (0.5 s), whole blocks only
GROUP = 24  # beats delineated together by Measurer.push (and every ready one before a frame ends)
METHOD = "median over the beats; global onsets and offsets over the leads used (edge.delineate)"


class Measurer:
    """The agent's stage: delineates every beat of the stream and keeps its measurements.

    ``push(x, r_peaks)`` with the resampled 500 Hz chunk (before the classifier's
    band-pass: the measurer band-passes it for measurement, edge.delineate) and the
    R peaks the beat detector reported with it; :meth:`span` gives the ``measurements``
    object (ecg-edge/alert/2, frame events, the status heartbeat) of the beats
    whose R lies in [start, end): median over them, or None without a beat.
    A beat is measured at most ``delay_s`` (0.7 s of look-ahead, 0.5 s of filtering in
    blocks) after its R peak.
    """

    def __init__(
        self, leads: tuple[str, ...], start: int = 0, fs: float = 500.0, keep_s: float = 60.0
    ) -> None:
        self.leads = tuple(leads)
        self.fs = fs
        self.start = int(start)
        self._band = measurement_filter(fs, len(self.leads))
        self._delineator = Delineator(fs, len(self.leads))
        self._keep = int(keep_s * fs)
        self._beats: list[tuple[int, dict, tuple[int, ...]]] = []
        self._clear_pending()

    def _clear_pending(self) -> None:
        self._pending: list[np.ndarray] = []  # resampled samples not yet band-passed
        self._pending_n = 0
        self._pending_r: list[int] = []  # R peaks (segment samples) not yet given

    def restart(self, start: int) -> None:
        """A new stream segment from stream sample ``start`` (the filters restarted)."""
        self._feed(whole=False)  # the segment's last samples, then its beats ready there
        self._catch_up()  # (on the segment's own stream samples)
        self.start = int(start)
        while self._beats and self._beats[-1][0] >= self.start:  # kept in R order
            self._beats.pop()
        self._band.reset()
        self._delineator.reset()

    @property
    def delay_s(self) -> float:
        """A beat is measured at most this long after its R peak (look-ahead and one block)."""
        return self._delineator.delay_s + FEED / self.fs

    def reset(self) -> None:
        self._band.reset()
        self._delineator.reset()
        self._beats = []
        self._clear_pending()

    def push(self, x: np.ndarray, r_peaks=(), soon: bool = False, last: bool = False) -> int:
        """Feed a chunk of the resampled stream and its new R peaks (stream samples);
        return the beats measured.

        The measurement band-pass runs on whole blocks of ``BAND_BLOCK`` samples
        counted from the segment's start, once ``FEED`` samples wait: its output
        does not depend on the chunking, and one call filters several chunks.
        Beats are delineated ``GROUP`` at a time (or when their measurements are
        asked for: :meth:`span`, :meth:`recent`): the same waves, half the cost
        per beat. ``soon``: measurements will be asked for shortly (a frame is
        about to end; the agent says it once per frame): every whole block waiting
        is filtered and every ready beat delineated now, in one batch, so the
        frame's alert waits for none. ``last``: the segment ends with this chunk (a
        replayed record's end): its last samples too, for the frame flushed there.
        """
        self._pending.append(x)
        self._pending_n += x.shape[1]
        self._pending_r += [r - self.start for r in r_peaks]
        done = self._feed(whole=not last, eager=soon)
        d = self._delineator
        if d.n_ready >= (1 if soon or last else GROUP):
            done += d.collect()
        return self._keep_beats(done)

    def finish(self) -> int:
        """End of the stream: the pending samples filtered and every beat left measured."""
        done = self._feed(whole=False) + self._delineator.flush()
        return self._keep_beats(done)

    def _feed(self, whole: bool, eager: bool = False) -> list[BeatWaves]:
        """Band-pass the pending samples (only whole blocks when ``whole``; once ``FEED``
        wait, or any when ``eager``) into the delineator."""
        if whole and not eager and self._pending_n < FEED:
            return []
        n = self._pending_n // BAND_BLOCK * BAND_BLOCK if whole else self._pending_n
        if n == 0:
            return []
        buf = self._pending[0] if len(self._pending) == 1 else np.concatenate(self._pending, 1)
        rest = buf[:, n:]
        self._pending = [rest] if rest.shape[1] else []
        self._pending_n -= n
        r, self._pending_r = self._pending_r, []
        return self._delineator.push(self._band.push(buf[:, :n]), r, defer=True)

    def _catch_up(self) -> None:
        self._keep_beats(self._delineator.collect())

    def _keep_beats(self, done: list[BeatWaves]) -> int:
        for b in done:
            m = beat_measurements(b, self.fs, self.leads)
            self._beats.append((self.start + b.r, m, b.leads_used))
        if done:  # beats come in R order: the old ones are at the front
            oldest = self._beats[-1][0] - self._keep
            if self._beats[0][0] < oldest:
                k = bisect.bisect_left(self._beats, oldest, key=lambda b: b[0])
                del self._beats[:k]
        return len(done)

    def span(self, start: int, end: int, catch_up: bool = True) -> dict | None:
        """``measurements`` of the beats with R in [start, end) (stream samples), or None.

        ``catch_up``: the beats ready are delineated first; without, only those measured
        so far count (the agent: a frame's alert never waits for delineation).
        """
        if catch_up:
            self._catch_up()
        lo = bisect.bisect_left(self._beats, start, key=lambda b: b[0])
        hi = bisect.bisect_left(self._beats, end, key=lambda b: b[0])
        beats = self._beats[lo:hi]
        if not beats:
            return None
        m = median_measurements([b[1] for b in beats])
        amps = m.get("qrs_amplitude_mv")
        m["qrs_amplitude_mv"] = (
            None if amps is None else {n: a for n, a in zip(self.leads, amps) if a is not None}
        )
        used = sorted({i for b in beats for i in b[2]})
        m["leads_used"] = [self.leads[i] for i in used]
        m["start_sample"], m["end_sample"] = beats[0][0], beats[-1][0]
        m["method"] = METHOD
        return m

    def recent(self, seconds: float = 10.0, catch_up: bool = True) -> dict | None:
        """``measurements`` of the beats of the last ``seconds`` measured (``catch_up``:
        as :meth:`span`)."""
        if catch_up:
            self._catch_up()
        if not self._beats:
            return None
        last = self._beats[-1][0]
        return self.span(last - int(seconds * self.fs) + 1, last + 1, catch_up=False)


def delineate_record(signal: np.ndarray, fs: float) -> tuple[list[BeatWaves], float]:
    """Beats and waves of a whole record (n_leads, n) mV at ``fs``, the agent's way.

    Returns the beats (500 Hz stream samples) and the resampler's delay in
    seconds (to bring stream samples back to the record's own rate).
    """
    from edge.beats import BeatDetector, resampler_delay_s  # the beat detector (issue 10)

    n_leads = signal.shape[0]
    pre = Preprocessor(fs, n_leads=n_leads)
    raw = pre.resampler.push(signal)
    x = pre.bandpass.push(raw).astype(np.float32)  # as Preprocessor.push
    det = BeatDetector(n_leads=n_leads)
    r = [b.sample for b in det.push(x) + det.flush()]
    d = Delineator(n_leads=n_leads)
    waves = d.push(measurement_filter(500.0, n_leads).push(raw), r) + d.flush()
    return waves, resampler_delay_s(fs)


def record_measure(path: str | Path, lead: str | None = None) -> dict:
    """``ecg-edge measure``: the beats and median measurements of any WFDB record.

    ``{"record", "fs", "beats": [{"r", "p_on", "p_off", "qrs_on", "qrs_off",
    "t_peak", "t_off"}, ...], "median": {...}}``: sample indices at the
    record's own rate (None: absent), global onsets and offsets or those of
    ``lead`` (a signal name, any case) when given; ``median`` holds
    :func:`median_measurements`, the QRS amplitudes by lead name, the leads
    used and which boundaries the beats give.
    """
    header, signal = read_signals(path)
    names = tuple(s.name for s in header.signals)
    lower = [n.strip().lower() for n in names]
    row = None
    if lead is not None:
        if lead.strip().lower() not in lower:
            raise RecordError(header.name, f"no lead {lead!r} (has {', '.join(names)})")
        row = lower.index(lead.strip().lower())
    beats, shift = delineate_record(signal, header.fs)

    def back(k: int | None) -> int | None:
        if k is None:
            return None
        j = round((k / 500.0 - shift) * header.fs)
        return j if 0 <= j < header.n_samples else None

    rows, per_beat = [], []
    for b in beats:
        w = b.glob if row is None else b.leads[row]
        r = back(b.r)
        if r is None:
            continue
        row_w = {k: back(getattr(w, k)) for k in BOUNDARIES}
        for on, off in (("p_on", "p_off"), ("qrs_on", "qrs_off")):
            if row_w[on] is None or row_w[off] is None:  # a wave cut by the record's edge
                row_w[on] = row_w[off] = None
        rows.append({"r": r, **row_w})
        per_beat.append(beat_measurements(b, 500.0, names))
    used = sorted({i for b in beats for i in b.leads_used})
    median = median_measurements(per_beat)
    amps = median.get("qrs_amplitude_mv")
    median["qrs_amplitude_mv"] = (
        None if amps is None else {n: a for n, a in zip(names, amps) if a is not None}
    )
    median["leads_used"] = [names[i] for i in used]
    median["boundaries"] = "global" if row is None else names[row]
    return {"record": header.name, "fs": header.fs, "beats": rows, "median": median}


def format_measure(result: dict) -> str:
    """The readable form of :func:`record_measure`: a table of the median measurements."""
    m = result["median"]
    n = m["n_beats"]
    where = "global (all leads)" if m["boundaries"] == "global" else f"lead {m['boundaries']}"
    lines = [
        f"{result['record']}: {result['fs']:g} Hz, {n} beat{'s' if n != 1 else ''}, "
        f"boundaries {where}; median over the beats"
    ]
    if n == 0:
        lines.append("  no beat found (too short, flat or no ECG signal)")
        return "\n".join(lines)
    units = {"bpm": "/min", "deg": "°", "ms": "ms"}
    for k in SCALARS:
        v = m[k]
        unit = units[k.rsplit("_", 1)[1]]
        label = k.rsplit("_", 1)[0].replace("_", " ")
        lines.append(f"  {label:16s} {'absent' if v is None else f'{v:g} {unit}'}")
    if m.get("qrs_amplitude_mv"):
        amps = ", ".join(f"{k} {a:.2f}" for k, a in m["qrs_amplitude_mv"].items())
        lines.append(f"  QRS amplitude (mV, peak to peak): {amps}")
    lines.append(f"  leads used: {', '.join(m['leads_used']) or 'none'}")
    if result["fs"] < 250:
        lines.append(
            f"  (a {result['fs']:g} Hz record: intervals resolved to {1000 / result['fs']:g} ms)"
        )
    return "\n".join(lines)
