"""The edge's name for the shared error tree and check helpers (they live in :mod:`bridge.errors`).

``bridge`` is the lower layer (the edge imports it, never the reverse), so the
exception tree both packages raise is defined there; this module re-exports it
so that ``from edge.errors import ...`` keeps working.
"""

from bridge.errors import (
    BundleError,
    ConfigError,
    EcgEdgeError,
    PublishError,
    RecordError,
    ScoringError,
    SourceError,
    check_choice,
    check_int,
    check_positive,
    check_shape,
    invalid,
)

__all__ = [
    "BundleError",
    "ConfigError",
    "EcgEdgeError",
    "PublishError",
    "RecordError",
    "ScoringError",
    "SourceError",
    "check_choice",
    "check_int",
    "check_positive",
    "check_shape",
    "invalid",
]
