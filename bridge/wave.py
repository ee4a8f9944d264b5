"""The central station's two small payloads: the live waveform and the acknowledgement.

``ecg/<device-id>/live`` (``ecg-edge/live/1``, QoS 0, not retained, only when
the agent runs with ``--live``): a few samples of one lead (II) every quarter
of a second, at 125 Hz (the 500 Hz band-passed stream decimated by 4), in
microvolts, with the monitor's current heart rate. About 190 bytes a message,
4 messages a second: 0.8 kB/s per bed. QoS 0 because a late sample of a live
display is worth nothing: a lost message leaves a gap in the trace.

``ecg/<device-id>/acks`` (``ecg-edge/ack/1``, QoS 1, not retained): a person
at a station acknowledged an alert; every station shows it and the device's
agent logs it.

>>> w = LiveWave("bed-1", "II", 125.0, 1000, (1, 2, 3), 72.0, at="2026-01-01T00:00:00.000Z")
>>> LiveWave.parse(encode(w.to_json())) == w
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bridge import topics
from bridge.schema import PayloadError, _check, _float, _set, decode, encode, new_id, utc_now

__all__ = ["Ack", "LiveWave", "acks_topic", "encode", "live_topic"]

LIVE_FS = 125.0
LIVE_EVERY_S = 0.25


def live_topic(device_id: str, *, allow_wildcard: bool = False) -> str:
    """``ecg/<device-id>/live``: QoS 0, not retained."""
    return (
        f"{topics.PREFIX}/{topics.check_device_id(device_id, allow_wildcard=allow_wildcard)}/live"
    )


def acks_topic(device_id: str, *, allow_wildcard: bool = False) -> str:
    """``ecg/<device-id>/acks``: QoS 1, not retained."""
    return (
        f"{topics.PREFIX}/{topics.check_device_id(device_id, allow_wildcard=allow_wildcard)}/acks"
    )


def _parse(cls: type, raw: bytes | str | dict[str, Any]) -> Any:
    payload = raw if isinstance(raw, dict) else decode(raw)
    if payload.get("schema") != cls.SCHEMA:
        raise PayloadError(
            f"Invalid payload at 'schema': expected {cls.SCHEMA}, got "
            f"{str(payload.get('schema'))[:80]!r}",
            "schema",
        )
    return cls.from_json(payload)


@dataclass(frozen=True)
class LiveWave:
    """``samples`` (microvolt ints) of ``lead`` from ``start_sample`` at ``fs`` Hz, and the HR."""

    device_id: str
    lead: str
    fs: float
    start_sample: int
    samples: tuple[int, ...]
    heart_rate: float | None = None
    at: str = field(default_factory=utc_now)

    SCHEMA = "ecg-edge/live/1"

    def __post_init__(self) -> None:
        _set(self, "fs", _float(self.fs))
        _set(self, "samples", tuple(int(v) for v in self.samples))
        _set(self, "start_sample", int(self.start_sample))
        if self.heart_rate is not None:
            _set(self, "heart_rate", round(_float(self.heart_rate), 1))
        _check(self.to_json(), "live", "live/1")

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": self.SCHEMA,
            "device_id": self.device_id,
            "lead": self.lead,
            "fs": self.fs,
            "start_sample": self.start_sample,
            "samples": list(self.samples),
            "heart_rate": self.heart_rate,
            "at": self.at,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LiveWave:
        _check(data, "live", "live/1")
        keys = ("device_id", "lead", "fs", "start_sample", "samples", "heart_rate", "at")
        return cls(**{k: data[k] for k in keys})

    @classmethod
    def parse(cls, raw: bytes | str | dict[str, Any]) -> LiveWave:
        return _parse(cls, raw)


@dataclass(frozen=True)
class Ack:
    """Alert ``alert_id`` of ``device_id`` acknowledged at ``station`` by ``by``."""

    alert_id: str
    device_id: str
    station: str
    by: str = ""
    ack_id: str = field(default_factory=new_id)
    at: str = field(default_factory=utc_now)

    SCHEMA = "ecg-edge/ack/1"

    def __post_init__(self) -> None:
        _check(self.to_json(), "ack", "ack/1")

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": self.SCHEMA,
            "ack_id": self.ack_id,
            "alert_id": self.alert_id,
            "device_id": self.device_id,
            "station": self.station,
            "by": self.by,
            "at": self.at,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Ack:
        _check(data, "ack", "ack/1")
        keys = ("alert_id", "device_id", "station", "by", "ack_id", "at")
        return cls(**{k: data[k] for k in keys})

    @classmethod
    def parse(cls, raw: bytes | str | dict[str, Any]) -> Ack:
        return _parse(cls, raw)
