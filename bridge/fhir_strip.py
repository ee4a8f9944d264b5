"""An alert's strip as an HL7 FHIR R4 ECG ``Observation``, as in the R4 "ekg" example.

``code`` MDC 131328 (``MDC_ECG_ELEC_POTL``, system ``urn:oid:2.16.840.1.113883.6.24``);
one ``component`` per lead, coded ``MDC_ECG_ELEC_POTL_<lead>``, each with a
``valueSampledData``: ``origin`` 0 uV, ``period`` in ms (2 at 500 Hz),
``factor`` 1 (the data are microvolts), ``dimensions`` 1 and the samples as
space-separated integers. ``effectivePeriod`` is the strip's time span;
``derivedFrom``-like linking to the alert is by identifier
(``urn:ecg-edge:alert-id|<alert_id>-strip``) and the ``device``.

>>> LEAD_CODES["I"], LEAD_CODES["III"], LEAD_CODES["V6"]
(131329, 131389, 131336)
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from bridge.schema import Alert
from bridge.strip import Strip

MDC = "urn:oid:2.16.840.1.113883.6.24"
UCUM = "http://unitsofmeasure.org"
ALERT_ID_SYSTEM = "urn:ecg-edge:alert-id"
DEVICE_SYSTEM = "urn:ecg-edge:device-id"
MDC_ECG_ELEC_POTL = 131328
# MDC_ECG_ELEC_POTL_<lead> = 131328 + the MDC_ECG_LEAD_<lead> code (ISO/IEEE 11073-10101)
_LEAD_MDC = {"I": 1, "II": 2, "V1": 3, "V2": 4, "V3": 5, "V4": 6, "V5": 7, "V6": 8,
             "III": 61, "aVR": 62, "aVL": 63, "aVF": 64}  # fmt: skip
LEAD_CODES = {lead: MDC_ECG_ELEC_POTL + n for lead, n in _LEAD_MDC.items()}


def _mdc_name(lead: str) -> str:
    return f"MDC_ECG_ELEC_POTL_{lead.upper() if lead.startswith('a') else lead}"


def _end_utc(start_utc: str, seconds: float) -> str:
    t = datetime.fromisoformat(start_utc.replace("Z", "+00:00")) + timedelta(seconds=seconds)
    t = t.astimezone(timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def strip_observation(alert: Alert, strip: Strip) -> dict[str, Any]:
    """The R4 ``Observation`` (a dict, ready to POST) of ``alert``'s ``strip``."""
    what = ", ".join(f.abbreviation for f in alert.findings) or alert.condition
    components = []
    for lead, samples in zip(strip.leads, strip.samples):
        components.append(
            {
                "code": {
                    "coding": [
                        {"system": MDC, "code": str(LEAD_CODES[lead]), "display": _mdc_name(lead)}
                    ]
                },
                "valueSampledData": {
                    "origin": {"value": 0, "unit": "uV", "system": UCUM, "code": "uV"},
                    "period": round(1000.0 / strip.fs, 6),
                    "factor": 1,
                    "lowerLimit": -32768,
                    "upperLimit": 32767,
                    "dimensions": 1,
                    "data": " ".join(str(v) for v in samples),
                },
            }
        )
    return {
        "resourceType": "Observation",
        "identifier": [{"system": ALERT_ID_SYSTEM, "value": f"{alert.alert_id}-strip"}],
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "procedure",
                        "display": "Procedure",
                    }
                ]
            }
        ],
        "code": {
            "coding": [
                {"system": MDC, "code": str(MDC_ECG_ELEC_POTL), "display": "MDC_ECG_ELEC_POTL"}
            ],
            "text": f"ECG strip of alert {alert.alert_id} ({alert.priority} {what} {alert.event})",
        },
        "effectivePeriod": {
            "start": strip.start_utc,
            "end": _end_utc(strip.start_utc, strip.seconds),
        },
        "issued": alert.emitted_at,
        "device": {
            "identifier": {"system": DEVICE_SYSTEM, "value": alert.device_id},
            "display": alert.device_id,
        },
        "note": [
            {
                "text": f"ecg-edge {alert.kind} {alert.event}: {alert.reason}; {strip.seconds:g} s "
                f"at {strip.fs:g} Hz, {strip.filter}"
            }
        ],
        "component": components,
    }
