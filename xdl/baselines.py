"""Classical gap fillers, as reference points for the learned models.

Pure numpy/scipy/scikit-image. Every filler has the signature
``fill_*(values, valid, domain=None)``:

* ``values`` -- a float array ``(..., y, x)``;
* ``valid`` -- a bool array of the same shape, True where ``values`` holds data;
* ``domain`` -- optional bool, shape ``(y, x)`` or ``values.shape`` (anything that
  broadcasts to it): only gaps inside the domain are filled.

The result has ``values``' shape and dtype. Valid pixels are returned bit-identical; gaps
inside the domain are filled; everything else (gaps outside the domain) is NaN. Each 2-D
slice along the leading axes is filled on its own. Valid pixels anywhere -- also outside
the domain -- serve as data; a pixel marked valid that holds NaN/inf is returned as is
but never used as data. A slice with no usable valid pixel at all is left NaN in its gaps.

>>> import numpy as np
>>> from xdl import baselines
>>> v = np.arange(12, dtype="float32").reshape(3, 4)
>>> ok = np.ones_like(v, dtype=bool); ok[1, 1] = False
>>> baselines.get("linear")(v, ok)[1, 1]
np.float32(5.0)
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import Delaunay, QhullError, cKDTree

from .errors import InputError

__all__ = ["fill_linear", "fill_nearest", "fill_biharmonic", "BASELINES", "get", "lookup", "prepare", "gap_slices"]

_RING = 2  # width of the band of valid pixels around the gaps used by fill_linear
_EIGHT = np.ones((3, 3), dtype=bool)


def prepare(values, valid, domain):
    """Check the inputs; return (values, valid, domain broadcast to values.shape, output).

    Shared by every filler here and in :mod:`xdl.regression_baselines`."""
    values = np.asarray(values)
    if not np.issubdtype(values.dtype, np.floating):
        raise InputError(f"values must be a float array (gaps become NaN), got dtype {values.dtype}; "
                         "convert with values.astype('float32')")
    if values.ndim < 2:
        raise InputError(f"values must have at least two axes (..., y, x), got shape {values.shape}")
    valid = np.asarray(valid)
    if valid.dtype != bool:
        raise InputError(f"valid must be a bool array (True = data), got dtype {valid.dtype}; "
                         "pass e.g. np.isfinite(values)")
    if valid.shape != values.shape:
        raise InputError(f"valid has shape {valid.shape} but values has shape {values.shape}; "
                         "they must match")
    if domain is None:
        dom = np.ones(values.shape, dtype=bool)
    else:
        domain = np.asarray(domain)
        if domain.dtype != bool:
            raise InputError(f"domain must be a bool array (True = fill here), got dtype {domain.dtype}")
        try:
            dom = np.broadcast_to(domain, values.shape)
        except ValueError:
            raise InputError(f"domain has shape {domain.shape}, which does not broadcast to values' shape "
                             f"{values.shape}; pass a (y, x) = {values.shape[-2:]} mask or one of values' shape") from None
    out = values.copy()
    out[~valid] = np.nan
    return values, valid, dom, out


def gap_slices(values, valid, dom):
    """Each 2-D slice that has gaps to fill: (index, values, target = gaps in the domain, known).

    ``index`` is the tuple of leading indices of the slice (``()`` for a 2-D array)."""
    for i in np.ndindex(*values.shape[:-2]):
        v, target = values[i], ~valid[i] & dom[i]
        if target.any():
            yield i, v, target, valid[i] & np.isfinite(v)


def _nearest_index(known):
    """Row/column index of the nearest known pixel, for every pixel."""
    return ndimage.distance_transform_edt(~known, return_distances=False, return_indices=True)


def fill_nearest(values, valid, domain=None):
    """Fill each gap with the value of the nearest valid pixel (Euclidean distance).

    Uses :func:`scipy.ndimage.distance_transform_edt`; about 0.3 s for a 1500x2500 scene.

    >>> v = np.array([[1.0, np.nan, np.nan, 4.0]])
    >>> fill_nearest(v, np.isfinite(v)).tolist()
    [[1.0, 1.0, 4.0, 4.0]]
    """
    values, valid, dom, out = prepare(values, valid, domain)
    for i, v, target, known in gap_slices(values, valid, dom):
        if not known.any():
            continue
        iy, ix = _nearest_index(known)
        out[i][target] = v[iy[target], ix[target]]
    return out


_JITTER = 1e-3  # pixels; breaks the grid's co-circular degeneracy that makes Qhull slow
_CHUNK = 2_000_000  # candidate pixels rasterised at once (bounds memory)


def _linear_on_sites(sites, data, target):
    """Piecewise-linear interpolation of ``data`` at integer ``sites`` (n, 2) onto the
    True pixels of ``target``; returns an image with NaN where no triangle covers a pixel.

    Two speed tricks, both keeping a linear field exact:

    * pixel-grid sites are highly degenerate (many co-circular points), which makes Qhull
      several times slower, so only the *topology* comes from a Delaunay triangulation of
      slightly jittered sites; all geometry uses the exact integer coordinates;
    * instead of ``find_simplex`` (whose per-simplex setup is slow on large meshes), each
      triangle is rasterised over its bounding box, skipping boxes without target pixels
      (found in O(1) with a summed-area table); inside tests use exact integer arithmetic.
    """
    ny, nx = target.shape
    est = np.full((ny, nx), np.nan)
    if len(sites) < 3:
        return est
    jit = np.random.default_rng(0).uniform(-_JITTER, _JITTER, sites.shape)  # fixed: deterministic output
    try:
        tri = Delaunay(sites + jit)
    except QhullError:  # e.g. all sites on one line: nothing to triangulate
        return est
    p = sites.astype(np.int64)[tri.simplices]  # (m, 3, 2) exact vertex coordinates
    det = (p[:, 1, 0] - p[:, 0, 0]) * (p[:, 2, 1] - p[:, 0, 1]) - (p[:, 1, 1] - p[:, 0, 1]) * (p[:, 2, 0] - p[:, 0, 0])
    lo, hi = p.min(axis=1), p.max(axis=1)  # (m, 2) bounding boxes, inclusive
    sat = np.zeros((ny + 1, nx + 1), dtype=np.int64)
    sat[1:, 1:] = target.cumsum(0).cumsum(1)
    n_target = sat[hi[:, 0] + 1, hi[:, 1] + 1] - sat[lo[:, 0], hi[:, 1] + 1] - sat[hi[:, 0] + 1, lo[:, 1]] + sat[lo[:, 0], lo[:, 1]]
    keep = np.flatnonzero((det != 0) & (n_target > 0))  # zero-area slivers cover nothing
    h, w = hi[keep, 0] - lo[keep, 0] + 1, hi[keep, 1] - lo[keep, 1] + 1
    size = h * w
    csum = np.cumsum(size)
    start = 0
    while start < len(keep):  # chunks of about _CHUNK candidate pixels
        before = csum[start - 1] if start else 0
        stop = max(start + 1, int(np.searchsorted(csum, before + _CHUNK, side="right")))
        sl = slice(start, stop)
        start = stop
        t, sz = keep[sl], size[sl]
        which = np.repeat(np.arange(len(t)), sz)
        k = np.arange(sz.sum()) - np.repeat(np.cumsum(sz) - sz, sz)
        y = lo[t, 0][which] + k // w[sl][which]
        x = lo[t, 1][which] + k % w[sl][which]
        on = target[y, x]
        which, y, x = which[on], y[on], x[on]
        v = p[t][which]  # (c, 3, 2)
        d = det[t][which]
        # exact barycentric numerators: w_i * det, each the signed area opposite vertex i
        b = [(v[:, j, 0] - y) * (v[:, l, 1] - x) - (v[:, j, 1] - x) * (v[:, l, 0] - y)
             for j, l in ((1, 2), (2, 0), (0, 1))]
        sgn = np.sign(d)
        inside = (b[0] * sgn >= 0) & (b[1] * sgn >= 0) & (b[2] * sgn >= 0)
        dv = data[tri.simplices[t][which]]
        val = (b[0] * dv[:, 0] + b[1] * dv[:, 1] + b[2] * dv[:, 2]) / d
        est[y[inside], x[inside]] = val[inside]
    return est


def fill_linear(values, valid, domain=None):
    """Fill gaps by linear interpolation on a Delaunay triangulation of valid pixels.

    Only the valid pixels within 2 pixels of a gap to fill take part in the triangulation,
    which keeps large scenes fast (1-3 s for 1500x2500 with 3-5 % of scan-line or block
    gaps) and gives the same result inside enclosed gaps. (The triangulation is done with
    :class:`scipy.spatial.Delaunay` plus exact-integer rasterisation rather than
    ``scipy.interpolate.griddata``, which is several times slower on pixel grids.) Gaps outside the convex
    hull of those pixels (e.g. touching the scene edge) get the nearest of them instead,
    so no gap inside the domain stays NaN unless the slice has no valid pixel at all.
    A linear field is reproduced exactly inside the hull.

    >>> y, x = np.mgrid[0:5, 0:5].astype(float)
    >>> ramp = 2 * x + y; ok = np.ones_like(ramp, dtype=bool); ok[2, 1:4] = False
    >>> np.allclose(fill_linear(ramp, ok), ramp)
    True
    """
    values, valid, dom, out = prepare(values, valid, domain)
    for i, v, target, known in gap_slices(values, valid, dom):
        ring = ndimage.binary_dilation(target, _EIGHT, iterations=_RING) & known
        if not ring.any():  # no valid pixel near any gap: nearest is all we can do
            if known.any():
                iy, ix = _nearest_index(known)
                out[i][target] = v[iy[target], ix[target]]
            continue
        sites = np.column_stack(np.nonzero(ring))
        data = v[ring].astype(np.float64)
        est = _linear_on_sites(sites, data, target)[target]
        miss = np.isnan(est)
        if miss.any():  # outside the hull of the sites: nearest site
            _, j = cKDTree(sites).query(np.column_stack(np.nonzero(target))[miss])
            est[miss] = data[j]
        out[i][target] = est
    return out


def fill_biharmonic(values, valid, domain=None):
    """Fill gaps with a smooth biharmonic surface (:func:`skimage.restoration.inpaint_biharmonic`).

    Gaps are solved region by region (``split_into_regions=True``). Invalid pixels outside
    the domain do not take part in the solve: they are given their nearest valid value as a
    fixed boundary and set back to NaN afterwards.

    Speed: fine for thin or scattered gaps (about 0.5 s for a 1500x2500 scene with 3 % of
    scan-line and block gaps), but the cost grows faster than linearly with the size of each
    connected gap -- one sparse solve per gap region -- so large solid gaps (hundreds of
    pixels across) get slow; prefer :func:`fill_linear` for those.

    >>> y, x = np.mgrid[0:8, 0:8].astype(float)
    >>> ramp = x - y; ok = np.ones_like(ramp, dtype=bool); ok[3:5, 3:5] = False
    >>> bool(np.abs(fill_biharmonic(ramp, ok) - ramp).max() < 1e-6)
    True
    """
    from skimage.restoration import inpaint_biharmonic  # heavy import; only when used

    values, valid, dom, out = prepare(values, valid, domain)
    for i, v, target, known in gap_slices(values, valid, dom):
        if not known.any():
            continue
        img = v.astype(np.float64)
        other = ~known & ~target  # out-of-domain gaps and NaN-valued 'valid' pixels
        if other.any():
            iy, ix = _nearest_index(known)
            img[other] = img[iy[other], ix[other]]
        img[target] = 0.0  # the solver needs NaN-free input; these are unknowns anyway
        filled = inpaint_biharmonic(img, target, split_into_regions=True)
        out[i][target] = filled[target]
    return out


BASELINES = {"linear": fill_linear, "nearest": fill_nearest, "biharmonic": fill_biharmonic}


def get(name):
    """Return the baseline filler called ``name`` (a key of :data:`BASELINES`).

    >>> get("nearest") is fill_nearest
    True
    """
    return lookup(BASELINES, name, "baseline")


def lookup(table: dict, name, what: str):
    """``table[name]``, or an :class:`InputError` naming ``what`` and the known names."""
    try:
        return table[name]
    except (KeyError, TypeError):
        raise InputError(f"unknown {what} {name!r}; use one of {', '.join(table)}") from None
