"""Topic names: ``ecg/<device-id>/{alerts,status,frames,quality}``.

>>> alerts_topic("bed-12")
'ecg/bed-12/alerts'
>>> parse_topic("ecg/bed-12/status")
('bed-12', 'status')
"""

from __future__ import annotations

import re

from bridge.errors import invalid

PREFIX = "ecg"
KINDS = ("alerts", "status", "frames", "quality")
_DEVICE_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def check_device_id(device_id: str, *, allow_wildcard: bool = False) -> str:
    """Return ``device_id`` if it is 1-64 characters of ``A-Z a-z 0-9 . _ : -``.

    ``/``, ``+``, ``#`` and spaces are refused (they would change the topic tree);
    ``+`` alone is accepted as the single-level wildcard with ``allow_wildcard``.
    """
    if allow_wildcard and device_id == "+":
        return device_id
    if not isinstance(device_id, str) or not _DEVICE_RE.match(device_id):
        raise invalid(
            "device_id", "1-64 characters of letters, digits, '.', '_', ':', '-'", device_id
        )
    return device_id


def topic(device_id: str, kind: str, *, allow_wildcard: bool = False) -> str:
    """The topic of ``kind`` (one of :data:`KINDS`) for ``device_id``."""
    if kind not in KINDS:
        raise invalid("kind", "one of " + ", ".join(KINDS), kind)
    return f"{PREFIX}/{check_device_id(device_id, allow_wildcard=allow_wildcard)}/{kind}"


def alerts_topic(device_id: str) -> str:
    """``ecg/<device-id>/alerts``: QoS 1, not retained."""
    return topic(device_id, "alerts")


def status_topic(device_id: str) -> str:
    """``ecg/<device-id>/status``: QoS 1, retained, last will ``offline``."""
    return topic(device_id, "status")


def frames_topic(device_id: str) -> str:
    """``ecg/<device-id>/frames``: per-frame scores, QoS 0, off by default."""
    return topic(device_id, "frames")


def quality_topic(device_id: str) -> str:
    """``ecg/<device-id>/quality``: signal-quality events, QoS 1, not retained."""
    return topic(device_id, "quality")


def parse_topic(name: str) -> tuple[str, str] | None:
    """Split ``ecg/<device>/<kind>`` into ``(device, kind)``; None if it is not one."""
    parts = name.split("/")
    if len(parts) != 3 or parts[0] != PREFIX or parts[2] not in KINDS:
        return None
    if not _DEVICE_RE.match(parts[1]):
        return None
    return parts[1], parts[2]
