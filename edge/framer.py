"""Framing: a ring buffer of preprocessed samples cut into 15000-sample frames every hop.

Frames are emitted every ``hop_samples`` new samples and cover the most
recent ``frame_samples`` samples (fewer at the start of a stream: the frame is
then zero-padded at the end by :func:`edge.dsp.frame_for_model`). At the end
of a stream :meth:`Framer.flush` emits the last partial hop, if any. The
trainer cuts records into frames with :func:`record_frames`, which is this
same class, so the edge and the trainer see the same frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.dsp import FRAME_SAMPLES, N_LEADS, DspConfig, frame_for_model
from edge.errors import check_int, invalid


@dataclass(frozen=True)
class Frame:
    """Up to ``frame_samples`` consecutive preprocessed samples at 500 Hz.

    ``samples`` is (n_leads, n) float32 mV (band-passed, not normalised),
    ``start_sample``/``end_sample`` index the 500 Hz stream (end exclusive).
    """

    samples: np.ndarray
    start_sample: int
    end_sample: int

    def __post_init__(self) -> None:
        if self.samples.ndim != 2 or self.samples.shape[1] != self.end_sample - self.start_sample:
            raise invalid("samples", "(n_leads, end_sample - start_sample)", self.samples.shape)

    @property
    def n_valid(self) -> int:
        return int(self.samples.shape[1])

    def model_input(self, config: DspConfig | None = None) -> np.ndarray:
        """The (n_windows, n_leads, window_samples) float32 model input (``edge.dsp``)."""
        return frame_for_model(self.samples, config)


class Framer:
    """Push preprocessed chunks, get frames every ``hop_samples``."""

    def __init__(
        self, hop_samples: int = 5000, frame_samples: int = FRAME_SAMPLES, n_leads: int = N_LEADS
    ) -> None:
        self.size = check_int("frame_samples", frame_samples, min_value=1)
        self.hop = check_int("hop_samples", hop_samples, min_value=1)
        if self.hop > self.size:
            raise invalid("hop_samples", f"at most frame_samples ({self.size})", hop_samples)
        self.n_leads = n_leads
        self.reset()

    def reset(self, start_sample: int = 0) -> None:
        """Forget the buffer; the next sample pushed has index ``start_sample``."""
        # Twice the frame: samples are appended at _end; when it reaches the far side,
        # the last frame's worth moves to the front (each sample is copied about twice).
        self._store = np.zeros((self.n_leads, 2 * self.size), dtype=np.float32)
        self._end = 0  # _store[:, :_end] holds samples; the frame is the last `size` of them
        self._next = start_sample  # stream index of the next sample
        self._since_emit = 0

    @property
    def next_sample(self) -> int:
        """Stream index of the next sample to be pushed."""
        return self._next

    @property
    def until_frame(self) -> int:
        """Samples still to come before the next frame is emitted."""
        return self.hop - self._since_emit

    def push(self, x: np.ndarray) -> list[Frame]:
        """Append (n_leads, n) samples; return the frames completed by them."""
        if x.ndim != 2 or x.shape[0] != self.n_leads:
            raise invalid("chunk", f"an array of shape ({self.n_leads}, n)", x.shape)
        out: list[Frame] = []
        i = 0
        while i < x.shape[1]:
            take = min(self.hop - self._since_emit, x.shape[1] - i)
            self._append(x[:, i : i + take])
            self._since_emit += take
            i += take
            if self._since_emit == self.hop:
                out.append(self._emit())
        return out

    def flush(self) -> list[Frame]:
        """At the end of a stream: the frame holding the last partial hop, if any."""
        return [self._emit()] if self._since_emit > 0 else []

    def _append(self, x: np.ndarray) -> None:
        n = x.shape[1]  # at most one hop <= size
        if self._end + n > self._store.shape[1]:
            keep = min(self._end, self.size)
            self._store[:, :keep] = self._store[:, self._end - keep : self._end]
            self._end = keep
        self._store[:, self._end : self._end + n] = x
        self._end += n
        self._next += n

    def _emit(self) -> Frame:
        self._since_emit = 0
        n = min(self._end, self.size)
        return Frame(self._store[:, self._end - n : self._end].copy(), self._next - n, self._next)


def record_frames(
    x: np.ndarray, hop_samples: int = 5000, frame_samples: int = FRAME_SAMPLES
) -> list[Frame]:
    """All frames the edge would emit for a whole preprocessed record, flush included."""
    framer = Framer(hop_samples, frame_samples, n_leads=x.shape[0])
    return framer.push(x) + framer.flush()
