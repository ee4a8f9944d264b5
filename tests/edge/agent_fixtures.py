"""Fixtures for the agent's tests: a throwaway bundle built in a second, records, a CLI runner.

``agent_bundle`` is a real bundle (ONNX extractor + numpy head, checked by
:func:`edge.bundle.load_bundle`) around a tiny random Conv1d network. It is
meant for plumbing and parity tests, not accuracy. The ``int8`` file is a
copy of the fp32 one unless onnxruntime's quantizer is available. Import the
fixtures into a test module with ``from tests.edge.agent_fixtures import *``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "edge.cli"]

TINY_CLASSES = (
    ("164889003", "AF", "atrial fibrillation"),
    ("426783006", "SNR", "sinus rhythm"),
    ("270492004", "IAVB", "1st degree av block"),
    ("59118001", "RBBB", "right bundle branch block"),
)
NORMAL_CODE = "426783006"


def build_tiny_bundle(out: Path, seed: int = 0, thresholds: np.ndarray | None = None) -> Path:
    """Write a bundle with a random tiny extractor (8 features) and random heads into ``out``."""
    import torch

    from edge.bundle import ClassInfo, Head, Manifest, write_bundle
    from edge.dsp import DspConfig

    torch.manual_seed(seed)
    # the output is a feature map (batch, 4, T): edge.classify pools it to 8 features
    net = torch.nn.Sequential(
        torch.nn.Conv1d(12, 4, kernel_size=15, stride=10),
        torch.nn.ReLU(),
    ).eval()
    work = out.parent / (out.name + ".work")
    work.mkdir(parents=True, exist_ok=True)
    fp32 = work / "extractor.fp32.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            net,
            (torch.zeros(1, 12, DspConfig().window_samples),),
            str(fp32),
            input_names=["frames"],
            output_names=["features"],
            dynamic_axes={"frames": {0: "batch"}, "features": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    int8 = work / "extractor.onnx"
    shutil.copyfile(fp32, int8)
    rng = np.random.default_rng(seed)
    k, d = len(TINY_CLASSES), 8
    if thresholds is None:
        thresholds = np.zeros(k, dtype=np.float32)
    head = Head(
        codes=tuple(c for c, _, _ in TINY_CLASSES),
        W=rng.normal(size=(k, d)).astype(np.float32),
        b=rng.normal(size=k).astype(np.float32),
        thresholds=np.asarray(thresholds, dtype=np.float32),
        feature_mean=np.zeros(d, dtype=np.float32),
        feature_scale=np.ones(d, dtype=np.float32),
    )
    manifest = Manifest(
        model="tiny-test",
        n_features=d,
        classes=tuple(ClassInfo(*c) for c in TINY_CLASSES),
        normal_code=NORMAL_CODE,
        dsp=DspConfig(),
        training={"records": 0, "note": "random weights, for tests"},
        validation={"challenge_metric": 0.0},
    )
    write_bundle(out, manifest, head, int8, fp32)
    shutil.rmtree(work, ignore_errors=True)
    return demo_sign(out)


DEMO_KEY = ROOT / "keys" / "demo-signing-key.pem"


def demo_sign(bundle: Path) -> Path:
    """Sign a test bundle with the demonstration key (trusted when no --trusted-key is given)."""
    from edge.signing import load_private_key, sign_bundle

    # git does not keep the key's 0600 mode, so the test does not insist on it
    sign_bundle(bundle, load_private_key(DEMO_KEY, check_permissions=False))
    return bundle


@pytest.fixture(scope="session")
def agent_bundle(tmp_path_factory) -> Path:
    """A bundle folder with a random tiny extractor (switch to ``tiny_bundle`` when present)."""
    return build_tiny_bundle(tmp_path_factory.mktemp("bundle") / "tiny")


@pytest.fixture(scope="session")
def loaded_bundle(agent_bundle):
    from edge.bundle import load_bundle

    return load_bundle(agent_bundle)


def run_cli(*args: str, timeout: float = 300, env: dict | None = None):
    """Run ``python -m edge.cli ARGS`` as a real subprocess; return the CompletedProcess."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [*CLI, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


@pytest.fixture(scope="session")
def parity_bundle(request, agent_bundle) -> Path:
    """The lead's trained ``tiny_bundle`` when the session has it, else ``agent_bundle``."""
    try:
        return Path(request.getfixturevalue("tiny_bundle"))
    except pytest.FixtureLookupError:
        return agent_bundle


def one_record_per_database(root: Path) -> list[Path]:
    """The first readable record (header path) of every database folder under ``root``."""
    from edge.errors import RecordError
    from edge.records import find_records, read_record

    out = []
    for db in sorted(p for p in root.iterdir() if p.is_dir()):
        for h in find_records([db]):
            try:
                read_record(h)
            except RecordError:
                continue
            out.append(h)
            break
    return out


def json_lines(stdout: str) -> list[dict]:
    """Parse ``--json`` output: every line must be one JSON object with a ``type``."""
    import json

    events = [json.loads(line) for line in stdout.splitlines()]
    assert all(isinstance(e, dict) and e["type"] in TYPES for e in events)
    return events


TYPES = {"frame", "alert", "quality", "status"}
