"""Local linear regression of a target field on context fields, in torch: the context first guess.

Where another band, variable or time step of the same scene is known inside a gap, the best cheap
estimate of the target there is usually a regression on it, fitted on the pixels around the gap
where both are known: a held-out GOES scene's long-wave IR band regressed on the other IR bands this
way came within 1/6-1/15 of the best interpolator's error. The fit is local because the relation
drifts across a scene (surface type, cloud, view angle).

How: weighted moments of target and context over ``cell x cell`` cells, summed over a box of
``2 * radius + 1`` cells around each cell (about ``cell * (2 * radius + 1)`` pixels across), a
ridge-regularised least-squares solve per cell, coefficients interpolated bilinearly to pixels and
applied to the context. Cells with too little support borrow the fit of the whole tile. The cost is
linear in the pixels and quadratic in the number of context fields.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

__all__ = ["local_regression", "presence_regression", "ContextFit", "absent_fields", "unfitted_fields"]

# Ridge penalty per coefficient: a share of the context field's local variance (scale-free, so a
# 0.01% shrink at most) plus a floor for a field that is flat in the window.
RIDGE_RELATIVE, RIDGE_FLOOR = 1e-4, 1e-6
MIN_SUPPORT = 4   # valid pixels per coefficient below which a cell takes the whole tile's fit
# A window's fit is used for a cell only where the cell's context lies within this many of the
# window's standard deviations (Mahalanobis) of the window's own: a window whose pixels are all
# alike (the pole row of a global grid, constant along it) fits any slope, and a cell rows away
# read it far outside what it was fitted on (MERRA-2 surface pressure, a block at the South Pole:
# errors of 2,600 Pa where the other hour's regression misses by 30).
MAX_EXTRAPOLATION = 5.0
WIDE_BY_TABLE = 4  # windows of more than 2 * 4 + 1 cells are summed from a summed-area table


def _cell_moments(t, c, w, cell):
    """Per ``cell x cell`` cell, the moment matrix ``D^T diag(w) D`` of the design
    ``D = [1, c_1..c_K, t]`` over the pixels where the 0/1 weight ``w`` is 1: (N, Hc, Wc, K+2, K+2),
    float64 (the sums of 256 products in float32, one batched matrix product of the weighted design
    with itself, ``w`` being its own square: all pairs at once, no per-pair pass over the pixels)."""
    n, k, h, wd = c.shape
    hc, wc = -(-h // cell), -(-wd // cell)
    pad = (0, wc * cell - wd, 0, hc * cell - h)
    if any(pad):  # zero weight beyond the edge
        t, c, w = (F.pad(a, pad) for a in (t, c, w))
    k2 = k + 2

    def cells(a):  # (N, Hc * cell, Wc * cell) -> a view (N, Hc, Wc, cell, cell): each cell's pixels last
        return a.reshape(n, hc, cell, wc, cell).permute(0, 1, 3, 2, 4)

    # The weighted design written straight into that layout (each product into its place: no
    # concatenated copy to permute after).
    d = torch.empty((n, hc, wc, k2, cell, cell), dtype=w.dtype, device=w.device)
    d[:, :, :, 0] = cells(w[:, 0])
    for j, field in enumerate(list(c.unbind(1)) + [t[:, 0]], start=1):
        torch.mul(cells(field), cells(w[:, 0]), out=d[:, :, :, j])
    d = d.reshape(n, hc, wc, k2, cell * cell)
    return (d @ d.transpose(-1, -2)).double()


def _solve(moments):
    """Coefficients (N, K+1, Hc, Wc), residual variance and pixel count (N, 1, Hc, Wc) of the
    ridge least-squares fit of t on [1, c] from moment matrices (N, Hc, Wc, K+2, K+2)."""
    k1 = moments.shape[-1] - 1
    gram, rhs, tt = moments[..., :k1, :k1], moments[..., :k1, k1], moments[..., k1, k1]
    count = gram[..., 0, 0]
    safe = count.clamp(min=1.0)[..., None]
    diag = torch.diagonal(gram, dim1=-2, dim2=-1)
    variance = (diag / safe - (gram[..., 0, :] / safe) ** 2).clamp(min=0.0)
    ridge = (RIDGE_RELATIVE * variance + RIDGE_FLOOR) * safe
    ridge[..., 0] = 0.0  # the intercept is not shrunk
    a = gram + torch.diag_embed(ridge)
    a = a + 1e-6 * torch.eye(k1, dtype=moments.dtype, device=moments.device)  # an empty cell stays solvable
    beta = torch.linalg.solve(a, rhs[..., None])[..., 0]
    residual = (tt - 2 * (beta * rhs).sum(-1) + (beta[..., None, :] @ gram @ beta[..., :, None])[..., 0, 0])
    residual = (residual / count.clamp(min=1.0)).clamp(min=0.0)
    return beta.permute(0, 3, 1, 2), residual[:, None], count[:, None]


def _fits(moments, radii, prior=None, cell_context=None):
    """Per cell, the fit of the finest window (``2 * r + 1`` cells, ``r`` in ``radii``) whose pixels
    support it (enough of them, and spread enough that the cell's mean context ``cell_context``
    (N, Hc, Wc, K) is within :data:`MAX_EXTRAPOLATION` of theirs), else the whole tile's, else (a
    tile with too few pixels for a fit) the ``prior``:
    coefficients (N, K+1, Hc, Wc), residual variance and the finest window's pixel count (N, 1, Hc, Wc).
    ``prior``: None, or ``(weights (N, K), variance (N,))`` or ``(weights, variance, force (N,))``,
    coefficients on the context fields (a row of NaN: none for that sample) with an intercept
    fitted to the pixels there are, and a floor under its residual variance; ``force`` True for
    the samples that take it whatever their pixel count (their pixels are copies of fewer distinct
    points: a small field's mirrored tile), which then take no window's fit either."""
    n, hc, wc, k2, _ = moments.shape
    flat = moments.reshape(n, hc, wc, k2 * k2).permute(0, 3, 1, 2)
    tile = moments.sum((1, 2), keepdim=True)
    beta, residual, _ = _solve(tile)
    forced = None
    if prior is not None:
        beta, residual = _with_prior(tile, beta, residual, *prior)
        forced = prior[2] if len(prior) > 2 else None
    beta, residual = beta.expand(n, k2 - 1, hc, wc), residual.expand(n, 1, hc, wc)
    mean, inverse = (a.expand(n, hc, wc, *a.shape[3:]) for a in _context_spread(tile))
    count = None
    for r in sorted(radii, reverse=True):  # the finest supported window wins
        local = _box_sums(flat, r)
        window = local.permute(0, 2, 3, 1).reshape(n, hc, wc, k2, k2)
        b, res, count = _solve(window)
        supported = count >= MIN_SUPPORT * (k2 - 1)
        if forced is not None:
            supported = supported & ~forced[:, None, None, None]
        m, inv = _context_spread(window)
        if cell_context is not None:
            supported &= (_distance2(cell_context, m, inv) <= MAX_EXTRAPOLATION ** 2)[:, None]
        beta, residual = torch.where(supported, b, beta), torch.where(supported, res, residual)
        cells = supported[:, 0, :, :, None]
        mean, inverse = torch.where(cells, m, mean), torch.where(cells[..., None], inv, inverse)
    return beta, residual, count, (mean, inverse)


def _context_spread(moments):
    """The mean (N, Hc, Wc, K) and inverse covariance (N, Hc, Wc, K, K) of the context values the
    moments (N, Hc, Wc, K+2, K+2) were summed over (the fit's ridge on the variances keeps a field
    that is flat in the window invertible); the inverse is 0 (no distance) where too few pixels
    support a fit (a tile that took its neighbouring steps' prior)."""
    k = moments.shape[-1] - 2
    count = moments[..., 0, 0]
    safe = count.clamp(min=1.0)
    mean = moments[..., 0, 1:k + 1] / safe[..., None]
    cov = moments[..., 1:k + 1, 1:k + 1] / safe[..., None, None] - mean[..., :, None] * mean[..., None, :]
    variance = torch.diagonal(cov, dim1=-2, dim2=-1).clamp(min=0.0)
    cov = cov + torch.diag_embed(RIDGE_RELATIVE * variance + RIDGE_FLOOR)
    supported = (count >= MIN_SUPPORT * (k + 1))[..., None, None]
    return mean, torch.where(supported, torch.linalg.inv(cov), 0.0)


def _distance2(point, mean, inverse):
    """Squared Mahalanobis distance of ``point`` (..., K) from ``mean`` (..., K) under ``inverse`` (..., K, K)."""
    offset = point.to(mean.dtype) - mean
    return (offset[..., :, None] * inverse * offset[..., None, :]).sum((-2, -1))


def _with_prior(tile, beta, residual, weights, variance, force=None):
    """The tile fits (N, K+1, 1, 1) and residual variances (N, 1, 1, 1), the ``weights`` (N, K)
    instead where the tile holds fewer than :data:`MIN_SUPPORT` pixels per coefficient (a step seen
    in a handful of pixels: its fit was a constant with no error) or ``force`` (N,) says so, with
    the intercept that fits those pixels' mean and as residual variance their misfit, at least
    ``variance`` (N,)."""
    k2 = tile.shape[-1]
    m = tile[:, 0, 0]  # (N, K+2, K+2)
    count = m[:, 0, 0]
    few = count < MIN_SUPPORT * (k2 - 1)
    use = (few if force is None else few | force) & torch.isfinite(weights).all(-1)
    if not bool(use.any()):
        return beta, residual
    w = torch.nan_to_num(weights.double())
    intercept = (m[:, 0, k2 - 1] - (w * m[:, 0, 1:k2 - 1]).sum(-1)) / count.clamp(min=1.0)
    fit = torch.cat([intercept[:, None], w], 1)  # (N, K+1)
    coef = torch.cat([-fit, torch.ones_like(fit[:, :1])], 1)  # t - intercept - w.c as a form on [1, c, t]
    misfit = ((coef[:, None, :] @ m @ coef[:, :, None])[:, 0, 0] / count.clamp(min=1.0)).clamp(min=0.0)
    floor = torch.maximum(misfit, variance.double())
    beta = torch.where(use[:, None, None, None], fit[:, :, None, None].to(beta.dtype), beta)
    residual = torch.where(use[:, None, None, None], floor[:, None, None, None].to(residual.dtype), residual)
    return beta, residual


def _box_sums(flat, r):
    """Sums over ``2r+1`` x ``2r+1`` cells around each cell (zero beyond the edges) of (N, C, Hc, Wc).
    Small windows by pooling; wide ones from a summed-area table (float64 here), whose cost does
    not grow with the window (a 25-cell pool cost 12% of a two-field CONUS fill)."""
    box = 2 * r + 1
    if r <= WIDE_BY_TABLE:
        return F.avg_pool2d(flat, box, stride=1, padding=r, count_include_pad=True) * (box * box)
    sat = F.pad(flat, (r + 1, r, r + 1, r)).cumsum(-1).cumsum(-2)
    return sat[..., box:, box:] - sat[..., :-box, box:] - sat[..., box:, :-box] + sat[..., :-box, :-box]


def _coefficients(beta, size):
    # Coefficients vary smoothly between cell centres (bilinear): no blocky seams at cell borders.
    return F.interpolate(beta.float(), size=size, mode="bilinear", align_corners=False)


def _apply(beta_px, c):
    # One field at a time: no (N, K, H, W) product to allocate and reduce (3x faster on a CONUS tile).
    if c.shape[1] == 0:
        return beta_px[:, :1].clone()
    estimate = beta_px[:, 1:2] * c[:, :1]
    for k in range(1, c.shape[1]):
        estimate += beta_px[:, k + 1:k + 2] * c[:, k:k + 1]
    return beta_px[:, :1] + estimate


@torch.no_grad()
def local_regression(target, target_mask, context, context_mask, cell: int = 16, radius: int = 3,
                     wide_radius: int | None = None):
    """Estimate of ``target`` (N, 1, H, W) from ``context`` (N, K, H, W) by local least squares.

    ``target_mask`` / ``context_mask``: 1 where valid; the fit uses pixels where the target and
    every context field are valid. ``context`` should be complete (gaps already filled by some
    first guess) so the estimate exists at every pixel. ``wide_radius``: cells whose window of
    ``radius`` has too few pixels (deep inside a large gap) take the fit of a window of this many
    cells before the whole tile's. Returns ``(estimate, residual_variance, support)``: the estimate
    (N, 1, H, W), and per ``cell x cell`` cell (N, 1, ceil(H / cell), ceil(W / cell)) the local fit's
    residual variance and its number of valid pixels.

    >>> y, x = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    >>> c = torch.sin(x / 5)[None, None] + y[None, None] / 64
    >>> t = 3 * c - 1; m = torch.ones_like(t); m[..., 20:30, :] = 0
    >>> est, _, _ = local_regression(t * m, m, c, torch.ones_like(c))
    >>> bool((est - t).abs().max() < 1e-3)
    True
    """
    estimate, residual, count, _, _ = _local_fit(target, target_mask, context, context_mask, cell, radius, wide_radius)
    return estimate, residual, count


def _local_fit(target, target_mask, context, context_mask, cell, radius, wide_radius, prior=None):
    """:func:`local_regression`'s results and the per-pixel coefficients on the context fields (N, K, H, W)."""
    dtype = target.dtype
    # Never under autocast: moments summed by a bf16 matrix product lose the fit (on a held-out
    # GOES scene with bf16 autocast, the default on GPUs and bf16-capable CPUs, a kriged context
    # fill's RMSE rose from 0.052 to 0.072).
    with torch.autocast(target.device.type, enabled=False):
        t, c = target.float(), context.float()
        w = target_mask > 0.5
        if context_mask.shape[1]:  # every field present: its smallest mask value (one pass, no bool copy)
            w = w & (context_mask.amin(1, keepdim=True) > 0.5)
        w = w.float()
        moments = _cell_moments(t, c, w, cell)  # (N, Hc, Wc, K+2, K+2)
        radii = (radius,) if wide_radius is None else (radius, wide_radius)
        cell_context = F.avg_pool2d(c, cell, ceil_mode=True).permute(0, 2, 3, 1)
        beta, residual, count, spread = _fits(moments, radii, prior, cell_context)
        beta_px = _coefficients(beta, target.shape[-2:])
        estimate = _apply(beta_px, c)
    return estimate.to(dtype), residual.to(dtype), count.to(dtype), beta_px[:, 1:], spread


# A linear fit read at a context value far from those it was fitted on errs more than its residual
# says (the relation bends: a cloud top colder than the window's clear sky). On the GOES-17 M1
# training bands (C07 | C16, C13 | C11, C08 | C10, clouds) the RMS of error / sigma grew from
# 1.2 at a squared Mahalanobis distance d2 < 0.25 from the window's context to 1.7 at 4-16 and
# 2.8 beyond. The variance grows by this much per unit of d2 per field beyond 1 (the spread of the
# window itself is no extrapolation). On the training scenes (21 case x gap kinds, 3 draws) 0.2
# raised 2-sigma coverage by about a point where it was short and moved RMSE by -2.8% to +0.3%
# (through the mix with the target's own interpolation); 0.5 gained more RMSE on average (0.989x)
# but lost 4% on GOES C07 | C16 blocks and two sigma targets.
EXTRAPOLATION_VARIANCE = 0.2


def _with_extrapolation(variance, gaps, context, fields, spread, cell):
    """The fit's residual ``variance`` (N, 1, H, W) times ``1 + EXTRAPOLATION_VARIANCE * max(d2 / K - 1, 0)`` at
    the ``gaps`` pixels, ``d2`` the squared Mahalanobis distance of the pixel's context values from
    those of the window its ``cell x cell`` cell's fit came from, ``K`` = ``fields`` (N,), the
    context fields present in the sample."""
    if EXTRAPOLATION_VARIANCE == 0 or context.shape[1] == 0:
        return variance
    pixels = torch.nonzero(gaps.reshape(-1)).squeeze(1)
    if pixels.numel() == 0:
        return variance
    n, k, h, w = context.shape
    mean, inverse = spread  # (N, Hc, Wc, K), (N, Hc, Wc, K, K)
    hc, wc = mean.shape[1:3]
    # Each pixel reads its own cell's window (the variance factor need not be smooth: one gather
    # instead of four, 11 -> 5 ms on a CONUS tile).
    sample, y, x = pixels // (h * w), (pixels // w) % h, pixels % w
    which = (sample * hc + y // cell) * wc + x // cell
    values = context.reshape(n, k, h * w)[sample, :, pixels % (h * w)]
    d2 = _distance2(values.float(), mean.reshape(-1, k)[which].float(), inverse.reshape(-1, k, k)[which].float())
    fields = fields.clamp(min=1)[sample]
    out = variance.clone()
    out.view(-1)[pixels] *= 1.0 + EXTRAPOLATION_VARIANCE * (d2.clamp(min=0.0) / fields - 1.0).clamp(min=0.0)
    return out


class ContextFit(NamedTuple):
    """What :func:`presence_regression` gives: ``estimate`` (N, 1, H, W), NaN where no context field
    is present; ``residual`` per cell as in :func:`local_regression`; ``variance`` (N, 1, H, W) the
    fit's residual variance at each pixel; ``exact`` (N, 1, H, W) bool, True where every context
    field is present (elsewhere the estimate rests on interpolated context values);
    ``coefficients`` (N, K, H, W) the fit's coefficient on each context field at each pixel."""

    estimate: torch.Tensor
    residual: torch.Tensor
    variance: torch.Tensor
    exact: torch.Tensor
    coefficients: torch.Tensor


# A context field known beside the target in under this share of the target's known pixels (or
# under MIN_SUPPORT of them) has no fit worth reading. A share, not a count: a small field's tile
# is mostly its mirror image, which counts one real pixel many times (a 48 x 56 field: 16).
UNFITTED_SHARE = 0.01


@torch.no_grad()
def unfitted_fields(target_mask: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """``(N, K, 1, 1)``: True for each field of ``present`` ``(N, K, H, W)`` with values where the
    target ``(N, 1, H, W)`` is known at fewer than :data:`MIN_SUPPORT` pixels or under
    :data:`UNFITTED_SHARE` of the target's, in a sample where the target itself has that many:
    no fit can say how it relates to the target. Such a field is better treated as absent (a
    context seen in one pixel, inside the target's gap, took a fit without support there: errors
    of 1.1 on a field of range 4, with sigma at its floor; probe).

    >>> t = torch.ones(1, 1, 4, 4); t[..., 0, 0] = 0
    >>> p = torch.ones(1, 2, 4, 4); p[:, 1] = 0; p[:, 1, 0, 0] = 1
    >>> unfitted_fields(t, p).flatten().tolist()
    [False, True]
    """
    known = target_mask > 0.5
    both = (known & (present > 0.5)).flatten(2).sum(-1)
    count = known.flatten(2).sum(-1)
    few = (both < MIN_SUPPORT) | (both < UNFITTED_SHARE * count)
    return (few & (count >= MIN_SUPPORT))[..., None, None]


@torch.no_grad()
def absent_fields(mask: torch.Tensor) -> torch.Tensor:
    """``(N, K, 1, 1)``: True for each field of ``mask`` ``(N, K, H, W)`` (1 = value) without any value
    in its sample, e.g. a time step beyond a series' end.

    >>> m = torch.ones(1, 2, 3, 3); m[:, 1] = 0
    >>> absent_fields(m).flatten().tolist()
    [False, True]
    """
    flat = mask.flatten(2)
    if flat.shape[-1] == 0:
        return torch.ones(flat.shape[:2] + (1, 1), dtype=torch.bool, device=mask.device)
    # The largest value of each plane, not a bool copy of the mask then any(): one read pass (a
    # CONUS tile's two context masks: 5 ms a call against 2.5). A plane holding NaN (max NaN) is
    # tested as before: NaN is no value.
    top = flat.amax(-1)
    present = top > 0.5
    unsure = torch.isnan(top)
    if bool(unsure.any()):
        present = torch.where(unsure, (flat > 0.5).any(-1), present)
    return present.logical_not()[..., None, None]


def presence_regression(target, target_mask, context, context_mask, present, cell: int = 16,
                        radius: int = 3, wide_radius: int = 12, prior=None) -> ContextFit:
    """:func:`local_regression` with a wider window deep inside large gaps, told where each context
    field really is.

    ``context`` is complete (its own gaps interpolated); ``present`` (N, K, H, W) says where it is
    real: 1 where a field has a value, 0 in its own gaps. A field absent from a whole sample (a
    time step beyond the series' end) is ignored (give it 1 in ``context_mask``: it enters the fit
    with coefficient 0). The estimate is NaN where no field is present (a regression on context
    values that are all interpolated is no better than interpolating the target) and flagged
    inexact where only some are (the fill then should not be trusted as the regression's).
    ``prior`` (optional): the fit of a tile with too few target pixels for one, as in :func:`_fits`.

    >>> y, x = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    >>> c = torch.sin(x / 5)[None, None]
    >>> t = 2 * c - 1; m = torch.ones_like(t); m[..., 20:30, :] = 0
    >>> p = torch.ones_like(c); p[..., 20:25, :] = 0     # the context misses rows 20-24
    >>> fit = presence_regression(t * m, m, c, torch.ones_like(c), p)
    >>> bool(fit.estimate[..., 20:25, :].isnan().all()), bool((fit.estimate - t)[..., 25:30, :].abs().max() < 1e-3)
    (True, True)
    """
    estimate, residual, _, coefficients, spread = _local_fit(target, target_mask, context, context_mask, cell, radius,
                                                             wide_radius, prior)
    variance = F.interpolate(residual.float(), size=target.shape[-2:], mode="bilinear", align_corners=False)
    absent = absent_fields(present)
    variance = _with_extrapolation(variance, target_mask < 0.5, context, (~absent).flatten(1).sum(-1), spread, cell)
    if present.numel() == 0 or bool(present.amin() > 0.5):  # every field everywhere (the common case): exact
        return ContextFit(estimate, residual, variance, torch.ones_like(present[:, :1], dtype=torch.bool), coefficients)
    here = present > 0.5
    exact = (here | absent).all(1, keepdim=True)  # a field missing everywhere is ignored
    some = here.any(1, keepdim=True)
    estimate = torch.where(some, estimate, torch.full_like(estimate, float("nan")))
    return ContextFit(estimate, residual, variance, exact, coefficients)
