"""Streaming QRS detection and heart rate on the preprocessed 500 Hz stream.

A multi-lead descendant of Pan and Tompkins (IEEE TBME 1985), in numpy:

1. each lead: Butterworth band-pass 5-15 Hz (order 2, causal), two-sample
   derivative, squared: the QRS slope energy ``e`` (mV^2 per sample^2);
2. across leads: a trimmed mean of ``e`` (the highest and lowest quarter of
   the leads dropped at every sample), so that one noisy, clipped or flat
   lead neither makes nor hides a beat;
3. moving-window integration over 150 ms: ``m``;
4. peaks of ``m`` that are the maximum within +-200 ms (the refractory
   period: at most 300 beats/min) are classified as QRS or noise against
   adaptive levels (SPKI, NPKI; threshold ``NPKI + 0.25 (SPKI - NPKI)``),
   with Pan-Tompkins' T-wave test (a peak within 360 ms of a beat with less
   than half its slope is a T wave) and search-back (no beat for 1.66 mean
   R-R: the largest noise peak above half the threshold is taken as a beat).

Guards of ours, for alarms and real records: a beat must stand above 2.5
times the noise floor (the median over 8 s of each 0.25 s block's 20th
percentile of ``m``) and above an absolute floor (a 0.05 mV QRS), so that a
flat line with noise is not counted as beats (no missed asystole); the
initial noise level is the median of ``m`` over the first 2 s (Pan-Tompkins'
mean is raised by an artifact there); and after 2 s without a beat the QRS
level SPKI decays (x0.8 per 0.25 s, never under 3 noise levels), so that
beats that came back smaller, or that an artifact hid, are found again.

**Chunk invariance.** Input is buffered and processed in fixed blocks of
``block`` samples counted from the stream start, so any chunking gives
exactly the same beats (bit for bit), only sooner or later. A beat is
reported once its peak of ``m`` has 200 ms of signal after it (about 0.3 s
after the R peak) or, from search-back, when the search-back fires.
:attr:`BeatDetector.horizon` is the sample up to which every beat has been
reported (a beat can still come from search-back up to 1.66 R-R later).

>>> import numpy as np
>>> fs, n = 500, 5000
>>> qrs = 1 - np.abs(np.arange(-20, 21)) / 20  # 1 mV, 80 ms
>>> x = np.zeros((1, n), np.float32)
>>> for r in range(250, n - 20, 400):  # every 0.8 s: 75 beats/min
...     x[0, r - 20 : r + 21] = qrs
>>> det = BeatDetector(n_leads=1)
>>> beats = det.push(x) + det.flush()
>>> [b.sample for b in beats][:3], round(det.heart_rate(n).bpm)
([247, 647, 1047], 75)
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge._filters import BlockIIR, butter_bandpass_sections
from edge._robust import median_last, percentile_last
from edge.dsp import DspConfig, Preprocessor, ratio
from edge.errors import RecordError, check_int, check_positive, invalid
from edge.records import read_signals

_Peak = tuple[int, float, float, int]  # peak of m: sample, value, max slope before, R peak
HR_METHOD = "median of the last 8 R-R intervals (beats of the last 16 s), updated every second"


@dataclass(frozen=True)
class BeatConfig:
    """Parameters of :class:`BeatDetector` (times in seconds)."""

    band_hz: tuple[float, float] = (5.0, 15.0)
    integration_s: float = 0.150
    refractory_s: float = 0.200
    t_wave_s: float = 0.360
    learn_s: float = 2.0
    block: int = 125  # samples per processing block (0.25 s at 500 Hz)
    noise_factor: float = 2.5
    min_qrs_mv: float = 0.05
    decay_after_s: float = 2.0
    decay: float = 0.8  # SPKI factor per block after decay_after_s without a beat
    hr_beats: int = 8
    hr_window_s: float = 16.0

    def __post_init__(self) -> None:
        check_int("block", self.block, min_value=1)
        check_positive("integration_s", self.integration_s)
        check_positive("refractory_s", self.refractory_s)


@dataclass(frozen=True)
class Beat:
    """One detected QRS: stream ``sample`` (500 Hz), R-R interval to the previous beat."""

    sample: int
    rr_samples: int | None
    searchback: bool = False


@dataclass(frozen=True)
class HeartRate:
    """Heart rate at a stream sample: ``bpm`` (None without enough beats), ``method``."""

    bpm: float | None
    n_intervals: int
    method: str = HR_METHOD


def _trimmed_mean(e: np.ndarray) -> np.ndarray:
    """(n_leads, n) -> (n,): mean of the middle half of the leads at each sample."""
    n = e.shape[0]
    cut = n // 4
    if cut == 0:
        return e.mean(axis=0)
    s = np.sort(e, axis=0)
    return s[cut : n - cut].mean(axis=0)


class BeatDetector:
    """Streaming multi-lead QRS detector: ``push(x) -> list[Beat]``; see the module doc.

    ``x``: (n_leads, n) float, the preprocessed signal in mV at ``fs`` (500 Hz).
    """

    def __init__(
        self, fs: float = 500.0, n_leads: int = 12, config: BeatConfig | None = None
    ) -> None:
        self.fs = float(check_positive("fs", fs))
        self.n_leads = check_int("n_leads", n_leads, min_value=1)
        self.config = config or BeatConfig()
        c = self.config
        lo, hi = c.band_hz
        if not 0 < lo < hi < self.fs / 2:
            raise invalid("band_hz", f"0 < low < high < {self.fs / 2:g}", c.band_hz)
        self._iir = BlockIIR(butter_bandpass_sections(2, (lo, hi), self.fs), block=c.block)
        self._w = max(1, round(c.integration_s * self.fs))
        self._r = max(1, round(c.refractory_s * self.fs))
        self._t_wave = round(c.t_wave_s * self.fs)
        self._learn = round(c.learn_s * self.fs)
        self._decay_after = round(c.decay_after_s * self.fs)
        self._noise_blocks = max(1, round(8.0 * self.fs / c.block))
        # the floor: m of a 0.05 mV QRS, scaled from a 1 mV one (energy goes as amplitude^2)
        self._floor = self._unit_qrs_level() * c.min_qrs_mv**2
        self.reset()

    # ------------------------------------------------------------------ api

    def reset(self) -> None:
        """Back to the start of a stream: no sample seen, no beat."""
        self._pending = np.zeros((self.n_leads, 0))
        self._n_in = 0  # samples received
        self._n_done = 0  # samples processed (whole blocks)
        self._state: np.ndarray | None = None
        self._prev_y = np.zeros((self.n_leads, 2))
        self._c_hist = np.zeros(self._w - 1)
        self._m = np.zeros(0)  # m for samples [_m_start, _n_done)
        self._m_start = 0
        self._c = np.zeros(0)  # c for the same samples
        self._next_peak = 0  # first sample not yet examined as a peak
        self._spki = self._npki = 0.0
        self._learning = True
        self._learn_peaks: list[_Peak] = []
        self._learn_max = 0.0
        self._learn_m: list[np.ndarray] = []
        self._last: int | None = None  # sample of the last beat's peak of m
        self._last_slope = 0.0
        self._rr: deque[int] = deque(maxlen=self.config.hr_beats)
        self._best_noise: _Peak | None = None
        self._noise_q: deque[float] = deque(maxlen=self._noise_blocks)
        self._beats: deque[int] = deque(maxlen=64)
        self.horizon = 0

    def push(self, x: np.ndarray) -> list[Beat]:
        """Feed (n_leads, n) samples; return the beats this completes (in time order)."""
        if not isinstance(x, np.ndarray) or x.ndim != 2 or x.shape[0] != self.n_leads:
            raise invalid("x", f"an array of shape ({self.n_leads}, n)", getattr(x, "shape", x))
        self._pending = np.concatenate([self._pending, x.astype(np.float64)], axis=1)
        self._n_in += x.shape[1]
        out: list[Beat] = []
        b = self.config.block
        while self._pending.shape[1] >= b:
            block, self._pending = self._pending[:, :b], self._pending[:, b:]
            out += self._process(block)
        return out

    def flush(self) -> list[Beat]:
        """End of stream: process what is buffered and decide the last peaks."""
        out: list[Beat] = []
        if self._pending.shape[1]:
            block, self._pending = self._pending, np.zeros((self.n_leads, 0))
            out += self._process(block)
        # peaks in the last 200 ms: decided on what is there
        out += self._examine(self._n_done, final=True)
        return out

    @property
    def n_samples(self) -> int:
        """Samples received so far."""
        return self._n_in

    @property
    def last_beat(self) -> int | None:
        """Stream sample of the last reported beat, or None."""
        return self._beats[-1] if self._beats else None

    def heart_rate(self, at_sample: int | None = None) -> HeartRate:
        """Median of the last ``hr_beats`` R-R intervals whose beats lie in the last 16 s.

        The median, not the mean: one missed or one extra beat does not move it.
        None with fewer than two such beats, or when the time since the last beat
        is longer than twice that interval and 1.5 s (the rate is falling and not
        yet known: asystole or a pause).
        """
        c = self.config
        now = self._n_in if at_sample is None else at_sample
        start = now - c.hr_window_s * self.fs
        beats = [s for s in self._beats if s >= start][-(c.hr_beats + 1) :]
        if len(beats) < 2:
            return HeartRate(None, 0)
        rr = float(median_last(np.diff(beats)))
        if now - beats[-1] > max(2 * rr, 1.5 * self.fs):
            return HeartRate(None, len(beats) - 1)
        return HeartRate(round(60.0 * self.fs / rr, 1), len(beats) - 1)

    # ------------------------------------------------------------- internals

    def _unit_qrs_level(self) -> float:
        """Peak of ``m`` for a 1 mV, 80 ms triangular QRS on every lead."""
        n = round(2 * self.fs)
        q = np.zeros(n)
        half = round(0.04 * self.fs)
        centre = n // 2
        q[centre - half : centre + half + 1] = 1 - np.abs(np.arange(-half, half + 1)) / half
        y, _ = self._iir.run(q[None, :], np.zeros((1, self._iir.n_states)))
        e = (y[0, 2:] - y[0, :-2]) ** 2
        m = np.convolve(e, np.ones(self._w) / self._w)
        return float(m.max())

    def _process(self, x: np.ndarray) -> list[Beat]:
        n = x.shape[1]
        if self._state is None:  # as if constant at the first value before the start
            self._state = self._iir.steady_state(x[:, 0])
        y, self._state = self._iir.run(x, self._state)
        yy = np.concatenate([self._prev_y, y], axis=1)
        self._prev_y = yy[:, -2:]
        e = (yy[:, 2:] - yy[:, :-2]) ** 2
        c = _trimmed_mean(e)
        cc = np.concatenate([self._c_hist, c])
        m = np.convolve(cc, np.ones(self._w) / self._w, mode="valid")
        self._c_hist = cc[-(self._w - 1) :] if self._w > 1 else np.zeros(0)
        self._m = np.concatenate([self._m, m])
        self._c = np.concatenate([self._c, c])
        self._n_done += n
        self._noise_q.append(float(percentile_last(m, 20)))
        if self._learning:
            self._learn_max = max(self._learn_max, float(m.max()))
            self._learn_m.append(m)
        out = self._examine(self._n_done - self._r, final=False)
        if not self._learning:
            since = self._learn if self._last is None else self._last
            if self._n_done - since > self._decay_after:  # never below 3 noise levels
                self._spki = max(self._spki * self.config.decay, 3.0 * self._npki)
        return out

    def _examine(self, until: int, final: bool) -> list[Beat]:
        """Classify the peaks of m at samples [_next_peak, until)."""
        out: list[Beat] = []
        r = self._r
        lo = max(self._next_peak, self._m_start)
        hi = min(until, self._n_done)
        if hi > lo:
            m, s0 = self._m, self._m_start
            pad = np.concatenate([np.full(r, -np.inf), m, np.full(r, -np.inf)])
            # window [n - r, n + r] in pad coordinates is [n - s0, n - s0 + 2r]
            idx = np.arange(lo, hi) - s0
            seg = pad[idx[0] : idx[-1] + 2 * r + 1]
            st = seg.strides[0]  # sliding_window_view(seg, 2r + 1) without its per-call checks
            win = np.lib.stride_tricks.as_strided(
                seg, (len(seg) - 2 * r, 2 * r + 1), (st, st), writeable=False
            )
            centre = win[:, r]
            left = win[:, :r].max(axis=1)
            right = win[:, r + 1 :].max(axis=1)
            is_peak = (centre > left) & (centre >= right) & (centre > 0)
            look = self._w + round(0.05 * self.fs)
            for k in np.flatnonzero(is_peak):
                n = lo + int(k)
                j = n - s0
                c = self._c[max(0, j - look) : j + 1]
                i = int(np.argmax(c))
                # the R peak: the steepest slope before the peak of m, less the filter's 38 ms
                rpk = max(0, n - (len(c) - 1 - i) - round(0.038 * self.fs))
                out += self._classify((n, float(centre[k]), float(c[i]), rpk))
            self._next_peak = hi
        if self._learning and (self._n_done >= self._learn or final):
            out += self._end_learning()
        horizon = self._n_done if final else max(0, self._n_done - r)
        if not self._learning:
            out += self._searchback(horizon)
        self.horizon = max(self.horizon, horizon)
        # keep m and c from where the next peak's windows start
        drop = self._next_peak - r - self._w - round(0.05 * self.fs) - 1 - self._m_start
        if drop > 0:
            self._m = self._m[drop:]
            self._c = self._c[drop:]
            self._m_start += drop
        return out

    def _noise_floor(self) -> float:
        level = float(median_last(np.asarray(self._noise_q))) if self._noise_q else 0.0
        return max(self.config.noise_factor * level, self._floor)

    def _thresholds(self) -> tuple[float, float]:
        floor = self._noise_floor()
        thr1 = self._npki + 0.25 * (self._spki - self._npki)
        return max(thr1, floor), max(0.5 * thr1, floor)

    def _classify(self, peak: _Peak) -> list[Beat]:
        if self._learning:
            self._learn_peaks.append(peak)
            return []
        n, v, slope, _ = peak
        out = self._searchback(n)
        thr1, _ = self._thresholds()
        if v > thr1:
            if (
                self._last is not None
                and n - self._last < self._t_wave
                and slope < 0.5 * self._last_slope
            ):
                self._noise(peak)  # a T wave
                return out
            self._spki = 0.125 * min(v, 3 * self._spki or v) + 0.875 * self._spki
            out.append(self._beat(peak, searchback=False))
        else:
            self._noise(peak)
        return out

    def _noise(self, peak: _Peak) -> None:
        self._npki = 0.125 * peak[1] + 0.875 * self._npki
        if self._best_noise is None or peak[1] > self._best_noise[1]:
            self._best_noise = peak

    def _searchback(self, now: int) -> list[Beat]:
        if self._last is None or len(self._rr) == 0 or self._best_noise is None:
            return []
        mean_rr = sum(self._rr) / len(self._rr)
        if now - self._last <= 1.66 * mean_rr:
            return []
        peak = self._best_noise
        n, v = peak[0], peak[1]
        _, thr2 = self._thresholds()
        if v <= thr2 or n <= self._last or n - self._last < self._r:
            return []
        self._spki = 0.25 * min(v, 3 * self._spki or v) + 0.75 * self._spki
        return [self._beat(peak, searchback=True)]

    def _beat(self, peak: _Peak, searchback: bool) -> Beat:
        n, _, slope, rpk = peak
        rr = None if self._last is None else n - self._last
        if rr is not None:
            self._rr.append(rr)
        self._last = n
        self._last_slope = slope
        self._best_noise = None
        prev = self._beats[-1] if self._beats else None
        sample = rpk if prev is None else max(rpk, prev + 1)
        self._beats.append(sample)
        return Beat(sample, None if prev is None else sample - prev, searchback)

    def _end_learning(self) -> list[Beat]:
        self._learning = False
        # the QRS level: a third of the largest peak of m, as Pan-Tompkins (an artifact
        # that makes it too high is undone by the decay)
        self._spki = self._learn_max / 3.0
        # the noise level: Pan-Tompkins takes half the mean of m; the median is not
        # raised by an artifact in the first seconds
        learned = np.concatenate(self._learn_m) if self._learn_m else np.zeros(1)
        self._npki = float(np.median(learned))
        self._learn_m = []
        out: list[Beat] = []
        peaks, self._learn_peaks = self._learn_peaks, []
        for peak in peaks:
            out += self._classify(peak)
        return out


def resampler_delay_s(fs_in: float, config: DspConfig | None = None) -> float:
    """Group delay of the preprocessing's resampler from ``fs_in`` to 500 Hz, in seconds.

    The polyphase anti-alias filter is linear-phase and causal: a feature at
    input time t appears at t + this delay in the 500 Hz stream (0 at 500 Hz).
    """
    config = config or DspConfig()
    up, down = ratio(fs_in, config.fs)
    if up == down == 1:
        return 0.0
    return config.resample_half_taps * max(up, down) / (fs_in * up)


def detect_record(
    signal: np.ndarray, fs: float, config: BeatConfig | None = None
) -> tuple[list[Beat], BeatDetector]:
    """Beats of a whole record (n_leads, n) mV at ``fs``: the same code as the stream.

    Preprocessed as the agent does (resample to 500 Hz, band-pass), fed in one
    call; samples are at 500 Hz, stream time.
    """
    x = Preprocessor(fs, n_leads=signal.shape[0]).push(signal)
    det = BeatDetector(n_leads=signal.shape[0], config=config)
    return det.push(x) + det.flush(), det


def refine_peaks(
    x: np.ndarray, samples: list[int], radius_s: float = 0.06, delay_s: float = 0.010
) -> list[int]:
    """Move each beat to the largest deflection of one lead ``x`` (n,) within +-``radius_s``.

    The R peak (or the S or QS trough where the QRS is negative on that lead),
    as a cardiologist marks it on that lead. ``x`` is the preprocessed 500 Hz
    lead (no baseline); ``delay_s`` is its band-pass's delay at QRS frequencies.
    """
    r, d = round(radius_s * 500.0), round(delay_s * 500.0)
    out: list[int] = []
    for s in samples:
        lo, hi = max(0, s + d - r), min(len(x), s + d + r + 1)
        k = lo + int(np.argmax(np.abs(x[lo:hi]))) - d if hi > lo else s
        k = max(0, k)
        if not out or k > out[-1]:
            out.append(k)
    return out


def record_beats(path: str | Path, lead: str | None = None, multi_lead: bool = False) -> dict:
    """R peaks of one lead of any WFDB record, as sample indices at the record's own rate.

    ``lead``: a signal name (any case); default II, else the record's first
    signal. ``multi_lead``: detect on every signal of the record (the agent's
    way), instead of on ``lead`` alone. Returns ``{"record", "fs", "lead",
    "leads_used", "n_samples", "r_peaks", "heart_rate_bpm", "method"}``.
    """
    header, signal = read_signals(path)
    names = [s.name for s in header.signals]
    lower = [n.strip().lower() for n in names]
    if lead is None:
        i = lower.index("ii") if "ii" in lower else 0
    elif lead.strip().lower() in lower:
        i = lower.index(lead.strip().lower())
    else:
        raise RecordError(header.name, f"no lead {lead!r} (has {', '.join(names)})")
    rows = list(range(len(names))) if multi_lead else [i]
    x = Preprocessor(header.fs, n_leads=len(rows)).push(signal[rows])
    det = BeatDetector(n_leads=len(rows))
    beats = refine_peaks(x[rows.index(i)], [b.sample for b in det.push(x) + det.flush()])
    shift = resampler_delay_s(header.fs)
    peaks = []
    for b in beats:
        k = round((b / det.fs - shift) * header.fs)
        if 0 <= k < header.n_samples and (not peaks or k > peaks[-1]):
            peaks.append(k)
    rr = np.diff(peaks) / header.fs
    bpm = round(60.0 / float(np.mean(rr)), 1) if len(rr) else None
    return {
        "record": header.name,
        "fs": header.fs,
        "lead": names[i],
        "leads_used": [names[r] for r in rows],
        "n_samples": header.n_samples,
        "r_peaks": peaks,
        "heart_rate_bpm": bpm,
        "method": "mean of all R-R intervals of the record",
    }


def format_beats(result: dict) -> str:
    """The readable form of :func:`record_beats`."""
    n = len(result["r_peaks"])
    hr = result["heart_rate_bpm"]
    seconds = result["n_samples"] / result["fs"]
    head = (
        f"{result['record']}: lead {result['lead']} at {result['fs']:g} Hz, {seconds:.1f} s: "
        f"{n} beat{'s' if n != 1 else ''}"
        + (f", mean heart rate {hr:g} bpm" if hr is not None else "")
    )
    if n == 0:
        head += " (no QRS found: too short, flat or no ECG signal)"
    lines = [head, "r_peaks (samples at the record's rate):"]
    peaks = [str(p) for p in result["r_peaks"]]
    for k in range(0, len(peaks), 12):
        lines.append("  " + " ".join(peaks[k : k + 12]))
    return "\n".join(lines)
