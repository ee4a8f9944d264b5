"""Alerts: one small state machine per class turns per-frame decisions into events.

Per class (sinus rhythm, the ``normal_code``, is tracked by nobody: never alerted):

- **onset** when the class has been positive on ``confirm`` consecutive good
  frames and is not already standing; no repeated alert while it stands;
- **cleared** on the first good frame that says negative while it stands.

What is *not* evidence:

- a frame that failed quality (:meth:`AlertTracker.skip`): it neither clears a
  standing finding, nor advances or breaks an onset streak; the state is held
  until a good frame says otherwise;
- the end of the stream (:meth:`AlertTracker.close`): a standing finding was
  not seen to go away, so no ``cleared`` is invented; ``close`` returns the
  codes still standing (the agent reports them in its offline status).

Findings of one frame that change together come out as one event with
several findings (one ``onset`` and/or one ``cleared`` per frame).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.classify import Classification
from edge.errors import check_int, invalid
from edge.framer import Frame

ONSET, CLEARED = "onset", "cleared"


@dataclass(frozen=True)
class AlertEvent:
    """A change of findings on one frame: ``event`` is ``onset`` or ``cleared``."""

    event: str
    codes: tuple[str, ...]
    scores: tuple[float, ...]
    thresholds: tuple[float, ...]
    frame: Frame


class AlertTracker:
    """Per-class onset/cleared state machines with an onset debounce of ``confirm`` frames."""

    def __init__(self, codes: tuple[str, ...], normal_code: str | None, confirm: int = 1) -> None:
        self.codes = tuple(codes)
        if len(set(self.codes)) != len(self.codes) or not self.codes:
            raise invalid("codes", "distinct class codes", codes)
        self.normal_code = normal_code
        self.confirm = check_int("confirm", confirm, min_value=1)
        self._tracked = np.array([c != normal_code for c in self.codes])
        self.reset()

    def reset(self) -> None:
        """Forget everything: no finding standing, no streak."""
        self._streak = np.zeros(len(self.codes), dtype=np.int64)
        self._standing = np.zeros(len(self.codes), dtype=bool)

    @property
    def standing(self) -> tuple[str, ...]:
        """Codes currently alerted (onset sent, not cleared)."""
        return tuple(c for c, s in zip(self.codes, self._standing) if s)

    def update(self, classification: Classification, frame: Frame) -> list[AlertEvent]:
        """Feed one good frame's decisions; return the events it causes (0, 1 or 2)."""
        if tuple(classification.codes) != self.codes:
            raise invalid("classification.codes", f"the tracker's codes {self.codes}", None)
        pos = np.asarray(classification.positive, dtype=bool) & self._tracked
        self._streak = np.where(pos, self._streak + 1, 0)
        onset = pos & ~self._standing & (self._streak >= self.confirm)
        cleared = self._standing & ~pos & self._tracked
        self._standing = (self._standing | onset) & ~cleared
        out = []
        for kind, mask in ((CLEARED, cleared), (ONSET, onset)):
            if mask.any():
                idx = np.flatnonzero(mask)
                out.append(
                    AlertEvent(
                        kind,
                        tuple(self.codes[i] for i in idx),
                        tuple(float(classification.scores[i]) for i in idx),
                        tuple(float(classification.thresholds[i]) for i in idx),
                        frame,
                    )
                )
        return out

    def skip(self, frame: Frame | None = None) -> list[AlertEvent]:
        """A frame failed quality: hold every state as it is (no event)."""
        return []

    def close(self) -> tuple[str, ...]:
        """End of stream: no event is invented; return the codes still standing, then reset."""
        standing = self.standing
        self.reset()
        return standing
