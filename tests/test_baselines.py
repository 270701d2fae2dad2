"""Tests of xdl.baselines: classical gap fillers."""

import time

import numpy as np
import pytest

from xdl import baselines, masks
from xdl.errors import InputError

NAMES = list(baselines.BASELINES)


def ramp(ny=40, nx=50, dtype=np.float64):
    y, x = np.mgrid[0:ny, 0:nx]
    return (0.7 * x - 1.3 * y + 5.0).astype(dtype)


def smooth(ny=40, nx=50, dtype=np.float64):
    y, x = np.mgrid[0:ny, 0:nx]
    return (np.sin(x / 7.0) + np.cos(y / 5.0)).astype(dtype)


def interior_holes(ny=40, nx=50):
    ok = np.ones((ny, nx), dtype=bool)
    ok[5:9, 6:14] = False
    ok[20, 3:45] = False
    ok[30:34, 30:33] = False
    ok[12, 40] = False
    return ok


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_valid_values_bit_identical(name, dtype):
    v = smooth(dtype=dtype) * np.array(1.2345678, dtype=dtype)
    ok = masks.make("irregular", v.shape, 0.2, rng=0)
    out = baselines.get(name)(v, ok)
    assert out.dtype == v.dtype and out.shape == v.shape
    assert np.array_equal(out[ok], v[ok])
    assert np.isfinite(out).all()
    assert np.array_equal(v, smooth(dtype=dtype) * np.array(1.2345678, dtype=dtype))  # input untouched


def test_linear_recovers_ramp_exactly():
    v, ok = ramp(), interior_holes()
    out = baselines.fill_linear(np.where(ok, v, np.nan), ok)
    assert np.abs(out - v).max() < 1e-5
    out32 = baselines.fill_linear(v.astype(np.float32), ok)
    assert np.abs(out32 - v).max() < 1e-4


def test_linear_ramp_with_gaps_touching_edges():
    v = ramp()
    ok = masks.scanlines(v.shape, 0.15, rng=4)  # full-width bands touch both side edges
    ok[[0, -1]] = True  # a band on the first/last row would lie outside the hull (nearest)
    out = baselines.fill_linear(v, ok)
    assert np.abs(out - v).max() < 1e-5


def test_biharmonic_recovers_ramp_well():
    v, ok = ramp(), interior_holes()
    out = baselines.fill_biharmonic(v, ok)
    assert np.abs(out - v).max() < 1e-3


def test_nearest_takes_neighbour_values():
    v = np.array([[1.0, 2.0, 3.0, 4.0, 5.0]])
    ok = np.array([[True, False, False, False, True]])
    assert baselines.fill_nearest(v, ok).tolist()[0][:2] == [1.0, 1.0]
    assert baselines.fill_nearest(v, ok)[0, 3] == 5.0


def test_smooth_field_quality_order():
    v = smooth(64, 64)
    ok = masks.make("blocks", v.shape, 0.1, rng=3)
    err = {n: np.sqrt(np.mean((baselines.get(n)(v, ok) - v)[~ok] ** 2)) for n in NAMES}
    assert err["biharmonic"] < err["nearest"] and err["linear"] < err["nearest"]


@pytest.mark.parametrize("name", NAMES)
def test_domain_respected(name):
    v = smooth()
    ok = masks.make("clouds", v.shape, 0.3, rng=1)
    dom = np.zeros(v.shape, dtype=bool)
    dom[:, :30] = True
    out = baselines.get(name)(v, ok, domain=dom)
    assert np.isnan(out[~ok & ~dom]).all()  # outside-domain gaps stay NaN
    assert np.array_equal(out[ok], v[ok])  # valid values kept, also outside the domain
    assert np.isfinite(out[dom]).all()  # nothing left NaN inside the domain


@pytest.mark.parametrize("name", NAMES)
def test_domain_with_land_nan_and_leading_axes(name):
    base = smooth()
    v = np.stack([base, 2 * base, base + 1])
    land = np.zeros(base.shape, dtype=bool)
    land[:, 42:] = True
    land[15:25, 20:26] = True
    v[:, land] = np.nan
    ok = ~land & masks.make("blocks", v.shape, 0.15, rng=2)
    out = baselines.get(name)(v, ok, domain=~land)
    assert np.isnan(out[:, land]).all()
    assert np.isfinite(out[:, ~land]).all()
    assert np.array_equal(out[ok], v[ok])
    # each slice filled on its own: same as filling it alone
    for k in range(3):
        alone = baselines.get(name)(v[k], ok[k], domain=~land)
        assert np.array_equal(alone, out[k], equal_nan=True)


@pytest.mark.parametrize("name", NAMES)
def test_no_valid_pixel_leaves_nan(name):
    v = np.full((2, 6, 6), np.nan)
    ok = np.zeros(v.shape, dtype=bool)
    ok[1, 2, 2] = True
    v[1, 2, 2] = 3.0
    out = baselines.get(name)(v, ok)
    assert np.isnan(out[0]).all()
    assert np.isfinite(out[1]).all()


@pytest.mark.parametrize("name", NAMES)
def test_nan_marked_valid_is_kept_not_used(name):
    v = smooth(20, 20)
    v[3, 3] = np.nan
    ok = np.ones(v.shape, dtype=bool)
    ok[3, 4:6] = False
    out = baselines.get(name)(v, ok)
    assert np.isnan(out[3, 3]) and np.isfinite(out[3, 4:6]).all()


def test_get_and_bad_input():
    assert baselines.get("linear") is baselines.fill_linear
    with pytest.raises(InputError, match="linear.*nearest.*biharmonic"):
        baselines.get("kriging")
    v = smooth()
    with pytest.raises(InputError, match="float"):
        baselines.fill_nearest(v.astype(int), np.ones(v.shape, bool))
    with pytest.raises(InputError, match="bool"):
        baselines.fill_nearest(v, np.ones(v.shape))
    with pytest.raises(InputError, match="shape"):
        baselines.fill_nearest(v, np.ones((3, 3), bool))
    with pytest.raises(InputError, match="domain"):
        baselines.fill_nearest(v, np.ones(v.shape, bool), domain=np.ones((3, 3), bool))


@pytest.mark.slow
def test_linear_is_fast_on_large_scene():
    ny, nx = 1500, 2500
    v = smooth(ny, nx, np.float32)
    ok = masks.scanlines((ny, nx), 0.05, rng=0)
    t = time.perf_counter()
    out = baselines.fill_linear(v, ok)
    elapsed = time.perf_counter() - t
    assert np.isfinite(out).all() and np.array_equal(out[ok], v[ok])
    assert elapsed < 60  # typically ~3 s; only catches a fall back to a full-scene solve
