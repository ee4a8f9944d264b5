"""The agent's configuration file: TOML (``tomllib``), every option of ``run`` and ``replay``.

Each key is named after its command-line flag (``--hop-s`` is ``hop_s``,
``--trusted-key`` is ``trusted_key``) and sits in one section::

    [source]  device, baud, protocol, fs, lsb_uv (run); records, speed, loop (replay)
    [model]   bundle, precision, threads, trusted_key, allow_unsigned
    [stream]  hop_s, confirm, max_fill_s
    [mqtt]    broker, device_id, spool, spool_max_mb, ca_file, cert_file, key_file,
              publish_frames, live, heartbeat_s
    [output]  json

A flag given on the command line overrides the file; the file overrides the
flag's default. Relative paths are relative to the file's folder.
:func:`check_file` returns every problem as one line naming the key
(``[mqtt] unknown key 'brokr' (did you mean 'broker'?)``); :func:`load_file`
raises :class:`ConfigError` with them. ``deploy/agent.toml`` is the
documented example.
"""

from __future__ import annotations

import difflib
import math
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.errors import ConfigError, EcgEdgeError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10: the same parser, from PyPI
    import tomli as tomllib


@dataclass(frozen=True)
class Key:
    """One configuration key: its section, the CLI parameter it sets, its type and check."""

    section: str
    name: str
    kind: str  # str, int, number, bool, path, paths, choice, speed
    help: str
    param: str = ""  # the command's parameter name when it differs from ``name``
    choices: tuple[str, ...] = ()
    low: float | None = None  # number/int: smallest value allowed
    high: float | None = None  # largest
    low_open: bool = False  # low itself is excluded
    commands: tuple[str, ...] = ("run", "replay")
    must_exist: bool = False  # path(s) must name existing files
    private: bool = False  # a private key file: not readable by others

    @property
    def target(self) -> str:
        return self.param or self.name

    def describe(self) -> str:
        if self.kind == "choice":
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.kind in ("int", "number"):
            what = "an integer" if self.kind == "int" else "a number"
            if self.low is not None and self.high is not None:
                lo = "(" if self.low_open else "["
                return f"{what} in {lo}{self.low:g}, {self.high:g}]"
            if self.low is not None:
                return f"{what} {'>' if self.low_open else '>='} {self.low:g}"
            return what
        return {
            "str": "a string",
            "bool": "true or false",
            "path": "a file path (string)",
            "paths": "a file path or a list of them",
            "speed": "a positive number or 'max'",
        }[self.kind]


_RUN, _REPLAY = ("run",), ("replay",)
KEYS: tuple[Key, ...] = (
    Key("source", "device", "str", "serial port (/dev/ttyUSB0, /dev/ecg0, a pty)", commands=_RUN),
    Key("source", "baud", "int", "serial baud rate", low=1, commands=_RUN),
    Key("source", "protocol", "choice", "binary or csv", choices=("binary", "csv"), commands=_RUN),
    Key("source", "fs", "number", "the device's sample rate, Hz", low=0, low_open=True,
        commands=_RUN),
    Key("source", "lsb_uv", "number", "microvolts per LSB", low=0, low_open=True, commands=_RUN),
    Key("source", "records", "paths", "WFDB records or folders to replay", param="paths",
        commands=_REPLAY),
    Key("source", "speed", "speed", "1 = real time, 10 = 10x faster, 'max'", commands=_REPLAY),
    Key("source", "loop", "bool", "play the records again and again", commands=_REPLAY),
    Key("model", "bundle", "path", "model bundle folder or archive (default: shipped)",
        must_exist=True),
    Key("model", "precision", "choice", "int8 or fp32", choices=("int8", "fp32")),
    Key("model", "threads", "int", "onnxruntime intra-op threads", low=1, high=256),
    Key("model", "trusted_key", "paths", "public keys a bundle's signature must verify with",
        param="trusted_keys", must_exist=True),
    Key("model", "allow_unsigned", "bool", "run a bundle whose signature does not verify (dev)"),
    Key("stream", "hop_s", "number", "seconds of new signal between frames", low=0, high=30,
        low_open=True),
    Key("stream", "confirm", "int", "consecutive positive frames before an onset", low=1),
    Key("stream", "max_fill_s", "number", "longest dropout filled in, seconds", low=0, high=5),
    Key("stream", "alarm_limits", "str",
        "fast alarm limits: low=50,high=120,extreme_low=40,extreme_high=160 (bpm), asystole_s=4"),
    Key("stream", "keep_leads", "bool",
        "classify as recorded even when an LA/RA reversal or inverted lead is confirmed"),
    Key("mqtt", "broker", "str", "MQTT broker URL (mqtt://host:1883, mqtts://...)"),
    Key("mqtt", "device_id", "str", "device id in topics and payloads"),
    Key("mqtt", "spool", "path", "alert spool (sqlite)"),
    Key("mqtt", "spool_max_mb", "number", "largest spool file, MB (quality dropped first)",
        low=0, low_open=True),
    Key("mqtt", "ca_file", "path", "CA certificate for mqtts://", must_exist=True),
    Key("mqtt", "cert_file", "path", "client certificate for mqtts://", must_exist=True),
    Key("mqtt", "key_file", "path", "client key for mqtts://", must_exist=True, private=True),
    Key("mqtt", "publish_frames", "bool", "also publish per-frame scores"),
    Key("mqtt", "live", "bool", "also publish lead II live for a central station"),
    Key("mqtt", "heartbeat_s", "number", "seconds between status heartbeats", low=0,
        low_open=True),
    Key("output", "json", "bool", "one JSON object per line on stdout", param="as_json"),
)  # fmt: skip
BY_SECTION: dict[str, dict[str, Key]] = {}
for _k in KEYS:
    BY_SECTION.setdefault(_k.section, {})[_k.name] = _k
BY_PARAM: dict[str, Key] = {k.target: k for k in KEYS}


@dataclass(frozen=True)
class Config:
    """A checked configuration file: parameter name -> value (paths resolved)."""

    path: Path
    values: dict[str, Any]
    keys: dict[str, Key]  # parameter name -> its key (for messages and ``config show``)

    def for_command(self, command: str) -> dict[str, Any]:
        """The values that apply to ``command`` (run or replay)."""
        return {p: v for p, v in self.values.items() if command in self.keys[p].commands}


def _suggest(name: str, known) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _fmt(value: Any) -> str:
    return (
        repr(value)
        if isinstance(value, str)
        else str(value).lower()
        if isinstance(value, bool)
        else str(value)
    )


def _check_value(key: Key, value: Any, base: Path) -> tuple[Any, str | None]:
    """(converted value, None) or (None, the problem)."""
    where = f"[{key.section}] {key.name!r}"
    bad = f"{where} must be {key.describe()}, got {_fmt(value)}"
    k = key.kind
    if k in ("str", "choice"):
        if not isinstance(value, str) or not value:
            return None, bad
        if k == "choice" and value not in key.choices:
            return None, bad
        return value, None
    if k == "bool":
        return (value, None) if isinstance(value, bool) else (None, bad)
    if k in ("int", "number"):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if k == "int":
            ok = ok and isinstance(value, int)
        if not ok or not math.isfinite(value):
            return None, bad
        if key.low is not None and (value < key.low or (key.low_open and value == key.low)):
            return None, bad
        if key.high is not None and value > key.high:
            return None, bad
        return (int(value) if k == "int" else float(value)), None
    if k == "speed":
        if isinstance(value, str) and value.strip().lower() in ("max", "inf"):
            return "max", None
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok or not (0 < value < math.inf):
            return None, bad
        return str(value), None
    if k in ("path", "paths"):
        items = [value] if isinstance(value, str) else value
        if k == "path" and not isinstance(value, str):
            return None, bad
        if (
            not isinstance(items, list)
            or not items
            or not all(isinstance(v, str) and v for v in items)
        ):
            return None, bad
        paths = [(base / Path(v).expanduser()) for v in items]
        for p in paths:
            problem = check_file(key, p) if key.must_exist else None
            if problem:
                return None, f"{where}: {problem}"
        return (paths[0] if k == "path" else paths), None
    raise AssertionError(k)  # pragma: no cover


def check_file(key: Key, path: Path) -> str | None:
    """The problem with a file a key names (missing, not a file, too open), or None."""
    if not path.exists():
        return f"{path} does not exist"
    if key.name == "bundle":
        return None  # a folder or an archive; load_bundle says more
    if not path.is_file():
        return f"{path} is not a file"
    if key.private:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & (stat.S_IRWXO | stat.S_IWGRP):
            return (
                f"private key {path} is readable or writable by others (mode {mode:04o}); "
                f"run: chmod 600 {path} (or 640 with the service's group)"
            )
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        return f"{path} cannot be read ({exc.strerror})"
    return None


def check_document(doc: dict[str, Any], base: Path) -> tuple[dict[str, Any], list[str]]:
    """Check a parsed TOML document: (parameter -> value, every problem as one line)."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    for section, table in doc.items():
        if section not in BY_SECTION:
            problems.append(f"unknown section [{section}]{_suggest(section, BY_SECTION)}")
            continue
        if not isinstance(table, dict):
            problems.append(f"{section!r} must be a section ([{section}]), got {_fmt(table)}")
            continue
        known = BY_SECTION[section]
        for name, value in table.items():
            key = known.get(name)
            if key is None:
                elsewhere = [s for s, ks in BY_SECTION.items() if name in ks]
                hint = f" (it belongs in [{elsewhere[0]}])" if elsewhere else _suggest(name, known)
                problems.append(f"unknown key {name!r} in [{section}]{hint}")
                continue
            converted, problem = _check_value(key, value, base)
            if problem:
                problems.append(problem)
            else:
                values[key.target] = converted
    if "device_id" in values:
        from bridge.topics import check_device_id

        try:
            check_device_id(values["device_id"])
        except EcgEdgeError as exc:
            problems.append(f"[mqtt] 'device_id': {exc}")
    return values, problems


def read_document(path: str | Path) -> tuple[dict[str, Any], list[str]]:
    """Parse and check a file: (parameter -> value, problems); unreadable or bad TOML is one."""
    p = Path(path)
    try:
        doc = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}, [f"{p} does not exist"]
    except OSError as exc:
        return {}, [f"{p} cannot be read ({exc.strerror})"]
    except UnicodeDecodeError:
        return {}, [f"{p} is not UTF-8 text"]
    except tomllib.TOMLDecodeError as exc:
        return {}, [f"not valid TOML: {exc}"]
    return check_document(doc, p.resolve().parent)


def load_file(path: str | Path) -> Config:
    """Read and check a configuration file; :class:`ConfigError` names every problem."""
    values, problems = read_document(path)
    if problems:
        more = (
            f" (and {len(problems) - 1} more: ecg-edge config check {path})"
            if len(problems) > 1
            else ""
        )
        raise ConfigError(f"{path}: {problems[0]}{more}")
    return Config(Path(path), values, {p: BY_PARAM[p] for p in values})


def merge(
    config: Config | None,
    command: str,
    options: dict[str, Any],
    from_command_line: Callable[[str], bool],
) -> tuple[dict[str, Any], dict[str, str]]:
    """Options with the file's values under the flags given: (options, param -> source).

    ``from_command_line(param)`` says whether the user gave that flag; a
    source is ``"command line"``, the file's path, or ``"default"``.
    """
    out = dict(options)
    sources = {p: ("command line" if from_command_line(p) else "default") for p in options}
    if config is not None:
        for param, value in config.for_command(command).items():
            if param in out and not from_command_line(param):
                out[param] = value
                sources[param] = str(config.path)
    return out, sources


def check_options(options: dict[str, Any]) -> None:
    """The checks a file's values get, for the same options given as flags (files exist,
    a private key is not open to others): one :class:`ConfigError` line."""
    for param, value in options.items():
        key = BY_PARAM.get(param)
        if key is None or not key.must_exist or value in (None, [], ()):
            continue
        for p in value if isinstance(value, (list, tuple)) else [value]:
            problem = check_file(key, Path(p))
            if problem:
                flag = "--" + key.name.replace("_", "-")
                raise ConfigError(f"{flag}: {problem}")


def to_toml_value(value: Any) -> str:
    """A value as TOML source text (for ``config show``)."""
    if value is None:
        return '""  # unset'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(to_toml_value(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def configure(ctx: Any, command: str, options: dict[str, Any]) -> dict[str, Any]:
    """A command's options with its ``--config`` file applied under the flags, checked.

    ``ctx``: the click context (it knows which flags were typed); ``options``:
    the command's parameters (``config`` among them).
    """
    path = options.get("config")
    config = load_file(path) if path is not None else None

    def from_command_line(param: str) -> bool:
        # by name: typer may bring its own copy of click and of its ParameterSource enum
        source = ctx.get_parameter_source(param)
        return getattr(source, "name", None) in ("COMMANDLINE", "ENVIRONMENT")

    params = {k: v for k, v in options.items() if k not in ("ctx", "config")}
    merged, _ = merge(config, command, params, from_command_line)
    check_options(merged)
    return merged
