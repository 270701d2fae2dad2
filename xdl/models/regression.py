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

import torch
import torch.nn.functional as F

__all__ = ["local_regression"]

# Ridge penalty per coefficient: a share of the context field's local variance (scale-free, so a
# 0.01% shrink at most) plus a floor for a field that is flat in the window.
RIDGE_RELATIVE, RIDGE_FLOOR = 1e-4, 1e-6
MIN_SUPPORT = 4   # valid pixels per coefficient below which a cell takes the whole tile's fit


def _cell_sums(t, c, w, cell):
    """Per cell: sums of w, w*c_k, w*t, w*c_k*c_l, w*c_k*t, w*t*t as (N, M, Hc, Wc) maps."""
    ones = torch.ones_like(t)
    design = torch.cat([ones, c], 1)  # (N, K+1, H, W): intercept then the context fields
    k1 = design.shape[1]
    i, j = torch.triu_indices(k1, k1)
    products = [design[:, i] * design[:, j] * w, design * t * w, t * t * w]
    stacked = torch.cat(products, 1)
    sums = F.avg_pool2d(stacked, cell, stride=cell, ceil_mode=True) * (cell * cell)
    return sums, (i, j), k1


def _solve(sums, pairs, k1):
    """Coefficients (N, K+1, Hc, Wc) and the fit's residual variance (N, 1, Hc, Wc) from moment sums."""
    i, j = pairs
    n_pairs = i.numel()
    n, _, hc, wc = sums.shape
    gram = sums.new_zeros((n, hc, wc, k1, k1))
    moved = sums.permute(0, 2, 3, 1)
    gram[..., i, j] = moved[..., :n_pairs]
    gram[..., j, i] = moved[..., :n_pairs]
    rhs = moved[..., n_pairs:n_pairs + k1]
    tt = moved[..., n_pairs + k1]
    count = gram[..., 0, 0]
    safe = count.clamp(min=1.0)[..., None]
    diag = torch.diagonal(gram, dim1=-2, dim2=-1)
    variance = (diag / safe - (gram[..., 0, :] / safe) ** 2).clamp(min=0.0)
    ridge = (RIDGE_RELATIVE * variance + RIDGE_FLOOR) * safe
    ridge[..., 0] = 0.0  # the intercept is not shrunk
    a = gram + torch.diag_embed(ridge)
    a = a + 1e-6 * torch.eye(k1, dtype=sums.dtype, device=sums.device)  # an empty cell stays solvable
    beta = torch.linalg.solve(a, rhs[..., None])[..., 0]
    residual = (tt - 2 * (beta * rhs).sum(-1) + (beta[..., None, :] @ gram @ beta[..., :, None])[..., 0, 0])
    residual = (residual / count.clamp(min=1.0)).clamp(min=0.0)
    return beta.permute(0, 3, 1, 2), residual[:, None], count[:, None]


@torch.no_grad()
def local_regression(target, target_mask, context, context_mask, cell: int = 8, radius: int = 7):
    """Estimate of ``target`` (N, 1, H, W) from ``context`` (N, K, H, W) by local least squares.

    ``target_mask`` / ``context_mask``: 1 where valid; the fit uses pixels where the target and
    every context field are valid. ``context`` should be complete (gaps already filled by some
    first guess) so the estimate exists at every pixel. Returns ``(estimate, residual_variance,
    support)``: the estimate (N, 1, H, W), the local fit's residual variance and its number of
    valid pixels, both per pixel (nearest cell).

    >>> y, x = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    >>> c = torch.sin(x / 5)[None, None] + y[None, None] / 64
    >>> t = 3 * c - 1; m = torch.ones_like(t); m[..., 20:30, :] = 0
    >>> est, _, _ = local_regression(t * m, m, c, torch.ones_like(c))
    >>> bool((est - t).abs().max() < 1e-3)
    True
    """
    dtype = target.dtype
    t, c = target.float(), context.float()
    w = (target_mask * context_mask.prod(1, keepdim=True)).float()
    # Products and cell sums in float32 (64 pixels a cell); the box sums and solves in float64.
    sums, pairs, k1 = _cell_sums(t, c, w, cell)
    sums = sums.double()
    box = 2 * radius + 1
    local = F.avg_pool2d(sums, box, stride=1, padding=radius, count_include_pad=True) * (box * box)
    beta, residual, count = _solve(local, pairs, k1)
    whole = sums.sum((-2, -1), keepdim=True)
    beta_all, residual_all, _ = _solve(whole, pairs, k1)
    thin = count < MIN_SUPPORT * k1
    beta = torch.where(thin, beta_all, beta)
    residual = torch.where(thin, residual_all, residual)
    size = target.shape[-2:]
    # Coefficients vary smoothly between cell centres (bilinear): no blocky seams at cell borders.
    beta_px = F.interpolate(beta, size=size, mode="bilinear", align_corners=False)
    beta_px = beta_px.float()
    estimate = beta_px[:, :1] + (beta_px[:, 1:] * c).sum(1, keepdim=True)
    residual_px = F.interpolate(residual, size=size, mode="nearest")
    count_px = F.interpolate(count, size=size, mode="nearest")
    return estimate.to(dtype), residual_px.to(dtype), count_px.to(dtype)
