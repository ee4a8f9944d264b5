"""edge.dsp: chunking never changes the output; every rate comes out at 500 Hz."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.dsp import (
    FRAME_SAMPLES,
    BandPass,
    DspConfig,
    Preprocessor,
    Resampler,
    _polyphase_filter,
    centre_mv,
    frame_for_model,
    make_frame,
    model_windows,
    normalize,
    normalize_window,
    output_length,
    preprocess,
    to_model_rate,
)
from edge.errors import ConfigError

RATES = [250.0, 257.0, 360.0, 500.0, 1000.0]


def _signal(fs: float, seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = round(fs * seconds)
    t = np.arange(n) / fs
    base = np.sin(2 * np.pi * 1.2 * t) + 0.3 * np.sin(2 * np.pi * 17 * t)
    x = base[None, :] * rng.uniform(0.2, 2.0, (12, 1)) + rng.normal(0, 0.05, (12, n))
    return (x + rng.uniform(-1, 1, (12, 1))).astype(np.float32)


def _push_chunked(pre, x: np.ndarray, sizes: list[int]) -> np.ndarray:
    out, i, k = [], 0, 0
    while i < x.shape[1]:
        step = sizes[k % len(sizes)]
        out.append(pre.push(x[:, i : i + step]))
        i, k = i + step, k + 1
    return np.concatenate(out, axis=1)


class TestChunking:
    @settings(max_examples=30, deadline=None)
    @given(
        fs=st.sampled_from(RATES),
        sizes=st.lists(st.integers(1, 900), min_size=1, max_size=8),
    )
    def test_any_chunking_equals_one_call(self, fs, sizes):
        x = _signal(fs, 4.0)
        whole = preprocess(x, fs)
        chunked = _push_chunked(Preprocessor(fs), x, sizes)
        assert chunked.shape == whole.shape
        assert np.max(np.abs(chunked - whole)) < 1e-6

    def test_real_record_in_odd_chunks(self, sample_records):
        rec = next(r for r in sample_records if r.fs == 1000)
        whole = preprocess(rec.signal, rec.fs)
        chunked = _push_chunked(Preprocessor(rec.fs), rec.signal, [1, 7, 333, 4096])
        assert np.max(np.abs(chunked - whole)) < 1e-6

    def test_empty_chunk_is_harmless(self):
        x = _signal(360, 2.0)
        pre = Preprocessor(360)
        a = pre.push(x[:, :100])
        assert pre.push(x[:, :0]).shape == (12, 0)
        b = pre.push(x[:, 100:])
        assert np.max(np.abs(np.concatenate([a, b], 1) - preprocess(x, 360))) < 1e-6

    def test_input_not_mutated(self):
        x = _signal(257, 2.0)
        before = x.copy()
        preprocess(x, 257)
        np.testing.assert_array_equal(x, before)

    def test_reset_restores_the_start(self):
        x = _signal(360, 2.0)
        pre = Preprocessor(360)
        first = pre.push(x)
        pre.push(_signal(360, 1.0, seed=3))
        pre.reset()
        np.testing.assert_array_equal(pre.push(x), first)


class TestRates:
    @pytest.mark.parametrize("fs", RATES)
    @pytest.mark.parametrize("seconds", [0.01, 1.0, 10.0, 12.345])
    def test_length_at_500hz(self, fs, seconds):
        x = _signal(fs, seconds)
        y = preprocess(x, fs)
        n = x.shape[1]
        assert y.shape == (12, output_length(n, fs))
        # one output per 2 ms instant up to the last input instant
        assert y.shape[1] == int(np.floor((n - 1) / fs * 500 + 1e-9)) + 1

    @pytest.mark.parametrize("fs", RATES)
    def test_a_sine_keeps_amplitude_and_frequency(self, fs):
        t = np.arange(int(fs * 8)) / fs
        x = np.tile(np.sin(2 * np.pi * 5 * t), (12, 1))
        rs = Resampler(fs)
        y = rs.push(x)[0]
        delay = 0 if rs.identity else 10 * max(rs.up, rs.down) / rs.up / fs
        ref = np.sin(2 * np.pi * 5 * (np.arange(y.size) / 500 - delay))
        assert np.max(np.abs(y[1000:] - ref[1000:])) < 2e-3

    @pytest.mark.parametrize(("fs_in", "fs_out"), [(500, 100), (1000, 500), (1000, 100), (500, 50)])
    def test_decimation_is_the_filter_at_every_output(self, fs_in, fs_out):
        # the definition, one dot product per output: y[m] = sum_i h[i] x[m * down - i],
        # the input held at its first value before the start; any chunking
        rs = Resampler(fs_in, fs_out, n_leads=3)
        h = _polyphase_filter(1, rs.down, 10, 5.0)[0]
        x = np.random.default_rng(1).normal(0, 1, (3, 2345)).astype(np.float32)
        ext = np.concatenate([np.repeat(x[:, :1], h.size, axis=1), x], axis=1).astype(np.float64)
        m = np.arange(output_length(x.shape[1], fs_in, fs_out))
        idx = h.size + m[:, None] * rs.down - np.arange(h.size)[None, :]
        ref = ext[:, idx] @ h
        got = np.concatenate([rs.push(x[:, a : a + 333]) for a in range(0, x.shape[1], 333)], 1)
        assert got.shape == ref.shape
        assert np.max(np.abs(got - ref)) < 1e-12

    def test_bad_rate_is_refused(self):
        with pytest.raises(ConfigError, match="'fs'"):
            Preprocessor(-500)
        with pytest.raises(ConfigError, match="simple ratio"):
            Resampler(499.9991)


class TestBandPass:
    def test_removes_dc_and_wander_keeps_qrs_band(self):
        fs = 500
        t = np.arange(fs * 20) / fs
        x = 3.0 + 0.5 * np.sin(2 * np.pi * 0.05 * t) + np.sin(2 * np.pi * 10 * t)
        y = BandPass(fs).push(np.tile(x, (12, 1)))[0, fs * 10 :]
        assert abs(y.mean()) < 0.02  # DC and 0.05 Hz wander gone
        assert 0.9 < y.std() * np.sqrt(2) < 1.1  # 10 Hz passes

    def test_no_startup_step_for_an_offset(self):
        y = preprocess(np.full((12, 2000), 5.0, dtype=np.float32), 500)
        assert np.max(np.abs(y)) < 1e-6


class TestFrame:
    def test_pad_at_end_and_normalise_real_part(self):
        x = _signal(500, 7.0)  # 7 s: one 10 s window at 100 Hz, 700 real samples
        wins = frame_for_model(x)
        assert wins.shape == (1, 12, 1000) and wins.dtype == np.float32
        assert np.all(wins[0, :, 700:] == 0)
        np.testing.assert_allclose(wins[0, :, :700].mean(1), 0, atol=1e-5)
        np.testing.assert_allclose(wins[0, :, :700].std(1), 1, atol=1e-4)

    def test_a_full_frame_is_three_windows_of_ten_seconds(self):
        x = _signal(500, 30.0)
        wins = model_windows(x)
        assert wins.shape == (3, 12, 1000)
        # each window is the 100 Hz signal of its own 10 s alone, normalised on its own
        assert to_model_rate(x).shape == (12, 3000)
        seg = to_model_rate(x[:, 5000:10000]).astype(np.float64)
        ref = (seg - seg.mean(1, keepdims=True)) / seg.std(1, keepdims=True)
        np.testing.assert_allclose(wins[1], ref, atol=1e-5)

    def test_model_rate_is_anti_aliased(self):
        t = np.arange(5000) / 500.0
        tone = np.tile(np.sin(2 * np.pi * 70.0 * t), (12, 1))  # above the 50 Hz Nyquist
        y = to_model_rate(tone)
        assert np.abs(y[:, 100:]).max() < 0.01  # not folded back to 30 Hz

    def test_frames_that_share_a_window_give_it_the_same_input(self):
        x = _signal(500, 40.0)
        a = model_windows(x[:, :15000])  # windows at 0, 10, 20 s
        b = model_windows(x[:, 5000:20000])  # the next frame: windows at 10, 20, 30 s
        np.testing.assert_array_equal(a[1:], b[:2])

    def test_whole_record_and_frame_agree_at_the_start(self):
        x = _signal(500, 10.0)
        np.testing.assert_array_equal(to_model_rate(x), to_model_rate(x[:, :5000]))

    def test_format_1_config_is_the_whole_frame(self):
        legacy = {
            k: v
            for k, v in DspConfig().to_json().items()
            if k not in ("model_fs", "window_samples")
        }
        c = DspConfig.from_json(legacy)
        assert c.model_fs == 500 and c.window_samples == FRAME_SAMPLES
        assert model_windows(_signal(500, 10.0), c).shape == (1, 12, FRAME_SAMPLES)

    def test_longer_keeps_the_last_samples(self):
        x = np.arange(20000, dtype=np.float32)[None, :].repeat(12, 0)
        frame, n = make_frame(x)
        assert n == FRAME_SAMPLES and frame[0, 0] == 5000 and frame[0, -1] == 19999

    def test_flat_lead_is_not_blown_up(self):
        frame = normalize(np.zeros((12, 100), dtype=np.float32))
        assert np.all(frame == 0)

    def test_config_round_trip(self):
        c = DspConfig()
        assert DspConfig.from_json(c.to_json()) == c
        with pytest.raises(ConfigError, match="band_hz"):
            DspConfig(band_hz=(50.0, 10.0))


class TestMillivolts:
    """``DspConfig.norm="mv"``: the model sees amplitude (low voltage, the axis)."""

    def test_amplitude_and_lead_ratios_are_kept(self):
        x = _signal(500, 10.0)
        mv = DspConfig(norm="mv")
        a = model_windows(x, mv)
        b = model_windows(2 * x, mv)  # twice the voltage: twice the input, not the same
        np.testing.assert_allclose(b, 2 * a, rtol=1e-5, atol=1e-5)
        z = model_windows(x)  # per-lead z-score (the default): the gain is gone
        np.testing.assert_allclose(model_windows(2 * x), z, rtol=1e-4, atol=1e-4)
        real = a[0]
        np.testing.assert_allclose(real.mean(axis=1), 0, atol=1e-5)  # each lead centred

    def test_padding_stays_zero_and_spikes_are_clipped(self):
        frame = np.zeros((12, 100), dtype=np.float32)
        frame[:, :60] = 1.0
        frame[3, 10] = 40.0  # a pacemaker spike
        out = centre_mv(frame, 60, clip_mv=5.0)
        assert np.all(out[:, 60:] == 0) and out.dtype == np.float32
        assert out.max() == 5.0 and out[0, 0] == 0.0
        assert np.all(centre_mv(frame, 0) == 0)

    def test_dispatch_follows_the_config(self):
        frame = _signal(100, 10.0)
        np.testing.assert_array_equal(normalize_window(frame, 800), normalize(frame, 800))
        np.testing.assert_array_equal(
            normalize_window(frame, 800, DspConfig(norm="mv", norm_clip_mv=3.0)),
            centre_mv(frame, 800, 3.0),
        )

    def test_config_round_trip_and_older_manifests(self):
        c = DspConfig(norm="mv")
        assert DspConfig.from_json(c.to_json()) == c
        legacy = {k: v for k, v in DspConfig().to_json().items() if not k.startswith("norm_c")}
        legacy.pop("norm")
        assert DspConfig.from_json(legacy).norm == "lead"  # bundles made before the setting
        with pytest.raises(ConfigError, match="norm"):
            DspConfig(norm="zscore")
        with pytest.raises(ConfigError, match="norm_clip_mv"):
            DspConfig(norm="mv", norm_clip_mv=0.0)

    def test_the_cache_does_not_depend_on_normalisation(self):
        from trainer.data import cache_key

        assert cache_key(DspConfig(norm="mv")) == cache_key(DspConfig())
        assert cache_key(DspConfig(band_hz=(0.67, 40.0))) != cache_key(DspConfig())
