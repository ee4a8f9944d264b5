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


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory, samples_dir) -> Path:
    """A bundle trained in seconds by the real trainer on the 14 sample records.

    Model 1 (the small CNN), 2 epochs, 2 inner folds: a plumbing model, not a
    good one. Int8 and fp32 extractors, SVM heads, manifest: all real.
    """
    import numpy as np

    from trainer.data import load_cache, scan
    from trainer.fit import TrainConfig
    from trainer.pipeline import fit_bundle

    root = tmp_path_factory.mktemp("tiny_bundle")
    rep = scan([samples_dir])
    items, signals = load_cache(rep, cache_dir=root / "cache", workers=1)
    cfg = TrainConfig(model="cnn", epochs=2, seed=0, threads=2)
    fit_bundle(
        items,
        signals,
        np.arange(len(items)),
        cfg,
        root / "bundle",
        root / "work",
        rep.summary(),
        inner_folds=2,
        log=lambda *_: None,
    )
    from edge.signing import load_private_key, sign_bundle

    # signed with the demonstration key, which ecg-edge trusts by default (keys/README.md)
    demo = Path(__file__).resolve().parents[1] / "keys" / "demo-signing-key.pem"
    sign_bundle(root / "bundle", load_private_key(demo, check_permissions=False))
    return root / "bundle"
