"""Tests of xdl.metrics: scores on hidden pixels."""

import math

import numpy as np
import pytest

from xdl import metrics
from xdl.errors import InputError


def test_hand_computed_tiny_case():
    t = np.array([1.0, 2, 3, 4])
    e = np.array([2.0, 2, 5, 4])
    s = metrics.scores(t, e, np.ones(4, dtype=bool))
    assert s["n"] == 4
    assert s["rmse"] == pytest.approx(math.sqrt(5 / 4))
    assert s["mae"] == pytest.approx(0.75)
    assert s["bias"] == pytest.approx(0.75)
    # Pearson by hand: t - 2.5 = [-1.5,-.5,.5,1.5], e - 3.25 = [-1.25,-1.25,1.75,.75]
    cov = (-1.5 * -1.25) + (-0.5 * -1.25) + (0.5 * 1.75) + (1.5 * 0.75)
    corr = cov / math.sqrt(5.0 * (1.5625 + 1.5625 + 3.0625 + 0.5625))
    assert s["corr"] == pytest.approx(corr)
    assert s["std_ratio"] == pytest.approx(math.sqrt(6.75 / 4) / math.sqrt(5 / 4))
    assert metrics.std_ratio(t, e, np.ones(4, dtype=bool)) == pytest.approx(s["std_ratio"])
    assert all(isinstance(v, float) for k, v in s.items() if k != "n") and isinstance(s["n"], int)


def test_where_selects_pixels():
    t = np.array([[1.0, 2], [3, 4]])
    e = np.array([[1.0, 9], [3, 6]])
    s = metrics.scores(t, e, np.array([[False, False], [True, True]]))
    assert s["n"] == 2 and s["bias"] == pytest.approx(1.0) and s["mae"] == pytest.approx(1.0)
    assert s["rmse"] == pytest.approx(math.sqrt(2))


def test_nan_pairs_are_skipped():
    t = np.array([1.0, np.nan, 3, 4, 5])
    e = np.array([2.0, 2, np.inf, 4, np.nan])
    s = metrics.scores(t, e, np.ones(5, dtype=bool))
    assert s["n"] == 2  # only (1, 2) and (4, 4) are finite pairs
    assert s["bias"] == pytest.approx(0.5) and s["mae"] == pytest.approx(0.5)
    assert s["rmse"] == pytest.approx(math.sqrt(0.5))
    assert s["corr"] == pytest.approx(1.0)


def test_empty_and_degenerate():
    t = np.arange(4.0)
    s = metrics.scores(t, t, np.zeros(4, dtype=bool))
    assert s["n"] == 0
    assert all(math.isnan(s[k]) for k in ("rmse", "mae", "bias", "corr", "std_ratio"))
    s = metrics.scores(np.full(3, np.nan), np.ones(3), np.ones(3, dtype=bool))
    assert s["n"] == 0 and math.isnan(s["rmse"])
    s = metrics.scores(np.ones(3), np.array([1.0, 2, 3]), np.ones(3, dtype=bool))  # constant truth
    assert s["n"] == 3 and math.isnan(s["corr"]) and math.isnan(s["std_ratio"])
    assert math.isnan(metrics.std_ratio(t, t, np.zeros(4, dtype=bool)))


def test_perfect_estimate_and_float32():
    rng = np.random.default_rng(0)
    t = rng.normal(size=(3, 20, 20)).astype(np.float32)
    w = rng.random(t.shape) < 0.3
    s = metrics.scores(t, t.copy(), w)
    assert s["rmse"] == 0 and s["bias"] == 0 and s["corr"] == pytest.approx(1.0)
    assert s["std_ratio"] == pytest.approx(1.0) and s["n"] == int(w.sum())


def test_bad_input():
    with pytest.raises(InputError, match="bool"):
        metrics.scores(np.ones(3), np.ones(3), np.ones(3))
    with pytest.raises(InputError, match="shape"):
        metrics.scores(np.ones(3), np.ones(4), np.ones(3, dtype=bool))


# ----------------------------------------------------------------------------- sigma scores (#16)

def test_coverage_and_spread_skill_by_hand():
    t = np.zeros(5)
    e = np.array([0.5, -1.5, 2.5, 0.0, 4.0])
    s = np.array([1.0, 1.0, 2.0, 1.0, 1.0])
    assert metrics.coverage(t, e, s) == pytest.approx(2 / 5)         # 0.5 <= 1 and 0 <= 1 only
    assert metrics.coverage(t, e, s, k=2.0) == pytest.approx(4 / 5)  # all but 4 > 2
    rmse = math.sqrt((0.25 + 2.25 + 6.25 + 0 + 16) / 5)
    assert metrics.spread_skill(t, e, s) == pytest.approx(math.sqrt((1 + 1 + 4 + 1 + 1) / 5) / rmse)


def test_gaussian_crps_matches_the_closed_form_and_limits():
    # z = 0: sigma (2 phi(0) - 1/sqrt(pi)); z = 1, sigma 1: (2 Phi(1) - 1) + 2 phi(1) - 1/sqrt(pi)
    phi = lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    Phi = lambda z: 0.5 * (1 + math.erf(z / math.sqrt(2)))  # noqa: E731
    assert metrics.gaussian_crps(np.array([3.0]), np.array([3.0]), np.array([2.0])) == pytest.approx(
        2 * (2 * phi(0) - 1 / math.sqrt(math.pi)))
    assert metrics.gaussian_crps(np.array([1.0]), np.array([0.0]), np.array([1.0])) == pytest.approx(
        (2 * Phi(1) - 1) + 2 * phi(1) - 1 / math.sqrt(math.pi))
    # Symmetric in the error's sign; mean over pixels; sigma -> 0 is the absolute error.
    two = metrics.gaussian_crps(np.array([1.0, -1.0]), np.zeros(2), np.ones(2))
    assert two == pytest.approx(metrics.gaussian_crps(np.array([1.0]), np.array([0.0]), np.array([1.0])))
    assert metrics.gaussian_crps(np.array([2.0]), np.array([0.5]), np.array([0.0])) == pytest.approx(1.5)
    assert metrics.gaussian_crps(np.array([2.0]), np.array([0.5]), np.array([1e-9])) == pytest.approx(1.5)


def test_crps_against_a_numerical_integral():
    """CRPS = integral of (F(x) - 1[x >= y])^2 dx, by quadrature on a fine grid."""
    from scipy.stats import norm

    mu, sigma, y = 0.3, 0.7, 1.1
    x = np.linspace(mu - 12 * sigma, mu + 12 * sigma, 400_001)
    integrand = (norm.cdf(x, mu, sigma) - (x >= y)) ** 2
    numeric = float(np.sum(integrand) * (x[1] - x[0]))
    assert metrics.gaussian_crps(np.array([y]), np.array([mu]), np.array([sigma])) == pytest.approx(numeric, rel=1e-4)


def test_uncertainty_scores_where_nan_and_const():
    t = np.array([[0.0, 0.0], [0.0, np.nan]])
    e = np.array([[1.0, -2.0], [0.5, 0.0]])
    s = np.array([[1.0, 1.0], [np.nan, 1.0]])
    u = metrics.uncertainty_scores(t, e, s, np.ones((2, 2), bool))
    # Only the first row counts (NaN sigma, NaN truth dropped): errors 1, 2; sigma 1, 1.
    assert u["coverage1"] == 0.5 and u["coverage2"] == 1.0
    assert u["spread_skill"] == pytest.approx(1 / math.sqrt(2.5))
    assert u["crps"] == pytest.approx(metrics.gaussian_crps([0.0, 0.0], [1.0, -2.0], [1.0, 1.0]))
    assert u["crps_const"] == pytest.approx(metrics.gaussian_crps([0.0, 0.0], [1.0, -2.0], [math.sqrt(2.5)] * 2))
    empty = metrics.uncertainty_scores(t, e, s, np.zeros((2, 2), bool))
    assert all(math.isnan(v) for v in empty.values())
    with pytest.raises(InputError, match="sigma must be a numeric"):
        metrics.coverage(t, e, np.array([["a", "b"], ["c", "d"]]))


def test_reliability_is_the_coverage_at_each_level():
    rng = np.random.default_rng(0)
    sigma = rng.uniform(0.5, 2.0, 200_000)
    err = sigma * rng.standard_normal(sigma.size)  # calibrated by construction
    levels = np.arange(1, 10) / 10
    observed = metrics.reliability(np.zeros_like(err), err, sigma, levels=levels)
    np.testing.assert_allclose(observed, levels, atol=0.005)
    assert observed[3] == pytest.approx(metrics.coverage(np.zeros_like(err), err, sigma, k=0.5244005127080407))


def test_sigma_skill_and_tail_ratio_by_hand_and_for_gaussian_errors():
    # by hand: errors 1, 2, 4 with sigmas 4, 2, 1 -> log sigma = -log error: correlation -1
    t, e, s = np.zeros(3), np.array([1.0, -2.0, 4.0]), np.array([4.0, 2.0, 1.0])
    assert metrics.sigma_skill(t, e, s) == pytest.approx(-1.0)
    z = np.abs(e) / s  # 0.25, 1, 4: linear quantiles 1 + 0.9 * 3 = 3.7 (95%) and 1 + 0.3654 * 3 (68.27%)
    assert metrics.tail_ratio(t, e, s) == pytest.approx(np.quantile(z, 0.95) / np.quantile(z, 0.6827))
    assert metrics.tail_ratio(t, e, s) == pytest.approx(3.7 / 2.0962, rel=1e-6)
    # Gaussian errors of a sigma whose log spreads by 1: tail ratio 1.96; skill 1 / sqrt(1 + pi^2 / 8)
    rng = np.random.default_rng(3)
    sigma = np.exp(rng.standard_normal(400_000))
    err = sigma * rng.standard_normal(sigma.size)
    zeros = np.zeros_like(err)
    assert metrics.tail_ratio(zeros, err, sigma) == pytest.approx(metrics.GAUSSIAN_TAIL_RATIO, rel=0.01)
    assert metrics.sigma_skill(zeros, err, sigma) == pytest.approx(1 / math.sqrt(1 + math.pi ** 2 / 8), abs=0.01)
    # a sigma that knows nothing of where the errors are: skill near 0; heavy tails: ratio above 1.96
    assert abs(metrics.sigma_skill(zeros, err, rng.permutation(sigma))) < 0.01
    assert metrics.tail_ratio(zeros, err, np.ones_like(err)) > 3
    u = metrics.uncertainty_scores(zeros, err, sigma)
    assert u["sigma_skill"] == metrics.sigma_skill(zeros, err, sigma) and u["tail_ratio"] == metrics.tail_ratio(zeros, err, sigma)
