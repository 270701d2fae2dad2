"""Scores of a gap filler on the pixels that were hidden from it (pure numpy).

Only pixels where ``where`` is True and both ``truth`` and ``estimate`` are finite count;
sums are taken in float64 whatever the input dtype.

>>> import numpy as np
>>> from xdl import metrics
>>> s = metrics.scores(np.array([1., 2, 3, 4]), np.array([2., 2, 5, 4]), np.ones(4, bool))
>>> round(s["rmse"] ** 2, 6), s["mae"], s["bias"], s["n"]
(1.25, 0.75, 0.75, 4)
"""

from __future__ import annotations

import numpy as np

from .errors import InputError

__all__ = ["scores", "std_ratio"]


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
