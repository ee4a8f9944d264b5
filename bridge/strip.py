"""The ECG strip of an alert: its payload, its topic and its wire encoding.

Every alert carries, in its ``strip`` member, a reference to a companion
message on ``ecg/<device-id>/strips/<alert-id>`` (QoS 1, **retained**) that
holds the leads of the last 10 s before the decision: 500 Hz, microvolts as
16-bit integers, each lead delta-coded, the whole zlib-compressed and base64'd
(``int16-delta-zlib-base64``). A 12-lead 10 s strip is 60 000 samples, about
53 kB on the wire against about 230 kB as JSON integers; the alert itself
stays at about 1.5 kB, so subscribers that only want alerts (and the alert's
latency) do not pay for the signal. Being retained on a topic named after the
alert, a strip is retrievable by ``alert_id`` at any later time by any client
(``ecg-bridge strip ALERT_ID``, :class:`StripFetcher`), not only by one that
was subscribed; the publisher keeps the last ``keep`` strips of its device
retained and clears older ones (an empty retained message). Both the strip and
its alert go through the publisher's sqlite spool: durable, in order, at least
once.

Only the standard library here (the station and ``ecg-bridge strip`` decode
with it); the edge encodes from numpy with :func:`encode_samples`' contract.

>>> data = encode_leads([[0, 10, 20, -5], [100, 100, 99, 98]])
>>> decode_leads(data, 2, 4)
[[0, 10, 20, -5], [100, 100, 99, 98]]
"""

from __future__ import annotations

import base64
import binascii
import re
import sqlite3
import sys
import threading
import zlib
from array import array
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import Path
from typing import Any

from bridge import topics
from bridge.schema import LEADS, PayloadError, _check, _float, _set, decode, utc_now

ENCODING = "int16-delta-zlib-base64"
STRIP_SECONDS = 10.0
KEEP_STRIPS = 200  # retained strips per device on the broker (about 10 MB)
_ID_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


def strip_topic(device_id: str, alert_id: str) -> str:
    """``ecg/<device-id>/strips/<alert-id>``: QoS 1, retained."""
    if not isinstance(alert_id, str) or not _ID_RE.match(alert_id):
        raise PayloadError(f"Invalid value for 'alert_id': expected an id, got {alert_id!r}")
    return f"{topics.PREFIX}/{topics.check_device_id(device_id)}/strips/{alert_id}"


def parse_strip_topic(name: str) -> tuple[str, str] | None:
    """``ecg/<device>/strips/<alert-id>`` -> ``(device, alert_id)``; None otherwise."""
    parts = name.split("/")
    if len(parts) != 4 or parts[0] != topics.PREFIX or parts[2] != "strips":
        return None
    try:
        topics.check_device_id(parts[1])
    except Exception:
        return None
    return (parts[1], parts[3]) if _ID_RE.match(parts[3]) else None


def _wrap16(v: int) -> int:
    return ((v + 32768) & 0xFFFF) - 32768


def encode_leads(leads: list[list[int]] | tuple[tuple[int, ...], ...], level: int = 1) -> str:
    """Microvolt integers per lead (equal lengths) -> the ``data`` string.

    Values are clipped to int16; each lead is its first sample then the
    differences (mod 2^16), little-endian, leads one after the other.
    """
    out = array("h")
    for lead in leads:
        prev = 0
        for v in lead:
            v = max(-32768, min(32767, int(v)))
            out.append(_wrap16(v - prev))
            prev = v
    if sys.byteorder == "big":
        out.byteswap()
    return base64.b64encode(zlib.compress(out.tobytes(), level)).decode("ascii")


def decode_leads(data: str, n_leads: int, n_samples: int) -> list[list[int]]:
    """The ``data`` string -> ``n_leads`` lists of ``n_samples`` microvolt integers."""
    try:
        raw = zlib.decompress(
            base64.b64decode(data, validate=True), bufsize=2 * n_leads * n_samples
        )
    except (binascii.Error, zlib.error, ValueError) as exc:
        raise PayloadError(
            f"Invalid strip payload at 'data': cannot decode ({exc})", "data"
        ) from None
    if len(raw) != 2 * n_leads * n_samples:
        raise PayloadError(
            f"Invalid strip payload at 'data': {len(raw)} bytes, expected "
            f"{2 * n_leads * n_samples} ({n_leads} leads x {n_samples} samples x 2)",
            "data",
        )
    deltas = array("h")
    deltas.frombytes(raw)
    if sys.byteorder == "big":
        deltas.byteswap()
    return [
        [_wrap16(v) for v in accumulate(deltas[i * n_samples : (i + 1) * n_samples])]
        for i in range(n_leads)
    ]


@dataclass(frozen=True)
class Strip:
    """The signal of one alert: (n_leads, n_samples) microvolt integers from ``start_sample``.

    ``samples`` is a tuple of tuples (one per lead of ``leads``); ``fs`` in Hz;
    ``start_sample`` indexes the device's 500 Hz stream like ``frame.start_sample``.
    ``data`` (the encoded samples) is computed once, or taken as received.
    """

    alert_id: str
    device_id: str
    fs: float
    start_sample: int
    start_utc: str
    leads: tuple[str, ...]
    samples: tuple[tuple[int, ...], ...]
    filter: str = "band-pass 0.5-45 Hz"
    alert: dict[str, Any] = field(default_factory=dict)
    emitted_at: str = field(default_factory=utc_now)
    data: str = ""

    SCHEMA = "ecg-edge/strip/1"

    def __post_init__(self) -> None:
        _set(self, "fs", _float(self.fs))
        _set(self, "leads", tuple(self.leads))
        _set(self, "samples", tuple(tuple(int(v) for v in lead) for lead in self.samples))
        lengths = {len(lead) for lead in self.samples}
        if len(self.samples) != len(self.leads) or len(lengths) != 1:
            raise PayloadError(
                "Invalid strip payload at 'samples': expected one list per lead, all of one "
                f"length, got {len(self.samples)} lists of lengths {sorted(lengths)} "
                f"for {len(self.leads)} leads",
                "samples",
            )
        if not self.data:
            _set(self, "data", encode_leads(self.samples))
        _check(self.to_json(), "strip", "strip/1")

    @property
    def n_samples(self) -> int:
        return len(self.samples[0])

    @property
    def seconds(self) -> float:
        return self.n_samples / self.fs

    def lead(self, name: str) -> tuple[int, ...]:
        """The microvolts of lead ``name``."""
        return self.samples[self.leads.index(name)]

    @property
    def topic(self) -> str:
        return strip_topic(self.device_id, self.alert_id)

    def reference(self) -> dict[str, Any]:
        """The alert's ``strip`` member: where this strip is and what it covers."""
        return strip_reference(
            self.device_id, self.alert_id, self.start_sample, self.n_samples, self.fs, self.leads
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": self.SCHEMA,
            "alert_id": self.alert_id,
            "device_id": self.device_id,
            "fs": self.fs,
            "start_sample": self.start_sample,
            "n_samples": self.n_samples,
            "start_utc": self.start_utc,
            "units": "uV",
            "filter": self.filter,
            "leads": list(self.leads),
            "encoding": ENCODING,
            "data": self.data,
            "alert": self.alert,
            "emitted_at": self.emitted_at,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Strip:
        _check(data, "strip", "strip/1")
        samples = decode_leads(data["data"], len(data["leads"]), data["n_samples"])
        return cls(
            alert_id=data["alert_id"],
            device_id=data["device_id"],
            fs=data["fs"],
            start_sample=data["start_sample"],
            start_utc=data["start_utc"],
            leads=tuple(data["leads"]),
            samples=tuple(tuple(lead) for lead in samples),
            filter=data["filter"],
            alert=data["alert"],
            emitted_at=data["emitted_at"],
            data=data["data"],
        )

    @classmethod
    def parse(cls, raw: bytes | str) -> Strip:
        """Decode and validate a strip payload (PayloadError otherwise)."""
        payload = decode(raw)
        if payload.get("schema") != cls.SCHEMA:
            raise PayloadError(
                f"Invalid payload at 'schema': expected {cls.SCHEMA}, got "
                f"{str(payload.get('schema'))[:80]!r}",
                "schema",
            )
        return cls.from_json(payload)


def strip_reference(
    device_id: str,
    alert_id: str,
    start_sample: int,
    n_samples: int,
    fs: float,
    leads: tuple[str, ...] = LEADS,
) -> dict[str, Any]:
    """The alert's ``strip`` member (``ecg-edge/alert/2``): a reference to the companion message.

    ``{"schema": "ecg-edge/strip/1", "topic", "start_sample", "n_samples", "fs", "leads"}``.
    """
    return {
        "schema": Strip.SCHEMA,
        "topic": strip_topic(device_id, alert_id),
        "start_sample": int(start_sample),
        "n_samples": int(n_samples),
        "fs": float(fs),
        "leads": list(leads),
    }


class StripShelf:
    """The strips a publisher left retained on the broker, oldest first (a sqlite table).

    :meth:`add` records a new strip topic and returns the topics to clear (an
    empty retained message) so that at most ``keep`` stay on the broker. The
    table lives in the publisher's spool file, so a restart keeps the count.
    """

    def __init__(self, path: str | Path, keep: int = KEEP_STRIPS) -> None:
        self.keep = int(keep)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA synchronous=NORMAL")  # bookkeeping: a lost row = one uncleared
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS retained_strips "
            "(id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT UNIQUE NOT NULL)"
        )

    def add(self, topic: str) -> list[str]:
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO retained_strips (topic) VALUES (?)", (topic,))
            (n,) = self._db.execute("SELECT COUNT(*) FROM retained_strips").fetchone()
            if n <= self.keep:
                return []
            rows = self._db.execute(
                "SELECT id, topic FROM retained_strips ORDER BY id LIMIT ?", (n - self.keep,)
            ).fetchall()
            self._db.execute(
                f"DELETE FROM retained_strips WHERE id IN ({','.join('?' * len(rows))})",
                [r[0] for r in rows],
            )
            return [r[1] for r in rows]

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM retained_strips").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()


class StripFetcher:
    """Get strips by alert id over a connected paho client (its network loop running).

    Each :meth:`get` subscribes to the one strip topic, takes the retained
    message (or the live one, when the strip is still on its way: it is sent
    just after its alert), and unsubscribes. Clients never subscribe to every
    strip: a wildcard subscription would be sent all the retained strips of all
    devices at once (about 10 MB a device).
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._waiting: dict[str, tuple[threading.Event, list[Any]]] = {}

    def get(self, device_id: str, alert_id: str, timeout_s: float = 5.0) -> Strip | None:
        """The strip of ``alert_id`` (of ``device_id``, ``+``: any), or None if none came in
        ``timeout_s`` (or it was cleared).

        PayloadError when what came is not a valid strip of that alert.
        """
        topics.check_device_id(device_id, allow_wildcard=True)  # + : any device
        topic = f"{topics.PREFIX}/{device_id}/strips/{strip_topic('x', alert_id).split('/')[-1]}"
        done, box = threading.Event(), []
        with self._lock:
            self._waiting[alert_id] = (done, box)
        self._client.message_callback_add(topic, self._on_message)
        self._client.subscribe(topic, qos=1)
        try:
            done.wait(timeout_s)
        finally:
            self._client.unsubscribe(topic)
            self._client.message_callback_remove(topic)
            with self._lock:
                self._waiting.pop(alert_id, None)
        if not box or box[0] is None:
            return None
        if isinstance(box[0], str):
            raise PayloadError(box[0])
        return box[0]

    def _on_message(self, client, userdata, msg) -> None:  # type: ignore[no-untyped-def]
        where = parse_strip_topic(msg.topic)
        with self._lock:
            waiting = None if where is None else self._waiting.get(where[1])
        if waiting is None:
            return
        done, box = waiting
        if not msg.payload:  # cleared by its device: too old
            box.append(None)
        else:
            try:
                strip = Strip.parse(msg.payload)
                if where != (strip.device_id, strip.alert_id):
                    raise PayloadError(
                        f"a strip of {strip.device_id}/{strip.alert_id} on {msg.topic}"
                    )
                box.append(strip)
            except PayloadError as exc:
                box.append(str(exc))
        done.set()


def fetch_strip(
    broker_url: str,
    alert_id: str,
    *,
    device: str = "+",
    timeout_s: float = 10.0,
    ca_file: str | Path | None = None,
    cert_file: str | Path | None = None,
    key_file: str | Path | None = None,
) -> Strip:
    """Get the retained strip of ``device``'s alert ``alert_id``; PublishError if none comes."""
    import uuid

    from bridge._conn import connect_blocking, make_client, parse_broker_url
    from bridge.errors import PublishError

    broker = parse_broker_url(broker_url)
    client = make_client(
        broker,
        f"ecg-strip-{uuid.uuid4().hex[:8]}",
        ca_file=ca_file,
        cert_file=cert_file,
        key_file=key_file,
    )
    connect_blocking(client, broker)
    client.loop_start()
    try:
        strip = StripFetcher(client).get(device, alert_id, timeout_s)
    except PayloadError as exc:
        raise PublishError(f"The strip of alert {alert_id} is not valid: {exc}") from None
    finally:
        client.disconnect()
        client.loop_stop()
    if strip is None:
        raise PublishError(
            f"No strip for alert {alert_id} of {device} on {broker} after {timeout_s:g} s "
            f"(a device keeps its last {KEEP_STRIPS} retained; an older one is gone)"
        )
    return strip


def strip_payload(
    alert_id: str,
    device_id: str,
    fs: float,
    start_sample: int,
    n_samples: int,
    start_utc: str,
    leads: tuple[str, ...],
    data: str,
    alert: dict[str, Any],
    filter: str = "band-pass 0.5-45 Hz",
) -> dict[str, Any]:
    """A strip payload from already encoded ``data`` (the edge encodes with numpy), validated.

    ``alert``: :func:`alert_summary` of the alert it belongs to.
    """
    out = {
        "schema": Strip.SCHEMA,
        "alert_id": alert_id,
        "device_id": device_id,
        "fs": float(fs),
        "start_sample": int(start_sample),
        "n_samples": int(n_samples),
        "start_utc": start_utc,
        "units": "uV",
        "filter": filter,
        "leads": list(leads),
        "encoding": ENCODING,
        "data": data,
        "alert": alert,
        "emitted_at": utc_now(),
    }
    _check(out, "strip", "strip/1")
    return out


def alert_summary(alert: Any) -> dict[str, Any]:
    """The strip's ``alert`` member: what an :class:`~bridge.schema.Alert` said, in brief."""
    return {
        "event": alert.event,
        "kind": alert.kind,
        "priority": alert.priority,
        "condition": alert.condition,
        "reason": alert.reason,
        "findings": [f"{f.abbreviation}: {f.name}"[:240] for f in alert.findings],
        "heart_rate": alert.heart_rate.bpm,
        **({"measured": m} if (m := measured_line(alert.measurements)) else {}),
    }


def measured_line(m: dict[str, Any] | None) -> str:
    """The alert's measurements as one line for the paper, e.g. ``PR 236 ms  QRS 92 ms
    QT 380 ms  QTc 412 ms (Bazett) 405 ms (Fridericia)  axis QRS 45°  (median of 9 beats)``;
    a wave that is absent reads ``P absent``; "" without measurements."""
    if not m:
        return ""

    def ms(key: str) -> str:
        v = m.get(key)
        return "--" if v is None else f"{v:.0f} ms"

    parts = []
    if m.get("p_ms") is None and m.get("n_beats"):
        parts.append("P absent")
    else:
        parts.append(f"P {ms('p_ms')}")
    parts += [f"PR {ms('pr_ms')}", f"QRS {ms('qrs_ms')}", f"QT {ms('qt_ms')}"]
    parts.append(f"QTc {ms('qtc_bazett_ms')} (Bazett) {ms('qtc_fridericia_ms')} (Fridericia)")
    if m.get("axis_qrs_deg") is not None:
        parts.append(f"axis QRS {m['axis_qrs_deg']:.0f}\u00b0")
    if m.get("n_beats"):
        parts.append(f"(median of {m['n_beats']} beats)")
    return "  ".join(parts)[:300]
