"""edge._robust: numpy's median and percentile, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from edge._robust import median_last, percentile_last


@pytest.mark.parametrize("n", [1, 2, 3, 7, 50, 51, 1666, 1667])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_median_and_percentiles_equal_numpys(n, dtype):
    rng = np.random.default_rng(n)
    for trial in range(20):
        v = (rng.standard_normal((4, n)) * 10.0 ** rng.integers(-3, 3)).astype(dtype)
        if trial % 3 == 0:
            v = np.round(v, 1)  # ties
        if trial % 5 == 0 and n > 1:
            v[2, rng.integers(n)] = np.nan  # a NaN row gives NaN, the others do not change
        w = v.astype(np.float64)
        np.testing.assert_array_equal(median_last(v), np.median(w, axis=-1))
        for q in (0, 1, 10, 20, 25, 33.3, 50, 75, 99, 100):
            np.testing.assert_array_equal(percentile_last(v, q), np.percentile(w, q, axis=-1))
        np.testing.assert_array_equal(percentile_last(v[0], 20), np.percentile(w[0], 20))


@pytest.mark.parametrize("m", [1, 2, 125, 126])
def test_median_of_the_quality_checks_windows(m):
    """(leads, windows, samples) float32 as the quality check has them: float64 out."""
    rng = np.random.default_rng(m)
    v = rng.standard_normal((12, 30, m)).astype(np.float32)
    v[0, 0, :] = 1.5  # ties
    v[1, 1, 0] = np.nan  # a NaN stays a NaN, as np.median has it
    got = median_last(v)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, np.median(v.astype(np.float64), axis=-1))
