"""Read Challenge-format WFDB records: one reader for the replay and the trainer.

A record is ``<name>.hea`` (WFDB header, with ``#Dx:`` comment lines of SNOMED
CT codes) plus its signal: ``<name>.mat`` (MATLAB v4, variable ``val``, int16,
leads x samples) or a WFDB ``.dat`` file (format 16 read here directly, other
formats through ``wfdb``). The header is parsed here rather than by
``wfdb.rdheader`` because released headers have quirks it rejects (Georgia
records whose first line names ``E00015.mat``; ``1000/mv`` in lower case).

Leads are mapped by name without regard to case (LUDB writes ``avr``); extra
leads are dropped, a missing one is refused. Every failure is a
:class:`~edge.errors.RecordError` naming the record and the reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.errors import RecordError
from edge.sources import LEADS

_LEAD_INDEX = {name.lower(): i for i, name in enumerate(LEADS)}
_GAIN_RE = re.compile(r"^([-+0-9.eE]+)(?:\(([-+0-9]+)\))?(?:/(\S+))?$")
_UNIT_SCALE = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "v": 1e3}
_DX_RE = re.compile(r"^#\s*Dx\s*:(.*)$", re.IGNORECASE)


@dataclass(frozen=True)
class SignalSpec:
    """One signal line of a WFDB header."""

    file: str
    fmt: str
    byte_offset: int
    gain: float  # ADC units per physical unit
    baseline: float  # ADC value of 0 physical units
    unit_scale: float  # physical unit -> mV
    name: str


@dataclass(frozen=True)
class Header:
    """What a ``.hea`` file says, without reading the signal."""

    name: str
    path: Path  # the .hea file
    fs: float
    n_samples: int
    signals: tuple[SignalSpec, ...]
    dx: tuple[str, ...] | None  # None when the header has no Dx line
    age: str | None
    sex: str | None
    comments: tuple[str, ...]

    @property
    def database(self) -> str:
        """The folder the record lies in (the Challenge keeps one per source)."""
        return self.path.parent.name

    @property
    def seconds(self) -> float:
        return self.n_samples / self.fs

    def lead_order(self) -> list[int]:
        """Index into ``signals`` of each of the 12 leads, in :data:`LEADS` order."""
        by_name: dict[str, int] = {}
        for i, spec in enumerate(self.signals):
            by_name.setdefault(spec.name.strip().lower(), i)
        missing = [lead for lead in LEADS if lead.lower() not in by_name]
        if missing:
            have = ", ".join(s.name for s in self.signals) or "none"
            raise RecordError(self.name, f"missing lead(s) {', '.join(missing)} (has {have})")
        return [by_name[lead.lower()] for lead in LEADS]


@dataclass(frozen=True)
class Record:
    """A record's 12 leads in mV, at its own rate, with its labels."""

    header: Header
    signal: np.ndarray  # (n_leads, n_samples) float32 in mV, LEADS order

    @property
    def name(self) -> str:
        return self.header.name

    @property
    def fs(self) -> float:
        return self.header.fs

    @property
    def dx(self) -> tuple[str, ...]:
        return self.header.dx or ()

    @property
    def database(self) -> str:
        return self.header.database


def header_path(path: str | Path) -> Path:
    """The ``.hea`` file of a record given as ``name``, ``name.hea`` or ``name.mat``."""
    p = Path(path)
    if p.suffix.lower() in {".hea", ".mat", ".dat"}:
        p = p.with_suffix("")
    return p.with_name(p.name + ".hea")


def parse_dx(comments: list[str] | tuple[str, ...]) -> tuple[str, ...] | None:
    """SNOMED CT codes of the ``#Dx:`` / ``# Dx:`` comment lines (None if there is none).

    >>> parse_dx(["#Age: 50", "# Dx: 164889003, 59118001"])
    ('164889003', '59118001')
    """
    found: list[str] | None = None
    for line in comments:
        m = _DX_RE.match(line.strip())
        if m:
            found = (found or []) + [c.strip() for c in m.group(1).split(",") if c.strip()]
    return None if found is None else tuple(dict.fromkeys(found))


def _comment_value(comments: list[str], key: str) -> str | None:
    for line in comments:
        m = re.match(rf"^#\s*{key}\s*:(.*)$", line.strip(), re.IGNORECASE)
        if m:
            return m.group(1).strip() or None
    return None


def read_header(path: str | Path) -> Header:
    """Parse a record's ``.hea`` file (the signal is not read)."""
    hea = header_path(path)
    name = hea.with_suffix("").name
    if not hea.is_file():
        raise RecordError(name, f"no header file {hea}")
    try:
        text = hea.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise RecordError(name, f"cannot read {hea}: {exc.strerror}") from exc
    lines = [ln.strip() for ln in text.splitlines()]
    comments = [ln for ln in lines if ln.startswith("#")]
    body = [ln for ln in lines if ln and not ln.startswith("#")]
    if not body:
        raise RecordError(name, f"{hea.name} is empty or has no record line")
    first = body[0].split()
    try:
        n_sig = int(first[1])
        fs = float(first[2].split("/")[0])
        n_samples = int(first[3])
    except (IndexError, ValueError) as exc:
        raise RecordError(name, f"bad record line in {hea.name}: {body[0]!r}") from exc
    if fs <= 0 or n_samples <= 0:
        raise RecordError(name, f"record line gives fs={fs}, samples={n_samples}")
    if len(body) - 1 < n_sig:
        raise RecordError(name, f"{hea.name} declares {n_sig} signals but has {len(body) - 1}")
    signals = tuple(_parse_signal(name, ln) for ln in body[1 : 1 + n_sig])
    return Header(
        name=name,
        path=hea,
        fs=fs,
        n_samples=n_samples,
        signals=signals,
        dx=parse_dx(comments),
        age=_comment_value(comments, "Age"),
        sex=_comment_value(comments, "Sex"),
        comments=tuple(comments),
    )


def _parse_signal(record: str, line: str) -> SignalSpec:
    f = line.split()
    try:
        file, fmt_field = f[0], f[1]
        fmt, _, offset = fmt_field.partition("+")
        m = _GAIN_RE.match(f[2]) if len(f) > 2 else None
        gain = float(m.group(1)) if m else 200.0
        adc_zero = float(f[4]) if len(f) > 4 else 0.0
        baseline = float(m.group(2)) if m and m.group(2) is not None else adc_zero
        unit = (m.group(3) if m and m.group(3) else "mV").lower()
        name = " ".join(f[8:]) if len(f) > 8 else ""
    except (IndexError, ValueError) as exc:
        raise RecordError(record, f"bad signal line {line!r}") from exc
    if gain == 0:
        gain = 200.0  # WFDB: a gain of 0 means the default, 200 ADC units per mV
    if unit not in _UNIT_SCALE:
        raise RecordError(record, f"unknown signal unit {unit!r} in {line!r}")
    return SignalSpec(
        file=file,
        fmt=fmt,
        byte_offset=int(offset or 0),
        gain=gain,
        baseline=baseline,
        unit_scale=_UNIT_SCALE[unit],
        name=name,
    )


def read_record(path: str | Path) -> Record:
    """Read a record: its 12 leads (n_leads, n_samples) float32 in mV, in LEADS order."""
    header = read_header(path)
    order = header.lead_order()
    digital = _read_digital(header)
    specs = [header.signals[i] for i in order]
    gain = np.array([s.gain for s in specs], dtype=np.float64)[:, None]
    base = np.array([s.baseline for s in specs], dtype=np.float64)[:, None]
    scale = np.array([s.unit_scale for s in specs], dtype=np.float64)[:, None]
    signal = ((digital[order].astype(np.float64) - base) / gain * scale).astype(np.float32)
    if not np.all(np.isfinite(signal)):
        raise RecordError(header.name, "signal contains NaN or infinite values")
    return Record(header=header, signal=signal)


def _read_digital(header: Header) -> np.ndarray:
    """All signals as (n_sig, n_samples) ADC values."""
    name, n_sig, n = header.name, len(header.signals), header.n_samples
    files = {s.file for s in header.signals}
    base = header.path.parent
    # Quirk: some headers name the file with its extension (E00015.mat) or not at all.
    sig_file = base / next(iter(files)) if len(files) == 1 else None
    fmts = {s.fmt for s in header.signals}
    if sig_file is not None and sig_file.suffix.lower() == ".mat":
        return _read_mat(name, sig_file, n_sig, n)
    if sig_file is not None and fmts == {"16"}:
        return _read_fmt16(name, sig_file, n_sig, n, header.signals[0].byte_offset)
    return _read_with_wfdb(header)


def _read_mat(name: str, path: Path, n_sig: int, n: int) -> np.ndarray:
    """A MATLAB v4 ``val`` matrix of int16 (as the Challenge ships), read directly.

    Header: five little-endian int32 (type 30 = int16, rows, cols, imag, name
    length), the name, then the data column by column, which is sample by
    sample. Anything else (a v5 file) goes through ``scipy.io.loadmat``.
    """
    if not path.is_file():
        raise RecordError(name, f"no signal file {path}")
    head = np.fromfile(path, dtype="<i4", count=5)
    if len(head) == 5 and head[0] == 30 and head[3] == 0 and 0 < head[4] < 64:
        rows, cols, namlen = int(head[1]), int(head[2]), int(head[4])
        if rows != n_sig:
            raise RecordError(name, f"{path.name} holds {rows} signals, header says {n_sig}")
        if cols < n:
            raise RecordError(name, f"truncated signal: {cols} of {n} samples in {path.name}")
        # column-major leads x samples is sample-major: the layout of WFDB format 16
        return _read_fmt16(name, path, n_sig, n, offset=20 + namlen)
    return _read_mat_scipy(name, path, n_sig, n)


def _read_mat_scipy(name: str, path: Path, n_sig: int, n: int) -> np.ndarray:
    import scipy.io

    try:
        val = scipy.io.loadmat(str(path))["val"]
    except KeyError as exc:
        raise RecordError(name, f"{path.name} has no variable 'val'") from exc
    except Exception as exc:  # scipy raises a zoo of types on a broken file
        raise RecordError(name, f"cannot read {path.name}: {exc}") from exc
    val = np.asarray(val)
    if val.ndim != 2 or val.shape[0] != n_sig:
        raise RecordError(name, f"{path.name} holds {val.shape}, header says {n_sig} signals")
    if val.shape[1] < n:
        raise RecordError(name, f"truncated signal: {val.shape[1]} of {n} samples in {path.name}")
    return val[:, :n]


def _read_fmt16(name: str, path: Path, n_sig: int, n: int, offset: int) -> np.ndarray:
    if not path.is_file():
        raise RecordError(name, f"no signal file {path}")
    raw = np.fromfile(path, dtype="<i2", offset=offset)
    if raw.size < n * n_sig:
        got = raw.size // n_sig
        raise RecordError(name, f"truncated signal: {got} of {n} samples in {path.name}")
    return raw[: n * n_sig].reshape(n, n_sig).T


def _read_with_wfdb(header: Header) -> np.ndarray:
    import wfdb

    try:
        rec = wfdb.rdrecord(str(header.path.with_suffix("")), physical=False)
    except Exception as exc:  # wfdb raises bare exceptions of many kinds
        raise RecordError(header.name, f"wfdb cannot read the signal: {exc}") from exc
    d = np.asarray(rec.d_signal).T
    if d.shape[1] < header.n_samples:
        raise RecordError(header.name, f"truncated signal: {d.shape[1]} of {header.n_samples}")
    return d[:, : header.n_samples]


def find_records(paths: list[str | Path] | tuple[str | Path, ...]) -> list[Path]:
    """Header files of every record under ``paths`` (files or folders, recursive), sorted."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(p.rglob("*.hea")))
        elif header_path(p).is_file():
            out.append(header_path(p))
        else:
            raise RecordError(str(p), "no such record or folder")
    return list(dict.fromkeys(out))


def read_signals(path: str | Path) -> tuple[Header, np.ndarray]:
    """Every signal of a record, any number and names of leads: (n_sig, n_samples) float32 mV.

    In the header's order (``header.signals[i].name`` names row ``i``); for
    tools that work on one lead of any record (``ecg-edge beats``).
    """
    header = read_header(path)
    digital = _read_digital(header)
    gain = np.array([s.gain for s in header.signals], dtype=np.float64)[:, None]
    base = np.array([s.baseline for s in header.signals], dtype=np.float64)[:, None]
    scale = np.array([s.unit_scale for s in header.signals], dtype=np.float64)[:, None]
    signal = ((digital.astype(np.float64) - base) / gain * scale).astype(np.float32)
    if not np.all(np.isfinite(signal)):
        raise RecordError(header.name, "signal contains NaN or infinite values")
    return header, signal
