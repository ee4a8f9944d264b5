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


@dataclass(frozen=True)
class Classification:
    """Scores of one frame: decision values per class and which pass their threshold."""

    codes: tuple[str, ...]
    scores: np.ndarray  # (K,) float32
    thresholds: np.ndarray  # (K,) float32
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
        self.n_samples = m.dsp.frame_samples
        self.head = bundle.head
        self.codes = m.codes

    def features(self, frames: np.ndarray) -> np.ndarray:
        """(n, 12, frame_samples) float32 normalised frames -> (n, n_features) float32."""
        if frames.ndim != 3 or frames.shape[1:] != (12, self.n_samples):
            raise invalid("frames", f"an array of shape (n, 12, {self.n_samples})", frames.shape)
        x = np.ascontiguousarray(frames, dtype=np.float32)
        (f,) = self.session.run([self.output_name], {self.input_name: x})
        return f

    def scores(self, frames: np.ndarray) -> np.ndarray:
        """(n, 12, frame_samples) -> (n, K) decision values."""
        return self.head.scores(self.features(frames))

    def classify(self, frame: np.ndarray) -> Classification:
        """One (12, frame_samples) normalised frame -> its :class:`Classification`."""
        s = self.scores(frame[None])[0]
        return Classification(self.codes, s, self.head.thresholds, s >= self.head.thresholds)
