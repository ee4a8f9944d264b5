"""The payload schemas reject impossible timestamps and take the optional ``frame.filled``."""

from __future__ import annotations

import pytest

from bridge.schema import FrameSpan, PayloadError, parse, sample_alert


def _alert_with(**frame):
    payload = sample_alert().to_json()
    payload["frame"] = {**payload["frame"], **frame}
    return payload


class TestTimestamps:
    @pytest.mark.parametrize(
        "when",
        [
            "2026-13-45T99:99:99.000Z",  # month, day, hour, minute, second all impossible
            "2026-00-10T00:00:00.000Z",
            "2026-02-30T00:00:00.000Z",  # a day February does not have
            "2026-04-31T12:00:00.000Z",
            "2026-01-01T24:00:00.000Z",
        ],
    )
    def test_impossible_times_are_rejected(self, when):
        with pytest.raises(PayloadError, match="start_utc"):
            parse(_alert_with(start_utc=when))
        payload = sample_alert().to_json()
        payload["emitted_at"] = when
        with pytest.raises(PayloadError, match="emitted_at"):
            parse(payload)

    @pytest.mark.parametrize(
        "when", ["2028-02-29T23:59:59.999Z", "2016-12-31T23:59:60.5Z", "2026-01-01T00:00:00+00:00"]
    )
    def test_real_times_are_accepted(self, when):
        assert parse(_alert_with(start_utc=when)).frame.start_utc == when


class TestFilled:
    def test_filled_round_trips_and_is_checked(self):
        filled = {"samples": 3, "runs": [[100, 1], [900, 2]]}
        alert = parse(_alert_with(filled=filled))
        assert alert.frame.filled == filled
        assert parse(alert.to_json()).frame.filled == filled
        assert "filled" not in sample_alert().to_json()["frame"]  # absent when nothing filled
        for bad in ({"samples": -1, "runs": []}, {"samples": 1, "runs": [[5, 0]]},
                    {"samples": 1, "runs": [[5, 1, 2]]}, {"samples": 1}):  # fmt: skip
            with pytest.raises(PayloadError, match="filled"):
                FrameSpan(0, 10, "2026-01-01T00:00:00.000Z", "2026-01-01T00:00:01.000Z", 500.0,
                          filled=bad)  # fmt: skip
