"""``ecg-bridge``: listen to, forward and test the MQTT side.

Credentials: ``mqtt://user:pass@host`` or ``ECG_MQTT_USERNAME`` /
``ECG_MQTT_PASSWORD``; they are never printed.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import typer

from bridge._cli import entry_point, quiet
from bridge._state import state_file

app = typer.Typer(
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    add_completion=False,
    help="The MQTT side of ecg-edge: listen to alerts, forward them, send test alerts.",
)

BrokerOpt = typer.Option(..., "--broker", help="mqtt://[user:pass@]host[:port] or mqtts://...")
CaOpt = typer.Option(None, "--ca-file", help="CA certificate(s) to verify an mqtts:// broker")
CertOpt = typer.Option(None, "--cert-file", help="client certificate (mqtts://)")
KeyOpt = typer.Option(None, "--key-file", help="client private key (mqtts://)")


def _notice(line: str) -> None:
    """A connection notice on stderr (with --quiet only warnings)."""
    if not quiet() or line.startswith("warning"):
        print(line, file=sys.stderr, flush=True)


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@app.command()
def listen(
    broker: str = BrokerOpt,
    device: str = typer.Option("+", "--device", help="a device id, or + for all"),
    json_lines: bool = typer.Option(False, "--json", help="print JSON lines"),
    quality: bool = typer.Option(False, "--quality", help="also print quality events"),
    frames: bool = typer.Option(False, "--frames", help="also print per-frame scores"),
    count: int | None = typer.Option(None, "--count", help="exit after this many messages"),
    timeout: float | None = typer.Option(None, "--timeout", help="exit after seconds"),
    client_id: str | None = typer.Option(None, "--client-id"),
    persistent: bool = typer.Option(
        False, "--persistent", help="keep a broker session under --client-id (no missed alerts)"
    ),
    ca_file: Path | None = CaOpt,
    cert_file: Path | None = CertOpt,
    key_file: Path | None = KeyOpt,
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Print alerts and status changes as they come; invalid payloads are logged and skipped."""
    from bridge.listen import listen as run

    _logging(verbose)
    listener = run(
        broker,
        device,
        json_lines=json_lines,
        quality=quality,
        frames=frames,
        count=count,
        timeout_s=timeout,
        client_id=client_id,
        persistent=persistent,
        ca_file=ca_file,
        cert_file=cert_file,
        key_file=key_file,
        notice=_notice,
    )
    c = listener.counts
    print(
        f"{c['accepted']} shown, {c['duplicates']} duplicates dropped, {c['rejected']} rejected",
        file=sys.stderr,
    )


@app.command()
def forward(
    broker: str = BrokerOpt,
    to: str = typer.Option(..., "--to", help="jsonl:PATH, webhook:URL or fhir:URL"),
    outbox: Path | None = typer.Option(
        None, "--outbox", help="sqlite outbox (default: forward-outbox.db in the state directory)"
    ),
    device: str = typer.Option("+", "--device"),
    client_id: str = typer.Option(
        "ecg-forward", "--client-id", help="persistent session id (one per group member)"
    ),
    group: str | None = typer.Option(
        None,
        "--group",
        help="share the alerts with the other forwarders of this group (MQTT 5 $share/GROUP/...)",
    ),
    max_outbox: int = typer.Option(
        100_000, "--max-outbox", min=1, help="warn when this many alerts wait for the target"
    ),
    count: int | None = typer.Option(None, "--count", help="exit after this many alerts"),
    timeout: float | None = typer.Option(None, "--timeout", help="exit after seconds"),
    ca_file: Path | None = CaOpt,
    cert_file: Path | None = CertOpt,
    key_file: Path | None = KeyOpt,
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Write or post each alert; a target that is down is retried, nothing is lost."""
    from bridge.forward import Forwarder, parse_target

    _logging(verbose)
    fwd = Forwarder(
        broker,
        parse_target(to),
        outbox or state_file("forward-outbox.db"),
        device=device,
        client_id=client_id,
        ca_file=ca_file,
        cert_file=cert_file,
        key_file=key_file,
        group=group,
        max_outbox=max_outbox,
    ).start()
    shared = f" (group {group}, MQTT {'5' if fwd.mqtt5 else '3.1.1'})" if group else ""
    print(
        f"forwarding alerts from {fwd.broker}{shared} to {fwd.target.name.split('?')[0]}",
        file=sys.stderr,
    )
    try:
        fwd.run(count=count, timeout_s=timeout)
    except KeyboardInterrupt:
        pass
    finally:
        fwd.close()
    c = fwd.counts
    print(
        f"{c['delivered']} delivered, {c['duplicates']} duplicates dropped, "
        f"{c['failures']} failed attempts",
        file=sys.stderr,
    )


@app.command("publish-test")
def publish_test(
    broker: str = BrokerOpt,
    device: str = typer.Option("demo-1", "--device"),
    count: int = typer.Option(1, "--count", min=1),
    spool: Path | None = typer.Option(
        None, "--spool", help="sqlite spool (default: publish-test.db in the state directory)"
    ),
    timeout: float = typer.Option(10.0, "--timeout", help="seconds to wait for the acks"),
    ca_file: Path | None = CaOpt,
    cert_file: Path | None = CertOpt,
    key_file: Path | None = KeyOpt,
) -> None:
    """Send ``count`` sample alerts (atrial fibrillation) through the spooling publisher."""
    from bridge.errors import PublishError
    from bridge.publish import Publisher
    from bridge.schema import sample_alert

    _logging(False)
    pub = Publisher(
        broker,
        device,
        spool or state_file("publish-test.db"),
        ca_file=ca_file,
        cert_file=cert_file,
        key_file=key_file,
    ).start()
    start = time.perf_counter()
    for _ in range(count):
        pub.publish_alert(sample_alert(device))
    ok = pub.flush(timeout)
    took = time.perf_counter() - start
    stats = pub.stats()
    pub.close(timeout_s=1)
    if not ok:
        raise PublishError(
            f"{stats['pending']} alerts not acknowledged after {timeout:g} s "
            f"({stats['last_error'] or 'no answer'}); they stay in {spool}"
        )
    print(f"{count} alerts acknowledged in {took:.2f} s")


@app.command()
def check(
    broker: str = BrokerOpt,
    ca_file: Path | None = CaOpt,
    cert_file: Path | None = CertOpt,
    key_file: Path | None = KeyOpt,
    timeout: float = typer.Option(10.0, "--timeout"),
) -> None:
    """Connect once and say whether the broker accepts us (TLS, credentials)."""
    import uuid

    from bridge._conn import connect_blocking, make_client, parse_broker_url

    url = parse_broker_url(broker)
    client = make_client(
        url,
        f"ecg-check-{uuid.uuid4().hex[:8]}",
        ca_file=ca_file,
        cert_file=cert_file,
        key_file=key_file,
    )
    connect_blocking(client, url, timeout_s=timeout)
    client.disconnect()
    print(f"connected to {url}")


@app.command()
def schema(kind: str = typer.Argument("alert", help="alert, status, quality or frame")) -> None:
    """Print the JSON Schema of a payload kind."""
    from bridge.errors import check_choice
    from bridge.schema import schema_document

    check_choice("kind", kind, ("alert", "status", "quality", "frame"))
    print(json.dumps(schema_document(kind), indent=2))


@app.command()
def fleet(
    devices: int = typer.Option(10, "--devices", min=1, max=2000, help="simulated agents"),
    rate: float = typer.Option(1.0, "--rate", help="alerts per second per device"),
    seconds: float = typer.Option(20.0, "--seconds", help="how long the agents publish"),
    heartbeat_s: float = typer.Option(30.0, "--heartbeat-s", help="status heartbeat period"),
    frame_hz: float = typer.Option(0.0, "--frame-hz", help="frame scores per second (QoS 0)"),
    broker: str | None = typer.Option(
        None, "--broker", help="an existing broker (default: start a loopback Mosquitto)"
    ),
) -> None:
    """Simulate a fleet through the real publisher and spool; print the figures as JSON.

    Alerts per second end to end, latency (p50/p99/max), lost and duplicated
    alerts, broker and subscriber CPU (% of one core) and peak memory.
    """
    from bridge.fleet import run_fleet

    _logging(False)
    result = run_fleet(
        devices, rate, seconds, broker_url=broker, heartbeat_s=heartbeat_s, frame_hz=frame_hz
    )
    print(json.dumps(result, indent=2))


from bridge.station.cli import station, strip  # noqa: E402

app.command()(station)
app.command()(strip)
main = entry_point(app)

if __name__ == "__main__":
    main()
