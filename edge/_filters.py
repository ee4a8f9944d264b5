"""Filter design and a block IIR filter in numpy alone (no scipy on the device).

Importing ``scipy.signal`` costs the agent about 80 MB of resident memory
and a second of start-up (it pulls in ``scipy.stats``), for three functions:
``firwin``, ``butter`` and ``sosfilt``. They are written here from their
textbook definitions and tested against scipy (``tests/edge/test_filters.py``).

The IIR filter runs in blocks: for a block of ``l`` samples the recursion is
exactly ``y = T x + O s`` and ``s' = A^l s + G x`` (state space, with ``T`` the
Toeplitz matrix of the impulse response), so each block is a few small matrix
products instead of a per-sample loop.
"""

from __future__ import annotations

import numpy as np

BLOCK = 256  # samples per block: outputs depend on where the blocks start, so a caller that
# feeds whole blocks from a fixed origin gets the same floats for any chunking (edge.measure)


def firwin_lowpass(numtaps: int, cutoff: float, beta: float) -> np.ndarray:
    """Kaiser-windowed sinc low-pass, ``cutoff`` as a fraction of Nyquist, unit DC gain.

    The same taps as ``scipy.signal.firwin(numtaps, cutoff, window=("kaiser", beta))``.
    """
    m = np.arange(numtaps) - (numtaps - 1) / 2.0
    h = cutoff * np.sinc(cutoff * m) * np.kaiser(numtaps, beta)
    return h / h.sum()


def butter_bandpass_sections(order: int, band_hz: tuple[float, float], fs: float) -> np.ndarray:
    """Digital Butterworth band-pass as (order, 6) second-order sections [b0 b1 b2 1 a1 a2].

    Analog prototype -> band-pass transform -> bilinear transform with
    pre-warping, as ``scipy.signal.butter(order, band_hz, "bandpass", fs=fs)``.
    Each section holds one conjugate pole pair (or two real poles) and the
    zeros at z = 1 and z = -1 (numerator 1 - z^-2); the gain sits in the
    first section.
    """
    lo, hi = band_hz
    fs2 = 2.0 * fs
    w1, w2 = (fs2 * np.tan(np.pi * f / fs) for f in (lo, hi))  # pre-warped, rad/s
    bw, wo = w2 - w1, np.sqrt(w1 * w2)
    proto = -np.exp(1j * np.pi * np.arange(-order + 1, order, 2) / (2 * order))
    p_lp = proto * bw / 2
    root = np.sqrt(p_lp**2 - wo**2)
    p_bp = np.concatenate([p_lp + root, p_lp - root])
    k_bp = bw**order
    p_z = (fs2 + p_bp) / (fs2 - p_bp)
    # order zeros at s = 0 map to z = 1; the order missing ones go to z = -1
    k_z = k_bp * np.real(fs2**order / np.prod(fs2 - p_bp))
    tol = 1e-9
    upper = p_z[np.imag(p_z) > tol]
    real = np.sort(np.real(p_z[np.abs(np.imag(p_z)) <= tol]))
    if len(real) % 2 or len(upper) + len(real) // 2 != order:
        raise ValueError("band-pass poles cannot be paired into sections")
    # each section: a conjugate pole pair, or two real poles (odd orders have one such pair)
    dens = [(-2.0 * p.real, abs(p) ** 2) for p in upper]
    dens += [(-(r1 + r2), r1 * r2) for r1, r2 in zip(real[0::2], real[1::2])]
    sos = np.zeros((order, 6))
    for i, (a1, a2) in enumerate(dens):
        sos[i] = [1.0, 0.0, -1.0, 1.0, a1, a2]
    sos[0, :3] *= k_z
    return sos


def _state_space(sos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(A, B, C, D) of a cascade of sections, each in transposed direct form II."""
    n = 2 * len(sos)
    A, B, C, D = np.zeros((n, n)), np.zeros(n), np.zeros(n), 1.0
    # Build up section by section: the input of section i is the output of i-1.
    for i, (b0, b1, b2, _, a1, a2) in enumerate(sos):
        j = 2 * i
        # section: y = b0 u + s0;  s0' = b1 u - a1 y + s1;  s1' = b2 u - a2 y
        # with u = C_prev s_prev + D_prev x (the cascade so far)
        u_row, u_d = C.copy(), D
        A[j, :] += (b1 - a1 * b0) * u_row
        A[j + 1, :] += (b2 - a2 * b0) * u_row
        A[j, j] += -a1
        A[j, j + 1] += 1.0
        A[j + 1, j] += -a2
        B[j] += (b1 - a1 * b0) * u_d
        B[j + 1] += (b2 - a2 * b0) * u_d
        C = b0 * u_row
        C[j] += 1.0
        D = b0 * u_d
    return A, B, C, D


class BlockIIR:
    """A linear filter in state space, run in blocks; state per channel kept between calls."""

    def __init__(self, sos: np.ndarray, block: int = BLOCK) -> None:
        self.sos = np.asarray(sos, dtype=np.float64)
        A, B, C, D = _state_space(self.sos)
        n = len(A)
        self.block = block
        powers = [np.eye(n)]
        for _ in range(block):
            powers.append(A @ powers[-1])
        self._apow = np.stack(powers)  # (block+1, n, n): A^l
        h = np.array([D] + [C @ powers[k] @ B for k in range(block - 1)])
        idx = np.arange(block)[:, None] - np.arange(block)[None, :]
        self._T = np.where(idx >= 0, h[np.clip(idx, 0, None)], 0.0)  # y = T x, (block, block)
        self._O = np.stack([C @ powers[k] for k in range(block)])  # (block, n): y += O s
        # G[:, k] = A^(block-1-k) B: the state after a full block from input sample k
        self._G = np.stack([powers[block - 1 - k] @ B for k in range(block)], axis=1)
        self._steady = np.linalg.solve(np.eye(n) - A, B)  # state for a constant input 1
        self.n_states = n

    def steady_state(self, x0: np.ndarray) -> np.ndarray:
        """(channels, n_states) state of a filter that has seen the constant ``x0`` forever."""
        return np.asarray(x0, dtype=np.float64)[:, None] * self._steady[None, :]

    def run(self, x: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Filter (channels, n) with ``state`` (channels, n_states); return (y, new state)."""
        y = np.empty_like(x, dtype=np.float64)
        s = state
        for start in range(0, x.shape[1], self.block):
            xb = x[:, start : start + self.block]
            m = xb.shape[1]
            y[:, start : start + m] = xb @ self._T[:m, :m].T + s @ self._O[:m].T
            s = s @ self._apow[m].T + xb @ self._G[:, self.block - m :].T
        return y, s
