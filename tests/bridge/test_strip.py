"""The alert's strip: its encoding, its retained topic, its FHIR Observation, on a real broker."""

from __future__ import annotations

import json
import random
import time

import pytest

from bridge.errors import PublishError
from bridge.forward import FhirTarget, Forwarder
from bridge.publish import Publisher
from bridge.schema import LEADS, PayloadError, encode, sample_alarm, sample_alert
from bridge.strip import (
    Strip,
    StripShelf,
    alert_summary,
    decode_leads,
    encode_leads,
    fetch_strip,
    parse_strip_topic,
    strip_payload,
    strip_topic,
)
from bridge.testing import FhirStandIn


def _strip_for(alert, n: int = 5000, seed: int = 0) -> Strip:  # type: ignore[no-untyped-def]
    rng = random.Random(seed)
    leads = []
    for k in range(len(LEADS)):
        v, lead = 0, []
        for _ in range(n):
            v = max(-32768, min(32767, v + rng.randint(-40, 40) + (k - 6)))
            lead.append(v)
        leads.append(lead)
    return Strip(
        alert.alert_id, alert.device_id, 500.0, 1000, alert.frame.start_utc, LEADS, leads,
        alert=alert_summary(alert),
    )  # fmt: skip


def _ref(alert, strip: Strip):  # type: ignore[no-untyped-def]
    import dataclasses

    return dataclasses.replace(alert, strip=strip.reference())


class TestEncoding:
    def test_round_trip_with_the_int16_extremes(self) -> None:
        leads = [[0, 32767, -32768, 32767, -32768, 0, 5], [-1, -1, 40000, -40000, 7, 7, 7]]
        got = decode_leads(encode_leads(leads), 2, 7)
        assert got[0] == leads[0]
        assert got[1] == [-1, -1, 32767, -32768, 7, 7, 7]  # clipped to int16

    def test_a_12_lead_10_s_strip_is_compact(self) -> None:
        s = _strip_for(sample_alert("bed-1"))
        raw = encode(s.to_json())
        json_ints = len(json.dumps([list(x) for x in s.samples]))
        assert len(raw) < json_ints / 2, (len(raw), json_ints)
        back = Strip.parse(raw)
        assert back == s and back.lead("V6") == s.samples[-1]

    def test_wrong_length_or_garbage_is_refused(self) -> None:
        s = _strip_for(sample_alert("bed-1"), n=100).to_json()
        with pytest.raises(PayloadError, match="bytes, expected"):
            Strip.from_json({**s, "n_samples": 99})
        with pytest.raises(PayloadError, match="data"):
            Strip.from_json({**s, "data": "AAAA"})
        with pytest.raises(PayloadError, match="units"):
            Strip.from_json({**s, "units": "mV"})

    def test_topics(self) -> None:
        assert strip_topic("bed-1", "a" * 32) == "ecg/bed-1/strips/" + "a" * 32
        assert parse_strip_topic("ecg/bed-1/strips/" + "a" * 32) == ("bed-1", "a" * 32)
        assert parse_strip_topic("ecg/bed-1/alerts") is None
        with pytest.raises(PayloadError):
            strip_topic("bed-1", "a/b")

    def test_payload_from_encoded_data_is_validated(self) -> None:
        a = sample_alert("bed-1")
        with pytest.raises(PayloadError, match="start_sample"):
            strip_payload(a.alert_id, "bed-1", 500, -1, 10, a.emitted_at, LEADS, "", {})


class TestShelf:
    def test_keeps_the_last_n_across_a_restart(self, tmp_path) -> None:
        shelf = StripShelf(tmp_path / "spool.db", keep=3)
        assert [shelf.add(f"t{i}") for i in range(3)] == [[], [], []]
        assert shelf.add("t3") == ["t0"]
        shelf.close()
        shelf = StripShelf(tmp_path / "spool.db", keep=3)
        assert shelf.add("t4") == ["t1"] and len(shelf) == 3


class TestRetainedStrips:
    def test_a_subscriber_that_was_away_gets_the_strip_by_alert_id(self, broker, tmp_path) -> None:
        alerts = [sample_alert("bed-9") for _ in range(3)]
        strips = [_strip_for(a, n=500, seed=i) for i, a in enumerate(alerts)]
        pub = Publisher(broker.url, "bed-9", tmp_path / "spool.db", keep_strips=2).start()
        for a, s in zip(alerts, strips):
            pub.publish_alert(_ref(a, s))
            pub.publish_strip(s.to_json())
        assert pub.flush(10)
        pub.close()
        # nobody was subscribed; afterwards, by alert id
        got = fetch_strip(broker.url, alerts[2].alert_id, timeout_s=5)
        assert got == strips[2]
        got = fetch_strip(broker.url, alerts[1].alert_id, device="bed-9", timeout_s=5)
        assert got.samples == strips[1].samples
        # the oldest is cleared: only the last keep_strips stay on the broker
        with pytest.raises(PublishError, match="No strip"):
            fetch_strip(broker.url, alerts[0].alert_id, timeout_s=1.5)

    def test_the_spool_never_evicts_a_strip(self, tmp_path) -> None:
        pub = Publisher(None, "bed-9", tmp_path / "spool.db", max_spool=2)
        a = sample_alert("bed-9")
        s = _strip_for(a, n=50)
        pub.publish_alert(_ref(a, s))
        pub.publish_strip(s.to_json())
        pub.publish_strip(_strip_for(sample_alert("bed-9"), n=50).to_json())
        assert pub.stats()["pending"] == 3 and pub.stats()["over_bound"] == 1


class TestFhirStrip:
    def test_observation_is_valid_r4_with_one_sampled_data_per_lead(self) -> None:
        from fhir.resources.R4B.observation import Observation

        from bridge.fhir_strip import LEAD_CODES, strip_observation

        for alert in (sample_alert("bed-1"), sample_alarm("bed-1")):
            s = _strip_for(alert, n=1000)
            obs = strip_observation(alert, s)
            model = Observation.model_validate(obs)
            assert model.code.coding[0].code == "131328"
            assert model.code.coding[0].system == "urn:oid:2.16.840.1.113883.6.24"
            assert len(model.component) == 12
            for lead, comp, samples in zip(s.leads, model.component, s.samples):
                assert comp.code.coding[0].code == str(LEAD_CODES[lead])
                sd = comp.valueSampledData
                assert sd.dimensions == 1 and float(sd.period) == 2.0 and float(sd.factor) == 1
                assert [int(v) for v in sd.data.split()] == list(samples)
            assert obs["component"][1]["code"]["coding"][0]["display"] == "MDC_ECG_ELEC_POTL_II"
            assert obs["component"][3]["code"]["coding"][0]["display"] == "MDC_ECG_ELEC_POTL_AVR"
            assert model.effectivePeriod.end > model.effectivePeriod.start

    @pytest.mark.slow
    def test_the_forwarder_posts_the_strip_of_an_alarm(self, broker, tmp_path) -> None:
        from fhir.resources.R4B.observation import Observation

        fhir = FhirStandIn().start()
        fwd = Forwarder(
            broker.url, FhirTarget(fhir.url), tmp_path / "outbox.db", client_id="fwd-strip"
        ).start()
        try:
            alarm = sample_alarm("bed-4")
            s = _strip_for(alarm, n=500)
            pub = Publisher(broker.url, "bed-4", tmp_path / "spool.db").start()
            pub.publish_alert(_ref(alarm, s))
            pub.publish_strip(s.to_json())
            assert pub.flush(10)
            pub.close()
            fwd.run(count=1, timeout_s=20)
            key = f"urn:ecg-edge:alert-id|{alarm.alert_id}-strip"
            deadline = time.monotonic() + 10
            while key not in fhir.resources and time.monotonic() < deadline:
                time.sleep(0.05)
            obs = Observation.model_validate(fhir.resources[key])
            ii = obs.component[1].valueSampledData.data.split()
            assert [int(v) for v in ii] == list(s.lead("II"))
        finally:
            fwd.close()
            fhir.stop()


class TestStripCommand:
    @pytest.mark.slow
    def test_ecg_bridge_strip_draws_a_retained_strip(self, broker, tmp_path) -> None:
        import os
        import subprocess
        import sys

        a = sample_alarm("bed-8")
        s = _strip_for(a, n=5000)
        pub = Publisher(broker.url, "bed-8", tmp_path / "spool.db").start()
        pub.publish_alert(_ref(a, s))
        pub.publish_strip(s.to_json())
        assert pub.flush(10)
        pub.close()
        exe = os.path.join(os.path.dirname(sys.executable), "ecg-bridge")
        png, js = tmp_path / "s.png", tmp_path / "s.json"
        r = subprocess.run(
            [exe, "strip", a.alert_id, "--broker", broker.url, "--out", str(png),
             "--json", str(js)], capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 50_000
        assert Strip.from_json(json.loads(js.read_text())) == s
        r = subprocess.run(
            [exe, "strip", "f" * 32, "--broker", broker.url, "--timeout", "1"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert r.returncode != 0 and "No strip for alert" in r.stderr


class TestMeasurementsOnThePaper:
    def test_summary_and_png_carry_the_measurements(self, tmp_path) -> None:
        import dataclasses

        from bridge.strip import measured_line
        from bridge.strip_png import strip_png

        m = {"n_beats": 9, "p_ms": 104.0, "pr_ms": 236.0, "qrs_ms": 92.0, "qt_ms": 380.0,
             "qtc_bazett_ms": 412.0, "qtc_fridericia_ms": 401.0, "axis_qrs_deg": 45.0}  # fmt: skip
        alert = dataclasses.replace(sample_alert("bed-1"), measurements=m)
        s = _strip_for(alert)
        line = s.alert["measured"]
        assert line == measured_line(m) and "PR 236 ms" in line and "QRS 92 ms" in line
        assert "QTc 412 ms (Bazett) 401 ms (Fridericia)" in line and "median of 9" in line
        again = Strip.parse(encode(s.to_json()))  # the schema takes it
        assert again.alert["measured"] == line
        no_p = measured_line({**m, "p_ms": None, "pr_ms": None})
        assert "P absent" in no_p and "PR --" in no_p
        assert "measured" not in _strip_for(sample_alert("bed-1")).alert  # none: no line
        plain = strip_png(_strip_for(sample_alert("bed-1")))
        png = strip_png(s)
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and png != plain
        (tmp_path / "strip.png").write_bytes(png)
