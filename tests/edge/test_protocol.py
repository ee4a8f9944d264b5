"""The serial wire protocol: packet layout, CRC, streaming parsers, fuzzing."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.errors import ConfigError
from edge.protocol import (
    MAX_CSV_LINE,
    PACKET_SIZE,
    BinaryParser,
    CsvParser,
    Gap,
    Sample,
    crc16_ccitt,
    encode_csv_line,
    encode_packet,
    encode_packets,
    lsb_to_mv,
    make_parser,
    mv_to_lsb,
)

int16s = st.integers(-32768, 32767)
lead_values = st.lists(int16s, min_size=12, max_size=12)


def _reference_crc(data: bytes) -> int:
    """The bitwise C reference of docs/serial-protocol.md, in Python."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def _samples(items):
    return [it for it in items if isinstance(it, Sample)]


def _feed_in_pieces(parser, data: bytes, cuts: list[int]) -> list:
    out, start = [], 0
    for cut in [*sorted(c % (len(data) + 1) for c in cuts), len(data)]:
        out += parser.feed(data[start:cut])
        start = max(start, cut)
    return out


def _block(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-32768, 32768, (12, n)).astype(np.int16)


class TestCrc:
    def test_check_value(self):
        assert crc16_ccitt(b"123456789") == 0x29B1

    @given(st.binary(max_size=64))
    def test_matches_bitwise_reference(self, data):
        assert crc16_ccitt(data) == _reference_crc(data)


class TestEncode:
    def test_layout_byte_by_byte(self):
        values = [1, -1, 256, -32768, 32767, 0, 2, 3, 4, 5, 6, 7]
        p = encode_packet(0x1234, values, lead_off=0b1000_0000_0101)
        assert len(p) == PACKET_SIZE == 33
        assert p[0:2] == b"\xa5\x5a"
        assert p[2] == 1
        assert p[3:5] == b"\x34\x12"
        assert p[5:7] == b"\x05\x08"
        assert list(struct.unpack("<12h", p[7:31])) == values
        assert p[7:9] == b"\x01\x00" and p[9:11] == b"\xff\xff"
        assert struct.unpack("<H", p[31:33])[0] == _reference_crc(p[2:31])

    def test_seq_wraps(self):
        assert encode_packet(65536 + 3, [0] * 12)[3:5] == b"\x03\x00"

    def test_block_encoder_gives_the_same_bytes(self):
        block = _block(40)
        one_by_one = b"".join(encode_packet(65520 + i, block[:, i], 7) for i in range(40))
        assert encode_packets(65520, block, 7) == one_by_one

    @pytest.mark.parametrize(
        "values, lead_off",
        [([0] * 11, 0), ([40000] + [0] * 11, 0), ([0] * 12, 4096), ([0] * 12, -1)],
    )
    def test_bad_input_is_refused(self, values, lead_off):
        with pytest.raises(ConfigError):
            encode_packet(0, values, lead_off)

    def test_quantisation(self):
        mv = np.array([0.0, 0.0014, -0.0016, 0.0025, 40.0, -40.0])
        assert mv_to_lsb(mv, 1.0).tolist() == [0, 1, -2, 2, 32767, -32768]
        assert mv_to_lsb(np.array([1.0]), 2.5).tolist() == [400]
        out = lsb_to_mv(np.array([400], dtype=np.int16), 2.5)
        assert out.dtype == np.float32 and out.tolist() == [1.0]

    def test_csv_line(self):
        assert encode_csv_line(range(12)) == b"0,1,2,3,4,5,6,7,8,9,10,11\n"
        assert encode_csv_line([0] * 12, index=5).startswith(b"5,0,")

    def test_unknown_protocol(self):
        with pytest.raises(ConfigError, match="protocol"):
            make_parser("json")


class TestBinaryParser:
    def test_round_trip_with_wrap(self):
        block = _block(20)
        items = BinaryParser().feed(encode_packets(65530, block, lead_off=3))
        assert all(isinstance(it, Sample) for it in items)
        assert [it.seq for it in items] == [(65530 + i) % 65536 for i in range(20)]
        assert np.array_equal(np.array([it.values for it in items]).T, block)
        assert {it.lead_off for it in items} == {3}

    def test_dropped_packets_are_a_gap(self):
        data = encode_packets(10, _block(10))
        p = BinaryParser()
        items = p.feed(data[: 3 * PACKET_SIZE] + data[7 * PACKET_SIZE :])
        assert [type(it).__name__ for it in items] == ["Sample"] * 3 + ["Gap"] + ["Sample"] * 3
        assert items[3] == Gap(4, "sequence")
        assert (p.stats.gaps, p.stats.samples_lost, p.stats.packets_ok) == (1, 4, 6)

    def test_sequence_going_back_is_a_reset(self):
        p = BinaryParser()
        items = p.feed(encode_packets(500, _block(2)) + encode_packets(0, _block(2)))
        assert Gap(0, "reset") in items
        assert p.stats.seq_resets == 1 and p.stats.samples_lost == 0

    def test_corrupt_packet_counted_and_skipped(self):
        data = bytearray(encode_packets(0, _block(3)))
        data[PACKET_SIZE + 10] ^= 0x40
        p = BinaryParser()
        items = p.feed(bytes(data))
        assert [it.seq for it in _samples(items)] == [0, 2]
        assert items[1] == Gap(1, "sequence")
        assert p.stats.crc_errors == 1
        assert p.stats.bytes_discarded == PACKET_SIZE

    def test_false_sync_and_bad_version_in_garbage(self):
        block = _block(2)
        good = encode_packets(0, block)
        bad_version = bytearray(good[:PACKET_SIZE])
        bad_version[2] = 2
        garbage = b"\xa5\x5a\x01\x02\x03" + bytes(bad_version) + b"\xa5\xa5\x5a"
        p = BinaryParser()
        items = p.feed(good[:PACKET_SIZE] + garbage + good[PACKET_SIZE:])
        assert [it.seq for it in items] == [0, 1]
        # the false sync fails its CRC; the bad version and "a5 5a a5..." fail the version
        assert (p.stats.crc_errors, p.stats.bad_versions, p.stats.resyncs) == (1, 2, 1)

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=2000), st.lists(st.integers(0, 2000), max_size=8))
    def test_fuzz_arbitrary_bytes_never_raise(self, data, cuts):
        p = BinaryParser()
        for it in _feed_in_pieces(p, data, cuts):
            assert isinstance(it, (Sample, Gap))
        assert len(p._buf) < PACKET_SIZE  # bounded whatever it was fed

    @settings(max_examples=150, deadline=None)
    @given(
        st.lists(st.tuples(lead_values, st.integers(0, 4095)), min_size=1, max_size=20),
        st.lists(st.binary(max_size=50), min_size=21, max_size=21),
        st.integers(0, 65535),
        st.lists(st.integers(0, 2000), max_size=6),
    )
    def test_fuzz_garbage_between_packets_all_recovered(self, packets, garbage, seq0, cuts):
        stream = garbage[0]
        for i, (values, lead_off) in enumerate(packets):
            stream += encode_packet(seq0 + i, values, lead_off) + garbage[i + 1]
        p = BinaryParser()
        items = _feed_in_pieces(p, stream, cuts)
        assert items == [
            Sample((seq0 + i) % 65536, tuple(v), lo) for i, (v, lo) in enumerate(packets)
        ]
        assert p.stats.packets_ok == len(packets) and p.stats.gaps == 0

    @settings(max_examples=100, deadline=None)
    @given(st.integers(2, 40), st.data())
    def test_fuzz_dropped_packets_reported_with_their_size(self, n, data):
        keep = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
        keep[0] = True
        seq0 = data.draw(st.integers(0, 65535))
        block = _block(n, seed=n)
        stream = b"".join(encode_packet(seq0 + i, block[:, i]) for i in range(n) if keep[i])
        items = BinaryParser().feed(stream)
        expected, missing = [], 0
        for i in range(n):
            if not keep[i]:
                missing += 1
                continue
            if missing:
                expected.append(Gap(missing, "sequence"))
                missing = 0
            expected.append(Sample((seq0 + i) % 65536, tuple(block[:, i].tolist()), 0))
        assert items == expected

    @settings(max_examples=100, deadline=None)
    @given(st.lists(st.integers(0, 40 * PACKET_SIZE), max_size=12))
    def test_fuzz_chunking_does_not_change_the_result(self, cuts):
        stream = b"junk" + encode_packets(7, _block(40)) + b"\xa5"
        whole = BinaryParser().feed(stream)
        assert _feed_in_pieces(BinaryParser(), stream, cuts) == whole
        assert len(whole) == 40

    def test_reset_and_restart_sequence(self):
        p = BinaryParser()
        p.feed(encode_packets(0, _block(3))[:-5])
        p.restart_sequence()
        assert _samples(p.feed(encode_packets(100, _block(1)))) != []
        assert p.stats.gaps == 0
        p.reset()
        assert p.stats.packets_ok == 0


class TestCsvParser:
    def test_plain_and_indexed_lines(self):
        p = CsvParser()
        items = p.feed(
            b"# device v1\r\n\n1,2,3,4,5,6,7,8,9,10,11,12\r\n"
            b"5 -1 -2 -3 -4 -5 -6 -7 -8 -9 -10 -11 -12\n"
            b"6;0.5;0;0;0;0;0;0;0;0;0;0;0\n"
            b"9\t1\t1\t1\t1\t1\t1\t1\t1\t1\t1\t1\t1\n"
        )
        assert items[0] == Sample(None, tuple(float(v) for v in range(1, 13)), 0)
        assert items[1].seq == 5 and items[1].values[-1] == -12.0
        assert items[2].values[0] == 0.5
        assert items[3] == Gap(2, "sequence")
        assert items[4].seq == 9
        assert p.stats.packets_ok == 4 and p.stats.bad_lines == 0

    @pytest.mark.parametrize(
        "line",
        [
            b"1,2,3\n",
            b"a,b,c,d,e,f,g,h,i,j,k,l\n",
            b"1,2,3,4,5,6,7,8,9,10,11,nan\n",
            b"-1,1,2,3,4,5,6,7,8,9,10,11,12\n",
            b"1.5,1,2,3,4,5,6,7,8,9,10,11,12\n",
            b"\xff\xfe,1,2,3,4,5,6,7,8,9,10,11\n",
            b"1e300,1,2,3,4,5,6,7,8,9,10,11\n",
        ],
    )
    def test_bad_line_counted_and_skipped(self, line):
        p = CsvParser()
        items = p.feed(line + b"0,0,0,0,0,0,0,0,0,0,0,0\n")
        assert items == [Sample(None, (0.0,) * 12, 0)]
        assert p.stats.bad_lines == 1

    def test_overlong_line_is_discarded_without_buffering(self):
        p = CsvParser()
        for _ in range(100):
            p.feed(b"1," * 200)
            assert len(p._buf) <= MAX_CSV_LINE
        items = p.feed(b"\n" + b"1,2,3,4,5,6,7,8,9,10,11,12\n")
        assert len(items) == 1
        assert p.stats.bad_lines == 1

    def test_round_trip_with_index_wrap(self):
        block = _block(5)
        data = b"".join(encode_csv_line(block[:, i], index=65534 + i) for i in range(5))
        items = CsvParser().feed(data)
        assert [it.seq for it in items] == [65534, 65535, 0, 1, 2]
        assert np.array_equal(np.array([it.values for it in items]).T, block)

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=3000), st.lists(st.integers(0, 3000), max_size=8))
    def test_fuzz_arbitrary_bytes_never_raise(self, data, cuts):
        p = CsvParser()
        for it in _feed_in_pieces(p, data, cuts):
            assert isinstance(it, (Sample, Gap))
            if isinstance(it, Sample):
                assert len(it.values) == 12
        assert len(p._buf) <= MAX_CSV_LINE

    @settings(max_examples=100, deadline=None)
    @given(
        st.lists(lead_values, min_size=1, max_size=15),
        st.lists(st.integers(0, 2000), max_size=8),
        st.booleans(),
    )
    def test_fuzz_chunking_does_not_change_the_result(self, rows, cuts, crlf):
        data = b"".join(encode_csv_line(v, index=i) for i, v in enumerate(rows))
        if crlf:
            data = data.replace(b"\n", b"\r\n")
        items = _feed_in_pieces(CsvParser(), data, cuts)
        assert items == [Sample(i, tuple(float(x) for x in v), 0) for i, v in enumerate(rows)]
