"""Gap generators for training and evaluating gap-filling models.

Pure numpy/scipy: no torch, no xarray.

Convention: a mask is a boolean array that is **True where a value is valid** (kept) and
**False where it is hidden** (a gap). Every generator takes

* ``shape`` -- a tuple whose last two axes are ``(y, x)``; each leading index gets its own,
  independently drawn 2-D mask;
* ``fraction`` -- the share of pixels to hide (met approximately; ``clouds`` meets it exactly);
* ``rng`` -- a :class:`numpy.random.Generator` or an int seed (same seed, same mask);

and returns a ``bool`` array of ``shape``.

>>> import numpy as np
>>> from xdl import masks
>>> m = masks.make("clouds", (2, 64, 64), fraction=0.3, rng=0)
>>> m.dtype, m.shape, round(float(1 - m.mean()), 2)
(dtype('bool'), (2, 64, 64), 0.3)
"""

from __future__ import annotations

import inspect
import math
import numbers

import numpy as np
from scipy import ndimage

from .errors import InputError

__all__ = ["irregular", "scanlines", "blocks", "clouds", "observed", "make", "KINDS"]

KINDS = ("irregular", "scanlines", "blocks", "clouds")


# --------------------------------------------------------------------------- helpers


def check_seed(seed, name: str = "seed") -> int:
    """``seed`` as a whole number from 0 to 2**63 - 1 (what numpy's generators and a netCDF
    attribute both take); an :class:`~xdl.errors.InputError` naming ``name`` otherwise (-1 met
    numpy's "expected non-negative integer", 2**64 a traceback writing the report; probe)."""
    whole = isinstance(seed, (int, np.integer)) and not isinstance(seed, (bool, np.bool_))
    if not whole or not 0 <= int(seed) < 2 ** 63:
        raise InputError(f"{name}={seed!r}: give a whole number from 0 to 2**63 - 1.")
    return int(seed)


def _rng(rng) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, (numbers.Integral, np.random.SeedSequence)):
        return np.random.default_rng(rng)
    raise InputError(f"rng must be a numpy.random.Generator, an int seed or None, got {type(rng).__name__}; "
                     "pass e.g. rng=0 or rng=np.random.default_rng(0)")


def _shape(shape) -> tuple[int, ...]:
    if isinstance(shape, numbers.Integral):
        shape = (shape,)
    try:
        out = tuple(int(s) for s in shape)
        ok = all(isinstance(s, numbers.Integral) for s in shape)
    except TypeError:
        ok = False
    if not ok:
        raise InputError(f"shape must be a tuple of ints like (ny, nx) or (n, ny, nx), got {shape!r}")
    if len(out) < 2:
        raise InputError(f"shape must have at least two axes (y, x), got {out}; pass e.g. (ny, nx)")
    if any(s <= 0 for s in out):
        raise InputError(f"shape must have positive sizes, got {out}")
    return out


def _fraction(fraction) -> float:
    try:
        f = float(fraction)
    except (TypeError, ValueError):
        raise InputError(f"fraction must be a number in [0, 1], got {fraction!r}") from None
    if not (0.0 <= f <= 1.0):  # also rejects NaN
        raise InputError(f"fraction must be in [0, 1] (the share of pixels to hide), got {fraction!r}")
    return f


def _stack(shape, gen2d) -> np.ndarray:
    """Draw one 2-D mask per leading index; the shared rng keeps them independent."""
    out = np.empty(shape, dtype=bool)
    for idx in np.ndindex(*shape[:-2]):
        out[idx] = gen2d(*shape[-2:])
    return out


def _hide_rectangles(ny, nx, fraction, g, size) -> np.ndarray:
    """A (ny, nx) valid mask with rectangles hidden at random places until ``fraction`` is hidden;
    ``size(ny, nx, remaining)`` draws each one's (height, width) before its place is drawn."""
    hidden = np.zeros((ny, nx), dtype=bool)
    target = int(round(fraction * ny * nx))
    count = 0
    while count < target:
        h, w = size(ny, nx, target - count)
        y0, x0 = int(g.integers(0, ny - h + 1)), int(g.integers(0, nx - w + 1))
        win = hidden[y0:y0 + h, x0:x0 + w]
        count += int(win.size - np.count_nonzero(win))
        win[...] = True
    return ~hidden


def _capsule(hidden: np.ndarray, p0, p1, r: float) -> int:
    """Hide the pixels within ``r`` of segment p0-p1 (a thick line with round caps).

    Returns how many pixels became newly hidden, so callers can track coverage cheaply.
    """
    ny, nx = hidden.shape
    y0, x0 = p0
    y1, x1 = p1
    ya, yb = max(0, int(math.floor(min(y0, y1) - r))), min(ny, int(math.ceil(max(y0, y1) + r)) + 1)
    xa, xb = max(0, int(math.floor(min(x0, x1) - r))), min(nx, int(math.ceil(max(x0, x1) + r)) + 1)
    if ya >= yb or xa >= xb:
        return 0
    yy, xx = np.mgrid[ya:yb, xa:xb].astype(float)
    dy, dx = y1 - y0, x1 - x0
    ll = dy * dy + dx * dx
    t = 0.0 if ll == 0 else np.clip(((yy - y0) * dy + (xx - x0) * dx) / ll, 0.0, 1.0)
    d2 = (yy - (y0 + t * dy)) ** 2 + (xx - (x0 + t * dx)) ** 2
    sel = d2 <= r * r
    win = hidden[ya:yb, xa:xb]
    new = int(np.count_nonzero(sel & ~win))
    win |= sel
    return new


# --------------------------------------------------------------------------- generators


def irregular(shape, fraction=0.25, rng=None) -> np.ndarray:
    """Free-form brush-stroke gaps, in the spirit of Liu et al. (2018) irregular masks.

    Each stroke is a random walk of thick line segments (random width, length and turning
    angle, all scaled to the image size); strokes are added one segment at a time until
    ``fraction`` of the pixels is hidden, so the overshoot is at most one segment.

    >>> m = irregular((128, 128), fraction=0.25, rng=1)
    >>> bool(0.2 < 1 - m.mean() < 0.3)
    True
    """
    shape, f, g = _shape(shape), _fraction(fraction), _rng(rng)

    def one(ny, nx):
        hidden = np.zeros((ny, nx), dtype=bool)
        target = int(round(f * ny * nx))
        s = min(ny, nx)
        count = 0
        while count < target:
            r = g.uniform(max(0.5, 0.01 * s), max(1.5, 0.04 * s))  # brush radius
            y, x = g.uniform(0, ny), g.uniform(0, nx)
            angle = g.uniform(0, 2 * np.pi)
            for _ in range(int(g.integers(2, 10))):
                step = g.uniform(max(2.0, 0.05 * s), max(4.0, 0.2 * s))
                angle += g.normal(0.0, 0.8)  # meandering walk, not straight lines
                # reflect at the border so strokes stay inside instead of piling up on edges
                y2, x2 = y + step * np.sin(angle), x + step * np.cos(angle)
                if not 0 <= y2 < ny:
                    angle = -angle
                    y2 = min(max(y2, 0.0), ny - 1.0)
                if not 0 <= x2 < nx:
                    angle = np.pi - angle
                    x2 = min(max(x2, 0.0), nx - 1.0)
                count += _capsule(hidden, (y, x), (y2, x2), r)
                y, x = y2, x2
                if count >= target:
                    break
        return ~hidden

    return _stack(shape, one)


def scanlines(shape, fraction=0.1, rng=None, max_lines=8) -> np.ndarray:
    """GOES-ABI-like scan-line dropouts: horizontal bands of hidden rows.

    Most bands span the full width and are 1 to 4 rows thick; about one band in seven is
    wider (up to ``max_lines`` rows), and about one in eight covers only part of the width
    (a partial line segment). Bands are placed at random rows until ``fraction`` is hidden;
    the last band is trimmed so the target is met closely.

    >>> m = scanlines((100, 80), fraction=0.1, rng=2)
    >>> hidden_rows = (~m).all(axis=1).sum()  # mostly whole rows
    >>> bool(hidden_rows >= 5)
    True
    """
    shape, f, g = _shape(shape), _fraction(fraction), _rng(rng)
    if not isinstance(max_lines, numbers.Integral) or max_lines < 1:
        raise InputError(f"max_lines (widest band, in rows) must be an int >= 1, got {max_lines!r}")
    max_lines = int(max_lines)

    def band(ny, nx, remaining):
        if g.random() < 0.15 and max_lines > 4:
            thick = int(g.integers(5, max_lines + 1))
        else:
            thick = int(min(g.geometric(0.5), 4, max_lines))
        thick = min(thick, ny)
        if g.random() < 0.12:  # partial-width segment
            length = int(g.integers(max(1, nx // 5), max(2, (4 * nx) // 5) + 1))
        else:
            length = nx
        # trim the last band so we do not overshoot by a whole band
        if thick * length > remaining:
            if remaining >= length:
                thick = remaining // length
            else:
                thick, length = 1, remaining
        return thick, length

    return _stack(shape, lambda ny, nx: _hide_rectangles(ny, nx, f, g, band))


def blocks(shape, fraction=0.1, rng=None) -> np.ndarray:
    """Missing rectangular blocks of random sizes (lost data packets, swath gaps).

    Block sides are drawn log-uniformly between ~3 % and ~30 % of each image side; blocks
    are added until ``fraction`` is hidden, the last one shrunk to fit the remainder.

    >>> m = blocks((64, 64), fraction=0.1, rng=3)
    >>> bool(0.07 < 1 - m.mean() < 0.13)
    True
    """
    shape, f, g = _shape(shape), _fraction(fraction), _rng(rng)

    def side(n):
        lo, hi = max(1.0, 0.03 * n), max(2.0, 0.3 * n)
        return int(min(n, max(1, round(math.exp(g.uniform(math.log(lo), math.log(hi)))))))

    def block(ny, nx, remaining):
        h, w = side(ny), side(nx)
        if h * w > remaining:  # shrink, keeping the aspect ratio
            k = math.sqrt(remaining / (h * w))
            h, w = max(1, int(h * k)), max(1, int(w * k))
        return h, w

    return _stack(shape, lambda ny, nx: _hide_rectangles(ny, nx, f, g, block))


def _smooth_noise(g: np.random.Generator, ny: int, nx: int, sigma: float) -> np.ndarray:
    """White noise smoothed with a Gaussian of width ``sigma`` pixels, unit std.

    Large sigmas are done on a coarse grid and upsampled bilinearly: a full-resolution
    filter of width ~300 px on a 1500x2500 scene would take many seconds.
    """
    step = max(1, int(sigma // 4))
    cy, cx = ny // step + 3, nx // step + 3
    coarse = ndimage.gaussian_filter(g.standard_normal((cy, cx)), sigma / step, mode="wrap")
    if step > 1:
        yy = np.arange(ny) / step
        xx = np.arange(nx) / step
        # separable bilinear upsampling (cheaper than map_coordinates on the full grid)
        coarse = ndimage.map_coordinates(coarse, np.meshgrid(yy, np.arange(cx), indexing="ij"), order=1)
        coarse = ndimage.map_coordinates(coarse, np.meshgrid(np.arange(ny), xx, indexing="ij"), order=1)
    else:
        coarse = coarse[:ny, :nx]
    sd = coarse.std()
    return coarse / sd if sd > 0 else coarse


def clouds(shape, fraction=0.3, rng=None, scale=None) -> np.ndarray:
    """Cloud-like gaps: smooth random noise thresholded so that ``fraction`` is hidden.

    The noise is a sum of Gaussian-filtered white noise at the widths ``scale``,
    ``scale/3`` and ``scale/9`` pixels (weights 1, 0.5, 0.25), giving large cloud decks with
    ragged edges. ``scale`` defaults to a tenth of the smaller image side. The hidden pixels
    are the ``round(fraction * ny * nx)`` largest noise values, so the fraction is exact.

    >>> m = clouds((50, 60), fraction=0.3, rng=4)
    >>> int((~m).sum()) == round(0.3 * 50 * 60)
    True
    """
    shape, f, g = _shape(shape), _fraction(fraction), _rng(rng)
    if scale is not None:
        try:
            scale = float(scale)
        except (TypeError, ValueError):
            raise InputError(f"scale must be a positive number of pixels, got {scale!r}") from None
        if not scale > 0 or not math.isfinite(scale):
            raise InputError(f"scale must be a positive number of pixels, got {scale!r}")

    def one(ny, nx):
        s = scale if scale is not None else max(1.0, min(ny, nx) / 10)
        field = np.zeros((ny, nx))
        for sig, w in ((s, 1.0), (s / 3, 0.5), (s / 9, 0.25)):
            field += w * _smooth_noise(g, ny, nx, max(sig, 0.5))
        k = int(round(f * ny * nx))
        valid = np.ones(ny * nx, dtype=bool)
        if k >= ny * nx:
            valid[:] = False
        elif k > 0:
            valid[np.argpartition(field.ravel(), ny * nx - k)[ny * nx - k:]] = False
        return valid.reshape(ny, nx)

    return _stack(shape, one)


def observed(source_valid, shape=None, rng=None) -> np.ndarray:
    """Gaps copied from another dataset's own gap pattern (Kadow et al. 2020).

    ``source_valid`` is a bool array ``(..., y, x)`` -- e.g. the coverage of real
    observations. For each 2-D mask wanted, one source slice is picked at a random leading
    index and cut to ``shape[-2:]`` at a random offset: cropped when the source is larger,
    tiled periodically when it is smaller. ``shape=None`` returns one whole source slice.

    >>> src = np.ones((3, 20, 20), dtype=bool); src[:, 5:8, :] = False
    >>> m = observed(src, (2, 20, 30), rng=0)  # tiled along x
    >>> m.shape, (~m).all(axis=-1).sum(axis=-1).tolist()
    ((2, 20, 30), [3, 3])
    """
    src = np.asarray(source_valid)
    if src.dtype != bool:
        raise InputError(f"source_valid must be a bool array (True = valid), got dtype {src.dtype}; "
                         "pass e.g. np.isfinite(field) or mask.astype(bool)")
    if src.ndim < 2 or src.size == 0:
        raise InputError(f"source_valid must be a non-empty array with axes (..., y, x), got shape {src.shape}")
    g = _rng(rng)
    sy, sx = src.shape[-2:]
    shape = (sy, sx) if shape is None else _shape(shape)
    flat = src.reshape((-1, sy, sx))

    def offsets(n, size):
        start = int(g.integers(0, size - n + 1)) if size >= n else int(g.integers(0, size))
        return (start + np.arange(n)) % size  # wraps only when tiling

    def one(ny, nx):
        k = int(g.integers(0, flat.shape[0]))
        return flat[k][np.ix_(offsets(ny, sy), offsets(nx, sx))]

    return _stack(shape, one)


_GENERATORS = {"irregular": irregular, "scanlines": scanlines, "blocks": blocks, "clouds": clouds}


def make(kind, shape, fraction=None, rng=None, **kw) -> np.ndarray:
    """Make a mask of the named ``kind`` (one of :data:`KINDS`).

    ``fraction=None`` uses the generator's own default; extra keywords go to the generator
    (``max_lines`` for scanlines, ``scale`` for clouds).

    >>> make("blocks", (32, 32), 0.2, rng=0).shape
    (32, 32)
    """
    gen = _GENERATORS.get(kind) if isinstance(kind, str) else None
    if gen is None:
        raise InputError(f"unknown mask kind {kind!r}; use one of {', '.join(KINDS)} "
                         "(or masks.observed(...) for gaps copied from real data)")
    allowed = set(inspect.signature(gen).parameters) - {"shape", "rng", "fraction"}
    unknown = sorted(set(kw) - allowed)
    if unknown:
        raise InputError(f"mask kind {kind!r} takes no option(s) {', '.join(unknown)}; "
                         f"it accepts: {', '.join(sorted(allowed)) or 'none'}")
    if fraction is not None:
        kw["fraction"] = fraction
    return gen(shape, rng=rng, **kw)
