"""The listener: validate what arrives, drop duplicates by id, print it.

:class:`Listener` is the pure part (topic + bytes in, a :class:`Received` or
None out) and never raises on what it receives: a payload that is not JSON,
breaks its schema, or sits on the wrong topic is counted and logged with its
reason. :func:`listen` connects it to a broker.
"""

from __future__ import annotations

import collections
import json
import logging
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from bridge import topics
from bridge._conn import connect_blocking, make_client, parse_broker_url
from bridge.schema import Alert, FrameScores, PayloadError, QualityEvent, StatusMessage, parse

log = logging.getLogger("bridge.listen")

_KIND_OF_TOPIC = {"alerts": "alert", "status": "status", "quality": "quality", "frames": "frame"}


@dataclass(frozen=True)
class Received:
    """A valid, new message: its kind, device, topic and the decoded dataclass."""

    kind: str
    device_id: str
    topic: str
    message: Alert | StatusMessage | QualityEvent | FrameScores


class Listener:
    """Validate and de-duplicate messages; keep the last ``dedup_size`` ids (LRU)."""

    def __init__(self, *, dedup_size: int = 10_000) -> None:
        self.dedup_size = dedup_size
        self._seen: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._state: dict[str, str] = {}
        self.counts = {"accepted": 0, "duplicates": 0, "rejected": 0, "heartbeats": 0}
        self.last_reason = ""

    def handle(self, topic: str, raw: bytes) -> Received | None:
        """A :class:`Received` for a new valid alert, quality event, frame or status change.

        None for a duplicate, an unchanged status (heartbeats) or a rejected
        payload (logged with its reason). Never raises.
        """
        try:
            return self._handle(topic, raw)
        except PayloadError as exc:
            return self._reject(topic, str(exc))
        except Exception as exc:  # a safety net: nothing received may stop the listener
            return self._reject(topic, f"unexpected {type(exc).__name__}: {exc}")

    def _reject(self, topic: str, reason: str) -> None:
        self.counts["rejected"] += 1
        self.last_reason = reason
        log.warning("rejected message on %r: %s", topic[:200], reason)
        return None

    def _handle(self, topic: str, raw: bytes) -> Received | None:
        where = topics.parse_topic(topic)
        if where is None:
            raise PayloadError(f"not an ecg-edge topic: {topic[:200]!r}")
        device, tkind = where
        message = parse(raw)
        kind = _KIND_OF_TOPIC[tkind]
        if message.SCHEMA.split("/")[1] != kind:
            raise PayloadError(f"a {message.SCHEMA} payload does not belong on {topic!r}")
        if message.device_id != device:
            raise PayloadError(
                f"payload device_id {message.device_id!r} does not match the topic's {device!r}"
            )
        if isinstance(message, StatusMessage):
            state = "online" if message.state == "heartbeat" else message.state
            if self._state.get(device) == state:
                self.counts["heartbeats"] += 1
                return None
            self._state[device] = state
        else:
            key = getattr(message, "alert_id", None) or getattr(message, "event_id", None)
            if key is not None:
                key = f"{kind}:{key}"
                if key in self._seen:
                    self._seen.move_to_end(key)
                    self.counts["duplicates"] += 1
                    return None
                self._seen[key] = None
                if len(self._seen) > self.dedup_size:
                    self._seen.popitem(last=False)
        self.counts["accepted"] += 1
        return Received(kind, device, topic, message)


def _measured(m: dict | None) -> str:
    """`` | PR 236 ms, QRS 98 ms, QTc 441 ms, axis -35°`` from an alert's measurements."""
    if not m:
        return ""
    parts = [
        f"{name} {m[key]:.0f}{unit}"
        for name, key, unit in (
            ("PR", "pr_ms", " ms"),
            ("QRS", "qrs_ms", " ms"),
            ("QT", "qt_ms", " ms"),
            ("QTc", "qtc_bazett_ms", " ms"),
            ("axis", "axis_qrs_deg", "°"),
        )
        if m.get(key) is not None
    ]
    return " | " + ", ".join(parts) if parts else ""


def format_line(item: Received) -> str:
    """One readable line for a received message."""
    m = item.message
    if isinstance(m, Alert):
        found = ", ".join(
            f"{f.abbreviation} ({f.code} {f.name}) {f.score:.2f}/{f.threshold:.2f}"
            for f in m.findings
        )
        if m.kind != "diagnosis":
            leads = f" [{','.join(m.leads)}]" if m.leads else ""
            found = f"{m.condition}{leads}: {m.reason}"
        q = "ok" if m.quality.ok else "poor: " + "; ".join(m.quality.reasons)
        rec = f" record {m.record}" if m.record else ""
        hr = f" | HR {m.heart_rate.bpm:g} bpm" if m.heart_rate.bpm is not None else ""
        hr += _measured(m.measurements)
        at = m.onset_sample if m.event == "onset" else m.cleared_sample
        return (
            f"{m.emitted_at} {m.device_id} {m.priority.upper()} {m.kind.upper()} "
            f"{m.event.upper()} {found}{hr} | at sample {at} | frame "
            f"{m.frame.start_utc}..{m.frame.end_utc} samples {m.frame.start_sample}-"
            f"{m.frame.end_sample}{rec} | quality {q} | latency {m.latency_ms:.1f} ms | "
            f"id {m.alert_id}"
        )
    if isinstance(m, StatusMessage):
        extra = f" ({m.extra.get('reason')})" if m.extra.get("reason") else ""
        return f"{m.at} {m.device_id} STATUS {m.state}{extra} agent {m.agent_version}"
    if isinstance(m, QualityEvent):
        q = "ok" if m.quality.ok else "; ".join(m.quality.reasons) or "poor"
        leads = f" bad leads {','.join(m.quality.bad_leads)}" if m.quality.bad_leads else ""
        return f"{m.emitted_at} {m.device_id} QUALITY {q}{leads}"
    pos = ",".join(m.positives) or "-"
    return f"{m.emitted_at} {m.device_id} FRAME positives {pos}"


def format_json(item: Received) -> str:
    """One JSON line: ``{"kind", "topic", "payload"}``."""
    return json.dumps(
        {"kind": item.kind, "topic": item.topic, "payload": item.message.to_json()},
        separators=(",", ":"),
    )


def listen(
    broker_url: str,
    device: str = "+",
    *,
    json_lines: bool = False,
    quality: bool = False,
    frames: bool = False,
    out: TextIO | None = None,
    count: int | None = None,
    timeout_s: float | None = None,
    client_id: str | None = None,
    persistent: bool = False,
    ca_file: str | Path | None = None,
    cert_file: str | Path | None = None,
    key_file: str | Path | None = None,
    notice: Callable[[str], None] | None = None,
) -> Listener:
    """Subscribe to alerts and status (and quality/frames if asked) and print them.

    Returns after ``count`` printed messages, after ``timeout_s``, or on Ctrl-C.
    ``persistent`` keeps a broker session under ``client_id`` so alerts sent
    while the listener was away are delivered when it comes back. ``notice``
    receives one line when the connection is made, lost and made again
    (default: stderr), so a silent listener is known to be listening.
    """
    say = notice or (lambda line: print(line, file=sys.stderr, flush=True))
    topics.check_device_id(device, allow_wildcard=True)
    out = out or sys.stdout
    broker = parse_broker_url(broker_url)
    if persistent and not client_id:
        raise PayloadError("a persistent session needs a client id (--client-id)")
    client = make_client(
        broker,
        client_id or f"ecg-listen-{uuid.uuid4().hex[:8]}",
        clean_session=not persistent,
        ca_file=ca_file,
        cert_file=cert_file,
        key_file=key_file,
    )
    client.reconnect_delay_set(1, 30)
    wanted = (
        ["alerts", "status"] + (["quality"] if quality else []) + (["frames"] if frames else [])
    )
    subs = [
        (topics.topic(device, k, allow_wildcard=True), 0 if k == "frames" else 1) for k in wanted
    ]
    listener = Listener()
    done = threading.Event()
    printed = [0]

    connected_once = [False]

    def on_connect(c, userdata, flags, reason_code, properties):  # type: ignore[no-untyped-def]
        if reason_code.is_failure:
            if connected_once[0]:  # the first refusal is the command's error, said once
                say(f"warning: broker {broker} refused the connection: {reason_code}")
            return
        c.subscribe(subs)
        again = "reconnected to" if connected_once[0] else "connected to"
        connected_once[0] = True
        say(f"{again} {broker}, listening on {', '.join(t for t, _ in subs)}")

    def on_disconnect(c, userdata, flags, reason_code, properties):  # type: ignore[no-untyped-def]
        if connected_once[0] and not done.is_set() and not closing.is_set():
            say(f"warning: lost the broker {broker} ({reason_code}); reconnecting")

    def on_message(c, userdata, msg):  # type: ignore[no-untyped-def]
        item = listener.handle(msg.topic, msg.payload)
        if item is None:
            return
        print(format_json(item) if json_lines else format_line(item), file=out, flush=True)
        printed[0] += 1
        if count is not None and printed[0] >= count:
            done.set()

    closing = threading.Event()
    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.on_message = on_message
    connect_blocking(client, broker)
    client.loop_start()
    try:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not done.is_set():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            done.wait(0.2 if left is None else min(left, 0.2))
    finally:
        closing.set()
        client.disconnect()
        client.loop_stop()
    return listener
