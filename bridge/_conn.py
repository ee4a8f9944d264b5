"""Broker URLs, credentials and TLS: what publisher and subscribers share.

``mqtt://[user:pass@]host[:port]`` (port 1883) or ``mqtts://...`` (port 8883, TLS).
Credentials missing from the URL come from ``ECG_MQTT_USERNAME`` and
``ECG_MQTT_PASSWORD``. A password is never printed: use :func:`redact`.
"""

from __future__ import annotations

import os
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bridge.errors import PublishError

ENV_USERNAME = "ECG_MQTT_USERNAME"
ENV_PASSWORD = "ECG_MQTT_PASSWORD"


@dataclass(frozen=True)
class BrokerURL:
    """A parsed broker address; ``repr`` and ``str`` hide the password."""

    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = None

    def __str__(self) -> str:
        user = f"{self.username}:***@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"

    __repr__ = __str__


def parse_broker_url(url: str, *, env: dict[str, str] | None = None) -> BrokerURL:
    """Parse ``mqtt://`` / ``mqtts://`` URLs; PublishError on anything else."""
    env = os.environ if env is None else env
    if not isinstance(url, str) or "://" not in url:
        raise PublishError(f"Invalid broker URL {redact(str(url))!r}: expected mqtt://host[:port]")
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise PublishError(
            f"Invalid broker URL {redact(url)!r}: scheme must be mqtt or mqtts, "
            f"got {parts.scheme!r}"
        )
    try:
        port = parts.port
    except ValueError:
        raise PublishError(f"Invalid broker URL {redact(url)!r}: bad port") from None
    if not parts.hostname:
        raise PublishError(f"Invalid broker URL {redact(url)!r}: no host")
    if parts.path not in ("", "/") or parts.query:
        raise PublishError(f"Invalid broker URL {redact(url)!r}: no path or query allowed")
    tls = parts.scheme == "mqtts"
    user = unquote(parts.username) if parts.username else env.get(ENV_USERNAME) or None
    password = unquote(parts.password) if parts.password else env.get(ENV_PASSWORD) or None
    return BrokerURL(parts.hostname, port or (8883 if tls else 1883), tls, user, password)


def redact(url: str) -> str:
    """``mqtt://user:secret@host`` -> ``mqtt://user:***@host``."""
    if "://" not in url or "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    cred, host = rest.rsplit("@", 1)
    user = cred.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in cred else f"{scheme}://{user}@{host}"


def tls_context(
    ca_file: str | Path | None, cert_file: str | Path | None, key_file: str | Path | None
) -> ssl.SSLContext:
    """A client TLS context verifying the broker (system CAs unless ``ca_file``)."""
    for name, path in (("ca_file", ca_file), ("cert_file", cert_file), ("key_file", key_file)):
        if path is not None and not Path(path).is_file():
            raise PublishError(f"Invalid value for {name!r}: no such file {str(path)!r}")
    if (cert_file is None) != (key_file is None) and key_file is not None:
        raise PublishError("Invalid TLS options: --key-file needs --cert-file")
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
        if cert_file is not None:
            ctx.load_cert_chain(cert_file, key_file)
    except (ssl.SSLError, OSError) as exc:
        raise PublishError(f"Cannot load TLS files: {exc}") from None
    return ctx


def make_client(
    broker: BrokerURL,
    client_id: str,
    *,
    clean_session: bool = True,
    ca_file: str | Path | None = None,
    cert_file: str | Path | None = None,
    key_file: str | Path | None = None,
    mqtt5: bool = False,
) -> mqtt.Client:
    """A paho v2 client with credentials and TLS set up, not connected.

    MQTT 3.1.1 by default; ``mqtt5`` gives an MQTT 5 client, whose session is
    chosen at connect time (``clean_start`` and a session expiry, see
    :func:`session_properties`) instead of by ``clean_session``.
    """
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=None if mqtt5 else clean_session,
        protocol=mqtt.MQTTv5 if mqtt5 else mqtt.MQTTv311,
    )
    if broker.username:
        client.username_pw_set(broker.username, broker.password)
    if broker.tls:
        client.tls_set_context(tls_context(ca_file, cert_file, key_file))
    elif ca_file or cert_file or key_file:
        raise PublishError("TLS files given but the broker URL is mqtt://; use mqtts://")
    return client


def describe_failure(exc: BaseException) -> str:
    """A one-line reason for a failed connection attempt."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted ({exc.verify_message}); check --ca-file"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed ({exc.reason or exc})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the broker running?)"
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc})"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "timed out"
    return f"{type(exc).__name__}: {exc}"


def session_properties(expiry_s: int) -> Properties:
    """MQTT 5 CONNECT properties asking the broker to keep the session ``expiry_s`` seconds.

    ``0xFFFFFFFF`` means never expire (what ``clean_session=False`` is in 3.1.1).
    """
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = int(expiry_s)
    return props


def connect_blocking(
    client: mqtt.Client,
    broker: BrokerURL,
    *,
    timeout_s: float = 10.0,
    keepalive: int = 30,
    clean_start: bool | int = mqtt.MQTT_CLEAN_START_FIRST_ONLY,
    properties: Properties | None = None,
) -> None:
    """Connect ``client`` and wait for CONNACK; raise PublishError with a clear reason.

    ``clean_start`` and ``properties`` are for MQTT 5 clients (paho keeps them
    for its reconnects). On return the client is connected and its network loop
    is NOT running.
    """
    done = threading.Event()
    result: dict[str, object] = {}
    previous = client.on_connect

    def on_connect(c, userdata, flags, reason_code, properties):  # type: ignore[no-untyped-def]
        result["rc"] = reason_code
        done.set()
        if previous is not None:
            previous(c, userdata, flags, reason_code, properties)

    client.on_connect = on_connect
    try:
        client.connect(
            broker.host,
            broker.port,
            keepalive=keepalive,
            clean_start=clean_start,
            properties=properties,
        )
    except (OSError, ssl.SSLError) as exc:
        client.on_connect = previous
        raise PublishError(f"Cannot connect to {broker}: {describe_failure(exc)}") from None
    deadline = time.monotonic() + timeout_s
    while not done.is_set() and time.monotonic() < deadline:
        if client.loop(timeout=0.1) != mqtt.MQTT_ERR_SUCCESS:
            break
    client.on_connect = previous
    reason = result.get("rc")
    if reason is None:
        raise PublishError(f"Cannot connect to {broker}: no answer from the broker")
    if reason.is_failure:  # type: ignore[attr-defined]
        raise PublishError(f"Broker {broker} refused the connection: {reason}")
