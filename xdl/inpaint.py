"""Gap filling: ``inpaint`` keeps every valid value bit for bit and gives gaps the model's values.

The valid mask (CF rules, or the user's mask/quality-flag rule) decides what is data; the domain
decides where gaps may be filled (never space on a geostationary disk, never land for SST);
the engine runs only the tiles that hold a gap. The Dataset form adds a CF flag variable per
filled variable and a history line.
"""

from __future__ import annotations

import functools
import operator
import warnings

import dask.array as da
import numpy as np
import xarray as xr

from .conventions import cf, domains
from .conventions.validity import as_mask, valid_mask
from .errors import InputError, XdlWarning
from .engine import tiling
from .engine.graph import TILES_GAPS
from .models import pretrained
from .models.resolve import model_key, model_label, resolve_model
from .engine.options import RunOptions, check_halo
from .predict import eligible_variables, finish, run_engine, spatial_dims_for, stack_channels
from .engine.spec import engine_spec

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


def _check_units(arr: xr.DataArray, spec) -> None:
    expected = spec.units.get(str(arr.name)) if spec.units else None
    if expected and arr.attrs.get("units") and arr.attrs["units"] != expected:
        warnings.warn(f"{arr.name!r} is in {arr.attrs['units']!r} but the model was trained on "
                      f"{expected!r}; convert it or fit a model on these units.", UserWarning, stacklevel=3)


def _unhashed(arr: xr.DataArray) -> xr.DataArray:
    if isinstance(arr.data, da.Array):
        return arr
    return arr.copy(data=da.from_array(arr.data, chunks=-1, name=False))


def _fill_bounds(lo, hi, *, clip, limits):
    """Per-sample bounds for fills: the sample's valid range widened by ``clip`` of it (when
    ``clip`` is not None), never beyond the CF valid range ``limits``, and never across zero when
    every valid value of the sample is >= 0 (or <= 0): no negative water, rain or wind speed."""
    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    low = np.full(np.broadcast(lo, hi).shape, -np.inf)
    high = np.full(low.shape, np.inf)
    if clip is not None:
        margin = clip * (hi - lo)
        low, high = lo - margin, hi + margin  # NaN for a sample without valid values: no fill
    with np.errstate(invalid="ignore"):
        low = np.where(lo >= 0, np.maximum(low, 0.0), low)
        high = np.where(hi <= 0, np.minimum(high, 0.0), high)
    if limits[0] is not None:
        low = np.maximum(low, limits[0])
    if limits[1] is not None:
        high = np.minimum(high, limits[1])
    return low, high


def _compose(values, valid, model_values, inside, lo, hi, near, check, *, dtype, clip, limits, model):
    """One block of the result (the input where valid, else the model's value inside the domain,
    within :func:`_fill_bounds`) and of its status flags. ``near``: valid input within the
    model's reach (its halo), which tells a model failure (non-finite output there) from a pixel
    with nothing to fill from. ``check`` is only a dependency (the lazy valid-range warning)."""
    low, high = _fill_bounds(lo, hi, clip=clip, limits=limits)
    finite = np.isfinite(model_values)
    fill = np.clip(model_values.astype(np.float64), low, high).astype(dtype)
    fill = np.where(inside & finite, fill, dtype.type(np.nan))  # an inf is no value: never clipped into one
    # Valid values are the input's own, bit for bit; gaps get the model's value or stay NaN.
    result = np.where(valid, values.astype(dtype, copy=False), fill)
    failed = ~finite & near
    status = np.where(finite, FLAG_FILLED, np.where(failed, FLAG_MODEL_FAILED, FLAG_UNFILLABLE))
    flags = np.where(valid, FLAG_VALID, np.where(inside, status, FLAG_OUTSIDE)).astype(np.int8)
    if (failed & inside & ~valid).any():
        # Same text from every block: Python shows it once per place under the default filters.
        warnings.warn(f"model {model!r} returned NaN or inf for gap pixels with valid input within its "
                      f"reach; they stay NaN, flagged {FLAG_MODEL_FAILED} (model_returned_non_finite). "
                      "Check the model file (NaN weights?) and that the input is in the units it was "
                      "trained on.", XdlWarning, stacklevel=1)  # the caller is a dask task
    return result, flags


def _near_valid(valid: xr.DataArray, spatial, halo: int) -> xr.DataArray:
    """True where some valid pixel lies within ``halo`` pixels (per spatial axis): the engine then
    ran the model there (its tiles hold their core's halo), so a non-finite value is the model's."""
    axes = [valid.get_axis_num(d) for d in spatial]

    def dilate(block):
        return tiling.within(block, [halo] * len(axes), axes)

    data = valid.data
    if not isinstance(data, da.Array):
        data = da.from_array(np.asarray(data), chunks=-1, name=False)
    if halo <= 0:
        return valid.copy(data=data)
    # Beyond the array's size a deeper halo adds nothing; dask refuses it.
    depth = {a: (min(int(halo), data.shape[a] - 1) if a in axes else 0) for a in range(data.ndim)}
    near = da.map_overlap(dilate, data, depth=depth, boundary="none", dtype=bool, trim=True)
    return valid.copy(data=near.rechunk(data.chunks))  # dask may rechunk for a deep halo: undo


def _range_warning(counts, name: str):
    """Warn when more than 1% of ``name``'s finite values fall outside its CF valid range.
    In-memory data: now. Lazy data: when the result is computed (a dask scalar that the
    composition depends on, reduced from the chunks the fill reads anyway: no second pass)."""
    if counts is None:
        return np.zeros((), bool)

    def warn(outside, finite):
        message = cf.out_of_range_message(name, int(outside), int(finite))
        if message:
            warnings.warn(message, XdlWarning, stacklevel=1)  # at compute the caller is a dask task
        return np.zeros((), bool)

    if not any(isinstance(c, da.Array) for c in counts):
        return warn(*counts)
    import dask

    return da.from_delayed(dask.delayed(warn, pure=True)(*counts), shape=(), dtype=bool)


def _chunks_like(obj, arr: xr.DataArray):
    """``obj`` rechunked to ``arr``'s chunks along the dims they share (both dask-backed)."""
    if arr is None or not isinstance(getattr(obj, "data", None), da.Array) or not isinstance(arr.data, da.Array):
        return obj
    wanted = {d: arr.chunksizes[d] for d in obj.dims if d in arr.chunksizes}
    if all(obj.chunksizes.get(d) == c for d, c in wanted.items()):
        return obj
    return obj.chunk(wanted)


def _fill_one(arrays: list[xr.DataArray], valids: list[xr.DataArray], domain, model, spec, run, dims,
              clip=0.1, cf_rule=False):
    """Fill a group of variables that the model takes together. Returns (filled, flags) lists.
    ``cf_rule``: the valid masks are the CF rule's (no ``mask=``): warn when it drops many values."""
    spatial = spatial_dims_for(arrays[0], spec, dims)
    masked = [a.where(v) for a, v in zip(arrays, valids)]
    for a, v in zip(arrays, valids):
        # No error for a variable without any valid value (a lazy input could not say so before
        # computing): it comes back NaN, flagged unfillable; in memory, where it is free to see, a warning.
        if not isinstance(v.data, da.Array) and not bool(np.asarray(v).any()):
            warnings.warn(f"variable {a.name!r} has no valid value at all: nothing to fill from, so it stays "
                          "NaN (flag 2, unfillable). Check its mask, _FillValue and valid_range.",
                          XdlWarning, stacklevel=4)
    names = [str(a.name) for a in arrays]
    x = stack_channels(masked, spatial)
    out = run_engine(x, model, spec, run, spatial, names, names, tiles=TILES_GAPS)
    # In-memory inputs now meet the lazy model output: make them dask arrays without hashing them
    # (dask would otherwise hash every array at each step below, ~30 ms on a CONUS scene).
    lazy_inputs = [isinstance(a.data, da.Array) for a in arrays]
    arrays, valids, masked = ([_unhashed(a) for a in group] for group in (arrays, valids, masked))
    domain = None if domain is None else _unhashed(domain)
    near_any = _near_valid(functools.reduce(operator.or_, valids), spatial, spec.halo)
    base = x.isel({"__xdl_channel__": 0}, drop=True)
    channel_axis = x.get_axis_num("__xdl_channel__")
    filled_list, flag_list = [], []
    for i, (arr, valid, known) in enumerate(zip(arrays, valids, masked)):
        model_values = xr.DataArray(out[(slice(None),) * channel_axis + (i,)], dims=base.dims, coords=base.coords)
        model_values = model_values.transpose(*arr.dims)
        dtype = np.dtype(arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.float64)
        # A safety net for an extrapolating model: no fill beyond the sample's own valid range,
        # widened by ``clip`` of that range (per sample over the whole field: chunk-invariant),
        # nor beyond the CF valid range, nor across zero for a field of one sign (_fill_bounds).
        lo, hi = known.min(dim=list(spatial)), known.max(dim=list(spatial))
        check = _range_warning(cf.out_of_range_counts(arr) if cf_rule else None, str(arr.name))
        near = near_any.transpose(*arr.dims)
        # One elementwise pass per block makes both outputs (the chain of xarray steps it
        # replaces cost ~30 ms more per call, in graph building and tasks, on a CONUS scene).
        # Every operand on the input's chunks, so both outputs have them (zarr needs regular chunks).
        like = arr if lazy_inputs[i] else None  # in memory: any chunks, computed at once
        valid, model_values, lo, hi, near = (_chunks_like(a, like) for a in (valid, model_values, lo, hi, near))
        result, flags = xr.apply_ufunc(
            _compose, arr, valid, model_values, True if domain is None else _chunks_like(domain, like), lo, hi, near,
            xr.DataArray(check),
            kwargs={"dtype": dtype, "clip": clip, "limits": cf.valid_limits(arr), "model": model_label(model)},
            dask="parallelized", output_dtypes=[dtype, np.int8], output_core_dims=[[], []])
        result, flags = (_chunks_like(a.transpose(*arr.dims).assign_coords(
            {k: arr.coords[k] for k in a.coords if k in arr.coords}), like) for a in (result, flags))
        # Decoded values with attrs that say so (valid_* in decoded units, no packing attributes):
        # what netCDF4 and xarray read from the output is then the same (see cf.output_attrs).
        result.attrs = cf.output_attrs(arr, dtype)
        result.encoding = cf.output_encoding(arr)
        cf.carry_georeferencing(arr, result)
        result.name = arr.name
        flags.attrs = {**FLAG_ATTRS, "long_name": f"gap filling status of {arr.name}"}
        flags.encoding = {k: v for k, v in result.encoding.items() if k not in ("grid_mapping", "coordinates")}
        # _FillValue: the CF attribute (netCDF, zarr 2's fill); fill_value: zarr 3's array fill.
        flags.encoding.update({"_FillValue": FLAG_NOT_WRITTEN, "fill_value": FLAG_NOT_WRITTEN})
        cf.carry_georeferencing(arr, flags)
        filled_list.append(result)
        flag_list.append(flags)
    return filled_list, flag_list


def inpaint(obj, model=None, *, variables=None, mask=None, domain="auto", dims=None, flags=True,
            clip=0.1, device="auto", precision="auto", tile=None, halo=None, batch_size=None,
            periodic=None, progress=False, compile="auto", nan_policy="propagate", threads=None):
    """Fill the gaps of ``obj`` with a learned gap filler; valid values stay bit-identical.

    Parameters
    ----------
    model : None (the bundled default), a path to a ``.safetensors`` model, a bundled name, or an
        ``xdl.Model`` that fills gaps (e.g. from ``ds.dl.fit("fill-unet", ...)``).
    variables : Dataset variables to fill (default: every float variable with spatial dims).
    mask : True where a value is valid. Default: CF rules (finite, not ``_FillValue`` /
        ``missing_value``, inside ``valid_range``/``valid_min``/``valid_max``). A quality-flag rule
        works too: ``mask=ds.DQF == 0``. NaN is never valid.
    domain : True where gaps may be filled; elsewhere they stay NaN (flag 3). A boolean DataArray
        (or array of the data's shape) is matched to the data by coordinate labels: a reversed or
        permuted coordinate is reordered, labels that differ raise InputError. None: everywhere.
        "auto" (default) keeps the gaps that every one of these rules allows
        (:mod:`xdl.conventions.domains`): (1) the Earth disk of a ``geostationary`` or
        ``vertical_perspective`` grid mapping (never fill space), the mapping found in the
        Dataset, in a DataArray's coordinates, in the file its ``encoding["source"]`` names, or
        from the GOES-R constants for ``goes_imager_projection``; (2) a land/sea mask or flag
        variable beside the data (CF ``land_binary_mask``, ``sea_binary_mask``,
        ``land_area_fraction``, ``sea_area_fraction``, a ``flag_meanings`` land class as in GHRSST
        ``l2p_flags`` or water class as in the GOES LST ``DQF``): when at most 1% of the
        variable's valid values lie on one side, the other side is outside; (3) 2-D lat/lon with missing values (swaths): outside where they are missing; (4) model output on an
        ocean grid (``cell_measures``/``associated_files`` name ``areacello``): every never-observed pixel is land.
        When the file says none of this (no disk, mask or swath), a shape rule: a region that no
        sample observes and that is wide (a pixel 6 or more pixels from every observed pixel:
        the sea around a country, space around a reprojected disk) is outside if it reaches the
        scene's edge (within 16 pixels), or anywhere for two or more samples (never observed in
        a whole series); narrow gaps joined to it are outside only within 4 pixels of its wide
        part. Scan lines, clouds and other gaps inside a scene are filled. The rule reads the
        valid mask once (also for lazy input); ``domain=None`` skips it.
    flags : Dataset only: add ``<var>_inpainted`` (0 valid, 1 filled, 2 unfillable: no valid input
        within the model's reach, 3 outside domain, 4 the model returned NaN/inf there, with an
        ``XdlWarning``); its ``_FillValue`` -1 marks a region of a store never written.
    clip : keep fills within the valid values' range of the same sample (each time step's whole
        field), widened by this share of that range (default 0.1); None lets the model extrapolate.
        Whatever ``clip`` says, fills stay within the CF ``valid_range``/``valid_min``/``valid_max``
        and never cross zero in a sample whose valid values are all >= 0 (or all <= 0).
        Without ``mask=``, an ``XdlWarning`` says when the CF rule drops more than 1% of the finite
        values (lazy input: when the result is computed).
    Outputs hold decoded values: packed ``valid_*`` attributes are converted to decoded units and
    the output's dtype, and packing attributes (scale_factor, add_offset, _Unsigned) are dropped.
    device, precision, tile, halo, batch_size, periodic, progress, compile, nan_policy, threads : engine
        options, as in ``predict`` (``progress`` shows a bar when xdl computes an in-memory input;
        ``nan_policy`` matters only for a gap filler that takes no mask).

    Examples
    --------
    >>> import numpy as np, xarray as xr, xdl
    >>> field = xr.DataArray(np.random.rand(64, 64).astype("f4"), dims=("y", "x"), name="sst")
    >>> field[10:12, :] = np.nan
    >>> model = xdl.zoo.create("pconv-unet", in_channels=1, depth=3, base_channels=8,
    ...                        card={"normalization": {"kind": "per_sample"}})
    >>> filled = field.dl.inpaint(model)
    >>> bool(np.isfinite(filled).all()), bool((filled.values[:10] == field.values[:10]).all())
    (True, True)
    """
    RunOptions.check(device, precision, tile, batch_size, periodic, compile, nan_policy, threads, halo)
    model = resolve_model(model, default=pretrained.DEFAULT_INPAINT)
    spec = engine_spec(model, halo=check_halo(halo))
    if clip is not None and (isinstance(clip, (bool, np.bool_)) or not isinstance(clip, (int, float, np.number))
                             or not np.isfinite(clip) or clip < 0):
        raise InputError(f"clip={clip!r}: give a share >= 0 of the sample's valid range to allow beyond it "
                         "(0.1, the default, widens it by 10%), or None to let the model extrapolate.")
    if not spec.fills_gaps:
        raise InputError(f"model {model_label(model)!r} does not fill gaps (its card says fills_gaps=False); "
                         "use predict() for it, or fit a 'fill-unet'.")
    run = RunOptions.build(spec, device, precision, tile, batch_size, periodic, compile, nan_policy, threads)
    if isinstance(domain, str) and domain != "auto":
        raise InputError(f"domain={domain!r}: give 'auto', None (fill everywhere), or a boolean DataArray "
                         "(True where gaps may be filled, e.g. ds.land == 0).")
    if isinstance(obj, xr.DataArray):
        return _inpaint_dataarray(obj, model, spec, run, mask, domain, dims, clip, progress)
    if isinstance(obj, xr.Dataset):
        return _inpaint_dataset(obj, model, spec, run, variables, mask, domain, dims, flags, clip, progress)
    raise InputError(f"inpaint works on xarray Dataset or DataArray objects, not {type(obj).__name__}.")


def _groups(names: list[str], spec) -> list[list[str]]:
    if spec.in_channels == 1:
        return [[n] for n in names]
    if len(names) != spec.in_channels:
        raise InputError(f"the model fills {spec.in_channels} variables together ({spec.inputs}); "
                         f"pass variables= with {spec.in_channels} names, got {names}.")
    return [names]


def _resolve_domain(domain, container, arr, valid, dims):
    """The domain mask of ``arr`` (None: everywhere): ``"auto"`` reads what ``container`` (the
    Dataset, or ``arr`` itself) says about where ``arr`` lives (:func:`xdl.conventions.domains.auto_domain`)."""
    if domain is None:
        return None
    if isinstance(domain, str):
        domain = domains.auto_domain(container, arr, valid=valid, dims=dims)
        if domain is None:
            return None
    return as_mask(domain, arr, "domain")


def _inpaint_dataarray(arr, model, spec, run, mask, domain, dims, clip, progress):
    if arr.name is None:
        arr = arr.rename("data")
    _check_units(arr, spec)
    valid = valid_mask(arr, mask)
    dom = _resolve_domain(domain, arr, arr, valid, dims)
    filled, _ = _fill_one([arr], [valid], dom, model, spec, run, dims, clip, cf_rule=mask is None)
    result = filled[0]
    result.attrs = cf.append_history(result.attrs, f"inpaint model={model_label(model)} ({model_key(model)[:12]})")
    return finish(result, isinstance(arr.data, da.Array), progress)


def _inpaint_dataset(ds, model, spec, run, variables, mask, domain, dims, flags, clip, progress):
    if variables is None:
        names = (list(spec.inputs) if spec.in_channels > 1 and spec.inputs
                 else eligible_variables(ds, spec, dims, floats_only=True))
        if not names:
            raise InputError(f"no float variable with spatial dims to fill in this dataset ({list(ds.data_vars)}); "
                             "pass variables=[...] and dims=(...).")
    else:
        names = [variables] if isinstance(variables, str) else list(variables)
    missing = [n for n in names if n not in ds.data_vars]
    if missing:
        raise InputError(f"variables {missing} not in the dataset; it has {list(ds.data_vars)}.")
    out = ds.copy()
    lazy = False
    for group in _groups(names, spec):
        arrays = [ds[n] for n in group]
        for a in arrays:
            _check_units(a, spec)
        lazy = lazy or any(isinstance(a.data, da.Array) for a in arrays)
        valids = [valid_mask(a, mask) for a in arrays]
        # One domain per group (a multi-variable model fills its variables on one grid): the first's.
        dom = _resolve_domain(domain, ds, arrays[0], valids[0], dims)
        filled, flag_arrays = _fill_one(arrays, valids, dom, model, spec, run, dims, clip, cf_rule=mask is None)
        for name, result, flag in zip(group, filled, flag_arrays):
            out[name] = result
            if flags:
                flag_name = f"{name}_inpainted"
                out[flag_name] = flag
                ancillary = str(result.attrs.get("ancillary_variables", "")).split()
                if flag_name not in ancillary:  # a second pass over xdl's own output: once
                    ancillary.append(flag_name)
                out[name].attrs["ancillary_variables"] = " ".join(ancillary)
    out.attrs = cf.append_history(ds.attrs, f"inpaint model={model_label(model)} ({model_key(model)[:12]}) "
                                  f"variables={names}")
    return finish(out, lazy, progress)
