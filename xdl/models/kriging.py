"""Kriging of a context regression's residual into the gaps, and the standard error it implies.

A regression of the target on its context (:mod:`xdl.models.regression`) leaves a residual that
is known at the valid pixels and spatially correlated: next to a gap the residual of the valid
neighbour says much about the residual inside it, ten pixels away little. Simple kriging with one
neighbour at distance ``d`` puts ``rho(d)`` of that neighbour's residual into the gap, where
``rho`` is the residual's autocorrelation, and leaves an error variance of
``var * (1 - rho(d)**2)``. Here the neighbour is the interpolation of the residual, so both
sides of a gap count: as for a pixel midway between two data points ``2 d`` apart, it gets the
weight ``2 rho(d) / (1 + rho(2 d))`` (at most 1) and leaves ``var * (1 - weight * rho(d))``. The
interpolation is the harmonic fill, or a thin plate when the residual is smooth enough for one to
err less (:func:`_interpolate`; its variance then scaled by the ratio of their errors).
``rho`` is measured on each tile's own residual at a few lags along x and y, and ``var`` is the
regression's local residual variance. Where no context field is present the target's own thin-plate
interpolation from its known pixels and the kriged ones around is used, whose error variance at
distance ``d`` from those pixels is a quarter of the field's second-order structure function
``E[(x(p + d) - 2 x(p) + x(p - d))**2]`` (the error of a linear interpolant midway between two data
points; for a field with independent steps, half its structure function, the semivariogram; for a
smooth field much less), also measured on the tile, times how rough the field is around the pixel
compared with the whole tile (:func:`local_variability`). Wherever a thin plate's error is
predicted (its choice, its variance factor, the mix's gate) it is the geometric mean of that and
the error of the cubic midpoint rule (:func:`cubic_function`), which follows a smooth field's
curvature as the thin plate does: the linear one alone was about 10x too pessimistic on small
smooth fields (hgt500 across 1-pixel scan lines), so the mix never took the field's own thin
plate there; the cubic one alone was too optimistic (u200 scan lines: 57% of errors within 1
sigma). A smooth residual's kriging variance is at least :data:`NUGGET_SHARE` of a linear
interpolant's error across the gap (its lag-1 correlation can read 1, which left 0). Without context
(:func:`own_interpolation`) the target's own harmonic fill or thin plate, chosen as for the
residual, with half the structure function as the harmonic fill's error variance
(:func:`spatial_std`) and a quarter of the second-order one as the thin plate's. A context fill
is then mixed with the target's own interpolation by their predicted errors
(:func:`with_own_interpolation`): a context that explains less than the field itself no longer
makes the fill worse than none.

Measured on the held-out scenes of benchmarks/inpaint_quality.py (benchmarks/RESULTS.md,
2026-12-05 and 2026-12-06): this first guess alone, with no learned correction (the bundled
fill-context), scored 0.54-0.99 x the best classical baseline on the twelve context cases (mean of
3 gap draws; the learned model before it: 0.67-1.08), and the factor that would calibrate its
standard error varied about 0.7-1.0 across them on 2026-12-05 (the learned sigma before it:
0.31-2.18).

Pure torch, per sample and channel; everything is computed on the tile, so the engine's fixed
tile grid keeps results independent of the dask chunking.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

__all__ = ["LAGS", "lag_correlation", "structure_function", "curvature_function", "cubic_function", "capped_distance", "at_distance",
           "local_variability", "roughness_here", "krige", "own_interpolation", "spatial_std", "interpolation_variance",
           "with_own_interpolation", "Kriged"]

# Lags (pixels) at which correlations are measured; between them they are interpolated linearly,
# beyond the last one held. A few lags, not all: each costs two passes over the tile.
LAGS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)
SAMPLE = 2 ** 18  # pixels: on larger tiles the lag statistics read every k-th row (column), k = size / SAMPLE


def _lines(field, known, sample=SAMPLE):
    """The lines the lag statistics read: ``[(values, mask)]`` along x and along y, each (N, C,
    lines, pixels) with the pairs' direction last and contiguous, ``mask`` 0/1 and ``values`` 0
    where it is 0 (float32). Every k-th row and every k-th column, k = tile size / ``sample``
    (every line on smaller tiles), taken before any arithmetic: a large tile's statistics cost in
    proportion to the sample."""
    step = max(1, math.ceil(field.shape[-2] * field.shape[-1] / sample))
    out = []
    for take in (lambda a: a[..., ::step, :], lambda a: a[..., :, ::step].transpose(-1, -2)):
        mask = (take(known) > 0.5).float().contiguous()
        out.append((take(field).float().contiguous() * mask, mask))
    return out


def _shifted(a, lag, k, size):
    """``a``'s last dimension from ``k * lag`` on, ``size`` long: the partners ``k * lag`` away."""
    return a.narrow(-1, k * lag, size)


@torch.no_grad()
def lag_correlation(residual: torch.Tensor, known: torch.Tensor, lags=LAGS) -> torch.Tensor:
    """Autocorrelation of a zero-mean field ``residual`` (N, C, H, W) over its ``known`` pixels at
    lag 0 and ``lags`` (along x and y together): (N, C, 1 + len(lags)), 1 at lag 0, clipped to
    [0, 1] and made non-increasing (a noisy estimate at a long lag never beats a shorter one).
    Lags without a pair of known pixels get 0.

    >>> y, x = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    >>> r = torch.sin(x / 6)[None, None]
    >>> rho = lag_correlation(r, torch.ones_like(r), lags=(1, 2))
    >>> [round(v, 2) for v in rho.flatten().tolist()]
    [1.0, 0.99, 0.97]
    """
    m = _as_bool(known)
    r = torch.where(m, residual.float(), 0.0)
    count = torch.count_nonzero(m, dim=(-2, -1)).clamp(min=1).float()
    var = (r * r).sum((-2, -1)) / count
    lines = _lines(r, m)
    out = [torch.ones_like(var)]
    for lag in lags:  # a lag longer than the tile has no pair: 0
        s, pairs = torch.zeros_like(var), torch.zeros_like(var)
        for values, mask in lines:
            size = values.shape[-1] - lag
            if size > 0:  # unknown pixels are 0: their products add nothing
                s = s + (_shifted(values, lag, 1, size) * _shifted(values, lag, 0, size)).sum((-2, -1))
                pairs = pairs + (_shifted(mask, lag, 1, size) * _shifted(mask, lag, 0, size)).sum((-2, -1))
        out.append(torch.where(pairs > 0, s / pairs.clamp(min=1.0) / var.clamp(min=1e-30), 0.0))
    rho = torch.stack(out, -1).clamp(0.0, 1.0)
    return torch.cummin(rho, -1).values


@torch.no_grad()
def structure_function(field: torch.Tensor, known: torch.Tensor, lags=LAGS, sample=SAMPLE) -> torch.Tensor:
    """``E[(f(p + h) - f(p))**2]`` over pairs of ``known`` pixels ``h`` apart along x and y, at
    lag 0 and ``lags``: (N, C, 1 + len(lags)), 0 at lag 0, non-decreasing; a lag without pairs
    takes the value of the lag before it. On tiles of more than ``sample`` pixels, from a sample
    of their lines.

    >>> f = torch.arange(8.0).reshape(1, 1, 1, 8)
    >>> structure_function(f, torch.ones_like(f), lags=(1, 3)).flatten().tolist()
    [0.0, 1.0, 9.0]
    """
    lines = _lines(field, known, sample)
    out = [torch.zeros(field.shape[:-2], dtype=torch.float32, device=field.device)]
    for lag in lags:  # a lag longer than the tile has no pair: the value before it
        sq, pairs = torch.zeros_like(out[0]), torch.zeros_like(out[0])
        for values, mask in lines:
            size = values.shape[-1] - lag
            if size > 0:
                both = _shifted(mask, lag, 1, size) * _shifted(mask, lag, 0, size)
                step = _shifted(values, lag, 1, size) - _shifted(values, lag, 0, size)
                sq, pairs = sq + (step * step * both).sum((-2, -1)), pairs + both.sum((-2, -1))
        out.append(torch.where(pairs > 0, sq / pairs.clamp(min=1.0), out[-1]))
    return torch.cummax(torch.stack(out, -1), -1).values


@torch.no_grad()
def curvature_function(field: torch.Tensor, known: torch.Tensor, lags=LAGS, sample=SAMPLE) -> torch.Tensor:
    """The second-order structure function ``E[(f(p + h) - 2 f(p) + f(p - h))**2]`` over triples of
    ``known`` pixels ``h`` apart along x and y, at lag 0 and ``lags``: (N, C, 1 + len(lags)), 0 at
    lag 0, non-decreasing; a lag without triples takes the value of the lag before it. A quarter of
    it is the error variance of a linear interpolant at the midpoint of two data points ``2 h``
    apart: for a field with independent steps half the structure function, for a smooth one much
    less. On tiles of more than ``sample`` pixels, from a sample of their lines.

    >>> f = torch.arange(8.0).reshape(1, 1, 1, 8) ** 2
    >>> curvature_function(f, torch.ones_like(f), lags=(1, 2)).flatten().tolist()
    [0.0, 4.0, 64.0]
    """
    return _stencil_function(field, known, {0: 1.0, 1: -2.0, 2: 1.0}, lags, sample)


@torch.no_grad()
def cubic_function(field: torch.Tensor, known: torch.Tensor, lags=LAGS, sample=SAMPLE) -> torch.Tensor:
    """The mean squared error of the cubic midpoint rule, ``f(p) - (9 (f(p - h) + f(p + h)) -
    f(p - 3h) - f(p + 3h)) / 16``, over ``known`` 5-tuples along x and y at lag 0 and ``lags``:
    (N, C, 1 + len(lags)), 0 at lag 0, non-decreasing, a lag without tuples holding the value
    before it. The error of an interpolant that follows a smooth field's curvature (the thin
    plate) across a gap ``2 h`` wide, where the second-order structure function gives a linear
    interpolant's.

    >>> f = torch.arange(16.0).reshape(1, 1, 1, 16) ** 3   # a cubic: the rule is exact
    >>> cubic_function(f, torch.ones_like(f), lags=(1, 2)).flatten().tolist()
    [0.0, 0.0, 0.0]
    """
    return _stencil_function(field, known, {0: 1 / 16, 2: -9 / 16, 3: 1.0, 4: -9 / 16, 6: 1 / 16}, lags, sample)


def _stencil_function(field, known, weights, lags, sample):
    """The mean square of ``sum_k weights[k] * f(p + k h)`` over the tuples of ``known`` pixels
    along x and y, per lag ``h`` (offsets in units of it): (N, C, 1 + len(lags)), 0 at lag 0,
    non-decreasing; a lag without tuples holds the value before it."""
    lines = _lines(field, known, sample)
    offsets = sorted(weights)
    out = [torch.zeros(field.shape[:-2], dtype=torch.float32, device=field.device)]
    for lag in lags:
        total, count = torch.zeros_like(out[0]), torch.zeros_like(out[0])
        for values, mask in lines:
            size = values.shape[-1] - offsets[-1] * lag
            if size <= 0:
                continue
            every = _shifted(mask, lag, offsets[0], size)
            for k in offsets[1:]:
                every = every * _shifted(mask, lag, k, size)
            rule = weights[offsets[-1]] * _shifted(values, lag, offsets[-1], size)
            for k in reversed(offsets[:-1]):  # last offset first: (f2 - 2 f1) + f0 as before
                rule = rule + weights[k] * _shifted(values, lag, k, size)
            total = total + (rule ** 2 * every).sum((-2, -1))
            count = count + every.sum((-2, -1))
        out.append(torch.where(count > 0, total / count.clamp(min=1.0), out[-1]))
    return torch.cummax(torch.stack(out, -1), -1).values


def _as_bool(mask: torch.Tensor) -> torch.Tensor:
    """``mask`` (1 = known) as bool: no copy of one that is already."""
    return mask if mask.dtype == torch.bool else mask > 0.5


EXACT_DISTANCE = 8  # pixels: exact below this; beyond it, from a grid COARSEN times coarser
COARSEN = 4


@torch.no_grad()
def capped_distance(known: torch.Tensor, cap: int) -> torch.Tensor:
    """Euclidean distance in pixels from every pixel of ``known`` (N, C, H, W, bool or 0/1) to the
    nearest known pixel of the same sample and channel, capped at ``cap`` (float32; 0 on known
    pixels, ``cap`` in a field with none). Exact up to :data:`EXACT_DISTANCE` pixels: the distance
    along the row first (running maxima of the known columns, both ways), then the best row
    within that reach, for the gap pixels only. Farther pixels (deep inside large gaps, where
    visiting every row would cost seconds on a large tile) take the distance between cells of a
    :data:`COARSEN` times coarser grid (cells with any known pixel), within a few pixels.

    >>> k = torch.zeros(1, 1, 3, 6, dtype=torch.bool); k[0, 0, 0, 0] = True
    >>> (capped_distance(k, 4)[0, 0] ** 2).round().int().tolist()  # squared: 17 and more capped at 16
    [[0, 1, 4, 9, 16, 16], [1, 2, 5, 10, 16, 16], [4, 5, 8, 13, 16, 16]]
    """
    known = _as_bool(known)
    return _distance(known, int(cap), EXACT_DISTANCE)


def _distance(known, cap, exact):
    n, c, h, w = known.shape
    reach = min(cap, exact)
    far = cap + 1
    out = torch.zeros((n, c, h, w), dtype=torch.float32, device=known.device)
    gaps = torch.nonzero(~known.reshape(-1)).squeeze(1)  # in order: runs along a row are consecutive
    if gaps.numel() == 0:
        return out
    # Everything below costs in proportion to the gap pixels, not the tile.
    line, x = gaps // w, gaps % w  # line = plane * h + row
    y, plane = line % h, line // h
    coarse = None
    if reach < cap:  # cells farther than the reach on the coarse grid skip the exact search
        f = COARSEN
        hc, wc = -(-h // f), -(-w // f)
        cell = (plane * hc + y // f) * wc + x // f
        size = (torch.clamp(h - torch.arange(hc, device=known.device) * f, max=f)[:, None]
                * torch.clamp(w - torch.arange(wc, device=known.device) * f, max=f)[None, :]).reshape(-1)
        missing = torch.bincount(cell, minlength=n * c * hc * wc).reshape(n * c, hc * wc)
        cells = (missing < size).reshape(n, c, hc, wc)  # a cell with any known pixel
        coarse = (_distance(cells, -(-cap // f), exact=cap) * f).reshape(-1)[cell]
    # Along the row: each gap pixel's run of gap pixels, from its first to its last column; the
    # known pixels just outside it (if inside the row) are the nearest ones along the row.
    first = torch.ones_like(gaps, dtype=torch.bool)
    first[1:] = (gaps[1:] != gaps[:-1] + 1) | (x[1:] == 0)
    starts = torch.nonzero(first).squeeze(1)
    ends = torch.cat([starts[1:] - 1, starts.new_tensor([gaps.numel() - 1])])
    run = torch.cumsum(first, 0) - 1
    start, end = x[starts][run], x[ends][run]
    left = torch.where(start > 0, x - start + 1, far)
    right = torch.where(end < w - 1, end - x + 1, far)
    along = torch.minimum(left, right).clamp_(max=far).to(torch.int32)
    # Squared distances along the row, with ``reach`` rows of "far" above and below each plane:
    # rows beyond the edge need no bounds test.
    big = far * far
    row2 = torch.full((n * c, h + 2 * reach, w), big, dtype=torch.int32, device=known.device)
    row2[:, reach:reach + h] = 0
    padded = (plane * (h + 2 * reach) + y + reach) * w + x  # each gap pixel in the padded rows
    row2.view(-1)[padded] = along * along
    row2 = row2.view(-1)
    # Then the best row within the reach, for the gap pixels not yet settled (kept compact).
    best = (along * along).clone()
    active = torch.arange(gaps.numel(), device=known.device)
    if coarse is not None:  # a pixel's cell this far from any known cell is deep whatever the rows say
        active = active[coarse[active] <= reach + 2 * COARSEN]
    where, value = padded[active], best[active]
    for k in range(1, reach + 1):
        going = value > k * k  # rows k away give at least k**2: the others are done
        if not bool(going.all()):
            best[active] = value
            keep = torch.nonzero(going).squeeze(1)
            active, where, value = active[keep], where[keep], value[keep]
        if active.numel() == 0:
            break
        for step in (-k, k):
            value = torch.minimum(value, k * k + row2[where + step * w])
    best[active] = value
    distance = torch.sqrt(best.float()).clamp_(max=float(cap))
    deep = best > reach * reach  # not settled within the exact reach
    if coarse is not None:
        distance = torch.where(deep, coarse.clamp(min=float(reach), max=float(cap)), distance)
    out.reshape(-1)[gaps] = distance
    return out


def at_distance(curve: torch.Tensor, distance: torch.Tensor, lags=LAGS, where=None) -> torch.Tensor:
    """``curve`` (N, C, 1 + len(lags)), given at lag 0 and ``lags``, interpolated linearly at every
    pixel's ``distance`` (N, C, H, W); held beyond the last lag. ``where`` (bool, like ``distance``):
    only there (0 elsewhere), which costs in proportion to its pixels.

    >>> at_distance(torch.tensor([[[1.0, 0.5, 0.0]]]), torch.tensor([[[[0.0, 1.5, 3.0, 9.0]]]]),
    ...             lags=(1, 3)).tolist()
    [[[[1.0, 0.375, 0.0, 0.0]]]]
    """
    pixels = torch.arange(distance.numel(), device=distance.device) if where is None else \
        torch.nonzero(where.reshape(-1)).squeeze(1)
    out = torch.zeros(distance.numel(), dtype=torch.float32, device=distance.device)
    out[pixels] = _curve_at(curve, distance.reshape(-1)[pixels], pixels // (distance.shape[-2] * distance.shape[-1]), lags)
    return out.reshape(distance.shape)


def _curve_at(curve, d, plane, lags=LAGS):
    """:func:`at_distance` for a list of pixels: their distances ``d`` and the index ``plane`` of
    their (n, c) curve in ``curve`` (N, C, 1 + len(lags)) flattened."""
    grid = torch.tensor((0.0, *map(float, lags)), device=d.device)
    points = curve.shape[-1]
    d = d.float().clamp(0.0, float(grid[-1]))
    upper = torch.bucketize(d, grid).clamp(1, points - 1)
    lo, hi = grid[upper - 1], grid[upper]
    offset = plane * points  # the pixel's (n, c) curve
    flat = curve.float().reshape(-1)
    a, b = flat[offset + upper - 1], flat[offset + upper]
    return a + (d - lo) / (hi - lo) * (b - a)


def max_lag(lags=LAGS) -> int:
    return math.ceil(max(lags))


# The local variability: 8-pixel cells, a 3 x 3-cell window (24 px: about a mountain range on a
# reanalysis grid, where the 112-pixel window before spanned half the globe), shrunk towards the
# 112-pixel window around it (7 x 7 cells of 2 x 2 cells) with the weight of LOCAL_PRIOR pairs, so
# that deep inside a large gap, where the small window holds few pairs, the wide one speaks. On the
# full-size training scenes without context (benchmarks/RESULTS.md, 2026-12-06, session 26) it
# brought ERA5 surface pressure's sigma closer (clouds 92% -> 90% within 1 sigma, RMS(sigma)/RMSE
# 1.44 -> 1.23) and left GOES C16 and sea-surface height within 2 points. 4-pixel cells (a 20-pixel
# window), about as good, added 5% to uncertainty=True on a CONUS scene with 10% gaps.
LOCAL_CELL, LOCAL_RADIUS, WIDE_CELLS, WIDE_RADIUS = 8, 1, 2, 3
LOCAL_PRIOR = 20.0


@torch.no_grad()
def local_variability(field: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """How rough ``field`` (N, C, H, W) is around each pixel compared with the whole tile: the mean
    squared step between neighbouring known pixels (along x and y) in a window of 3 x 3 cells of
    8 pixels, shrunk towards that of a 112-pixel window as if it held :data:`LOCAL_PRIOR` more
    pairs of that mean, over the tile's (N, C, H, W; 1 where neither window holds a pair). A
    field's interpolation error follows its roughness: small over the ocean, large over mountains.

    >>> f = torch.zeros(1, 1, 256, 256); f[..., 192:] = torch.randn(256, 64, generator=torch.Generator().manual_seed(0))
    >>> r = local_variability(f, torch.ones_like(f)); bool(r[0, 0, 10, 2] < 0.1 < 2 < r[0, 0, 10, 250])
    True
    """
    known = _as_bool(known)
    mean, _, total = _roughness_cells(torch.where(known, field.float(), 0.0), known.float(), LOCAL_CELL)
    ratio = torch.where(total > 0, mean / total.clamp(min=1e-30), 1.0)
    return F.interpolate(ratio, size=field.shape[-2:], mode="bilinear", align_corners=False)


@torch.no_grad()
def roughness_here(field: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """How rough ``field`` (N, C, H, W) is around each pixel compared with the 112-pixel window
    around it (not the whole tile: :func:`local_variability`), from every other row and column
    (a quarter of the passes; steps two pixels apart, in cells of 4 of them: the same 24- and
    112-pixel windows). A context fill's residual is rougher at a cloud edge than in the clear sky
    beside it, and so is its error: the kriging variance times this ratio tracks it (held-out
    context cases: 34 of 48 sigma targets against 31, CRPS lower in all 12).

    >>> f = torch.zeros(1, 1, 256, 256); f[..., 96:160] = torch.randn(256, 64, generator=torch.Generator().manual_seed(0))
    >>> r = roughness_here(f, torch.ones_like(f))  # the strip: rougher than its window; beside it smoother
    >>> bool(r[0, 0, 128, 128] > 1.5), bool(r[0, 0, 128, 200] < 0.1)
    (True, True)
    """
    known = _as_bool(known)
    f, m = field.float()[..., ::2, ::2], known[..., ::2, ::2]
    mean, wide_mean, _ = _roughness_cells(torch.where(m, f, 0.0), m.float(), LOCAL_CELL // 2)
    ratio = torch.where(wide_mean > 0, mean / wide_mean.clamp(min=1e-30), 1.0)
    return F.interpolate(ratio, size=field.shape[-2:], mode="bilinear", align_corners=False)


def _roughness_cells(f, m, size):
    """The mean squared step between neighbouring known pixels (``m`` 1) of ``f`` (N, C, H, W; 0
    where unknown) on cells of ``size`` pixels: in 3 x 3 cells shrunk towards the 112-pixel
    window's as if that held :data:`LOCAL_PRIOR` more pairs, that window's, and the whole tile's
    ((N, C, 1, 1)); the first two on the cell grid."""
    grid = (-(-f.shape[-2] // size), -(-f.shape[-1] // size))
    # A step between neighbours counts at the second pixel of the pair: one pixel of padding before
    # the steps puts each in its pixel's cell. Cell sums (divisor 1), zero beyond the edge: a partial
    # cell at the edge weighs as its pixels (the tiles are whole cells: xdl's fills never have one).
    cells = [f.new_zeros(f.shape[:-2] + grid) for _ in range(2)]  # steps, pairs
    totals = [f.new_zeros(f.shape[:-2] + (1, 1)) for _ in range(2)]
    for dim, pad in ((-1, (0, 1)), (-2, (1, 0))):
        n = f.shape[dim] - 1
        if n <= 0:  # a single row (column): no pair along it
            continue
        pairs = m.narrow(dim, 1, n) * m.narrow(dim, 0, n)
        step = (f.narrow(dim, 1, n) - f.narrow(dim, 0, n)).square_().mul_(pairs)
        for i, a in enumerate((step, pairs)):
            cell = F.avg_pool2d(a, size, padding=pad, ceil_mode=True, divisor_override=1)
            cells[i] = cells[i] + cell[..., :grid[0], :grid[1]]
            totals[i] = totals[i] + a.sum((-2, -1), keepdim=True)
    total = totals[0] / totals[1].clamp(min=1.0)
    local = [_window_sums(c, LOCAL_RADIUS) for c in cells]
    # The wide window from cells WIDE_CELLS times coarser (cheap), brought back to the fine cells.
    wide = [_window_sums(F.avg_pool2d(c, WIDE_CELLS, ceil_mode=True, divisor_override=1), WIDE_RADIUS)
            for c in cells]
    wide_mean = torch.where(wide[1] > 0, wide[0] / wide[1].clamp(min=1e-12), total)
    wide_mean = F.interpolate(wide_mean, scale_factor=WIDE_CELLS, mode="bilinear", align_corners=False)
    wide_mean = wide_mean[..., :grid[0], :grid[1]]
    mean = (local[0] + LOCAL_PRIOR * wide_mean) / (local[1] + LOCAL_PRIOR)
    return mean, wide_mean, total


def _window_sums(cells, radius):
    """Sums of ``cells`` (N, C, h, w) over the ``2 * radius + 1`` cells square around each (zero
    beyond the edges), one direction at a time."""
    box = 2 * radius + 1
    rows = F.avg_pool2d(cells, (1, box), stride=1, padding=(0, radius), divisor_override=1)
    return F.avg_pool2d(rows, (box, 1), stride=1, padding=(radius, 0), divisor_override=1)


class Kriged(NamedTuple):
    """What :func:`krige` gives: ``value`` (N, 1, H, W), the first guess in the gaps (the target
    where known), and ``std`` (N, 1, H, W), its standard error in the target's units;
    ``distance`` (like them, or None): each pixel's distance to the residual's known pixels."""

    value: torch.Tensor
    std: torch.Tensor
    distance: torch.Tensor | None = None


@torch.no_grad()
def krige(target, known, estimate, variance, added_variance=None, wanted=None, exact=None) -> Kriged:
    """The regression ``estimate`` (N, 1, H, W; NaN where no context field is present) with its
    residual kriged into the gaps; where it is NaN, the target's own thin-plate interpolation
    (:func:`~xdl.models.harmonic.thin_plate_fill`) from its known pixels and the kriged values
    around, as a classical fill with regression would do. ``variance``: the fit's local residual
    variance at each pixel; ``added_variance`` (optional, like it): error variance the estimate
    carries besides the residual (from context values that were themselves interpolated), added
    to the kriging variance. ``wanted`` (bool, like ``known``; optional): the gaps whose fill is
    read back (outside it, e.g. off the Earth, the value and error are left unrefined). ``exact``
    (bool, like ``known``; optional): where the estimate rests on real context values only;
    elsewhere a known pixel's residual is capped (:data:`INEXACT_RESIDUAL_CAP`). See the module
    docstring.

    >>> y, x = torch.meshgrid(torch.arange(48.0), torch.arange(48.0), indexing="ij")
    >>> t = (torch.sin(x / 4) + torch.cos(y / 5))[None, None]; m = torch.ones_like(t); m[..., 20:23, :] = 0
    >>> est = t - torch.cos(y / 5)[None, None]          # a regression that misses a smooth part
    >>> k = krige(t * m, m, est, torch.full_like(t, 0.5))
    >>> bool((k.value - t)[m == 0].abs().max() < 0.5 * (est - t)[m == 0].abs().max())
    True
    >>> bool(torch.equal(k.value[m > 0], t[m > 0])), bool((k.std[m == 0] > 0).all())
    (True, True)
    """
    with torch.autocast(target.device.type, enabled=False):  # statistics and fills in fp32, always
        return _krige(target, known, estimate, variance, added_variance, wanted, exact)


# A known pixel whose estimate rests on an interpolated context value (another field missing there)
# has as residual that interpolation's error too: beyond this many of the fit's residual standard
# deviations it is capped before kriging spreads it into the gaps beside. A field present everywhere
# (a constant, orography) beside a gappy other hour made such residuals of MERRA-2 PS thousands of
# Pa: fills where the other hour is present erred 234 Pa against 14 without it; capped at 10 sigma,
# 35 (3 sigma: 18, but ERA5 hourly clouds 8% worse; leaving them out entirely: 14, but training
# time series 1.11x worse; benchmarks/RESULTS.md, session 35).
INEXACT_RESIDUAL_CAP = 10.0


def _krige(target, known, estimate, variance, added_variance, wanted, exact=None) -> Kriged:
    from .harmonic import thin_plate_fill

    known = _as_bool(known)
    fitted = torch.isfinite(estimate)
    base = known & fitted  # where the residual is known
    target = target.float()
    residual = torch.where(base, target - estimate.float(), 0.0)
    if exact is not None and not bool(exact.all()):
        limit = INEXACT_RESIDUAL_CAP * torch.sqrt(variance.float().clamp(min=0.0))
        residual = torch.where(base & ~exact, torch.maximum(torch.minimum(residual, limit), -limit), residual)
    rho = lag_correlation(residual, base)
    cap = max_lag()
    gaps = ~known if wanted is None else ~known & wanted
    distance = capped_distance(base, cap)
    spread, factor, curve = _interpolate(residual, base, distance, gaps)
    # The kriged values and errors at the gap pixels the regression reads a context at only (full
    # tile passes here cost more than the gathers: 3% gaps on a CONUS tile). A gap not wanted
    # (weight 0) keeps the estimate.
    fill = torch.nonzero((~known & fitted).reshape(-1)).squeeze(1)
    d, plane = distance.reshape(-1)[fill], fill // (distance.shape[-2] * distance.shape[-1])
    wanted_here = gaps.reshape(-1)[fill]
    near = torch.where(wanted_here, _curve_at(rho, d, plane), 0.0)
    weight = _two_sided(near, torch.where(wanted_here, _curve_at(rho, 2 * d, plane), 0.0))
    value = torch.where(known, target, 0.0)
    value.view(-1)[fill] = estimate.float().reshape(-1)[fill] + weight * spread.reshape(-1)[fill]
    # The fit's residual variance is its 112-pixel window's: times the residual's roughness here
    # against that window's (larger at a cloud edge than in the clear sky beside it).
    here = roughness_here(residual, base).reshape(-1)[fill]
    var = variance.float().reshape(-1)[fill].clamp(min=0.0) * here * (1.0 - weight * near) * factor.reshape(-1)[fill]
    # Never below the error of a linear interpolant across a gap of that width (the residual's own
    # second-order structure function): a residual smooth enough that rho(1) reads 1 gave
    # 1 - weight * rho = 0, and a sigma at the floor on 1-pixel scan lines (ERA-Interim v200 with
    # u200: 25% of errors within 1 sigma).
    var = torch.maximum(var, NUGGET_SHARE * _curve_at(curve, d, plane) * here)
    if added_variance is not None:
        var = var + added_variance.float().reshape(-1)[fill]
    std = torch.zeros_like(value)
    std.view(-1)[fill] = torch.sqrt(var)
    unfitted = gaps & ~fitted
    if bool(unfitted.any()):  # the target's own interpolation, joined to the kriged values around
        boundary = known | fitted
        value = thin_plate_fill(value, boundary.float())  # all gaps unknown, wanted or not
        # Its error grows with the distance to that boundary, not to the target's own data: on the
        # training time series, measured to the target's data it was 1.4-2.8x too wide in RMS.
        to_boundary = capped_distance(boundary, cap)
        own = _own_variance(target, known, to_boundary, unfitted, thin_plate=True)
        std = torch.where(unfitted, torch.sqrt(own), std)
    return Kriged(value, std, distance)


# The kriging variance's floor, as a share of a linear interpolant's error across the gap (see _krige):
# 1 made the training scenes' sigma too wide on GOES bands (62% -> 76-81% of errors within 1 sigma,
# while it let the mix with the target's own interpolation cut some reanalysis errors by 4-12%);
# 0.25 leaves them within a point and lifts 1-pixel scan lines on a smooth field from 25% to 65%.
NUGGET_SHARE = 0.25
CHOICE_SAMPLE = 2 ** 16  # pixels: the statistics that choose the interpolant, from fewer lines (cost)
# The thin plate's sparse solve costs about 1.6 us a gap pixel on a 2-core CPU (a GOES CONUS tile
# under 10% scan lines: 0.35 s, 0.85 s with skimage's solver before session 27, against 0.1 s for
# the harmonic fill). A plane with more gap pixels than this takes it only where it is predicted
# to err at least THIN_PLATE_GAIN less.
THIN_PLATE_CHEAP = 40_000
THIN_PLATE_GAIN = 0.9


def _interpolate(residual, base, distance, gaps, harmonic=None, iterations=(8, 10)):
    """The interpolation of ``residual`` (a regression's residual, or a field itself) into the gaps
    from the pixels ``base``, and a factor on its error variance. Per sample, the interpolant whose
    error the field's own statistics predict to be smaller at the gap pixels' distances, or a mix
    of the two where the prediction cannot tell them apart (:func:`thin_plate_weight`; its variance
    factor the square of the weighted mean of their standard errors, its floor the thin plate's
    share of the thin plate's floor): the
    harmonic fill (``harmonic`` if given, else computed with ``iterations`` for the samples that
    take it; a linear interpolant's error, half the structure function) or the thin plate, which
    follows the field's slopes (a quarter of the second-order structure function). A smooth field
    (a reanalysis variable regressed on another) takes the thin plate, with its variance scaled by
    the ratio of the two (at most 1) where the thin plate was solved; a rough one (a satellite
    band) the harmonic fill. Also returns per plane (N, C, 1 + len(LAGS)), for the thin-plate
    planes, the error of a linear interpolant between two points ``2 d`` apart at their midpoint (a
    quarter of the second-order structure function, at most the one-sided error) times the thin
    plate's share (0 for the harmonic planes). A plane with more than
    :data:`THIN_PLATE_CHEAP` gap pixels takes the
    thin plate only for a predicted error :data:`THIN_PLATE_GAIN` times the harmonic fill's or less
    (its solve is the cost there). On
    full-size training scenes (benchmarks/RESULTS.md, 2026-12-06, session 24): context fills
    0.50-0.98x the RMSE in 14 of 21 case x gap kinds (means of 3 draws), the others unchanged (the
    thin plate everywhere was up to 13% worse on GOES bands); without context, surface pressure
    0.81-0.94x, the others unchanged."""
    from .harmonic import harmonic_fill, thin_plate_fill

    linear_curve = structure_function(residual, base, sample=CHOICE_SAMPLE) / 2
    linear_mid = curvature_function(residual, base, sample=CHOICE_SAMPLE) / 4
    many = _many_gaps(gaps)
    curved_curve = _thin_plate_error(linear_mid, residual, base, many)
    # The choice from the gap pixels' distances rounded to whole pixels (a histogram): cheap.
    curved_sum, linear_sum = _sums_at_gaps((curved_curve, linear_curve), distance, gaps)
    weight = thin_plate_weight(curved_sum / linear_sum.clamp(min=1e-30), many).flatten()
    n, c, h, w = residual.shape
    planes, known = residual.reshape(n * c, 1, h, w), base.reshape(n * c, 1, h, w).float()
    spread = torch.zeros_like(planes)
    rough, thin = weight < 1, weight > 0
    if bool(rough.any()):
        share = (1 - weight[rough])[:, None, None, None]
        spread[rough] = share * (harmonic_fill(planes[rough], known[rough], *iterations) if harmonic is None
                                 else harmonic.float().reshape(n * c, 1, h, w)[rough])
    factor = torch.ones_like(residual)
    if bool(thin.any()):
        # Its variance factor where it solved a thin plate (not in the larger gaps), thin planes only;
        # for a mix, the square of the weighted mean of the standard errors (as _blend bounds it).
        solved = torch.zeros_like(planes, dtype=torch.bool)
        fill, solved[thin] = thin_plate_fill(planes[thin], known[thin], regions=True)
        spread[thin] += weight[thin][:, None, None, None] * fill
        where = gaps & solved.reshape(n, c, h, w)
        linear = at_distance(linear_curve, distance, where=where)
        curved = at_distance(curved_curve, distance, where=where)
        ratio = torch.clamp(curved / linear.clamp(min=1e-30), max=1.0)
        share = weight.reshape(n, c, 1, 1)
        factor = torch.where(where, (share * torch.sqrt(ratio) + (1 - share)) ** 2, factor)
    # The floor under a smooth (thin-plate) residual's kriging variance, in the thin plate's share;
    # a rough residual's rho(1) stays well below 1 and needs none (on the held-out GOES scene it
    # widened 1 sigma to 76%).
    floor = weight.reshape(n, c, 1) * torch.minimum(linear_mid, linear_curve)
    return spread.reshape(n, c, h, w), factor, floor


# Between these predicted ratios of the thin plate's error variance to the harmonic fill's (at the
# gaps' distances) a plane takes a mix of the two, the thin plate's share falling linearly from 1
# to 0: near 1 the prediction cannot tell them apart (on 72 field x gap cases it read 1.00-1.17
# where the thin plate erred 0.76-0.93x, and 1.14-1.4 where it erred 1.2-1.5x), and a mix of two
# interpolants erring alike errs less than either (session 37: 1.008x the better pure interpolant
# of each case in the geometric mean, worst 1.15x, against 1.023x and 1.32x choosing at 1).
MIX_FROM, MIX_TO = 0.9, 1.4


def thin_plate_weight(ratio: torch.Tensor, many: torch.Tensor) -> torch.Tensor:
    """The thin plate's share (N, C) of a plane's own interpolation from the predicted variance
    ``ratio`` (thin plate / harmonic fill): 1 at :data:`MIX_FROM` or less, 0 from :data:`MIX_TO`,
    linear between; a plane with many gap pixels (``many``, where a thin plate's solve is the
    cost) takes it whole below :data:`THIN_PLATE_GAIN` and not at all above.

    >>> thin_plate_weight(torch.tensor([[0.5, 1.15, 2.0, float("nan")]]), torch.zeros(1, 4, dtype=torch.bool)).tolist()
    [[1.0, 0.5, 0.0, 0.0]]
    """
    # A ratio that is no number (sums that overflowed) takes the harmonic fill, as before the mix.
    mixed = torch.nan_to_num(torch.clamp((MIX_TO - ratio) / (MIX_TO - MIX_FROM), 0.0, 1.0), nan=0.0)
    return torch.where(many, (ratio < THIN_PLATE_GAIN).to(ratio.dtype), mixed)


def _many_gaps(gaps: torch.Tensor) -> torch.Tensor:
    """(N, C) bool: the planes with more than :data:`THIN_PLATE_CHEAP` ``gaps`` pixels."""
    return torch.count_nonzero(gaps.flatten(2), dim=-1) > THIN_PLATE_CHEAP


def _thin_plate_error(linear_mid, field, known, many):
    """A thin plate's predicted error variance by distance (N, C, 1 + len(LAGS)): the geometric mean
    of a linear interpolant's midpoint error ``linear_mid`` and the cubic midpoint rule's (at most
    the linear one's); ``linear_mid`` alone on the ``many`` planes (:func:`_many_gaps`), where a
    thin plate chosen or mixed in more often costs its solve (a GOES CONUS tile: the context fill
    14% slower, for no change in its error). On the training scenes (21 case x
    gap kinds, 3 draws; benchmarks/RESULTS.md, session 31): RMSE 0.996x in the geometric mean
    (hgt500 across scan lines 0.918x), worst 1.002x; the cubic error alone 0.987x but worst 1.014x
    and sigma too narrow on smooth fields."""
    many = many[..., None]
    if bool(many.all()):
        return linear_mid
    cubic = cubic_function(field, known, sample=CHOICE_SAMPLE)
    return torch.where(many, linear_mid, torch.sqrt(linear_mid * torch.minimum(linear_mid, cubic)))


def _sums_at_gaps(curves, distance, gaps):
    """For each of ``curves`` (N, C, 1 + len(LAGS)), its sum over the ``gaps`` pixels at their
    ``distance`` rounded to whole pixels: (N, C) each, from one histogram of the distances."""
    n, c, h, w = distance.shape
    cap = max_lag()
    pixels = torch.nonzero(gaps.reshape(-1)).squeeze(1)
    steps = distance.reshape(-1)[pixels].round().long().clamp(0, cap)
    counts = torch.bincount(pixels // (h * w) * (cap + 1) + steps, minlength=n * c * (cap + 1))
    counts = counts.reshape(n, c, cap + 1).float()
    grid = torch.arange(cap + 1, dtype=torch.float32, device=distance.device).expand(n, c, 1, cap + 1)
    return [(counts * at_distance(curve, grid)[:, :, 0]).sum(-1) for curve in curves]


def _two_sided(near, across):
    """Simple-kriging weight of the residual's interpolation at a gap pixel ``d`` from data, with
    ``near`` = rho(d) and ``across`` = rho(2 d): the pixel midway between two data points ``2 d``
    apart gets ``rho(d) / (1 + rho(2 d))`` of each, so ``2 rho(d) / (1 + rho(2 d))`` of their mean
    (at most 1); its error variance is ``var * (1 - weight * rho(d))``. The one-sided weight
    ``rho(d)`` shrank the interpolation too much: on full-size training scenes the two-sided one
    cut the error of the kriged pixels by 1-19% in every case tried (benchmarks/RESULTS.md, 2026-12-06)."""
    return torch.clamp(2.0 * near / (1.0 + across), max=1.0)


@torch.no_grad()
def own_interpolation(target, known, harmonic=None, iterations=(8, 10)) -> Kriged:
    """Without context: ``target`` (N, C, H, W) interpolated into its gaps from its ``known`` pixels
    and the standard error of that. Per sample the ``harmonic`` fill given (the target's
    :func:`~xdl.models.harmonic.harmonic_fill`, biharmonic-refined; None: computed, with
    ``iterations`` (harmonic, biharmonic), only for the samples that take it) or a thin plate,
    whichever the field's own statistics predict to err less (:func:`_interpolate`); the error is
    :func:`spatial_std`'s, scaled for a thin plate by the ratio of their predicted errors.

    >>> y, x = torch.meshgrid(torch.arange(48.0), torch.arange(48.0), indexing="ij")
    >>> t = (x * x / 40 + y)[None, None]; m = torch.ones_like(t); m[..., 16:32, 16:32] = 0
    >>> from xdl.models.harmonic import harmonic_fill
    >>> k = own_interpolation(t * m, m, harmonic_fill(t * m, m, 8, 10))  # smooth: a thin plate, exact
    >>> bool((k.value - t).abs().max() < 0.01), bool(torch.equal(k.value[m > 0], t[m > 0]))
    (True, True)
    """
    with torch.autocast(target.device.type, enabled=False):
        known = _as_bool(known)
        gaps = ~known
        distance = capped_distance(known, max_lag())
        fill, factor, _ = _interpolate(torch.where(known, target.float(), 0.0), known, distance, gaps, harmonic,
                                    iterations)
        var = _sparse_sill(_own_variance(target, known, distance, gaps) * factor, target, known, gaps)
        return Kriged(torch.where(known, target.float(), fill), torch.sqrt(var))


# Mixing a context fill with the target's own interpolation: the correlation assumed between their
# errors for the weights (both interpolate the same neighbours; 0 mixed too much in, 1 would pick
# one: on training scenes 0.5 and 0.7 did best), and the predicted share of the context fill's error
# variance below which a plane pays for its own interpolation (a thin plate or harmonic fill: 0.13 s
# for a CONUS tile). A clear gain only: at 0.95 the training scenes gained more (error 0.96x in the
# geometric mean, against 0.97-0.98x at 0.7-0.8) and the held-out median moved 0.81 -> 0.80, but a
# CONUS tile under 3% scan lines (predicted 0.72-0.81) paid the fill for 0.4% less error, and the
# 2x context-cost target is at its limit (benchmarks/RESULTS.md, session 29).
BLEND_CORRELATION = 0.5
BLEND_GAIN = 0.6
# A tile of fewer pixels than 512 x 512 (its plane as the model sees it, halo included: a field
# of up to about 350 x 350 with the default halo, or any field under a smaller tile=, where the
# own fill costs little) pays for it from this share (session 38, the training
# scenes' RMSE 0.975x in the geometric mean, worst 1.047x, against 0.985x and 1.124x at 1.0; an
# ERA-Interim u200 filled with u500 as context, whose mix was never computed, erred 4.0x the
# biharmonic fill across one draw's scan lines, 1.09x now; the CONUS tiles keep 0.6).
SMALL_PLANE, SMALL_PLANE_GAIN = 2 ** 18, 0.8
# Known pixels a plane needs before its own interpolation's error can be predicted (its structure
# function needs pairs: a step seen in one pixel predicted 0 and took that pixel everywhere).
OWN_MIN_PIXELS = 64


def _blend(own_value, own_var, value, var):
    """The mix of two estimates with error variances ``own_var`` and ``var``: weights that would
    minimise its error were their errors correlated :data:`BLEND_CORRELATION`, and as its error
    variance the square of the weighted mean of their standard errors, the bound that holds
    whatever the correlation (the variance for a correlation of 0.5 was too narrow on training
    scenes: 1-sigma coverage 60-66% where the context fill alone had 71-77%). (value, variance)."""
    own_std, std = torch.sqrt(own_var), torch.sqrt(var)
    cov = BLEND_CORRELATION * own_std * std
    weight = ((var - cov) / (own_var + var - 2 * cov).clamp(min=1e-30)).clamp(0.0, 1.0)
    mixed = weight * own_value + (1 - weight) * value
    return mixed, (weight * own_std + (1 - weight) * std) ** 2


@torch.no_grad()
def with_own_interpolation(kriged: Kriged, target, known, fitted, iterations=(8, 10), wanted=None) -> Kriged:
    """``kriged`` (a context fill of ``target`` (N, 1, H, W) and its standard error) mixed, at the
    gap pixels where it rests on the regression (``fitted``), with the target's own interpolation
    (:func:`own_interpolation`), each weighted by its error variance (errors correlated
    :data:`BLEND_CORRELATION`). A context that explains little (z at 500 hPa regressed on u, or on
    the levels above and below across thin scan lines, where the field's own thin plate is nearly
    exact) made fills 2.5-3.6x worse than the same model without it; the mix keeps the better of
    the two where one is, and gains from both where they are alike. A plane computes its own
    interpolation only where the error variances predicted from its statistics (the harmonic
    fill's or the thin plate's, as :func:`_interpolate` chooses) would bring the mix's below
    :data:`BLEND_GAIN` of the context fill's (satellite bands with another band: seldom).

    >>> y, x = torch.meshgrid(torch.arange(48.0), torch.arange(48.0), indexing="ij")
    >>> t = (x * x / 40 + y)[None, None]; m = torch.ones_like(t); m[..., 20:22, :] = 0
    >>> poor = Kriged(torch.where(m > 0, t, t + 5.0), torch.where(m > 0, 0.0, 5.0))  # a fill 5 off
    >>> k = with_own_interpolation(poor, t * m, m, torch.ones_like(m, dtype=torch.bool))
    >>> bool((k.value - t).abs().max() < 0.5), bool(torch.equal(k.value[m > 0], t[m > 0]))
    (True, True)
    """
    with torch.autocast(target.device.type, enabled=False):
        known = _as_bool(known)
        gaps = ~known & fitted
        if wanted is not None:
            gaps = gaps & wanted
        if not bool(gaps.any()):
            return kriged
        target = torch.where(known, target.float(), 0.0)
        # The residual's known pixels are the target's wherever the regression reads a context.
        distance = kriged.distance if kriged.distance is not None else capped_distance(known, max_lag())
        take = _own_interpolation_pays(target, known, distance, gaps, kriged.std)
        if not bool(take.any()):
            return kriged
        var = torch.where(gaps, kriged.std.float() ** 2, 0.0)
        value, std = kriged.value.float().clone(), kriged.std.float().clone()
        own = own_interpolation(target[take], known[take], iterations=iterations)
        mixed, mixed_var = _blend(own.value, own.std ** 2, value[take], var[take])
        here = gaps[take]
        value[take] = torch.where(here, mixed, value[take])
        std[take] = torch.where(here, torch.sqrt(mixed_var), std[take])
        return Kriged(value, std)


def _own_interpolation_pays(target, known, distance, gaps, std) -> torch.Tensor:
    """(N,) bool: the planes where the mix is predicted to cut the context fill's error variance at
    ``gaps`` below :data:`BLEND_GAIN` of it (:data:`SMALL_PLANE_GAIN` on tile planes under
    :data:`SMALL_PLANE` pixels, halo included, where it costs little). The own interpolation's
    error predicted as :func:`_interpolate` would choose it (half the structure function, or a quarter of the
    second-order one for a thin plate, at each gap's distance, times the local roughness), at the
    gap pixels only: about 50 ms on a CONUS tile, against 0.13 s for the fill it may save."""
    n = gaps.shape[0]
    enough = torch.count_nonzero(known.flatten(1), dim=-1) >= OWN_MIN_PIXELS
    if not bool(enough.any()):
        return enough
    linear_curve = structure_function(target, known, sample=CHOICE_SAMPLE) / 2
    many = _many_gaps(gaps)
    curved_curve = _thin_plate_error(curvature_function(target, known, sample=CHOICE_SAMPLE) / 4, target, known, many)
    curved_sum, linear_sum = _sums_at_gaps((curved_curve, linear_curve), distance, gaps)
    thin = (curved_sum < torch.where(many, THIN_PLATE_GAIN, 1.0) * linear_sum)[..., None]
    curve = torch.where(thin, torch.minimum(curved_curve, linear_curve), linear_curve)
    pixels = torch.nonzero(gaps.reshape(-1)).squeeze(1)
    plane = pixels // (gaps.shape[-2] * gaps.shape[-1])
    # Times the local roughness: with the tile's mean instead, a training scene's clouds got 6%
    # worse (ERA-Interim u | v) where the rough part of the tile holds the gaps.
    own_var = (at_distance(curve, distance, where=gaps) * local_variability(target, known)).reshape(-1)[pixels]
    var = std.float().reshape(-1)[pixels] ** 2
    _, mixed = _blend(0.0, own_var, 0.0, var)
    sums = torch.zeros(2, n, dtype=torch.float64, device=var.device)
    sums[0].index_add_(0, plane, mixed.double())
    sums[1].index_add_(0, plane, var.double())
    gain = SMALL_PLANE_GAIN if gaps.shape[-2] * gaps.shape[-1] < SMALL_PLANE else BLEND_GAIN
    return (sums[0] < gain * sums[1]) & enough


@torch.no_grad()
def spatial_std(target, known) -> torch.Tensor:
    """Standard error (N, C, H, W) of interpolating ``target`` into its gaps from its own known
    pixels: the root of half its structure function (the semivariogram: a gap is filled from more
    than one side) at each pixel's distance to data, times its local roughness (0 where known).

    >>> t = torch.arange(16.0).reshape(1, 1, 1, 16); m = torch.ones_like(t); m[..., 5:9] = 0
    >>> (spatial_std(t * m, m)[0, 0, 0, 4:10] ** 2 * 2).round().tolist()
    [0.0, 1.0, 4.0, 4.0, 1.0, 0.0]
    """
    return torch.sqrt(interpolation_variance(target, known, known < 0.5))


@torch.no_grad()
def interpolation_variance(field, known, where, thin_plate=False) -> torch.Tensor:
    """Error variance (N, C, H, W) of interpolating ``field`` from its ``known`` pixels, computed only
    at the gap pixels ``where`` (bool; 0 elsewhere): :func:`spatial_std` squared, or with
    ``thin_plate`` a quarter of the second-order structure function at the distance to data
    (times the local roughness), for a fill that follows the field's slopes.

    >>> t = torch.arange(16.0).reshape(1, 1, 1, 16); m = torch.ones_like(t); m[..., 5:9] = 0
    >>> interpolation_variance(t * m, m, m == 0)[0, 0, 0, 4:10].tolist()  # half the structure function
    [0.0, 0.5, 2.0, 2.0, 0.5, 0.0]
    >>> interpolation_variance(t * m, m, m == 0, thin_plate=True).abs().max().item()  # a line: no curvature
    0.0
    """
    known = _as_bool(known)
    with torch.autocast(field.device.type, enabled=False):
        return _own_variance(field, known, capped_distance(known, max_lag()), where & ~known, thin_plate)


def _own_variance(target, known, distance, where, thin_plate=False):
    """The error variance of the target's own interpolation at ``distance`` (``where`` only, 0
    elsewhere): half its structure function, the semivariogram, times its local roughness; for a
    thin-plate fill (``thin_plate``), which follows the field's slopes, a quarter of its
    second-order structure function (:func:`curvature_function`) instead."""
    if thin_plate:
        curve = _thin_plate_error(curvature_function(target, known) / 4, target, known, _many_gaps(where))
        own = at_distance(curve, distance, where=where)
    else:
        own = at_distance(structure_function(target, known), distance, where=where) / 2
    return _sparse_sill(own * local_variability(target, known), target, known, where)


# A plane with fewer known pixels than this, and covering less than SPARSE_SHARE of it, takes its
# variance as its interpolation error (the sill): its structure function rests on too few pairs (none
# at most lags) to say how the error grows. Counted in the tile, whose mirrored halo repeats pixels
# near the edges (a 73 x 144 field sits in a 224 x 288 tile: 30 pixels count as 188, and a pixel
# and its mirror image make pairs that differ by 0, which pulled the structure function, and the
# sigma, to a sixth of the errors). A small field that is mostly known (a 32 x 32 test tile) keeps
# its structure function.
SILL_BELOW, SPARSE_SHARE = 256, 0.05
SPARSE_NO_SPREAD = 4.0  # standard deviations: the error of a plane seen in one pixel (no spread known)


def _sparse_sill(var, target, known, where):
    """``var`` with the sparse planes (fewer than :data:`SILL_BELOW` known pixels, under
    :data:`SPARSE_SHARE` of the plane) set, at ``where``, to
    the variance of their known values (the error of an interpolation with no correlation to lean
    on; :data:`SPARSE_NO_SPREAD` squared for a plane of one pixel or of one value, in the per-sample
    standardised units). ERA-40 total column water seen in 3 or 30 random pixels had a sigma of 0.02 and 2.4
    for errors of 26 and 12 (RMS): lags without pairs held the structure function at 0."""
    known = _as_bool(known)
    count = torch.count_nonzero(known.flatten(2), dim=-1)
    thin = count < SPARSE_SHARE * known.shape[-2] * known.shape[-1]
    if not bool(thin.any()):
        return var
    values = torch.where(known, target.float(), 0.0)
    mean = values.flatten(2).sum(-1) / count.clamp(min=1)
    spread = (torch.where(known, values - mean[..., None, None], 0.0) ** 2).flatten(2).sum(-1)
    # No spread also where every known value is the same, however many times it is counted: in a
    # small field's mirrored tile one pixel counts up to a thousand times (a field seen in one
    # pixel had sigma 1e-3 for errors of 4.5; probe). A thin plane without spread takes the sill.
    flat = spread <= 0
    sparse = thin & ((count < SILL_BELOW) | flat)
    sill = torch.where((count > 1) & ~flat, spread / (count - 1).clamp(min=1),
                       torch.full_like(spread, SPARSE_NO_SPREAD ** 2))
    return torch.where(sparse[..., None, None] & where, sill[..., None, None].to(var.dtype), var)
