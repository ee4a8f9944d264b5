"""Real brokers for tests and benchmarks: a loopback Mosquitto (or amqtt), certificates.

>>> broker = start_broker(Path("/tmp/b"))          # doctest: +SKIP
>>> broker.url
'mqtt://127.0.0.1:40123'
>>> broker.stop()                                   # doctest: +SKIP

Mosquitto is used where ``mosquitto`` is installed (CI installs it), with
persistence on so that queued QoS 1 messages survive a restart; otherwise an
amqtt broker runs in a subprocess (no persistence, no TLS here).
``python -m bridge.testing --broker URL --spool PATH --start S --count N`` is
the small publisher process the outage test kills with SIGKILL.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bridge.errors import EcgEdgeError

MOSQUITTO_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


def find_mosquitto() -> str | None:
    """The mosquitto binary, or None."""
    found = shutil.which("mosquitto")
    if found:
        return found
    return next((p for p in MOSQUITTO_CANDIDATES if os.access(p, os.X_OK)), None)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout_s: float = 10.0, host: str = "127.0.0.1") -> bool:
    """Wait until ``host:port`` accepts TCP connections."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


@dataclass
class TLSFiles:
    """Paths for a TLS listener; ``password_file`` in mosquitto_passwd format."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    password_file: Path | None = None


@dataclass
class Broker:
    """A broker subprocess on 127.0.0.1:``port``; ``restart()`` keeps the port and data."""

    workdir: Path
    port: int
    kind: str
    tls: TLSFiles | None = None
    extra: tuple[str, ...] = ()  # more mosquitto.conf lines (a bridge, an ACL file)
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://127.0.0.1:{self.port}"

    def _command(self) -> list[str]:
        if self.kind == "mosquitto":
            return [find_mosquitto() or "mosquitto", "-c", str(self._write_mosquitto_conf())]
        amqtt = Path(sys.executable).with_name("amqtt")
        return [str(amqtt), "-c", str(self._write_amqtt_conf())]

    def _write_mosquitto_conf(self) -> Path:
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        lines = [
            f"listener {self.port} 127.0.0.1",
            "persistence true",
            f"persistence_location {data}/",
            "autosave_interval 1",
            "max_queued_messages 1000000",
            "max_inflight_messages 100",
            f"log_dest file {self.workdir / 'mosquitto.log'}",
            "log_type error",
            "log_type warning",
            "log_type notice",
        ]
        if os.geteuid() == 0:
            lines.append("user root")
        if self.tls is not None:
            lines += [
                f"cafile {self.tls.ca_file}",
                f"certfile {self.tls.cert_file}",
                f"keyfile {self.tls.key_file}",
            ]
        if self.tls is not None and self.tls.password_file is not None:
            lines += ["allow_anonymous false", f"password_file {self.tls.password_file}"]
        else:
            lines.append("allow_anonymous true")
        lines += list(self.extra)
        conf = self.workdir / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def _write_amqtt_conf(self) -> Path:
        conf = self.workdir / "amqtt.yaml"
        conf.write_text(
            "listeners:\n  default:\n    type: tcp\n"
            f"    bind: 127.0.0.1:{self.port}\n"
            "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n"
            "    allow_anonymous: true\n"
        )
        return conf

    def start(self, timeout_s: float = 10.0) -> Broker:
        """Start the broker and wait until its port answers."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.workdir / f"{self.kind}.out", "ab")  # noqa: SIM115 - lives with proc
        self.proc = subprocess.Popen(
            self._command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        log.close()
        if not wait_port(self.port, timeout_s):
            self.stop()
            raise EcgEdgeError(f"{self.kind} did not start on port {self.port}: {self.log_tail()}")
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM (Mosquitto saves its persistence file), then SIGKILL if needed."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self, down_s: float = 0.0) -> None:
        """Stop, stay down ``down_s`` seconds, start again on the same port."""
        self.stop()
        time.sleep(down_s)
        self.start()

    def log_tail(self, n: int = 2000) -> str:
        text = ""
        for name in ("mosquitto.log", f"{self.kind}.out"):
            path = self.workdir / name
            if path.exists():
                text += path.read_text(errors="replace")
        return text[-n:]


def start_broker(
    workdir: Path,
    *,
    port: int | None = None,
    kind: str = "auto",
    tls: TLSFiles | None = None,
    extra: tuple[str, ...] = (),
) -> Broker:
    """Start a loopback broker: Mosquitto when installed (``kind="auto"``), else amqtt.

    ``extra``: more ``mosquitto.conf`` lines (Mosquitto only), e.g. a bridge.
    """
    if kind == "auto":
        kind = "mosquitto" if find_mosquitto() else "amqtt"
    if (tls is not None or extra) and kind != "mosquitto":
        raise EcgEdgeError("a TLS, bridged or ACL test broker needs mosquitto")
    return Broker(Path(workdir), port or free_port(), kind, tls, tuple(extra)).start()


class FhirStandIn:
    """A FHIR server stand-in on 127.0.0.1: ``POST /Observation`` with conditional create.

    An ``If-None-Exist: identifier=<system>|<value>`` naming a stored
    Observation answers 200 and creates nothing (what a FHIR server does);
    otherwise the Observation is stored (201). ``delay_s`` makes it slow.
    ``created`` lists identifiers in creation order; ``posts`` counts requests.

    >>> fhir = FhirStandIn().start()          # doctest: +SKIP
    >>> fhir.url                              # doctest: +SKIP
    'http://127.0.0.1:40999/fhir'
    """

    def __init__(self, delay_s: float = 0.0) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.delay_s = delay_s
        self.created: list[str] = []
        self.resources: dict[str, dict] = {}
        self.posts = 0
        self.existing = 0  # conditional creates answered "already there"
        self._lock = threading.Lock()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                import json

                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if stand_in.delay_s:
                    time.sleep(stand_in.delay_s)
                ident = body["identifier"][0]
                key = f"{ident['system']}|{ident['value']}"
                cond = self.headers.get("If-None-Exist", "")
                with stand_in._lock:
                    stand_in.posts += 1
                    if cond == f"identifier={key}" and key in stand_in.resources:
                        stand_in.existing += 1
                        status = 200
                    else:
                        stand_in.resources[key] = body
                        stand_in.created.append(key)
                        status = 201
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/fhir"

    def start(self) -> FhirStandIn:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def write_password_file(path: Path, users: dict[str, str]) -> Path:
    """A mosquitto password file (``mosquitto_passwd`` where installed)."""
    path = Path(path)
    path.write_text("")
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    if os.access(tool, os.X_OK):
        for user, password in users.items():
            subprocess.run([tool, "-b", str(path), user, password], check=True)
        return path
    import base64  # mosquitto 2 format: $7$iterations$salt$pbkdf2-sha512

    lines = []
    for user, password in users.items():
        salt = os.urandom(12)
        digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 101)
        b64 = base64.b64encode
        lines.append(f"{user}:$7$101${b64(salt).decode()}${b64(digest).decode()}")
    path.write_text("\n".join(lines) + "\n")
    return path


def make_certificates(workdir: Path, host: str = "127.0.0.1") -> dict[str, Path]:
    """A CA, a server certificate for ``host``/localhost signed by it, and an unrelated CA.

    Returns paths ``ca``, ``server_cert``, ``server_key``, ``other_ca``,
    ``client_cert``, ``client_key`` (all PEM).
    """
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    now = _dt.datetime.now(_dt.timezone.utc)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def ca(cn: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name(cn))
            .issuer_name(name(cn))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _dt.timedelta(minutes=5))
            .not_valid_after(now + _dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        return cert, key

    def leaf(cn: str, issuer: x509.Certificate, issuer_key, server: bool):  # type: ignore[no-untyped-def]
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(cn))
            .issuer_name(issuer.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _dt.timedelta(minutes=5))
            .not_valid_after(now + _dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                False,
            )
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(host))]
                ),
                critical=False,
            )
        return builder.sign(issuer_key, hashes.SHA256()), key

    def write(path: Path, obj) -> Path:  # type: ignore[no-untyped-def]
        if isinstance(obj, x509.Certificate):
            path.write_bytes(obj.public_bytes(serialization.Encoding.PEM))
        else:
            path.write_bytes(
                obj.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.TraditionalOpenSSL,
                    serialization.NoEncryption(),
                )
            )
        return path

    ca_cert, ca_key = ca("ecg-edge test CA")
    other_cert, _ = ca("some other CA")
    server_cert, server_key = leaf(host, ca_cert, ca_key, True)
    client_cert, client_key = leaf("ecg-edge client", ca_cert, ca_key, False)
    out = {
        "ca": write(workdir / "ca.pem", ca_cert),
        "other_ca": write(workdir / "other-ca.pem", other_cert),
        "server_cert": write(workdir / "server.pem", server_cert),
        "server_key": write(workdir / "server.key", server_key),
        "client_cert": write(workdir / "client.pem", client_cert),
        "client_key": write(workdir / "client.key", client_key),
    }
    for key in ("server_key", "client_key"):
        out[key].chmod(0o600)
    return out


def seq_alert_id(seq: int, tag: str = "test") -> str:
    """A deterministic alert id for message ``seq`` (so a re-spooled alert keeps it)."""
    return hashlib.sha256(f"{tag}:{seq}".encode()).hexdigest()[:32]


def _publisher_main(argv: list[str] | None = None) -> int:
    """Publish alerts ``start..start+count-1``, printing ``spooled <seq>`` after each commit."""
    from bridge.publish import Publisher
    from bridge.schema import sample_alert

    p = argparse.ArgumentParser(prog="python -m bridge.testing")
    p.add_argument("--broker", required=True)
    p.add_argument("--spool", required=True)
    p.add_argument("--device", default="outage-1")
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--interval", type=float, default=0.01)
    p.add_argument("--tag", default="test")
    p.add_argument("--linger", type=float, default=60.0, help="seconds to wait for the flush")
    args = p.parse_args(argv)
    pub = Publisher(
        args.broker, args.device, Path(args.spool), reconnect_min_s=0.1, reconnect_max_s=1.0
    ).start()
    for seq in range(args.start, args.start + args.count):
        alert = sample_alert(args.device, alert_id=seq_alert_id(seq, args.tag))
        alert = type(alert)(**{**alert.__dict__, "record": f"seq-{seq}"})
        pub.publish_alert(alert)
        print(f"spooled {seq}", flush=True)
        time.sleep(args.interval)
    ok = pub.flush(args.linger)
    print(f"flushed {ok} {pub.stats()}", flush=True)
    pub.close(timeout_s=2)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(_publisher_main())
