"""edge._reuse.ContentCache: found again by every byte of the samples, never by position."""

from __future__ import annotations

import numpy as np
import pytest

from edge._reuse import ContentCache
from edge.errors import ConfigError


def _window(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 1, (12, 5000)).astype(np.float32)


class TestContentCache:
    def test_the_same_samples_anywhere_are_a_hit(self):
        cache = ContentCache(4)
        x = _window()
        frame = np.concatenate([_window(1), x], axis=1)  # the window, later in another frame
        ticket, value = cache.find((x,))
        assert value is None
        cache.put(ticket, "features")
        assert cache.find((frame[:, 5000:],))[1] == "features"
        assert (cache.hits, cache.misses) == (1, 1)

    def test_one_changed_sample_is_a_miss(self):
        cache = ContentCache(4)
        x = _window()
        cache.put(cache.find((x,))[0], "old")
        y = x.copy()
        y[7, 1234] = np.nextafter(y[7, 1234], np.float32(np.inf))  # one bit, off the fingerprint
        assert cache.find((y,))[1] is None

    def test_bits_count_not_values(self):
        cache = ContentCache(4)
        z = np.zeros((2, 100), np.float32)
        cache.put(cache.find((z,))[0], "plus zero")
        assert cache.find((-z,))[1] is None  # -0.0 == 0.0, but its bits differ
        nan = np.full((2, 100), np.nan, np.float32)
        cache.put(cache.find((nan,))[0], "nan")
        assert cache.find((nan.copy(),))[1] == "nan"  # NaN != NaN, but the bits agree

    def test_every_part_must_agree(self):
        cache = ContentCache(4)
        a, b = _window(0), _window(1)
        cache.put(cache.find((a, b))[0], "pair")
        assert cache.find((a, b))[1] == "pair"
        assert cache.find((a, a))[1] is None

    def test_least_recently_used_goes_first(self):
        cache = ContentCache(2)
        w = [_window(i) for i in range(3)]
        for i in range(2):
            cache.put(cache.find((w[i],))[0], i)
        assert cache.find((w[0],))[1] == 0  # w[0] used again: w[1] is now the oldest
        cache.put(cache.find((w[2],))[0], 2)
        assert len(cache) == 2
        assert cache.find((w[1],))[1] is None and cache.find((w[0],))[1] == 0

    def test_size_zero_keeps_nothing(self):
        cache = ContentCache(0)
        x = _window()
        cache.put(cache.find((x,))[0], "v")
        assert len(cache) == 0 and cache.find((x,))[1] is None

    def test_the_kept_bytes_do_not_follow_the_array(self):
        cache = ContentCache(2)
        x = _window()
        cache.put(cache.find((x,))[0], "v")
        x[0, 0] += 1.0  # the caller's buffer is reused: what was kept is the old content
        assert cache.find((x,))[1] is None

    def test_bad_size(self):
        with pytest.raises(ConfigError, match="'size'"):
            ContentCache(-1)
