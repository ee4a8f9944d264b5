"""Streaming 12-lead delineation: P, QRS and T onsets and offsets per lead and globally.

Input: the 500 Hz stream in mV band-passed for measurement (:func:`measurement_filter`:
0.25-45 Hz, second order, on the resampled stream before the classifier's 0.5-45 Hz
third-order band-pass) and the R peaks of the beat detector (``edge.beats``, stream
sample indices). The classifier's band-pass distorts slow waves: after a T wave its
0.5 Hz third-order high-pass swings the signal past the baseline, and the delineator
took that swing for the T (or its end); measured on LUDB's 200 records, the gentler
band brings the SD of the PR and QT differences from 31 and 50 ms to 23 and 42 ms at
the same QRS (``benchmarks/delineation.py``; 40 ms with the T end the leads' median). A beat
at R is measured once the stream has reached ``R + lookahead_s`` (0.7 s: the
latest a T wave ends at a rate of 40/min), from the window
``[R - lookback_s, R + lookahead_s)`` alone and the previous R peak, so any
chunking of the stream (and of the R peaks) gives the same waves.

Per lead, in the window (numpy only):

- **QRS**: the slope ``|dx/dt|`` of the lead (4 ms smoothing); the QRS is the
  run of samples around R where the slope stays above ``qrs_core`` of its
  maximum (gaps up to 40 ms bridged, for notched and wide complexes); onset
  and offset are where the slope, walking out of that run, falls below
  ``qrs_edge`` of its maximum above the window's slope floor.
- **T**: on the lead low-passed to about 12 Hz (40 ms boxcar) less its PR
  level, the largest deflection between QRS offset + 60 ms and
  ``R + 0.15 s + 0.55 RR`` (at most ``lookahead_s``); a later opposite lobe
  of at least 40 % makes the wave biphasic and its end the end of the T. The
  end: the trapezium-area method (Vazquez-Seisdedos et al., BioMed Eng OnLine
  2011) from the steepest point after the last lobe.
- **P**: the largest deflection between QRS onset - 320 ms (or half-way from
  the previous R) and QRS onset - 16 ms, onset and offset by the same
  trapezium method on either side.

A wave is **absent** (None, never 0) when its deflection is below
``min_p_mv`` / ``min_t_mv`` or below 3 times the window's high-frequency
noise. **Globally** (IEC 60601-2-25 and CSE: the earliest onset and latest
offset over the simultaneous leads): the QRS from the spatial velocity (the
root sum of squares of the usable leads' slopes), P and T onsets/offsets as
quantiles over the leads where the wave was found (P: the ``global_q``
quantile of the onsets and ``1 - global_q`` of the offsets; T: the ``1 - t_q``
quantile of the offsets), so that one stray lead does not move them, P only when at least
``min_p_leads`` leads agree on its peak within 40 ms (in atrial fibrillation
the f waves do not), T only when ``min_t_leads`` leads have one. A lead is
*usable* when it is neither flat (< 0.02 mV peak to peak in the window) nor
saturated (> 15 mV): the global measurement uses the usable leads and says
which (:attr:`BeatWaves.leads_used`).

Constant offsets per boundary (``bias_ms``), measured against LUDB's manual
annotations on LU0001-LU0100 only, correct the causal band-pass's phase.

>>> import numpy as np
>>> fs, n = 500, 5000
>>> t = np.arange(n) / fs
>>> x = np.zeros((1, n))
>>> for r in range(500, n - 400, 400):  # QRS 80 ms, T 180 ms, every 0.8 s
...     x[0, r - 20 : r + 21] = 1 - np.abs(np.arange(-20, 21)) / 20
...     x[0, r + 100 : r + 190] += 0.3 * np.sin(np.pi * np.arange(90) / 90)
>>> d = Delineator(n_leads=1)
>>> beats = d.push(x, [500, 900, 1300]) + d.flush()
>>> b = beats[1].glob
>>> b.p_on is None, 60 <= (b.qrs_off - b.qrs_on) / 0.5 <= 120, b.t_off > b.t_peak > b.qrs_off
(True, True, True)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edge._robust import median_last
from edge.dsp import BandPass
from edge.errors import check_int, check_positive, invalid

BOUNDARIES = ("p_on", "p_off", "qrs_on", "qrs_off", "t_peak", "t_off")
BAND_HZ = (0.25, 45.0)  # the measurement band (module docstring)
BAND_ORDER = 2
BAND_BLOCK = 64  # its block IIR's block: fed many blocks at once (edge.measure), the cheapest
_BATCH = 32  # beats measured at once, at most


@dataclass(frozen=True)
class DelineateConfig:
    """Parameters of :class:`Delineator` (times in seconds, amplitudes in mV)."""

    lookback_s: float = 0.5
    lookahead_s: float = 0.7
    keep_s: float = 6.0  # how long after R its R peak may still arrive (search-back)
    qrs_core: float = 0.3
    qrs_edge: float = 0.03
    qrs_edge_lead: float = 0.10
    min_p_mv: float = 0.03
    min_t_mv: float = 0.05
    min_p_leads: int = 4
    p_agree_s: float = 0.040
    p_prominence: float = 0.0  # the P peak at least this times the rest of its window
    qrs_from_leads: bool = False  # global QRS: quantiles over the leads, not spatial velocity
    min_t_leads: int = 2
    global_q: float = 0.25  # P onsets: this quantile over the leads; P offsets: 1 - it
    t_q: float = 0.5  # T offsets: the 1 - t_q quantile over the leads (0.5: their median)
    t_ref_s: float = 0.060  # trapezium reach after the steepest point of the T
    p_ref_s: float = 0.060
    biphasic_s: float = 0.0  # a T's second lobe peaks within this of the first
    biphasic_ratio: float = 0.5
    # ms added to each boundary (measured on LU0001-LU0100, see benchmarks/delineation.py)
    bias_ms: dict = field(
        default_factory=lambda: {
            "p_on": -13.0,
            "p_off": -9.0,
            "qrs_on": -17.0,
            "qrs_off": 3.0,
            "t_peak": 0.0,
            "t_off": 29.0,
        }
    )

    def __post_init__(self) -> None:
        check_positive("lookback_s", self.lookback_s)
        check_positive("lookahead_s", self.lookahead_s)
        if not 0 <= self.global_q <= 0.5:
            raise invalid("global_q", "a quantile in [0, 0.5]", self.global_q)


@dataclass(frozen=True)
class Waves:
    """Boundaries of one beat on one lead (or globally): stream samples, None = absent."""

    p_on: int | None = None
    p_off: int | None = None
    qrs_on: int | None = None
    qrs_off: int | None = None
    t_peak: int | None = None
    t_off: int | None = None

    def to_json(self) -> dict:
        return {k: getattr(self, k) for k in BOUNDARIES}


@dataclass(frozen=True)
class BeatWaves:
    """One delineated beat: R peak, previous R-R, global and per-lead waves.

    ``areas``: per lead, the net area (mV s) of P, QRS and T between the global
    boundaries, baseline removed (None where the global wave is absent): the
    frontal axes come from them. ``qrs_amplitude_mv``: per lead, the QRS peak
    to peak. ``leads_used``: the indices of the usable leads.
    """

    r: int
    rr: int | None
    glob: Waves
    leads: tuple[Waves, ...]
    leads_used: tuple[int, ...]
    areas: dict
    qrs_amplitude_mv: tuple[float | None, ...]


def measurement_filter(fs: float = 500.0, n_leads: int = 12) -> BandPass:
    """The causal band-pass that makes the delineator's input from the resampled stream."""
    return BandPass(fs, BAND_HZ, BAND_ORDER, n_leads, BAND_BLOCK)


def _box(x: np.ndarray, w: int) -> np.ndarray:
    """Centred moving average of width ``w`` along the last axis (same length, edges held).

    The running sum of ``[0, x[0] (w // 2 times), x, x[-1] (w - 1 - w // 2 times)]``
    in one buffer, differenced ``w`` apart.
    """
    if w <= 1:
        return x
    n, h = x.shape[-1], w // 2
    c = np.empty((*x.shape[:-1], n + w))
    c[..., 0] = 0.0
    c[..., 1 : 1 + h] = x[..., :1]
    c[..., 1 + h : 1 + h + n] = x
    c[..., 1 + h + n :] = x[..., -1:]
    np.cumsum(c, axis=-1, out=c)
    out = c[..., w:] - c[..., :-w]
    out /= w
    return out


def _slope(x: np.ndarray) -> np.ndarray:
    """``np.gradient(x, axis=-1)`` (unit spacing) without its per-call overhead: the same floats."""
    g = np.empty_like(x)
    np.subtract(x[..., 2:], x[..., :-2], out=g[..., 1:-1])
    g[..., 1:-1] /= 2.0
    g[..., 0] = x[..., 1] - x[..., 0]
    g[..., -1] = x[..., -1] - x[..., -2]
    return g


def _gather(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``x[k, idx[k, j]]`` for every row ``k`` (indices clipped into range: mask them after)."""
    return np.take_along_axis(x, np.clip(idx, 0, x.shape[1] - 1), axis=1)


def _trapezium(x: np.ndarray, m: np.ndarray, r: np.ndarray, reach: int) -> np.ndarray:
    """Wave boundaries between the steepest points ``m`` and references ``r``, one per row.

    Maximises the area ``0.5 |x[m] - x[i]| |2r - i - m|`` over ``i`` between ``m``
    and ``r`` (either side, at most ``reach`` samples apart); the first maximum wins.
    """
    rows = np.arange(len(m))
    before = r < m  # an onset: i runs from r up to m
    i = np.where(before, m - reach, m)[:, None] + np.arange(reach + 1)
    valid = np.where(before[:, None], i >= r[:, None], i <= r[:, None])
    a = np.abs(x[rows, m][:, None] - _gather(x, i)) * np.abs(2 * r[:, None] - i - m[:, None])
    return i[rows, np.argmax(np.where(valid, a, -1.0), axis=1)]


def _first_extreme(v: np.ndarray, lo: np.ndarray, hi: np.ndarray, width: int, top: bool):
    """Per row, the first index of the largest (``top``) or smallest ``v`` in [lo, hi).

    ``hi - lo`` is at most ``width``.
    """
    i = lo[:, None] + np.arange(width)
    valid = i < hi[:, None]
    g = np.where(valid, _gather(v, i), -np.inf if top else np.inf)
    k = np.argmax(g, axis=1) if top else np.argmin(g, axis=1)
    return i[np.arange(len(lo)), k]


def _p10(v: np.ndarray) -> np.ndarray | float:
    """10th percentile along the last axis (nearest rank below; np.partition, fast)."""
    k = (v.shape[-1] - 1) // 10
    out = np.partition(v, k, axis=-1)[..., k]
    return float(out) if np.ndim(out) == 0 else out


def _q(values: list[int], q: float) -> int:
    """The ``q`` quantile of sample indices (an observed one: nearest rank)."""
    v = sorted(values)  # np.quantile(..., method="nearest") without its per-call cost
    return int(v[round(q * (len(v) - 1))])  # both round half to even


def _wave_peak(y: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the largest local extremum of ``y`` in [lo, hi) (not a window edge).

    Returns (indices, found): rows without one have ``found`` False.
    """
    u0 = max(0, int(lo.min())) if len(lo) else 0  # the span of every row's window
    u1 = min(y.shape[1], int(hi.max())) if len(hi) else 0
    if u1 - u0 < 3:
        return np.zeros(len(y), dtype=int), np.zeros(len(y), dtype=bool)
    a = np.abs(y[:, u0:u1])
    mid = a[:, 1:-1]
    j = np.arange(u0 + 1, u1 - 1)
    inner = (mid >= a[:, :-2]) & (mid >= a[:, 2:]) & (mid > 0)
    inner &= (j > lo[:, None]) & (j < hi[:, None] - 1)
    pos = u0 + 1 + np.argmax(np.where(inner, mid, -1.0), axis=1)
    return pos, inner.any(axis=1)


class Delineator:
    """Streaming delineator: ``push(x, r_peaks) -> list[BeatWaves]``; see the module doc.

    ``x``: (n_leads, n) float, the preprocessed stream in mV at ``fs`` (500 Hz);
    ``r_peaks``: stream samples of R peaks that the beat detector reported
    with this chunk (increasing; they may come up to ``keep_s`` late).
    """

    def __init__(
        self, fs: float = 500.0, n_leads: int = 12, config: DelineateConfig | None = None
    ) -> None:
        self.fs = float(check_positive("fs", fs))
        self.n_leads = check_int("n_leads", n_leads, min_value=1)
        self.config = config or DelineateConfig()
        c = self.config
        self._sc: dict[float, int] = {}  # seconds -> samples, memoised
        s = self._s
        self._lb, self._la = s(c.lookback_s), s(c.lookahead_s)
        self._keep = self._lb + self._la + s(c.keep_s)
        self._bias = {k: c.bias_ms.get(k, 0.0) * self.fs / 1000.0 for k in BOUNDARIES}
        self.reset()

    def _s(self, seconds: float) -> int:
        v = self._sc.get(seconds)
        if v is None:
            self._sc[seconds] = v = round(seconds * self.fs)
        return v

    @property
    def delay_s(self) -> float:
        """The look-ahead: a beat is measured this long after its R peak (or later)."""
        return self._la / self.fs

    def reset(self) -> None:
        """Back to the start of a stream."""
        self._store = np.zeros((self.n_leads, 0))  # room to append without copying
        self._off = self._len = 0  # the buffered signal: _store[:, _off : _off + _len]
        self._start = 0  # stream sample of the first buffered one
        self._n = 0  # samples received
        self._queue: list[int] = []  # R peaks waiting for their look-ahead
        self._ready: list[tuple[int, int | None]] = []  # (R, previous R) to measure
        self._prev_r: int | None = None

    def push(self, x: np.ndarray, r_peaks=(), defer: bool = False) -> list[BeatWaves]:
        """Feed (n_leads, n) samples and the R peaks found so far; return the beats now measured.

        ``defer``: keep beats that are ready for :meth:`collect` (the signal they need
        stays buffered) and measure them many at a time, which costs less per beat;
        the waves are the same. At most ``_BATCH`` wait: then they are measured here.
        """
        if not isinstance(x, np.ndarray) or x.ndim != 2 or x.shape[0] != self.n_leads:
            raise invalid("x", f"an array of shape ({self.n_leads}, n)", getattr(x, "shape", x))
        m = x.shape[1]
        if self._off + self._len + m > self._store.shape[1]:  # compact, grow if need be
            store = np.empty((self.n_leads, max(2 * (self._len + m), 4096)))
            store[:, : self._len] = self._buf
            self._store, self._off = store, 0
        self._store[:, self._off + self._len : self._off + self._len + m] = x
        self._len += m
        self._n += x.shape[1]
        for r in r_peaks:
            r = int(r)
            last = self._queue[-1] if self._queue else self._prev_r
            if last is not None and r <= last:
                raise invalid("r_peaks", "increasing stream samples", r)
            self._queue.append(r)
        self._drain(final=False)
        out = self.collect() if not defer or len(self._ready) >= _BATCH else []
        drop = self._n - self._keep - self._start
        if self._ready:  # the windows of the beats waiting to be measured stay
            drop = min(drop, max(0, self._ready[0][0] - self._lb) - self._start)
        if drop > 0:
            self._off += drop
            self._len -= drop
            self._start += drop
        return out

    def flush(self) -> list[BeatWaves]:
        """End of stream: measure the beats left on the signal there is."""
        self._drain(final=True)
        return self.collect()

    @property
    def n_ready(self) -> int:
        """Beats ready to be measured, waiting for :meth:`collect` (``push(defer=True)``)."""
        return len(self._ready)

    @property
    def _buf(self) -> np.ndarray:
        return self._store[:, self._off : self._off + self._len]

    def _drain(self, final: bool) -> None:
        """Move the R peaks whose look-ahead has passed (all, at the end) to the ready ones."""
        while self._queue and (final or self._queue[0] + self._la <= self._n):
            r = self._queue.pop(0)
            if max(0, r - self._lb) >= self._start:  # its window is still buffered
                self._ready.append((r, self._prev_r))
            self._prev_r = r

    def collect(self) -> list[BeatWaves]:
        """Measure the beats that are ready (deferred ones too), in batches; return them."""
        out: list[BeatWaves] = []
        batch: list[tuple[int, int | None]] = []
        for r, prev in self._ready:
            full = r - self._lb >= 0 and r + self._la <= self._n  # the usual window
            if not full or len(batch) == _BATCH:
                if batch:
                    out += self._measure(batch)
                batch = []
            if full:
                batch.append((r, prev))
            else:  # cut by the stream's start or end: on its own
                out += self._measure([(r, prev)])
        if batch:
            out += self._measure(batch)
        self._ready = []
        return out

    # ------------------------------------------------------------ beats

    def _measure(self, todo: list[tuple[int, int | None]]) -> list[BeatWaves]:
        """Delineate beats (R, previous R) whose windows share one layout, all at once.

        Each step works on rows (a beat, or one usable lead of a beat) on their
        own, so a beat's waves do not depend on the other beats of the batch.
        """
        fs, c = self.fs, self.config
        s = self._s
        r0 = todo[0][0]
        a0 = max(0, r0 - self._lb)
        n, rc = min(self._n, r0 + self._la) - a0, r0 - a0  # window length, R in it
        none = Waves()
        rrs = [None if prev is None else r - prev for r, prev in todo]
        if n < s(0.2) or rc < s(0.1):
            return [self._empty(r, rr, none) for (r, _), rr in zip(todo, rrs)]
        starts = [r - rc for r, _ in todo]  # window starts, stream samples
        buf = self._buf
        w = np.stack([buf[:, a - self._start : a - self._start + n] for a in starts])
        p2p = np.ptp(w, axis=2)
        ok = (p2p >= 0.02) & (p2p <= 15.0) & np.isfinite(w).all(axis=2)  # (beats, leads)
        xs = _box(w, s(0.004))
        d = np.abs(_slope(xs)) * fs  # mV/s
        xl = _box(w, s(0.040))
        dxl = _slope(xl)
        noise = 1.4826 * median_last(np.abs(xs - xl))  # robust: not the QRS
        # ---- global QRS from the spatial velocity of the usable leads
        v = np.sqrt((np.where(ok[:, :, None], d, 0.0) ** 2).sum(axis=1))
        q_on, q_off, found = self._qrs(v, rc, c.qrs_edge, _p10(v))
        found &= ok.any(axis=1)
        # ---- per beat: where its P and T are looked for
        lo_p, hi_p, t_lo, t_hi, t_end = (np.zeros(len(todo), dtype=int) for _ in range(5))
        for k, rr in enumerate(rrs):
            lo = int(q_on[k]) - s(0.320)
            if rr is not None:
                lo = max(lo, rc - rr // 2)
            lo_p[k], hi_p[k], t_lo[k] = max(0, lo), q_on[k] - s(0.016), q_off[k] + s(0.060)
            # the T peak: before R + 0.1 s + 0.45 sqrt(RR) (QT prolonged by 25 % on Bazett's
            # curve) and before the next P can start (0.75 RR); its end: before R + 0.9 RR
            rr_s = rr / fs if rr is not None else 1.0
            t_hi[k] = min(n, rc + s(min(0.1 + 0.45 * np.sqrt(rr_s), 0.75 * rr_s)))
            t_end[k] = min(n, rc + self._la, rc + s(0.9 * rr_s))
        # ---- per lead: the usable leads of the beats found, one row each
        bi, li = np.nonzero(ok & found[:, None])
        rows = np.arange(len(bi))
        l_on, l_off, l_ok = self._qrs(d[bi, li], rc, c.qrs_edge_lead, _p10(d)[bi, li])
        base = np.zeros(ok.shape)
        base[bi, li] = self._baseline(xl[bi, li], np.where(l_ok, l_on, q_on[bi]))
        y = xl[bi, li] - base[bi, li][:, None]
        floor = 3.0 * noise[bi, li]
        amp = np.abs(y)
        dy = dxl[bi, li]
        pp, has_p = _wave_peak(y, lo_p[bi], hi_p[bi])
        has_p &= amp[rows, pp] >= np.maximum(c.min_p_mv, floor)
        if c.p_prominence > 0 and has_p.any():  # a P stands out of its window; f waves do not
            j = np.arange(n)
            near = (j >= pp[:, None] - s(0.060)) & (j < pp[:, None] + s(0.060))
            inside = (j >= lo_p[bi, None]) & (j < hi_p[bi, None]) & ~near
            rest = np.where(inside, amp, 0.0).max(axis=1)
            has_p &= ~(rest * c.p_prominence > amp[rows, pp])
        p_on, p_off, p_ok = self._sides(
            y, dy, pp, lo_p[bi], hi_p[bi] + s(0.016), s(0.080), s(c.p_ref_s)
        )
        has_p &= p_ok
        tp, has_t = _wave_peak(y, t_lo[bi], t_hi[bi])
        has_t &= amp[rows, tp] >= np.maximum(c.min_t_mv, floor)
        last = tp.copy()
        if c.biphasic_s > 0:  # a later opposite lobe makes the T biphasic
            for k in np.flatnonzero(has_t):
                lo, hi = tp[k] + s(0.040), min(t_end[bi[k]], tp[k] + s(c.biphasic_s))
                later, got = _wave_peak(y[k : k + 1], np.array([lo]), np.array([hi]))
                m = later[0]
                if (
                    got[0]
                    and y[k, m] * y[k, tp[k]] < 0
                    and amp[k, m] >= c.biphasic_ratio * amp[k, tp[k]]
                ):
                    last[k] = m
        t_off = self._end(y, dy, last, t_end[bi], s(c.t_ref_s))
        # ---- per row, its waves (stream samples); per beat, the global ones
        at = np.asarray(starts)[bi]
        bounds = []
        for kind, k, has in (
            ("p_on", p_on, has_p), ("p_off", p_off, has_p), ("qrs_on", l_on, l_ok),
            ("qrs_off", l_off, l_ok), ("t_peak", tp, has_t), ("t_off", t_off, has_t),
        ):  # fmt: skip
            v = np.rint(at + k + self._bias[kind]).astype(int).tolist()  # as round(): half to even
            bounds.append([x if h else None for x, h in zip(v, has.tolist())])
        lead_waves = [Waves(*b) for b in zip(*bounds)]
        has_pl, has_tl = has_p.tolist(), has_t.tolist()
        peaks_p = [
            (a, b, c) if h else None
            for a, b, c, h in zip(pp.tolist(), p_on.tolist(), p_off.tolist(), has_pl)
        ]
        t_offs = [t if h else None for t, h in zip(t_off.tolist(), has_tl)]
        out = []
        first = np.searchsorted(bi, np.arange(len(todo) + 1)).tolist()
        for k, ((r, _), rr) in enumerate(zip(todo, rrs)):
            if not found[k]:
                out.append(self._empty(r, rr, none))
                continue
            part = slice(first[k], first[k + 1])
            out.append(
                self._assemble(
                    r, rr, starts[k], w[k], y[part], base[k], li[part].tolist(), lead_waves[part],
                    [p for p in peaks_p[part] if p is not None],
                    [t for t in t_offs[part] if t is not None],
                    int(q_on[k]), int(q_off[k]), int(t_lo[k]), int(t_hi[k]),
                )
            )  # fmt: skip
        return out

    def _assemble(
        self, r, rr, a, w, y, base, used, lead_waves, peaks_p, t_offs, q_on, q_off, t_lo, t_hi
    ) -> BeatWaves:
        """One beat from its leads' waves: global P, QRS and T, areas and amplitudes.

        ``a``: the window's start (stream sample); ``w``: its (leads, n) signal; ``y``
        and ``lead_waves``: the rows of the ``used`` leads; boundaries are window samples.
        """
        c, s, fs = self.config, self._s, self.fs
        n_leads = w.shape[0]
        leads = [Waves()] * n_leads
        for i, lw in zip(used, lead_waves):
            leads[i] = lw
        use = set(used)
        need_p, need_t = min(c.min_p_leads, len(used)), min(c.min_t_leads, len(used))
        if c.qrs_from_leads:
            ons = [lw.qrs_on - a for lw in leads if lw.qrs_on is not None]
            offs = [lw.qrs_off - a for lw in leads if lw.qrs_off is not None]
            if len(ons) >= need_t:
                q_on = round(_q(ons, c.global_q) - self._bias["qrs_on"])
                q_off = round(_q(offs, 1 - c.global_q) - self._bias["qrs_off"])
        g_p_on = g_p_off = None
        if len(peaks_p) >= need_p:
            peaks = sorted(p[0] for p in peaks_p)
            h = len(peaks) // 2
            centre = peaks[h] if len(peaks) % 2 else (peaks[h - 1] + peaks[h]) / 2.0
            agree = [p for p in peaks_p if abs(p[0] - centre) <= s(c.p_agree_s)]
            if len(agree) >= need_p:
                g_p_on = _q([p[1] for p in agree], c.global_q)
                g_p_off = _q([p[2] for p in agree], 1 - c.global_q)
        g_t_peak = g_t_off = None
        if len(t_offs) >= need_t:
            g_t_off = _q(t_offs, 1 - c.t_q)
            mag = np.sqrt((y[:, t_lo:t_hi] ** 2).sum(axis=0))
            g_t_peak = min(t_lo + int(np.argmax(mag)), g_t_off - 1)
        ab = self._abs
        g_qrs_on = ab(a, "qrs_on", q_on)
        g_p_end = ab(a, "p_off", g_p_off)
        glob = Waves(
            ab(a, "p_on", g_p_on),
            None if g_p_end is None else min(g_p_end, g_qrs_on),  # the P ends by the QRS
            g_qrs_on,
            ab(a, "qrs_off", q_off),
            ab(a, "t_peak", g_t_peak),
            ab(a, "t_off", g_t_off),
        )
        areas: dict = {}
        for name, lo, hi in (("p", g_p_on, g_p_off), ("qrs", q_on, q_off), ("t", q_off, g_t_off)):
            if lo is None or hi is None or hi <= lo:
                areas[name] = None
                continue
            net = (w[:, lo : hi + 1] - base[:, None]).sum(axis=1) / fs
            areas[name] = tuple(float(net[i]) if i in use else None for i in range(n_leads))
        p2p_qrs = np.ptp(w[:, q_on : q_off + 1], axis=1)
        amp = tuple(float(p2p_qrs[i]) if i in use else None for i in range(n_leads))
        return BeatWaves(r, rr, glob, tuple(leads), tuple(used), areas, amp)

    def _empty(self, r: int, rr: int | None, none: Waves) -> BeatWaves:
        return BeatWaves(r, rr, none, (none,) * self.n_leads, (), {}, (None,) * self.n_leads)

    def _abs(self, a: int, kind: str, k: int | None) -> int | None:
        return None if k is None else round(a + k + self._bias[kind])

    def _baseline(self, xl: np.ndarray, lead_on: np.ndarray) -> np.ndarray:
        """Per row, the mean of ``xl`` from 30 ms to 8 ms before the lead's QRS onset."""
        s = self._s
        lo, hi = lead_on - s(0.030), lead_on - s(0.008)
        full = lo >= 0  # the whole stretch inside the window: one gathered mean
        out = np.empty(len(lead_on))
        if full.any():
            i = lo[full, None] + np.arange(s(0.030) - s(0.008))
            out[full] = np.mean(np.take_along_axis(xl[full], i, axis=1), axis=1)
        for k in np.flatnonzero(~full):  # cut by the window's start
            out[k] = float(np.mean(xl[k, max(0, lo[k]) : max(1, hi[k])]))
        return out

    def _qrs(
        self, v: np.ndarray, rc: int, edge: float, floor: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """QRS onsets and offsets (window samples) on slope signals ``v`` (rows) around ``rc``.

        ``floor``: each row's 10th percentile over the window (its noise floor).
        Returns (onsets, offsets, found). The QRS core is the run of samples
        above ``qrs_core`` of the peak slope that holds the peak, gaps of up to
        40 ms bridged, within R - 200 ms .. R + 250 ms; onset and offset are the
        nearest samples outside it below ``edge`` of the peak.
        """
        s = self._s
        k, n = v.shape
        lo, hi = max(0, rc - s(0.080)), min(n, rc + s(0.080))
        if hi <= lo:
            z = np.zeros(k, dtype=int)
            return z, z, np.zeros(k, dtype=bool)
        rows = np.arange(k)
        pk = lo + np.argmax(v[:, lo:hi], axis=1)
        vmax = v[rows, pk]
        found = ~((vmax <= 2 * floor) | (vmax <= 0))
        gap = s(0.040)
        lim_lo, lim_hi = max(0, rc - s(0.200)), min(n - 1, rc + s(0.250))
        j = np.arange(lim_lo, lim_hi + 1)
        vv = v[:, lim_lo : lim_hi + 1]
        core = vv > (floor + self.config.qrs_core * (vmax - floor))[:, None]
        big = n + 2 * gap + 1
        # the core run: from the last core sample at or before the peak with no core sample
        # within 40 ms before it, to the first at or after it with none within 40 ms after
        prev = np.maximum.accumulate(np.where(core, j, -big), axis=1)
        prev = np.concatenate([np.full((k, 1), -big), prev[:, :-1]], axis=1)
        nxt = np.minimum.accumulate(np.where(core, j, big)[:, ::-1], axis=1)[:, ::-1]
        nxt = np.concatenate([nxt[:, 1:], np.full((k, 1), big)], axis=1)
        opens = core & (j - prev > gap) & (j <= pk[:, None])
        closes = core & (nxt - j > gap) & (j >= pk[:, None])
        start = np.where(opens, j, -big).max(axis=1)
        end = np.where(closes, j, big).min(axis=1)
        below = vv < (floor + edge * (vmax - floor))[:, None]
        on = np.where(below & (j < start[:, None]), j, lim_lo - 1).max(axis=1)
        on = np.maximum(on, lim_lo)
        off = np.where(below & (j >= end[:, None]), j, lim_hi + 1).min(axis=1)
        off = np.minimum(off, lim_hi)
        return on, off, found

    def _sides(
        self, y: np.ndarray, dy: np.ndarray, pk: np.ndarray, lo: int, hi: int, reach: int, ref: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Onsets and offsets of waves peaking at ``pk`` within [lo, hi) (trapezium method)."""
        sdy = np.sign(y[np.arange(len(pk)), pk])[:, None] * dy
        a = np.maximum(lo, pk - reach)
        b = np.minimum(hi, pk + reach)
        ok = (pk - a >= 2) & (b - pk >= 2)
        m_on = _first_extreme(sdy, a, pk, reach, top=True)
        on = _trapezium(y, m_on, np.maximum(lo, m_on - ref), ref)
        m_off = _first_extreme(sdy, pk, b, reach, top=False)
        off = _trapezium(y, m_off, np.minimum(hi - 1, m_off + ref), ref)
        return on, off, ok

    def _end(self, y: np.ndarray, dy: np.ndarray, pk: np.ndarray, hi: int, ref: int) -> np.ndarray:
        """Ends of waves whose last lobes peak at ``pk`` (trapezium method), before ``hi``."""
        sdy = np.sign(y[np.arange(len(pk)), pk])[:, None] * dy
        b = np.minimum(hi, pk + self._s(0.120))
        m = _first_extreme(sdy, pk, b, self._s(0.120), top=False)
        end = _trapezium(y, m, np.minimum(y.shape[1] - 1, m + ref), ref)
        return np.where(b - pk < 2, pk, end)
