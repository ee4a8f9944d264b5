"""``ecg-bridge station`` and ``ecg-bridge strip``: registered by :mod:`bridge.cli`."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import typer

_BROKER = typer.Option(..., "--broker", help="mqtt://[user:pass@]host[:port] or mqtts://...")
_CA = typer.Option(None, "--ca-file", help="CA certificate(s) to verify an mqtts:// broker")
_CERT = typer.Option(None, "--cert-file", help="client certificate (mqtts://)")
_KEY = typer.Option(None, "--key-file", help="client private key (mqtts://)")


def station(
    broker: str = _BROKER,
    host: str = typer.Option(
        "127.0.0.1", "--host", help="address to serve on (not loopback: a token is required)"
    ),
    port: int = typer.Option(8080, "--port", min=1, max=65535),
    token: str | None = typer.Option(
        None,
        "--token",
        envvar="ECG_STATION_TOKEN",
        help="required of every page (?token=...); made up when --host is not loopback",
    ),
    name: str = typer.Option("station", "--name", help="this station's name in acknowledgements"),
    device: str = typer.Option("+", "--device", help="a device id, or + for all"),
    ca_file: Path | None = _CA,
    cert_file: Path | None = _CERT,
    key_file: Path | None = _KEY,
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Serve a live central station: every bed's lead II, heart rate, findings and alarms."""
    from bridge.station.server import serve

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    serve(
        broker,
        host=host,
        port=port,
        token=token or None,
        name=name,
        device=device,
        ca_file=ca_file,
        cert_file=cert_file,
        key_file=key_file,
        announce=lambda line: print(line, file=sys.stderr, flush=True),
    )


def strip(
    alert_id: str = typer.Argument(..., help="the alert's alert_id"),
    broker: str = _BROKER,
    out: Path = typer.Option(Path("strip.png"), "--out", help="the PNG to write"),
    device: str = typer.Option("+", "--device", help="the alert's device id (+: any)"),
    timeout: float = typer.Option(10.0, "--timeout", help="seconds to wait for the strip"),
    json_out: Path | None = typer.Option(
        None, "--json", help="also write the strip payload (ecg-edge/strip/1) here"
    ),
    dpi: int = typer.Option(100, "--dpi", min=50, max=600),
    ca_file: Path | None = _CA,
    cert_file: Path | None = _CERT,
    key_file: Path | None = _KEY,
) -> None:
    """Fetch an alert's strip from the broker (retained by alert_id) and draw it on ECG paper."""
    import json

    from bridge.strip import fetch_strip
    from bridge.strip_png import strip_png, write_png

    s = fetch_strip(
        broker,
        alert_id,
        device=device,
        timeout_s=timeout,
        ca_file=ca_file,
        cert_file=cert_file,
        key_file=key_file,
    )
    if json_out is not None:
        json_out.write_text(json.dumps(s.to_json()) + os.linesep, "utf-8")
    path = write_png(strip_png(s, dpi=dpi), out)
    print(
        f"wrote {path}: {s.device_id} alert {alert_id}, {s.seconds:.1f} s of {len(s.leads)} leads"
    )
