"""What the central station knows: beds, their alarms, strips and acknowledgements.

Pure and thread-safe: :meth:`StationState.handle` takes an MQTT ``(topic,
payload)`` and returns the events to push to the pages (JSON-ready dicts);
the server (:mod:`bridge.station.server`) only moves bytes. Nothing received
can raise out of it: an invalid payload is counted and logged.

Strips are not subscribed to (every device keeps its last 200 retained: a
wildcard subscription would bring them all); a page's click fetches one by
alert id (:class:`~bridge.strip.StripFetcher`) and it is cached here.

Alarms are listed most urgent first (IEC 60601-1-8: high, medium, low), then
newest first; an onset stays *active* until its ``cleared`` event comes (same
device, condition and findings), and is *acknowledged* when an
``ecg-edge/ack/1`` for its ``alert_id`` arrives, from any station.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any

from bridge import topics
from bridge.listen import Listener
from bridge.schema import PRIORITIES, Alert, PayloadError, StatusMessage
from bridge.strip import Strip
from bridge.wave import Ack, LiveWave

log = logging.getLogger("bridge.station")

MAX_ALARMS = 500
MAX_STRIPS = 32  # strips drawn for pages, cached (a decoded strip is ~2 MB of ints)
_RANK = {p: i for i, p in enumerate(PRIORITIES)}


def _key(alert: dict[str, Any]) -> tuple[str, str, tuple[str, ...]]:
    return (alert["device_id"], alert["condition"], tuple(sorted(alert["codes"])))


def alarm_order(alarm: dict[str, Any]) -> tuple[int, int, float]:
    """Sort key: active before cleared, then priority (high first), then newest first."""
    return (int(alarm["cleared"]), _RANK.get(alarm["priority"], len(PRIORITIES)), -alarm["seq"])


class StationState:
    """Beds (by device id), alarms (by alert id), strips and acknowledgements."""

    def __init__(self, *, max_alarms: int = MAX_ALARMS, max_strips: int = MAX_STRIPS) -> None:
        self._lock = threading.Lock()
        self.devices: dict[str, dict[str, Any]] = {}
        self.alarms: collections.OrderedDict[str, dict[str, Any]] = collections.OrderedDict()
        self.strips: collections.OrderedDict[str, Strip] = collections.OrderedDict()
        self._acks: dict[str, dict[str, Any]] = {}  # acks that came before their alert
        self._listener = Listener()
        self._seq = 0
        self.max_alarms = max_alarms
        self.max_strips = max_strips
        self.counts = {"live": 0, "alerts": 0, "strips": 0, "acks": 0, "rejected": 0}

    # ------------------------------------------------------------------ in

    def handle(self, topic: str, payload: bytes) -> list[dict[str, Any]]:
        """Events for the pages caused by one MQTT message (never raises)."""
        try:
            with self._lock:
                return self._handle(topic, payload)
        except PayloadError as exc:
            return self._reject(topic, str(exc))
        except Exception as exc:  # a safety net: nothing received may stop the station
            return self._reject(topic, f"unexpected {type(exc).__name__}: {exc}")

    def _reject(self, topic: str, reason: str) -> list[dict[str, Any]]:
        self.counts["rejected"] += 1
        log.warning("rejected message on %r: %s", topic[:200], reason)
        return []

    def _handle(self, topic: str, payload: bytes) -> list[dict[str, Any]]:
        parts = topic.split("/")
        if len(parts) != 3 or parts[0] != topics.PREFIX:
            raise PayloadError(f"not an ecg-edge topic: {topic[:200]!r}")
        device, kind = parts[1], parts[2]
        if kind == "live":
            wave = LiveWave.parse(payload)
            if wave.device_id != device:
                raise PayloadError(f"live payload of {wave.device_id!r} on {topic!r}")
            self.counts["live"] += 1
            return self._live(wave)
        if kind == "acks":
            ack = Ack.parse(payload)
            if ack.device_id != device:
                raise PayloadError(f"ack payload of {ack.device_id!r} on {topic!r}")
            self.counts["acks"] += 1
            return self._ack(ack)
        if kind in ("alerts", "status"):
            item = self._listener.handle(topic, payload)
            if item is None:  # a duplicate, a heartbeat, or rejected (the listener logs it)
                return []
            if isinstance(item.message, StatusMessage):
                return self._status(item.message)
            self.counts["alerts"] += 1
            return self._alert(item.message)
        return []

    # ------------------------------------------------------------ the parts

    def _device(self, device_id: str) -> dict[str, Any]:
        d = self.devices.get(device_id)
        if d is None:
            d = {
                "device_id": device_id,
                "status": "unknown",
                "heart_rate": None,
                "findings": {},
                "agent_version": None,
                "seen": time.time(),
            }
            self.devices[device_id] = d
        return d

    def _device_event(self, d: dict[str, Any]) -> dict[str, Any]:
        return {"t": "device", "device": self.device_view(d)}

    @staticmethod
    def device_view(d: dict[str, Any]) -> dict[str, Any]:
        return {
            "device_id": d["device_id"],
            "status": d["status"],
            "heart_rate": d["heart_rate"],
            "findings": sorted(d["findings"].values()),
            "agent_version": d["agent_version"],
        }

    def _status(self, m: StatusMessage) -> list[dict[str, Any]]:
        d = self._device(m.device_id)
        d["status"] = "offline" if m.state == "offline" else "online"
        d["agent_version"] = m.agent_version
        d["seen"] = time.time()
        if d["status"] == "offline":
            d["heart_rate"] = None
        return [self._device_event(d)]

    def _live(self, w: LiveWave) -> list[dict[str, Any]]:
        d = self._device(w.device_id)
        events: list[dict[str, Any]] = []
        changed = d["status"] != "online" or d["heart_rate"] != w.heart_rate
        d["seen"] = time.time()
        if d["status"] != "online":
            d["status"] = "online"
        if w.heart_rate is not None or d["heart_rate"] is not None:
            d["heart_rate"] = w.heart_rate
        if changed:
            events.append(self._device_event(d))
        events.append(
            {
                "t": "live",
                "d": w.device_id,
                "lead": w.lead,
                "fs": w.fs,
                "s": w.start_sample,
                "v": list(w.samples),
                "hr": w.heart_rate,
            }
        )
        return events

    def _alert(self, a: Alert) -> list[dict[str, Any]]:
        d = self._device(a.device_id)
        events: list[dict[str, Any]] = []
        if a.heart_rate.bpm is not None:
            d["heart_rate"] = a.heart_rate.bpm
        if a.kind == "diagnosis":
            for f in a.findings:
                if a.event == "onset":
                    d["findings"][f.code] = f.abbreviation
                else:
                    d["findings"].pop(f.code, None)
        events.append(self._device_event(d))
        self._seq += 1
        alarm = {
            "alert_id": a.alert_id,
            "device_id": a.device_id,
            "event": a.event,
            "kind": a.kind,
            "priority": a.priority,
            "condition": a.condition,
            "reason": a.reason,
            "findings": [f"{f.abbreviation} ({f.name})" for f in a.findings],
            "codes": [f.code for f in a.findings],
            "heart_rate": a.heart_rate.bpm,
            "emitted_at": a.emitted_at,
            "received": time.time(),
            "strip": a.strip is not None,
            "cleared": False,
            "acked": None,
            "seq": self._seq,
        }
        if a.event == "cleared":
            # the onset it ends is no longer active; the cleared event itself is listed as done
            alarm["cleared"] = True
            for other in self.alarms.values():
                if (
                    not other["cleared"]
                    and other["event"] == "onset"
                    and _key(other) == _key(alarm)
                ):
                    other["cleared"] = True
                    events.append({"t": "alarm", "alarm": dict(other)})
        alarm["acked"] = self._acks.pop(a.alert_id, None)
        self.alarms[a.alert_id] = alarm
        while len(self.alarms) > self.max_alarms:
            self.alarms.popitem(last=False)
        events.append({"t": "alarm", "alarm": dict(alarm)})
        return events

    def _ack(self, ack: Ack) -> list[dict[str, Any]]:
        info = {"by": ack.by, "station": ack.station, "at": ack.at}
        alarm = self.alarms.get(ack.alert_id)
        if alarm is None:
            self._acks[ack.alert_id] = info
            if len(self._acks) > self.max_alarms:
                self._acks.pop(next(iter(self._acks)))
            return []
        if alarm["acked"] is not None:
            return []
        alarm["acked"] = info
        return [{"t": "alarm", "alarm": dict(alarm)}]

    def keep_strip(self, strip: Strip) -> None:
        """Cache a strip fetched for a page (the last ``max_strips``)."""
        with self._lock:
            self.strips[strip.alert_id] = strip
            self.strips.move_to_end(strip.alert_id)
            while len(self.strips) > self.max_strips:
                self.strips.popitem(last=False)
            self.counts["strips"] += 1

    # ----------------------------------------------------------------- out

    def snapshot(self) -> dict[str, Any]:
        """Everything a page needs when it connects."""
        with self._lock:
            alarms = sorted(self.alarms.values(), key=alarm_order)
            return {
                "t": "snapshot",
                "devices": [self.device_view(d) for d in self.devices.values()],
                "alarms": [dict(a) for a in alarms],
            }

    def strip(self, alert_id: str) -> Strip | None:
        """The strip of ``alert_id`` if this station has fetched it."""
        with self._lock:
            return self.strips.get(alert_id)

    def alarm(self, alert_id: str) -> dict[str, Any] | None:
        with self._lock:
            a = self.alarms.get(alert_id)
            return None if a is None else dict(a)
