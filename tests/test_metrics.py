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
