"""The publisher: alerts go through a sqlite spool and leave it only on PUBACK.

:meth:`Publisher.publish_alert` commits the alert to the spool and returns; one
background thread owns the paho client (v2 callback API), connects with
exponential backoff and jitter, feeds the spool to the broker in order with a
bounded window of unacknowledged messages, and deletes each row when its PUBACK
arrives. paho keeps unacknowledged messages in memory and resends them, in
order, after a reconnect; the spool covers what memory cannot: a killed or
restarted process. Nothing here blocks the classification loop beyond one
sqlite commit.

Example::

    pub = Publisher("mqtt://localhost:1883", "bed-12", Path("spool.db"))
    pub.start()
    pub.publish_alert(alert)        # durable on return
    pub.close()                     # flush, status offline, disconnect
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import random
import select
import socket
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from bridge import topics
from bridge._conn import describe_failure, make_client, parse_broker_url
from bridge._spool import Spool
from bridge.errors import check_int, check_positive, invalid
from bridge.schema import Alert, FrameScores, QualityEvent, StatusMessage, encode, utc_now
from bridge.strip import KEEP_STRIPS, StripShelf

log = logging.getLogger("bridge.publish")

AGENT_VERSION = "0.1.0"
_TICK_S = 0.02  # only while saying goodbye
_IDLE_S = 1.0  # the longest the sender sleeps with nothing to do (keepalive, heartbeat)
_RETAINED = ("strip", "clear")  # spool kinds sent retained (strips by alert id)


class Publisher:
    """Publish alerts, quality events, frames and status for one device.

    ``broker_url`` None keeps everything in the spool (sent by a later run that
    has a broker). ``max_spool`` bounds the spool (see :mod:`bridge._spool` for
    the policy: quality evicted first, alerts never dropped; ``max_spool_bytes``
    limits its file size, a full disk reads alike). ``window`` is the
    number of messages handed to paho and not yet acknowledged.
    """

    def __init__(
        self,
        broker_url: str | None,
        device_id: str,
        spool_path: str | Path,
        *,
        ca_file: str | Path | None = None,
        cert_file: str | Path | None = None,
        key_file: str | Path | None = None,
        heartbeat_s: float = 30.0,
        publish_frames: bool = False,
        max_spool: int = 100_000,
        max_spool_bytes: int | None = None,
        client_id: str | None = None,
        bundle_sha256: str | None = None,
        agent_version: str = AGENT_VERSION,
        reconnect_min_s: float = 0.5,
        reconnect_max_s: float = 5.0,
        keepalive_s: int = 30,
        window: int = 100,
        keep_strips: int = KEEP_STRIPS,
        on_ack: Any = None,
        mqtt5: bool = True,
    ) -> None:
        self.device_id = topics.check_device_id(device_id)
        check_positive("heartbeat_s", heartbeat_s)
        check_int("max_spool", max_spool, min_value=1)
        check_int("window", window, min_value=1)
        check_positive("reconnect_min_s", reconnect_min_s)
        if reconnect_max_s < reconnect_min_s:
            raise invalid("reconnect_max_s", f"a number >= {reconnect_min_s}", reconnect_max_s)
        self.heartbeat_s = float(heartbeat_s)
        self.publish_frames = bool(publish_frames)
        self.bundle_sha256 = bundle_sha256
        self.agent_version = agent_version
        self._backoff = (float(reconnect_min_s), float(reconnect_max_s))
        self._keepalive = int(keepalive_s)
        self._window = window
        # Each run has an instance id in its status: another agent publishing
        # under this device id since this one started is a collision.
        self._instance = os.urandom(8).hex()
        self._started_at = utc_now()
        self.collision: str | None = None
        # Checked now (status payloads validate the sha256 and version).
        self._status("online")
        self.broker = parse_broker_url(broker_url) if broker_url is not None else None
        self._client: mqtt.Client | None = None
        if self.broker is not None:
            self._client_args = {
                "client_id": client_id or f"ecg-edge-{self.device_id}",
                "ca_file": ca_file,
                "cert_file": cert_file,
                "key_file": key_file,
            }
            self._mqtt5 = bool(mqtt5)
            self._client = self._new_client()
        self._spool = Spool(spool_path, max_spool, max_spool_bytes)
        self._shelf = StripShelf(spool_path, keep_strips)  # strips left retained
        self.on_ack = on_ack  # called with each bridge.wave.Ack for this device
        self._live: collections.deque[bytes] = collections.deque(maxlen=64)
        self._topics = {
            "alert": topics.alerts_topic(self.device_id),
            "quality": topics.quality_topic(self.device_id),
            "status": topics.status_topic(self.device_id),
            "frame": topics.frames_topic(self.device_id),
            "live": f"{topics.PREFIX}/{self.device_id}/live",
            "acks": f"{topics.PREFIX}/{self.device_id}/acks",
        }
        self._handed: dict[int, tuple[int, str]] = {}  # paho mid -> (spool row id, topic)
        self._acked: list[int] = []
        self._last_id = 0
        self._last_alert = 0  # spool row of the last alert published
        self._frames: collections.deque[bytes] = collections.deque(maxlen=256)
        self._cond = threading.Condition()
        self._stop = threading.Event()
        # publish_* write a byte here: the sender's select() wakes at once (no polling tick)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._thread: threading.Thread | None = None
        self._connected = threading.Event()
        self._status_mids: set[int] = set()
        self._last_heartbeat = 0.0
        self._last_error = ""
        self._counts = {
            "sent": 0, "reconnects": 0, "frames_sent": 0, "frames_dropped": 0, "denied": 0,
        }  # fmt: skip
        # MQTT 5: the broker says in each PUBACK whether it took the message (an ACL
        # that denies the topic answers "Not authorized"; under 3.1.1 Mosquitto acks
        # and drops it). Denied rows stay in the spool and are offered again later.
        self._rebuild = False  # a new client before the next connect (MQTT 3.1.1 fallback)
        self._denied: set[int] = set()
        self._denied_topics: set[str] = set()
        self._retry_at = 0.0
        self._retry_s = 0.0
        self._stream_counters: dict[str, Any] = {}

    # ---- the caller's side -------------------------------------------------

    def start(self) -> Publisher:
        """Start the background sender (idempotent); returns self."""
        if self._thread is None and self._client is not None:
            self._thread = threading.Thread(target=self._run, name="ecg-mqtt", daemon=True)
            self._thread.start()
        return self

    def publish_alert(self, alert: Alert) -> None:
        """Commit ``alert`` to the spool (durable on return); it is sent in order."""
        if not isinstance(alert, Alert):
            raise invalid("alert", "an Alert", type(alert).__name__)
        self._check_device(alert.device_id)
        row = self._spool.put("alert", self._topics["alert"], encode(alert.to_json()), 1)
        if row is not None:
            self._last_alert = row
        self._wake()

    def publish_quality(self, event: QualityEvent) -> None:
        """Spool a quality event like an alert (but it may be evicted when the spool is full)."""
        if not isinstance(event, QualityEvent):
            raise invalid("event", "a QualityEvent", type(event).__name__)
        self._check_device(event.device_id)
        self._spool.put("quality", self._topics["quality"], encode(event.to_json()), 1)
        self._wake()

    def publish_frame(self, scores: FrameScores) -> None:
        """Send per-frame scores at QoS 0, best effort; nothing when frames are off."""
        if not self.publish_frames:
            return
        if not self._connected.is_set():  # QoS 0: a frame is worth nothing later
            self._counts["frames_dropped"] += 1
            return
        if not isinstance(scores, FrameScores):
            raise invalid("scores", "a FrameScores", type(scores).__name__)
        self._check_device(scores.device_id)
        if len(self._frames) == self._frames.maxlen:
            self._counts["frames_dropped"] += 1
        self._frames.append(encode(scores.to_json()))
        self._wake()

    def set_counters(self, counters: dict[str, Any]) -> None:
        """The stream's counters (frames, gaps, ``serial``: CRC errors...), sent in every
        heartbeat and online status from now on (a copy is kept)."""
        self._stream_counters = dict(counters)

    def publish_strip(self, payload: dict[str, Any]) -> None:
        """Spool an alert's strip (``ecg-edge/strip/1``, already validated) like an alert; it
        is sent retained on its own topic, and the oldest beyond ``keep_strips`` are cleared.

        Committed without its own fsync (~5 ms less on the alert path): it survives the
        process dying at once, and a power cut from the next fsynced commit on.
        """
        from bridge.strip import strip_topic

        topic = strip_topic(self.device_id, payload["alert_id"])
        self._spool.put("strip", topic, encode(payload), 1, fsync=False)
        for old in self._shelf.add(topic):
            self._spool.put("clear", old, b"", 1, fsync=False)
        self._wake()

    def publish_live(self, payload: dict[str, Any]) -> None:
        """Send a live waveform payload (``ecg-edge/live/1``) at QoS 0, best effort."""
        if self._connected.is_set():
            self._live.append(encode(payload))
            self._wake()

    def _on_ack(self, client, userdata, msg) -> None:  # type: ignore[no-untyped-def]
        from bridge.schema import PayloadError
        from bridge.wave import Ack

        try:
            ack = Ack.parse(msg.payload)
        except PayloadError as exc:
            log.warning("rejected acknowledgement on %r: %s", msg.topic, exc)
            return
        if ack.device_id == self.device_id and self.on_ack is not None:
            self.on_ack(ack)

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until the spool is empty; False if ``timeout_s`` passed first."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while len(self._spool) > 0:
                left = deadline - time.monotonic()
                if left <= 0 or self._client is None:
                    return False
                self._cond.wait(min(left, 0.1))
        return True

    def wait_handed(self, timeout_s: float = 0.01) -> bool:
        """Wait, at most ``timeout_s``, until the last alert published is on its way:
        handed to the broker's socket (True). False at once when not connected.

        The agent calls it after an alert and before its next work (the alert's
        strip, the next samples): the sender thread needs the interpreter for a
        moment, and would otherwise wait for the agent's next switch (5 ms).
        """
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._last_id < self._last_alert:  # rows up to _last_id are handed
                left = deadline - time.monotonic()
                if left <= 0 or not self._connected.is_set():
                    return False
                self._cond.wait(left)
        return True

    def wait_connected(self, timeout_s: float = 10.0) -> bool:
        """Wait for the broker's CONNACK; False if ``timeout_s`` passed first."""
        return self._connected.wait(timeout_s)

    def close(self, timeout_s: float = 5.0) -> bool:
        """Flush for up to ``timeout_s``, publish ``offline``, disconnect.

        What is still unacknowledged stays in the spool for the next start.
        Returns True when the spool was emptied.
        """
        emptied = self.flush(timeout_s) if self._connected.is_set() else len(self._spool) == 0
        self._stop.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s + 5)
            self._thread = None
        self._wake_r.close()
        self._wake_w.close()
        self._spool.close()
        self._shelf.close()
        return emptied

    def stats(self) -> dict[str, Any]:
        """Counters: sent, pending, reconnects, connected, evicted, over_bound, frames_*."""
        return {
            **self._counts,
            "pending": len(self._spool),
            "connected": self._connected.is_set(),
            "evicted": self._spool.evicted,
            "over_bound": self._spool.over_bound,
            "in_memory": self._spool.in_memory,
            "last_error": self._last_error,
            "collision": self.collision,
        }

    @property
    def storage_problem(self) -> str | None:
        """Why the spool could not store everything (disk or size limit full), or None."""
        return self._spool.storage_problem

    def __enter__(self) -> Publisher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_device(self, device_id: str) -> None:
        if device_id != self.device_id:
            raise invalid("device_id", f"this publisher's device {self.device_id!r}", device_id)

    def _status(self, state: str, **extra: Any) -> bytes:
        msg = StatusMessage(
            self.device_id,
            state,
            bundle_sha256=self.bundle_sha256,
            agent_version=self.agent_version,
            extra={"instance": self._instance, **extra},
        )
        return encode(msg.to_json())

    def _wake(self) -> None:
        """Wake the sender now (a byte on its wake socket; a full socket is already awake)."""
        # BlockingIOError: bytes already waiting; closed: nobody left to wake
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    # ---- the sender thread -------------------------------------------------

    def _run(self) -> None:
        client = self._client
        assert client is not None and self.broker is not None
        attempt = 0
        open_socket = False
        first = True
        while not self._stop.is_set():
            if not open_socket:
                if not first:
                    low, high = self._backoff
                    delay = min(high, low * 2 ** min(attempt, 20)) * random.uniform(0.5, 1.0)
                    attempt += 1
                    if self._stop.wait(delay):
                        break
                first = False
                if self._rebuild:
                    self._rebuild = False
                    client = self._client = self._new_client()
                client.will_set(
                    self._topics["status"],
                    self._status("offline", reason="connection lost"),
                    qos=1,
                    retain=True,
                )
                try:
                    client.connect(self.broker.host, self.broker.port, keepalive=self._keepalive)
                except Exception as exc:  # network failures are results, retried
                    self._note_error(describe_failure(exc))
                    continue
                open_socket = True
            rc = self._loop_once(client)
            if rc != mqtt.MQTT_ERR_SUCCESS:
                open_socket = False
                if self._connected.is_set():
                    self._connected.clear()
                self._note_error(f"connection lost ({mqtt.error_string(rc)})")
                continue
            if self._connected.is_set():
                attempt = 0
                self._settle()
                self._feed(client)
                self._heartbeat(client)
        if open_socket:
            self._goodbye(client)

    def _loop_once(self, client: mqtt.Client) -> mqtt.MQTTErrorCode:
        """One network round: sleep in select() until the broker's socket or a publish_*
        call (the wake socket) has something, at most ``_IDLE_S`` or until the heartbeat.

        paho's external-loop API (``socket``, ``want_write``, ``loop_read``/``_write``/
        ``_misc``), as ``Client.loop`` does it but with our wake socket in the select:
        an alert leaves as soon as it is spooled instead of at the next 20 ms tick.
        """
        sock = client.socket()
        if sock is None:
            return mqtt.MQTT_ERR_NO_CONN
        pending = getattr(sock, "pending", None)  # TLS: bytes already decrypted
        ready = bool(pending and pending() > 0)
        left = self._last_heartbeat + self.heartbeat_s - time.monotonic()
        timeout = 0.0 if ready else max(0.0, min(_IDLE_S, left))
        wlist = [sock] if client.want_write() else []
        try:
            readable, _, _ = select.select([sock, self._wake_r], wlist, [], timeout)
        except (OSError, ValueError, TypeError):  # the socket was closed under us
            return mqtt.MQTT_ERR_CONN_LOST
        if self._wake_r in readable:
            with contextlib.suppress(OSError):  # BlockingIOError: drained
                while self._wake_r.recv(4096):
                    pass
        if sock in readable or ready:
            rc = client.loop_read()
            if rc or client.socket() is None:
                return rc
        if client.want_write():
            rc = client.loop_write()
            if rc or client.socket() is None:
                return rc
        return client.loop_misc()

    def _new_client(self) -> mqtt.Client:
        assert self.broker is not None
        a = self._client_args
        client = make_client(
            self.broker, a["client_id"], clean_session=True, ca_file=a["ca_file"],
            cert_file=a["cert_file"], key_file=a["key_file"], mqtt5=self._mqtt5,
        )  # fmt: skip
        client.max_inflight_messages_set(min(self._window, 20))
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_status
        return client

    def _note_error(self, reason: str, advice: str = "", level: int = logging.WARNING) -> None:
        if reason != self._last_error:
            log.log(level, "MQTT %s: %s; %sretrying with backoff", self.broker, reason, advice)
        self._last_error = reason

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:  # type: ignore[no-untyped-def]
        if reason_code.is_failure:
            text = str(reason_code)
            if self._mqtt5 and "protocol" in text.lower():
                self._mqtt5, self._rebuild = False, True  # an MQTT 3.1.1 broker
                log.warning(
                    "MQTT %s does not speak MQTT 5; using 3.1.1 (a message the broker's ACL "
                    "refuses can then not be noticed)",
                    self.broker,
                )
            elif "authori" in text.lower() or "password" in text.lower():
                advice = "check the user name and password in the broker URL and the broker's ACL; "
                self._note_error(f"broker refused this client: {text}", advice, logging.ERROR)
                return
            self._note_error(f"broker refused the connection: {text}")
            return
        if self._counts["sent"] or self._last_error:
            self._counts["reconnects"] += 1
        if self._last_error:
            log.info("MQTT %s: connected again", self.broker)
        self._last_error = ""
        self._connected.set()
        client.subscribe(self._topics["status"], qos=0)  # to see a device id collision
        info = client.publish(
            self._topics["status"], self._status("online", **self._stream_counters), qos=1,
            retain=True,
        )  # fmt: skip
        self._status_mids.add(info.mid)
        self._last_heartbeat = time.monotonic()
        if self.on_ack is not None:  # acknowledgements from the central stations
            client.message_callback_add(self._topics["acks"], self._on_ack)
            client.subscribe(self._topics["acks"], qos=1)

    def _on_status(self, client, userdata, msg) -> None:  # type: ignore[no-untyped-def]
        """Our own status topic: another instance's status dated after our start is a collision."""
        try:
            data = json.loads(msg.payload)
            other = data["extra"]["instance"]
            at = data["at"]
        except (ValueError, KeyError, TypeError):
            return
        # Any state counts: with one client id the two take turns, and what is
        # retained is often the other's last will (offline, "connection lost").
        if other == self._instance or not isinstance(at, str):
            return
        if at < self._started_at or self.collision == other:
            return  # a previous run of this agent (its retained status), or known
        self.collision = other
        log.error(
            "device id collision: another agent (instance %s) publishes as %r since %s; "
            "give each agent its own --device-id (alerts of both are mixed on %s)",
            other,
            self.device_id,
            at,
            self._topics["alert"],
        )

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:  # type: ignore[no-untyped-def]
        self._connected.clear()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:  # type: ignore[no-untyped-def]
        handed = self._handed.pop(mid, None)
        self._status_mids.discard(mid)
        if handed is None:
            return
        row, topic = handed
        if getattr(reason_code, "is_failure", False):
            self._deny(row, topic, reason_code)
        else:
            self._acked.append(row)

    def _deny(self, row: int, topic: str, reason_code: Any) -> None:
        """The broker refused a message (MQTT 5 PUBACK reason code): keep it spooled,
        say so clearly once per topic, offer it again after a growing pause."""
        self._denied.add(row)
        self._counts["denied"] += 1
        if topic not in self._denied_topics:
            self._denied_topics.add(topic)
            log.error(
                "MQTT %s refused the message on %s: %s; check the broker's ACL for this "
                "client (it needs write on ecg/%s/#). Kept in the spool and offered again.",
                self.broker,
                topic,
                reason_code,
                self.device_id,
            )
        self._retry_s = min(60.0, max(1.0, 2 * self._retry_s))
        self._retry_at = time.monotonic() + self._retry_s

    def _rewind(self) -> None:
        """Offer denied rows again: back the cursor up to the oldest of them once
        nothing else is in flight (rows acked since are gone from the spool)."""
        if self._denied and not self._handed and time.monotonic() >= self._retry_at:
            self._last_id = min(self._denied) - 1
            self._denied.clear()

    def _settle(self) -> None:
        if not self._acked:
            return
        acked, self._acked = self._acked, []
        self._spool.delete(acked)
        self._counts["sent"] += len(acked)
        with self._cond:
            self._cond.notify_all()

    def _feed(self, client: mqtt.Client) -> None:
        self._rewind()
        room = self._window - len(self._handed)
        if room > 0:
            handed = self._last_id
            for row_id, _kind, topic, payload, qos in self._spool.after(self._last_id, room):
                info = client.publish(topic, payload, qos=qos, retain=_kind in _RETAINED)
                self._handed[info.mid] = (row_id, topic)
                self._last_id = row_id
            if self._last_id != handed:  # written now (paho has no loop thread of its own)
                with self._cond:
                    self._cond.notify_all()  # wait_handed
        while self._frames:
            payload = self._frames.popleft()
            client.publish(self._topics["frame"], payload, qos=0)
            self._counts["frames_sent"] += 1
        while self._live:
            client.publish(self._topics["live"], self._live.popleft(), qos=0)

    def _heartbeat(self, client: mqtt.Client) -> None:
        now = time.monotonic()
        if now - self._last_heartbeat >= self.heartbeat_s:
            self._last_heartbeat = now
            extra = {
                **self._stream_counters,
                "sent": self._counts["sent"],
                "pending": len(self._spool),
                **({"denied": self._counts["denied"]} if self._counts["denied"] else {}),
            }
            client.publish(
                self._topics["status"], self._status("heartbeat", **extra), qos=1, retain=True
            )

    def _goodbye(self, client: mqtt.Client) -> None:
        if self._connected.is_set():
            info = client.publish(
                self._topics["status"],
                self._status("offline", reason="closed"),
                qos=1,
                retain=True,
            )
            self._status_mids.add(info.mid)
            deadline = time.monotonic() + 2.0
            while info.mid in self._status_mids and time.monotonic() < deadline:
                if client.loop(timeout=_TICK_S) != mqtt.MQTT_ERR_SUCCESS:
                    break
                self._settle()
            self._settle()
        client.disconnect()
        client.loop(timeout=0.05)
        self._connected.clear()
