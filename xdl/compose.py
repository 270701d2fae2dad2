"""One block of ``inpaint``'s result: the input where valid (bit for bit), the model's value in
the gaps inside the domain and within the fill bounds, the CF status flags, and the ``<var>_sigma``
standard error (issue #16). :mod:`xdl.inpaint` builds the graph; this module says what each pixel gets.
"""

from __future__ import annotations

import warnings

import dask.array as da
import numpy as np
import xarray as xr

from . import uncertainty
from .conventions import cf, layout
from .conventions.validity import range_check, valid_mask
from .engine import tiling
from .dask_wrap import as_dask
from .errors import XdlWarning

__all__ = ["FLAG_VALID", "FLAG_FILLED", "FLAG_UNFILLABLE", "FLAG_OUTSIDE", "FLAG_MODEL_FAILED", "FLAG_NOT_WRITTEN",
           "FLAG_ATTRS", "fill_bounds", "compose_block", "near_valid", "chunks_like", "unhashed",
           "compose_variable", "sigma_variable", "observed_mask"]

FLAG_VALID, FLAG_FILLED, FLAG_UNFILLABLE, FLAG_OUTSIDE, FLAG_MODEL_FAILED = 0, 1, 2, 3, 4
# The flags' _FillValue: what a never-written region of a store reads (zarr's default fill is 0,
# which would say "valid_input"). Not one of flag_values, as CF asks.
FLAG_NOT_WRITTEN = np.int8(-1)
FLAG_ATTRS = {
    "flag_values": np.array([FLAG_VALID, FLAG_FILLED, FLAG_UNFILLABLE, FLAG_OUTSIDE, FLAG_MODEL_FAILED],
                            dtype=np.int8),
    "flag_meanings": ("valid_input filled_by_model unfillable_no_valid_input_nearby outside_fill_domain "
                      "model_returned_non_finite"),
    "comment": ("_FillValue -1: not written (an interrupted or unfinished write); "
                "4: the model gave NaN or inf there although valid input was within its reach."),
}


def unhashed(arr: xr.DataArray) -> xr.DataArray:
    if isinstance(arr.data, da.Array):
        return arr
    return arr.copy(data=as_dask(arr.data))


def fill_bounds(lo, hi, *, clip, limits):
    """Per-sample bounds for fills: the sample's valid range widened by ``clip`` of it (when
    ``clip`` is not None), never beyond the CF valid range ``limits`` (where some of the sample's
    valid values lie beyond a limit, never beyond those values; where all do, that limit does not
    describe them and bounds nothing), and never across zero when every valid value of the sample is >= 0
    (or <= 0): no negative water, rain or wind speed.

    >>> [b.tolist() for b in fill_bounds([280.0], [330.0], clip=0.1, limits=(9200.0, 56000.0))]
    [[275.0], [335.0]]
    >>> [b.tolist() for b in fill_bounds([280.0], [330.0], clip=0.1, limits=(213.0, 330.0))]
    [[275.0], [330.0]]
    >>> [b.tolist() for b in fill_bounds([20.0], [124.0], clip=0.1, limits=(-0.04, 25.6))]  # another band's limits
    [[9.6], [124.0]]
    """
    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    low = np.full(np.broadcast(lo, hi).shape, -np.inf)
    high = np.full(low.shape, np.inf)
    if clip is not None:
        margin = clip * (hi - lo)
        low, high = lo - margin, hi + margin  # NaN for a sample without valid values: no fill
    with np.errstate(invalid="ignore"):
        low = np.where(lo >= 0, np.maximum(low, 0.0), low)
        high = np.where(hi <= 0, np.minimum(high, 0.0), high)
        # A limit that some of the sample's own valid values lie beyond does not describe them (a
        # user's mask= over a variable whose packing, and so its limits' units, was lost, or whose
        # limits are another band's after open_mfdataset joined them): a clip to it gave every
        # fill one value (GOES C13 under C07's valid_range: 25.59 for a mean of 87.6; probe).
        # Fills then stay within the valid values themselves on that side (a percentage the mask
        # lets reach 100.4 is filled up to 100.4, not 10% beyond it; review).
        if limits[0] is not None:
            low = np.where(hi < limits[0], low, np.maximum(low, np.minimum(limits[0], lo)))
        if limits[1] is not None:
            high = np.where(lo > limits[1], high, np.minimum(high, np.maximum(limits[1], hi)))
    return low, high


def compose_block(values, valid, model_values, inside, lo, hi, near, check, *, dtype, clip, limits, model,
                  missing=None):
    """One block of the result (the input where valid, else the model's value inside the domain,
    within :func:`fill_bounds`) and of its status flags. ``near``: valid input within the
    model's reach (its halo), which tells a model failure (non-finite output there) from a pixel
    with nothing to fill from. ``check`` is only a dependency (the lazy valid-range warning).
    ``missing``: raw input's fill value, kept where the input held it (other unfilled pixels: NaN)."""
    low, high = fill_bounds(lo, hi, clip=clip, limits=limits)
    # Within the output type too: a float16 field peaking at 64,000 got bounds beyond its 65,504,
    # so fills there became inf, then NaN flagged unfillable (probe). NaN bounds stay NaN.
    largest = np.finfo(dtype).max
    low, high = np.clip(low, -largest, largest), np.clip(high, -largest, largest)
    finite = np.isfinite(model_values)
    with np.errstate(over="ignore", invalid="ignore"):
        fill = np.clip(model_values.astype(np.float64), low, high).astype(dtype)
    # A fill is a finite model value within finite bounds: a sample without any valid value of
    # this variable has no bounds (NaN) and stays unfilled even where context let the model run.
    ok = finite & np.isfinite(fill)
    unfilled = dtype.type(np.nan)
    if missing is not None:  # where the raw input held its fill value, it keeps it; a NaN stays NaN
        with np.errstate(invalid="ignore"):
            unfilled = np.where(values == missing, dtype.type(missing), unfilled)
    fill = np.where(inside & ok, fill, unfilled)  # an inf is no value: never clipped into one
    # Valid values are the input's own, bit for bit; gaps get the model's value or stay missing.
    result = np.where(valid, values.astype(dtype, copy=False), fill)
    failed = ~finite & near
    status = np.where(ok, FLAG_FILLED, np.where(failed, FLAG_MODEL_FAILED, FLAG_UNFILLABLE))
    flags = np.where(valid, FLAG_VALID, np.where(inside, status, FLAG_OUTSIDE)).astype(np.int8)
    if (failed & inside & ~valid).any():
        # Same text from every block: Python shows it once per place under the default filters.
        warnings.warn(f"model {model!r} returned NaN or inf for gap pixels with valid input within its "
                      f"reach; they stay NaN, flagged {FLAG_MODEL_FAILED} (model_returned_non_finite). "
                      "Check the model file (NaN weights?) and that the input is in the units it was "
                      "trained on.", XdlWarning, stacklevel=1)  # the caller is a dask task
    return result, flags


def near_valid(valid: xr.DataArray, spatial, halo: int) -> xr.DataArray:
    """True where some valid pixel lies within ``halo`` pixels (per spatial axis): the engine then
    ran the model there (its tiles hold their core's halo), so a non-finite value is the model's."""
    axes = [valid.get_axis_num(d) for d in spatial]

    def dilate(block):
        return tiling.within(block, [halo] * len(axes), axes)

    data = valid.data
    if not isinstance(data, da.Array):
        data = as_dask(data)
    if halo <= 0:
        return valid.copy(data=data)
    # Beyond the array's size a deeper halo adds nothing; dask refuses it.
    depth = {a: (min(int(halo), data.shape[a] - 1) if a in axes else 0) for a in range(data.ndim)}
    near = da.map_overlap(dilate, data, depth=depth, boundary="none", dtype=bool, trim=True)
    return valid.copy(data=near.rechunk(data.chunks))  # dask may rechunk for a deep halo: undo


def written_by_xdl(flags: xr.DataArray) -> bool:
    """Whether ``flags`` are the flags of an xdl fill (a ``filled_by_model`` meaning)."""
    return "filled_by_model" in str(flags.attrs.get("flag_meanings", "")).split()


def observed_mask(ds, arr: xr.DataArray, mask, context: bool = False) -> xr.DataArray:
    """``arr``'s valid mask (:func:`~xdl.conventions.validity.valid_mask`, with its ``context``
    rule for a field that is read, never filled); without ``mask=``, less
    the pixels an earlier fill by xdl wrote, as its flags in Dataset ``ds`` say (``<name>_inpainted``
    == filled_by_model, read back from a file or not): they are no observations. A second pass then
    fills them again (the same model and options give every output back) and ``evaluate`` never
    scores against them; ``mask=`` is the user's own rule, taken as given."""
    valid = valid_mask(arr, mask, context=context)
    if mask is not None:
        return valid
    filled = earlier_fills(ds, arr)
    return valid if filled is None else valid & ~filled


def earlier_fills(ds, arr: xr.DataArray) -> xr.DataArray | None:
    """Where an earlier xdl fill of ``arr`` in Dataset ``ds`` wrote a value (bool), or None without
    one: its flags say ``filled_by_model`` (``<name>_inpainted``, else the xdl flag variable its
    ``ancillary_variables`` names: a renamed variable keeps its link; its fills came back as
    observations, flag 0, sigma 0; probe), else, written without flags (``flags=False``), its
    standard error is not 0 where it has a value (0 on valid input, NaN where nothing was filled: a second pass
    took such fills for observations, probe). For a DataArray (neither at hand) whose link names
    xdl's flags or sigma, a warning: its fills count as data."""
    links = str(arr.attrs.get("ancillary_variables", "")).split()
    held = ds.data_vars if isinstance(ds, xr.Dataset) else {}
    for name in [f"{arr.name}_inpainted"] + links:
        flags = held.get(name)
        if flags is not None and written_by_xdl(flags):
            return flags == FLAG_FILLED
    for name in [uncertainty.sigma_name(arr.name)] + links:
        sigma = held.get(name)
        if sigma is not None and uncertainty.is_fill_sigma(sigma):
            # 0 on valid input, read back within half a packing step of 0 when the user packed it (a
            # stored 0 decoded to -0.0005 made every pixel a fill, and the field NaN; probe); a
            # fill whose model gave no usable sigma has NaN beside its value.
            half_step = 0.5 * abs(float(sigma.encoding.get("scale_factor", 0.0) or 0.0))
            return ((sigma > half_step * (1 + 1e-6)) | sigma.isnull()) & arr.notnull()
    absent = [n for n in links if n not in held and (n.endswith("_inpainted") or n.endswith("_sigma"))]
    if absent:
        where = "this Dataset does not hold them" if isinstance(ds, xr.Dataset) else "a DataArray holds none"
        warnings.warn(f"{arr.name!r} names {absent[0]!r} in ancillary_variables, the flags or standard error of an "
                      f"earlier fill, which are not at hand ({where}): its filled pixels count as observations "
                      "here. Pass the Dataset with them (ds.dl...) so they are filled and scored as gaps.",
                      XdlWarning, stacklevel=4)
    return None


def chunks_like(obj, arr: xr.DataArray):
    """``obj`` rechunked to ``arr``'s chunks along the dims they share (both dask-backed)."""
    if arr is None or not isinstance(getattr(obj, "data", None), da.Array) or not isinstance(arr.data, da.Array):
        return obj
    target, own = layout.data_chunks(arr), layout.data_chunks(obj)
    wanted = {d: target[d] for d in obj.dims if d in target}
    if all(own.get(d) == c for d, c in wanted.items()):
        return obj
    return obj.chunk(wanted)


def _limits(arr) -> tuple:
    """The CF valid range, or where the file declares none, the variable's physical bounds
    (fractions 0-1, relative humidity: :func:`xdl.conventions.cf.physical_limits`)."""
    lo, hi = cf.valid_limits(arr)
    if lo is None and hi is None:
        return cf.physical_limits(arr)
    return lo, hi


def compose_variable(arr, valid, known, model_values, domain, near_any, spatial, like, *, clip, cf_rule, label,
                     window=None):
    """The filled variable and its flags from the model's values (:func:`compose_block`), with CF attrs.
    ``window``: ``(dim, k)`` when the model read the steps t-k..t+k along ``dim`` (``time_window``)."""
    dtype = np.dtype(arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.float64)
    # A safety net for an extrapolating model: no fill beyond the sample's own valid range,
    # widened by ``clip`` of that range (per sample over the whole field: chunk-invariant),
    # nor beyond the CF valid range, nor across zero for a field of one sign (fill_bounds).
    lo, hi = known.min(dim=list(spatial)), known.max(dim=list(spatial))
    if window is not None:
        # With neighbouring steps as inputs, their valid values count too: a step seen only in a
        # small clear patch had its fills clamped to that patch's range (ERA-40 tcw, 12 x 12
        # pixels: RMSE 16.9 against 5.0 unclamped), and a step without a value of its own is
        # filled from its neighbours within theirs.
        dim, k = window
        lo, hi = (b.rolling({dim: 2 * k + 1}, center=True, min_periods=1) for b in (lo, hi))
        lo, hi = lo.min(), hi.max()
    check = range_check(arr) if cf_rule else np.zeros((), bool)
    near = near_any.transpose(*arr.dims)
    # One elementwise pass per block makes both outputs (the chain of xarray steps it
    # replaces cost ~30 ms more per call, in graph building and tasks, on a CONUS scene).
    # Every operand on the input's chunks, so both outputs have them (zarr needs regular chunks).
    valid, model_values, lo, hi, near = (chunks_like(a, like) for a in (valid, model_values, lo, hi, near))
    result, flags = xr.apply_ufunc(
        compose_block, arr, valid, model_values, True if domain is None else chunks_like(domain, like), lo, hi, near,
        xr.DataArray(check),
        kwargs={"dtype": dtype, "clip": clip, "limits": _limits(arr), "model": label,
                "missing": cf.raw_missing_value(arr)},
        dask="parallelized", output_dtypes=[dtype, np.int8], output_core_dims=[[], []])
    result, flags = (chunks_like(a.transpose(*arr.dims).assign_coords(
        {k: arr.coords[k] for k in a.coords if k in arr.coords}), like) for a in (result, flags))
    # Decoded values with attrs that say so (valid_* in decoded units, no packing attributes):
    # what netCDF4 and xarray read from the output is then the same (see cf.output_attrs).
    result.attrs = cf.output_attrs(arr, dtype)
    result.encoding = cf.output_encoding(arr)
    cf.carry_georeferencing(arr, result)
    result.name = arr.name
    flags.attrs = {**FLAG_ATTRS, "long_name": f"gap filling status of {arr.name}"}
    flags.encoding = {k: v for k, v in result.encoding.items()
                      if k not in ("grid_mapping", "coordinates", "_FillValue", "missing_value")}
    # _FillValue: the CF attribute (netCDF, zarr 2's fill); fill_value: zarr 3's array fill.
    flags.encoding.update({"_FillValue": FLAG_NOT_WRITTEN, "fill_value": FLAG_NOT_WRITTEN})
    cf.carry_georeferencing(arr, flags)
    return result, flags


def sigma_variable(result, valid, flags, model_sigma, like, model=None):
    """``<var>_sigma``: 0 where valid, the model's sigma where filled, NaN elsewhere; same dtype,
    chunks and encoding (compression, georeferencing) as the value, never packed. ``model``: its
    label, for the warning about a sigma that is no positive number."""
    valid, model_sigma = (chunks_like(a, like) for a in (valid, model_sigma))
    sigma = xr.apply_ufunc(uncertainty.sigma_block, valid, flags, model_sigma,
                           kwargs={"dtype": result.dtype, "model": model},
                           dask="parallelized", output_dtypes=[result.dtype])
    sigma = chunks_like(sigma.transpose(*result.dims).assign_coords(
        {k: result.coords[k] for k in sigma.coords if k in result.coords}), like)
    sigma.attrs = uncertainty.sigma_attrs(result)
    sigma.encoding = dict(result.encoding)
    cf.carry_georeferencing(result, sigma)
    sigma.name = uncertainty.sigma_name(str(result.name))
    return sigma


