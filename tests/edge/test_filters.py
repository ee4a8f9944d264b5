"""edge._filters: the numpy filter design and block IIR equal scipy's (the reference here)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy import signal as sps

from edge._filters import BlockIIR, butter_bandpass_sections, firwin_lowpass


class TestAgainstScipy:
    @pytest.mark.parametrize("numtaps,cutoff", [(41, 0.5), (10001, 1 / 500), (501, 1 / 25)])
    def test_firwin(self, numtaps, cutoff):
        ref = sps.firwin(numtaps, cutoff, window=("kaiser", 5.0))
        np.testing.assert_allclose(firwin_lowpass(numtaps, cutoff, 5.0), ref, atol=1e-15)

    @pytest.mark.parametrize(
        "order,band,fs", [(3, (0.5, 45.0), 500), (1, (0.5, 45.0), 500), (4, (1.0, 40.0), 500),
                          (3, (5.0, 15.0), 360), (2, (0.05, 150.0), 1000)],
    )  # fmt: skip
    def test_butter_response_and_output(self, order, band, fs):
        ref = sps.butter(order, band, "bandpass", fs=fs, output="sos")
        ours = butter_bandpass_sections(order, band, fs)
        _, h_ref = sps.sosfreqz(ref, 4096, fs=fs)
        _, h_ours = sps.sosfreqz(ours, 4096, fs=fs)
        assert np.max(np.abs(h_ref - h_ours)) < 1e-9
        x = np.random.default_rng(0).normal(size=(12, 3000)).cumsum(axis=1)
        zi = sps.sosfilt_zi(ref)[:, None, :] * x[None, :, :1]
        y_ref, _ = sps.sosfilt(ref, x, axis=-1, zi=zi)
        f = BlockIIR(ours)
        y, _ = f.run(x, f.steady_state(x[:, 0]))
        assert np.max(np.abs(y - y_ref)) < 1e-7 * np.abs(y_ref).max()

    def test_blocks_of_any_size(self):
        f = BlockIIR(butter_bandpass_sections(3, (0.5, 45.0), 500), block=64)
        x = np.random.default_rng(1).normal(size=(3, 1000))
        whole, _ = f.run(x, f.steady_state(x[:, 0]))
        s, parts = f.steady_state(x[:, 0]), []
        for a, b in [(0, 1), (1, 64), (64, 65), (65, 200), (200, 1000)]:
            y, s = f.run(x[:, a:b], s)
            parts.append(y)
        assert np.max(np.abs(np.concatenate(parts, axis=1) - whole)) < 1e-9


class TestNoScipyOnTheDevice:
    def test_the_agent_does_not_import_scipy(self):
        code = (
            "import sys, edge.cli, edge.agent, edge.dsp, edge.records;"
            "from edge.records import read_record;"
            "read_record('edge/samples/cpsc2018/A0001');"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in"
            " ('scipy', 'torch', 'sklearn', 'trainer', 'pandas', 'matplotlib')))"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True).stdout.strip()  # fmt: skip
        assert out == "[]"
