"""edge.records: real Challenge records, their quirks, and one clear error per bad record."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import wfdb

from edge.errors import RecordError
from edge.records import LEADS, find_records, parse_dx, read_header, read_record


def _copy(samples_dir, rel, tmp_path):
    src = samples_dir / rel
    for f in src.parent.glob(src.name + ".*"):
        shutil.copy(f, tmp_path / f.name)
    return tmp_path / src.name


class TestRealRecords:
    def test_every_sample_reads(self, sample_records):
        assert len(sample_records) == 14
        dbs = {r.database for r in sample_records}
        assert {"cpsc2018", "georgia", "ludb", "ptb", "ptb-xl", "chapman-ningbo"} <= dbs
        for r in sample_records:
            assert r.signal.shape == (12, r.header.n_samples)
            assert r.signal.dtype == np.float32
            assert r.dx, r.name

    @pytest.mark.parametrize(
        "rel", ["cpsc2018/A0001", "ludb/LU0001", "ptb/S0001", "chapman-ningbo/JS00001"]
    )
    def test_matches_wfdb_in_mv(self, samples_dir, rel):
        rec = read_record(samples_dir / rel)
        w = wfdb.rdrecord(str(samples_dir / rel))
        names = [s.lower() for s in w.sig_name]
        ref = w.p_signal[:, [names.index(lead.lower()) for lead in LEADS]].T
        np.testing.assert_allclose(rec.signal, ref, atol=1e-6)

    def test_georgia_header_naming_the_mat_file(self, samples_dir):
        with pytest.raises(Exception):  # noqa: B017 - the quirk: wfdb refuses this header
            wfdb.rdheader(str(samples_dir / "georgia/E00015"))
        rec = read_record(samples_dir / "georgia/E00015")
        assert rec.name == "E00015" and rec.signal.shape == (12, 5000)

    def test_ptb_is_1000hz_and_lowercase_mv(self, samples_dir):
        rec = read_record(samples_dir / "ptb/S0001.hea")
        assert rec.fs == 1000 and rec.dx == ("251146004", "426783006")
        assert 0.05 < np.abs(rec.signal).max() < 20

    def test_dx_both_prefixes(self):
        assert parse_dx(["#Dx: 1,2"]) == ("1", "2")
        assert parse_dx(["# Dx: 3 , 4,"]) == ("3", "4")
        assert parse_dx(["#Age: 3"]) is None

    def test_full_set_reads(self, shared_data):
        headers = find_records([shared_data])
        assert len(headers) == 494
        for h in headers[::25]:
            assert read_record(h).signal.shape[0] == 12


class TestBadRecords:
    def test_missing_header(self, tmp_path):
        with pytest.raises(RecordError, match="no header file"):
            read_record(tmp_path / "nothing")

    def test_missing_signal_file(self, samples_dir, tmp_path):
        p = _copy(samples_dir, "cpsc2018/A0001", tmp_path)
        p.with_suffix(".mat").unlink()
        with pytest.raises(RecordError, match="A0001: no signal file"):
            read_record(p)

    def test_missing_lead_is_named(self, samples_dir, tmp_path):
        p = _copy(samples_dir, "cpsc2018/A0001", tmp_path)
        hea = p.with_suffix(".hea")
        hea.write_text(hea.read_text().replace(" V4\n", " V7\n"))
        with pytest.raises(RecordError, match=r"missing lead\(s\) V4"):
            read_record(p)

    def test_truncated_dat(self, samples_dir, tmp_path):
        p = _copy(samples_dir, "ludb/LU0001", tmp_path)
        dat = p.with_suffix(".dat")
        dat.write_bytes(dat.read_bytes()[:5000])
        with pytest.raises(RecordError, match="truncated signal"):
            read_record(p)

    def test_extra_lead_is_dropped(self, samples_dir, tmp_path):
        p = _copy(samples_dir, "ludb/LU0001", tmp_path)
        rec = read_record(p)
        x = np.concatenate([rec.signal, rec.signal[:1]], axis=0).T.astype(np.float64)
        wfdb.wrsamp(
            "X1",
            fs=500,
            units=["mV"] * 13,
            sig_name=[*LEADS, "VX"],
            p_signal=x,
            fmt=["16"] * 13,
            adc_gain=[1000.0] * 13,
            baseline=[0] * 13,
            write_dir=str(tmp_path),
        )
        got = read_record(tmp_path / "X1")
        np.testing.assert_allclose(got.signal, rec.signal, atol=2e-3)

    def test_garbage_header(self, tmp_path):
        (tmp_path / "bad.hea").write_text("this is not wfdb\n")
        with pytest.raises(RecordError, match="bad: bad record line"):
            read_header(tmp_path / "bad")

    def test_find_records_refuses_missing_path(self, tmp_path):
        with pytest.raises(RecordError, match="no such record or folder"):
            find_records([tmp_path / "nope"])
