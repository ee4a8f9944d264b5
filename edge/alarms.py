"""Fast alarms: small state machines evaluated every second of stream time.

One class per condition family, each ``push(...) -> list[AlarmEvent]`` with
an onset and a cleared event; priorities after IEC 60601-1-8 (:class:`Priority`).
:class:`Monitor` runs the beat detector and the physiological and signal
alarms on the preprocessed 500 Hz stream, at every whole second of stream time
(samples 500, 1000, ...), so that any chunking gives the same events.

Defaults (:class:`AlarmConfig`):

- ``asystole`` (high): no beat for 4 s while at least one lead is on and
  carries signal; cleared by the next beat. Never raised while every lead is
  off or flat (``lead_off`` stands instead) nor in the first 4 s of a stream.
- ``extreme_tachycardia`` / ``extreme_bradycardia`` (high): heart rate above
  160 / below 40 bpm; ``high_heart_rate`` / ``low_heart_rate`` (medium):
  above 120 / below 50 bpm, and not extreme. Each on 2 consecutive
  evaluations (1 s apart), cleared on 2 outside the band (5 bpm hysteresis)
  or when there is no rate.
- ``lead_off`` (technical; medium when every lead is off, else low): the
  front end's lead-off bits, or a lead flat over the last second (peak to
  peak under 10 uV: an electrode off, a lead that is all zeros).
- ``lead_reversal`` / ``lead_inversion`` (technical, low): LA/RA reversal or
  inverted leads (edge.reversal) on 2 consecutive checks of 10 s of signal.
- ``no_signal`` (technical, medium) and ``poor_signal`` (technical, low) are
  driven by the agent (a watchdog on arriving samples; the frame quality).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np

from edge.beats import HR_METHOD, BeatDetector
from edge.errors import check_positive, invalid

ONSET, CLEARED = "onset", "cleared"
PHYSIOLOGICAL, TECHNICAL = "physiological", "technical"


class Priority(Enum):
    """IEC 60601-1-8 alarm priorities: the response each asks of the operator."""

    HIGH = "high"  # immediate
    MEDIUM = "medium"  # prompt
    LOW = "low"  # awareness


@dataclass(frozen=True)
class AlarmEvent:
    """An alarm condition was declared (``onset``) or ended (``cleared``).

    ``onset_sample`` is the stream sample (500 Hz) at which the condition was
    declared, the same in its cleared event; ``sample`` is where this event was
    declared; ``window`` the samples [start, end) the decision was made on.
    """

    event: str
    condition: str
    kind: str
    priority: Priority
    reason: str
    onset_sample: int
    sample: int
    window: tuple[int, int]
    heart_rate: float | None = None
    leads: tuple[str, ...] = ()


@dataclass(frozen=True)
class AlarmConfig:
    """Alarm limits and delays (defaults as in the module docstring)."""

    asystole_s: float = 4.0
    extreme_tachycardia_bpm: float = 160.0
    high_heart_rate_bpm: float = 120.0
    low_heart_rate_bpm: float = 50.0
    extreme_bradycardia_bpm: float = 40.0
    rate_confirm: int = 2  # consecutive evaluations
    hysteresis_bpm: float = 5.0
    flat_uv: float = 10.0
    no_signal_s: float = 5.0

    def __post_init__(self) -> None:
        check_positive("asystole_s", self.asystole_s)
        check_positive("no_signal_s", self.no_signal_s)
        if not (
            0
            < self.extreme_bradycardia_bpm
            < self.low_heart_rate_bpm
            < self.high_heart_rate_bpm
            < self.extreme_tachycardia_bpm
        ):
            raise ValueError(
                "Invalid heart-rate limits: expected extreme brady < low < high < extreme tachy, "
                f"got {self.extreme_bradycardia_bpm:g}, {self.low_heart_rate_bpm:g}, "
                f"{self.high_heart_rate_bpm:g}, {self.extreme_tachycardia_bpm:g}"
            )


_LIMIT_NAMES = {
    "asystole_s": "asystole_s",
    "low": "low_heart_rate_bpm",
    "high": "high_heart_rate_bpm",
    "extreme_low": "extreme_bradycardia_bpm",
    "extreme_high": "extreme_tachycardia_bpm",
    "no_signal_s": "no_signal_s",
}


def parse_limits(text: str | None) -> AlarmConfig:
    """``"low=45,high=130,asystole_s=5"`` -> :class:`AlarmConfig` (the rest as default).

    Names: asystole_s, low, high, extreme_low, extreme_high (bpm), no_signal_s.
    """
    if not text:
        return AlarmConfig()
    values: dict[str, float] = {}
    for item in text.split(","):
        name, _, value = item.strip().partition("=")
        if name not in _LIMIT_NAMES:
            raise invalid("alarm-limits", f"names among {', '.join(_LIMIT_NAMES)}", name)
        try:
            values[_LIMIT_NAMES[name]] = float(value)
        except ValueError:
            raise invalid("alarm-limits", f"a number for {name}", value) from None
    try:
        return AlarmConfig(**values)
    except ValueError as exc:
        raise invalid(
            "alarm-limits",
            "limits in the order extreme_low < low < high < extreme_high, times > 0",
            text,
        ) from exc


class _Standing:
    """The onset/cleared bookkeeping shared by the alarm classes."""

    condition = ""
    kind = PHYSIOLOGICAL

    def reset(self) -> None:
        self.onset: AlarmEvent | None = None

    @property
    def standing(self) -> bool:
        return self.onset is not None

    def _on(self, priority: Priority, reason: str, now: int, window, hr, leads=()) -> AlarmEvent:
        ev = AlarmEvent(
            ONSET, self.condition, self.kind, priority, reason, now, now, window, hr, tuple(leads)
        )
        self.onset = ev
        return ev

    def _off(self, reason: str, now: int, window, hr) -> AlarmEvent:
        on = self.onset
        assert on is not None
        self.onset = None
        return AlarmEvent(
            CLEARED,
            self.condition,
            self.kind,
            on.priority,
            reason,
            on.onset_sample,
            now,
            window,
            hr,
            on.leads,
        )


class AsystoleAlarm(_Standing):
    """No beat for ``asystole_s`` while the signal is there: high priority."""

    condition = "asystole"

    def __init__(self, asystole_s: float = 4.0, fs: float = 500.0) -> None:
        self.limit = round(asystole_s * fs)
        self.fs = fs
        self.reset()

    def push(
        self, now: int, last_beat: int | None, horizon: int, start: int, observable: bool
    ) -> list[AlarmEvent]:
        """``last_beat``: sample of the last beat (None: none since ``start``, the stream start);
        ``horizon``: samples up to which beats are known; ``observable``: a lead carries signal."""
        ref = start if last_beat is None or last_beat < start else last_beat
        if self.standing:
            if last_beat is not None and last_beat > self._last:
                return [self._off("a beat was detected", now, (ref, horizon), None)]
            return []
        if observable and horizon - ref >= self.limit and now - start >= self.limit:
            self._last = -1 if last_beat is None else last_beat
            secs = (horizon - ref) / self.fs
            return [self._on(Priority.HIGH, f"no beat for {secs:.1f} s", now, (ref, horizon), None)]
        return []


class RateAlarm(_Standing):
    """Heart rate in a band ``[low, high)`` (bpm) on ``confirm`` consecutive evaluations."""

    def __init__(
        self,
        condition: str,
        priority: Priority,
        low: float,
        high: float,
        confirm: int = 2,
        hysteresis: float = 5.0,
    ) -> None:
        self.condition, self.priority = condition, priority
        self.low, self.high, self.confirm, self.hyst = low, high, confirm, hysteresis
        self.reset()

    def reset(self) -> None:
        super().reset()
        self._in = self._out = 0

    def _describe(self, bpm: float) -> str:
        if self.high == float("inf"):
            return f"heart rate {bpm:g} bpm above {self.low:g}"
        if self.low == 0:
            return f"heart rate {bpm:g} bpm below {self.high:g}"
        return f"heart rate {bpm:g} bpm outside {self.low:g}-{self.high:g}"

    def push(
        self, now: int, bpm: float | None, window: tuple[int, int], suppressed: bool = False
    ) -> list[AlarmEvent]:
        """``suppressed``: a higher-priority rate alarm stands (this one is not raised)."""
        if suppressed:
            bpm = None
        inside = bpm is not None and self.low <= bpm < self.high
        if not self.standing:
            self._in = self._in + 1 if inside else 0
            if self._in >= self.confirm:
                self._out = 0
                return [self._on(self.priority, self._describe(bpm), now, window, bpm)]
            return []
        keep = bpm is not None and self.low - self.hyst <= bpm < self.high + self.hyst
        self._out = 0 if keep else self._out + 1
        if self._out >= self.confirm:
            self._in = 0
            why = "no heart rate" if bpm is None else f"heart rate {bpm:g} bpm"
            why = "superseded by the extreme alarm" if suppressed else why
            return [self._off(why, now, window, bpm)]
        return []


class LeadOffAlarm(_Standing):
    """Leads off (front-end bits) or flat (no signal on them); priority by how many.

    Declared at the first evaluation that finds a lead off; cleared, or moved
    to another set of leads, only once the new state has held for ``hold``
    evaluations in a row (2 s by default), so that an electrode that makes
    and breaks contact every second gives one standing alarm, not a flood.
    """

    condition = "lead_off"
    kind = TECHNICAL

    def __init__(self, leads: Sequence[str], hold: int = 2) -> None:
        self.lead_names = tuple(leads)
        self.hold = hold
        self.reset()

    def reset(self) -> None:
        super().reset()
        self._pending: tuple[str, ...] | None = None
        self._streak = 0

    def push(self, now: int, off: np.ndarray, window: tuple[int, int]) -> list[AlarmEvent]:
        names = tuple(n for n, o in zip(self.lead_names, off) if o)
        out: list[AlarmEvent] = []
        if self.standing and names != self.onset.leads:
            self._streak = self._streak + 1 if names == self._pending else 1
            self._pending = names
            if self._streak < self.hold:
                return out  # not held long enough: the standing alarm stays as it is
            out.append(self._off("leads back" if not names else "leads changed", now, window, None))
        self._pending, self._streak = None, 0
        if names and not self.standing:
            every = len(names) == len(self.lead_names)
            what = "every lead" if every else ("leads" if len(names) > 1 else "lead")
            reason = f"{what} off or flat" + ("" if every else f": {', '.join(names)}")
            prio = Priority.MEDIUM if every else Priority.LOW
            out.append(self._on(prio, reason, now, window, None, names))
        return out


class SignalAlarm(_Standing):
    """A technical condition reported from outside (no signal, poor signal): on/off."""

    kind = TECHNICAL

    def __init__(self, condition: str, priority: Priority) -> None:
        self.condition, self.priority = condition, priority
        self.reset()

    def push(self, now: int, bad: bool, reason: str, window: tuple[int, int]) -> list[AlarmEvent]:
        if bad and not self.standing:
            return [self._on(self.priority, reason, now, window, None)]
        if not bad and self.standing:
            return [self._off(reason, now, window, None)]
        return []


class LeadCheckAlarm(_Standing):
    """LA/RA reversal or inverted leads (edge.reversal) on ``confirm`` consecutive checks."""

    kind = TECHNICAL

    def __init__(self, condition: str, confirm: int = 2) -> None:
        self.condition, self.confirm = condition, confirm
        self.reset()

    def reset(self) -> None:
        super().reset()
        self._streak = 0

    def push(
        self, now: int, found: bool, reason: str, leads: tuple[str, ...], window
    ) -> list[AlarmEvent]:
        self._streak = self._streak + 1 if found else 0
        if not self.standing and self._streak >= self.confirm:
            return [self._on(Priority.LOW, reason, now, window, None, leads)]
        if self.standing and not found:
            return [self._off("lead signs look normal again", now, window, None)]
        return []


class Monitor:
    """Beats, heart rate and the signal-driven alarms of one stream segment.

    ``push(x, lead_off)``: x (n_leads, n) preprocessed mV at 500 Hz, starting
    at stream sample ``start``; ``lead_off`` (n_leads,) bool from the front end
    for this chunk, or None. Returns the alarm events of the whole seconds it
    completes (evaluated at every multiple of ``fs`` samples).
    """

    def __init__(
        self,
        leads: Sequence[str],
        start: int = 0,
        config: AlarmConfig | None = None,
        fs: float = 500.0,
    ) -> None:
        self.config = c = config or AlarmConfig()
        self.fs, self.leads, self.start = fs, tuple(leads), int(start)
        self.detector = BeatDetector(fs, len(self.leads))
        self.asystole = AsystoleAlarm(c.asystole_s, fs)
        inf = float("inf")
        self.rates = [
            RateAlarm(
                "extreme_tachycardia",
                Priority.HIGH,
                c.extreme_tachycardia_bpm,
                inf,
                c.rate_confirm,
                c.hysteresis_bpm,
            ),
            RateAlarm(
                "high_heart_rate",
                Priority.MEDIUM,
                c.high_heart_rate_bpm,
                c.extreme_tachycardia_bpm,
                c.rate_confirm,
                c.hysteresis_bpm,
            ),
            RateAlarm(
                "low_heart_rate",
                Priority.MEDIUM,
                c.extreme_bradycardia_bpm,
                c.low_heart_rate_bpm,
                c.rate_confirm,
                c.hysteresis_bpm,
            ),
            RateAlarm(
                "extreme_bradycardia",
                Priority.HIGH,
                0.0,
                c.extreme_bradycardia_bpm,
                c.rate_confirm,
                c.hysteresis_bpm,
            ),
        ]
        self.lead_off = LeadOffAlarm(self.leads)
        self.poor_signal = SignalAlarm("poor_signal", Priority.LOW)
        self.no_signal = SignalAlarm("no_signal", Priority.MEDIUM)
        self.reversal = LeadCheckAlarm("lead_reversal")
        self.inversion = LeadCheckAlarm("lead_inversion")
        self._sec = round(fs)
        self._check = 10 * self._sec  # the lead check runs on every 10 s of signal
        self.reset()

    @property
    def alarms(self) -> list[_Standing]:
        return [
            self.asystole,
            *self.rates,
            self.lead_off,
            self.poor_signal,
            self.no_signal,
            self.reversal,
            self.inversion,
        ]

    def restart(self, start: int) -> None:
        """A new segment of the same stream (after a gap): the signal state restarts at
        ``start``, the standing alarms stay (the next beat clears an asystole)."""
        self.start = int(start)
        self.detector.reset()
        self._n = 0
        self._tail = np.zeros((len(self.leads), 0), np.float32)
        self._ten = np.zeros((len(self.leads), 0), np.float32)
        self._off_bits[:] = False

    def quality(self, ok: bool, reasons: Sequence[str], window: tuple[int, int]) -> list:
        """A frame's signal-quality verdict: ``poor_signal`` onset / cleared."""
        reason = "; ".join(reasons)[:200] if not ok else "signal quality good again"
        return self._hr(self.poor_signal.push(window[1], not ok, reason or "poor", window))

    def silent(self, seconds: float) -> list[AlarmEvent]:
        """No sample has arrived for ``seconds`` (wall clock): ``no_signal`` past the limit."""
        now = self.now
        bad = seconds >= self.config.no_signal_s
        if bad == self.no_signal.standing:
            return []
        reason = f"no samples for {seconds:.1f} s" if bad else "samples arrive again"
        return self.no_signal.push(now, bad, reason, (now, now + 1))

    def reset(self, start: int | None = None) -> None:
        """Back to the start of a segment (at stream sample ``start``, default as before)."""
        if start is not None:
            self.start = int(start)
        self.detector.reset()
        for alarm in self.alarms:
            alarm.reset()
        self._n = 0  # samples pushed (relative to start)
        self._tail = np.zeros((len(self.leads), 0), np.float32)  # the last second
        self._ten = np.zeros((len(self.leads), 0), np.float32)  # the last 10 s
        self._off_bits = np.zeros(len(self.leads), bool)
        self.beats: list[int] = []  # the most recent R peaks (stream samples), bounded
        self.n_beats = 0  # every beat of the segment, counted

    @property
    def now(self) -> int:
        return self.start + self._n

    def heart_rate(self) -> float | None:
        """Current heart rate (bpm) or None; see :data:`edge.beats.HR_METHOD`."""
        return self.detector.heart_rate(self._n).bpm

    method = HR_METHOD

    KEEP_BEATS = 4096  # beats kept in ``beats`` (~20 min at 200/min): a monitor runs for days

    def beats_since(self, n_before: int) -> list[int]:
        """The beats found since ``n_beats`` was ``n_before`` (all of them are still kept
        right after a push: ``beats`` is trimmed only at the start of one)."""
        new = self.n_beats - n_before
        return self.beats[len(self.beats) - new :] if new > 0 else []

    def push(self, x: np.ndarray, lead_off: np.ndarray | None = None) -> list[AlarmEvent]:
        if len(self.beats) > 2 * self.KEEP_BEATS:
            del self.beats[: -self.KEEP_BEATS]
        out: list[AlarmEvent] = []
        pos = 0
        n = x.shape[1]
        while pos < n:
            step = min(n - pos, self._sec - self._n % self._sec)
            part = x[:, pos : pos + step]
            for b in self.detector.push(part):
                self.beats.append(self.start + b.sample)
                self.n_beats += 1
            self._tail = np.concatenate([self._tail, part], axis=1)[:, -self._sec :]
            if len(self.leads) == 12:
                self._ten = np.concatenate([self._ten, part], axis=1)[:, -self._check :]
            if lead_off is not None:
                self._off_bits |= np.asarray(lead_off, bool)
            self._n += step
            pos += step
            if self._n % self._sec == 0:
                out += self._evaluate()
            if self._n % self._check == 0 and len(self.leads) == 12:
                out += self._hr(self._check_leads())
        return out

    def _evaluate(self) -> list[AlarmEvent]:
        now = self.now
        win = (max(self.start, now - self._sec), now)
        ptp = np.ptp(self._tail, axis=1) if self._tail.shape[1] else np.zeros(len(self.leads))
        flat = ptp * 1000.0 < self.config.flat_uv
        off = flat | self._off_bits
        self._off_bits[:] = False
        out = self.lead_off.push(now, off, win)
        det = self.detector
        last = None if det.last_beat is None else self.start + det.last_beat
        out += self.asystole.push(now, last, self.start + det.horizon, self.start, not off.all())
        bpm = None if self.asystole.standing else self.heart_rate()
        extreme = False
        for alarm in self.rates:  # extreme first: the medium band is not raised beside it
            if alarm.priority is Priority.HIGH:
                out += alarm.push(now, bpm, win)
                extreme = extreme or alarm.standing
        for alarm in self.rates:
            if alarm.priority is not Priority.HIGH:
                out += alarm.push(now, bpm, win, suppressed=extreme)
        return self._hr(out, bpm)

    def _check_leads(self) -> list[AlarmEvent]:
        from edge.reversal import check_leads

        now = self.now
        begin = now - self._ten.shape[1]
        beats = [b - begin for b in self.beats if b >= begin]
        c = check_leads(self._ten, beats, self.fs)
        if c is None:  # too few beats to judge: nothing changes
            return []
        win = (begin, now)
        out = self.reversal.push(
            now, c.reversed, c.reason or "LA/RA reversed", ("I", "II", "III", "aVR", "aVL"), win
        )
        out += self.inversion.push(now, bool(c.inverted), c.reason or "inverted", c.inverted, win)
        return out

    def _hr(self, events: list[AlarmEvent], bpm: float | None = None) -> list[AlarmEvent]:
        if bpm is None and not self.asystole.standing:
            bpm = self.heart_rate()
        return [e if e.heart_rate is not None else _with_hr(e, bpm) for e in events]

    def lead_fix(self) -> tuple[bool, tuple[str, ...]]:
        """What the standing lead-check alarms say to undo before classification:
        (LA/RA reversed, inverted leads). Both confirmed on two checks in a row."""
        inverted = self.inversion.onset.leads if self.inversion.onset is not None else ()
        return self.reversal.standing, inverted

    def standing(self) -> list[str]:
        """The conditions standing now."""
        return [a.condition for a in self.alarms if a.standing]

    def close(self) -> list[str]:
        """End of stream: the conditions still standing (no cleared event is invented)."""
        return self.standing()


def _with_hr(e: AlarmEvent, bpm: float | None) -> AlarmEvent:
    from dataclasses import replace

    return replace(e, heart_rate=bpm)
