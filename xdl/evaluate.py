"""``evaluate``: hide valid data behind realistic gaps, fill them, and score the fill.

The only honest test of a gap filler is on pixels whose truth is known: take the valid pixels of
a field, hide a share of them with scan-line, block, cloud or observed gap patterns, fill them with
the model and with classical baselines (:mod:`xdl.baselines`), and score each method on the hidden
pixels only (:func:`xdl.metrics.scores`). The result is a small ``xr.Dataset`` with dims
``(variable, gaps, method)``.

>>> import numpy as np, xarray as xr, xdl
>>> y, x = np.mgrid[0:48, 0:48]
>>> field = xr.DataArray((0.1 * y + 0.05 * x).astype("f4"), dims=("y", "x"), name="t")
>>> model = xdl.zoo.create("pconv-unet", in_channels=1, depth=2, base_channels=4,
...                        card={"normalization": {"kind": "per_sample"}})
>>> report = field.dl.evaluate(model, gaps=["scanlines", "blocks"], fraction=0.1)
>>> report.rmse.dims, report.method.values.tolist()
(('variable', 'gaps', 'method'), ['model', 'linear', 'biharmonic'])
>>> bool(report.rmse.sel({"method": "linear"}).max() < 1e-3)  # a plane is linear: exact
True

Select methods with a dict, ``report.sel({"method": "linear"})``: ``sel(method=...)`` is
xarray's own keyword for inexact lookups.
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

import dask
import numpy as np
import xarray as xr

from . import baselines as _baselines
from . import context_fields, hiding, masks, metrics
from . import regression_baselines as _regression
from .compose import observed_mask
from .conventions import cf, domains
from .errors import InputError, XdlWarning
from .plotting import figure_path

__all__ = ["evaluate", "METRICS", "UNCERTAINTY_METRICS", "MODEL_METHOD"]

METRICS = ("rmse", "mae", "bias", "corr", "std_ratio", "n", "seconds")
UNCERTAINTY_METRICS = metrics.UNCERTAINTY  # reported when the model gives a sigma (NaN for baselines)
MODEL_METHOD = "model"  # the method label of the learned model; its name is in attrs["model"]
_broadcast_bool = hiding.broadcast_bool  # moved to xdl.hiding; tests/test_domains.py imports it from here

_METRIC_ATTRS = {
    "rmse": "root-mean-square error on the hidden pixels (units of the variable)",
    "mae": "mean absolute error on the hidden pixels (units of the variable)",
    "bias": "mean of (estimate - truth) on the hidden pixels (units of the variable)",
    "corr": "Pearson correlation of estimate and truth on the hidden pixels",
    "std_ratio": "std(estimate) / std(truth) on the hidden pixels; below 1 = smoothed",
    "n": "number of hidden pixels scored (finite truth and estimate)",
    "seconds": "wall time of the fill, in seconds",
    "coverage1": "share of the hidden pixels with |error| <= sigma (0.683 if calibrated)",
    "coverage2": "share of the hidden pixels with |error| <= 2 sigma (0.954 if calibrated)",
    "spread_skill": "RMS(sigma) / RMSE on the hidden pixels (1 if calibrated)",
    "crps": "mean CRPS of the Gaussian N(fill, sigma) on the hidden pixels (units of the variable)",
    "crps_const": "mean CRPS with one sigma equal to the RMSE everywhere (the bar for crps)",
    "sigma_skill": "correlation of log sigma with log |error| on the hidden pixels (where the sigma "
                   "knows the errors are large; below 1 even for a perfect Gaussian sigma)",
    "tail_ratio": "95% over 68.27% quantile of |error| / sigma (1.96 for Gaussian errors; larger: "
                  "heavier tails than the sigma says)",
}


def _variables(obj, variables, spec, dims, context=None) -> list[xr.DataArray]:
    """The variables to score: ``variables``, or every float field but the ``context`` ones (as
    inpaint leaves them out: evaluate refused its own default as "listed both"; probe)."""
    from .predict import eligible_variables

    if isinstance(obj, xr.DataArray):
        return [obj if obj.name is not None else obj.rename("data")]
    if not isinstance(obj, xr.Dataset):
        raise InputError(f"evaluate works on xarray Dataset or DataArray objects, not {type(obj).__name__}.")
    if variables is None:
        inputs_only = {context} if isinstance(context, str) else set(context or ())
        names = [n for n in eligible_variables(obj, spec, dims, floats_only=True) if n not in inputs_only]
        if not names:
            raise InputError(f"no float variable with spatial dims to evaluate in this dataset "
                             f"({list(obj.data_vars)}); pass variables=[...] and dims=(...).")
    else:
        names = [variables] if isinstance(variables, str) else list(variables)
    missing = [n for n in names if n not in obj.data_vars]
    if missing:
        raise InputError(f"variables {missing} not in the dataset; it has {list(obj.data_vars)}.")
    for name in names:
        kind = cf.code_kind(obj[name])
        if kind is not None:  # as inpaint refuses it: codes interpolated were scored (probe)
            raise InputError(f"variable {name!r} is {kind} (CF): its values are codes, not a field to fill or "
                             "score; evaluate the data variables it describes instead (variables=[...]).")
    return [cf.unsigned_view(obj[n]) for n in names]


def _together(obj, arrays, spec) -> list[str] | None:
    """The variables a model that fills several at once (``in_channels`` > 1, e.g. a fill-unet fitted
    on u and v) takes together, in order: the scored ones, which must be as many; None for a model
    of one variable."""
    if spec.in_channels <= 1:
        return None
    names = [str(a.name) for a in arrays]
    if not isinstance(obj, xr.Dataset) or len(names) != spec.in_channels:
        raise InputError(f"this model fills {spec.in_channels} variables together, and evaluate was given "
                         f"{len(names)} ({names}); pass a Dataset and variables=[...] with its {spec.in_channels} "
                         "variables in the order it was fitted on.")
    return names


def _fill_model(truth, keep, dom, model, arr, dims, run, case, partners=None):
    """The model's fill (and sigma, or None) of the pixels not in ``keep``, through inpaint.
    ``partners``: for a model that fills several variables together, all of them by name (the
    others as they are, with their own gaps)."""
    from .inpaint import inpaint

    dom_da = None if dom is None else arr.copy(data=dom)
    extra = {"uncertainty": True} if case.sigma else {}
    if case.context or case.time_window:
        extra.update(context=list(case.context) or None, time_window=case.time_window)
    start = time.perf_counter()
    if case.context or partners:
        # A Dataset with the context variables (and the model's other variables); the target's
        # hidden pixels are NaN and its own validity attributes dropped, so CF rules see exactly
        # ``keep`` (the others keep their rules).
        target = xr.DataArray(np.where(keep, truth, np.nan), dims=arr.dims, coords=arr.coords,
                              attrs={k: v for k, v in arr.attrs.items() if k not in cf.VALIDITY_ATTRS},
                              name=arr.name)
        gappy = case.context_ds if case.context else xr.Dataset()
        if partners:
            gappy = gappy.assign({name: v for name, v in partners.items() if name != arr.name})
        gappy = gappy.assign({arr.name: target})
        names = list(partners) if partners else [arr.name]
        out = inpaint(gappy, model, variables=names, domain=dom_da, dims=dims, **extra, **run)
    else:
        out = inpaint(arr.copy(data=truth), model, mask=arr.copy(data=keep), domain=dom_da, dims=dims,
                      **extra, **run)
    seconds = time.perf_counter() - start
    sigma = None
    if isinstance(out, xr.Dataset):
        if case.sigma:
            sigma = np.asarray(out[f"{arr.name}_sigma"].transpose(*arr.dims).values)
        out = out[arr.name]
    return np.asarray(out.transpose(*arr.dims).values), sigma, seconds


def _fill_baseline(name, truth, keep, dom, context):
    start = time.perf_counter()
    if name in _regression.CONTEXT_BASELINES:
        values = _regression.get(name)(truth, keep, context, domain=dom)
    else:
        values = _baselines.get(name)(truth, keep, domain=dom)
    return np.asarray(values), time.perf_counter() - start


def _check_baselines(baselines, context, time_window) -> list[str]:
    with_context = bool(context) or time_window > 0
    if baselines is None:
        baselines = ("linear", "biharmonic") + (tuple(_regression.CONTEXT_BASELINES) if with_context else ())
    names = [baselines] if isinstance(baselines, str) else list(baselines or ())
    for name in names:
        if name in _regression.CONTEXT_BASELINES:
            if not with_context:
                raise InputError(f"baseline {name!r} regresses the target on its context: pass context=[...] "
                                 "and/or time_window=k, or drop it from baselines.")
        else:
            _baselines.get(name)  # raises for an unknown name
    return names

def evaluate(obj, model=None, *, variables=None, gaps="scanlines", fraction=0.1,
             baselines=None, mask=None, domain="auto", seed=0, plot=None,
             dims=None, observed=None, context=None, time_window=0, **run) -> xr.Dataset:
    """Score gap filling on valid pixels hidden behind realistic gaps, against classical baselines.

    For each variable, the valid pixels (CF rules, or ``mask=``) inside ``domain`` lose about a
    share ``fraction`` to gaps of each kind in ``gaps``; the model (through
    :func:`xdl.inpaint.inpaint`) and each baseline (:mod:`xdl.baselines`, on every 2-D field on
    its own) fill them from the pixels left, and only the hidden pixels are scored.

    The data are loaded into memory: evaluate on a sample (``ds.isel(time=slice(0, 8))``), not on
    a whole archive.

    Parameters
    ----------
    obj : Dataset or DataArray (``(..., y, x)``; leading dims are independent samples).
    model : None (the bundled default), a path, a bundled name or an ``xdl.Model`` that fills gaps;
        False: the baselines alone (no ``"model"`` method).
    variables : Dataset variables to score (default: every float variable with spatial dims).
    gaps : a gap kind (``"scanlines"``, ``"blocks"``, ``"clouds"``, ``"irregular"``), a list of
        them, ``"observed"`` (the gap pattern of ``observed=``, a bool array, True where real data
        were observed; ``fraction`` is then unused), or a bool DataArray/array, True at the pixels
        to hide (shape ``(y, x)`` or the variable's).
    fraction : share of the valid pixels (inside ``domain``), below 1, hidden by the generated gap kinds; the
        achieved share is the ``hidden_share`` coordinate.
    baselines : names from :data:`xdl.baselines.BASELINES` (``"linear"``, ``"nearest"``,
        ``"biharmonic"``) and, with context, :data:`xdl.regression_baselines.CONTEXT_BASELINES`
        (``"regression"``, ``"local_regression"``: the target regressed on the same context the
        model gets); ``()`` scores the model alone. Default: linear and biharmonic, plus both
        regressions when there is context.
    mask : True where a value is valid (default: CF rules). Only valid pixels are hidden and scored.
    domain : where gaps may be filled (``"auto"``: per variable, as ``inpaint``'s: the Earth disk,
        land/sea masks and flags, swath footprints, wide never-observed regions); pixels outside
        are never hidden.
    seed : the gap patterns depend only on ``seed``, the variable's position and the gap kind.
    plot : a PNG path: one figure per variable and gap kind (middle sample): truth, gaps, each
        method's fill and its error on the hidden pixels, and the model's sigma with its
        reliability curve when it gives one. With several variables or gap kinds the files are
        ``<stem>_<variable>_<gaps>.png``; their paths are in ``attrs["plots"]``.
    dims : the spatial dims ``(y, x)`` when they cannot be found from CF attributes or names.
    context : Dataset variables the model (and the regression baselines) get as inputs only, as
        ``inpaint(context=...)``: gaps are hidden in the scored variables alone; the context
        keeps its own gaps (CF rules).
    time_window : k > 0 also gives the scored variable's own time steps t-k..t+k (by index along
        the time dim, NaN beyond the ends, with their hidden gaps) as context.
    **run : engine options for the model (``device``, ``precision``, ``tile``, ``batch_size``, ...).

    Returns
    -------
    xr.Dataset with dims ``(variable, gaps, method)`` (``method`` = ``"model"`` then the baselines)
    and variables ``rmse``, ``mae``, ``bias``, ``corr``, ``std_ratio``, ``n`` and ``seconds``;
    when the model gives a sigma (card ``"uncertainty"``) also ``coverage1``, ``coverage2``,
    ``spread_skill``, ``crps``, ``crps_const``, ``sigma_skill`` and ``tail_ratio``
    (:func:`xdl.metrics.uncertainty_scores`; NaN for
    the baselines). Errors are in the variable's physical units, packed counts (opened with
    ``mask_and_scale=False``) times their ``scale_factor``; coordinates ``units`` (per variable) and ``hidden_share``; attrs ``model``,
    ``seed``, ``fraction``. All but ``seconds`` are identical for the same inputs and ``seed``.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xdl
    >>> ds = xr.Dataset({"sst": (("y", "x"), np.random.default_rng(0).random((40, 40)))})
    >>> model = xdl.zoo.create("pconv-unet", in_channels=1, depth=2, base_channels=4,
    ...                        card={"normalization": {"kind": "per_sample"}})
    >>> report = ds.dl.evaluate(model, gaps="blocks", baselines=("nearest",), seed=1)
    >>> report.rmse.sizes["method"], int(report.n.sel({"method": "nearest"}).item()) > 0
    (2, True)
    """
    from .models import pretrained
    from .models.resolve import model_label, resolve_model
    from .engine.spec import EngineSpec, engine_spec

    if model is False:  # the baselines alone (e.g. the bar for a model that takes no context)
        spec = EngineSpec(mode="spatial", in_channels=1, out_channels=1, size_multiple=1, halo=0,
                          takes_mask=True, fills_gaps=True)
        model_name = "none (baselines only)"
    else:
        model = resolve_model(model, default=pretrained.default_for(context, time_window))
        spec, model_name = engine_spec(model), model_label(model)
    if not spec.fills_gaps:
        raise InputError(f"model {model_name!r} does not fill gaps (its card says fills_gaps=False); "
                         "evaluate scores gap fillers such as a trained 'fill-unet' or 'pconv-unet'.")
    fraction = _check_fraction(fraction)
    seed = masks.check_seed(seed)
    gap_specs = hiding.gap_specs(gaps, observed)
    arrays = _variables(obj, variables, spec, dims, context)
    context, time_window = context_fields.check(obj, [str(a.name) for a in arrays], context, time_window)
    baselines = _check_baselines(baselines, context, time_window)
    together = None if model is False else _together(obj, arrays, spec)
    partners = {n: obj[n] for n in together} if together else None
    sigma = bool((getattr(model, "card", None) or {}).get("uncertainty"))
    methods = ([] if model is False else [MODEL_METHOD]) + baselines
    if plot is not None:
        plot = figure_path(plot)  # its format checked before any work
    if isinstance(domain, str) and domain != "auto":
        raise InputError(f"domain={domain!r}: give 'auto', None, or a bool DataArray (True = fillable).")

    scored = METRICS + (UNCERTAINTY_METRICS if sigma else ())
    shape3 = (len(arrays), len(gap_specs), len(methods))
    values = {k: np.full(shape3, np.nan) for k in scored}
    values["n"] = np.zeros(shape3, dtype=np.int64)
    share = np.full(shape3[:2], np.nan)
    plots = []
    for iv, raw in enumerate(arrays):
        var_domain = domain
        if isinstance(domain, str):  # "auto": what the file says about where this variable lives
            # Observed pixels, as inpaint reads them: an earlier xdl fill is not data here either.
            var_domain = domains.auto_domain(obj, raw, valid=observed_mask(obj, raw, mask), dims=dims)
        arr, truth, valid, dom = _prepare(obj, raw, spec, mask, var_domain, dims)
        case = context_fields.Case(obj, arr, context, time_window, sigma, dims)
        eligible = valid if dom is None else valid & dom
        for ig, (label, gspec) in enumerate(gap_specs):
            hidden = hiding.hide(gspec, truth.shape, fraction, (int(seed), iv, hiding.stream_key(label, ig)), arr,
                                 observed, eligible)
            share[iv, ig] = hidden.sum() / max(int(eligible.sum()), 1)
            keep = valid & ~hidden
            fills, fill_sigma = _fill_all(truth, keep, dom, model, arr, dims, run, case, baselines,
                                          values["seconds"][iv, ig], partners)
            for im, name in enumerate(methods):
                scores = _scores(truth, fills[name], hidden, fill_sigma if name == MODEL_METHOD else None)
                for k, v in _in_units(scores, raw).items():
                    values[k][iv, ig, im] = v
            _warn_unequal_pixels(values["n"][iv, ig], methods, str(raw.name), label)
            if plot is not None:
                plots.append(_plot(plot, arr, label, len(arrays) > 1 or len(gap_specs) > 1,
                                   truth, keep, hidden, fills, fill_sigma, eligible))

    attrs = {"model": model_name, "seed": int(seed), "fraction": fraction,
             "baselines": ",".join(baselines), "scored": "hidden pixels that were valid in the input only",
             "context": ",".join(context), "time_window": time_window}
    if plots:
        attrs["plots"] = [os.fspath(p) for p in plots]
    return _report(values, arrays, gap_specs, methods, share, attrs)


def _warn_unequal_pixels(counts, methods, name: str, gaps: str) -> None:
    """Methods scored on different pixels (a baseline leaves some hidden pixels unfilled: a step
    hidden whole, which a time window fills from its neighbours) are not compared by RMSE alone:
    the model ranked worst there while best on the pixels every method filled (probe)."""
    filled = {m: int(n) for m, n in zip(methods, counts) if np.isfinite(n)}
    if len(set(filled.values())) > 1:
        warnings.warn(f"{name!r}, {gaps}: the methods were scored on different numbers of hidden pixels "
                      f"({', '.join(f'{m} {n}' for m, n in filled.items())}): some left pixels unfilled, so their "
                      "scores are not comparable; see the n column.", XdlWarning, stacklevel=3)


def _scores(truth, fill, hidden, sigma) -> dict:
    """Every score of one method on the hidden pixels; the sigma scores when it gives a sigma."""
    s = metrics.scores(truth, fill, hidden)
    if sigma is not None:
        s.update(metrics.uncertainty_scores(truth, fill, sigma, hidden))
    return s


# Scores in the variable's units: packed counts (opened with mask_and_scale=False) are scored in
# counts, which are scale_factor units (add_offset cancels in a difference).
_SIGNED_SCORES = ("bias",)
_SCALED_SCORES = ("rmse", "mae", "crps", "crps_const")


def _in_units(scores: dict, raw: xr.DataArray) -> dict:
    """``scores`` of packed counts (``scale_factor`` in the attributes: not decoded) converted to
    the physical units the ``units`` attribute names; unchanged for decoded values."""
    if raw.attrs.get("scale_factor") is None:
        return scores
    factor, _ = _packing(raw)
    return {k: v * factor if k in _SIGNED_SCORES else v * abs(factor) if k in _SCALED_SCORES else v
            for k, v in scores.items()}


def _packing(raw: xr.DataArray) -> tuple[float, float]:
    """``(scale_factor, add_offset)`` of counts read without decoding (attributes), else (1, 0)."""
    return tuple(float(np.asarray(raw.attrs.get(k, d)).ravel()[0])
                 for k, d in (("scale_factor", 1.0), ("add_offset", 0.0)))


def _report(values, arrays, gap_specs, methods, share, attrs) -> xr.Dataset:
    coords = {
        "variable": [str(a.name) for a in arrays],
        "gaps": [g[0] for g in gap_specs],
        "method": methods,
        "units": ("variable", [str(a.attrs.get("units", "")) for a in arrays]),
        "hidden_share": (("variable", "gaps"), share,
                         {"long_name": "share of the valid pixels inside the domain hidden and scored"}),
    }
    data = {k: (("variable", "gaps", "method"), v, {"long_name": _METRIC_ATTRS[k]}) for k, v in values.items()}
    return xr.Dataset(data, coords=coords, attrs=attrs)


def _check_fraction(fraction) -> float:
    try:
        fraction = float(fraction)
    except (TypeError, ValueError):
        raise InputError(f"fraction must be a number in (0, 1), got {fraction!r}") from None
    if not 0.0 < fraction < 1.0:
        # 1 hid every valid pixel: all-NaN scores under a warning that the data had no value (probe).
        raise InputError(f"fraction must be in (0, 1) (the share of valid pixels to hide; all of them would "
                         f"leave nothing to fill from), got {fraction!r}")
    return fraction


def _fill_all(truth, keep, dom, model, arr, dims, run, case, baselines, seconds, partners=None):
    """Every method's fill of one gap pattern (``seconds`` is filled in per method); the model's sigma."""
    fills, sigma = {}, None
    if model is not False:
        fills[MODEL_METHOD], sigma, seconds[0] = _fill_model(truth, keep, dom, model, arr, dims, run, case, partners)
    work = truth.astype(np.result_type(truth.dtype, np.float32))
    fields = case.fields(np.where(keep, work, np.nan)) if baselines else []
    for im, name in enumerate(baselines, start=len(fills)):
        fills[name], seconds[im] = _fill_baseline(name, work, keep, dom, fields)
    return fills, sigma


def _prepare(obj, raw: xr.DataArray, spec, mask, domain, dims):
    """Move the spatial dims last and load: (arr, truth, valid, domain) with numpy arrays. Valid:
    :func:`~xdl.compose.observed_mask` (an earlier xdl fill's values in ``obj`` are no truth)."""
    from .conventions.validity import as_mask, range_check
    from .predict import spatial_dims_for

    spatial = spatial_dims_for(raw, spec, dims)
    lead = [d for d in raw.dims if d not in spatial]
    arr = raw.transpose(*lead, *spatial)
    valid = observed_mask(obj, arr, mask)
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float32)  # integer fields (packed counts) are scored in float; CF rules said what is valid
    # One compute for both: the valid mask is made from the same chunks (read twice before).
    arr, valid = dask.compute(arr, valid.broadcast_like(arr).transpose(*arr.dims))
    valid = np.asarray(valid.values, dtype=bool)
    truth = np.asarray(arr.values)
    truth = np.where(valid, truth, np.nan).astype(truth.dtype, copy=False)
    dom = None
    if domain is not None:
        dom = np.asarray(as_mask(domain, arr, "domain").broadcast_like(arr).transpose(*arr.dims).values, dtype=bool)
    if not valid.any():
        if mask is None:
            range_check(arr)  # a CF valid range that no value is in says why (e.g. limits of a lost packing)
        raise InputError(f"variable {arr.name!r} has no valid value at all: nothing to hide and score. "
                         "Check its mask, _FillValue and valid_range.")
    return arr, truth, valid, dom


def _plot(path, arr, label, many, truth, keep, hidden, fills, sigma, eligible) -> Path:
    """One figure per variable and gap kind (:func:`xdl.plotting.evaluation_figure`), in the
    variable's physical units like the table (packed counts unpacked: a figure of counts said
    "RMSE 2.27e+03" beside the table's 3.07 kg m-2; probe)."""
    from .plotting import evaluation_figure, image_origin

    path = Path(path)
    variable = str(arr.name)
    if many:
        path = path.with_name(f"{path.stem}_{variable}_{label}{path.suffix or '.png'}")
    scale, offset = _packing(arr)
    if (scale, offset) != (1.0, 0.0):
        truth, fills = truth * scale + offset, {m: f * scale + offset for m, f in fills.items()}
        sigma = None if sigma is None else sigma * abs(scale)
    return evaluation_figure(path, variable, label, truth, keep, hidden, fills, sigma=sigma,
                             origin=image_origin(arr), sigma_of=MODEL_METHOD, sample_dims=arr.dims[:-2],
                             eligible=eligible)
