"""The ``ecg-edge`` command line: replay, run, simulate-device, info.

``replay`` and ``run`` print one readable line per frame and a highlighted
line per alert (ANSI colours only on a terminal), or with ``--json`` one JSON
object per line (``{"type": "frame"|"alert"|"quality"|"status", ...}``) and
nothing else on stdout; notices go to stderr. SIGINT/SIGTERM stop cleanly.
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from bridge._cli import entry_point, quiet, use_color
from edge import _deploy_cli
from edge.errors import ConfigError, SourceError, check_choice, invalid

app = typer.Typer(
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    add_completion=False,
    help="Streaming 12-lead ECG monitor: replay WFDB records or read a serial device, "
    "classify the last 30 s every 10 s (the first two frames of a stream hold 10 s and "
    "20 s), publish alerts over MQTT.",
)

_BUNDLE = typer.Option(None, "--bundle", help="Model bundle folder or archive (default: shipped).")
_PRECISION = typer.Option("int8", "--precision", help="Extractor precision: int8 or fp32.")
_THREADS = typer.Option(1, "--threads", help="onnxruntime intra-op threads.")
_HOP = typer.Option(10.0, "--hop-s", help="Seconds of new signal between frames (<= 30).")
_CONFIRM = typer.Option(1, "--confirm", help="Consecutive positive frames before an onset.")
_JSON = typer.Option(False, "--json", help="One JSON object per line on stdout, nothing else.")
_BROKER = typer.Option(None, "--broker", help="MQTT broker URL (mqtt://host:1883, mqtts://...).")
_DEVICE_ID = typer.Option("edge-1", "--device-id", help="Device id in MQTT topics and payloads.")
_SPOOL = typer.Option(
    None,
    "--spool",
    help="Alert spool (sqlite); default <device-id>.db in the state directory "
    "($ECG_EDGE_STATE_DIR, else $XDG_STATE_HOME/ecg-edge, i.e. ~/.local/state/ecg-edge).",
)
_SPOOL_MAX = typer.Option(
    None,
    "--spool-max-mb",
    help="Largest spool file in MB (default: the disk); when full, quality events are "
    "dropped first, alerts never (a technical alert says so).",
)
_CA = typer.Option(None, "--ca-file", help="CA certificate for mqtts://.")
_CERT = typer.Option(None, "--cert-file", help="Client certificate for mqtts://.")
_KEY = typer.Option(None, "--key-file", help="Client key for mqtts://.")
_FRAMES = typer.Option(False, "--publish-frames", help="Also publish per-frame scores (QoS 0).")
_LIVE = typer.Option(
    False, "--live", help="Also publish lead II live for a central station (QoS 0)."
)
_HEARTBEAT = typer.Option(30.0, "--heartbeat-s", help="Seconds between status heartbeats.")
_MAX_FILL = typer.Option(
    0.1, "--max-fill-s", help="Longest dropout filled in (linear interpolation); 0: none."
)
_KEEP_LEADS = typer.Option(
    False,
    "--keep-leads",
    help="Classify frames as recorded even when the lead checks confirm an LA/RA reversal "
    "or an inverted lead (by default it is undone first; the alarm stands either way).",
)
_ALARM_LIMITS = typer.Option(
    None,
    "--alarm-limits",
    help="Fast alarm limits, e.g. low=50,high=120,extreme_low=40,extreme_high=160,asystole_s=4,"
    "no_signal_s=5 (bpm, seconds; these are the defaults).",
)
_CONFIG = typer.Option(
    None, "--config", help="Configuration file (TOML, see deploy/agent.toml); flags override it."
)
_TRUSTED = typer.Option(
    None,
    "--trusted-key",
    help="Public key (PEM) a bundle's signature must verify with; repeat for several "
    "(default: the package's demonstration key).",
)
_UNSIGNED = typer.Option(
    False, "--allow-unsigned", help="Run a bundle whose signature does not verify (development)."
)


def parse_speed(speed: str | float | None) -> float | None:
    """``--speed``: a positive factor of real time, or "max" (None) for as fast as possible.

    >>> parse_speed("10"), parse_speed("max")
    (10.0, None)
    """
    if speed is None or str(speed).strip().lower() in ("max", "inf"):
        return None
    try:
        value = float(speed)
    except ValueError:
        raise invalid("speed", "a positive number or 'max'", speed) from None
    if not value > 0 or value == float("inf"):
        raise invalid("speed", "a positive number or 'max'", speed)
    return value


# ------------------------------------------------------------------ output


class _Style:
    """ANSI colours when ``tty`` (a terminal, and ``NO_COLOR`` unset: see ``use_color``)."""

    def __init__(self, tty: bool) -> None:
        self.tty = tty

    def __call__(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.tty else text


def _seconds(sample: int, fs: float) -> str:
    s = sample / fs
    return f"{int(s // 60)}:{s % 60:05.2f}"


def json_sink(out=None) -> Callable[[dict], None]:
    """Events as JSON lines on ``out`` (stdout)."""

    def sink(event: dict) -> None:
        stream = out or sys.stdout
        stream.write(json.dumps(event, separators=(",", ":"), allow_nan=False) + "\n")
        stream.flush()

    return sink


def console_sink(classes: dict[str, Any], out=None) -> Callable[[dict], None]:
    """Events as readable lines: one per frame, a highlighted one per alert."""
    stream = out or sys.stdout
    style = _Style(use_color(stream))

    def sink(event: dict) -> None:
        kind = event["type"]
        if quiet() and kind != "alert":
            return
        if kind == "frame":
            fs = event["fs"]
            span = f"{_seconds(event['start_sample'], fs)}-{_seconds(event['end_sample'], fs)}"
            if event["n_valid"] < 29.99 * fs:  # the first frames of a stream are shorter
                span = f"({event['n_valid'] / fs:.0f} s) {span}"
            pos = [classes[c].abbreviation for c in event["positives"] if c in classes]
            top = sorted(event["scores"].items(), key=lambda kv: -kv[1])[:3]
            tops = " ".join(f"{classes[c].abbreviation}={s:+.2f}" for c, s in top)
            bpm = (event.get("heart_rate") or {}).get("bpm")
            hr = f"HR {bpm:3.0f}" if bpm is not None else "HR   -"
            line = (
                f"{event['record'] or '':<10} {span:>17}  {hr}  "
                f"{'+'.join(pos) or '-':<16} top {tops}  {event['latency_ms']:.1f} ms"
            )
        elif kind == "alert":
            what = ", ".join(
                f"{f['abbreviation']} ({f['name']}, score {f['score']:.2f} "
                f"{'>=' if f['score'] >= f['threshold'] else '<'} {f['threshold']:.2f})"
                for f in event["findings"]
            )
            if event.get("kind", "diagnosis") != "diagnosis":  # a fast alarm (edge.alarms)
                what = f"{event['condition']}: {event['reason']}"
            what = f"[{event.get('priority', 'low')}] {what}"
            fr = event["frame"]
            span = (
                f"{_seconds(fr['start_sample'], fr['fs'])}-{_seconds(fr['end_sample'], fr['fs'])}"
            )
            label = "ALERT ONSET  " if event["event"] == "onset" else "ALERT CLEARED"
            color = "1;31" if event["event"] == "onset" else "1;32"
            line = style(
                f">>> {label} {what}  [{event['record'] or event['device_id']} {span}, "
                f"latency {event['latency_ms']:.1f} ms]",
                color,
            )
        elif kind == "quality":
            fr = event["frame"]
            span = (
                f"{_seconds(fr['start_sample'], fr['fs'])}-{_seconds(fr['end_sample'], fr['fs'])}"
            )
            reasons = "; ".join(event["quality"]["reasons"])
            line = style(
                f"{event['record'] or '':<10} {span:>17}  quality: {reasons} (not diagnosed)",
                "33",
            )
        else:
            line = style(status_line(event, classes), "2")
        stream.write(line + "\n")
        stream.flush()

    return sink


def _abbreviations(codes, classes: dict[str, Any]) -> str:
    return ", ".join(classes[c].abbreviation if c in classes else str(c) for c in codes) or "-"


def status_line(event: dict, classes: dict[str, Any]) -> str:
    """A status event as one line: counters ``k=v``, findings by abbreviation."""
    parts = []
    for k, v in event.get("extra", {}).items():
        if k == "standing":
            v = _abbreviations(v, classes)
        elif isinstance(v, dict):
            v = "{" + ", ".join(f"{a}={b}" for a, b in v.items()) + "}"
        parts.append(f"{k}={v}")
    return f"status {event['state']}: " + ", ".join(parts)


def summary_lines(
    summary, counters: dict, classes: dict[str, Any], *, replay: bool, skipped: int = 0
) -> list[str]:
    """The end-of-run summary: what was diagnosed, what the stream and the device lost."""
    s = summary
    head = f"{s.frames} frames diagnosed, {s.quality_failures} failed quality, {s.alerts} alerts"
    if replay:
        head += f", {len(s.records)} record(s) played"
        if skipped:
            head += f", {skipped} skipped (unreadable)"
    lines = [f"{head} in {s.seconds:.1f} s"]
    if s.standing:
        lines.append(f"still positive at the end: {_abbreviations(s.standing, classes)}")
    serial = counters.get("serial")
    if serial is not None or s.gaps or s.filled_gaps:
        lines.append(
            f"dropouts: {s.filled_gaps} filled in ({s.filled_samples} samples), "
            f"{s.gaps} too long to fill (filters restarted)"
        )
    if serial is not None:
        lines.append(
            f"serial: {serial['packets_ok']} samples received, {serial['crc_errors']} CRC "
            f"errors, {serial['bytes_discarded']} bytes dropped, {serial['bad_lines']} bad CSV "
            f"lines, {serial['gaps']} sequence gaps ({serial['samples_lost']} samples lost), "
            f"{serial['seq_resets']} device restarts, {serial['reconnects']} reconnects"
        )
    return lines


# ---------------------------------------------------------------- the runs


def _open_bundle(bundle: Path | None, trusted_keys=(), allow_unsigned: bool = False):
    """The bundle, its signature verified against the trusted keys (edge.signing)."""
    from edge.signing import open_verified

    return open_verified(bundle, trusted_keys, allow_unsigned, warn=_stderr)


def _publisher(
    broker, device_id, spool, ca_file, cert_file, key_file, frames, bundle, heartbeat_s,
    spool_max_mb=None,
):  # fmt: skip
    if broker is None:
        return None
    from bridge._state import state_file
    from bridge.publish import Publisher

    spool = spool or state_file(f"{device_id}.db")
    Path(spool).parent.mkdir(parents=True, exist_ok=True)
    return Publisher(
        broker,
        device_id,
        spool,
        ca_file=ca_file,
        cert_file=cert_file,
        key_file=key_file,
        publish_frames=frames,
        heartbeat_s=heartbeat_s,
        bundle_sha256=bundle.sha256,
        on_ack=_log_ack,
        max_spool_bytes=None if spool_max_mb is None else int(spool_max_mb * 1e6),
    ).start()


def _log_ack(ack) -> None:
    """A central station acknowledged one of our alerts (``ecg/<device-id>/acks``)."""
    who = f" by {ack.by}" if ack.by else ""
    _stderr(f"acknowledged: alert {ack.alert_id}{who} at station {ack.station} ({ack.at})")


def _stderr(message: str) -> None:
    """A notice on stderr; with --quiet only warnings and errors."""
    if quiet() and not message.startswith(("warning", "error")):
        return
    print(message, file=sys.stderr, flush=True)


def _run_agent(source, bundle, *, as_json, publisher, reload=None, **agent_kw) -> int:
    """``reload``: where SIGHUP reloads the bundle from (edge.reload.Reloader's arguments)."""
    from edge.agent import Agent

    classes = {c.code: c for c in bundle.manifest.classes}
    sink = json_sink() if as_json else console_sink(classes)
    try:
        agent = Agent(bundle, publisher=publisher, sink=sink, **agent_kw)
    except BaseException:
        source.close()
        if publisher is not None:
            publisher.close()
        raise

    from edge.sdnotify import Notifier, Watchdog
    from edge.signing import demo_notice

    notifier = Notifier()  # systemd Type=notify; does nothing outside systemd
    watchdog = Watchdog(notifier).start()  # WATCHDOG=1 while the stream loop lives

    def on_signal(signum, frame) -> None:  # the current chunk finishes, then the run ends
        notifier.stopping()
        agent.stop()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    if reload is not None:  # SIGHUP: verify and self-test the bundle again, swap between frames
        from edge.reload import Reloader, write_pidfile

        reloader = Reloader(agent, log=_stderr, notifier=notifier, **reload)
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, lambda *_: reloader.request())
        write_pidfile(agent.device_id)
    if publisher is not None:  # a full disk or spool: one technical alert says so
        from edge.reload import watch_storage

        watch_storage(agent, publisher, _stderr)
    if demo_notice(bundle):
        _stderr(demo_notice(bundle))
    notifier.ready(f"streaming with bundle {bundle.sha256[:12]}")
    try:
        summary = agent.run(watchdog.watch(source))
    finally:
        watchdog.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
        if publisher is not None and not publisher.close(timeout_s=10.0):
            _stderr("warning: some alerts are still in the spool; they go out on the next run")
    skipped = len(getattr(source, "skipped", ()))
    if not as_json:
        replay = hasattr(source, "records")
        for line in summary_lines(
            summary, agent.counters(), classes, replay=replay, skipped=skipped
        ):
            _stderr(line)
    if skipped and not summary.records and not summary.stopped:
        raise SourceError(f"none of the {skipped} record(s) could be read (reasons above)")
    return 0


@app.command()
def replay(
    ctx: typer.Context,
    paths: list[Path] | None = typer.Argument(
        None, help="WFDB records (.hea/.mat/name) or folders (or records in --config)."
    ),
    bundle: Path | None = _BUNDLE,
    speed: str = typer.Option("1", "--speed", help="1 = real time, 10 = 10x faster, 'max'."),
    loop: bool = typer.Option(False, "--loop", help="Play the records again and again."),
    precision: str = _PRECISION,
    threads: int = _THREADS,
    hop_s: float = _HOP,
    confirm: int = _CONFIRM,
    as_json: bool = _JSON,
    broker: str | None = _BROKER,
    device_id: str = _DEVICE_ID,
    spool: Path | None = _SPOOL,
    spool_max_mb: float | None = _SPOOL_MAX,
    ca_file: Path | None = _CA,
    cert_file: Path | None = _CERT,
    key_file: Path | None = _KEY,
    publish_frames: bool = _FRAMES,
    live: bool = _LIVE,
    heartbeat_s: float = _HEARTBEAT,
    max_fill_s: float = _MAX_FILL,
    alarm_limits: str | None = _ALARM_LIMITS,
    keep_leads: bool = _KEEP_LEADS,
    config: Path | None = _CONFIG,
    trusted_keys: list[Path] | None = _TRUSTED,
    allow_unsigned: bool = _UNSIGNED,
) -> None:
    """Play WFDB records as a live stream through the monitor."""
    from edge.config import configure

    o = configure(ctx, "replay", locals())
    from edge.replay import ReplaySource

    if not o["paths"]:
        raise ConfigError("no records to replay: name them, or records = [...] in [source]")
    pace = parse_speed(o["speed"])
    _monitor(
        lambda: ReplaySource(o["paths"], speed=pace, loop=o["loop"]),
        **_agent_options(o),
    )


@app.command()
def run(
    ctx: typer.Context,
    device: str | None = typer.Option(
        None, "--device", help="Serial port (/dev/ttyUSB0, a pty, URL); or device in --config."
    ),
    baud: int = typer.Option(921600, "--baud", help="Serial baud rate."),
    protocol: str = typer.Option("binary", "--protocol", help="binary (packets) or csv."),
    fs: float = typer.Option(500.0, "--fs", help="The device's sample rate in Hz."),
    lsb_uv: float = typer.Option(1.0, "--lsb-uv", help="Microvolts per LSB."),
    bundle: Path | None = _BUNDLE,
    precision: str = _PRECISION,
    threads: int = _THREADS,
    hop_s: float = _HOP,
    confirm: int = _CONFIRM,
    as_json: bool = _JSON,
    broker: str | None = _BROKER,
    device_id: str = _DEVICE_ID,
    spool: Path | None = _SPOOL,
    spool_max_mb: float | None = _SPOOL_MAX,
    ca_file: Path | None = _CA,
    cert_file: Path | None = _CERT,
    key_file: Path | None = _KEY,
    publish_frames: bool = _FRAMES,
    live: bool = _LIVE,
    heartbeat_s: float = _HEARTBEAT,
    max_fill_s: float = _MAX_FILL,
    alarm_limits: str | None = _ALARM_LIMITS,
    keep_leads: bool = _KEEP_LEADS,
    config: Path | None = _CONFIG,
    trusted_keys: list[Path] | None = _TRUSTED,
    allow_unsigned: bool = _UNSIGNED,
) -> None:
    """Monitor a serial ECG device."""
    from edge.config import configure

    o = configure(ctx, "run", locals())
    from edge.serial_source import SerialSource

    if not o["device"]:
        raise ConfigError("no serial device: give --device, or device = ... in [source]")
    _monitor(
        lambda: SerialSource(
            o["device"], baud=o["baud"], protocol=o["protocol"], fs=o["fs"], lsb_uv=o["lsb_uv"],
            log=_stderr,
        ),
        **_agent_options(o),
    )  # fmt: skip


_AGENT_OPTIONS = (
    "bundle", "precision", "threads", "hop_s", "confirm", "as_json", "broker", "device_id",
    "spool", "ca_file", "cert_file", "key_file", "publish_frames", "heartbeat_s", "max_fill_s",
    "trusted_keys", "allow_unsigned", "live", "spool_max_mb", "alarm_limits",
    "keep_leads",
)  # fmt: skip


def _agent_options(options: dict) -> dict:
    """The options ``replay`` and ``run`` share, picked from a command's arguments."""
    return {k: options[k] for k in _AGENT_OPTIONS}


def _monitor(make_source, *, bundle, precision, threads, hop_s, confirm, as_json, broker,
             device_id, spool, ca_file, cert_file, key_file, publish_frames,
             heartbeat_s, max_fill_s, trusted_keys, allow_unsigned, live,
             spool_max_mb, alarm_limits, keep_leads) -> None:  # fmt: skip
    """Check the options, open the bundle, then the source, then run the agent; exit."""
    check_choice("precision", precision, ("int8", "fp32"))
    from edge.alarms import parse_limits

    alarms = parse_limits(alarm_limits)
    b = _open_bundle(bundle, trusted_keys, allow_unsigned)
    source = make_source()
    pub = _publisher(
        broker, device_id, spool, ca_file, cert_file, key_file, publish_frames, b, heartbeat_s,
        spool_max_mb=spool_max_mb,
    )  # fmt: skip
    code = _run_agent(
        source,
        b,
        as_json=as_json,
        publisher=pub,
        precision=precision,
        threads=threads,
        hop_s=hop_s,
        confirm=confirm,
        device_id=device_id,
        max_fill_s=max_fill_s,
        status_s=heartbeat_s,
        live=live,
        alarms=alarms,
        restore_leads=not keep_leads,
        reload={
            "path": bundle,
            "trusted_keys": trusted_keys,
            "allow_unsigned": allow_unsigned,
            "precision": precision,
            "threads": threads,
        },
    )
    raise typer.Exit(code)


@app.command("simulate-device")
def simulate_device(
    record: Path = typer.Argument(..., help="The WFDB record to play."),
    protocol: str = typer.Option("binary", "--protocol", help="binary (packets) or csv."),
    speed: str = typer.Option("1", "--speed", help="1 = real time, 10 = 10x faster, 'max'."),
    loop: bool = typer.Option(False, "--loop", help="Play the record again and again."),
    lsb_uv: float = typer.Option(1.0, "--lsb-uv", help="Microvolts per LSB."),
    corrupt_every: int = typer.Option(
        0, "--corrupt-every", min=0, help="Corrupt one packet (or CSV line) in N: a noisy cable."
    ),
) -> None:
    """Play a record into a pseudo-terminal as a serial ECG device; prints the port first."""
    from edge.simulate import simulate_device_main

    raise typer.Exit(
        simulate_device_main(
            record, protocol, parse_speed(speed), loop, lsb_uv, corrupt_every=corrupt_every
        )
    )


@app.command()
def beats(
    record: Path = typer.Argument(..., help="WFDB record (name, .hea, .mat or .dat)."),
    lead: str | None = typer.Option(None, "--lead", help="Lead name (default II, else the first)."),
    multi_lead: bool = typer.Option(
        False, "--multi-lead", help="Detect on every lead of the record, as the agent does."
    ),
    as_json: bool = typer.Option(False, "--json", help="One JSON object on stdout."),
) -> None:
    """Print the R peaks of a record, as sample indices at the record's own rate."""
    from edge.beats import format_beats, record_beats

    result = record_beats(record, lead, multi_lead)
    print(json.dumps(result) if as_json else format_beats(result))


@app.command()
def measure(
    record: Path = typer.Argument(..., help="WFDB record (name, .hea, .mat or .dat)."),
    lead: str | None = typer.Option(
        None, "--lead", help="Give this lead's onsets and offsets instead of the global ones."
    ),
    as_json: bool = typer.Option(False, "--json", help="One JSON object on stdout."),
) -> None:
    """Print a record's median intervals, QTc and axes; with --json, every beat's waves too."""
    from edge.measure import format_measure, record_measure

    result = record_measure(record, lead)
    print(json.dumps(result) if as_json else format_measure(result))


@app.command()
def info(
    bundle: Path | None = typer.Argument(None, help="Bundle folder or archive (default: shipped)."),
    as_json: bool = typer.Option(False, "--json", help="The manifest as JSON."),
    trusted_keys: list[Path] | None = _TRUSTED,
) -> None:
    """Print a bundle's manifest: model, classes, preprocessing, validation figures."""
    from edge.bundle import load_bundle
    from edge.signing import trusted_keys as trust

    b = load_bundle(bundle, trust=trust(trusted_keys or []), allow_unsigned=True)
    m = b.manifest
    v = b.signature
    signed = f"NOT VERIFIED: {v.reason}"
    if v.ok:
        signed = f"verified: {v.reason}" + (" [DEMONSTRATION key]" if v.key.demo else "")
    if as_json:
        sig = {"signature": {"ok": v.ok, "reason": v.reason, "key_id": v.key_id}}
        print(json.dumps({"path": str(b.path), "sha256": b.sha256, **sig, **m.to_json()}, indent=2))
        return
    print(f"bundle     {b.path}")
    print(f"sha256     {b.sha256}")
    print(f"signature  {signed}")
    print(f"model      {m.model} ({m.n_features} features), created {m.created_utc}")
    d = m.dsp
    print(
        f"dsp        {d.fs:g} Hz, frames of {d.frame_samples} samples, "
        f"band-pass {d.band_hz[0]:g}-{d.band_hz[1]:g} Hz (order {d.band_order})"
    )
    norm = (
        f"millivolts (each lead centred, clipped at {d.norm_clip_mv:g} mV)"
        if d.norm == "mv"
        else "each lead z-scored"
    )
    print(f"model in   {d.window_seconds:g} s windows at {d.model_fs:g} Hz, {norm}")
    thr = dict(zip(b.head.codes, b.head.thresholds))
    print(f"classes    {len(m.classes)} (normal: {m.normal_code}, never alerted)")
    for c in m.classes:
        print(f"  {c.code:>10}  {c.abbreviation:<8} thr {thr[c.code]:+.3f}  {c.name}")
    for title, section in (("training", m.training), ("validation", m.validation)):
        if section:
            print(title)
            for k, v in section.items():
                shown = f"{v:.4f}" if isinstance(v, float) else json.dumps(v)
                if len(shown) > 100:
                    shown = shown[:97] + "..."
                print(f"  {k:<24} {shown}")
    _print_figures(m.validation)


_FIGURES = ("auroc", "auprc", "accuracy", "f_measure", "f_beta", "g_beta", "challenge_metric")


def _print_figures(validation: dict) -> None:
    """The seven Challenge figures the manifest records, as a table (SVM head, int8 first)."""
    rows = []
    for key, label in (("cross_validation", "cross-validation"),
                       ("leave_one_source_out", "leave one source out")):  # fmt: skip
        for kind in ("pooled", "fold_mean"):
            figs = validation.get(key, {}).get(kind, {})
            for head_prec in ("svm_int8", "svm_fp32"):
                if head_prec in figs:
                    rows.append((f"{label}, {kind.replace('_', ' ')}", head_prec, figs[head_prec]))
    for prec, figs in validation.get("training_set", {}).items():
        if isinstance(figs, dict):  # beside the figures: a "note"
            rows.append(("training set (in-sample)", f"svm_{prec}", figs))
    if not rows:
        return
    print("figures    " + " ".join(f"{f[:9]:>9}" for f in _FIGURES))
    for label, head_prec, figs in rows:
        vals = " ".join(
            f"{figs[f]:>9.3f}" if isinstance(figs.get(f), (int, float)) else f"{'n/a':>9}"
            for f in _FIGURES
        )
        print(f"  {label}, {head_prec}\n           {vals}")


_deploy_cli.register(app)  # config check|show, keygen
from edge.strip_cmd import strip as _strip  # noqa: E402  (matplotlib only when run)

app.command("strip")(_strip)
main = entry_point(app)

if __name__ == "__main__":
    main()
