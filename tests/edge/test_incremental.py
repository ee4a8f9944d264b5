"""The incremental extractor: windows seen by the previous frame are reused, scores unchanged.

Real bundles of both model families (Model 1 ``cnn``, Model 2 ``resnet``,
trained in seconds by the real trainer), int8 and fp32, over real records:
the scores of frames classified with the window cache equal, bit for bit,
those computed from scratch (``features(model_windows(frame))``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge.agent import Agent, score_record
from edge.bundle import load_bundle
from edge.classify import Classifier
from edge.dsp import model_windows, preprocess
from edge.framer import record_frames
from edge.records import find_records, read_header, read_record
from edge.replay import ReplaySource


@pytest.fixture(scope="session")
def resnet_bundle(tmp_path_factory, samples_dir) -> Path:
    """Model 2 (the 1-D ResNet), 1 epoch on the sample records: real export, int8 and fp32."""
    from trainer.data import load_cache, scan
    from trainer.fit import TrainConfig
    from trainer.pipeline import fit_bundle

    root = tmp_path_factory.mktemp("resnet_bundle")
    rep = scan([samples_dir])
    items, signals = load_cache(rep, cache_dir=root / "cache", workers=1)
    cfg = TrainConfig(model="resnet", epochs=1, seed=0, threads=2)
    fit_bundle(
        items,
        signals,
        np.arange(len(items)),
        cfg,
        root / "bundle",
        root / "work",
        rep.summary(),
        inner_folds=2,
        log=lambda *_: None,
    )
    return root / "bundle"


@pytest.fixture(scope="module")
def records(samples_dir):
    """The sample records (10-48 s) and, when present, 6 CPSC records of 40 s or more."""
    heads = find_records([samples_dir])
    cpsc = samples_dir.parents[1].parent / "shared" / "data" / "challenge2020" / "cpsc2018"
    long = [h for h in sorted(cpsc.glob("*.hea")) if read_header(h).n_samples >= 20000]
    heads += long[:6]
    return [read_record(h) for h in heads]


MODELS = [
    pytest.param("cnn", id="model1"),
    pytest.param("resnet", id="model2", marks=pytest.mark.slow),
]


def _bundle(request, model: str) -> Path:
    return Path(request.getfixturevalue("tiny_bundle" if model == "cnn" else "resnet_bundle"))


class TestIncrementalScores:
    @pytest.mark.parametrize("precision", ["int8", "fp32"])
    @pytest.mark.parametrize("model", MODELS)
    def test_cached_scores_equal_full_frame_scores(self, request, records, model, precision):
        bundle = load_bundle(_bundle(request, model))
        assert bundle.manifest.dsp.window_samples < bundle.manifest.dsp.model_frame_samples
        cached = Classifier(bundle, precision)
        full = Classifier(bundle, precision, cache_windows=0)
        cfg = bundle.manifest.dsp
        n_frames = n_full_frames = 0
        for r in records:  # one classifier across records, as a replay runs
            x = preprocess(r.signal, r.fs, cfg).astype(np.float32)
            for f in record_frames(x, 5000, cfg.frame_samples):
                a = cached.frame_features(f.samples)
                b = full.features(model_windows(f.samples, cfg))
                assert np.array_equal(a, b), (r.name, f.start_sample)
                sa = cached.head.scores(a[None])
                assert np.array_equal(sa, full.head.scores(b[None]))
                n_frames += 1
                n_full_frames += f.n_valid == cfg.frame_samples
        assert n_frames > 30 and n_full_frames >= 5
        # every 30 s frame after the first of a record reuses two of its three windows
        assert cached.cache_hits >= 2 * (n_full_frames - len(records))
        assert full.cache_hits == 0

    @pytest.mark.parametrize("model", MODELS)
    def test_a_window_is_the_same_alone_or_in_a_batch(self, request, records, model):
        bundle = load_bundle(_bundle(request, model))
        cfg = bundle.manifest.dsp
        long = max(records, key=lambda r: r.signal.shape[1] / r.fs)
        x = preprocess(long.signal, long.fs, cfg).astype(np.float32)
        wins = np.concatenate([model_windows(f.samples, cfg) for f in record_frames(x)])
        for precision in ("int8", "fp32"):
            clf = Classifier(bundle, precision)
            batch = clf.window_rows(wins)
            alone = np.concatenate([clf.window_rows(w[None]) for w in wins])
            assert np.array_equal(batch, alone)

    def test_short_hops_reuse_windows_of_earlier_frames(self, tiny_bundle, records):
        bundle = load_bundle(tiny_bundle)
        cfg = bundle.manifest.dsp
        long = max(records, key=lambda r: r.signal.shape[1] / r.fs)  # 47.7 s
        x = preprocess(long.signal, long.fs, cfg).astype(np.float32)
        clf, ref = Classifier(bundle), Classifier(bundle, cache_windows=0)
        frames = record_frames(x, 2500, cfg.frame_samples)  # a 5 s hop
        for f in frames:
            assert np.array_equal(clf.frame_features(f.samples), ref.frame_features(f.samples))
        # frame k+2 shares two windows with frame k (hop 5 s, windows of 10 s)
        assert clf.cache_hits >= 2 * sum(f.n_valid == 15000 for f in frames[2:-1])

    def test_reset_and_a_full_cache_change_nothing_but_time(self, tiny_bundle, records):
        bundle = load_bundle(tiny_bundle)
        cfg = bundle.manifest.dsp
        x = preprocess(records[6].signal, records[6].fs, cfg).astype(np.float32)
        frames = record_frames(x, 5000, cfg.frame_samples)
        one = Classifier(bundle, cache_windows=1)  # keeps only the last window computed
        big = Classifier(bundle)  # forgets everything after each frame
        for f in frames:
            assert np.array_equal(one.frame_features(f.samples), big.frame_features(f.samples))
            big.reset()
        assert big.cache_hits == 0 and len(one._cache) == 1 and one.cache_misses > len(frames)


class TestAgentReuse:
    def test_replayed_stream_equals_score_record(self, tiny_bundle, records, samples_dir):
        """The agent classifies with the cache; its frames equal the whole-record reference."""
        bundle = load_bundle(tiny_bundle)
        heads = [h for h in find_records([samples_dir]) if h.stem in ("Q0005", "S0001", "A0005")]
        events: list[dict] = []
        agent = Agent(bundle, sink=events.append)
        agent.run(ReplaySource(heads, speed=None, chunk_s=0.1))
        frames = [e for e in events if e["type"] == "frame"]
        ref = []
        for h in heads:
            for _f, raw in score_record(agent.classifier, read_record(h)):
                ref.append(agent.classifier.classification(raw).scores_by_code())
        assert len(frames) == len(ref) > 6
        assert [e["scores"] for e in frames] == ref
        assert agent.classifier.cache_hits > 0
