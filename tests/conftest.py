"""Shared fixtures: real records, loaded once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "edge" / "samples"
SHARED_DATA = ROOT.parent / "shared" / "data" / "challenge2020"


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    """The sample records shipped in the repository (two per database)."""
    return SAMPLES


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The full 494-record set beside the repository (present in CI and dev machines)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"full data set not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def sample_records(samples_dir):
    from edge.records import find_records, read_record

    return [read_record(h) for h in find_records([samples_dir])]
