"""Classical gap fillers that use context: regression of the target on co-located fields.

Where other fields of the same scene are known inside a gap -- other bands of the same scan,
other variables, the same variable at neighbouring time steps -- the cheap estimate to beat is a
least-squares regression of the target on them, ``target ~ a + sum_k b_k * context_k``, fitted on
the pixels where the target and every context field are valid and applied at the gap pixels:

* :func:`fill_regression`: one fit per 2-D sample (all its valid pixels);
* :func:`fill_local_regression`: one fit per ``block x block`` block of pixels, on the valid
  pixels within ``radius`` pixels of the block, because the relation drifts across a scene
  (surface type, cloud, view angle). Blocks with too few such pixels take the sample's global fit.

Both share :mod:`xdl.baselines`' conventions (valid pixels returned bit-identical, only gaps inside
``domain`` filled, NaN elsewhere, each 2-D slice on its own) and take ``context``: a sequence of K
arrays that broadcast to ``values.shape`` (a 2-D static field serves every sample), NaN/inf where a
context field is missing (it keeps its own gaps). Each gap pixel is regressed on the context
fields present there: one fit per set of present fields (a neighbouring time step's own gaps,
no t-1 before the first step), on the pixels where the target and that set are known; gap pixels
with no context at all are filled by :func:`xdl.baselines.fill_biharmonic` instead, with the
regression-filled pixels as part of its boundary. The fits are ridge-regularised on
standardised fields (``ridge``), which only matters where a context field is nearly flat.

>>> import numpy as np
>>> from xdl import regression_baselines as rb
>>> c = np.arange(20, dtype="f8").reshape(4, 5) ** 1.5
>>> t = 3.0 * c - 2.0; ok = np.ones(t.shape, bool); ok[1:3, 1:4] = False
>>> bool(np.allclose(rb.fill_regression(t, ok, [c]), t, atol=1e-3))
True
"""

from __future__ import annotations

import math

import numpy as np

from . import baselines
from .errors import InputError

__all__ = ["fill_regression", "fill_local_regression", "CONTEXT_BASELINES", "get", "RIDGE"]

RIDGE = 1e-6   # added to the (standardised) context covariance: keeps near-flat fields solvable
BLOCK = 25     # pixels: side of the blocks with one local fit each
RADIUS = 60    # pixels: the local fit uses the valid pixels within this distance of its block
MAX_LOCAL_PATTERNS = 8  # sets of present context fields fitted locally (the rarer ones: globally)


def _context_stack(values, context) -> np.ndarray:
    """``context`` as one float64 array (K, *values.shape), non-finite = missing."""
    if isinstance(context, np.ndarray) and context.ndim == values.ndim + 1:
        fields = list(context)
    elif isinstance(context, (list, tuple)):
        fields = list(context)
    else:
        raise InputError("context must be a list of arrays (one per context field, each broadcasting to "
                         f"values' shape {values.shape}) or an array of shape (K, *{values.shape}); "
                         f"got {type(context).__name__}")
    if not fields:
        raise InputError("context is empty: the regression baselines need at least one context field; "
                         "use xdl.baselines (linear, biharmonic) without context")
    out = np.empty((len(fields),) + values.shape)
    for k, f in enumerate(fields):
        f = np.asarray(f)
        if not np.issubdtype(f.dtype, np.number):
            raise InputError(f"context field {k} must be numeric (NaN = missing), got dtype {f.dtype}")
        try:
            out[k] = np.broadcast_to(f, values.shape)
        except ValueError:
            raise InputError(f"context field {k} has shape {f.shape}, which does not broadcast to values' "
                             f"shape {values.shape}; put it on the same grid") from None
    return out


def _patterns(finite, target):
    """The sets of context fields present at the gap pixels: [(fields, pixels)], most pixels first
    (fields: a tuple of indices into the context; pixels: a bool map). Pixels with no field are left out."""
    code = np.zeros(target.shape, dtype=np.int64)
    for k in range(len(finite)):
        code |= finite[k].astype(np.int64) << k
    codes, counts = np.unique(code[target], return_counts=True)
    out = []
    for c in codes[np.argsort(-counts, kind="stable")]:
        if c:
            out.append((tuple(k for k in range(len(finite)) if c >> k & 1), target & (code == c)))
    return out


def _weighted(ctx, fields, y, data):
    """The context fields ``ctx[fields]`` and target ``y`` standardised with the mean and std of
    their ``data`` pixels and set to 0 elsewhere (so off-data pixels drop out of every sum), and
    the scalings ``(mu, sd)`` of the fields and ``(ym, ys)`` of y. In place, one field at a time:
    the arrays are large."""
    w = data.astype(np.float64)
    n = w.sum()
    zw = np.zeros((len(fields),) + y.shape)
    mu, sd = np.empty(len(fields)), np.empty(len(fields))
    for i, k in enumerate(fields):
        np.copyto(zw[i], ctx[k], where=data)  # no temporary: the arrays are large
        flat = zw[i].ravel()
        mu[i] = flat.sum() / n
        sd[i] = np.sqrt(max(flat @ flat / n - mu[i] ** 2, 0.0)) or 1.0
        zw[i] -= mu[i] * w
        zw[i] /= sd[i]
    yw = np.zeros(y.shape)
    np.copyto(yw, y, where=data)
    ym = yw.sum() / n
    ys = float(np.sqrt(max(yw.ravel() @ yw.ravel() / n - ym * ym, 0.0))) or 1.0
    yw -= ym * w
    yw /= ys
    return w, zw, yw, (mu, sd), (ym, ys)


def _solve(mx, my, cxx, cxy, ridge):
    """Ridge least squares from moments: coefficients b (..., K) and intercept a (...)."""
    k = cxx.shape[-1]
    b = np.linalg.solve(cxx + ridge * np.eye(k), cxy[..., None])[..., 0]
    return my - (b * mx).sum(-1), b


def _global_fit(w, zw, yw, ridge):
    """One fit on every data pixel (the standardised fields have mean 0 there): (a, b)."""
    k = len(zw)
    x = zw.reshape(k, -1)
    n = w.sum()
    return _solve(np.zeros(k), 0.0, x @ x.T / n, x @ yw.ravel() / n, ridge)


def _cell_sat(img, cell):
    """Summed-area table of ``img`` summed over ``cell x cell`` cells first (shape a multiple of cell)."""
    a, b = img.shape[0] // cell, img.shape[1] // cell
    # rows first, then columns: summing contiguous runs is ~3x faster than one sum over axes (1, 3)
    sums = img.reshape(a, cell, -1).sum(axis=1).reshape(a, b, cell).sum(axis=2) if cell > 1 else img
    sat = np.zeros((a + 1, b + 1))
    np.cumsum(sums, axis=0, out=sat[1:, 1:])
    np.cumsum(sat[1:, 1:], axis=1, out=sat[1:, 1:])
    return sat


def _local_fit(w, zw, yw, block, radius, ridge, min_pixels):
    """Per block (by, bx): (a, b, ok) from the data pixels within ``radius`` of the block;
    ``ok`` False where fewer than ``min_pixels`` of them (those blocks take the global fit).

    Box sums of summed-area tables: every box edge lies on a multiple of gcd(block, radius), so
    the tables are built on cells of that size (25 times fewer entries for 25 and 60)."""
    ny, nx = w.shape
    cell = math.gcd(block, radius) or block
    pad = ((0, -ny % cell), (0, -nx % cell))
    py, px = ny + pad[0][1], nx + pad[1][1]
    rows, cols = np.arange(0, ny, block), np.arange(0, nx, block)
    r0 = (np.maximum(rows - radius, 0) // cell)[:, None]
    r1 = (np.minimum(rows + block + radius, py) // cell)[:, None]
    c0 = (np.maximum(cols - radius, 0) // cell)[None, :]
    c1 = (np.minimum(cols + block + radius, px) // cell)[None, :]

    def box(img):
        sat = _cell_sat(np.pad(img, pad) if pad[0][1] or pad[1][1] else img, cell)
        return sat[r1, c1] - sat[r0, c1] - sat[r1, c0] + sat[r0, c0]

    k = len(zw)
    n = box(w)
    safe = np.maximum(n, 1.0)
    mx = np.stack([box(zw[i]) for i in range(k)], -1) / safe[..., None]
    my = box(yw) / safe
    cxx = np.empty(n.shape + (k, k))
    cxy = np.empty(n.shape + (k,))
    for i in range(k):
        cxy[..., i] = box(zw[i] * yw) / safe - mx[..., i] * my
        for j in range(i, k):
            cxx[..., i, j] = cxx[..., j, i] = box(zw[i] * zw[j]) / safe - mx[..., i] * mx[..., j]
    a, b = _solve(mx, my, cxx, cxy, ridge)
    return a, b, n >= min_pixels


def _fill_slice(v, target, known, ctx, ridge, local):
    """Regression estimates at the gap pixels of one 2-D slice (NaN where none), fitted for each set
    of context fields present at some gap pixel on the pixels where the target and those fields
    are known: every field counts where it exists (a time step's own gaps, the first time step
    without a t-1)."""
    est = np.full(v.shape, np.nan)
    finite = np.isfinite(ctx)
    y = v.astype(np.float64)
    for n, (fields, pixels) in enumerate(_patterns(finite, target)):
        data = known & finite[list(fields)].all(axis=0)
        if data.sum() < len(fields) + 1:
            continue  # too few pixels to fit even once: biharmonic there
        w, zw, yw, (mu, sd), (ym, ys) = _weighted(ctx, fields, y, data)  # standardised: ridge is scale-free
        zt = (np.stack([ctx[k][pixels] for k in fields]) - mu[:, None]) / sd[:, None]
        a, b = _global_fit(w, zw, yw, ridge)
        fit = a + b @ zt
        if local is not None and n < MAX_LOCAL_PATTERNS:
            block, radius, min_pixels = local
            la, lb, ok = _local_fit(w, zw, yw, block, radius, ridge, min_pixels or 3 * (len(fields) + 1))
            by, bx = (i // block for i in np.nonzero(pixels))
            use = ok[by, bx]
            fit[use] = la[by[use], bx[use]] + (lb[by[use], bx[use]] * zt[:, use].T).sum(-1)
        est[pixels] = fit * ys + ym
    return est


def _fill(values, valid, context, domain, ridge, local):
    """Shared driver: regression fill per 2-D slice, biharmonic where no context is present."""
    values, valid, dom, out = baselines.prepare(values, valid, domain)
    ctx = _context_stack(values, context)
    for i, v, target, known in baselines.gap_slices(values, valid, dom):
        est = _fill_slice(v, target, known, ctx[(slice(None),) + i], ridge, local)
        filled = target & np.isfinite(est)
        out[i][filled] = est[filled]
        rest = target & ~filled
        if rest.any():  # no context here (or too few pixels to fit): a smooth surface instead
            img = np.where(filled, est, v)
            out[i][rest] = baselines.fill_biharmonic(img, known | filled, domain=rest)[rest]
    return out


def fill_regression(values, valid, context, domain=None, *, ridge=RIDGE):
    """Fill gaps with one least-squares regression of the target on ``context`` per 2-D sample.

    ``target ~ a + sum_k b_k * context_k``, fitted on every pixel where the target is valid and
    every context field finite, applied at the gap pixels where every context field is finite;
    elsewhere in the gaps: biharmonic (see the module docstring). About 1 s for a 1500 x 2500
    scene with two context fields.

    >>> c = np.linspace(0, 1, 30).reshape(5, 6); t = 10 * c + 1; ok = t < 5
    >>> float(np.abs(fill_regression(t, ok, [c]) - t).max()) < 1e-4
    True
    """
    return _fill(values, valid, context, domain, ridge, None)


def fill_local_regression(values, valid, context, domain=None, *, block=BLOCK, radius=RADIUS,
                          min_pixels=None, ridge=RIDGE):
    """Fill gaps with a regression of the target on ``context`` fitted per ``block``-pixel block.

    Each ``block x block`` block gets its own fit on the data pixels (target valid and every
    context field finite) within ``radius`` pixels of the block (a box ``block + 2 * radius``
    across, clipped at the edges); a block with fewer than ``min_pixels`` (default
    ``3 * (K + 1)``) of them takes the sample's global fit (:func:`fill_regression`), and gap
    pixels where the context is missing get biharmonic. The sums behind the fits are box sums of
    summed-area tables, so the cost is linear in the pixels and quadratic in K: a few seconds for
    a 1500 x 2500 scene with four context fields.

    >>> y, x = np.mgrid[0:60, 0:60].astype(float)
    >>> c = np.sin(x / 5) + np.cos(y / 7); t = (1 + x / 30) * c   # the slope drifts with x
    >>> ok = np.ones(t.shape, bool); ok[::6] = False
    >>> err = lambda f: float(np.abs(f - t)[~ok].max())
    >>> err(fill_local_regression(t, ok, [c], block=5, radius=5)) < 0.2 * err(fill_regression(t, ok, [c]))
    True
    """
    for name, n in (("block", block), ("radius", radius)):
        if not isinstance(n, (int, np.integer)) or n < (1 if name == "block" else 0):
            raise InputError(f"{name} must be a whole number of pixels (block >= 1, radius >= 0), got {n!r}")
    return _fill(values, valid, context, domain, ridge, (int(block), int(radius), min_pixels))


CONTEXT_BASELINES = {"regression": fill_regression, "local_regression": fill_local_regression}


def get(name):
    """Return the context baseline called ``name`` (a key of :data:`CONTEXT_BASELINES`).

    >>> get("local_regression") is fill_local_regression
    True
    """
    return baselines.lookup(CONTEXT_BASELINES, name, "context baseline")
