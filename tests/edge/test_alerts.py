"""edge.alerts: onset after confirm frames, cleared on a negative, sinus never, quality holds."""

from __future__ import annotations

import numpy as np
import pytest

from edge.alerts import AlertTracker
from edge.classify import Classification
from edge.errors import ConfigError
from edge.framer import Frame

CODES = ("164889003", "426783006", "59118001")
NORMAL = "426783006"
FRAME = Frame(np.zeros((12, 10), np.float32), 0, 10)


def _c(*positive: bool) -> Classification:
    pos = np.array(positive, bool)
    return Classification(CODES, np.where(pos, 1.0, -1.0).astype(np.float32), np.zeros(3), pos)


def _run(tracker, seq):
    return [[(e.event, e.codes) for e in tracker.update(_c(*p), FRAME)] for p in seq]


class TestAlertTracker:
    def test_onset_then_cleared_no_repeat(self):
        t = AlertTracker(CODES, NORMAL)
        out = _run(t, [(1, 0, 0), (1, 0, 0), (1, 0, 1), (0, 0, 1), (0, 0, 0)])
        assert out == [
            [("onset", ("164889003",))],
            [],
            [("onset", ("59118001",))],
            [("cleared", ("164889003",))],
            [("cleared", ("59118001",))],
        ]

    def test_sinus_is_never_alerted(self):
        t = AlertTracker(CODES, NORMAL)
        assert _run(t, [(0, 1, 0), (0, 1, 0), (0, 0, 0)]) == [[], [], []]

    def test_confirm(self):
        t = AlertTracker(CODES, NORMAL, confirm=3)
        out = _run(t, [(1, 0, 0), (1, 0, 0), (0, 0, 0), (1, 0, 0), (1, 0, 0), (1, 0, 0)])
        assert out == [[], [], [], [], [], [("onset", ("164889003",))]]

    def test_same_frame_changes_grouped(self):
        t = AlertTracker(CODES, NORMAL)
        _run(t, [(1, 0, 0)])
        (cleared, onset) = t.update(_c(0, 0, 1), FRAME)
        assert (cleared.event, cleared.codes, onset.event, onset.codes) == (
            "cleared",
            ("164889003",),
            "onset",
            ("59118001",),
        )
        assert onset.scores == (1.0,) and onset.thresholds == (0.0,) and onset.frame is FRAME

    def test_quality_failure_holds_state(self):
        t = AlertTracker(CODES, NORMAL, confirm=2)
        assert _run(t, [(1, 0, 0)]) == [[]]
        assert t.skip(FRAME) == []  # a noisy frame: the streak is neither advanced nor broken
        assert _run(t, [(1, 0, 0)]) == [[("onset", ("164889003",))]]
        assert t.skip(FRAME) == [] and t.standing == ("164889003",)  # not cleared by noise

    def test_close_invents_nothing(self):
        t = AlertTracker(CODES, NORMAL)
        _run(t, [(1, 0, 1)])
        assert t.close() == ("164889003", "59118001")
        assert t.standing == ()
        assert _run(t, [(1, 0, 0)]) == [[("onset", ("164889003",))]]

    def test_bad_input(self):
        with pytest.raises(ConfigError, match="confirm"):
            AlertTracker(CODES, NORMAL, confirm=0)
        with pytest.raises(ConfigError, match="codes"):
            AlertTracker(("a", "a"), None)
        t = AlertTracker(CODES[:2], NORMAL)
        with pytest.raises(ConfigError):
            t.update(_c(1, 0, 0), FRAME)
