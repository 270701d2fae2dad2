"""The context of a scored variable as numpy arrays, built the way ``inpaint`` builds the model's.

``evaluate(context=..., time_window=k)`` gives the model the co-located context variables and the
target's own neighbouring time steps; the regression baselines
(:mod:`xdl.regression_baselines`) get the same fields, from here: the context variables on the
target's grid (a 2-D static field broadcast over the leading dims, NaN where CF rules say it is
invalid), then the target at offsets -k..-1, +1..+k along the time dim (by index: the value at
t + offset, NaN beyond the ends), taken from the target with its hidden gaps, as the model sees it.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from .conventions import cf
from .errors import InputError

__all__ = ["Case", "check", "context_array", "shifted"]


class Case:
    """What every fill of one variable shares: the context (names, Dataset, co-located arrays),
    the time window and its dim, and whether the model gives a sigma."""

    def __init__(self, obj, arr, context, time_window, sigma, dims):
        self.context, self.time_window, self.sigma = context, time_window, sigma
        self.context_ds = obj[list(context)] if context else None
        self.colocated = [context_array(obj[c], arr, c) for c in context]
        self.time_axis = None
        if time_window:
            from .conventions.layout import sequence_dim

            self.time_axis = arr.dims.index(sequence_dim(arr, tuple(arr.dims[-2:])))  # spatial dims are last

    def fields(self, gappy) -> list[np.ndarray]:
        """Context arrays for the regression baselines: the co-located fields, then the target's
        neighbours at offsets -k..-1, +1..+k (the value at t+offset, NaN beyond the ends), taken
        from the gappy target as the model sees them."""
        out = list(self.colocated)
        for offset in [*range(-self.time_window, 0), *range(1, self.time_window + 1)]:
            out.append(shifted(gappy, self.time_axis, offset))
        return out


def context_array(field: xr.DataArray, arr: xr.DataArray, name: str) -> np.ndarray:
    """A context variable as float64 on ``arr``'s grid and dims (a 2-D field is broadcast over the
    leading dims), NaN where CF rules say it is invalid. Its dims must be among ``arr``'s, with the
    same sizes and coordinate values.

    >>> t = xr.DataArray(np.zeros((2, 3, 4)), dims=("time", "y", "x"), name="t")
    >>> c = xr.DataArray(np.arange(12.0).reshape(4, 3), dims=("x", "y")).where(lambda v: v != 5)
    >>> a = context_array(c, t, "c"); a.shape, a[1, 1, 2], bool(np.isnan(a[0, 2, 1]))  # c[x=2, y=1]; 5 invalid
    ((2, 3, 4), np.float64(7.0), True)
    """
    from .conventions.validity import valid_mask

    bad = [d for d in field.dims if d not in arr.dims or field.sizes[d] != arr.sizes[d]]
    bad += [d for d in field.dims if d not in bad and d in field.coords and d in arr.coords
            and not _same_labels(field[d].values, arr[d].values)]
    if bad:
        raise InputError(f"context variable {name!r} {dict(field.sizes)} is not on the grid of {arr.name!r} "
                         f"{dict(arr.sizes)} (dims {bad} differ): a context field needs the target's spatial "
                         "dims, sizes and coordinates (and any of its other dims); regrid it or drop it from context=.")
    field = cf.unsigned_view(field)
    values = field.astype(np.float64).where(valid_mask(field, None, context=True))  # read, never filled
    order = [d for d in arr.dims if d in field.dims]
    data = np.asarray(values.transpose(*order).values)
    index = tuple(slice(None) if d in field.dims else None for d in arr.dims)  # new axes for missing dims
    return np.array(np.broadcast_to(data[index], arr.shape))


def _same_labels(a, b) -> bool:
    if np.issubdtype(a.dtype, np.number) and np.issubdtype(b.dtype, np.number):
        return bool(np.allclose(a, b, rtol=1e-6, atol=0))  # float32 vs float64 labels: the same grid
    return bool(np.array_equal(a, b))


def shifted(a: np.ndarray, axis: int, offset: int) -> np.ndarray:
    """``a`` at index t + offset along ``axis`` (NaN beyond the ends), like xarray's shift(-offset).

    >>> shifted(np.arange(4.0)[:, None], 0, 1).ravel().tolist()
    [1.0, 2.0, 3.0, nan]
    """
    out = np.full(a.shape, np.nan)
    n = a.shape[axis]
    src = [slice(None)] * a.ndim
    dst = [slice(None)] * a.ndim
    src[axis] = slice(max(offset, 0), n + min(offset, 0))
    dst[axis] = slice(max(-offset, 0), n + min(-offset, 0))
    out[tuple(dst)] = a[tuple(src)]
    return out


def check(obj, names, context, time_window):
    """``context`` as a tuple of variable names and ``time_window`` as an int, checked."""
    from .context import context_names, window_steps

    context = tuple(context_names(context))
    if context and not isinstance(obj, xr.Dataset):
        raise InputError(f"context={list(context)} names Dataset variables; pass a Dataset holding the target "
                         "and its context variables (a DataArray can only use time_window=).")
    missing = [c for c in context if c not in obj.data_vars]
    if missing:
        raise InputError(f"context variables {missing} not in the dataset; it has {list(obj.data_vars)}.")
    both = [c for c in context if c in names]
    if both:
        raise InputError(f"{both} listed both as variables to score and as context: a field cannot be its own "
                         "context; drop it from one list (its other time steps come with time_window=).")
    return context, window_steps(time_window)
