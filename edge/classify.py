"""Classification: the onnxruntime extractor, then one dot product per class.

No torch and no sklearn: the extractor is an ONNX graph (int8 by default) and
the heads are the bundle's numpy arrays. The trainer's evaluation goes
through this same class, so the edge and the reported figures agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from edge.bundle import Bundle
from edge.errors import BundleError, check_choice, check_int, invalid


def pool_features(feature_map: np.ndarray) -> np.ndarray:
    """(n_windows, C, T) extractor output of one frame -> (2C,) float64 frame features.

    Per window the mean and the max over time (as ``trainer.models.global_pool``),
    then the mean over the frame's windows. Exact on any CPU: the int8
    graph's outputs are float32 multiples of one scale, so their float64 sum
    over T (at most a few thousand terms) has no rounding, in any order.
    """
    f = np.asarray(feature_map, dtype=np.float64)
    if f.ndim != 3 or f.shape[0] < 1:
        raise invalid("feature_map", "an array of shape (n_windows, C, T)", f.shape)
    per_window = np.concatenate([f.sum(axis=2) / f.shape[2], f.max(axis=2)], axis=1)
    total = per_window[0].copy()
    for row in per_window[1:]:  # a fixed order: the same sum everywhere
        total += row
    return total / f.shape[0]


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

    def __init__(self, bundle: Bundle, precision: str = "int8", threads: int = 1) -> None:
        self.bundle = bundle
        self.precision = check_choice("precision", precision, ("int8", "fp32"))
        check_int("threads", threads, min_value=1)
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
