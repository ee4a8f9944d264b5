"""Classification: the onnxruntime extractor, then one dot product per class.

No torch and no sklearn: the extractor is an ONNX graph (int8 by default) and
the heads are the bundle's numpy arrays. The trainer's evaluation goes
through this same class, so the edge and the reported figures agree.

**Incremental by reuse.** A frame's features are the mean of its windows'
pooled features, and a window's model input is a function of its own
samples alone (:func:`edge.dsp.model_window`). In a stream, each 10 s hop of
a 30 s frame brings one new window; the other two are the previous frame's,
with the same samples. :meth:`Classifier.frame_features` keeps the pooled
features of the last ``cache_windows`` windows, found again by their samples
(:class:`edge._reuse.ContentCache`: the key is the content, not a position),
and computes (resampling, normalisation, extractor, pooling) only the
windows it has not seen. Scores with and without the cache are bit for bit
the same (``tests/edge/test_incremental.py``): the pooled rows of a window
are the same numbers, combined in the same order. That a window's output
does not depend on the other windows of its onnxruntime batch (a hop runs
one, a full pass three) is what the CPU kernels do, and is tested for both
models, int8 and fp32, on whatever machine runs the tests and
``python -m benchmarks``. The cache holds about 2 MB (8 windows of
12 x 5000 float32).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from edge._reuse import ContentCache
from edge.bundle import Bundle
from edge.dsp import model_window, model_windows, window_spans
from edge.errors import BundleError, check_choice, check_int, invalid


def pool_features(feature_map: np.ndarray) -> np.ndarray:
    """(n_windows, C, T) extractor output of one frame -> (2C,) float64 frame features.

    Per window the mean and the max over time (as ``trainer.models.global_pool``),
    then the mean over the frame's windows. Exact on any CPU: the int8
    graph's outputs are float32 multiples of one scale, so their float64 sum
    over T (at most a few thousand terms) has no rounding, in any order.
    """
    return combine_windows(pool_windows(feature_map))


def pool_windows(feature_map: np.ndarray) -> np.ndarray:
    """(n_windows, C, T) extractor output -> (n_windows, 2C) float64: each window's mean, max.

    Each row depends on its own window only (a reduction over T per row).
    """
    f = np.asarray(feature_map, dtype=np.float64)
    if f.ndim != 3 or f.shape[0] < 1:
        raise invalid("feature_map", "an array of shape (n_windows, C, T)", f.shape)
    return np.concatenate([f.sum(axis=2) / f.shape[2], f.max(axis=2)], axis=1)


def combine_windows(rows: np.ndarray | list[np.ndarray]) -> np.ndarray:
    """Per-window pooled rows of one frame, in window order -> their mean (2C,) float64."""
    total = np.array(rows[0], dtype=np.float64)
    for row in rows[1:]:  # a fixed order: the same sum everywhere
        total += row
    return total / len(rows)


@dataclass(frozen=True)
class Classification:
    """Scores of one frame per class and which pass their threshold.

    ``scores`` and ``thresholds`` are calibrated probabilities when the bundle's
    head has a calibration (raw decision values otherwise); ``positive`` is
    decided on the raw decision values, exactly.
    """

    codes: tuple[str, ...]
    scores: np.ndarray  # (K,)
    thresholds: np.ndarray  # (K,)
    positive: np.ndarray  # (K,) bool

    def scores_by_code(self) -> dict[str, float]:
        return {c: float(s) for c, s in zip(self.codes, self.scores)}

    def positive_codes(self) -> tuple[str, ...]:
        return tuple(c for c, p in zip(self.codes, self.positive) if p)


class Classifier:
    """One onnxruntime session over a bundle's extractor plus its linear heads."""

    def __init__(
        self, bundle: Bundle, precision: str = "int8", threads: int = 1, cache_windows: int = 8
    ) -> None:
        self.bundle = bundle
        self.precision = check_choice("precision", precision, ("int8", "fp32"))
        check_int("threads", threads, min_value=1)
        # 8 windows: the last two frames' three (a hop of 5 s reuses windows of the
        # frame before the last); 0 turns the reuse off.
        self.cache_windows = check_int("cache_windows", cache_windows, min_value=0)
        self._cache = ContentCache(self.cache_windows)  # a window's samples -> its pooled row
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        path = bundle.extractor_path(precision)
        try:
            self.session = ort.InferenceSession(
                str(path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise BundleError(f"onnxruntime cannot load {path.name}: {exc}") from exc
        m = bundle.manifest
        self.input_name, self.output_name = m.input_name, m.output_name
        self.n_samples = m.dsp.window_samples
        self.pools_in_graph = m.pools_in_graph
        self.head = bundle.head
        self.codes = m.codes
        thr = self.head.thresholds.astype(np.float64)
        self._shown_thresholds = self.head.probabilities(thr) if self.head.calibrated else thr

    def run(self, windows: np.ndarray) -> np.ndarray:
        """(n, 12, window_samples) normalised windows -> the extractor's raw output."""
        if windows.ndim != 3 or windows.shape[1:] != (12, self.n_samples):
            raise invalid("windows", f"an array of shape (n, 12, {self.n_samples})", windows.shape)
        x = np.ascontiguousarray(windows, dtype=np.float32)
        (f,) = self.session.run([self.output_name], {self.input_name: x})
        return f

    def features(self, windows: np.ndarray) -> np.ndarray:
        """The (n_windows, 12, window_samples) model input of one frame -> (n_features,)."""
        out = self.run(windows)
        if self.pools_in_graph:
            return out.astype(np.float64).mean(axis=0)
        return pool_features(out)

    def window_rows(self, windows: np.ndarray) -> np.ndarray:
        """(n, 12, window_samples) model inputs -> (n, n_features) float64, one row per window.

        Format 2: each window's pooled features (:func:`pool_windows`); format 1:
        the graph's pooled output.
        """
        out = self.run(windows)
        return out.astype(np.float64) if self.pools_in_graph else pool_windows(out)

    def frame_features(self, samples: np.ndarray) -> np.ndarray:
        """(n_leads, n) preprocessed samples of one frame at ``fs`` -> (n_features,) float64.

        The same numbers as ``features(model_windows(samples))``; windows seen
        in the last ``cache_windows`` are not computed again (module docstring).
        """
        cfg = self.bundle.manifest.dsp
        if self.cache_windows == 0 or self.pools_in_graph:
            return self.features(model_windows(samples, cfg))
        if samples.shape[1] > cfg.frame_samples:
            samples = samples[:, samples.shape[1] - cfg.frame_samples :]
        ro = np.asarray(samples, dtype=np.float32)
        parts = [(ro[:, a:b],) for a, b in window_spans(ro.shape[1], cfg)]
        found = [self._cache.find(p) for p in parts]
        rows = [row for _, row in found]
        todo = [i for i, row in enumerate(rows) if row is None]
        if todo:
            new = self.window_rows(np.stack([model_window(parts[i][0], cfg) for i in todo]))
            for i, row in zip(todo, new):
                rows[i] = row
                self._cache.put(found[i][0], row)
        return combine_windows(rows)

    @property
    def cache_hits(self) -> int:
        return self._cache.hits

    @property
    def cache_misses(self) -> int:
        return self._cache.misses

    def reset(self) -> None:
        """Forget the cached windows (results do not depend on it: only the time does)."""
        self._cache.clear()

    def classify_frame(self, samples: np.ndarray) -> Classification:
        """(n_leads, n) preprocessed samples of one frame (``Frame.samples``) -> its classes."""
        raw = self.head.scores(self.frame_features(samples)[None])[0]
        return self.classification(raw)

    def scores(self, frames: list[np.ndarray] | np.ndarray) -> np.ndarray:
        """Model inputs of n frames, each (n_windows, 12, window_samples) -> (n, K) raw scores."""
        feats = np.stack([self.features(w) for w in frames])
        return self.head.scores(feats)

    def classification(self, raw: np.ndarray) -> Classification:
        """(K,) decision values -> a :class:`Classification` (probabilities when calibrated)."""
        shown = self.head.probabilities(raw) if self.head.calibrated else raw
        return Classification(
            self.codes, shown, self._shown_thresholds, raw >= self.head.thresholds
        )

    def classify(self, windows: np.ndarray) -> Classification:
        """The model input of one frame (:meth:`edge.framer.Frame.model_input`) -> its classes."""
        return self.classification(self.scores([windows])[0])
