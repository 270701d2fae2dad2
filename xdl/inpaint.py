"""Gap filling: ``inpaint`` keeps every valid value bit for bit and gives gaps the model's values.

The valid mask (CF rules, or the user's mask/quality-flag rule) decides what is data; the domain
decides where gaps may be filled (never space on a geostationary disk, never land for SST);
the engine runs only the tiles that hold a gap. The Dataset form adds a CF flag variable per
filled variable and a history line. A context model also sees other variables and the
neighbouring time steps (:mod:`xdl.context`); a sigma model gives each fill its standard error
(``<var>_sigma``). What each pixel gets is decided in :mod:`xdl.compose`.
"""

from __future__ import annotations

import functools
import operator
import warnings
from dataclasses import dataclass

import dask.array as da
import numpy as np
import xarray as xr

from . import uncertainty
from .compose import (FLAG_ATTRS, FLAG_FILLED, FLAG_MODEL_FAILED, FLAG_NOT_WRITTEN, FLAG_OUTSIDE,  # noqa: F401
                      FLAG_UNFILLABLE, FLAG_VALID, compose_variable, near_valid, observed_mask,
                      sigma_variable, unhashed, written_by_xdl)
from .context import ContextRequest, check_request, context_model
from .conventions import cf, domains, layout, projection
from .conventions.validity import as_mask
from .errors import InputError, ModelError, XdlWarning
from .engine.graph import TILES_GAPS
from .models import pretrained
from .models.resolve import model_key, model_label, resolve_model
from .engine.options import RunOptions, check_halo
from .predict import as_float, eligible_variables, finish, in_card_order, output_channel, run_engine, spatial_dims_for, stack_channels
from .engine.spec import engine_spec

def _check_units(arr: xr.DataArray, spec) -> None:
    if cf.is_angle(arr):
        # A direction filled as a number: a gap from 358 to 1 degrees was filled through south,
        # 344 -> 157 -> 15, with a sigma of 0.3 degrees (probe).
        warnings.warn(f"{arr.name!r} is a direction ({arr.attrs.get('standard_name') or arr.attrs.get('units')}), "
                      "which wraps at 360 degrees, but it is filled as a plain number: across north a fill "
                      "sweeps through south. Fill its components instead (u and v, or sin and cos of the "
                      "angle) and derive the direction from the filled ones.", XdlWarning, stacklevel=3)
    expected = spec.units.get(str(arr.name)) if spec.units else None
    if expected and arr.attrs.get("units") and arr.attrs["units"] != expected:
        warnings.warn(f"{arr.name!r} is in {arr.attrs['units']!r} but the model was trained on "
                      f"{expected!r}; convert it or fit a model on these units.", UserWarning, stacklevel=3)


@dataclass
class _Job:
    """What runs: the model the engine calls (a context model wrapped with its ``info``), its
    spec and options, its resident-copy key, its sigma scale (None: no sigma output), the
    context request and whether ``<var>_sigma`` is wanted."""
    model: object
    spec: object
    run: object
    label: str
    key: str | None = None
    sigma_scale: float | None = None
    request: ContextRequest | None = None
    uncertainty: bool = False
    distances: tuple | None = None  # the card's (distance_bins, distance_scales), when it has them


FEW_VALUES = 4  # valid values in a field (sample) below which no statistics say how wrong a fill is


def _warn_empty(arrays, valids, spatial, window=False) -> None:
    """In memory, where it is free to see: a variable without any valid value; fields seen in a
    few pixels; with ``window`` (time_window), the steps without any, filled whole from their
    neighbouring steps (an outer-join merge inserted such steps and nothing said so; probe)."""
    for a, v in zip(arrays, valids):
        # No error for a variable without any valid value (a lazy input could not say so before
        # computing): it comes back NaN, flagged unfillable; in memory, where it is free to see, a warning.
        if isinstance(v.data, da.Array):
            continue
        if not bool(np.asarray(v).any()):
            warnings.warn(f"variable {a.name!r} has no valid value at all: nothing to fill from, so it stays "
                          "NaN (flag 2, unfillable). Check its mask, _FillValue and valid_range.",
                          XdlWarning, stacklevel=5)
            continue
        if not spatial:  # pointwise
            continue
        counts = np.asarray(v.sum(list(spatial)))
        if window:  # a step that follows its neighbouring steps: no statistics of its own needed
            if (counts == 0).any():
                warnings.warn(f"variable {a.name!r} has no valid value in {int((counts == 0).sum())} of its "
                              f"{counts.size} field(s): with time_window they are filled from their "
                              "neighbouring steps wherever those hold values (flag 1). If they were made by "
                              "aligning series (xr.merge's outer join), drop them first.", XdlWarning, stacklevel=5)
            continue
        few = counts[(counts > 0) & (counts < FEW_VALUES)]
        if few.size:
            # Up to three values: no spread to judge a fill by (a field seen in one pixel had a sigma
            # of 1e-3 for errors of 4.5 K; probe). Said, whatever the sigma then is.
            warnings.warn(f"variable {a.name!r} has only {int(few.min())} valid value(s) in {few.size} of its "
                          f"{counts.size} field(s): fills there rest on no statistics, and their sigma "
                          "(uncertainty=True) is a guess, not an estimate.", XdlWarning, stacklevel=5)


def _fill_one(arrays: list[xr.DataArray], valids: list[xr.DataArray], domain, job: _Job, dims,
              clip=0.1, cf_rule=False):
    """Fill a group of variables that the model takes together. Returns (filled, flags, sigmas) lists
    (sigmas: None unless ``job.uncertainty``).
    ``cf_rule``: the valid masks are the CF rule's (no ``mask=``): warn when it drops many values."""
    spec = job.spec
    spatial = spatial_dims_for(arrays[0], spec, dims)
    # Integers as float64 (where() alone makes int16 float32): the output's type, so a second pass
    # over it reads the same values with the same statistics and gives it back (probe).
    masked = [as_float(a).where(v) for a, v in zip(arrays, valids)]
    _warn_empty(arrays, valids, spatial, window=job.request is not None and bool(job.request.offsets))
    names = [str(a.name) for a in arrays]
    extra = job.request.channels(masked, spatial) if job.request is not None else []
    targets = masked
    if spec.takes_domain and domain is not None:
        # Gaps outside the domain, +inf: the engine tells the model not to spend time on them.
        targets = [m.where(v | domain, np.inf) for m, v in zip(masked, valids)]
    x = stack_channels(targets + extra, spatial)
    channel_names = names + (job.request.channel_names(names) if job.request is not None else [])
    like = job.request.standardise_like(len(names)) if job.request is not None else None
    out = run_engine(x, job.model, spec, job.run, spatial, channel_names, names, tiles=TILES_GAPS, key=job.key,
                     target_channels=len(names) if extra else None, sigma_scale=job.sigma_scale, standardise_like=like)
    # In-memory inputs now meet the lazy model output: make them dask arrays without hashing them
    # (dask would otherwise hash every array at each step below, ~30 ms on a CONUS scene).
    lazy_inputs = [isinstance(a.data, da.Array) for a in arrays]
    arrays, valids, masked = ([unhashed(a) for a in group] for group in (arrays, valids, masked))
    domain = None if domain is None else unhashed(domain)
    steps = job.request.time_window if job.request is not None else 0
    # The dim time_window steps along (the variables filled together share their dims).
    dim = layout.sequence_dim(arrays[0], tuple(spatial)) if steps else None
    observed = functools.reduce(operator.or_, valids)
    if steps:
        # With neighbouring steps as inputs, a step that has no value of its own near a pixel is
        # still filled from them there (a fully clouded day from the days around it).
        observed = functools.reduce(operator.or_, [observed] + [
            layout.shifted(observed, dim, offset, fill_value=False) for offset in job.request.offsets])
    near_any = near_valid(observed, spatial, spec.halo)

    def channel(i, arr):
        return output_channel(out, x, i).transpose(*arr.dims)

    filled_list, flag_list, sigma_list = [], [], []
    for i, (arr, valid, known) in enumerate(zip(arrays, valids, masked)):
        like = arr if lazy_inputs[i] else None  # in memory: any chunks, computed at once
        window = (dim, steps) if steps else None
        result, flags = compose_variable(arr, valid, known, channel(i, arr), domain, near_any, spatial, like,
                                          clip=clip, cf_rule=cf_rule, label=job.label, window=window)
        filled_list.append(result)
        flag_list.append(flags)
        if job.uncertainty:
            model_sigma = channel(len(arrays) + i, arr)
            if job.distances is not None:  # times the card's factor at each pixel's distance to data
                model_sigma = uncertainty.distance_scaled(model_sigma, valid, spatial, job.distances)
            sigma_list.append(sigma_variable(result, valid, flags, model_sigma, like, job.label))
    return filled_list, flag_list, (sigma_list if job.uncertainty else None)


def inpaint(obj, model=None, *, variables=None, mask=None, domain="auto", dims=None, flags=True,
            clip=0.1, device="auto", precision="auto", tile=None, halo=None, batch_size=None,
            periodic=None, progress=False, compile="auto", nan_policy="propagate", threads=None,
            context=None, time_window=0, uncertainty=False):
    """Fill the gaps of ``obj`` with a gap filler (by default the bundled ``fill-context``); valid values stay bit-identical.

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
        sample observes and that is wide is outside: in a scene or up to 3 samples, a region with
        a pixel 6 or more pixels from every observed pixel (the sea around a country, space
        around a reprojected disk) that reaches the scene's edge (within 16 pixels); in a series
        of 4 or more samples, one with a pixel 3 or more pixels from them anywhere, and any that
        touches the edge (never observed in a whole series: land); a global grid's first and
        last longitudes count as edges too; in a scene, a straight dropout of up to 32 rows
        (columns) missing end to end inside it is a gap. Narrow gaps joined to it are outside
        only within 4 pixels of its wide part. Scan lines, clouds and other gaps inside a scene
        are filled. The rule reads the valid mask once (also for lazy input); ``domain=None``
        skips it.
    flags : Dataset only: add ``<var>_inpainted`` (0 valid, 1 filled, 2 unfillable: no valid input
        within the model's reach, 3 outside domain, 4 the model returned NaN/inf there, with an
        ``XdlWarning``); its ``_FillValue`` -1 marks a region of a store never written.
    clip : keep fills within the valid values' range of the same sample (each time step's whole
        field), widened by this share of that range (default 0.1); None lets the model extrapolate.
        Whatever ``clip`` says, fills stay within the CF ``valid_range``/``valid_min``/``valid_max``
        (under ``mask=``, widened to the valid values the mask admits beyond it, no further) and
        never cross zero in a sample whose valid values are all >= 0 (or all <= 0).
        Without ``mask=``, an ``XdlWarning`` says when the CF rule drops more than 1% of the finite
        values (lazy input: when the result is computed).
    Outputs hold decoded values: packed ``valid_*`` attributes are converted to decoded units and
    the output's dtype, and packing attributes (scale_factor, add_offset, _Unsigned) are dropped.
    device, precision, tile, halo, batch_size, periodic, progress, compile, nan_policy, threads : engine
        options, as in ``predict`` (``progress`` shows a bar when xdl computes an in-memory input;
        ``nan_policy`` matters only for a gap filler that takes no mask).
    context : Dataset only: variables the model sees beside each filled one (co-located bands,
        levels, a static 2-D field such as orography, broadcast over time). Inputs only: never
        modified, flagged or filled; their own gaps are allowed (CF valid mask; NaN is missing).
        They must be on the variables' grid (same spatial dims and coordinates).
    time_window : k > 0 adds each filled variable at the time steps t-k .. t-1, t+1 .. t+k (by
        index along its time dim, whatever the coordinate; missing beyond the ends) as inputs.
        Results do not depend on the chunking along time either. Needs a context model (its card's
        ``context``: a model fit with one context refuses another with an InputError naming both);
        k is at most the card's limit (``fill-context``: 3).
    uncertainty : add ``<var>_sigma``, the standard error of each fill (same units and dtype): 0
        where the input is valid, the model's calibrated sigma where it filled (flag 1; times the
        card's factor at the pixel's distance to valid data, when the card has ``distance_bins``:
        :mod:`xdl.uncertainty`), NaN
        elsewhere; CF ``standard_name`` "<standard_name> standard_error" and ``long_name``; listed
        in the variable's ``ancillary_variables``. A DataArray input then returns a Dataset
        (value, sigma and flags). Needs a model with a sigma output (card ``uncertainty``).

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
    model = resolve_model(model, default=pretrained.default_for(context, time_window, uncertainty))
    spec = engine_spec(model, halo=check_halo(halo))
    if clip is not None and (isinstance(clip, (bool, np.bool_)) or not isinstance(clip, (int, float, np.number))
                             or not np.isfinite(clip) or clip < 0):
        raise InputError(f"clip={clip!r}: give a share >= 0 of the sample's valid range to allow beyond it "
                         "(0.1, the default, widens it by 10%), or None to let the model extrapolate.")
    if not spec.fills_gaps:
        raise InputError(f"model {model_label(model)!r} does not fill gaps (its card says fills_gaps=False); "
                         "use predict() for it, or fit a 'fill-unet'.")
    if isinstance(domain, str) and domain != "auto":
        raise InputError(f"domain={domain!r}: give 'auto', None (fill everywhere), or a boolean DataArray "
                         "(True where gaps may be filled, e.g. ds.land == 0).")
    if not isinstance(obj, (xr.Dataset, xr.DataArray)):
        raise InputError(f"inpaint works on xarray Dataset or DataArray objects, not {type(obj).__name__}.")
    if context and isinstance(obj, xr.DataArray):
        raise InputError(f"context={context!r} names Dataset variables: call inpaint on the Dataset that holds "
                         f"{obj.name!r} and them (ds.dl.inpaint(variables=[{str(obj.name)!r}], context=...)).")
    job = _make_job(obj, model, spec, context, time_window, uncertainty,
                    (device, precision, tile, batch_size, periodic, compile, nan_policy, threads))
    if isinstance(obj, xr.DataArray):
        return _inpaint_dataarray(obj, model, spec, job, mask, domain, dims, clip, progress)
    return _inpaint_dataset(obj, model, spec, job, variables, mask, domain, dims, flags, clip, progress)


def _make_job(obj, model, spec, context, time_window, want_sigma, options) -> _Job:
    """The model the engine runs, wrapped with the context channels' ``info`` when there are any."""
    label = model_label(model)
    names, k = check_request(model, label, context, time_window, spec.in_channels)
    # The calibration for what the model is given, where the card has one (None: no sigma).
    scale = uncertainty.sigma_scale(model, uncertainty.input_kind(names, k))
    if want_sigma:
        uncertainty.require_sigma(scale, label)
    if scale is not None and spec.out_channels != 2 * spec.in_channels:
        raise ModelError(f"model {label!r} gives a sigma (its card has 'uncertainty') but returns {spec.out_channels} "
                         f"channel(s) for {spec.in_channels} variable(s); a sigma model returns the means, then the "
                         "sigmas. Fix its card.")
    distances = uncertainty.distance_calibration(model) if want_sigma else None
    if not names and not k:
        return _Job(model, spec, RunOptions.build(spec, *options), label, sigma_scale=scale, uncertainty=bool(want_sigma),
                    distances=distances)
    request = ContextRequest(obj if isinstance(obj, xr.Dataset) else xr.Dataset(), names, k)  # a DataArray: k only
    wrapped, key = context_model(model, spec, request.info(spec.in_channels), model_key(model))
    run_spec = engine_spec(wrapped)
    return _Job(wrapped, run_spec, RunOptions.build(run_spec, *options), label, key=key, sigma_scale=scale,
                request=request, uncertainty=bool(want_sigma), distances=distances)


def _groups(names: list[str], spec) -> list[list[str]]:
    if spec.in_channels == 1:
        return [[n] for n in names]
    if len(names) != spec.in_channels:
        raise InputError(f"the model fills {spec.in_channels} variables together ({spec.inputs}); "
                         f"pass variables= with {spec.in_channels} names, got {names}.")
    return [in_card_order(spec.inputs, names)]


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


def _history(model, job, names=None) -> str:
    line = f"inpaint model={model_label(model)} ({model_key(model)[:12]})" + ("" if names is None else f" variables={names}")
    if job.request is not None:
        line += f" context={job.request.names} time_window={job.request.time_window}"
    return line + (" uncertainty=True" if job.uncertainty else "")


def _attach(out, result, flag, sigma, flags: bool) -> list:
    """Put ``result`` (and its flag and sigma variables, linked by ``ancillary_variables``) in
    ``out``; returns the names put."""
    name = str(result.name)
    out[name] = result
    put = [name]
    for extra, wanted in ((flag, flags), (sigma, sigma is not None)):
        if wanted:
            out[extra.name] = extra
            put.append(str(extra.name))
            uncertainty.link(out[name].attrs, str(extra.name))  # a second pass over xdl's own output: once
    return put


def _refuse_name_clashes(ds, names, context, flags: bool, sigma: bool) -> None:
    """The variables a fill adds (``<var>_inpainted``, ``<var>_sigma``) may replace only those an
    earlier xdl fill of the same variable left, never the user's own, a context field or a target."""
    for name in names:
        added = []  # (name, what it is, whether an earlier xdl fill wrote it, how to avoid the clash)
        if flags:
            flag = f"{name}_inpainted"
            added.append((flag, "flags", flag in ds.variables and written_by_xdl(ds[flag]), "pass flags=False"))
        if sigma:
            added.append((uncertainty.sigma_name(name), "standard error", uncertainty.stale_sigma(ds, name) is not None,
                          "leave uncertainty off"))
        for extra, kind, ours, advice in added:
            if extra in ds.variables and (extra in context or extra in names or not ours):
                role = ("a context variable" if extra in context else "a variable to fill" if extra in names
                        else "a variable of this dataset that xdl did not write")
                raise InputError(f"the fill of {name!r} adds its {kind} as {extra!r}, which is already {role}: "
                                 f"rename it first (ds.rename({{{extra!r}: ...}})) or {advice}.")


def _dataarray_names(arr, sigma: bool):
    """``arr`` named for the fill (a nameless one ``data``), after refusing names that clash with
    its own coordinates: its Dataset of value, flags and sigma (``uncertainty=True``) failed with
    xarray's MergeError (probe)."""
    named = arr if arr.name is not None else arr.rename("data")
    if sigma:
        name = str(named.name)
        for added in (name, f"{name}_inpainted", uncertainty.sigma_name(name)):
            if added in arr.coords:
                raise InputError(f"uncertainty=True returns {name!r}, its flags and its sigma as a Dataset, and "
                                 f"{added!r} is already a coordinate of the DataArray: name it otherwise "
                                 f"(da.rename('{name}_values')) or drop that coordinate.")
    return named


def _check_sequences(arrays, job, dims) -> None:
    """With ``time_window``: each target's sequence dim, or its InputError, before any work (the
    CLI ran the domain pass, and printed its warning, before refusing a field without time; probe)."""
    if job.request is not None and job.request.time_window:
        for arr in arrays:
            layout.sequence_dim(arr, tuple(spatial_dims_for(arr, job.spec, dims)))


def _inpaint_dataarray(arr, model, spec, job, mask, domain, dims, clip, progress):
    nameless = arr.name is None
    arr = _dataarray_names(arr, job.uncertainty)
    _check_sequences([arr], job, dims)
    arr = cf.unsigned_view(arr)
    _check_units(arr, spec)
    valid = observed_mask(arr, arr, mask)  # the CF rule; a warning when its link names flags it lacks
    dom = _resolve_domain(domain, arr, arr, valid, dims)
    filled, flag_arrays, sigmas = _fill_one([arr], [valid], dom, job, dims, clip, cf_rule=mask is None)
    lazy = isinstance(arr.data, da.Array)
    if sigmas is None:
        result = filled[0] if not nameless else filled[0].rename(None)  # a nameless input stays so
        result.attrs = cf.append_history(result.attrs, _history(model, job))
        return finish(projection.with_mapping_variable(result, arr), lazy, progress)
    # uncertainty=True: value, sigma and flags together, as a Dataset.
    flag_arrays[0].name = f"{arr.name}_inpainted"
    out = xr.Dataset()
    _attach(out, filled[0], flag_arrays[0], sigmas[0], True)
    cf.drop_absent_ancillaries(out)  # the input's own flag (GOES DQF) is not in this Dataset
    out.attrs = cf.append_history({}, _history(model, job, [str(arr.name)]))
    return finish(projection.with_mapping_variable(out, arr), lazy, progress)


def _series_only(ds, names, spec, dims, job) -> list:
    """The default variables a ``time_window`` fill can take: all but static fields (no dim besides
    the spatial ones). A static field beside them (orography) failed the whole call, its error
    advising a time coordinate (probe); it is left out with a warning, unless nothing else is left."""
    if job.request is None or not job.request.offsets:
        return names

    def is_static(name):  # no dim besides the spatial ones (a field with others gets sequence_dim's error)
        return set(ds[name].dims) <= set(spatial_dims_for(ds[name], spec, dims))

    series = [n for n in names if not is_static(n)]
    if not series or len(series) == len(names):
        return names
    static = [n for n in names if n not in series]
    warnings.warn(f"{', '.join(map(str, static))}: no time dim, so time_window cannot fill it and it is left as it "
                  f"is; fill it in a call without time_window, or pass it as context=.", XdlWarning, stacklevel=5)
    return series


def _inpaint_dataset(ds, model, spec, job, variables, mask, domain, dims, flags, clip, progress):
    context = job.request.names if job.request is not None else []
    if variables is None:
        names = (list(spec.inputs) if spec.in_channels > 1 and spec.inputs
                 else [n for n in eligible_variables(ds, spec, dims, floats_only=True) if n not in context])
        if not names:
            raise InputError(f"no float variable with spatial dims to fill in this dataset ({list(ds.data_vars)}); "
                             "pass variables=[...] and dims=(...).")
        names = _series_only(ds, names, spec, dims, job)
        if mask is not None and len(names) > 1:
            # One band's quality flags as the mask of every band: the others' good pixels were
            # replaced, silently (probe: mask=ds.C13_DQF == 0 refilled 600 good C07 pixels).
            made_from = f" (made from {mask.name!r})" if getattr(mask, "name", None) is not None else ""
            warnings.warn(f"mask={made_from} is applied to every variable filled: "
                          f"{', '.join(map(str, names))}; their values where it is False are replaced. Pass "
                          "variables=[...] to fill only those it describes.", XdlWarning, stacklevel=4)
    else:
        names = [variables] if isinstance(variables, str) else list(variables)
    missing = [n for n in names if n not in ds.data_vars]
    if missing:
        raise InputError(f"variables {missing} not in the dataset; it has {list(ds.data_vars)}.")
    for name in names:
        kind = cf.code_kind(ds[name])
        if kind is not None:  # bit words interpolated into non-integer floats (probe: GHRSST l2p_flags)
            raise InputError(f"variable {name!r} is {kind} (CF): its values are codes, not a field to fill. Fill "
                             "the data variables it describes instead (variables=[...]; CLI --var); to hide "
                             f"pixels by it, pass a mask (e.g. mask=ds[{name!r}] == 0).")
    if job.request is not None:
        job.request.check_targets(names)
    _check_sequences([ds[n] for n in names], job, dims)
    _refuse_name_clashes(ds, names, context, flags, job.uncertainty)
    out = ds.copy()
    lazy = False
    made = []  # the variables this fill writes: the rest of the Dataset is returned as it came
    for group in _groups(names, spec):
        arrays = [cf.unsigned_view(ds[n]) for n in group]
        for a in arrays:
            _check_units(a, spec)
        lazy = lazy or any(isinstance(a.data, da.Array) for a in arrays)
        valids = [observed_mask(ds, a, mask) for a in arrays]
        # One domain per group (a multi-variable model fills its variables on one grid): the first's.
        dom = _resolve_domain(domain, ds, arrays[0], valids[0], dims)
        filled, flag_arrays, sigmas = _fill_one(arrays, valids, dom, job, dims, clip, cf_rule=mask is None)
        for i, (name, result, flag) in enumerate(zip(group, filled, flag_arrays)):
            flag.name = f"{name}_inpainted"
            stale = uncertainty.stale_sigma(out, name) if sigmas is None else None
            if stale is not None:  # an earlier pass's sigma: these fills are new
                out = out.drop_vars(stale)
                warnings.warn(f"{stale!r} (the standard error of an earlier fill of {name!r}) is dropped: this "
                              "pass fills those gaps anew. Pass uncertainty=True for the new fills' sigma.",
                              XdlWarning, stacklevel=4)
            made += _attach(out, result, flag, None if sigmas is None else sigmas[i], flags)
    cf.drop_absent_ancillaries(out, names)  # a filled variable names only what the output holds
    out.attrs = cf.append_history(ds.attrs, _history(model, job, names))
    return finish(out, lazy, progress, only=made)
