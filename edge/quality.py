"""Signal quality before diagnosis: a frame with a bad lead is reported, not classified.

Each lead of a frame is checked for

- **lead off**: the front end's lead-off bits (any chunk of the frame's last hop);
- **flat line**: too many 1-s windows whose raw peak-to-peak is under ``flat_ptp_mv``;
- **clipping**: too many samples sitting on the lead's extreme value (a plateau at the rail);
- **noise**: the robust std of the sample-to-sample difference of the raw
  signal (broadband noise: muscle, a loose contact), relative to the robust
  range (1st to 99th percentile) of the filtered lead, on each 10-s segment
  of the frame (the classifier's windows), the worst segment counting: 10 s
  of noise spoil one of the frame's three windows, and a median over the
  whole 30 s would not see them. The 494 Challenge records reach 0.16
  (JS20015, a noisy 0.23-mV aVL), most stay under 0.08; white noise of std
  0.3 mV on a 1.2-mV QRS gives 0.3;
- **baseline wander**: the peak-to-peak of the 1-s medians of the raw signal,
  in mV (what the band-pass removes, but beyond ``wander_max_mv`` it means an
  electrode moving, not a patient's baseline).

"Raw" is the 500 Hz resampled signal before the band-pass (the agent keeps it
beside the filtered frame); without it the raw checks fall back on the
filtered samples. A frame fails when more than ``max_bad_leads`` leads are bad
(default 0: one bad lead fails the frame, since every class is read from all
twelve). Thresholds were checked on the 14 records of ``edge/samples``: none
of their frames fails (see ``tests/edge/test_quality.py``).

**Incremental.** A segment's noise statistics are a function of its own
samples, and in a stream two of a frame's three segments are the previous
frame's: they are kept with their samples (:class:`edge._reuse.ContentCache`,
the classifier's mechanism) and only the new 10 s are computed. The robust
statistics were the check's largest cost; the result never depends on the
cache. Of the 494 records
of ``shared/data/challenge2020`` 6 fail, each for a real defect: all-zero
precordial leads (JS20004, JS20008, JS45542, JS45544, JS45551) and a V4
saturated at 3.711 mV on 7 % of its samples (A0083).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from edge._reuse import ContentCache
from edge._robust import median_last, percentile_last
from edge.dsp import window_starts
from edge.errors import check_int, check_positive, invalid
from edge.framer import Frame
from edge.sources import LEADS, N_LEADS


@dataclass(frozen=True)
class QualityConfig:
    """Quality thresholds (signals in mV at 500 Hz)."""

    fs: float = 500.0
    window_s: float = 1.0  # window of the flat-line and wander checks
    segment_s: float = 10.0  # the noise check's segment (the classifier's window)
    flat_ptp_mv: float = 0.01  # a 1-s window with less peak-to-peak than this is flat
    flat_max_fraction: float = 0.5  # a lead is flat when more of its windows are flat
    clip_tol_mv: float = 0.001  # a sample this close to the lead's max (or min) is "at the rail"
    clip_max_fraction: float = 0.05  # a lead is clipped when more of its samples are at a rail
    noise_max_ratio: float = 0.2  # robust std of raw diff / robust range of the filtered lead
    wander_max_mv: float = 8.0  # peak-to-peak of the raw 1-s medians
    max_bad_leads: int = 0  # a frame fails with more bad leads than this
    min_samples: int = 250  # shorter frames are not judged (too little to say), they pass

    def __post_init__(self) -> None:
        for name in ("fs", "window_s", "segment_s", "flat_ptp_mv", "clip_tol_mv"):
            check_positive(name, getattr(self, name))
        check_positive("noise_max_ratio", self.noise_max_ratio)
        check_positive("wander_max_mv", self.wander_max_mv)
        for name in ("flat_max_fraction", "clip_max_fraction"):
            v = getattr(self, name)
            if not 0 < v <= 1:
                raise invalid(name, "a fraction in (0, 1]", v)
        check_int("max_bad_leads", self.max_bad_leads, min_value=0)
        check_int("min_samples", self.min_samples, min_value=1)


@dataclass(frozen=True)
class LeadStats:
    """What the checks measured on one lead."""

    flat_fraction: float
    clip_fraction: float
    noise_ratio: float
    wander_mv: float
    lead_off: bool


@dataclass(frozen=True)
class QualityReport:
    """The verdict on one frame: ``ok``, readable ``reasons``, ``bad_leads`` and per-lead stats."""

    ok: bool
    reasons: tuple[str, ...] = ()
    bad_leads: tuple[str, ...] = ()
    stats: tuple[LeadStats, ...] = field(default=(), compare=False)

    def to_json(self) -> dict:
        return {
            "ok": self.ok,
            "reasons": list(self.reasons),
            "bad_leads": list(self.bad_leads),
            "stats": {lead: asdict(s) for lead, s in zip(LEADS, self.stats)},
        }


_ROBUST_STEP_SAMPLES = 1600  # robust statistics on every k-th sample: >= 1600 per segment
_SEGMENTS_KEPT = 8  # the last two frames' three segments, and a hop of 5 s
_WANDER_STEP = 4  # a 1-s median of the baseline from every 4th sample (125 of 500)
_PROBLEMS = ("lead off", "flat line", "clipping", "excessive noise", "baseline wander")


def _noise_ratio(raw: np.ndarray, x: np.ndarray, floor_mv: float) -> np.ndarray:
    """(n_leads,) robust std of the raw sample-to-sample difference / robust range of ``x``.

    ``raw`` and ``x``: (n_leads, n) float32, the segment before and after the
    band-pass. On every ``n // 1600``-th sample (3 on 10 s at 500 Hz): as good
    an estimate as all of them, at a third of the time.
    """
    step = max(1, raw.shape[1] // _ROBUST_STEP_SAMPLES)
    d = raw[:, 1::step].astype(np.float64) - raw[:, :-1:step].astype(np.float64)
    mad = median_last(np.abs(d - median_last(d)[:, None])) * 1.4826
    xs = x[:, ::step]
    p1, p99 = percentile_last(xs, 1), percentile_last(xs, 99)
    return mad / np.maximum(p99 - p1, floor_mv)


class QualityChecker:
    """Judge frames, each on its own; what it keeps is only reuse (module docstring)."""

    def __init__(self, config: QualityConfig | None = None) -> None:
        self.config = config or QualityConfig()
        self._segments = ContentCache(_SEGMENTS_KEPT)

    def reset(self) -> None:
        """Forget the kept segments (verdicts do not depend on them: only the time does)."""
        self._segments.clear()

    def check(
        self, frame: Frame, lead_off: np.ndarray | None = None, raw: np.ndarray | None = None
    ) -> QualityReport:
        """Judge ``frame`` (filtered samples); ``raw`` is the same span before the band-pass."""
        x = frame.samples
        if x.ndim != 2 or x.shape[0] != N_LEADS:
            raise invalid("frame.samples", f"an array of shape ({N_LEADS}, n)", x.shape)
        if raw is None:
            raw = x
        elif raw.shape != x.shape:
            raise invalid("raw", f"an array of shape {x.shape}", raw.shape)
        off = np.zeros(N_LEADS, bool) if lead_off is None else np.asarray(lead_off, bool).copy()
        if off.shape != (N_LEADS,):
            raise invalid("lead_off", f"a bool array of shape ({N_LEADS},)", off.shape)
        c = self.config
        n = x.shape[1]
        if n < c.min_samples:
            stats = tuple(LeadStats(0.0, 0.0, 0.0, 0.0, bool(o)) for o in off)
            return self._verdict([off] + [np.zeros(N_LEADS, bool)] * 4, stats)
        # Float64 where arithmetic happens, on the few samples it happens on: max, min
        # and comparisons are exact on the float32 samples themselves.
        win = max(1, round(c.window_s * c.fs))
        n_win = max(1, n // win)
        rw = raw[:, : n_win * win].reshape(N_LEADS, n_win, -1) if n >= win else raw[:, None, :]
        w_ptp = rw.max(axis=2).astype(np.float64) - rw.min(axis=2).astype(np.float64)
        flat_fraction = (w_ptp < c.flat_ptp_mv).mean(axis=1)
        wander = np.ptp(median_last(rw[:, :, ::_WANDER_STEP]), axis=1)
        hi = raw.max(axis=1, keepdims=True).astype(np.float64)
        lo = raw.min(axis=1, keepdims=True).astype(np.float64)
        at_rail = (raw >= hi - c.clip_tol_mv) | (raw <= lo + c.clip_tol_mv)
        spread = (hi - lo)[:, 0]
        clip_fraction = np.where(spread > c.flat_ptp_mv, at_rail.mean(axis=1), 0.0)
        noise_ratio = np.max([self._segment_noise(raw, x, span) for span in self._spans(n)], 0)
        flat = flat_fraction > c.flat_max_fraction
        masks = [
            off,
            flat & ~off,
            (clip_fraction > c.clip_max_fraction) & ~off & ~flat,
            (noise_ratio > c.noise_max_ratio) & ~off & ~flat,
            (wander > c.wander_max_mv) & ~off & ~flat,
        ]
        stats = tuple(
            LeadStats(
                float(flat_fraction[i]),
                float(clip_fraction[i]),
                float(noise_ratio[i]),
                float(wander[i]),
                bool(off[i]),
            )
            for i in range(N_LEADS)
        )
        return self._verdict(masks, stats)

    def _spans(self, n: int) -> list[tuple[int, int]]:
        """[start, end) of the frame's noise segments: as the classifier's windows."""
        seg = max(1, round(self.config.segment_s * self.config.fs))
        return [(a, min(a + seg, n)) for a in window_starts(n, seg)]

    def _segment_noise(self, raw: np.ndarray, x: np.ndarray, span: tuple[int, int]) -> np.ndarray:
        parts = (raw[:, span[0] : span[1]], x[:, span[0] : span[1]])
        ticket, ratio = self._segments.find(parts)
        if ratio is None:
            ratio = _noise_ratio(*parts, self.config.flat_ptp_mv)
            self._segments.put(ticket, ratio)
        return ratio

    def _verdict(self, masks: list[np.ndarray], stats: tuple[LeadStats, ...]) -> QualityReport:
        bad = np.any(masks, axis=0)
        reasons = tuple(
            f"{problem} on {', '.join(LEADS[i] for i in np.flatnonzero(m))}"
            for problem, m in zip(_PROBLEMS, masks)
            if m.any()
        )
        bad_leads = tuple(LEADS[i] for i in np.flatnonzero(bad))
        ok = len(bad_leads) <= self.config.max_bad_leads
        return QualityReport(ok, reasons, bad_leads, stats)
