"""Harmonic gap filling in torch: a cheap, exact-on-valid first guess for learned gap fillers.

Coarse to fine: the field and its valid mask are averaged down a pyramid until every coarse pixel
has data; from the coarsest level up, the gaps take the upsampled coarser solution and are relaxed
towards the mean of their four neighbours (Jacobi iterations of Laplace's equation) while valid
pixels stay fixed. The result is close to a membrane (harmonic) interpolation, like linear
interpolation between the gap's borders, at a cost linear in the number of pixels. Optionally,
damped iterations of the biharmonic equation near the gap borders then bend that towards a thin
plate (cubic across thin gaps, continuing the field's gradient rather than only its value).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["harmonic_fill", "thin_plate_fill"]


# Jacobi updates as weighted sums of a pixel's neighbours, {(dy, dx): weight}:
# Laplace's equation: the mean of the four neighbours.
_HARMONIC = {(-1, 0): 0.25, (1, 0): 0.25, (0, -1): 0.25, (0, 1): 0.25}
# The biharmonic equation (the Laplacian applied twice, a 13-point stencil with 20 at the centre),
# damped: u <- u - 0.5 / 20 * biharmonic(u); damped Jacobi is stable for it below 40/64.
_STENCIL = {(0, 0): 20.0, **{o: -8.0 for o in ((-1, 0), (1, 0), (0, -1), (0, 1))},
            **{o: 2.0 for o in ((-1, -1), (-1, 1), (1, -1), (1, 1))},
            **{o: 1.0 for o in ((-2, 0), (2, 0), (0, -2), (0, 2))}}
_BIHARMONIC = {o: (1.0 if o == (0, 0) else 0.0) - 0.5 / 20.0 * wt for o, wt in _STENCIL.items()}
_SPARSE = 0.25  # below this share of free pixels, relax them by gathering (cost ~ their number)


def _relax(f: torch.Tensor, fixed: torch.Tensor, iterations: int, update: dict) -> torch.Tensor:
    """``iterations`` Jacobi steps ``u <- sum(weight * neighbour)`` on the pixels not ``fixed``;
    neighbours beyond the tile edge are clamped to it (replicate padding).

    On the CPU, when few pixels are free, they and their neighbours are gathered once and a step
    costs in proportion to their number, not to the tile size. Otherwise (and always on GPUs,
    where whole-tile steps are cheap and need no count of free pixels, i.e. no device sync) each
    step is a convolution over the whole tile, reset on the fixed pixels. The two agree up to
    float rounding.
    """
    if iterations <= 0:
        return f
    n, c, h, w = f.shape
    free = ~fixed
    if f.device.type != "cpu" or _share(free) >= _SPARSE:
        reach = max(max(abs(dy), abs(dx)) for dy, dx in update)
        kernel = torch.zeros((1, 1, 2 * reach + 1, 2 * reach + 1), dtype=f.dtype, device=f.device)
        for (dy, dx), weight in update.items():
            kernel[0, 0, reach + dy, reach + dx] = weight
        planes = f.reshape(n * c, 1, h, w)
        free = free.reshape(n * c, 1, h, w)
        for _ in range(iterations):
            padded = F.pad(planes, (reach,) * 4, mode="replicate")
            planes = torch.where(free, F.conv2d(padded, kernel), planes)
        return planes.reshape(n, c, h, w)
    plane, y, x = torch.nonzero(free.reshape(n * c, h, w), as_tuple=True)
    if plane.numel() == 0:
        return f
    flat = f.reshape(-1).clone()
    targets = (plane * h + y) * w + x
    neighbours = torch.stack([(plane * h + (y + dy).clamp(0, h - 1)) * w + (x + dx).clamp(0, w - 1)
                              for dy, dx in update], dim=1)
    weights = torch.tensor(list(update.values()), dtype=f.dtype, device=f.device)
    # index_select on the flattened neighbours and index_copy_: the same values as
    # flat[targets] = flat[neighbours] @ weights, in 0.55-0.65x its time (2-D advanced indexing).
    gather, shape = neighbours.reshape(-1), neighbours.shape
    for _ in range(iterations):
        flat.index_copy_(0, targets, torch.index_select(flat, 0, gather).view(shape) @ weights)
    return flat.reshape(n, c, h, w)


def _share(free: torch.Tensor) -> float:
    """``free.float().mean()``, the float32 share of True values, from a count (no float copy):
    the sum of 0/1 values is exact, and so is then its one division in float32."""
    return float(np.float32(int(torch.count_nonzero(free))) / np.float32(max(free.numel(), 1)))


# Not compiled: torch.compile unrolls the hundreds of small relaxation steps and breaks the graph
# at each data-dependent one (a small fill-unet took 34 s to compile on the CPU, 15 s with this);
# the network around it still compiles.
@torch.compiler.disable
def harmonic_fill(x: torch.Tensor, mask: torch.Tensor, iterations: int = 8,
                  biharmonic_iterations: int = 0) -> torch.Tensor:
    """``x`` (N, C, H, W) with the pixels where ``mask`` is 0 filled; valid pixels returned as given.

    ``biharmonic_iterations`` > 0 adds, at every level after the harmonic relaxation, damped
    iterations of the biharmonic equation on the gap pixels (that many at full resolution, twice as
    many per coarser level up to 8x): smoother joins at the gap's borders (cubic rather than linear
    across a thin gap), closer to biharmonic inpainting.

    Runs in float32 whatever the autocast state (relaxation in bfloat16 would lose the field's
    detail). A sample with no valid pixel at all comes back as zeros.

    >>> x = torch.tensor([[[[1.0, 0.0, 0.0, 4.0]]]]); m = torch.tensor([[[[1.0, 0.0, 0.0, 1.0]]]])
    >>> harmonic_fill(x, m, iterations=200).round(decimals=3).tolist()
    [[[[1.0, 2.0, 3.0, 4.0]]]]
    """
    with torch.autocast(x.device.type, enabled=False):
        x = x.float()
        m = mask.float().expand_as(x)
        values, weights = [x * m], [m]
        while max(values[-1].shape[-2:]) > 1:
            v, w = values[-1], weights[-1]
            kernel = (min(2, v.shape[-2]), min(2, v.shape[-1]))
            w_down = F.avg_pool2d(w, kernel, ceil_mode=True)
            v_down = F.avg_pool2d(v * w, kernel, ceil_mode=True) / w_down.clamp_min(1e-12)
            values.append(torch.where(w_down > 0, v_down, 0.0))
            weights.append(w_down)
        mean = values[0].sum((-2, -1), keepdim=True) / m.sum((-2, -1), keepdim=True).clamp_min(1e-12)
        f = mean.expand_as(values[-1])
        for level in range(len(values) - 1, -1, -1):
            v = values[level]
            # Coarse pixels with any data are fixed; at full resolution only fully valid ones.
            known = m > 0.5 if level == 0 else weights[level] > 0
            f = torch.where(known, v, F.interpolate(f, size=v.shape[-2:], mode="bilinear", align_corners=False))
            f = _relax(f, known, iterations, _HARMONIC)
            if biharmonic_iterations > 0:
                # Only gap pixels within about 8 pixels of data (their ancestor 3 levels up has
                # data) are relaxed: deeper inside a large gap the coarser levels have settled the
                # fill, and skipping it keeps the cost to thin gaps and gap borders.
                ancestor = weights[min(level + 3, len(weights) - 1)] > 0
                near = F.interpolate(ancestor.float(), size=v.shape[-2:], mode="nearest") > 0
                fixed = known | ~near
                # Coarser levels get more iterations (their gaps are as many pixels across as the
                # finest level's small gaps, a quarter as many pixels each time): cost stays < 2x.
                f = _relax(f, fixed, biharmonic_iterations << min(level, 3), _BIHARMONIC)
        return f


# Gaps (connected regions) larger than this many pixels are solved on a coarser grid: the sparse
# direct solve grows faster than their size (a 100 x 100 hole: 0.13 s; 200 x 200: 0.65 s and 230 MB;
# 450 x 450: 7 s and 1 GB). At 40,000 a 1536 x 1408 tile under 10% cloud-shaped gaps took 1.5 s
# (the harmonic fill 0.1 s); at 10,000, 0.45 s.
THIN_PLATE_MAX_REGION = 10_000
_AROUND = 32  # pixels of data around the large gaps that their fill is computed from


def _box_around(where, margin):
    """The slices of the box around the pixels ``where`` (H, W), ``margin`` pixels wider on each side."""
    ys, xs = torch.nonzero(where, as_tuple=True)
    h, w = where.shape
    return (slice(max(int(ys.min()) - margin, 0), min(int(ys.max()) + margin + 1, h)),
            slice(max(int(xs.min()) - margin, 0), min(int(xs.max()) + margin + 1, w)))


def _coarse_thin_plate(plane, known, where):
    """``plane`` (H, W) with the large gaps ``where`` filled by a thin plate solved on a grid
    ``f`` times coarser (``f`` such that the coarse gaps total about half of
    :data:`THIN_PLATE_MAX_REGION` pixels), upsampled, plus the harmonic fill of what that misses
    at the known pixels (the detail finer than a coarse cell, so the fill joins the data without a
    step); None where the coarse grid holds no data. A thin plate varies slowly deep inside a
    large gap, so the coarse solve loses little there; the cost is that of a gap of the cap's size."""
    from .biharmonic_solve import biharmonic_fill

    f = max(2, math.ceil(math.sqrt(int(where.sum()) / (THIN_PLATE_MAX_REGION / 2))))
    box = _box_around(where, max(_AROUND, 3 * f))
    sub, sub_known, sub_where = plane[box].double(), known[box], where[box]
    h, w = sub.shape
    pad = (0, -w % f, 0, -h % f)

    def cells(a):  # sums over f x f cells
        return F.avg_pool2d(F.pad(a[None, None], pad), f)[0, 0] * (f * f)

    count = cells(sub_known.double())
    coarse_value = cells(torch.where(sub_known, sub, 0.0)) / count.clamp(min=1.0)
    # A cell is known when it holds known pixels and none of the large gaps'.
    coarse_gap = (cells(sub_where.double()) > 0) | (count < 1)
    if bool(coarse_gap.all()):
        return None
    coarse = torch.from_numpy(biharmonic_fill(coarse_value.cpu().numpy(), coarse_gap.cpu().numpy())).to(sub.device)
    smooth = F.interpolate(coarse[None, None], scale_factor=f, mode="bilinear", align_corners=False)[0, 0, :h, :w]
    detail = harmonic_fill(torch.where(sub_known, sub - smooth, 0.0).float()[None, None],
                           sub_known.float()[None, None], 8, 10)[0, 0]
    out = plane.clone()
    out[box] = torch.where(sub_where, (smooth + detail.double()).to(plane.dtype), plane[box])
    return out


def _harmonic_around(plane, known, where):
    """``plane`` (H, W) with the pixels ``where`` filled by :func:`harmonic_fill` computed on the box
    around them (plus :data:`_AROUND` pixels), not the whole tile: the off-Earth corner of a GOES
    tile need not cost a fill of all of it."""
    box = _box_around(where, _AROUND)
    filled = harmonic_fill(plane[box][None, None], known[box][None, None].float(), 8, 10)[0, 0]
    out = plane.clone()
    out[box] = torch.where(where[box], filled, plane[box])
    return out


@torch.compiler.disable
@torch.no_grad()
def thin_plate_fill(x: torch.Tensor, mask: torch.Tensor, regions: bool = False):
    """``x`` (N, C, H, W) with the pixels where ``mask`` is 0 replaced by the thin-plate (biharmonic)
    interpolation of the valid ones: the linear system of :func:`skimage.restoration.inpaint_biharmonic`,
    solved directly in float64 on the CPU (:func:`~xdl.models.biharmonic_solve.biharmonic_fill`),
    plane by plane (GPU tensors make the round trip).

    Unlike :func:`harmonic_fill`'s biharmonic refinement (damped steps near the gap borders only),
    this solves the whole gap. Its cost grows with the gap pixels, not the tile's (about 30 ms for
    4,000 gap pixels in a 361 x 576 plane), faster than linearly with each gap's size: connected
    gaps of more than :data:`THIN_PLATE_MAX_REGION` pixels are solved on a coarser grid and joined
    to the data by a harmonic fill of the finer detail (:func:`_coarse_thin_plate`; where that grid
    holds no data, :func:`harmonic_fill`'s solution). Planes without any valid pixel come back as
    zeros, like :func:`harmonic_fill`'s. ``regions=True`` also returns where a thin plate was
    solved exactly (bool, like ``x``: the gap pixels of the smaller gaps, in planes with a valid
    pixel).

    >>> y, x = torch.meshgrid(torch.arange(24.0), torch.arange(24.0), indexing="ij")
    >>> t = (x * x / 20 + y)[None, None]; m = torch.ones_like(t); m[..., 8:16, 8:16] = 0
    >>> bool((thin_plate_fill(t * m, m) - t).abs().max() < 0.01)    # a quadratic: a thin plate is exact
    True
    >>> bool((harmonic_fill(t * m, m, 8, 10) - t).abs().max() > 0.2)
    True
    >>> m[..., 0, 0] = 0; _, solved = thin_plate_fill(t * m, m, regions=True); int(solved.sum())
    65
    """
    from .biharmonic_solve import biharmonic_fill

    with torch.autocast(x.device.type, enabled=False):
        known = mask.float().expand_as(x) > 0.5
        out = torch.where(known, x.float(), 0.0)
        solved = torch.zeros_like(known)
        planes, planes_known = out.reshape(-1, *x.shape[-2:]), known.reshape(-1, *x.shape[-2:])
        for i in range(planes.shape[0]):
            gaps = ~planes_known[i]
            if not bool(gaps.any()) or bool(gaps.all()):
                continue
            holes = gaps.cpu().numpy()
            small = _small_holes(holes)
            big = torch.from_numpy(holes & ~small).to(gaps.device)
            solved.view(-1, *x.shape[-2:])[i] = torch.from_numpy(small).to(solved.device)
            if bool(big.any()):
                coarse = _coarse_thin_plate(planes[i], planes_known[i], big)
                planes[i] = _harmonic_around(planes[i], planes_known[i], big) if coarse is None else coarse
            if small.any():
                # The known pixels come back as given (float64: the plane's own values).
                planes[i] = torch.from_numpy(biharmonic_fill(planes[i].double().cpu().numpy(), small)).to(out)
        return (out, solved) if regions else out


def _small_holes(holes):
    """The pixels of ``holes`` (H, W numpy bool) in connected gaps of at most
    :data:`THIN_PLATE_MAX_REGION` pixels."""
    import numpy as np
    from scipy import ndimage

    labels, count = ndimage.label(holes)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    return holes & (sizes <= THIN_PLATE_MAX_REGION)[labels]
