"""Scores of a gap filler on the pixels that were hidden from it (pure numpy).

Only pixels where ``where`` is True and both ``truth`` and ``estimate`` are finite count;
sums are taken in float64 whatever the input dtype.

>>> import numpy as np
>>> from xdl import metrics
>>> s = metrics.scores(np.array([1., 2, 3, 4]), np.array([2., 2, 5, 4]), np.ones(4, bool))
>>> round(s["rmse"] ** 2, 6), s["mae"], s["bias"], s["n"]
(1.25, 0.75, 0.75, 4)

A filler that gives a standard error ``sigma`` per pixel is scored as a Gaussian forecast
N(estimate, sigma) too: :func:`coverage`, :func:`spread_skill`, :func:`gaussian_crps` and
:func:`reliability` (finite triples only; ``sigma <= 0`` is a point forecast), and its
:func:`sigma_skill` and :func:`tail_ratio` say how much it knows of where errors are large and
how heavy their tails are beside it.
"""

from __future__ import annotations

import numpy as np

from .errors import InputError

__all__ = ["scores", "std_ratio", "coverage", "spread_skill", "gaussian_crps", "reliability", "sigma_skill", "tail_ratio",
           "uncertainty_scores", "UNCERTAINTY"]


def _pairs(truth, estimate, where):
    """The finite (truth, estimate) pairs under ``where``, as float64 1-D arrays."""
    truth, estimate = np.asarray(truth), np.asarray(estimate)
    if where is None:
        where = np.ones((), dtype=bool)
    where = np.asarray(where)
    if where.dtype != bool:
        raise InputError(f"where must be a bool array (True = score this pixel), got dtype {where.dtype}; "
                         "pass e.g. ~valid for the hidden pixels")
    for name, a in (("truth", truth), ("estimate", estimate)):
        if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
            raise InputError(f"{name} must be a numeric array, got dtype {a.dtype}")
    try:
        truth, estimate, where = np.broadcast_arrays(truth, estimate, where)
    except ValueError:
        raise InputError(f"truth {truth.shape}, estimate {estimate.shape} and where {where.shape} "
                         "must have the same (or broadcastable) shapes") from None
    t = truth[where].astype(np.float64)
    e = estimate[where].astype(np.float64)
    ok = np.isfinite(t) & np.isfinite(e)
    return t[ok], e[ok]


def _std_ratio(t, e):
    if len(t) == 0:
        return np.nan
    st = t.std()
    return float(e.std() / st) if st > 0 else np.nan


def std_ratio(truth, estimate, where=None) -> float:
    """``std(estimate) / std(truth)`` over ``where`` (population std, finite pairs only).

    Below 1 means the filler smooths out variability. NaN when there is no pair or the
    truth is constant.

    >>> std_ratio(np.array([1., 2, 3, 4]), np.array([2., 2, 3, 3]))
    0.4472135954999579
    """
    return _std_ratio(*_pairs(truth, estimate, where))


def scores(truth, estimate, where=None) -> dict:
    """Scores of ``estimate`` against ``truth`` over the pixels where ``where`` is True.

    Returns a dict with ``rmse``, ``mae``, ``bias`` (mean of estimate - truth), ``corr``
    (Pearson), ``std_ratio`` (see :func:`std_ratio`) and ``n`` (number of finite pairs
    used). Pairs where either value is NaN/inf are skipped. With no pair, ``n`` is 0 and
    every other score is NaN; ``corr`` (and ``std_ratio``) is also NaN when either side
    is constant. ``where=None`` scores every pixel.

    >>> s = scores(np.array([1., np.nan, 3]), np.array([1., 5, 4]), np.array([True, True, True]))
    >>> s["n"], s["bias"]
    (2, 0.5)
    """
    t, e = _pairs(truth, estimate, where)
    n = len(t)
    if n == 0:
        return {"rmse": np.nan, "mae": np.nan, "bias": np.nan, "corr": np.nan, "std_ratio": np.nan, "n": 0}
    d = e - t
    ta, ea = t - t.mean(), e - e.mean()
    denom = np.sqrt((ta * ta).sum() * (ea * ea).sum())
    return {
        "rmse": float(np.sqrt(np.mean(d * d))),
        "mae": float(np.mean(np.abs(d))),
        "bias": float(np.mean(d)),
        "corr": float(np.clip((ta * ea).sum() / denom, -1.0, 1.0)) if denom > 0 else np.nan,  # clip rounding
        "std_ratio": _std_ratio(t, e),
        "n": int(n),
    }


UNCERTAINTY = ("coverage1", "coverage2", "spread_skill", "crps", "crps_const", "sigma_skill", "tail_ratio")
GAUSSIAN_TAIL_RATIO = 1.959964  # the 95% quantile of |z| over its 68.27% quantile (1), for z ~ N(0, 1)


def _triples(truth, estimate, sigma, where):
    """The (truth, estimate, sigma) triples under ``where`` with all three finite, as float64 1-D arrays."""
    sigma = np.asarray(sigma)
    if not np.issubdtype(sigma.dtype, np.number):
        raise InputError(f"sigma must be a numeric array (standard errors), got dtype {sigma.dtype}")
    # sigma NaN -> estimate NaN: _pairs then drops the pixel, and the same selection picks sigma.
    try:
        estimate = np.where(np.isfinite(sigma), estimate, np.nan)
    except ValueError:
        raise InputError(f"sigma {sigma.shape} must have the shape of estimate {np.shape(estimate)}") from None
    t, e = _pairs(truth, estimate, where)
    where = np.ones((), bool) if where is None else np.asarray(where)
    full = np.broadcast_arrays(np.asarray(truth), estimate, sigma, where)
    sel = full[3] & np.isfinite(full[0]) & np.isfinite(full[1])
    return t, e, full[2][sel].astype(np.float64)


def coverage(truth, estimate, sigma, where=None, k=1.0) -> float:
    """Share of pixels with ``|estimate - truth| <= k * sigma`` (0.683 for k=1 if calibrated).

    >>> coverage(np.array([0., 0, 0, 0]), np.array([0.5, -1.5, 2.5, 0]), np.array([1., 1, 2, 1]))
    0.5
    """
    t, e, s = _triples(truth, estimate, sigma, where)
    return float(np.mean(np.abs(e - t) <= k * s)) if len(t) else np.nan


def spread_skill(truth, estimate, sigma, where=None) -> float:
    """``RMS(sigma) / RMSE``: 1 when the sigmas are as large as the errors on average.

    >>> spread_skill(np.array([0., 0]), np.array([1., -3]), np.array([1., 1]))  # 1 / sqrt(5)
    0.4472135954999579
    """
    t, e, s = _triples(truth, estimate, sigma, where)
    rmse = np.sqrt(np.mean((e - t) ** 2)) if len(t) else 0.0
    return float(np.sqrt(np.mean(s * s)) / rmse) if rmse > 0 else np.nan


def _crps(t, e, s):
    """Per-pixel CRPS of N(e, s) against t (closed form; s <= 0: the point forecast |e - t|)."""
    from scipy.special import ndtr

    pos = s > 0
    safe = np.where(pos, s, 1.0)
    z = (t - e) / safe
    pdf = np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)
    gauss = safe * (z * (2 * ndtr(z) - 1) + 2 * pdf - 1 / np.sqrt(np.pi))
    return np.where(pos, gauss, np.abs(t - e))


def gaussian_crps(truth, estimate, sigma, where=None) -> float:
    """Mean continuous ranked probability score of the Gaussian N(estimate, sigma) vs truth.

    ``sigma * [z (2 Phi(z) - 1) + 2 phi(z) - 1 / sqrt(pi)]`` with ``z = (truth - estimate) / sigma``
    (Gneiting & Raftery 2007); units of the variable, lower is better; equals the MAE for
    sigma -> 0. At z = 0: sigma * (2 / sqrt(2 pi) - 1 / sqrt(pi)) = 0.2337 sigma.

    >>> round(gaussian_crps(np.array([0.]), np.array([0.]), np.array([2.])), 4)
    0.4674
    >>> round(gaussian_crps(np.array([1.]), np.array([0.]), np.array([1.])), 4)  # .6827 + .4839 - .5642
    0.6024
    """
    t, e, s = _triples(truth, estimate, sigma, where)
    return float(np.mean(_crps(t, e, s))) if len(t) else np.nan


def reliability(truth, estimate, sigma, where=None, levels=np.arange(1, 10) / 10) -> np.ndarray:
    """Observed coverage of the central Gaussian intervals at each nominal level in ``levels``.

    The interval at level p is ``estimate +- z sigma`` with ``Phi(z) = (1 + p) / 2``; a calibrated
    sigma gives observed == nominal.

    >>> # z = 0.674 at 50% (errors 0.1, 0.5 inside), 1.645 at 90% (also 1.0)
    >>> reliability(np.zeros(4), np.array([0.1, 0.5, 1.0, 3.0]), np.ones(4), levels=[0.5, 0.9]).tolist()
    [0.5, 0.75]
    """
    from scipy.special import ndtri

    t, e, s = _triples(truth, estimate, sigma, where)
    z = ndtri((1 + np.asarray(levels, dtype=np.float64)) / 2)
    if not len(t):
        return np.full(z.shape, np.nan)
    return (np.abs(e - t)[None, :] <= z[:, None] * s[None, :]).mean(axis=1)


def sigma_skill(truth, estimate, sigma, where=None) -> float:
    """Correlation of ``log sigma`` with ``log |estimate - truth|`` (pixels with an error and a
    sigma > 0): how much a sigma knows of where the errors are large, whatever its scale. 0 for a
    sigma that knows nothing; even a perfect Gaussian sigma stays below 1, at
    ``sd(log sigma) / sqrt(var(log sigma) + pi^2 / 8)`` (``log |z|`` has variance pi^2 / 8).

    >>> round(sigma_skill(np.zeros(4), np.array([1., -2, 4, 8]), np.array([1., 2, 4, 8])), 6)
    1.0
    """
    t, e, s = _triples(truth, estimate, sigma, where)
    return _sigma_skill(np.abs(e - t), s)


def _sigma_skill(d, s) -> float:
    """:func:`sigma_skill` of absolute errors ``d`` and sigmas ``s`` (finite, 1-D)."""
    keep = (d > 0) & (s > 0)
    if keep.sum() < 3:
        return np.nan
    a, b = np.log(s[keep]), np.log(d[keep])
    return float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else np.nan


def tail_ratio(truth, estimate, sigma, where=None) -> float:
    """The 95% quantile of ``|z| = |estimate - truth| / sigma`` over its 68.27% quantile:
    :data:`GAUSSIAN_TAIL_RATIO` (1.96) for Gaussian errors of the sigma's size, larger where the
    errors have heavier tails than the sigma says. Then no single factor on the sigma gives 1- and
    2-sigma coverage near 68% and 95% together.

    >>> # |z| sorted 0.5, 1, 1, 2, 4: quantiles (linear) 3.6 at 95%, 1.7308 at 68.27%
    >>> round(tail_ratio(np.zeros(5), np.array([0.5, 1, 1, 2, 4]), np.ones(5)), 4)
    2.08
    """
    t, e, s = _triples(truth, estimate, sigma, where)
    return _tail_ratio(np.abs(e - t), s)


def _tail_ratio(d, s) -> float:
    """:func:`tail_ratio` of absolute errors ``d`` and sigmas ``s`` (finite, 1-D)."""
    keep = s > 0
    if keep.sum() < 2:
        return np.nan
    z = d[keep] / s[keep]
    q68 = np.quantile(z, 0.6827)
    return float(np.quantile(z, 0.95) / q68) if q68 > 0 else np.nan


def uncertainty_scores(truth, estimate, sigma, where=None) -> dict:
    """The scores of a sigma: ``coverage1`` / ``coverage2`` (share within 1 and 2 sigma),
    ``spread_skill``, ``crps`` and ``crps_const`` (the CRPS with one sigma equal to the RMSE
    everywhere: a sigma that knows where the errors are large beats it), ``sigma_skill``
    (:func:`sigma_skill`) and ``tail_ratio`` (:func:`tail_ratio`).

    >>> u = uncertainty_scores(np.zeros(2), np.array([1., -1]), np.array([1., 1]))
    >>> u["coverage1"], u["spread_skill"], u["crps"] == u["crps_const"]
    (1.0, 1.0, True)
    """
    t, e, s = _triples(truth, estimate, sigma, where)
    if not len(t):
        return dict.fromkeys(UNCERTAINTY, np.nan)
    d = np.abs(e - t)
    rmse = float(np.sqrt(np.mean(d * d)))
    return {
        "coverage1": float(np.mean(d <= s)),
        "coverage2": float(np.mean(d <= 2 * s)),
        "spread_skill": float(np.sqrt(np.mean(s * s)) / rmse) if rmse > 0 else np.nan,
        "crps": float(np.mean(_crps(t, e, s))),
        "crps_const": float(np.mean(_crps(t, e, np.full_like(s, rmse)))),
        "sigma_skill": _sigma_skill(d, s),
        "tail_ratio": _tail_ratio(d, s),
    }
