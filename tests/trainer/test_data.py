"""trainer.data: the index, the cache, the splits, on real records."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from edge.errors import EcgEdgeError
from trainer.data import kfold, load_cache, scan, source_folds


class TestScan:
    def test_samples(self, samples_dir):
        rep = scan([samples_dir])
        assert len(rep.items) == 14 and not rep.skipped
        assert rep.summary()["databases"]["cpsc2018"] == 3

    def test_bad_records_are_counted_not_fatal(self, samples_dir, tmp_path):
        for rel in ("cpsc2018/A0001", "cpsc2018/A0003", "ludb/LU0001"):
            for f in (samples_dir / rel).parent.glob((samples_dir / rel).name + ".*"):
                shutil.copy(f, tmp_path / f.name)
        hea = tmp_path / "A0003.hea"
        hea.write_text("\n".join(ln for ln in hea.read_text().splitlines() if "Dx" not in ln))
        (tmp_path / "LU0001.dat").write_bytes(b"\0" * 100)  # truncated signal
        rep = scan([tmp_path])
        assert [i.name for i in rep.items] == ["A0001", "LU0001"]
        assert rep.skipped == [("A0003", "header has no Dx line")]
        items, _ = load_cache(rep, cache_dir=tmp_path / "cache", workers=1)
        assert [i.name for i in items] == ["A0001"]
        assert ("LU0001", "truncated signal: 4 of 5000 samples in LU0001.dat") in rep.skipped
        assert "2 skipped" in rep.describe()

    def test_empty_folder(self, tmp_path):
        with pytest.raises(EcgEdgeError, match="no records"):
            scan([tmp_path])


class TestCache:
    def test_second_read_touches_no_wfdb_file(self, samples_dir, tmp_path):
        data = tmp_path / "data"
        shutil.copytree(samples_dir / "cpsc2018", data)
        rep = scan([data])
        _, first = load_cache(rep, cache_dir=tmp_path / "c", workers=1)
        for f in data.glob("*.mat"):
            f.write_bytes(b"garbage")  # any WFDB read now fails
        _, second = load_cache(scan([data]), cache_dir=tmp_path / "c", workers=1)
        for a, b in zip(first, second):
            np.testing.assert_array_equal(a, b)


class TestSplits:
    def test_kfold_is_deterministic_and_stratified(self, shared_data):
        items = scan([shared_data]).items
        labels = np.array([i.labels for i in items])
        f1, f2 = kfold(labels, 5, seed=1), kfold(labels, 5, seed=1)
        np.testing.assert_array_equal(f1, f2)
        assert not np.array_equal(f1, kfold(labels, 5, seed=2))
        sizes = np.bincount(f1)
        assert sizes.max() - sizes.min() <= 2
        for j in np.where(labels.sum(0) >= 10)[0]:
            per = np.array([labels[f1 == k, j].sum() for k in range(5)])
            assert per.max() - per.min() <= 2, j

    def test_sources(self, shared_data):
        items = scan([shared_data]).items
        folds, names = source_folds(items)
        assert names == ["chapman-ningbo", "cpsc", "georgia", "ludb", "ptb"]
        assert np.bincount(folds).tolist() == [41, 187, 34, 200, 32]


def _copy_record(src_hea, dst_dir, new_name=None, edit=None):
    """Copy a WFDB record (header + signal) into ``dst_dir``, optionally renamed / edited."""
    name = new_name or src_hea.stem
    for f in src_hea.parent.glob(src_hea.stem + ".*"):
        text_or_bytes = f.read_bytes()
        out = dst_dir / (name + f.suffix)
        if f.suffix == ".hea":
            text = text_or_bytes.decode().replace(src_hea.stem, name)
            out.write_text(edit(text) if edit else text)
        else:
            out.write_bytes(text_or_bytes)
    return dst_dir / (name + ".hea")


class TestPtbxl:
    """The PTB-XL layout: #PatientID, #StratFold, empty Dx lines, HR twins."""

    @pytest.fixture
    def ptbxl_sample(self, shared_data):
        return shared_data.parent / "ptbxl" / "sample"

    def test_patients_and_folds_are_read(self, ptbxl_sample):
        rep = scan([ptbxl_sample])
        assert len(rep.items) == 48
        assert all(it.patient.startswith("ptbxl:") for it in rep.items)
        assert all(it.strat_fold in range(1, 10) for it in rep.items)
        assert all(it.fs == 100 for it in rep.items)

    def test_empty_dx_is_a_negative_record_not_an_error(self, ptbxl_sample, tmp_path):
        src = sorted(ptbxl_sample.glob("*.hea"))[0]
        _copy_record(
            src,
            tmp_path,
            "LR99999",
            lambda t: "\n".join("#Dx:" if ln.startswith("#Dx") else ln for ln in t.splitlines()),
        )
        rep = scan([tmp_path])
        assert [i.name for i in rep.items] == ["LR99999"] and not rep.skipped
        assert not rep.items[0].labels.any()
        assert rep.summary()["unscored_only"] == 1

    def test_validation_split_is_by_patient_and_takes_hr_twins(self, ptbxl_sample, tmp_path):
        from trainer.data import group_kfold, validation_split

        lr = tmp_path / "lr"
        hr = tmp_path / "hr"
        lr.mkdir()
        hr.mkdir()
        for f in ptbxl_sample.glob("*"):
            shutil.copy(f, lr / f.name)
        val_rec = next(h for h in sorted(lr.glob("*.hea")) if "#StratFold: 9" in h.read_text())
        # the Challenge's 500 Hz copy: same ECG id, no #PatientID, no fold
        _copy_record(
            val_rec,
            hr,
            "HR" + val_rec.stem[2:],
            lambda t: "\n".join(ln for ln in t.splitlines() if "PatientID" not in ln),
        )
        # a second record of the same patient, in another fold: must go with the patient
        pid = next(ln for ln in val_rec.read_text().splitlines() if "PatientID" in ln)
        other = next(h for h in sorted(lr.glob("*.hea")) if "#StratFold: 9" not in h.read_text())
        text = other.read_text()
        text = "\n".join(pid if "PatientID" in ln else ln for ln in text.splitlines())
        other.write_text(text)
        items = scan([lr, hr]).items
        by_name = {it.name: it for it in items}
        twin = by_name["HR" + val_rec.stem[2:]]
        assert twin.patient == by_name[val_rec.stem].patient
        train, val = validation_split(items, 9)
        train_names = {items[i].name for i in train}
        val_patients = {items[i].patient for i in val}
        assert twin.name not in train_names and other.stem not in train_names
        assert not val_patients & {items[i].patient for i in train}
        labels = np.array([it.labels for it in items])
        folds = group_kfold(items, labels, 3)
        for p in {it.patient for it in items}:
            assert len({f for f, it in zip(folds, items) if it.patient == p}) == 1

    def test_cache_notices_a_changed_record(self, ptbxl_sample, tmp_path):
        src = sorted(ptbxl_sample.glob("*.hea"))[0]
        (tmp_path / "data").mkdir()
        hea = _copy_record(src, tmp_path / "data")
        rep = scan([hea.parent])
        _, sig = load_cache(rep, cache_dir=tmp_path / "cache", workers=1, model_rate=True)
        dat = hea.with_suffix(".dat")
        raw = np.fromfile(dat, dtype="<i2")
        (raw // 2).astype("<i2").tofile(dat)  # the signal rewritten in place: half the amplitude
        rep = scan([hea.parent])
        _, sig2 = load_cache(rep, cache_dir=tmp_path / "cache", workers=1, model_rate=True)
        assert np.abs(sig2[0]).max() < 0.7 * np.abs(sig[0]).max()
