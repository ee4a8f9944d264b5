"""The serial wire protocol: binary packets and CSV lines (pure, no I/O).

Both formats carry one sample instant (12 leads) per packet or line, in
integer LSB units of ``lsb_uv`` microvolts (see ``docs/serial-protocol.md``).

Binary packet, 33 bytes, little-endian::

    off size field
    0   2    sync        0xA5 0x5A
    2   1    version     1
    3   2    seq         uint16, +1 per sample instant, wraps 65535 -> 0
    5   2    lead_off    uint16, bit i set = lead LEADS[i] off (bits 12-15 zero)
    7   24   samples     12 x int16, leads in LEADS order, LSB units
    31  2    crc         CRC-16/CCITT-FALSE of bytes 2..30 (poly 0x1021, init 0xFFFF)

The parsers are streaming: ``feed(data) -> list[Sample | Gap]``. They
resynchronise after garbage, count what they dropped in ``stats``, report a
sequence jump as a :class:`Gap` (never a silent splice) and never raise on
bytes they do not expect. Their buffers stay bounded whatever they are fed.
"""

from __future__ import annotations

import binascii
import math
import struct
from dataclasses import dataclass

import numpy as np

from edge.errors import check_positive, invalid
from edge.sources import N_LEADS

SYNC = b"\xa5\x5a"
VERSION = 1
PACKET_SIZE = 33
SEQ_MODULO = 1 << 16
LEAD_OFF_MASK = (1 << N_LEADS) - 1
INT16_MIN, INT16_MAX = -32768, 32767
MAX_CSV_LINE = 512  # bytes; a longer line is discarded
_BODY = struct.Struct("<BHH12h")  # version, seq, lead_off, 12 samples
_CRC = struct.Struct("<H")
_HALF = SEQ_MODULO // 2
_CSV_LIMIT = 2.0**31  # a CSV value of this magnitude or more makes the line bad


def crc16_ccitt(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, no final xor.

    >>> hex(crc16_ccitt(b"123456789"))
    '0x29b1'
    """
    return binascii.crc_hqx(data, crc)


def mv_to_lsb(mv: np.ndarray, lsb_uv: float = 1.0) -> np.ndarray:
    """Quantise millivolts to int16 LSB units: ``rint(mv * 1000 / lsb_uv)``, clipped.

    Rounds half to even and saturates at -32768 / 32767 (shape kept).

    >>> mv_to_lsb(np.array([0.0015, -40.0]), 1.0).tolist()
    [2, -32768]
    """
    q = np.rint(np.asarray(mv, dtype=np.float64) * (1000.0 / lsb_uv))
    return np.clip(q, INT16_MIN, INT16_MAX).astype(np.int16)


def lsb_to_mv(lsb: np.ndarray, lsb_uv: float = 1.0) -> np.ndarray:
    """LSB units to float32 millivolts: ``lsb * lsb_uv / 1000`` (shape kept)."""
    return (np.asarray(lsb, dtype=np.float64) * (lsb_uv / 1000.0)).astype(np.float32)


@dataclass(frozen=True, slots=True)
class Sample:
    """One sample instant: ``values`` is a tuple of 12 numbers in LSB units, LEADS order.

    ``seq`` is the packet's sequence number (or the CSV index modulo 65536,
    None when the CSV line has no index); ``lead_off`` is the 12-bit mask.
    """

    seq: int | None
    values: tuple[float, ...]
    lead_off: int = 0


@dataclass(frozen=True, slots=True)
class Gap:
    """Samples known lost before the next :class:`Sample`.

    ``reason`` is ``"sequence"`` (a jump forward of ``missing`` samples) or
    ``"reset"`` (the counter went backwards: a device restart, size unknown,
    ``missing`` is 0).
    """

    missing: int
    reason: str = "sequence"


@dataclass
class ParserStats:
    """What a parser has seen so far (counters only grow until ``reset()``)."""

    packets_ok: int = 0
    crc_errors: int = 0
    bad_versions: int = 0
    resyncs: int = 0
    bytes_discarded: int = 0
    bad_lines: int = 0
    gaps: int = 0
    samples_lost: int = 0
    seq_resets: int = 0


def encode_packet(seq: int, samples_lsb, lead_off: int = 0) -> bytes:
    """One 33-byte binary packet for one sample instant.

    ``samples_lsb``: 12 integers in LSB units (int16 range); ``seq`` is taken
    modulo 65536; ``lead_off`` is a 12-bit mask (bit i = LEADS[i]).

    >>> p = encode_packet(1, [0] * 12)
    >>> len(p), p[:3].hex()
    (33, 'a55a01')
    """
    values = [int(v) for v in np.asarray(samples_lsb).reshape(-1)]
    if len(values) != N_LEADS:
        raise invalid("samples_lsb", f"{N_LEADS} integers", len(values))
    if any(v < INT16_MIN or v > INT16_MAX for v in values):
        raise invalid("samples_lsb", "integers in -32768..32767", values)
    if not 0 <= int(lead_off) <= LEAD_OFF_MASK:
        raise invalid("lead_off", "a 12-bit mask (0..4095)", lead_off)
    body = _BODY.pack(VERSION, int(seq) % SEQ_MODULO, int(lead_off), *values)
    return SYNC + body + _CRC.pack(crc16_ccitt(body))


_PACKET_DTYPE = np.dtype(
    [("sync", "u1", 2), ("version", "u1"), ("seq", "<u2"), ("lead_off", "<u2"),
     ("samples", "<i2", N_LEADS), ("crc", "<u2")]
)  # fmt: skip


def encode_packets(start_seq: int, samples_lsb: np.ndarray, lead_off: int = 0) -> bytes:
    """Packets for consecutive sample instants, the same bytes as :func:`encode_packet`.

    ``samples_lsb`` is (12, n) int16 LSB units; sequence numbers run from
    ``start_seq`` (modulo 65536).
    """
    arr = np.asarray(samples_lsb)
    if arr.ndim != 2 or arr.shape[0] != N_LEADS:
        raise invalid("samples_lsb", f"an array of shape ({N_LEADS}, n)", arr.shape)
    if arr.size and (arr.min() < INT16_MIN or arr.max() > INT16_MAX):
        raise invalid("samples_lsb", "integers in -32768..32767", (arr.min(), arr.max()))
    if not 0 <= int(lead_off) <= LEAD_OFF_MASK:
        raise invalid("lead_off", "a 12-bit mask (0..4095)", lead_off)
    n = arr.shape[1]
    packets = np.zeros(n, dtype=_PACKET_DTYPE)
    packets["sync"] = np.frombuffer(SYNC, dtype=np.uint8)
    packets["version"] = VERSION
    packets["seq"] = (int(start_seq) + np.arange(n, dtype=np.int64)) % SEQ_MODULO
    packets["lead_off"] = int(lead_off)
    packets["samples"] = arr.T
    raw = packets.view(np.uint8).reshape(n, PACKET_SIZE)
    crcs = [crc16_ccitt(row[2 : PACKET_SIZE - 2].tobytes()) for row in raw]
    packets["crc"] = np.asarray(crcs, dtype=np.uint16)
    return packets.tobytes()


def encode_csv_line(values_lsb, index: int | None = None) -> bytes:
    """One CSV line: optional sample index, then 12 integers in LSB units, ``\\n``.

    >>> encode_csv_line([1, -2] + [0] * 10, index=7)
    b'7,1,-2,0,0,0,0,0,0,0,0,0,0\\n'
    """
    values = [str(int(v)) for v in np.asarray(values_lsb).reshape(-1)]
    if len(values) != N_LEADS:
        raise invalid("values_lsb", f"{N_LEADS} integers", len(values))
    if index is not None:
        values.insert(0, str(int(index)))
    return (",".join(values) + "\n").encode("ascii")


class _SeqTracker:
    """Follows a 16-bit sample counter and turns jumps into :class:`Gap` items."""

    def __init__(self, stats: ParserStats) -> None:
        self.stats = stats
        self.expected: int | None = None

    def check(self, seq: int, out: list) -> None:
        if self.expected is not None and seq != self.expected:
            diff = (seq - self.expected) % SEQ_MODULO
            if diff < _HALF:
                out.append(Gap(diff, "sequence"))
                self.stats.gaps += 1
                self.stats.samples_lost += diff
            else:
                out.append(Gap(0, "reset"))
                self.stats.gaps += 1
                self.stats.seq_resets += 1
        self.expected = (seq + 1) % SEQ_MODULO


class BinaryParser:
    """Streaming parser of binary packets: ``feed(bytes) -> list[Sample | Gap]``.

    A candidate packet starts at the sync word; a wrong version or CRC makes
    the parser skip one byte and search again, so a packet hidden behind
    garbage (even garbage holding a false sync word) is still found. At most
    ``PACKET_SIZE - 1`` bytes are kept between calls.
    """

    def __init__(self) -> None:
        self.stats = ParserStats()
        self._buf = bytearray()
        self._seq = _SeqTracker(self.stats)
        self._in_garbage = False

    def reset(self) -> None:
        """Forget buffered bytes, the sequence and the counters."""
        self.__init__()

    def restart_sequence(self) -> None:
        """Forget buffered bytes and the last sequence number (after a reopen)."""
        self._buf.clear()
        self._seq.expected = None
        self._in_garbage = False

    def feed(self, data: bytes) -> list[Sample | Gap]:
        out: list[Sample | Gap] = []
        buf = self._buf
        buf += data
        pos = 0
        n = len(buf)
        stats = self.stats
        while True:
            i = buf.find(SYNC, pos)
            if i < 0:
                # keep a trailing 0xA5: it may be the first half of a sync word
                keep = 1 if n > pos and buf[n - 1] == SYNC[0] else 0
                self._discard(n - keep - pos)
                pos = n - keep
                break
            if i > pos:
                self._discard(i - pos)
                pos = i
            if n - pos < PACKET_SIZE:
                break
            body = bytes(buf[pos + 2 : pos + PACKET_SIZE - 2])
            if body[0] != VERSION:
                stats.bad_versions += 1
                self._discard(1)
                pos += 1
                continue
            (crc,) = _CRC.unpack_from(buf, pos + PACKET_SIZE - 2)
            if crc != crc16_ccitt(body):
                stats.crc_errors += 1
                self._discard(1)
                pos += 1
                continue
            _, seq, lead_off, *values = _BODY.unpack(body)
            self._seq.check(seq, out)
            out.append(Sample(seq, tuple(values), lead_off & LEAD_OFF_MASK))
            stats.packets_ok += 1
            self._in_garbage = False
            pos += PACKET_SIZE
        del buf[:pos]
        return out

    def _discard(self, count: int) -> None:
        if count <= 0:
            return
        self.stats.bytes_discarded += count
        if not self._in_garbage:
            self.stats.resyncs += 1
            self._in_garbage = True


class CsvParser:
    """Streaming parser of CSV lines: ``feed(bytes) -> list[Sample | Gap]``.

    A line holds 12 numbers (LSB units, LEADS order), or 13 whose first is a
    non-negative integer sample index; fields are separated by commas, spaces,
    tabs or semicolons; ``\\n`` or ``\\r\\n`` ends it. Blank lines and lines
    starting with ``#`` are ignored; any other line that does not parse is
    counted in ``stats.bad_lines`` and skipped. A line longer than
    ``MAX_CSV_LINE`` bytes is discarded without being buffered. An index that
    jumps is a :class:`Gap` (compared modulo 65536, like the binary ``seq``).
    """

    def __init__(self) -> None:
        self.stats = ParserStats()
        self._buf = bytearray()
        self._seq = _SeqTracker(self.stats)
        self._skipping = False  # inside an overlong line, until the next newline

    def reset(self) -> None:
        """Forget buffered bytes, the index and the counters."""
        self.__init__()

    def restart_sequence(self) -> None:
        """Forget buffered bytes and the last index (after a reopen)."""
        self._buf.clear()
        self._seq.expected = None
        self._skipping = False

    def feed(self, data: bytes) -> list[Sample | Gap]:
        out: list[Sample | Gap] = []
        buf = self._buf
        buf += data
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            line = bytes(buf[start:nl])
            start = nl + 1
            if self._skipping:
                self.stats.bytes_discarded += len(line) + 1
                self._skipping = False
                continue
            if len(line) > MAX_CSV_LINE:
                self._bad(len(line) + 1)
                continue
            self._parse_line(line, out)
        del buf[:start]
        if len(buf) > MAX_CSV_LINE:
            if not self._skipping:
                self.stats.bad_lines += 1
                self._skipping = True
            self.stats.bytes_discarded += len(buf)
            buf.clear()
        return out

    def _bad(self, n_bytes: int) -> None:
        self.stats.bad_lines += 1
        self.stats.bytes_discarded += n_bytes

    def _parse_line(self, line: bytes, out: list) -> None:
        text = line.rstrip(b"\r").strip()
        if not text or text.startswith(b"#"):
            return
        try:
            fields = text.decode("ascii").replace(",", " ").replace(";", " ").split()
            numbers = [float(f) for f in fields]
        except (UnicodeDecodeError, ValueError):
            self._bad(len(line) + 1)
            return
        if len(numbers) not in (N_LEADS, N_LEADS + 1) or not all(
            math.isfinite(v) and abs(v) < _CSV_LIMIT for v in numbers
        ):
            self._bad(len(line) + 1)
            return
        seq = None
        if len(numbers) == N_LEADS + 1:
            index = numbers.pop(0)
            if index < 0 or index != int(index):
                self._bad(len(line) + 1)
                return
            seq = int(index) % SEQ_MODULO
            self._seq.check(seq, out)
        self.stats.packets_ok += 1
        out.append(Sample(seq, tuple(numbers), 0))


def make_parser(protocol: str) -> BinaryParser | CsvParser:
    """The parser for ``protocol`` ("binary" or "csv")."""
    if protocol == "binary":
        return BinaryParser()
    if protocol == "csv":
        return CsvParser()
    raise invalid("protocol", "one of 'binary', 'csv'", protocol)


def check_lsb_uv(lsb_uv: float) -> float:
    """Validate ``--lsb-uv`` (microvolts per LSB)."""
    return check_positive("lsb_uv", lsb_uv)
