"""Uncertainty of FID: the half-sample interval (fid_ci), FID-infinity, KID's subset size, and
how records, tables and figures carry them."""

from __future__ import annotations

import numpy as np
import pytest

from genbench.errors import UserError
from genbench.metrics import quality
from genbench.metrics.quality import (
    SubsetFID,
    as_statistics,
    fid_infinity,
    fid_interval,
    infinity_fit,
    infinity_sizes,
    interval_of_mean,
)


def _mixing(dims: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((dims, dims)) / np.sqrt(dims)


def _gaussian(n: int, mixing: np.ndarray, shift: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, len(mixing))) @ mixing + shift


def _pair(n: int, dims: int, seed: int = 0):
    """Reference statistics and generated features from two different Gaussians."""
    a = _mixing(dims, seed)
    b = a + 0.3 * _mixing(dims, seed + 1)
    reference = as_statistics(_gaussian(max(4 * dims, 400), a, 0.0, seed + 2))
    return reference, _gaussian(n, b, 0.2, seed + 3)


# ---------------------------------------------------------------------------- SubsetFID


@pytest.mark.parametrize("n, dims", [(40, 24), (300, 16), (120, 64)])
def test_subset_fid_equals_the_standard_formula(n: int, dims: int) -> None:
    """Whole set, a resample with repeated rows and a half-sample, on both paths (subsets
    smaller and larger than the dimension), against torch-fidelity's formula in quality.py."""
    reference, fake = _pair(n, dims)
    subset_fid = SubsetFID(reference, fake)
    rng = np.random.default_rng(7)
    for index in (np.arange(n), rng.integers(0, n, n), rng.permutation(n)[: n // 2],
                  rng.permutation(n)[: dims + 5]):
        index = index[index < n]
        expected = quality.fid(reference, fake[index])
        assert subset_fid(index) == pytest.approx(expected, rel=1e-6)


def test_subset_fid_rejects_other_dimensions_and_single_rows() -> None:
    reference, fake = _pair(30, 6)
    with pytest.raises(UserError, match="one feature extractor"):
        SubsetFID(reference, fake[:, :5])
    with pytest.raises(UserError, match="at least 2 samples"):
        SubsetFID(reference, fake)(np.array([3]))


# ---------------------------------------------------------------------------- the interval


def test_interval_contains_the_fid_is_reproducible_and_seeded() -> None:
    reference, fake = _pair(64, 8)
    first = fid_interval(reference, fake, resamples=50, seed=3)
    again = fid_interval(reference, fake, resamples=50, seed=3)
    other = fid_interval(reference, fake, resamples=50, seed=4)
    assert first.fid == pytest.approx(quality.fid(reference, fake), rel=1e-9)
    assert first.low < first.fid < first.high
    assert (first.low, first.high) == (again.low, again.high)
    assert (first.low, first.high) != (other.low, other.high)
    assert first.half_sample_fids.shape == (50,)
    assert first.recipe["resamples"] == 50 and first.recipe["half_size"] == 32
    assert first.recipe["seed"] == 3 and "half-sampling" in first.recipe["method"]


def test_interval_covers_the_expected_fid_with_about_the_true_width() -> None:
    """Simulation: Gaussian features with as many dimensions as samples (the regime of 1,000
    Inception features). The sampling distribution of FID_n is measured over fresh generated
    sets; intervals from single sets must cover its median about 95% of the time with about its
    width. A percentile bootstrap (rows with replacement) misses the set's own FID instead."""
    dims, n, trials = 32, 32, 20
    a, b = _mixing(dims, 5), _mixing(dims, 5) + 0.3 * _mixing(dims, 6)
    reference = as_statistics(_gaussian(5000, a, 0.0, 7))
    fresh = [quality.fid(reference, _gaussian(n, b, 0.2, 1000 + i)) for i in range(200)]
    true_low, true_high = np.percentile(fresh, [2.5, 97.5])
    covered, widths, bootstrap_misses = 0, [], 0
    for trial in range(trials):
        fake = _gaussian(n, b, 0.2, trial)
        found = fid_interval(reference, fake, resamples=100, seed=trial)
        covered += found.low <= np.median(fresh) <= found.high
        widths.append(found.high - found.low)
        subset_fid, rng = SubsetFID(reference, fake), np.random.default_rng(trial)
        boot = [subset_fid(rng.integers(0, n, n)) for _ in range(100)]
        low, high = np.percentile(boot, [2.5, 97.5])
        bootstrap_misses += not low <= found.fid <= high
    assert covered >= 17
    assert 0.7 < np.mean(widths) / (true_high - true_low) < 1.8
    assert bootstrap_misses >= 15


def test_interval_needs_samples_and_resamples() -> None:
    reference, fake = _pair(30, 4)
    with pytest.raises(UserError, match="at least 4 generated samples"):
        fid_interval(reference, fake[:3], resamples=20, seed=0)
    with pytest.raises(UserError, match="resamples >= 1"):
        fid_interval(reference, fake, resamples=0, seed=0)


def test_interval_of_the_mean_of_seeds() -> None:
    reference, fake = _pair(64, 8)
    other = _gaussian(64, _mixing(8, 0) + 0.5 * _mixing(8, 9), 0.1, 11)
    one = fid_interval(reference, fake, resamples=60, seed=2)
    two = fid_interval(reference, other, resamples=60, seed=2)
    low, high = interval_of_mean([one.fid, two.fid], [one.half_sample_fids,
                                                      two.half_sample_fids])
    mean = (one.fid + two.fid) / 2
    assert low < mean < high
    assert high - low < max(one.high - one.low, two.high - two.low)  # averaging narrows it
    assert interval_of_mean([one.fid], [one.half_sample_fids]) == pytest.approx(
        (one.low, one.high))


# ---------------------------------------------------------------------------- FID-infinity


def test_infinity_fit_recovers_a_line_in_one_over_n() -> None:
    sizes = [200, 400, 600, 800, 1000]
    fit = infinity_fit(sizes, [3.0 + 5000.0 / s for s in sizes])
    assert fit["intercept"] == pytest.approx(3.0) and fit["slope"] == pytest.approx(5000.0)
    assert fit["r2"] == pytest.approx(1.0)


def test_infinity_sizes_follow_the_official_spacing() -> None:
    official = infinity_sizes(50000, 15)
    assert official == list(np.linspace(5000, 50000, 15).astype(int))  # score_infinity.py
    small = infinity_sizes(1000, 15)
    assert small[0] == 200 and small[-1] == 1000 and len(small) == 15
    assert infinity_sizes(12, 15) == sorted(set(infinity_sizes(12, 15)))  # no repeats


def test_fid_infinity_is_closer_to_the_large_sample_fid() -> None:
    """FID falls with N (Chong and Forsyth 2020); the extrapolation lands nearer the FID of many
    samples than the FID of the set itself."""
    dims = 16
    a, b = _mixing(dims, 1), _mixing(dims, 1) + 0.3 * _mixing(dims, 2)
    reference = as_statistics(_gaussian(20000, a, 0.0, 3))
    fake = _gaussian(300, b, 0.2, 4)
    large = quality.fid(reference, _gaussian(20000, b, 0.2, 5))
    found = fid_infinity(reference, fake, points=15, seed=0)
    assert found.fid_at_n[300] == pytest.approx(quality.fid(reference, fake), rel=1e-9)
    assert sorted(found.fid_at_n) == found.recipe["sizes"] and len(found.fid_at_n) == 15
    assert found.value == found.fit["intercept"] and found.fit["slope"] > 0
    assert abs(found.value - large) < 0.5 * abs(quality.fid(reference, fake) - large)
    again = fid_infinity(reference, fake, points=15, seed=0)
    assert again.value == found.value


def test_fid_infinity_needs_samples() -> None:
    reference, fake = _pair(30, 4)
    with pytest.raises(UserError, match="FID-infinity needs at least 10"):
        fid_infinity(reference, fake[:9], points=15, seed=0)


def test_kid_subset_size_adapts_to_the_smaller_set() -> None:
    assert quality.kid_subset_size(1437, 1000) == 1000
    assert quality.kid_subset_size(1437, 200) == 200
    assert quality.kid_subset_size(50000, 50000) == 1000
