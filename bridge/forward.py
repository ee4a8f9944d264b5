"""The forwarder: alerts from the broker to a JSON-lines file, a webhook or a FHIR server.

No loss: each alert is committed to a sqlite outbox *inside* the MQTT message
callback, so the broker gets its PUBACK only once the alert is on disk; the
MQTT session is persistent (fixed client id, clean_session False), so alerts
sent while the forwarder is down wait at the broker. A worker delivers the
outbox in order, retrying a target that is down with exponential backoff and
jitter; an alert leaves the outbox only when the target accepted it. The
outbox also remembers recently delivered ids, so redeliveries are dropped.

Targets: ``jsonl:PATH`` (one alert payload per line, fsynced), ``webhook:URL``
(POST of the alert JSON, any 2xx accepts), ``fhir:BASE`` (POST of one R4
Observation per finding to ``BASE/Observation``, and of one ECG Observation of
the alert's strip, MDC 131328 with SampledData per lead, alarms included;
each conditional on its identifier so a retry never creates it twice).

Scaling out: forwarders started with the same ``group`` share one MQTT 5
shared subscription (``$share/<group>/ecg/+/alerts``); the broker hands each
alert to one member. Each member keeps its own persistent session (its own
``client_id``) and outbox, so a member that is killed loses nothing: what the
broker had queued for it, and what its outbox held, is delivered when it is
started again (under the same client id). An alert delivered twice (a
publisher's resend that reached another member) is absorbed by the target:
FHIR conditional create, or the ``X-Ecg-Alert-Id`` header for a webhook.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Protocol

import paho.mqtt.client as mqtt

from bridge import topics
from bridge._conn import connect_blocking, make_client, parse_broker_url, session_properties
from bridge.errors import EcgEdgeError, PublishError, check_int, check_positive, invalid
from bridge.listen import Listener
from bridge.schema import Alert, encode

log = logging.getLogger("bridge.forward")

SNOMED = "http://snomed.info/sct"
ALERT_ID_SYSTEM = "urn:ecg-edge:alert-id"
DEVICE_SYSTEM = "urn:ecg-edge:device-id"
LOINC = "http://loinc.org"
MDC = "urn:iso:std:iso:11073:10101"
# The alert's measurements as Observation components: (member, system, code, display, UCUM
# unit). LOINC's EKG codes; the MDC global durations of ISO/IEEE 11073-10101 (DICOM CID
# 3689, context-free code = 2 * 65536 + term code) where LOINC has none we could rely on.
MEASUREMENT_CODES = (
    ("hr_bpm", LOINC, "8867-4", "Heart rate", "/min"),
    ("rr_ms", MDC, "147072", "RR time period, global", "ms"),
    ("p_ms", MDC, "147256", "P duration, global", "ms"),
    ("pr_ms", LOINC, "8625-6", "P-R Interval", "ms"),
    ("qrs_ms", LOINC, "8633-0", "QRS duration", "ms"),
    ("qt_ms", LOINC, "8634-8", "Q-T interval", "ms"),
    ("qtc_bazett_ms", LOINC, "8636-3", "Q-T interval corrected (Bazett)", "ms"),
    ("qtc_fridericia_ms", LOINC, "8636-3", "Q-T interval corrected (Fridericia)", "ms"),
    ("axis_p_deg", LOINC, "8626-4", "P wave axis", "deg"),
    ("axis_qrs_deg", LOINC, "8632-2", "QRS axis", "deg"),
    ("axis_t_deg", LOINC, "8638-9", "T wave axis", "deg"),
)


def measurement_components(measurements: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The alert's measurements (median over the frame's beats) as Observation components."""
    out: list[dict[str, Any]] = []
    for key, system, code, display, unit in MEASUREMENT_CODES:
        value = (measurements or {}).get(key)
        if value is None:  # absent wave: no component, never 0
            continue
        out.append(
            {
                "code": {
                    "coding": [{"system": system, "code": code, "display": display}],
                    "text": display,
                },
                "valueQuantity": {
                    "value": value,
                    "unit": unit,
                    "system": "http://unitsofmeasure.org",
                    "code": unit,
                },
            }
        )
    return out


KEEP_DELIVERED = 10_000
SESSION_NEVER_EXPIRES = 0xFFFFFFFF
OUTBOX_WARN_FRACTION = 0.8
OUTBOX_WARN_EVERY_S = 60.0
STRIP_WAIT_S = 10.0  # for an alert's strip (it is sent just after the alert)
_GROUP_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class TargetError(EcgEdgeError):
    """A target did not accept an alert (down, refused, timed out); it is retried."""


class Target(Protocol):
    """Where alerts go; ``send`` returns when accepted, raises TargetError otherwise."""

    name: str

    def send(self, alert: Alert) -> None: ...


class JsonlTarget:
    """Append each alert payload as one JSON line to ``path`` (flushed and fsynced)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.name = f"jsonl:{self.path}"

    def send(self, alert: Alert) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "ab") as fh:
                fh.write(encode(alert.to_json()) + b"\n")
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise TargetError(f"cannot write {str(self.path)!r}: {exc}") from None


def _post(url: str, body: dict[str, Any], headers: dict[str, str], timeout_s: float) -> int:
    data = json.dumps(body, separators=(",", ":")).encode()
    request = urllib.request.Request(url, data=data, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        raise TargetError(f"{url} answered {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TargetError(f"{url} unreachable: {reason}") from None


class WebhookTarget:
    """POST the alert payload (``application/json``) to ``url``; 2xx accepts."""

    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        self.url = url
        self.name = f"webhook:{url}"
        self.timeout_s = timeout_s

    def send(self, alert: Alert) -> None:
        headers = {"Content-Type": "application/json", "X-Ecg-Alert-Id": alert.alert_id}
        _post(self.url, alert.to_json(), headers, self.timeout_s)


def fhir_observations(alert: Alert) -> list[dict[str, Any]]:
    """R4 ``Observation`` resources, one per finding of ``alert``.

    ``code`` is the finding as a SNOMED CT coding; ``valueBoolean`` is True at
    onset and False when cleared; ``effectivePeriod`` is the frame (UTC),
    ``issued`` the emission time; ``device`` names the device by identifier;
    score and threshold are components, and so are the alert's measurements
    (PR, QRS, QT, QTc, axes ...: :func:`measurement_components`); the identifier is
    ``urn:ecg-edge:alert-id|<alert_id>-<code>``.
    """
    out = []
    for f in alert.findings:
        out.append(
            {
                "resourceType": "Observation",
                "identifier": [{"system": ALERT_ID_SYSTEM, "value": f"{alert.alert_id}-{f.code}"}],
                "status": "final",
                "category": [
                    {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                "code": "procedure",
                                "display": "Procedure",
                            }
                        ]
                    }
                ],
                "code": {
                    "coding": [{"system": SNOMED, "code": f.code, "display": f.name}],
                    "text": f.abbreviation,
                },
                "valueBoolean": alert.event == "onset",
                "effectivePeriod": {"start": alert.frame.start_utc, "end": alert.frame.end_utc},
                "issued": alert.emitted_at,
                "device": {
                    "identifier": {"system": DEVICE_SYSTEM, "value": alert.device_id},
                    "display": alert.device_id,
                },
                "component": [
                    {"code": {"text": "score"}, "valueQuantity": {"value": f.score, "unit": "1"}},
                    {
                        "code": {"text": "threshold"},
                        "valueQuantity": {"value": f.threshold, "unit": "1"},
                    },
                    *measurement_components(alert.measurements),
                ],
                "note": [
                    {
                        "text": f"ecg-edge {alert.event}; model bundle sha256 "
                        f"{alert.bundle_sha256}; latency {alert.latency_ms:.1f} ms"
                    }
                ],
            }
        )
    return out


class FhirTarget:
    """POST one Observation per finding to ``<base>/Observation`` (conditional create),
    and one ECG Observation of the alert's strip when it has one (``strip_source``,
    set by the :class:`Forwarder`, fetches it by alert id; see :mod:`bridge.fhir_strip`)."""

    strip_source: Any = None  # alert -> bridge.strip.Strip | None

    def __init__(self, base_url: str, timeout_s: float = 10.0) -> None:
        base = base_url.rstrip("/")
        self.url = base if base.endswith("/Observation") else base + "/Observation"
        self.name = f"fhir:{base_url}"
        self.timeout_s = timeout_s

    def send(self, alert: Alert) -> None:
        for obs in fhir_observations(alert):
            ident = obs["identifier"][0]
            headers = {
                "Content-Type": "application/fhir+json",
                "Accept": "application/fhir+json",
                "If-None-Exist": f"identifier={ident['system']}|{ident['value']}",
            }
            _post(self.url, obs, headers, self.timeout_s)
        if alert.strip is not None and self.strip_source is not None:
            from bridge.fhir_strip import strip_observation

            strip = self.strip_source(alert)
            if strip is None:  # gone from the broker (older than the device keeps): no strip
                log.warning("alert %s: its strip is not on the broker", alert.alert_id)
                return
            obs = strip_observation(alert, strip)
            ident = obs["identifier"][0]
            headers = {
                "Content-Type": "application/fhir+json",
                "Accept": "application/fhir+json",
                "If-None-Exist": f"identifier={ident['system']}|{ident['value']}",
            }
            _post(self.url, obs, headers, self.timeout_s)


def parse_target(spec: str) -> Target:
    """``jsonl:PATH``, ``webhook:URL`` or ``fhir:URL``."""
    kind, _, rest = spec.partition(":")
    if not rest:
        raise PublishError(
            f"Invalid value for '--to': expected jsonl:PATH, webhook:URL or fhir:URL, got {spec!r}"
        )
    if kind == "jsonl":
        return JsonlTarget(rest)
    if kind in ("webhook", "fhir"):
        if not rest.startswith(("http://", "https://")):
            raise PublishError(
                f"Invalid value for '--to': {kind} needs an http(s) URL, got {rest!r}"
            )
        return WebhookTarget(rest) if kind == "webhook" else FhirTarget(rest)
    raise PublishError(
        f"Invalid value for '--to': expected jsonl:, webhook: or fhir:, got {kind!r}"
    )


class Outbox:
    """Alerts waiting for the target, in arrival order; remembers delivered ids."""

    def __init__(self, path: str | Path) -> None:
        self._lock = threading.Lock()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            str(path), check_same_thread=False, isolation_level=None, timeout=30
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
            "alert_id TEXT UNIQUE NOT NULL, payload BLOB NOT NULL, delivered REAL)"
        )
        (self._pending,) = self._db.execute(
            "SELECT COUNT(*) FROM outbox WHERE delivered IS NULL"
        ).fetchone()

    def put(self, alert: Alert) -> bool:
        """Store ``alert`` unless its id is known; True when it is new."""
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO outbox (alert_id, payload) VALUES (?, ?)",
                (alert.alert_id, encode(alert.to_json())),
            )
            self._pending += cur.rowcount
            return cur.rowcount == 1

    def next(self) -> tuple[int, Alert] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT seq, payload FROM outbox WHERE delivered IS NULL ORDER BY seq LIMIT 1"
            ).fetchone()
        if row is None:
            return None
        return row[0], Alert.from_json(json.loads(row[1]))

    def done(self, seq: int) -> None:
        with self._lock:
            cur = self._db.execute(
                "UPDATE outbox SET delivered = ? WHERE seq = ? AND delivered IS NULL",
                (time.time(), seq),
            )
            self._pending -= cur.rowcount
            self._db.execute(
                "DELETE FROM outbox WHERE delivered IS NOT NULL AND seq <= ?",
                (seq - KEEP_DELIVERED,),
            )

    def pending(self) -> int:
        """Alerts stored and not yet accepted by the target."""
        return self._pending

    def close(self) -> None:
        with self._lock:
            self._db.close()


def check_group(group: str) -> str:
    """A shared-subscription group name: 1-64 of ``A-Z a-z 0-9 . _ : -`` (no ``/ + #``)."""
    if not isinstance(group, str) or not _GROUP_RE.match(group):
        raise invalid("group", "1-64 characters of letters, digits, '.', '_', ':', '-'", group)
    return group


class Forwarder:
    """Subscribe to alerts (persistent session) and deliver them to ``target``.

    ``group``: join the shared subscription ``$share/<group>/...`` over MQTT 5
    (the session kept ``session_expiry_s`` seconds, never expiring by default);
    each member needs its own ``client_id``. ``max_outbox``: alerts waiting for
    the target beyond which a warning is logged (once a minute); they are still
    taken and kept on disk, never dropped.
    """

    def __init__(
        self,
        broker_url: str,
        target: Target,
        outbox_path: str | Path,
        *,
        device: str = "+",
        client_id: str = "ecg-forward",
        retry_min_s: float = 0.5,
        retry_max_s: float = 60.0,
        ca_file: str | Path | None = None,
        cert_file: str | Path | None = None,
        key_file: str | Path | None = None,
        group: str | None = None,
        session_expiry_s: int = SESSION_NEVER_EXPIRES,
        max_outbox: int = 100_000,
    ) -> None:
        topics.check_device_id(device, allow_wildcard=True)
        check_positive("retry_min_s", retry_min_s)
        check_int("session_expiry_s", session_expiry_s, min_value=0)
        check_int("max_outbox", max_outbox, min_value=1)
        self.target = target
        self.broker = parse_broker_url(broker_url)
        self.group = None if group is None else check_group(group)
        self.client_id = client_id
        self.max_outbox = max_outbox
        self._session_expiry_s = session_expiry_s
        alerts = topics.topic(device, "alerts", allow_wildcard=True)
        self._topic = alerts if self.group is None else f"$share/{self.group}/{alerts}"
        self._retry = (retry_min_s, max(retry_min_s, retry_max_s))
        self._tls = (ca_file, cert_file, key_file)
        self._client = self._make_client(mqtt5=self.group is not None)
        self.outbox = Outbox(outbox_path)
        self.listener = Listener()
        self.counts = {"received": 0, "delivered": 0, "failures": 0, "duplicates": 0}
        self._outbox_duplicates = 0
        self.subscribe_error = ""
        self._subscribed = threading.Event()
        self._last_warn: dict[str, float] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        if isinstance(target, FhirTarget):  # strips fetched by alert id (retained)
            target.strip_source = self._strip_of

    def _strip_of(self, alert: Alert):  # type: ignore[no-untyped-def]
        from bridge.strip import StripFetcher

        return StripFetcher(self._client).get(alert.device_id, alert.alert_id, STRIP_WAIT_S)

    def _make_client(self, *, mqtt5: bool):  # type: ignore[no-untyped-def]
        ca_file, cert_file, key_file = self._tls
        client = make_client(
            self.broker,
            self.client_id,
            clean_session=False,
            ca_file=ca_file,
            cert_file=cert_file,
            key_file=key_file,
            mqtt5=mqtt5,
        )
        client.reconnect_delay_set(1, 30)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    @property
    def mqtt5(self) -> bool:
        return self._client.protocol == mqtt.MQTTv5

    def _on_connect(self, client, userdata, flags, reason_code, properties):  # type: ignore[no-untyped-def]
        if not reason_code.is_failure:
            client.subscribe(self._topic, qos=1)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):  # type: ignore[no-untyped-def]
        refused = [rc for rc in reason_codes if rc.is_failure]
        if refused:
            self.subscribe_error = (
                f"Broker {self.broker} refused the subscription to {self._topic!r}: "
                f"{refused[0]} (check the broker's ACL for this user"
                + (", and that it has shared subscriptions)" if self.group else ")")
            )
            log.error("%s", self.subscribe_error)
        else:
            self.subscribe_error = ""
        self._subscribed.set()

    def _on_message(self, client, userdata, msg):  # type: ignore[no-untyped-def]
        item = self.listener.handle(msg.topic, msg.payload)
        if item is not None and isinstance(item.message, Alert):
            # Committed before this callback returns, i.e. before paho sends the PUBACK.
            if self.outbox.put(item.message):
                self.counts["received"] += 1
                self._wake.set()
                self._check_fill()
            else:
                self._outbox_duplicates += 1
        # the listener's duplicates (ids it saw) and the outbox's (ids it holds or delivered)
        self.counts["duplicates"] = self.listener.counts["duplicates"] + self._outbox_duplicates

    def _check_fill(self) -> None:
        pending = self.outbox.pending()
        if pending < OUTBOX_WARN_FRACTION * self.max_outbox:
            return
        over = "over its limit" if pending >= self.max_outbox else "nearly full"
        now = time.monotonic()
        if now - self._last_warn.get(over, -1e9) < OUTBOX_WARN_EVERY_S:
            return
        self._last_warn[over] = now
        log.warning(
            "forward outbox %s: %d/%d alerts wait for %s (is it slow or down?); "
            "they are kept on disk, nothing is dropped",
            over,
            pending,
            self.max_outbox,
            self.target.name,
        )

    def _deliver(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            nxt = self.outbox.next()
            if nxt is None:
                self._wake.wait(0.5)
                self._wake.clear()
                continue
            seq, alert = nxt
            try:
                self.target.send(alert)
            except TargetError as exc:
                self.counts["failures"] += 1
                low, high = self._retry
                delay = min(high, low * 2 ** min(attempt, 20)) * random.uniform(0.5, 1.0)
                attempt += 1
                log.warning("%s: %s; retry in %.1f s", self.target.name, exc, delay)
                self._stop.wait(delay)
                continue
            attempt = 0
            self.outbox.done(seq)
            self.counts["delivered"] += 1

    def start(self, timeout_s: float = 10.0) -> Forwarder:
        """Connect and subscribe, then start delivering.

        PublishError with the reason when the broker refuses the connection or
        the subscription (ACL). A group falls back to MQTT 3.1.1 (same
        ``$share`` topic, which Mosquitto and EMQX accept) when the broker does
        not speak MQTT 5.
        """
        self._connect(timeout_s)
        self._client.loop_start()
        if not self._subscribed.wait(timeout_s):
            self._client.disconnect()
            self._client.loop_stop()
            raise PublishError(f"Broker {self.broker} did not answer the subscription")
        if self.subscribe_error:
            self._client.disconnect()
            self._client.loop_stop()
            raise PublishError(self.subscribe_error)
        self._worker = threading.Thread(target=self._deliver, name="ecg-forward", daemon=True)
        self._worker.start()
        return self

    def _connect(self, timeout_s: float) -> None:
        if not self.mqtt5:
            connect_blocking(self._client, self.broker, timeout_s=timeout_s)
            return
        try:
            connect_blocking(
                self._client,
                self.broker,
                timeout_s=timeout_s,
                clean_start=False,
                properties=session_properties(self._session_expiry_s),
            )
        except PublishError as exc:
            # A 3.1.1 broker refuses the protocol level, or closes without a CONNACK.
            reason = str(exc).lower()
            if "protocol version" not in reason and "no answer" not in reason:
                raise
            log.warning("%s: no MQTT 5 (%s); the group uses MQTT 3.1.1", self.broker, exc)
            self._client = self._make_client(mqtt5=False)
            connect_blocking(self._client, self.broker, timeout_s=timeout_s)

    def run(self, *, count: int | None = None, timeout_s: float | None = None) -> None:
        """Block until ``count`` alerts were delivered, ``timeout_s`` passed, or Ctrl-C."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while count is None or self.counts["delivered"] < count:
            if deadline is not None and time.monotonic() >= deadline:
                break
            if self.subscribe_error:
                raise PublishError(self.subscribe_error)
            time.sleep(0.1)

    def close(self) -> None:
        """Disconnect, stop the worker; undelivered alerts stay in the outbox."""
        self._client.disconnect()
        self._client.loop_stop()
        self._stop.set()
        self._wake.set()
        if self._worker is not None:
            self._worker.join(timeout=15)
        self.outbox.close()
