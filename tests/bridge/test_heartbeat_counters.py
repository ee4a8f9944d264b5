"""The status heartbeat carries the stream's counters (frames, gaps, the serial parser's)."""

from __future__ import annotations

import json

from bridge.publish import Publisher
from bridge.schema import StatusMessage, parse


class TestHeartbeatCounters:
    def test_counters_travel_in_the_heartbeat(self, broker, collector_factory, tmp_path):
        col = collector_factory(broker.port, "ecg/hb-1/status")
        pub = Publisher(broker.url, "hb-1", tmp_path / "spool.db", heartbeat_s=0.2).start()
        try:
            serial = {"crc_errors": 3, "bytes_discarded": 99, "bad_lines": 0, "gaps": 3}
            pub.set_counters({"frames": 7, "gaps": 0, "filled_gaps": 3, "serial": serial})

            def heartbeat_with_counters(msgs):
                for _, raw in msgs:
                    m = parse(raw)
                    if m.state == "heartbeat" and "serial" in m.extra:
                        return True
                return False

            assert col.wait_for(heartbeat_with_counters, 10)
        finally:
            pub.close(timeout_s=2)
        beats = [json.loads(raw) for _, raw in col.messages]
        hb = next(b for b in beats if b["state"] == "heartbeat" and "serial" in b["extra"])
        assert hb["extra"]["serial"] == serial and hb["extra"]["frames"] == 7
        assert {"sent", "pending"} <= set(hb["extra"])

    def test_the_status_schema_types_the_counters(self):
        import pytest

        from bridge.schema import PayloadError

        StatusMessage("d", "heartbeat", extra={"serial": {"crc_errors": 1}, "frames": 2})
        with pytest.raises(PayloadError, match="serial"):
            StatusMessage("d", "heartbeat", extra={"serial": {"crc_errors": "many"}})
        with pytest.raises(PayloadError, match="frames"):
            StatusMessage("d", "heartbeat", extra={"frames": -1})
