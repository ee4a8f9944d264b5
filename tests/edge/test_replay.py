"""edge.replay: records as a paced stream, one segment per record, bad records handled."""

from __future__ import annotations

import shutil
import threading
import time

import numpy as np
import pytest

from edge.errors import ConfigError, RecordError, SourceError
from edge.records import read_record
from edge.replay import ReplaySource
from edge.sources import SampleSource


class TestReplaySource:
    def test_is_a_sample_source(self, samples_dir):
        assert isinstance(ReplaySource([samples_dir / "ptb"]), SampleSource)

    def test_chunks_rebuild_each_record(self, samples_dir):
        src = ReplaySource([samples_dir / "cpsc2018"], chunk_s=0.37)
        by_record: dict[str, list] = {}
        for c in src.chunks():
            by_record.setdefault(c.record, []).append(c)
        assert list(by_record) == ["A0001", "A0003", "A0005"]
        for name, chunks in by_record.items():
            rec = read_record(samples_dir / "cpsc2018" / name)
            assert chunks[0].start_sample == 0
            assert [c.end_of_record for c in chunks] == [False] * (len(chunks) - 1) + [True]
            # what is left of the record after each chunk (the agent delineates the
            # last beats before the last, flushed frame when it is under 1 s)
            n = rec.signal.shape[1]
            assert [c.samples_left for c in chunks] == [
                n - c.start_sample - c.n_samples for c in chunks
            ]
            assert chunks[-1].samples_left == 0
            starts = [c.start_sample for c in chunks]
            assert starts == sorted(starts) and all(c.fs == rec.fs for c in chunks)
            np.testing.assert_array_equal(
                np.concatenate([c.samples for c in chunks], 1), rec.signal
            )
            assert max(c.n_samples for c in chunks) == round(0.37 * rec.fs)

    def test_pacing(self, samples_dir):
        src = ReplaySource([samples_dir / "chapman-ningbo" / "JS00001"], speed=20.0, chunk_s=0.5)
        t0 = time.monotonic()
        n = sum(c.n_samples for c in src.chunks())
        elapsed = time.monotonic() - t0
        assert n == 5000
        assert 0.45 <= elapsed < 2.0  # 10 s of signal at 20x = 0.5 s

    def test_max_speed_is_fast(self, samples_dir):
        t0 = time.monotonic()
        list(ReplaySource([samples_dir], speed=None).chunks())
        assert time.monotonic() - t0 < 10

    def test_loop_and_close(self, samples_dir):
        src = ReplaySource([samples_dir / "ptb-xl" / "HR00001"], speed=None, loop=True)
        ends = 0
        for c in src.chunks():
            ends += c.end_of_record
            if ends == 3:
                src.close()
        assert ends == 3
        src.close()  # twice is fine

    def test_close_from_another_thread_stops_pacing(self, samples_dir):
        src = ReplaySource([samples_dir / "ptb"], speed=1.0)
        threading.Timer(0.3, src.close).start()
        t0 = time.monotonic()
        list(src.chunks())
        assert time.monotonic() - t0 < 2

    def test_explicit_bad_record_is_an_error(self, tmp_path):
        (tmp_path / "bad.hea").write_text("this is not a header\n")
        with pytest.raises(RecordError, match="bad"):
            ReplaySource([tmp_path / "bad.hea"])
        with pytest.raises(RecordError, match="no such record"):
            ReplaySource([tmp_path / "missing"])

    def test_bad_record_in_folder_is_skipped(self, tmp_path, samples_dir):
        for f in (samples_dir / "ptb-xl").iterdir():
            shutil.copy(f, tmp_path / f.name)
        (tmp_path / "AAA_bad.hea").write_text("AAA_bad 12 500 100\n")
        notes = []
        src = ReplaySource([tmp_path], on_skip=lambda name, why: notes.append((name, why)))
        records = [c.record for c in src.chunks() if c.end_of_record]
        assert records == ["HR00001", "HR00003"]
        assert notes and notes[0][0] == "AAA_bad" and src.skipped == ["AAA_bad"]

    def test_nothing_to_play(self, tmp_path):
        with pytest.raises(SourceError, match="no WFDB record"):
            ReplaySource([tmp_path])
        with pytest.raises(SourceError):
            ReplaySource([])

    def test_bad_options(self, samples_dir):
        with pytest.raises(ConfigError, match="speed"):
            ReplaySource([samples_dir], speed=0)
        with pytest.raises(ConfigError, match="chunk_s"):
            ReplaySource([samples_dir], chunk_s=-1)

    def test_chunks_do_not_alias_the_record(self, samples_dir):
        src = ReplaySource([samples_dir / "ptb-xl" / "HR00001"])
        c = next(iter(src.chunks()))
        c.samples[:] = 99.0
        c2 = next(iter(src.chunks()))
        assert not np.any(c2.samples == 99.0)
