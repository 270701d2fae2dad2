"""Tests of xdl.regression_baselines: regression of the target on context fields."""

import time

import numpy as np
import pytest

from xdl import baselines, masks
from xdl import regression_baselines as rb
from xdl.errors import InputError

FILLERS = [rb.fill_regression, rb.fill_local_regression]


def context_fields(ny=80, nx=90, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:ny, 0:nx]
    a = np.sin(x / 6.0) + np.cos(y / 9.0) + 0.05 * rng.standard_normal((ny, nx))
    b = np.cos((x + y) / 11.0) + 0.05 * rng.standard_normal((ny, nx))
    return a, b


def gaps(shape, seed=1):
    rng = np.random.default_rng(seed)
    return masks.scanlines(shape, 0.08, rng) & masks.blocks(shape, 0.05, rng)


def rmse(f, t, where):
    return float(np.sqrt(np.mean((f - t)[where] ** 2)))


@pytest.mark.parametrize("fill", FILLERS)
def test_affine_copy_is_exact(fill):
    a, b = context_fields()
    t = 3.0 * a - 0.5 * b + 7.0
    ok = gaps(t.shape)
    out = fill(t, ok, [a, b])
    assert rmse(out, t, ~ok) < 1e-5 * t.std()
    # The interpolators are far off on the same gaps: the context carries the information.
    assert rmse(baselines.fill_biharmonic(t, ok), t, ~ok) > 1e3 * rmse(out, t, ~ok)


@pytest.mark.parametrize("fill", FILLERS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_valid_values_bit_identical_and_dtype(fill, dtype):
    a, b = context_fields()
    t = (2.0 * a + b * b + 1.2345678).astype(dtype)
    ok = gaps(t.shape)
    out = fill(t, ok, [a, b])
    assert out.dtype == dtype and out.shape == t.shape
    assert np.array_equal(out[ok], t[ok])
    assert np.isfinite(out).all()


def test_local_regression_follows_a_drifting_relation():
    a, _ = context_fields(150, 600)
    x = np.arange(600)[None, :]
    t = (1.0 + x / 200.0) * a + 0.02 * x  # the slope on the context grows 4x across the scene
    ok = gaps(t.shape)
    glob = rmse(rb.fill_regression(t, ok, [a]), t, ~ok)
    local = rmse(rb.fill_local_regression(t, ok, [a]), t, ~ok)
    assert local < 0.1 * glob  # measured 0.25 vs 3.49


def test_global_fallback_where_a_block_has_too_few_pixels():
    a, b = context_fields(60, 60)
    t = 2.0 * a + b
    ok = np.ones(t.shape, bool)
    ok[:, :30] = False           # the left half: no valid target pixel within the local window
    ok[::7, 30:] = False
    out = rb.fill_local_regression(t, ok, [a, b], block=10, radius=5)
    # Blocks on the left take the global fit, which an exact affine relation makes exact.
    assert rmse(out, t, ~ok) < 1e-5 * t.std()  # ridge-limited
    # Fewer than 3 (K + 1) local pixels also means the global fit: min_pixels above every window.
    same = rb.fill_local_regression(t, ok, [a, b], block=10, radius=5, min_pixels=10 ** 6)
    np.testing.assert_allclose(same, rb.fill_regression(t, ok, [a, b]), rtol=0, atol=1e-9)


@pytest.mark.parametrize("fill", FILLERS)
def test_biharmonic_where_the_context_is_missing(fill):
    a, b = context_fields()
    t = 3.0 * a + b
    ok = gaps(t.shape)
    a_gappy, b_gappy = a.copy(), b.copy()
    hole = np.zeros(t.shape, bool)
    hole[30:40, 20:50] = True
    a_gappy[hole] = np.nan
    b_gappy[hole] = np.nan       # no context at all there
    out = fill(t, ok, [a_gappy, b_gappy])
    there = hole & ~ok
    expect = baselines.fill_biharmonic(np.where(~hole | ok, out, np.nan), ~there, domain=there)
    np.testing.assert_allclose(out[there], expect[there], rtol=0, atol=1e-9)
    assert rmse(out, t, ~ok & ~hole) < 1e-5  # elsewhere: still the exact regression


def test_one_fit_per_set_of_present_fields():
    """A pixel regresses on the fields it has: one field missing there uses the other alone."""
    a, b = context_fields()
    t = 2.0 * a + 1.0
    ok = gaps(t.shape)
    b_gappy = b.copy()
    b_gappy[::3] = np.nan        # b (irrelevant anyway) missing on every third row
    out = rb.fill_regression(t, ok, [a, b_gappy])
    assert rmse(out, t, ~ok) < 1e-5 * t.std()  # ridge-limited


def test_time_neighbour_missing_in_a_whole_sample_is_dropped():
    a, _ = context_fields(40, 50)
    t = np.stack([2 * a, 3 * a + 1])
    prev = np.stack([np.full(a.shape, np.nan), a])  # no t-1 before the first step
    ok = gaps(t.shape[1:])[None].repeat(2, 0)
    out = rb.fill_regression(t, ok, [prev, np.broadcast_to(a, t.shape)])
    assert rmse(out, t, ~ok) < 1e-5 * t.std()  # ridge-limited


def test_domain_and_static_context():
    a, b = context_fields()
    t = np.stack([a + b, 2 * a - b])
    ok = np.broadcast_to(gaps(a.shape), t.shape)
    dom = np.ones(a.shape, bool)
    dom[:, :10] = False
    out = rb.fill_local_regression(t, ok, [a, b], domain=dom)  # 2-D context fields serve every sample
    assert np.isnan(out[:, :, :10][~ok[:, :, :10]]).all()
    inside = ~ok & dom
    assert rmse(out, t, inside) < 1e-5


def test_errors_name_the_fix():
    a, _ = context_fields()
    ok = gaps(a.shape)
    with pytest.raises(InputError, match="at least one context field"):
        rb.fill_regression(a, ok, [])
    with pytest.raises(InputError, match="does not broadcast"):
        rb.fill_regression(a, ok, [a[:10]])
    with pytest.raises(InputError, match="list of arrays"):
        rb.fill_regression(a, ok, a)
    with pytest.raises(InputError, match="block"):
        rb.fill_local_regression(a, ok, [a], block=0)
    with pytest.raises(InputError, match="unknown context baseline"):
        rb.get("kriging")


def test_speed_500x500():
    ny = nx = 500
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:ny, 0:nx] / 50.0
    ctx = [np.sin(x * (k + 1)) + np.cos(y * (k + 2)) for k in range(4)]
    t = sum((1 + 0.1 * k * x) * c for k, c in enumerate(ctx)) + 0.01 * rng.standard_normal((ny, nx))
    ok = gaps((ny, nx))
    start = time.perf_counter()
    out = rb.fill_local_regression(t, ok, ctx)
    seconds = time.perf_counter() - start
    assert seconds < 5.0, seconds  # about 0.3 s on 2 idle cores; a 1500 x 2500 scene takes 1-3 s
    assert rmse(out, t, ~ok) < 0.5 * rmse(rb.fill_regression(t, ok, ctx), t, ~ok)
