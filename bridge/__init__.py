"""The MQTT side of ecg-edge: topics, versioned JSON payloads, a spooling publisher,
subscribers and forwarders. See ``docs/mqtt.md`` for the wire contract."""

from bridge.schema import (
    Alert,
    Finding,
    FrameScores,
    FrameSpan,
    PayloadError,
    Quality,
    QualityEvent,
    StatusMessage,
    validate,
)

__all__ = [
    "Alert",
    "Finding",
    "FrameScores",
    "FrameSpan",
    "PayloadError",
    "Quality",
    "QualityEvent",
    "StatusMessage",
    "validate",
]
