"""The payload contract: frozen dataclasses, their JSON form and the JSON Schemas.

Every payload is a JSON object with a ``schema`` field naming its versioned JSON
Schema (``ecg-edge/alert/1``, ``ecg-edge/status/1``, ``ecg-edge/quality/1``,
``ecg-edge/frame/1``); the schema files ship in ``bridge/schemas/``. The rules
live in those files only: each dataclass validates itself in ``__post_init__``
by checking its own JSON form against them, so a payload that can be built can
be received, and vice versa.

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
from jsonschema.exceptions import best_match

from bridge.errors import EcgEdgeError

KINDS = {
    "ecg-edge/alert/1": "alert",
    "ecg-edge/status/1": "status",
    "ecg-edge/quality/1": "quality",
    "ecg-edge/frame/1": "frame",
}
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
def schema_document(kind: str) -> dict[str, Any]:
    """The JSON Schema of ``kind`` (``alert``, ``status``, ``quality``, ``frame``)."""
    text = (SCHEMA_DIR / f"{kind}-1.json").read_text("utf-8")
    return json.loads(text)


@cache
def _validator(kind: str, part: str | None = None) -> jsonschema.Draft202012Validator:
    doc = schema_document(kind)
    if part is not None:  # a nested object (finding, frame, quality) on its own
        doc = {"$defs": doc["$defs"], "$ref": f"#/$defs/{part}"}
    return jsonschema.Draft202012Validator(doc)


def _check(payload: Any, what: str, kind: str, part: str | None = None) -> None:
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
    _check(payload, kind, kind)
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
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FrameSpan:
        keys = ("start_sample", "end_sample", "start_utc", "end_utc", "fs")
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
class Alert:
    """A finding appeared (``onset``) or went away (``cleared``) on a device.

    ``alert_id`` is unique and kept by every redelivery: subscribers drop
    duplicates by it. ``latency_ms`` runs from the frame's last sample to publish.
    """

    device_id: str
    event: str
    findings: tuple[Finding, ...]
    frame: FrameSpan
    quality: Quality
    bundle_sha256: str
    latency_ms: float
    record: str | None = None
    alert_id: str = field(default_factory=new_id)
    emitted_at: str = field(default_factory=utc_now)

    SCHEMA = "ecg-edge/alert/1"

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
        _set(self, "latency_ms", _float(self.latency_ms))
        _check(self.to_json(), "alert", "alert")

    def to_json(self) -> dict[str, Any]:
        findings = self.findings
        return {
            "schema": self.SCHEMA,
            "alert_id": self.alert_id,
            "device_id": self.device_id,
            "event": self.event,
            "findings": [f.to_json() for f in findings]
            if isinstance(findings, tuple)
            else findings,
            "frame": self.frame.to_json() if isinstance(self.frame, FrameSpan) else self.frame,
            "quality": self.quality.to_json()
            if isinstance(self.quality, Quality)
            else self.quality,
            "bundle_sha256": self.bundle_sha256,
            "latency_ms": self.latency_ms,
            "record": self.record,
            "emitted_at": self.emitted_at,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Alert:
        _check(data, "alert", "alert")
        return cls(
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
