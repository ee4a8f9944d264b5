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
