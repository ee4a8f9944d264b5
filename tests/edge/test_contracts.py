"""Contract tests over every streaming stage (river's ``checks/`` style).

One set of checks, parametrized over the stages: the input is not mutated,
chunking does not change the result (where a stage takes a stream), ``reset()``
restores the start, seeded runs repeat. Each stage is wrapped in a small
adapter: ``make()`` builds it, ``data(seed)`` a seeded input, ``run(stage,
data, cuts)`` feeds the input cut at ``cuts`` and returns comparable output.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.alarms import Monitor
from edge.alerts import AlertTracker
from edge.beats import BeatDetector
from edge.classify import Classification
from edge.dsp import Preprocessor
from edge.framer import Frame, Framer
from edge.quality import QualityChecker
from edge.records import read_record
from edge.replay import ReplaySource
from edge.sources import LEADS, N_LEADS


def _split(x: np.ndarray, cuts: list[int]) -> list[np.ndarray]:
    cuts = sorted({c for c in cuts if 0 < c < x.shape[1]})
    return np.split(x, cuts, axis=1)


def _signal(seed: int, n: int = 6000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 360.0
    return (np.sin(2 * np.pi * 1.1 * t) + rng.normal(0, 0.1, (N_LEADS, n))).astype(np.float32)


def _pre_run(stage, x, cuts):
    return np.concatenate([stage.push(c) for c in _split(x, cuts)], axis=1)


def _framer_run(stage, x, cuts):
    frames = [f for c in _split(x, cuts) for f in stage.push(c)] + stage.flush()
    return [(f.start_sample, f.end_sample, f.samples) for f in frames]


def _quality_data(seed):
    x = _signal(seed, 15000) * 0.5
    x[2] = 0.0  # one flat lead, so the verdict is not trivially ok
    return x


def _quality_run(stage, x, cuts):
    f = Frame(x, 0, x.shape[1])
    r = stage.check(f, np.zeros(N_LEADS, bool), x)
    return (r.ok, r.reasons, r.bad_leads, [tuple(vars(s).values()) for s in r.stats])


CODES = ("a", "b", "c")


def _alert_data(seed):
    return np.random.default_rng(seed).random((40, 3)) > 0.4


def _alert_run(stage, pos, cuts):
    frame = Frame(np.zeros((N_LEADS, 1), np.float32), 0, 1)
    out = []
    for p in pos:
        c = Classification(CODES, p.astype(np.float32), np.zeros(3, np.float32), p.copy())
        out.append([(e.event, e.codes) for e in stage.update(c, frame)])
    return out


def _replay_run(stage, _x, cuts):
    return np.concatenate([c.samples for c in stage.chunks()], axis=1)


_ECG: list[np.ndarray] = []


def _ecg(seed: int) -> np.ndarray:
    """A real record, preprocessed, 9000 samples at 500 Hz, a flat line from 5000, + noise."""
    if not _ECG:
        from pathlib import Path

        from edge.dsp import preprocess

        root = Path(__file__).resolve().parents[2] / "edge" / "samples" / "ptb-xl" / "HR00001"
        _ECG.append(preprocess(read_record(root).signal, 500.0))
    x = np.zeros((N_LEADS, 9000), np.float32)
    x[:, :5000] = _ECG[0][:, :5000]
    rng = np.random.default_rng(seed)
    return (x + rng.normal(0, 0.01, x.shape)).astype(np.float32)


def _beats_run(stage, x, cuts):
    beats = [b for c in _split(x, cuts) for b in stage.push(c)] + stage.flush()
    return [(b.sample, b.rr_samples, b.searchback) for b in beats]


def _monitor_run(stage, x, cuts):
    events = [e for c in _split(x, cuts) for e in stage.push(c)]
    return [vars(e) for e in events] + [stage.beats, stage.close()]


@dataclass
class Adapter:
    name: str
    make: Callable[[], Any]
    data: Callable[[int], Any]
    run: Callable[[Any, Any, list[int]], Any]
    chunked: bool  # does the stage take a stream whose cutting must not matter?
    reset: Callable[[Any], None] = lambda s: s.reset()


def _replay_make():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "edge" / "samples" / "ptb-xl" / "HR00001"
    return ReplaySource([root], chunk_s=0.13)


ADAPTERS = [
    Adapter("Preprocessor", lambda: Preprocessor(360.0), _signal, _pre_run, True),
    Adapter("Framer", lambda: Framer(1000, 4000), lambda s: _signal(s, 9100), _framer_run, True),
    Adapter("QualityChecker", QualityChecker, _quality_data, _quality_run, False),
    Adapter("AlertTracker", lambda: AlertTracker(CODES, "b", 2), _alert_data, _alert_run, False),
    Adapter("BeatDetector", BeatDetector, _ecg, _beats_run, True),
    Adapter("Monitor", lambda: Monitor(LEADS), _ecg, _monitor_run, True, lambda s: s.reset()),
    Adapter("ReplaySource", _replay_make, lambda s: None, _replay_run, False, lambda s: None),
]


def _equal(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(a, b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a == b


def _close(a, b) -> bool:
    if isinstance(a, np.ndarray):
        return a.shape == b.shape and np.allclose(a, b, rtol=1e-5, atol=1e-5)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    return a == b


@pytest.fixture(params=ADAPTERS, ids=lambda a: a.name)
def adapter(request) -> Adapter:
    return request.param


class TestContracts:
    def test_input_not_mutated(self, adapter):
        data = adapter.data(0)
        before = copy.deepcopy(data)
        adapter.run(adapter.make(), data, [77, 500, 1234])
        assert _equal(data, before)

    def test_reset_restores_the_start(self, adapter):
        stage = adapter.make()
        first = adapter.run(stage, adapter.data(1), [100])
        adapter.reset(stage)
        assert _equal(adapter.run(stage, adapter.data(1), [100]), first)

    def test_seeded_runs_repeat(self, adapter):
        a = adapter.run(adapter.make(), adapter.data(2), [300])
        b = adapter.run(adapter.make(), adapter.data(2), [300])
        assert _equal(a, b)

    # Only the stages that take a stream: QualityChecker and AlertTracker judge whole
    # frames, and the replay's own chunking has its test below.
    @pytest.mark.parametrize("stream", [a for a in ADAPTERS if a.chunked], ids=lambda a: a.name)
    def test_chunking_does_not_change_the_result(self, stream):
        adapter = stream
        data = adapter.data(3)
        whole = adapter.run(adapter.make(), data, [])
        for cuts in ([1], [5, 6, 7, 2000], list(range(0, 6000, 333))):
            assert _close(adapter.run(adapter.make(), data, cuts), whole)


class TestStreamChunking:
    @settings(max_examples=25, deadline=None)
    @given(cuts=st.lists(st.integers(min_value=1, max_value=5999), max_size=12))
    def test_any_cuts(self, cuts):
        for adapter in ADAPTERS:
            if adapter.chunked:
                data = adapter.data(4)
                whole = adapter.run(adapter.make(), data, [])
                assert _close(adapter.run(adapter.make(), data, cuts), whole), adapter.name

    def test_replay_chunk_size_does_not_change_the_stream(self, samples_dir):
        rec = samples_dir / "ptb" / "S0001"
        a = np.concatenate([c.samples for c in ReplaySource([rec], chunk_s=0.01).chunks()], 1)
        b = np.concatenate([c.samples for c in ReplaySource([rec], chunk_s=3.3).chunks()], 1)
        assert np.array_equal(a, b)
