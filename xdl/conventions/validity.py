"""Which values are data: the CF rules or the user's valid mask, matched to the data by label.

Used by every verb that needs to know the gaps (:mod:`xdl.inpaint`, :mod:`xdl.evaluate`): a mask
or domain given as a DataArray is aligned to the data by its coordinate labels, never by position
alone; a numpy array is taken as on the data's grid.

Example:
    >>> import numpy as np, xarray as xr
    >>> sst = xr.DataArray([[1.0, np.nan], [3.0, 4.0]], dims=("y", "x"), coords={"y": [0, 1]}, name="sst")
    >>> dqf = xr.DataArray([[1, 0], [0, 0]], dims=("y", "x"), coords={"y": [1, 0]})  # y the other way round
    >>> valid_mask(sst, dqf == 0).values.tolist()  # matched by label; NaN never becomes data
    [[True, False], [False, True]]
"""

from __future__ import annotations

import warnings

import dask.array as da
import numpy as np
import xarray as xr

from ..errors import InputError, XdlWarning
from . import cf

__all__ = ["as_mask", "valid_mask", "range_check"]


def _label_order(value: xr.DataArray, like: xr.DataArray, dim: str, what: str):
    """How to take ``value``'s entries along ``dim`` so that its labels match ``like``'s: None when
    they already match (float noise allowed), an index array for a permutation of the same labels
    (a reversed ``y``), else an InputError: masks and domains are matched by label, never by
    position alone."""
    if dim not in value.indexes or dim not in like.indexes:
        return None  # one side has no labels: positions are all there is
    mine, theirs = value.indexes[dim], like.indexes[dim]
    if mine.equals(theirs):
        return None
    a, b = np.asarray(mine), np.asarray(theirs)
    numeric = np.issubdtype(a.dtype, np.number) and np.issubdtype(b.dtype, np.number)
    tol = 0.0
    if numeric and b.size > 1:
        steps = np.abs(np.diff(b.astype(np.float64)))
        steps = steps[steps > 0]
        tol = 1e-3 * float(steps.min()) if steps.size else 0.0
    if numeric and np.allclose(a.astype(np.float64), b.astype(np.float64), rtol=0, atol=tol):
        return None  # the same grid, up to float noise (e.g. float32 vs float64 coordinates)
    try:
        if numeric and (mine.is_monotonic_increasing or mine.is_monotonic_decreasing):
            order = mine.get_indexer(theirs, method="nearest", tolerance=tol) if tol > 0 else mine.get_indexer(theirs)
        else:
            order = mine.get_indexer(theirs)
    except (TypeError, ValueError):
        order = np.full(b.size, -1)
    order = np.asarray(order)
    if (order >= 0).all() and np.unique(order).size == order.size:
        return order
    lost = int((order < 0).sum())
    raise InputError(f"{what}'s {dim!r} labels do not match those of {like.name!r}: {lost} of {b.size} "
                     f"labels have no match ({what} runs {a[0]!r}..{a[-1]!r}, the data {b[0]!r}..{b[-1]!r}). "
                     f"Give the {what} on the data's grid (e.g. {what}.reindex_like(data) or interp_like).")


def as_mask(value, like: xr.DataArray, what: str) -> xr.DataArray:
    """A boolean DataArray aligned with ``like`` by coordinate labels (a permuted or reversed
    coordinate is reordered; labels that differ raise InputError); clear errors for shape or dim
    mismatches. A numpy array is taken as on ``like``'s grid (same shape)."""
    if isinstance(value, np.ndarray):
        if value.shape != like.shape:
            raise InputError(f"{what} has shape {value.shape} but {like.name!r} has shape {like.shape}; "
                             f"give a DataArray with dims among {like.dims} or an array of the same shape.")
        value = xr.DataArray(value, dims=like.dims, coords=like.coords)
    if not isinstance(value, xr.DataArray):
        raise InputError(f"{what} must be a boolean DataArray (e.g. ds.DQF == 0) or numpy array, not {type(value).__name__}.")
    extra = [d for d in value.dims if d not in like.dims]
    if extra:
        raise InputError(f"{what} has dims {extra} that {like.name!r} {like.dims} lacks.")
    for dim in value.dims:
        if value.sizes[dim] != like.sizes[dim]:
            raise InputError(f"{what} has {value.sizes[dim]} entries along {dim!r} but {like.name!r} has "
                             f"{like.sizes[dim]}; they must be on the same grid.")
    orders = {dim: _label_order(value, like, dim, what) for dim in value.dims}
    orders = {dim: order for dim, order in orders.items() if order is not None}
    if orders:
        value = value.isel(orders)
    if value.dtype != bool:
        if np.issubdtype(value.dtype, np.floating):
            value = value.fillna(0)
        value = value.astype(bool)
    # Labels now match (up to float noise): take the data's own coordinates. An in-memory mask is
    # copied: a lazy result held the user's array itself, and a change to it before the compute
    # changed the fill (a domain buffer reused: 896 pixels left unfilled; probe).
    data = value.data if isinstance(value.data, da.Array) else np.array(value.data, copy=True)
    return xr.DataArray(data, dims=value.dims, coords={d: like[d] for d in value.dims if d in like.coords})


def valid_mask(arr: xr.DataArray, mask, context: bool = False) -> xr.DataArray:
    """True where ``arr`` holds data: the user's ``mask`` (never turning NaN into data), else the
    CF rules (``_FillValue``, ``valid_range``, ...); an integer variable without a rule is refused,
    unless it is a ``context`` variable (read, never filled: a land-sea mask's every value is data)."""
    if mask is not None:
        user = as_mask(mask, arr, "mask")
        # A user's mask never turns NaN into data.
        return user & np.isfinite(arr) if np.issubdtype(arr.dtype, np.floating) else user
    if not np.issubdtype(arr.dtype, np.floating):
        has_rule = any(k in arr.attrs or k in arr.encoding for k in ("_FillValue", "missing_value", "valid_range", "valid_min", "valid_max"))
        if not has_rule and context:
            return xr.ones_like(arr, dtype=bool)
        if not has_rule:
            raise InputError(f"variable {arr.name!r} has dtype {arr.dtype} and no _FillValue/missing_value/"
                             "valid_range: xdl cannot tell its gaps. Pass mask= (True where valid), or open "
                             "the file with mask_and_scale=True.")
    return cf.cf_valid_mask(arr)


def range_check(arr: xr.DataArray, context: bool = False):
    """What the CF valid range of ``arr`` does to its values, told when the values are read: a
    warning when it makes gaps of more than 1% of the finite values, an InputError when of all of
    them (every value would be replaced: limits in the raw units of a packing that ``.where()``
    dropped, say; see :func:`~xdl.conventions.cf.no_value_in_range_message`). A ``context``
    variable (read, never replaced) gets the error only. Returns a scalar to make the result
    depend on: numpy for in-memory data (checked now), else a dask scalar reduced
    from the chunks the result reads anyway (no second pass).

    >>> import numpy as np, xarray as xr
    >>> lst = xr.DataArray(np.array([[280.0, np.nan], [300.0, 310.0]], "f4"), name="LST",
    ...                    attrs={"valid_range": np.array([9200, 56000], "u2")})  # packing lost
    >>> range_check(lst)
    Traceback (most recent call last):
    ...
    xdl.errors.InputError: variable 'LST': all 3 of its finite values are outside its CF valid range [9200.0, 56000.0], ...
    """
    counts = cf.out_of_range_counts(arr)
    if counts is None:
        return np.zeros((), bool)
    name, limits, packed_type = str(arr.name), cf.valid_limits(arr), cf.lost_packing(arr)
    # Limits of a packed type on floats whose encoding is gone (.where() on a decoded GOES Rad
    # keeps valid_range [0, 1022] counts for radiances of -3..95) may be raw units: then the few
    # good values below 0 were replaced under the 1% threshold, silently (probe). Any such
    # replacement is told; which it is only the user knows.
    stale = packed_type is not None and "dtype" not in arr.encoding

    def check(outside, finite):
        outside, finite = int(outside), int(finite)
        if finite > 0 and outside == finite:
            raise InputError(cf.no_value_in_range_message(name, finite, limits, packed_type, context))
        message = None if context else cf.out_of_range_message(name, outside, finite, every=stale)
        if message and packed_type:
            message += (f" Its limits are of type {packed_type} on floats without scale_factor/add_offset in "
                        ".encoding: raw units of a packing that .where() or arithmetic dropped? Then fill the "
                        f"variable as opened with mask= (e.g. mask=ds.DQF == 0), or drop the stale limits "
                        f"(ds[{name!r}].attrs.pop('valid_range')): the output carries them too.")
        if message:
            warnings.warn(message, XdlWarning, stacklevel=2)  # at compute the caller is a dask task
        return np.zeros((), bool)

    if not any(isinstance(c, da.Array) for c in counts):
        return check(*counts)
    import dask

    return da.from_delayed(dask.delayed(check, pure=True)(*counts), shape=(), dtype=bool)
