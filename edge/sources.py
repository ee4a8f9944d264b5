"""Sample sources: where live samples come from (serial device or WFDB replay).

Every source yields :class:`Chunk` objects through the :class:`SampleSource`
protocol; the rest of the stream does not know which source it reads.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from edge.errors import check_int, check_positive, invalid

N_LEADS = 12
LEADS: tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")


@dataclass(frozen=True)
class Chunk:
    """A run of consecutive samples from one source.

    ``samples`` is (n_leads, n_samples) float32 in mV, leads in :data:`LEADS`
    order, at the source's rate ``fs`` (not yet resampled). ``start_sample``
    counts samples at ``fs`` from the start of the stream. ``gap_before`` is
    the number of samples known lost just before this chunk (a serial sequence
    gap): never silently spliced, the framer turns it into a quality event.
    ``lead_off`` is (n_leads,) bool, True where the front end reported the
    electrode off during this chunk (None when the source cannot tell).
    ``received_at`` is ``time.monotonic()`` when the last sample arrived.
    ``samples_left``: how many samples of the record follow this chunk, where
    the source knows (a replay; 0 on the last chunk), None for a live stream.
    """

    samples: np.ndarray
    fs: float
    start_sample: int
    record: str | None = None
    gap_before: int = 0
    lead_off: np.ndarray | None = None
    received_at: float = 0.0
    end_of_record: bool = False
    samples_left: int | None = None
    meta: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        s = self.samples
        if not isinstance(s, np.ndarray) or s.ndim != 2 or s.shape[0] != N_LEADS:
            raise invalid("samples", f"an array of shape ({N_LEADS}, n)", getattr(s, "shape", s))
        check_positive("fs", self.fs)
        check_int("start_sample", self.start_sample, min_value=0)
        check_int("gap_before", self.gap_before, min_value=0)
        if self.samples_left is not None:
            check_int("samples_left", self.samples_left, min_value=0)
        if self.lead_off is not None and np.shape(self.lead_off) != (N_LEADS,):
            raise invalid(
                "lead_off", f"a bool array of shape ({N_LEADS},)", np.shape(self.lead_off)
            )

    @property
    def n_samples(self) -> int:
        return int(self.samples.shape[1])


@runtime_checkable
class SampleSource(Protocol):
    """Anything that yields chunks of 12-lead samples, until exhausted or closed."""

    fs: float

    def chunks(self) -> Iterator[Chunk]:
        """Yield chunks in stream order; return when the source ends."""
        ...

    def close(self) -> None:
        """Release the device or files; safe to call twice."""
        ...
