"""The agent: chunks in, events out, through every stage of the stream.

``SampleSource -> Preprocessor -> Framer -> QualityChecker -> Classifier ->
AlertTracker -> sink (+ bridge Publisher)``. Events are plain dicts with a
``type`` (``frame``, ``quality``, ``alert``, ``status``), handed to ``sink``
(the CLI prints them, readable or as JSON lines) and, when a publisher is
given, sent as the bridge's payloads.

Short dropouts are bridged: a sequence gap (``chunk.gap_before``) of at most
``max_fill_s`` seconds is filled by linear interpolation between the last
sample before it and the first after it, and the DSP and framer state are
kept; each frame event and alert says how many of its samples were filled
and where (``filled``). Linear interpolation rather than a hold: it meets the
signal at both ends, so the band-pass sees no step (a hold leaves a step as
large as the signal's change over the gap, and the high-pass rings from it);
the samples to interpolate to are in hand, the gap being reported with the
chunk after it. A frame more than ``MAX_FILLED_FRACTION`` filled is not
diagnosed (a quality failure).

Stream segments: the DSP state and the framer restart at a longer gap, at a
device restart (sequence counter reset) or reopened port (the loss is then
only estimated), at a change of rate (each reported as a quality event, never
spliced) and at a new record; at the end of a record the partial frame is
flushed (padded as the trainer pads it) and the alert tracker closes, so a
replayed record gives exactly the frames of :func:`score_record`.

Latency is measured from ``chunk.received_at`` of the chunk holding the
frame's last sample to the moment the event is emitted. :meth:`Agent.stop`
(the CLI calls it on SIGINT/SIGTERM) lets the current chunk finish, then
flushes the publisher and reports ``offline``.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np

from edge.alarms import AlarmConfig, AlarmEvent, Monitor
from edge.alerts import AlertEvent, AlertTracker
from edge.beats import HR_METHOD
from edge.bundle import Bundle
from edge.classify import Classification, Classifier
from edge.dsp import Preprocessor, preprocess
from edge.errors import check_int, check_positive, invalid
from edge.framer import Frame, Framer, record_frames
from edge.measure import Measurer
from edge.quality import QualityChecker, QualityConfig, QualityReport
from edge.records import Record
from edge.sources import LEADS, N_LEADS, Chunk, SampleSource

Event = dict[str, Any]
_BATCH = 16
MAX_FILLED_FRACTION = 0.05  # a frame with more filled-in samples is not diagnosed
_MAX_RUNS = 64  # filled runs listed per frame (the count covers them all)


def score_record(
    classifier: Classifier, record: Record, hop_samples: int = 5000
) -> list[tuple[Frame, np.ndarray]]:
    """Every frame of a whole record and its (K,) scores: the reference the stream must equal.

    The trainer's evaluation calls this; the agent's streamed frames of a
    replayed record are the same frames (same DSP from the record's start,
    same schedule, same partial frame at the end).
    """
    cfg = classifier.bundle.manifest.dsp
    x = preprocess(record.signal, record.fs, cfg)
    frames = record_frames(x, hop_samples, cfg.frame_samples)
    out: list[tuple[Frame, np.ndarray]] = []
    for i in range(0, len(frames), _BATCH):
        part = frames[i : i + _BATCH]
        scores = classifier.scores([f.model_input(cfg) for f in part])
        out.extend(zip(part, scores))
    return out


def hop_samples_for(hop_s: float, fs: float = 500.0, frame_samples: int = 15000) -> int:
    """``--hop-s`` in seconds -> samples at the model rate; at most one frame long."""
    check_positive("hop_s", hop_s)
    hop = round(hop_s * fs)
    if not 1 <= hop <= frame_samples:
        raise invalid("hop_s", f"a number of seconds in (0, {frame_samples / fs:g}]", hop_s)
    return hop


@dataclass
class AgentSummary:
    """What a run did: counters and the records played."""

    frames: int = 0
    quality_failures: int = 0
    alerts: int = 0
    alarms: int = 0
    gaps: int = 0
    filled_gaps: int = 0
    filled_samples: int = 0
    frames_restored: int = 0  # frames classified with a confirmed lead reversal undone
    records: list[str] = field(default_factory=list)
    standing: tuple[str, ...] = ()
    seconds: float = 0.0
    stopped: bool = False


def _utc(t: float) -> str:
    dt = datetime.fromtimestamp(t, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


class Agent:
    """Run a :class:`SampleSource` through the stream; emit events to ``sink`` and ``publisher``.

    ``bundle``: a loaded :class:`~edge.bundle.Bundle`; ``hop_s``: seconds of
    new signal between frames; ``confirm``: consecutive positive frames before
    an onset; ``sink``: called with each event dict; ``publisher``: a
    :class:`bridge.publish.Publisher` (already started) or None;
    ``max_fill_s``: the longest dropout bridged by interpolation (0: none);
    ``restore_leads``: classify a frame with a confirmed LA/RA reversal or
    inverted leads undone (the lead-check alarm still stands).
    """

    def __init__(
        self,
        bundle: Bundle,
        *,
        precision: str = "int8",
        threads: int = 1,
        hop_s: float = 10.0,
        confirm: int = 1,
        device_id: str = "edge-1",
        publisher: Any | None = None,
        sink: Callable[[Event], None] | None = None,
        quality: QualityConfig | None = None,
        classifier: Classifier | None = None,
        max_fill_s: float = 0.1,
        live: bool = False,
        status_s: float = 30.0,
        alarms: AlarmConfig | None = None,
        restore_leads: bool = True,
    ) -> None:
        from bridge.topics import check_device_id

        self.bundle = bundle
        self.config = bundle.manifest.dsp
        self.hop = hop_samples_for(hop_s, self.config.fs, self.config.frame_samples)
        self.confirm = check_int("confirm", confirm, min_value=1)
        self.device_id = check_device_id(device_id)
        self.classifier = classifier or Classifier(bundle, precision, threads)
        self.quality = QualityChecker(quality)
        m = bundle.manifest
        self.classes = {c.code: c for c in m.classes}
        self.tracker = AlertTracker(m.codes, m.normal_code, confirm)
        self.publisher = publisher
        self.evidence = None  # every alert's strip, the live lead II (edge.evidence)
        if publisher is not None:
            from edge.evidence import Evidence

            bpm = self._bpm_now if hasattr(type(self), "heart_rate") else None  # else its own
            self.evidence = Evidence(self.device_id, self.config.fs, live=live, heart_rate=bpm)
        self.sink = sink or (lambda event: None)
        self._stop = threading.Event()
        self._source: SampleSource | None = None
        self.summary = AgentSummary()
        self._chunks_seen = 0  # chunks processed: what _measurements keeps is for one
        self._measured_for: tuple[Any, dict[str, Any] | None] = (None, None)
        self._soon_for: int | None = None  # the frame end the measurer was told of
        self._pre: Preprocessor | None = None
        self._framer = Framer(self.hop, self.config.frame_samples)
        self._raw_framer = Framer(self.hop, self.config.frame_samples)
        self._fs: float | None = None
        self._record: str | None = None
        self._next_in = 0  # expected start_sample of the next chunk
        self._lead_off = np.zeros(N_LEADS, dtype=bool)
        self.max_fill_s = float(check_positive("max_fill_s", max_fill_s, allow_zero=True))
        self._last_raw: np.ndarray | None = None  # (n_leads,) last sample in, at the source rate
        self._filled: list[tuple[int, int]] = []  # filled runs [start, end) at the model rate
        self._anchor: float | None = None  # UTC (epoch s) of the stream's sample 0
        self.status_s = float(check_positive("status_s", status_s))
        self._next_status = 0.0  # monotonic time of the next heartbeat status event
        self._next_counters = 0.0  # ... of the next counters update to the publisher
        # fast alarms (edge.alarms): beats, heart rate, asystole, rate limits, lead off...
        self.alarm_config = alarms or AlarmConfig()
        self.restore_leads = bool(restore_leads)
        self.monitor: Monitor | None = None
        self.measurer: Measurer | None = None  # edge.measure: every beat delineated
        self._lock = threading.RLock()  # process() and the no-signal watchdog
        self._last_chunk_at = time.monotonic()

    # ---------------------------------------------------------------- control

    def stop(self) -> None:
        """Ask :meth:`run` to finish after the current chunk (safe from a signal handler)."""
        self._stop.set()
        if self._source is not None:
            self._source.close()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def swap_bundle(self, bundle: Bundle, classifier: Classifier) -> None:
        """Score with ``bundle`` from the next frame on (:mod:`edge.reload` checked it: same
        classes and preprocessing, signature, self-test); safe from any thread."""
        self._pending_swap = (bundle, classifier)

    def _apply_swap(self) -> None:
        pending = getattr(self, "_pending_swap", None)
        if pending is not None:
            self._pending_swap = None
            self.bundle, self.classifier = pending
            self.classes = {c.code: c for c in self.bundle.manifest.classes}

    def run(self, source: SampleSource) -> AgentSummary:
        """Consume ``source`` until it ends or :meth:`stop`; return the summary."""
        self._source = source
        t0 = time.monotonic()
        self._next_status = t0 + self.status_s
        self._status("online")
        done = threading.Event()
        watchdog = threading.Thread(target=self._watch, args=(done,), daemon=True)
        self._last_chunk_at = time.monotonic()
        watchdog.start()
        try:
            for chunk in source.chunks():
                with self._lock:
                    self.process(chunk)
                if self._stop.is_set():
                    break
            else:
                self.end_segment()
        finally:
            done.set()
            watchdog.join()
            source.close()
            self.summary.stopped = self._stop.is_set()
            self.summary.standing = self.tracker.close() or self.summary.standing
            self.summary.seconds = time.monotonic() - t0
            self._status("offline")
        return self.summary

    def _watch(self, done: threading.Event) -> None:
        """The no-signal alarm: a thread that looks, twice a second, how long ago the last
        chunk arrived (a silent serial device yields nothing to the stream)."""
        while not done.wait(0.5):
            with self._lock:
                if self.monitor is not None:
                    silent = time.monotonic() - self._last_chunk_at
                    for ev in self.monitor.silent(silent):
                        self._alarm_event(ev, time.monotonic(), self._record)

    # ------------------------------------------------------------------ steps

    def process(self, chunk: Chunk) -> None:
        """Push one chunk through the stream, emitting what it completes."""
        self._chunks_seen += 1
        new_record = chunk.record != self._record
        if new_record:
            self.end_segment()
            self._record = chunk.record
            self.measurer = None  # its clock restarts at 0: the last record's beats are not its
            if chunk.record is not None:
                self.summary.records.append(chunk.record)
        if new_record or self._anchor is None:  # one clock per stream: sample 0's UTC
            arrived = time.time() - (time.monotonic() - chunk.received_at)
            self._anchor = arrived - (chunk.start_sample + chunk.n_samples) / chunk.fs
        gap = chunk.gap_before
        if not new_record and self._pre is not None and chunk.start_sample > self._next_in:
            gap = max(gap, chunk.start_sample - self._next_in)
        samples = chunk.samples
        if self._pre is None or (self._fs is not None and chunk.fs != self._fs):
            self._new_segment(chunk, gap)
        elif gap > 0:
            if self._bridgeable(chunk, gap):
                samples = self._fill(chunk, gap)
            else:
                self._new_segment(chunk, gap)
        self._next_in = chunk.start_sample + chunk.n_samples
        if chunk.n_samples:
            self._last_raw = chunk.samples[:, -1].astype(np.float32)
        if chunk.lead_off is not None:
            self._lead_off |= np.asarray(chunk.lead_off, dtype=bool)
        raw = self._pre.resampler.push(samples)
        filtered = self._pre.bandpass.push(raw).astype(np.float32)
        if self.evidence is not None:
            for wave in self.evidence.push(filtered, self._framer.next_sample, chunk.received_at):
                self.publisher.publish_live(wave)
        self._last_chunk_at = time.monotonic()
        n_beats = self.monitor.n_beats
        for ev in self.monitor.silent(0.0) + self.monitor.push(filtered, chunk.lead_off):
            self._alarm_event(ev, chunk.received_at, chunk.record)
        # a frame ends within 1 s, or the record does (a replay knows; its last, partial
        # frame is flushed then): the beats ready are delineated now, once per frame, in
        # one batch; the frame's measurements are those of the beats measured by then
        soon = self._framer.until_frame - filtered.shape[1] <= self.config.fs
        soon = soon or (chunk.samples_left is not None and chunk.samples_left <= chunk.fs)
        due = self._framer.next_sample + self._framer.until_frame  # the next frame's end
        tell = soon and due != self._soon_for  # once per frame
        if soon:
            self._soon_for = due
        frames = self._framer.push(filtered)
        raws = self._raw_framer.push(raw.astype(np.float32))
        self._frames(frames, raws, chunk)
        if self.measurer is not None:  # after the frame: its alert waits for no delineation
            self.measurer.push(raw, self.monitor.beats_since(n_beats), tell, chunk.end_of_record)
        if chunk.end_of_record:
            self.end_segment(chunk)
        self._tick()

    def counters(self) -> dict[str, Any]:
        """What the stream has counted so far: frames, alerts, gaps, filled samples and,
        for a serial device, the parser's counters (``serial``: CRC errors, bytes
        discarded, bad CSV lines, sequence gaps, samples lost, ...)."""
        s = self.summary
        out: dict[str, Any] = {
            "frames": s.frames,
            "quality_failures": s.quality_failures,
            "alerts": s.alerts,
            "gaps": s.gaps,
            "filled_gaps": s.filled_gaps,
            "filled_samples": s.filled_samples,
            "frames_restored": s.frames_restored,
            "alarms": s.alarms,
            "heart_rate": self.heart_rate(),
            "standing_alarms": [] if self.monitor is None else self.monitor.standing(),
            # what is measured so far: the counters (every second) never delineate
            "measurements": (
                None if self.measurer is None else self.measurer.recent(10.0, catch_up=False)
            ),
        }
        stats = getattr(self._source, "stats", None)
        if stats is not None and dataclasses.is_dataclass(stats):
            serial = {k: int(v) for k, v in dataclasses.asdict(stats).items()}
            serial["reconnects"] = int(getattr(self._source, "reconnects", 0))
            out["serial"] = serial
        return out

    def _tick(self) -> None:
        """Now and then: counters to the publisher (its heartbeat), a heartbeat status event."""
        now = time.monotonic()
        if self.publisher is not None and now >= self._next_counters:
            self._next_counters = now + 1.0
            set_counters = getattr(self.publisher, "set_counters", None)
            if set_counters is not None:
                set_counters(self.counters())
        if now >= self._next_status:
            self._next_status = now + self.status_s
            self._status("heartbeat")

    def end_segment(self, last: Chunk | None = None) -> None:
        """Flush the partial frame of the current segment; at a record's end, close alerts."""
        if self._pre is not None and last is not None:
            self._frames(self._framer.flush(), self._raw_framer.flush(), last)
        self._pre = None
        if last is not None or self._record is not None:
            standing = self.tracker.close()
            if self.monitor is not None:  # the alarms close with the record, as the findings
                standing += tuple(self.monitor.close())
                self.monitor = None
            if standing or last is not None:
                self.summary.standing = standing

    def _bridgeable(self, chunk: Chunk, gap: int) -> bool:
        """A dropout short enough, and of known size, to fill in (the state is kept)."""
        meta = chunk.meta or {}
        return (
            self._last_raw is not None
            and chunk.n_samples > 0
            and not meta.get("seq_reset")
            and not meta.get("reconnected")
            and gap <= self.max_fill_s * chunk.fs
        )

    def _fill(self, chunk: Chunk, gap: int) -> np.ndarray:
        """``gap`` samples interpolated linearly from the last sample to the chunk's first,
        followed by the chunk: (n_leads, gap + n) float32 at the source rate."""
        last, first = self._last_raw, chunk.samples[:, 0].astype(np.float32)
        t = (np.arange(1, gap + 1, dtype=np.float32) / np.float32(gap + 1))[None, :]
        fill = last[:, None] + (first - last)[:, None] * t
        scale = self.config.fs / chunk.fs
        begin, end = round(self._next_in * scale), round((self._next_in + gap) * scale)
        if end > begin:
            self._filled.append((begin, end))
        horizon = self._framer.next_sample - self.config.frame_samples
        self._filled = [r for r in self._filled if r[1] > horizon]
        self.summary.filled_gaps += 1
        self.summary.filled_samples += gap
        return np.concatenate([fill.astype(np.float32), chunk.samples], axis=1)

    def filled_in(self, start: int, end: int) -> dict[str, Any]:
        """The filled samples of ``[start, end)`` (model-rate indices): count and runs.

        ``{"samples": n, "runs": [[start_sample, n_samples], ...]}`` (at most 64 runs).
        """
        runs = [
            [max(a, start), min(b, end) - max(a, start)]
            for a, b in self._filled
            if a < end and b > start
        ]
        return {"samples": int(sum(n for _, n in runs)), "runs": runs[:_MAX_RUNS]}

    def _new_segment(self, chunk: Chunk, gap: int) -> None:
        old_fs = self._fs
        self._soon_for = None  # the framer's clock restarts
        start500 = round(chunk.start_sample * self.config.fs / chunk.fs)
        if self._pre is not None:
            meta = chunk.meta or {}
            lost = f"{gap} samples ({gap / chunk.fs:.3f} s) before sample {chunk.start_sample}"
            if old_fs is not None and chunk.fs != old_fs:
                reason = f"sample rate changed from {old_fs:g} to {chunk.fs:g} Hz"
            elif meta.get("seq_reset"):
                reason = (
                    f"the device restarted (its sequence number went back) before sample "
                    f"{chunk.start_sample}: filters restarted"
                )
            elif meta.get("reconnected"):
                reason = f"serial port reopened, about {lost} lost: filters restarted"
            else:
                reason = (
                    f"signal lost for {lost}, longer than the {self.max_fill_s:g} s "
                    "bridged: filters restarted"
                )
            self.summary.gaps += 1
            end500 = max(start500, self._framer.next_sample + 1)
            begin = min(self._framer.next_sample, end500 - 1)
            self._quality_event(begin, end500, (reason,), (), chunk.received_at, chunk.record)
        self._pre = Preprocessor(chunk.fs, self.config)
        if self.monitor is None:
            self.monitor = Monitor(LEADS, start500, self.alarm_config, self.config.fs)
        else:
            self.monitor.restart(start500)
        if self.measurer is None:
            self.measurer = Measurer(LEADS, start500, self.config.fs)
        else:
            self.measurer.restart(start500)
        self._fs = chunk.fs
        self._framer.reset(start500)
        self._raw_framer.reset(start500)
        self._lead_off[:] = False
        self._filled = []

    def _frames(self, frames: list[Frame], raws: list[Frame], chunk: Chunk) -> None:
        for frame, raw in zip(frames, raws):
            report = self.quality.check(frame, self._lead_off, raw.samples)
            filled = self.filled_in(frame.start_sample, frame.end_sample)
            if report.ok and filled["samples"] > MAX_FILLED_FRACTION * frame.n_valid:
                share = 100.0 * filled["samples"] / frame.n_valid
                report = QualityReport(
                    False, (f"{share:.1f} % of the frame filled in across dropouts",), ()
                )
            if self.monitor is not None:
                span = (frame.start_sample, frame.end_sample)
                for ev in self.monitor.quality(report.ok, report.reasons, span):
                    self._alarm_event(ev, chunk.received_at, chunk.record)
            if not report.ok:
                self.summary.quality_failures += 1
                self.tracker.skip(frame)
                self._quality_event(
                    frame.start_sample,
                    frame.end_sample,
                    report.reasons,
                    report.bad_leads,
                    chunk.received_at,
                    chunk.record,
                )
                continue
            self._apply_swap()  # a reloaded bundle scores from a frame boundary on
            samples, restored = self._restored(frame.samples)
            c = self.classifier.classify_frame(samples)
            self.summary.frames += 1
            for ev in self.tracker.update(c, frame):  # alerts first: they are what waits
                self._alert_event(ev, report, chunk)
            self._frame_event(frame, c, chunk, restored)
        if frames:
            self._lead_off[:] = False

    # ----------------------------------------------------------------- events

    def _span(self, start: int, end: int, received_at: float) -> dict[str, Any]:
        """Samples ``[start, end)`` and their UTC on the stream's one clock: the arrival
        of its first chunk fixes sample 0, then the sample index counts (a sample's UTC
        never depends on when an event about it was made; a replay keeps record time)."""
        fs = self.config.fs
        if self._anchor is None:
            self._anchor = time.time() - (time.monotonic() - received_at) - end / fs
        return {
            "start_sample": int(start),
            "end_sample": int(end),
            "start_utc": _utc(self._anchor + start / fs),
            "end_utc": _utc(self._anchor + end / fs),
            "fs": float(fs),
            **self._filled_field(start, end),
        }

    def _filled_field(self, start: int, end: int) -> dict[str, Any]:
        filled = self.filled_in(start, end)
        return {"filled": filled} if filled["samples"] else {}

    @staticmethod
    def _latency_ms(received_at: float) -> float:
        return round(max(0.0, time.monotonic() - received_at) * 1000.0, 3)

    def _emit(self, event: Event, payload: Any = None, kind: str | None = None) -> None:
        strip = None
        if kind == "alert" and self.evidence is not None:  # the alert refers to its strip
            payload, strip = self.evidence.attach_later(payload)
            event = {**event, "strip": payload.strip} if strip is not None else event
        if self.publisher is not None and payload is not None:
            getattr(self.publisher, f"publish_{kind}")(payload)
            if kind == "alert" and hasattr(self.publisher, "wait_handed"):
                self.publisher.wait_handed()  # out to the broker before the next work
        self.sink(event)
        if strip is not None:  # built and spooled after its alert: the alert is not delayed
            self.publisher.publish_strip(strip())

    def _measurements(self, start: int, end: int) -> dict[str, Any] | None:
        """The ``measurements`` of the beats in [start, end) measured so far (edge.measure).

        Kept for the chunk being processed: a frame's event and its alerts share them.
        """
        if self.measurer is None:
            return None
        key = (self._chunks_seen, start, end)
        if self._measured_for[0] != key:  # what is measured: no delineation on an alert's path
            self._measured_for = (key, self.measurer.span(start, end, catch_up=False))
        return self._measured_for[1]

    def _bpm_now(self) -> float | None:
        # the monitor's heart rate now, for the live waveform (None before the monitor)
        monitor = getattr(self, "monitor", None)
        return None if monitor is None else monitor.heart_rate()

    def _restored(self, samples: np.ndarray) -> tuple[np.ndarray, str | None]:
        """The frame with a confirmed LA/RA reversal or inverted leads undone (the
        standing lead-check alarms say which), and what was undone, or None."""
        if self.monitor is None or not self.restore_leads:
            return samples, None
        arms, inverted = self.monitor.lead_fix()
        if not arms and not inverted:
            return samples, None
        from edge.reversal import restore_leads

        done = (["LA/RA reversal"] if arms else []) + [f"{k} inverted" for k in inverted]
        self.summary.frames_restored += 1
        what = "undone before classification: " + ", ".join(done)
        return restore_leads(samples, arms, inverted), what

    def _frame_event(
        self, frame: Frame, c: Classification, chunk: Chunk, restored: str | None = None
    ) -> None:
        event: Event = {
            "type": "frame",
            "record": chunk.record,
            "start_sample": frame.start_sample,
            "end_sample": frame.end_sample,
            "fs": self.config.fs,
            "n_valid": frame.n_valid,
            "scores": c.scores_by_code(),
            "positives": list(c.positive_codes()),
            "filled": self.filled_in(frame.start_sample, frame.end_sample),
            "heart_rate": self.heart_rate(),
            "measurements": self._measurements(frame.start_sample, frame.end_sample),
            "leads_restored": restored,
            "bundle_sha256": self.bundle.sha256,
            "latency_ms": self._latency_ms(chunk.received_at),
        }
        payload = None
        if self.publisher is not None:
            from bridge.schema import FrameScores

            payload = FrameScores(
                device_id=self.device_id,
                frame=self._span(frame.start_sample, frame.end_sample, chunk.received_at),
                scores=event["scores"],
                positives=tuple(event["positives"]),
                record=chunk.record,
                bundle_sha256=self.bundle.sha256,
                heart_rate=event["heart_rate"],
                leads_restored=restored,
            )
        self._emit(event, payload, "frame")

    def _quality_event(
        self,
        start: int,
        end: int,
        reasons: Iterable[str],
        bad_leads: Iterable[str],
        received_at: float,
        record: str | None,
    ) -> None:
        from bridge.schema import Quality, QualityEvent

        q = QualityEvent(
            device_id=self.device_id,
            frame=self._span(start, end, received_at),
            quality=Quality(False, tuple(reasons), tuple(bad_leads)),
            record=record,
        )
        self._emit({"type": "quality", **q.to_json()}, q, "quality")

    def _alert_event(self, ev: AlertEvent, report: QualityReport, chunk: Chunk) -> None:
        from bridge.schema import Alert, Finding, Quality

        findings = []
        for code, score, thr in zip(ev.codes, ev.scores, ev.thresholds):
            info = self.classes[code]
            findings.append(Finding(code, info.abbreviation, info.name, score, thr))
        f = ev.frame
        alert = Alert(
            device_id=self.device_id,
            event=ev.event,
            findings=tuple(findings),
            frame=self._span(f.start_sample, f.end_sample, chunk.received_at),
            quality=Quality(report.ok, report.reasons, report.bad_leads),
            bundle_sha256=self.bundle.sha256,
            latency_ms=self._latency_ms(chunk.received_at),
            record=chunk.record,
            onset_sample=f.end_sample,
            cleared_sample=f.end_sample if ev.event == "cleared" else None,
            heart_rate=self.heart_rate(),
            measurements=self._measurements(f.start_sample, f.end_sample),
        )
        self.summary.alerts += 1
        self._emit({"type": "alert", **alert.to_json()}, alert, "alert")

    def heart_rate(self) -> dict[str, Any]:
        """``{"bpm": float | None, "method": ...}``: the heart rate now (edge.beats)."""
        bpm = None if self.monitor is None else self.monitor.heart_rate()
        return {"bpm": bpm, "method": HR_METHOD}

    def _alarm_event(self, ev: AlarmEvent, received_at: float, record: str | None) -> None:
        """A fast alarm (edge.alarms) as an ``ecg-edge/alert/2`` payload, kind and priority."""
        from bridge.schema import Alert, Quality

        technical = ev.kind == "technical"
        alert = Alert(
            device_id=self.device_id,
            event=ev.event,
            findings=(),
            frame=self._span(ev.window[0], max(ev.window[1], ev.window[0] + 1), received_at),
            quality=Quality(not technical, (ev.reason,) if technical else (), ()),
            bundle_sha256=None,
            latency_ms=self._latency_ms(received_at),
            record=record,
            kind=ev.kind,
            priority=ev.priority.value,
            condition=ev.condition,
            reason=ev.reason,
            onset_sample=ev.onset_sample,
            cleared_sample=ev.sample if ev.event == "cleared" else None,
            heart_rate={"bpm": ev.heart_rate, "method": HR_METHOD},
            leads=ev.leads,
        )
        self.summary.alarms += 1
        self._emit({"type": "alert", **alert.to_json()}, alert, "alert")

    def _status(self, state: str) -> None:
        from bridge.schema import StatusMessage

        s = self.summary
        extra = self.counters()
        if state == "offline":
            extra.update(
                records=len(s.records),
                standing=list(s.standing),
                seconds=round(s.seconds, 3),
            )
        msg = StatusMessage(
            device_id=self.device_id, state=state, bundle_sha256=self.bundle.sha256, extra=extra
        )
        self.sink({"type": "status", **msg.to_json()})
