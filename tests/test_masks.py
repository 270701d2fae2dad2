"""Tests of xdl.masks: gap generators (True = valid, False = hidden)."""

import numpy as np
import pytest

from xdl import masks
from xdl.errors import InputError


def hidden_share(m):
    return float(1 - m.mean())


@pytest.mark.parametrize("kind", masks.KINDS)
@pytest.mark.parametrize("shape", [(64, 64), (96, 160)])
def test_dtype_shape_fraction(kind, shape):
    for f in (0.05, 0.25):
        for seed in range(4):
            m = masks.make(kind, shape, f, rng=seed)
            assert m.dtype == bool and m.shape == shape
            assert abs(hidden_share(m) - f) <= 0.3 * f, (kind, f, seed, hidden_share(m))


@pytest.mark.parametrize("kind", masks.KINDS)
def test_default_fraction_and_direct_call(kind):
    gen = getattr(masks, kind)
    m = gen((80, 80), rng=7)
    default = {"irregular": 0.25, "scanlines": 0.1, "blocks": 0.1, "clouds": 0.3}[kind]
    assert abs(hidden_share(m) - default) <= 0.3 * default
    assert np.array_equal(m, masks.make(kind, (80, 80), rng=7))


@pytest.mark.parametrize("kind", masks.KINDS)
def test_deterministic_by_seed(kind):
    a = masks.make(kind, (3, 48, 40), 0.2, rng=123)
    b = masks.make(kind, (3, 48, 40), 0.2, rng=123)
    c = masks.make(kind, (3, 48, 40), 0.2, rng=124)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    g1, g2 = np.random.default_rng(5), np.random.default_rng(5)
    assert np.array_equal(masks.make(kind, (32, 32), 0.2, rng=g1), masks.make(kind, (32, 32), 0.2, rng=g2))


@pytest.mark.parametrize("kind", masks.KINDS)
def test_leading_axes_independent(kind):
    m = masks.make(kind, (2, 3, 40, 50), 0.2, rng=0)
    assert m.shape == (2, 3, 40, 50)
    flat = m.reshape(6, 40, 50)
    for k in range(6):
        assert abs(hidden_share(flat[k]) - 0.2) <= 0.06
        for j in range(k):
            assert not np.array_equal(flat[k], flat[j])


def test_extreme_fractions():
    for kind in masks.KINDS:
        assert masks.make(kind, (20, 30), 0.0, rng=0).all()
        assert not masks.make(kind, (20, 30), 1.0, rng=0).any()


def test_scanlines_are_mostly_full_rows():
    for seed in range(5):
        m = masks.scanlines((200, 300), fraction=0.1, rng=seed)
        hid = ~m
        full_rows = hid.all(axis=1)
        share_in_full_rows = hid[full_rows].sum() / hid.sum()
        assert share_in_full_rows >= 0.6
        # thin bands: most runs of hidden full rows are at most a few rows thick
        edges = np.diff(np.r_[0, full_rows.astype(int), 0])
        runs = np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)
        assert np.median(runs) <= 4


def test_scanlines_max_lines_limits_band_thickness():
    m = masks.scanlines((300, 100), fraction=0.2, rng=0, max_lines=2)
    rows = (~m).any(axis=1)
    assert rows.sum() > 0
    with pytest.raises(InputError, match="max_lines"):
        masks.scanlines((30, 30), max_lines=0)


def test_blocks_are_rectangles():
    m = masks.blocks((100, 100), fraction=0.05, rng=1)
    # the largest hidden piece mostly fills its bounding box (overlapping rectangles)
    from scipy import ndimage

    lab, n = ndimage.label(~m)
    sizes = ndimage.sum(~m, lab, range(1, n + 1))
    k = int(np.argmax(sizes)) + 1
    sl = ndimage.find_objects(lab)[k - 1]
    assert (lab[sl] == k).mean() >= 0.5


def test_clouds_exact_fraction_and_scale():
    m = masks.clouds((60, 70), fraction=0.37, rng=3)
    assert int((~m).sum()) == round(0.37 * 60 * 70)
    # a larger scale gives fewer, bigger cloud pieces
    from scipy import ndimage

    big = ndimage.label(~masks.clouds((128, 128), 0.3, rng=0, scale=30))[1]
    small = ndimage.label(~masks.clouds((128, 128), 0.3, rng=0, scale=2))[1]
    assert big < small


def test_irregular_is_stroky_not_speckle():
    from scipy import ndimage

    m = masks.irregular((128, 128), fraction=0.2, rng=0)
    n = ndimage.label(~m)[1]
    assert n < 40  # a few strokes, not thousands of isolated pixels


def _find_shift(src2d, out2d):
    """Offsets (oy, ox) such that out == src tiled and shifted by them, or None."""
    sy, sx = src2d.shape
    ny, nx = out2d.shape
    for oy in range(sy):
        for ox in range(sx):
            rows, cols = (oy + np.arange(ny)) % sy, (ox + np.arange(nx)) % sx
            if np.array_equal(src2d[np.ix_(rows, cols)], out2d):
                return oy, ox
    return None


def test_observed_copies_source_pattern():
    src = masks.make("clouds", (4, 30, 40), 0.3, rng=9)
    # crop (smaller), tile (larger) and mixed
    for shape in [(20, 25), (45, 70), (12, 55)]:
        m = masks.observed(src, shape, rng=1)
        assert m.shape == shape and m.dtype == bool
        assert any(_find_shift(src[k], m) is not None for k in range(4))
    # cropping never wraps around
    m = masks.observed(src, (20, 25), rng=2)
    hits = [(k, _find_shift(src[k], m)) for k in range(4)]
    oy, ox = next(s for k, s in hits if s is not None)
    assert oy + 20 <= 30 and ox + 25 <= 40


def test_observed_defaults_and_leading_axes():
    src = masks.make("blocks", (3, 16, 16), 0.3, rng=0)
    whole = masks.observed(src, rng=0)
    assert whole.shape == (16, 16)
    assert any(np.array_equal(whole, src[k]) for k in range(3))
    m = masks.observed(src, (5, 16, 16), rng=0)
    assert m.shape == (5, 16, 16)
    for k in range(5):
        assert any(np.array_equal(m[k], src[j]) for j in range(3))
    assert np.array_equal(m, masks.observed(src, (5, 16, 16), rng=0))


def test_observed_bad_input():
    with pytest.raises(InputError, match="bool"):
        masks.observed(np.ones((4, 4)), (4, 4))
    with pytest.raises(InputError, match="axes"):
        masks.observed(np.ones(4, dtype=bool), (4, 4))


def test_unknown_kind_and_bad_args():
    with pytest.raises(InputError, match="irregular.*scanlines.*blocks.*clouds"):
        masks.make("holes", (8, 8))
    with pytest.raises(InputError, match="scale"):
        masks.make("blocks", (8, 8), scale=3)
    with pytest.raises(InputError, match="fraction"):
        masks.make("clouds", (8, 8), 1.5)
    with pytest.raises(InputError, match="shape"):
        masks.make("clouds", (8,))
    with pytest.raises(InputError, match="rng"):
        masks.make("clouds", (8, 8), rng="seed")
    assert masks.KINDS == ("irregular", "scanlines", "blocks", "clouds")
