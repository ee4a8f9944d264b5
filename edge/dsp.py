"""Preprocessing: the one implementation, used by the edge stream and the trainer.

Signals are (n_leads, n_samples) float arrays in mV. Two streaming stages keep
their state between chunks, so that feeding a record in one call or in chunks
of any size gives the same output (to float rounding):

- :class:`Resampler`: polyphase FIR resampling from any rate to 500 Hz, causal.
- :class:`BandPass`: causal Butterworth band-pass (second-order sections).

:class:`Preprocessor` chains them. After ``n_in`` input samples at ``fs`` it
has produced :func:`output_length` samples: one per 500 Hz instant up to the
last input instant. Both stages start as if the signal had been constant at
its first value before the stream began, so a DC offset gives no start-up
step. Per frame, :func:`make_frame` zero-pads at the end to 15000 samples and
:func:`normalize_window` prepares each window for the model as the bundle
says (``DspConfig.norm``): ``lead`` scales each lead by the statistics of its
real samples (:func:`normalize`), ``mv`` keeps the amplitude in millivolts
(:func:`centre_mv`); padding stays exactly 0 either way.

>>> import numpy as np
>>> pre = Preprocessor(fs_in=250)
>>> x = np.zeros((12, 1000), dtype=np.float32)
>>> pre.push(x[:, :300]).shape[1] + pre.push(x[:, 300:]).shape[1] == output_length(1000, 250)
True
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from fractions import Fraction
from functools import lru_cache

import numpy as np

from edge._filters import BLOCK, BlockIIR, butter_bandpass_sections, firwin_lowpass
from edge.errors import check_int, check_positive, invalid

FS = 500.0  # the rate every model sees
FRAME_SAMPLES = 15000  # 30 s at 500 Hz
N_LEADS = 12
MODEL_FS = 100.0  # the extractor's rate: PTB-XL, the bulk of the training data, has no more
WINDOW_SAMPLES = 1000  # 10 s windows at the model rate
NORMS = ("lead", "mv")  # DspConfig.norm: per-lead z-score, or millivolts kept


@dataclass(frozen=True)
class DspConfig:
    """Preprocessing parameters; written into every bundle's manifest."""

    fs: float = FS
    frame_samples: int = FRAME_SAMPLES
    band_hz: tuple[float, float] = (0.5, 45.0)
    band_order: int = 3
    resample_half_taps: int = 10  # filter half-length, in units of max(up, down)
    resample_kaiser_beta: float = 5.0
    norm_min_std_mv: float = 0.01
    # How a window reaches the model: "lead" z-scores each lead (the first bundles);
    # "mv" keeps millivolts (each lead centred, clipped at +-norm_clip_mv), so that
    # low voltage and the frontal axis (the ratio of limb-lead amplitudes) stay visible.
    norm: str = "lead"
    norm_clip_mv: float = 5.0
    # What the extractor sees: the frame brought to ``model_fs`` (anti-alias FIR, the
    # same resampler as the input side) and cut into windows of ``window_samples``.
    model_fs: float = MODEL_FS
    window_samples: int = WINDOW_SAMPLES

    def __post_init__(self) -> None:
        check_positive("fs", self.fs)
        check_int("frame_samples", self.frame_samples, min_value=1)
        lo, hi = self.band_hz
        if not 0 < lo < hi < self.fs / 2:
            raise invalid("band_hz", f"0 < low < high < {self.fs / 2}", self.band_hz)
        check_positive("model_fs", self.model_fs)
        if self.norm not in NORMS:
            raise invalid("norm", " or ".join(NORMS), self.norm)
        check_positive("norm_clip_mv", self.norm_clip_mv)
        if self.model_fs > self.fs:
            raise invalid("model_fs", f"at most fs ({self.fs:g} Hz)", self.model_fs)
        check_int("window_samples", self.window_samples, min_value=1)
        if self.window_samples > self.model_frame_samples:
            raise invalid(
                "window_samples",
                f"at most one frame ({self.model_frame_samples})",
                self.window_samples,
            )

    @property
    def model_frame_samples(self) -> int:
        """Samples of one whole frame at the model rate."""
        return output_length(self.frame_samples, self.fs, self.model_fs)

    @property
    def window_seconds(self) -> float:
        return self.window_samples / self.model_fs

    def to_json(self) -> dict:
        d = asdict(self)
        d["band_hz"] = list(self.band_hz)
        return d

    @classmethod
    def from_json(cls, d: dict) -> DspConfig:
        d = dict(d)
        d["band_hz"] = tuple(d["band_hz"])
        if "model_fs" not in d:  # bundle format 1: the whole 500 Hz frame was the input
            d["model_fs"] = d.get("fs", FS)
            d["window_samples"] = d.get("frame_samples", FRAME_SAMPLES)
        return cls(**d)


def _check_chunk(x: np.ndarray, n_leads: int) -> np.ndarray:
    if not isinstance(x, np.ndarray) or x.ndim != 2 or x.shape[0] != n_leads:
        raise invalid("chunk", f"an array of shape ({n_leads}, n)", getattr(x, "shape", x))
    return x


@lru_cache(maxsize=64)
def ratio(fs_in: float, fs_out: float = FS) -> tuple[int, int]:
    """Smallest (up, down) with fs_in * up / down == fs_out.

    >>> ratio(257), ratio(360), ratio(1000)
    ((500, 257), (25, 18), (1, 2))
    """
    check_positive("fs", fs_in)
    r = Fraction(fs_out).limit_denominator(10**6) / Fraction(fs_in).limit_denominator(10**6)
    if r.numerator > 2000 or r.denominator > 2000:
        raise invalid("fs", f"a rate with a simple ratio to {fs_out:g} Hz", fs_in)
    return r.numerator, r.denominator


def output_length(n_in: int, fs_in: float, fs_out: float = FS) -> int:
    """Samples out after ``n_in`` samples in: the fs_out instants in [0, last input instant].

    >>> output_length(5000, 500), output_length(1000, 1000), output_length(3, 250)
    (5000, 500, 5)
    """
    if n_in <= 0:
        return 0
    up, down = ratio(fs_in, fs_out)
    return (n_in - 1) * up // down + 1


@lru_cache(maxsize=8)
def _polyphase_filter(up: int, down: int, half_taps: int, kaiser_beta: float) -> np.ndarray:
    """(up, n_taps) anti-alias filter split into phases; designed once per ratio, read-only.

    ``phases[p, i] = h[p + i*up]``: tap ``i`` of phase ``p`` multiplies ``x[j_hi - i]``.
    """
    m = max(up, down)
    h = firwin_lowpass(2 * half_taps * m + 1, 1.0 / m, kaiser_beta) * up
    n_phase = -(-len(h) // up)
    h = np.concatenate([h, np.zeros(n_phase * up - len(h))])
    phases = h.reshape(n_phase, up).T.copy()
    phases.flags.writeable = False
    return phases


class Resampler:
    """Streaming polyphase resampler to ``fs_out``; causal, state kept between chunks.

    Output sample ``m`` (time ``m / fs_out``) is produced as soon as the input
    sample at or before that instant has arrived. The anti-alias filter is the
    one ``scipy.signal.resample_poly`` designs (Kaiser window, beta 5).
    """

    def __init__(
        self,
        fs_in: float,
        fs_out: float = FS,
        n_leads: int = N_LEADS,
        half_taps: int = 10,
        kaiser_beta: float = 5.0,
    ) -> None:
        self.fs_in, self.fs_out, self.n_leads = float(fs_in), float(fs_out), n_leads
        self.up, self.down = ratio(fs_in, fs_out)
        self.identity = self.up == self.down == 1
        if not self.identity:
            self.phases = _polyphase_filter(self.up, self.down, half_taps, kaiser_beta)
            if self.up == 1:  # decimation (1000 -> 500 Hz, 500 Hz -> the model rate)
                self._super = _decimation_super(self.down, half_taps, kaiser_beta)
        self.reset()

    def reset(self) -> None:
        self._n_in = 0
        self._n_out = 0
        self._hist: np.ndarray | None = None

    def push(self, x: np.ndarray) -> np.ndarray:
        """Resample a chunk (n_leads, n) -> (n_leads, k) float64; ``x`` is not modified."""
        x = _check_chunk(x, self.n_leads)
        if self.identity:
            self._n_in += x.shape[1]
            self._n_out = self._n_in
            return x.astype(np.float64, copy=True)
        n_new = x.shape[1]
        if n_new == 0:
            return np.zeros((self.n_leads, 0))
        if self.up == 1:
            return self._decimate(x)
        n_taps = self.phases.shape[1]
        if self._hist is None:  # as if constant at the first value before the start
            self._hist = np.repeat(x[:, :1].astype(np.float64), n_taps - 1, axis=1)
        buf = np.concatenate([self._hist, x.astype(np.float64)], axis=1)
        g0 = self._n_in - (n_taps - 1)  # global index of buf[:, 0]
        self._n_in += n_new
        m_end = output_length(self._n_in, self.fs_in, self.fs_out)
        m = np.arange(self._n_out, m_end)
        self._n_out = m_end
        self._hist = buf[:, -(n_taps - 1) :]
        if m.size == 0:
            return np.zeros((self.n_leads, 0))
        t = m * self.down
        j_hi, p = t // self.up, t % self.up
        idx = (j_hi - g0)[:, None] - np.arange(n_taps)[None, :]  # (k, n_taps)
        win = buf[:, idx]  # (n_leads, k, n_taps)
        return np.einsum("lkt,kt->lk", win, self.phases[p])

    def _decimate(self, x: np.ndarray) -> np.ndarray:
        """``up == 1``: the same filter as one matrix product over blocks of outputs.

        Output ``m`` is the dot product of the filter with the ``W`` input
        samples ending at ``m * down`` (the taps padded with zeros at the far
        end to whole blocks of ``down``). The input is cut into super-blocks of
        ``D = q * down`` samples, one per ``q`` consecutive outputs; the taps
        become ``H`` (n_a, q, D): ``H[a, s]`` is what output ``s`` of a
        super-block takes from the super-block ``a`` after its own.
        ``P = H @ blocks.T`` is every tap row against every super-block (one
        matrix product with an inner dimension of ``D``, about 50 for 500 ->
        100 Hz), and the ``q`` outputs of super-block ``J`` are the sum over
        ``a`` of ``P[a, :, J + a]``. The products are those of the per-output
        dot product (and products with the zero padding), summed in another
        order: the result equals it to float64 rounding (1e-15 of the signal),
        2-3 times faster than a product per block of ``down`` and about 25
        times faster than gathering a window per output.
        """
        d = self.down
        h, q, n_a, n_hist = self._super
        n_new = x.shape[1]
        if self._hist is None:  # as if constant at the first value before the start
            self._hist = np.repeat(x[:, :1].astype(np.float64), n_hist, axis=1)
        hist = self._hist
        o = self._n_out * d - self._n_in  # samples of the history before the first window
        self._n_in += n_new
        m0, m_end = self._n_out, output_length(self._n_in, self.fs_in, self.fs_out)
        self._n_out = m_end
        if n_new >= n_hist:
            self._hist = x[:, n_new - n_hist :].astype(np.float64)
        else:
            self._hist = np.concatenate([hist[:, n_new:], x.astype(np.float64)], axis=1)
        k = m_end - m0
        if k <= 0:
            return np.zeros((self.n_leads, 0))
        n_j = -(-k // q)
        n_sb = n_j + n_a - 1
        # the input from the first output's window on, zero-padded to whole super-blocks
        buf = np.zeros((self.n_leads, n_sb * q * d))
        n_old = min(n_hist - o, buf.shape[1])
        buf[:, :n_old] = hist[:, o : o + n_old]
        n_cur = min(n_new, buf.shape[1] - n_old)
        buf[:, n_old : n_old + n_cur] = x[:, :n_cur]
        p = (h @ buf.reshape(-1, q * d).T).reshape(n_a, q, self.n_leads, n_sb)
        out = p[0, :, :, :n_j].copy()  # (q, n_leads, n_j): output J * q + s at [s, :, J]
        for a in range(1, n_a):
            out += p[a, :, :, a : a + n_j]
        return out.transpose(1, 2, 0).reshape(self.n_leads, n_j * q)[:, :k]


@lru_cache(maxsize=8)
def _decimation_blocks(down: int, half_taps: int, kaiser_beta: float) -> np.ndarray:
    """(n_blk, down) taps of the decimation filter, reversed and cut into blocks; read-only.

    ``g[a, r]`` multiplies input sample ``a * down + r`` of the window that ends
    at the output instant (the first taps of the window are the zero padding).
    """
    h = _polyphase_filter(1, down, half_taps, kaiser_beta)[0]
    n_blk = -(-len(h) // down)
    g = np.concatenate([np.zeros(n_blk * down - len(h)), h[::-1]]).reshape(n_blk, down)
    g.flags.writeable = False
    return g


@lru_cache(maxsize=8)
def _decimation_super(
    down: int, half_taps: int, kaiser_beta: float
) -> tuple[np.ndarray, int, int, int]:
    """``(H, q, n_a, n_hist)`` of :meth:`Resampler._decimate`; ``H`` read-only.

    ``H`` is (n_a * q, q * down): row ``a * q + s`` holds the taps that output
    ``s`` of a super-block of ``q`` outputs applies to the super-block ``a``
    after its own first one. ``q`` is half the filter's length in blocks of
    ``down`` (11 for 500 -> 100 Hz), so ``H`` has 2-3 super-blocks of rows;
    ``n_hist`` input samples are kept between chunks.
    """
    g = _decimation_blocks(down, half_taps, kaiser_beta).ravel()  # (W,), W = n_blk * down
    w = g.size
    q = -(-(w // down) // 2)
    width = q * down
    n_a = -(-((q - 1) * down + w) // width)
    h = np.zeros((n_a, q, width))
    for s in range(q):  # output s's window starts s * down into the super-block
        flat = np.zeros(n_a * width)
        flat[s * down : s * down + w] = g
        h[:, s, :] = flat.reshape(n_a, width)
    h = h.reshape(n_a * q, width)
    h.flags.writeable = False
    return h, q, n_a, w - 1


@lru_cache(maxsize=8)
def _bandpass_filter(
    order: int, band_hz: tuple[float, float], fs: float, block: int = BLOCK
) -> BlockIIR:
    """Designed once per parameters (a replay of many records reuses it); read-only."""
    return BlockIIR(butter_bandpass_sections(order, band_hz, fs), block)


class BandPass:
    """Causal Butterworth band-pass, state kept between chunks (numpy only: see ``_filters``)."""

    def __init__(
        self,
        fs: float = FS,
        band_hz: tuple[float, float] = (0.5, 45.0),
        order: int = 3,
        n_leads: int = N_LEADS,
        block: int = BLOCK,
    ) -> None:
        self.n_leads = n_leads
        self._filter = _bandpass_filter(order, tuple(band_hz), float(fs), block)
        self.sos = self._filter.sos  # (order, 6), as scipy's butter
        self.reset()

    def reset(self) -> None:
        self._state: np.ndarray | None = None

    def push(self, x: np.ndarray) -> np.ndarray:
        """Filter a chunk (n_leads, n) -> (n_leads, n) float64; ``x`` is not modified."""
        x = _check_chunk(x, self.n_leads)
        if x.shape[1] == 0:
            return np.zeros((self.n_leads, 0))
        x = x.astype(np.float64)
        if self._state is None:  # steady state for a signal constant at its first value
            self._state = self._filter.steady_state(x[:, 0])
        y, self._state = self._filter.run(x, self._state)
        return y


class Preprocessor:
    """Resample to 500 Hz, then band-pass: the whole streaming front of the pipeline."""

    def __init__(
        self, fs_in: float, config: DspConfig | None = None, n_leads: int = N_LEADS
    ) -> None:
        self.config = config or DspConfig()
        self.fs_in = float(check_positive("fs", fs_in))
        self.resampler = Resampler(
            fs_in,
            self.config.fs,
            n_leads,
            self.config.resample_half_taps,
            self.config.resample_kaiser_beta,
        )
        self.bandpass = BandPass(
            self.config.fs, self.config.band_hz, self.config.band_order, n_leads
        )

    def reset(self) -> None:
        self.resampler.reset()
        self.bandpass.reset()

    def push(self, x: np.ndarray) -> np.ndarray:
        """(n_leads, n) mV at fs_in -> (n_leads, k) float32 mV at 500 Hz, filtered."""
        return self.bandpass.push(self.resampler.push(x)).astype(np.float32)


def preprocess(x: np.ndarray, fs_in: float, config: DspConfig | None = None) -> np.ndarray:
    """Whole-record preprocessing: the same code as the stream, in one call."""
    return Preprocessor(fs_in, config, n_leads=x.shape[0]).push(x)


def make_frame(x: np.ndarray, n_samples: int = FRAME_SAMPLES) -> tuple[np.ndarray, int]:
    """Fit (n_leads, n) into a (n_leads, n_samples) frame: zero-pad at the end.

    Longer input keeps its last ``n_samples`` samples (the most recent, as the
    edge's ring buffer does). Returns the frame and the number of real samples.
    """
    n = x.shape[1]
    if n >= n_samples:
        return np.ascontiguousarray(x[:, n - n_samples :], dtype=np.float32), n_samples
    out = np.zeros((x.shape[0], n_samples), dtype=np.float32)
    out[:, :n] = x
    return out, n


def _per_lead(frame: np.ndarray, n_valid: int | None, scale) -> np.ndarray:
    """Each lead centred on the mean of its first ``n_valid`` samples, then ``scale`` of the
    (n_leads, n_valid) float64 deviations, into a new float32 array whose padding stays 0."""
    n_valid = frame.shape[1] if n_valid is None else n_valid
    out = np.zeros_like(frame, dtype=np.float32)
    if n_valid <= 0:
        return out
    real = frame[:, :n_valid].astype(np.float64)
    out[:, :n_valid] = scale(real - real.mean(axis=1, keepdims=True))
    return out


def normalize(frame: np.ndarray, n_valid: int | None = None, min_std: float = 0.01) -> np.ndarray:
    """Standardise each lead by the mean and std of its first ``n_valid`` samples.

    Padding (samples from ``n_valid`` on) stays 0. A lead flatter than
    ``min_std`` mV is scaled by ``min_std``, not blown up. Returns a new
    float32 array; ``frame`` is not modified.
    """

    def by_std(centred: np.ndarray) -> np.ndarray:
        # np.std's own steps (the mean of the squared deviations, its root), on the
        # deviations computed once: the same numbers
        std = np.sqrt((centred * centred).sum(axis=1, keepdims=True) / centred.shape[1])
        return centred / np.maximum(std, min_std)

    return _per_lead(frame, n_valid, by_std)


def centre_mv(frame: np.ndarray, n_valid: int | None = None, clip_mv: float = 5.0) -> np.ndarray:
    """Centre each lead on the mean of its first ``n_valid`` samples, keep millivolts.

    Amplitude is what low QRS voltage is, and the frontal axis is the ratio of
    the limb leads' amplitudes: per-lead z-scoring erases both. Samples beyond
    +-``clip_mv`` (pacemaker spikes, a lead coming off) are clipped, so that
    they cannot stretch the int8 input's range. Padding stays 0; returns a new
    float32 array.
    """
    return _per_lead(frame, n_valid, lambda centred: np.clip(centred, -clip_mv, clip_mv))


def normalize_window(
    frame: np.ndarray, n_valid: int | None = None, config: DspConfig | None = None
) -> np.ndarray:
    """A window (or frame) as the model sees it, by ``config.norm``: the one place it is decided."""
    config = config or DspConfig()
    if config.norm == "mv":
        return centre_mv(frame, n_valid, config.norm_clip_mv)
    return normalize(frame, n_valid, config.norm_min_std_mv)


def to_model_rate(x: np.ndarray, config: DspConfig | None = None) -> np.ndarray:
    """Preprocessed (n_leads, n) samples at ``fs`` -> (n_leads, m) float32 at ``model_fs``.

    The input side's polyphase resampler (Kaiser-windowed anti-alias FIR), run
    from the first sample of ``x``: a frame, or a whole record (whose first
    frame is then the same numbers).
    """
    config = config or DspConfig()
    if config.model_fs == config.fs:
        return np.asarray(x, dtype=np.float32)
    r = Resampler(
        config.fs,
        config.model_fs,
        x.shape[0],
        config.resample_half_taps,
        config.resample_kaiser_beta,
    )
    return r.push(x).astype(np.float32)


def window_starts(n_valid: int, window: int) -> list[int]:
    """Starts of the windows that cover ``n_valid`` samples, evenly spaced, first at 0.

    As few windows as cover the signal (they overlap when it is not a whole
    number of windows long); one window, zero-padded, when it is shorter.

    >>> window_starts(3000, 1000), window_starts(1500, 1000), window_starts(400, 1000)
    ([0, 1000, 2000], [0, 500], [0])
    """
    if n_valid <= window:
        return [0]
    k = -(-n_valid // window)
    return [round(i * (n_valid - window) / (k - 1)) for i in range(k)]


def model_windows(x: np.ndarray, config: DspConfig | None = None) -> np.ndarray:
    """Preprocessed samples of one frame -> (n_windows, n_leads, window_samples) model input.

    The last ``frame_samples`` samples at ``fs`` are cut into windows of
    ``window_seconds`` (:func:`window_starts`, at ``fs``); each window alone is
    brought to ``model_fs`` (:func:`to_model_rate`) and normalised on its real
    samples (a window longer than the signal is zero-padded at the end, the
    padding staying 0). A window's input thus depends on its own samples
    only: frames that share a window (every hop, in a stream) give it the same
    numbers, and its features can be reused (``edge.classify``). The
    extractor sees each window; the frame's features are the windows' mean.
    """
    config = config or DspConfig()
    if x.shape[1] > config.frame_samples:
        x = x[:, x.shape[1] - config.frame_samples :]
    return np.stack([model_window(x[:, a:b], config) for a, b in window_spans(x.shape[1], config)])


def window_spans(n_valid: int, config: DspConfig | None = None) -> list[tuple[int, int]]:
    """[start, end) at ``fs`` of the windows of a frame of ``n_valid`` samples.

    >>> window_spans(15000)
    [(0, 5000), (5000, 10000), (10000, 15000)]
    >>> window_spans(12000), window_spans(3000)
    ([(0, 5000), (3500, 8500), (7000, 12000)], [(0, 3000)])
    """
    config = config or DspConfig()
    w_in = round(config.window_samples * config.fs / config.model_fs)  # window at fs
    return [(s, min(s + w_in, n_valid)) for s in window_starts(n_valid, w_in)]


def model_window(x: np.ndarray, config: DspConfig | None = None) -> np.ndarray:
    """The samples of one window at ``fs`` -> its (n_leads, window_samples) model input.

    A function of these samples alone (:func:`model_windows`): brought to
    ``model_fs``, zero-padded at the end, normalised on its real samples
    (:func:`normalize_window`).
    """
    config = config or DspConfig()
    win, n_valid = make_frame(to_model_rate(x, config), config.window_samples)
    return normalize_window(win, n_valid, config)


def frame_for_model(x: np.ndarray, config: DspConfig | None = None) -> np.ndarray:
    """Preprocessed 500 Hz samples -> the (n_windows, n_leads, window_samples) model input."""
    return model_windows(x, config)
