"""The package layers: ``bridge`` is the lower one and never imports ``edge`` (no cycle)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class TestBridgeIsTheLowerLayer:
    def test_bridge_imports_no_edge_module(self):
        code = (
            "import sys, bridge.cli, bridge.errors, bridge._cli, bridge.publish, bridge.listen,"
            " bridge.forward, bridge.schema, bridge.topics, bridge._conn, bridge._spool;"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in"
            " ('edge', 'trainer', 'torch', 'onnxruntime')))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        assert out == "[]"

    def test_edge_errors_are_the_bridge_errors(self):
        import bridge.errors
        import edge.errors

        assert edge.errors.EcgEdgeError is bridge.errors.EcgEdgeError
        assert edge.errors.ConfigError is bridge.errors.ConfigError
