from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge import topics
from bridge.listen import Listener
from bridge.schema import (
    Alert,
    Finding,
    FrameScores,
    FrameSpan,
    PayloadError,
    Quality,
    QualityEvent,
    StatusMessage,
    encode,
    parse,
    sample_alarm,
    sample_alert,
    validate,
)
from edge.errors import ConfigError

SPAN = FrameSpan(0, 15000, "2026-01-01T00:00:00.000Z", "2026-01-01T00:00:30.000Z", 500)


class TestPayloads:
    def test_alert_round_trip(self) -> None:
        alert = sample_alert("bed-1")
        data = alert.to_json()
        assert data["schema"] == "ecg-edge/alert/2"
        assert (data["kind"], data["priority"]) == ("diagnosis", "low")
        assert validate(data) == "alert"
        assert Alert.from_json(json.loads(encode(data))) == alert
        assert parse(encode(data)) == alert

    @pytest.mark.parametrize("event", ["onset", "cleared"])
    def test_alarm_round_trip(self, event: str) -> None:
        alarm = sample_alarm("bed-1", event=event)
        data = alarm.to_json()
        assert data["kind"] == "physiological" and data["priority"] == "high"
        assert data["findings"] == [] and data["onset_sample"] == 10500
        assert (data["cleared_sample"] is None) == (event == "onset")
        assert parse(encode(data)) == alarm

    def test_version_1_alert_still_received(self) -> None:
        data = sample_alert("bed-1").to_json()
        data["schema"] = "ecg-edge/alert/1"
        for key in ("kind", "priority", "condition", "reason", "onset_sample", "cleared_sample"):
            del data[key]
        del data["heart_rate"]
        alert = parse(encode(data))
        assert (alert.kind, alert.priority, alert.onset_sample) == ("diagnosis", "low", 15000)
        assert alert.to_json()["schema"] == "ecg-edge/alert/2"
        data["priority"] = "high"  # a version 2 field in a version 1 payload is refused
        with pytest.raises(PayloadError, match="priority"):
            validate(data)

    def test_version_2_rules(self) -> None:
        alarm = sample_alarm().to_json()
        for key, value, where in (
            ("priority", "urgent", "priority"),
            ("kind", "alarm", "kind"),
            ("heart_rate", {"bpm": -3, "method": "x"}, "heart_rate/bpm"),
            ("cleared_sample", 3, "cleared_sample"),  # an onset has none
            ("strip", [1, 2], "strip"),
        ):
            with pytest.raises(PayloadError, match=where):
                validate({**alarm, key: value})
        diagnosis = sample_alert().to_json()
        with pytest.raises(PayloadError, match="findings"):
            validate({**diagnosis, "findings": []})  # a diagnosis names what it found
        ok = {**alarm, "strip": {"lead": "II"}, "measurements": {"qrs_ms": 92}, "leads": ["I"]}
        assert parse(encode(ok)).strip == {"lead": "II"}

    def test_alert_ids_unique_and_kept(self) -> None:
        a, b = sample_alert(), sample_alert()
        assert a.alert_id != b.alert_id
        assert Alert.from_json(a.to_json()).alert_id == a.alert_id

    @pytest.mark.parametrize(
        "message",
        [
            StatusMessage("bed-1", "online", bundle_sha256="a" * 64, extra={"sent": 3}),
            QualityEvent("bed-1", SPAN, Quality(False, ("lead off",), ("V1",)), record="A0001"),
            FrameScores("bed-1", SPAN, {"164889003": 1.5, "426783006": -0.2}, ("164889003",)),
        ],
    )
    def test_other_payloads_round_trip(self, message: object) -> None:
        data = message.to_json()  # type: ignore[attr-defined]
        assert parse(encode(data)) == message

    def test_bad_field_is_named(self) -> None:
        data = sample_alert().to_json()
        data["findings"][0]["score"] = "high"
        with pytest.raises(PayloadError, match="findings/0/score"):
            validate(data)
        data = sample_alert().to_json()
        del data["alert_id"]
        with pytest.raises(PayloadError, match="alert_id"):
            validate(data)

    def test_dataclasses_validate_on_construction(self) -> None:
        with pytest.raises(PayloadError, match="code"):
            Finding("AF", "AF", "atrial fibrillation", 1.0, 0.0)
        with pytest.raises(PayloadError, match="finite"):
            Finding("164889003", "AF", "atrial fibrillation", float("nan"), 0.0)
        with pytest.raises(PayloadError, match="end_sample"):
            FrameSpan(10, 10, SPAN.start_utc, SPAN.end_utc, 500)
        with pytest.raises(PayloadError, match="bad_leads"):
            Quality(False, (), ("V7",))
        with pytest.raises(PayloadError, match="event"):
            Alert("bed-1", "maybe", sample_alert().findings, SPAN, Quality(True), "0" * 64, 1.0)

    def test_numpy_scalars_become_python_numbers(self) -> None:
        np = pytest.importorskip("numpy")
        f = Finding("164889003", "AF", "atrial fibrillation", np.float32(1.5), np.float64(0.1))
        span = FrameSpan(
            np.int64(0), np.int64(15000), SPAN.start_utc, SPAN.end_utc, np.float32(500)
        )
        assert type(f.score) is float and type(span.end_sample) is int
        encode(f.to_json())

    def test_unknown_schema(self) -> None:
        with pytest.raises(PayloadError, match="schema"):
            validate({"schema": "ecg-edge/alert/3"})
        with pytest.raises(PayloadError, match="JSON"):
            parse(b"{not json")

    def test_topics(self) -> None:
        assert topics.alerts_topic("bed-1") == "ecg/bed-1/alerts"
        assert topics.parse_topic("ecg/bed-1/quality") == ("bed-1", "quality")
        assert topics.parse_topic("ecg/bed-1/other") is None
        for bad in ("a/b", "+", "#", "", "x y"):
            with pytest.raises(ConfigError):
                topics.alerts_topic(bad)


def _mutations() -> st.SearchStrategy[bytes]:
    good = sample_alert("bed-1").to_json()
    keys = sorted(good)
    json_values = st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)  # JSON has no inf
        | st.text(),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
        max_leaves=8,
    )
    replace = st.tuples(st.sampled_from(keys), json_values).map(
        lambda kv: encode({**good, kv[0]: kv[1]})
    )
    drop = st.sampled_from(keys).map(lambda k: encode({x: v for x, v in good.items() if x != k}))
    garbage = st.binary(max_size=200)
    truncated = st.integers(0, len(encode(good)) - 1).map(lambda n: encode(good)[:n])
    return replace | drop | garbage | truncated


class TestListenerFuzz:
    @settings(max_examples=300, deadline=None)
    @given(
        raw=_mutations(),
        topic=st.sampled_from(
            ["ecg/bed-1/alerts", "ecg/bed-1/status", "ecg/x/alerts", "junk", "ecg/bed-1/frames"]
        ),
    )
    def test_never_raises(self, raw: bytes, topic: str) -> None:
        listener = Listener()
        item = listener.handle(topic, raw)
        if item is None:
            assert listener.counts["rejected"] + listener.counts["duplicates"] <= 1
        else:  # a mutation may still be valid (e.g. another valid record name)
            assert item.kind == "alert" and topic == "ecg/bed-1/alerts"

    def test_dedup_and_status_changes(self) -> None:
        listener = Listener(dedup_size=2)
        a = encode(sample_alert("bed-1").to_json())
        assert listener.handle("ecg/bed-1/alerts", a) is not None
        assert listener.handle("ecg/bed-1/alerts", a) is None
        assert listener.counts["duplicates"] == 1
        on = encode(StatusMessage("bed-1", "online").to_json())
        hb = encode(StatusMessage("bed-1", "heartbeat").to_json())
        off = encode(StatusMessage("bed-1", "offline").to_json())
        assert listener.handle("ecg/bed-1/status", on) is not None
        assert listener.handle("ecg/bed-1/status", hb) is None
        assert listener.handle("ecg/bed-1/status", off) is not None
        assert listener.handle("ecg/bed-2/alerts", a) is None  # device mismatch
        assert "does not match" in listener.last_reason


class TestListenerLines:
    def test_priority_shown(self) -> None:
        from bridge.listen import format_line

        listener = Listener()
        alarm = listener.handle("ecg/bed-1/alerts", encode(sample_alarm("bed-1").to_json()))
        line = format_line(alarm)
        assert "HIGH PHYSIOLOGICAL ONSET asystole: no beat for 5.0 s" in line
        assert "at sample 10500" in line
        alert = listener.handle("ecg/bed-1/alerts", encode(sample_alert("bed-1").to_json()))
        assert " LOW DIAGNOSIS ONSET AF (164889003" in format_line(alert)
