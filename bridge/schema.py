"""The payload contract: frozen dataclasses, their JSON form and the JSON Schemas.

Every payload is a JSON object with a ``schema`` field naming its versioned JSON
Schema (``ecg-edge/alert/2``, ``ecg-edge/status/1``, ``ecg-edge/quality/1``,
``ecg-edge/frame/1``); the schema files ship in ``bridge/schemas/``. Alerts are
sent as version 2 (diagnoses and fast alarms, with a priority); version 1
alerts are still received, read as low-priority diagnoses. The rules
live in those files only: each dataclass validates itself in ``__post_init__``
by checking its own JSON form against them, so a payload that can be built can
be received, and vice versa. A payload is first checked by ``jsonschema-rs``
(compiled, about 80 times faster: 25 us for an alert instead of 2 ms on the
alert's path); only one that it refuses goes through ``jsonschema``, which
has the last word and names the failing field. (``jsonschema-rs`` takes a
tuple for an array, as ``json`` encodes it; nothing else differs.)

>>> f = Finding("164889003", "AF", "atrial fibrillation", 1.3, 0.2)
>>> Finding.from_json(f.to_json()) == f
True
"""

from __future__ import annotations

import json
import math
import numbers
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import jsonschema_rs
from jsonschema.exceptions import best_match

from bridge.errors import EcgEdgeError

KINDS = {
    "ecg-edge/alert/1": "alert",
    "ecg-edge/alert/2": "alert",
    "ecg-edge/status/1": "status",
    "ecg-edge/quality/1": "quality",
    "ecg-edge/frame/1": "frame",
}
LATEST = {"alert": 2, "status": 1, "quality": 1, "frame": 1}
ALERT_KINDS = ("diagnosis", "physiological", "technical")
PRIORITIES = ("high", "medium", "low")  # IEC 60601-1-8, most urgent first
LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
MAX_PAYLOAD_BYTES = 256 * 1024
SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"


class PayloadError(EcgEdgeError, ValueError):
    """A payload is not valid JSON or breaks its schema; ``field`` names where."""

    def __init__(self, message: str, field: str = "") -> None:
        self.field = field
        super().__init__(message)


def utc_now() -> str:
    """The current UTC time as ISO 8601 with milliseconds and ``Z``."""
    return format_utc(datetime.now(timezone.utc))


def format_utc(when: datetime) -> str:
    """Format an aware datetime as ``2026-11-24T19:59:07.123Z`` (naive means UTC)."""
    if when.tzinfo is not None:
        when = when.astimezone(timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def new_id() -> str:
    """A fresh unique id (uuid4, 32 hex digits)."""
    return uuid.uuid4().hex


@cache
def schema_document(kind: str, version: int | None = None) -> dict[str, Any]:
    """The JSON Schema of ``kind`` (``alert``, ``status``, ...), by default its latest version."""
    text = (SCHEMA_DIR / f"{kind}-{version or LATEST[kind]}.json").read_text("utf-8")
    return json.loads(text)


def _kind_version(kind: str) -> tuple[str, int | None]:
    # "alert" -> the latest; "alert/1" -> that version
    name, _, version = kind.partition("/")
    return name, int(version) if version else None


def _document(kind: str, part: str | None) -> dict[str, Any]:
    doc = schema_document(*_kind_version(kind))
    if part is not None:  # a nested object (finding, frame, quality) on its own
        doc = {"$defs": doc["$defs"], "$ref": f"#/$defs/{part}"}
    return doc


@cache
def _validator(kind: str, part: str | None = None) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(_document(kind, part), format_checker=_FORMATS)


@cache
def _fast_validator(kind: str, part: str | None = None) -> jsonschema_rs.Draft202012Validator:
    return jsonschema_rs.Draft202012Validator(
        _document(kind, part), formats={"date-time": _is_real_utc}, validate_formats=True
    )


_FORMATS = jsonschema.FormatChecker(formats=())


@_FORMATS.checks("date-time", raises=ValueError)
def _real_utc(value: Any) -> bool:
    """A ``utc`` string names a real instant (the pattern alone lets 2026-02-30 through)."""
    if not isinstance(value, str) or len(value) < 19:
        return True  # the type and pattern checks report it
    second = min(int(value[17:19]), 59)  # a leap second (60) is a real UTC time
    datetime(int(value[0:4]), int(value[5:7]), int(value[8:10]),
             int(value[11:13]), int(value[14:16]), second)  # fmt: skip
    return True


def _is_real_utc(value: Any) -> bool:
    try:
        return _real_utc(value)
    except ValueError:
        return False


def _check(payload: Any, what: str, kind: str, part: str | None = None) -> None:
    if _fast_validator(kind, part).is_valid(payload):
        return
    error = best_match(_validator(kind, part).iter_errors(payload))
    if error is None:
        return
    where = "/".join(str(p) for p in error.absolute_path)
    message = error.message if len(error.message) <= 200 else error.message[:200] + "..."
    at = f" at {where!r}" if where else ""
    raise PayloadError(f"Invalid {what} payload{at}: {message}", where)


def validate(payload: Any) -> str:
    """Check a decoded payload against the schema it names; return its kind.

    Raises :class:`PayloadError` naming the failing field, e.g.
    ``Invalid alert payload at 'findings/0/score': 'high' is not of type 'number'``.
    """
    if not isinstance(payload, dict):
        raise PayloadError(f"Invalid payload: expected a JSON object, got {type(payload).__name__}")
    name = payload.get("schema")
    kind = KINDS.get(name) if isinstance(name, str) else None
    if kind is None:
        shown = repr(name)[:80]
        raise PayloadError(
            f"Invalid payload at 'schema': expected one of {', '.join(KINDS)}, got {shown}",
            "schema",
        )
    _check(payload, kind, name.split("/", 1)[1])
    return kind


def decode(raw: bytes | str) -> dict[str, Any]:
    """Decode an MQTT payload into a JSON object; PayloadError when it cannot be."""
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise PayloadError(f"Invalid payload: {len(raw)} bytes, more than {MAX_PAYLOAD_BYTES}")
    try:
        text = raw.decode("utf-8") if isinstance(raw, (bytes, bytearray)) else raw
        value = json.loads(text, parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise PayloadError(f"Invalid payload: not JSON ({str(exc)[:120]})") from None
    if not isinstance(value, dict):
        raise PayloadError(f"Invalid payload: expected a JSON object, got {type(value).__name__}")
    return value


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def encode(payload: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON (NaN and infinities refused)."""
    return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode("utf-8")


def parse(raw: bytes | str | dict[str, Any]) -> Alert | StatusMessage | QualityEvent | FrameScores:
    """Decode, validate and build the dataclass a payload describes."""
    payload = raw if isinstance(raw, dict) else decode(raw)
    kind = validate(payload)
    return _CLASSES[kind].from_json(payload)


def _float(value: Any) -> Any:
    # ints and numpy scalars are numbers too; bools are not. NaN/inf cannot travel as JSON.
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        value = float(value)
        if not math.isfinite(value):
            raise PayloadError(f"Invalid value: expected a finite number, got {value}")
    return value


def _set(obj: Any, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)


@dataclass(frozen=True)
class Finding:
    """One class of the classifier: SNOMED CT code, names, SVM score and its threshold."""

    code: str
    abbreviation: str
    name: str
    score: float
    threshold: float

    def __post_init__(self) -> None:
        _set(self, "score", _float(self.score))
        _set(self, "threshold", _float(self.threshold))
        _check(self.to_json(), "finding", "alert", "finding")

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "abbreviation": self.abbreviation,
            "name": self.name,
            "score": self.score,
            "threshold": self.threshold,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Finding:
        return cls(
            **{k: data.get(k) for k in ("code", "abbreviation", "name", "score", "threshold")}
        )


@dataclass(frozen=True)
class FrameSpan:
    """Where a frame lies: sample indices ``[start_sample, end_sample)`` at ``fs`` Hz, and UTC."""

    start_sample: int
    end_sample: int
    start_utc: str
    end_utc: str
    fs: float
    filled: dict[str, Any] | None = None  # {"samples": n, "runs": [[start, n], ...]} or None

    def __post_init__(self) -> None:
        _set(self, "fs", _float(self.fs))
        for name in ("start_sample", "end_sample"):  # numpy integers become int
            value = getattr(self, name)
            if isinstance(value, numbers.Integral) and not isinstance(value, bool):
                _set(self, name, int(value))
        _check(self.to_json(), "frame", "alert", "frame")
        if self.end_sample <= self.start_sample:
            raise PayloadError(
                f"Invalid frame payload at 'end_sample': expected more than start_sample "
                f"{self.start_sample}, got {self.end_sample}",
                "end_sample",
            )

    def to_json(self) -> dict[str, Any]:
        return {
            "start_sample": self.start_sample,
            "end_sample": self.end_sample,
            "start_utc": self.start_utc,
            "end_utc": self.end_utc,
            "fs": self.fs,
            **({} if self.filled is None else {"filled": self.filled}),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FrameSpan:
        keys = ("start_sample", "end_sample", "start_utc", "end_utc", "fs", "filled")
        return cls(**{k: data.get(k) for k in keys})


@dataclass(frozen=True)
class Quality:
    """Signal quality of a frame: ``ok``, human-readable reasons, leads judged bad."""

    ok: bool
    reasons: tuple[str, ...] = ()
    bad_leads: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.reasons, (list, tuple)):
            _set(self, "reasons", tuple(self.reasons))
        if isinstance(self.bad_leads, (list, tuple)):
            _set(self, "bad_leads", tuple(self.bad_leads))
        _check(self.to_json(), "quality", "alert", "quality")

    def to_json(self) -> dict[str, Any]:
        reasons = list(self.reasons) if isinstance(self.reasons, tuple) else self.reasons
        leads = list(self.bad_leads) if isinstance(self.bad_leads, tuple) else self.bad_leads
        return {"ok": self.ok, "reasons": reasons, "bad_leads": leads}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Quality:
        return cls(data.get("ok"), data.get("reasons", ()), data.get("bad_leads", ()))


def _nested(obj: Any, name: str, cls: type, what: str) -> None:
    value = getattr(obj, name)
    if isinstance(value, dict):
        _set(obj, name, cls.from_json(value))
    elif not isinstance(value, cls):
        raise PayloadError(
            f"Invalid {what} payload at {name!r}: expected a {cls.__name__}, "
            f"got {type(value).__name__}",
            name,
        )


@dataclass(frozen=True)
class HeartRate:
    """Heart rate in beats per minute (None when none can be given) and how it was averaged."""

    bpm: float | None
    method: str

    def __post_init__(self) -> None:
        if self.bpm is not None:
            _set(self, "bpm", round(_float(self.bpm), 1))
        _check(self.to_json(), "heart rate", "alert", "heart_rate")

    def to_json(self) -> dict[str, Any]:
        return {"bpm": self.bpm, "method": self.method}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HeartRate:
        return cls(data.get("bpm"), data.get("method"))


NO_HEART_RATE = HeartRate(None, "not measured")


def _diagnosis_reason(findings: tuple[Finding, ...]) -> str:
    text = ", ".join(f"{f.abbreviation} {f.score:.2f}/{f.threshold:.2f}" for f in findings)
    return ("classifier: " + text)[:500] if text else "classifier"


@dataclass(frozen=True)
class Alert:
    """A diagnosis or an alarm started (``onset``) or ended (``cleared``) on a device.

    ``kind`` is ``diagnosis`` (the frame classifier's ``findings``),
    ``physiological`` or ``technical`` (the fast alarms, named by
    ``condition``); ``priority`` is IEC 60601-1-8's ``high``, ``medium`` or
    ``low``. ``onset_sample`` is the stream sample (at ``frame.fs``) at which
    the condition was declared, ``cleared_sample`` where it ended (None at
    onset). ``strip`` and ``measurements`` are optional objects reserved for
    the ECG evidence and measured intervals.

    ``alert_id`` is unique and kept by every redelivery: subscribers drop
    duplicates by it. ``latency_ms`` runs from the last sample used to publish.
    A version 1 payload reads as a low-priority diagnosis declared at the
    frame's end; :meth:`to_json` always writes version 2.
    """

    device_id: str
    event: str
    findings: tuple[Finding, ...]
    frame: FrameSpan
    quality: Quality
    bundle_sha256: str | None
    latency_ms: float
    record: str | None = None
    alert_id: str = field(default_factory=new_id)
    emitted_at: str = field(default_factory=utc_now)
    kind: str = "diagnosis"
    priority: str = "low"
    condition: str = "diagnosis"
    reason: str = ""
    onset_sample: int | None = None
    cleared_sample: int | None = None
    heart_rate: HeartRate = NO_HEART_RATE
    leads: tuple[str, ...] = ()
    strip: dict[str, Any] | None = None
    measurements: dict[str, Any] | None = None

    SCHEMA = "ecg-edge/alert/2"

    def __post_init__(self) -> None:
        if isinstance(self.findings, (list, tuple)):
            _set(
                self,
                "findings",
                tuple(Finding.from_json(f) if isinstance(f, dict) else f for f in self.findings),
            )
            for i, f in enumerate(self.findings):
                if not isinstance(f, Finding):
                    raise PayloadError(
                        f"Invalid alert payload at 'findings/{i}': expected a Finding, "
                        f"got {type(f).__name__}",
                        f"findings/{i}",
                    )
        _nested(self, "frame", FrameSpan, "alert")
        _nested(self, "quality", Quality, "alert")
        _nested(self, "heart_rate", HeartRate, "alert")
        _set(self, "latency_ms", _float(self.latency_ms))
        if isinstance(self.leads, list):
            _set(self, "leads", tuple(self.leads))
        for name in ("onset_sample", "cleared_sample"):
            value = getattr(self, name)
            if isinstance(value, numbers.Integral) and not isinstance(value, bool):
                _set(self, name, int(value))
        if self.onset_sample is None and isinstance(self.frame, FrameSpan):
            _set(self, "onset_sample", self.frame.end_sample)
        if self.cleared_sample is None and self.event == "cleared":
            _set(self, "cleared_sample", self.onset_sample)
        if not self.reason and self.kind == "diagnosis" and isinstance(self.findings, tuple):
            _set(self, "reason", _diagnosis_reason(self.findings))
        _check(self.to_json(), "alert", "alert")

    def to_json(self) -> dict[str, Any]:
        findings = self.findings
        out: dict[str, Any] = {
            "schema": self.SCHEMA,
            "alert_id": self.alert_id,
            "device_id": self.device_id,
            "event": self.event,
            "kind": self.kind,
            "priority": self.priority,
            "condition": self.condition,
            "reason": self.reason,
            "findings": [f.to_json() for f in findings]
            if isinstance(findings, tuple)
            else findings,
            "frame": self.frame.to_json() if isinstance(self.frame, FrameSpan) else self.frame,
            "onset_sample": self.onset_sample,
            "cleared_sample": self.cleared_sample,
            "heart_rate": self.heart_rate.to_json()
            if isinstance(self.heart_rate, HeartRate)
            else self.heart_rate,
            "quality": self.quality.to_json()
            if isinstance(self.quality, Quality)
            else self.quality,
            "bundle_sha256": self.bundle_sha256,
            "latency_ms": self.latency_ms,
            "record": self.record,
            "emitted_at": self.emitted_at,
        }
        if self.leads:
            out["leads"] = list(self.leads) if isinstance(self.leads, tuple) else self.leads
        if self.strip is not None:
            out["strip"] = self.strip
        if self.measurements is not None:
            out["measurements"] = self.measurements
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Alert:
        version1 = data.get("schema") == "ecg-edge/alert/1"
        _check(data, "alert", "alert/1" if version1 else "alert")
        common = dict(
            device_id=data["device_id"],
            event=data["event"],
            findings=tuple(Finding.from_json(f) for f in data["findings"]),
            frame=FrameSpan.from_json(data["frame"]),
            quality=Quality.from_json(data["quality"]),
            bundle_sha256=data["bundle_sha256"],
            latency_ms=data["latency_ms"],
            record=data["record"],
            alert_id=data["alert_id"],
            emitted_at=data["emitted_at"],
        )
        if version1:
            return cls(**common)
        return cls(
            **common,
            kind=data["kind"],
            priority=data["priority"],
            condition=data["condition"],
            reason=data["reason"],
            onset_sample=data["onset_sample"],
            cleared_sample=data["cleared_sample"],
            heart_rate=HeartRate.from_json(data["heart_rate"]),
            leads=tuple(data.get("leads", ())),
            strip=data.get("strip"),
            measurements=data.get("measurements"),
        )


@dataclass(frozen=True)
class StatusMessage:
    """Device state on the retained status topic: ``online``, ``heartbeat`` or ``offline``.

    ``heartbeat`` means still online; ``extra`` carries counters (sent, pending...).
    """

    device_id: str
    state: str
    at: str = field(default_factory=utc_now)
    bundle_sha256: str | None = None
    agent_version: str = "0.1.0"
    extra: dict[str, Any] = field(default_factory=dict)

    SCHEMA = "ecg-edge/status/1"

    def __post_init__(self) -> None:
        _check(self.to_json(), "status", "status")

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": self.SCHEMA,
            "device_id": self.device_id,
            "state": self.state,
            "at": self.at,
            "bundle_sha256": self.bundle_sha256,
            "agent_version": self.agent_version,
            "extra": dict(self.extra) if isinstance(self.extra, dict) else self.extra,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StatusMessage:
        _check(data, "status", "status")
        keys = ("device_id", "state", "at", "bundle_sha256", "agent_version", "extra")
        return cls(**{k: data[k] for k in keys})


@dataclass(frozen=True)
class QualityEvent:
    """The signal quality of a frame changed (lead off, flat, clipped, noisy...)."""

    device_id: str
    frame: FrameSpan
    quality: Quality
    record: str | None = None
    event_id: str = field(default_factory=new_id)
    emitted_at: str = field(default_factory=utc_now)

    SCHEMA = "ecg-edge/quality/1"

    def __post_init__(self) -> None:
        _nested(self, "frame", FrameSpan, "quality")
        _nested(self, "quality", Quality, "quality")
        _check(self.to_json(), "quality", "quality")

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": self.SCHEMA,
            "event_id": self.event_id,
            "device_id": self.device_id,
            "frame": self.frame.to_json() if isinstance(self.frame, FrameSpan) else self.frame,
            "quality": self.quality.to_json()
            if isinstance(self.quality, Quality)
            else self.quality,
            "record": self.record,
            "emitted_at": self.emitted_at,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> QualityEvent:
        _check(data, "quality", "quality")
        return cls(
            device_id=data["device_id"],
            frame=FrameSpan.from_json(data["frame"]),
            quality=Quality.from_json(data["quality"]),
            record=data["record"],
            event_id=data["event_id"],
            emitted_at=data["emitted_at"],
        )


@dataclass(frozen=True)
class FrameScores:
    """Every class's score for one frame (``scores``: SNOMED code -> score)."""

    device_id: str
    frame: FrameSpan
    scores: dict[str, float]
    positives: tuple[str, ...] = ()
    record: str | None = None
    emitted_at: str = field(default_factory=utc_now)
    bundle_sha256: str | None = None  # the bundle that scored the frame (optional in /1)
    heart_rate: dict[str, Any] | None = None  # {"bpm", "method"} at its end (optional in /1)
    leads_restored: str | None = None  # what was undone before classification (optional)

    SCHEMA = "ecg-edge/frame/1"

    def __post_init__(self) -> None:
        _nested(self, "frame", FrameSpan, "frame")
        if isinstance(self.scores, dict):
            _set(self, "scores", {str(k): _float(v) for k, v in self.scores.items()})
        if isinstance(self.positives, (list, tuple)):
            _set(self, "positives", tuple(self.positives))
        _check(self.to_json(), "frame", "frame")

    def to_json(self) -> dict[str, Any]:
        pos = list(self.positives) if isinstance(self.positives, tuple) else self.positives
        return {
            "schema": self.SCHEMA,
            "device_id": self.device_id,
            "frame": self.frame.to_json() if isinstance(self.frame, FrameSpan) else self.frame,
            "scores": dict(self.scores) if isinstance(self.scores, dict) else self.scores,
            "positives": pos,
            "record": self.record,
            "emitted_at": self.emitted_at,
            **({"bundle_sha256": self.bundle_sha256} if self.bundle_sha256 else {}),
            **({"heart_rate": self.heart_rate} if self.heart_rate is not None else {}),
            **({"leads_restored": self.leads_restored} if self.leads_restored else {}),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FrameScores:
        _check(data, "frame", "frame")
        return cls(
            device_id=data["device_id"],
            frame=FrameSpan.from_json(data["frame"]),
            scores=data["scores"],
            positives=tuple(data["positives"]),
            record=data["record"],
            emitted_at=data["emitted_at"],
            bundle_sha256=data.get("bundle_sha256"),
            heart_rate=data.get("heart_rate"),
            leads_restored=data.get("leads_restored"),
        )


_CLASSES: dict[str, Any] = {
    "alert": Alert,
    "status": StatusMessage,
    "quality": QualityEvent,
    "frame": FrameScores,
}


def sample_alert(
    device_id: str = "demo-1", *, alert_id: str | None = None, event: str = "onset"
) -> Alert:
    """A valid example alert (atrial fibrillation), for tests, docs and ``publish-test``."""
    extra = {"alert_id": alert_id} if alert_id else {}
    return Alert(
        device_id=device_id,
        event=event,
        findings=(Finding("164889003", "AF", "atrial fibrillation", 1.42, 0.31),),
        frame=FrameSpan(0, 15000, "2026-01-01T00:00:00.000Z", "2026-01-01T00:00:30.000Z", 500.0),
        quality=Quality(True, (), ()),
        bundle_sha256="0" * 64,
        latency_ms=7.5,
        record="A0001",
        **extra,
    )


def sample_alarm(
    device_id: str = "demo-1", *, alert_id: str | None = None, event: str = "onset"
) -> Alert:
    """A valid example fast alarm (asystole, high priority), for tests and docs."""
    extra = {"alert_id": alert_id} if alert_id else {}
    cleared = event == "cleared"
    return Alert(
        device_id=device_id,
        event=event,
        findings=(),
        frame=FrameSpan(8000, 10500, "2026-01-01T00:00:16.000Z", "2026-01-01T00:00:21.000Z", 500.0),
        quality=Quality(True, (), ()),
        bundle_sha256=None,
        latency_ms=1.2,
        record="A0001",
        kind="physiological",
        priority="high",
        condition="asystole",
        reason="no beat for 5.0 s (limit 4.0 s)",
        onset_sample=10500,
        cleared_sample=12000 if cleared else None,
        heart_rate=HeartRate(None, "median of the last 8 R-R intervals, updated every second"),
        **extra,
    )
