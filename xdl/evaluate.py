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
from pathlib import Path

import numpy as np
import xarray as xr

from . import baselines as _baselines
from . import masks, metrics
from .conventions import domains
from .errors import InputError

__all__ = ["evaluate", "METRICS", "MODEL_METHOD"]

METRICS = ("rmse", "mae", "bias", "corr", "std_ratio", "n", "seconds")
MODEL_METHOD = "model"  # the method label of the learned model; its name is in attrs["model"]

_METRIC_ATTRS = {
    "rmse": "root-mean-square error on the hidden pixels (units of the variable)",
    "mae": "mean absolute error on the hidden pixels (units of the variable)",
    "bias": "mean of (estimate - truth) on the hidden pixels (units of the variable)",
    "corr": "Pearson correlation of estimate and truth on the hidden pixels",
    "std_ratio": "std(estimate) / std(truth) on the hidden pixels; below 1 = smoothed",
    "n": "number of hidden pixels scored (finite truth and estimate)",
    "seconds": "wall time of the fill, in seconds",
}


def _gap_specs(gaps, observed) -> list[tuple[str, object]]:
    """``gaps`` as a list of (label, spec): spec is a kind name, "observed" or a hide-mask."""
    items = list(gaps) if isinstance(gaps, (list, tuple)) else [gaps]
    if not items:
        raise InputError("gaps= is empty; give a kind such as 'scanlines', a list of kinds "
                         f"({', '.join(masks.KINDS)}, 'observed') or a bool array of pixels to hide.")
    out, seen = [], set()
    for i, item in enumerate(items):
        if isinstance(item, str):
            if item != "observed" and item not in masks.KINDS:
                raise InputError(f"unknown gap kind {item!r}; use one of {', '.join(masks.KINDS)}, "
                                 "'observed' (with observed=<bool DataArray, True = valid>) or a bool array "
                                 "of the pixels to hide.")
            if item == "observed" and observed is None:
                raise InputError("gaps='observed' copies the gap pattern of real observations: pass "
                                 "observed=<bool DataArray or array (..., y, x), True where observed>.")
            label = item
        elif isinstance(item, (np.ndarray, xr.DataArray)):
            label = "custom" if "custom" not in seen else f"custom{i}"
        else:
            raise InputError(f"gaps entry {item!r} is neither a gap kind name nor a bool array of the "
                             f"pixels to hide; kinds: {', '.join(masks.KINDS)}, 'observed'.")
        if label in seen:
            raise InputError(f"gap kind {label!r} is listed twice in gaps={gaps!r}; list each kind once.")
        seen.add(label)
        out.append((label, item))
    return out


def _variables(obj, variables, spec, dims) -> list[xr.DataArray]:
    from .predict import eligible_variables

    if isinstance(obj, xr.DataArray):
        return [obj if obj.name is not None else obj.rename("data")]
    if not isinstance(obj, xr.Dataset):
        raise InputError(f"evaluate works on xarray Dataset or DataArray objects, not {type(obj).__name__}.")
    if variables is None:
        names = eligible_variables(obj, spec, dims, floats_only=True)
        if not names:
            raise InputError(f"no float variable with spatial dims to evaluate in this dataset "
                             f"({list(obj.data_vars)}); pass variables=[...] and dims=(...).")
    else:
        names = [variables] if isinstance(variables, str) else list(variables)
    missing = [n for n in names if n not in obj.data_vars]
    if missing:
        raise InputError(f"variables {missing} not in the dataset; it has {list(obj.data_vars)}.")
    return [obj[n] for n in names]


def _broadcast_bool(value, arr: xr.DataArray, what: str) -> np.ndarray:
    """A numpy bool array of ``arr``'s shape (and dim order) from a DataArray/ndarray mask."""
    from .conventions.validity import as_mask

    if isinstance(value, np.ndarray) and value.shape != arr.shape:
        # A (y, x) array for a field with leading dims: the same pixels in every sample.
        if value.shape == arr.shape[-2:]:
            value = xr.DataArray(value, dims=arr.dims[-2:])
    m = as_mask(value, arr, what)
    return np.asarray(m.broadcast_like(arr).transpose(*arr.dims).values, dtype=bool)


def _hidden(spec, shape, fraction, rng, arr, observed) -> np.ndarray:
    """True where pixels are to be hidden (before intersecting with the valid & domain pixels)."""
    if isinstance(spec, str) and spec == "observed":
        src = observed
        if isinstance(src, xr.DataArray):
            src = src.values
        src = np.asarray(src)
        if src.dtype != bool:
            src = src.astype(bool) if not np.issubdtype(src.dtype, np.floating) else np.nan_to_num(src) != 0
        return ~masks.observed(src, shape, rng)
    if isinstance(spec, str):
        return ~masks.make(spec, shape, fraction, rng)
    return _broadcast_bool(spec, arr, "gaps")


def _hide(gspec, shape, fraction, key, arr, observed, eligible) -> np.ndarray:
    """The pixels to hide: the gap pattern restricted to the valid pixels inside the domain.

    Generated kinds are drawn for ``fraction`` of all pixels; where the data already have large
    gaps (clouds over cloud), fewer valid pixels fall under them, so the draw is repeated with a
    corrected fraction until the share of *valid* pixels hidden is near ``fraction``. Each draw
    restarts the same random stream (one per seed, variable and gap kind: adding a kind never
    changes another's gaps), so a cloud field keeps its shape and only its threshold moves.
    """
    n = max(int(eligible.sum()), 1)
    target, best = fraction, None
    for _ in range(6):
        rng = np.random.default_rng(key)
        hidden = _hidden(gspec, shape, target, rng, arr, observed) & eligible
        share = hidden.sum() / n
        if best is None or abs(share - fraction) < abs(best[1] - fraction):
            best = (hidden, share)
        if not isinstance(gspec, str) or gspec == "observed" or abs(share - fraction) <= 0.05 * fraction:
            break
        if share <= 0:
            target = min(1.0, target * 2)
        else:
            target = float(min(1.0, target * fraction / share))
    return best[0]


def _fill_model(truth, keep, dom, model, arr, dims, run):
    from .inpaint import inpaint

    gappy = arr.copy(data=truth)
    dom_da = None if dom is None else arr.copy(data=dom)
    start = time.perf_counter()
    out = inpaint(gappy, model, mask=arr.copy(data=keep), domain=dom_da, dims=dims, **run)
    values = np.asarray(out.transpose(*arr.dims).values)
    return values, time.perf_counter() - start


def _fill_baseline(fn, truth, keep, dom):
    start = time.perf_counter()
    values = fn(truth, keep, domain=dom)
    return np.asarray(values), time.perf_counter() - start


def evaluate(obj, model=None, *, variables=None, gaps="scanlines", fraction=0.1,
             baselines=("linear", "biharmonic"), mask=None, domain="auto", seed=0, plot=None,
             dims=None, observed=None, **run) -> xr.Dataset:
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
    model : None (the bundled default), a path, a bundled name or an ``xdl.Model`` that fills gaps.
    variables : Dataset variables to score (default: every float variable with spatial dims).
    gaps : a gap kind (``"scanlines"``, ``"blocks"``, ``"clouds"``, ``"irregular"``), a list of
        them, ``"observed"`` (the gap pattern of ``observed=``, a bool array, True where real data
        were observed; ``fraction`` is then unused), or a bool DataArray/array, True at the pixels
        to hide (shape ``(y, x)`` or the variable's).
    fraction : share of the valid pixels (inside ``domain``) hidden by the generated gap kinds; the
        achieved share is the ``hidden_share`` coordinate.
    baselines : names from :data:`xdl.baselines.BASELINES` (``"linear"``, ``"nearest"``,
        ``"biharmonic"``); ``()`` scores the model alone.
    mask : True where a value is valid (default: CF rules). Only valid pixels are hidden and scored.
    domain : where gaps may be filled (``"auto"``: per variable, as ``inpaint``'s: the Earth disk,
        land/sea masks and flags, swath footprints, wide never-observed regions); pixels outside
        are never hidden.
    seed : the gap patterns depend only on ``seed``, the variable's position and the gap kind.
    plot : a PNG path: one figure per variable and gap kind (first sample): truth, gaps, each
        method's fill and its error on the hidden pixels. With several variables or gap kinds the
        files are ``<stem>_<variable>_<gaps>.png``; their paths are in ``attrs["plots"]``.
    dims : the spatial dims ``(y, x)`` when they cannot be found from CF attributes or names.
    **run : engine options for the model (``device``, ``precision``, ``tile``, ``batch_size``, ...).

    Returns
    -------
    xr.Dataset with dims ``(variable, gaps, method)`` (``method`` = ``"model"`` then the baselines)
    and variables ``rmse``, ``mae``, ``bias``, ``corr``, ``std_ratio``, ``n`` and ``seconds``;
    coordinates ``units`` (per variable) and ``hidden_share``; attrs ``model``, ``seed``,
    ``fraction``. All but ``seconds`` are identical for the same inputs and ``seed``.

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
    from .engine.spec import engine_spec

    model = resolve_model(model, default=pretrained.DEFAULT_INPAINT)
    spec = engine_spec(model)
    if not spec.fills_gaps:
        raise InputError(f"model {model_label(model)!r} does not fill gaps (its card says fills_gaps=False); "
                         "evaluate scores gap fillers such as a trained 'fill-unet' or 'pconv-unet'.")
    try:
        fraction = float(fraction)
    except (TypeError, ValueError):
        raise InputError(f"fraction must be a number in (0, 1], got {fraction!r}") from None
    if not 0.0 < fraction <= 1.0:
        raise InputError(f"fraction must be in (0, 1] (the share of valid pixels to hide), got {fraction!r}")
    baselines = [baselines] if isinstance(baselines, str) else list(baselines or ())
    fillers = {name: _baselines.get(name) for name in baselines}
    gap_specs = _gap_specs(gaps, observed)
    arrays = _variables(obj, variables, spec, dims)
    methods = [MODEL_METHOD] + baselines
    auto = isinstance(domain, str) and domain == "auto"
    if auto:
        domain = None  # resolved per variable below: what the file says about where each one lives
    elif isinstance(domain, str):
        raise InputError(f"domain={domain!r}: give 'auto', None, or a bool DataArray (True = fillable).")

    shape3 = (len(arrays), len(gap_specs), len(methods))
    values = {k: np.full(shape3, np.nan) for k in METRICS}
    values["n"] = np.zeros(shape3, dtype=np.int64)
    share = np.full(shape3[:2], np.nan)
    plots = []
    for iv, raw in enumerate(arrays):
        var_domain = domain
        if auto:
            from .conventions.validity import valid_mask

            var_domain = domains.auto_domain(obj, raw, valid=valid_mask(raw, mask), dims=dims)
        arr, truth, valid, dom = _prepare(raw, spec, mask, var_domain, dims)
        eligible = valid if dom is None else valid & dom
        for ig, (label, gspec) in enumerate(gap_specs):
            hidden = _hide(gspec, truth.shape, fraction, (int(seed), iv, ig), arr, observed, eligible)
            share[iv, ig] = hidden.sum() / max(int(eligible.sum()), 1)
            keep = valid & ~hidden
            fills = {}
            fills[MODEL_METHOD], values["seconds"][iv, ig, 0] = _fill_model(truth, keep, dom, model, arr, dims, run)
            for im, name in enumerate(baselines, start=1):
                fills[name], values["seconds"][iv, ig, im] = _fill_baseline(
                    fillers[name], truth.astype(np.result_type(truth.dtype, np.float32)), keep, dom)
            for im, name in enumerate(methods):
                s = metrics.scores(truth, fills[name], hidden)
                for k in METRICS[:-1]:
                    values[k][iv, ig, im] = s[k]
            if plot is not None:
                many = len(arrays) > 1 or len(gap_specs) > 1
                plots.append(_plot(plot, str(arr.name), label, many, truth, keep, hidden, fills,
                                   origin=_origin(arr)))

    names = [str(a.name) for a in arrays]
    coords = {
        "variable": names,
        "gaps": [g[0] for g in gap_specs],
        "method": methods,
        "units": ("variable", [str(a.attrs.get("units", "")) for a in arrays]),
        "hidden_share": (("variable", "gaps"), share,
                         {"long_name": "share of the valid pixels inside the domain hidden and scored"}),
    }
    data = {k: (("variable", "gaps", "method"), values[k], {"long_name": _METRIC_ATTRS[k]}) for k in METRICS}
    attrs = {"model": model_label(model), "seed": int(seed), "fraction": fraction,
             "baselines": ",".join(baselines), "scored": "hidden pixels that were valid in the input only"}
    if plots:
        attrs["plots"] = [os.fspath(p) for p in plots]
    return xr.Dataset(data, coords=coords, attrs=attrs)


def _prepare(raw: xr.DataArray, spec, mask, domain, dims):
    """Move the spatial dims last and load: (arr, truth, valid, domain) with numpy arrays."""
    from .conventions.validity import as_mask, valid_mask
    from .predict import spatial_dims_for

    spatial = spatial_dims_for(raw, spec, dims)
    lead = [d for d in raw.dims if d not in spatial]
    arr = raw.transpose(*lead, *spatial)
    if not np.issubdtype(arr.dtype, np.floating):
        # Integer fields (packed counts) are scored in float; CF rules still say what is valid.
        valid = valid_mask(arr, mask)
        arr = arr.astype(np.float32)
    else:
        valid = valid_mask(arr, mask)
    arr = arr.compute()
    valid = np.asarray(valid.broadcast_like(arr).transpose(*arr.dims).values, dtype=bool)
    truth = np.asarray(arr.values)
    truth = np.where(valid, truth, np.nan).astype(truth.dtype, copy=False)
    dom = None
    if domain is not None:
        dom = np.asarray(as_mask(domain, arr, "domain").broadcast_like(arr).transpose(*arr.dims).values, dtype=bool)
    if not valid.any():
        raise InputError(f"variable {arr.name!r} has no valid value at all: nothing to hide and score. "
                         "Check its mask, _FillValue and valid_range.")
    return arr, truth, valid, dom


def _origin(arr) -> str:
    """imshow's origin: "lower" when the row coordinate ascends (south at the bottom of a map of
    ascending latitude), "upper" otherwise (image order: descending y, GOES scan angles)."""
    ydim = arr.dims[-2]
    if ydim in arr.coords and arr.sizes[ydim] > 1:
        y = np.asarray(arr[ydim].values)
        if np.issubdtype(y.dtype, np.number) and y[-1] > y[0]:
            return "lower"
    return "upper"


def _plot(path, variable, label, many, truth, keep, hidden, fills, origin="upper") -> Path:
    """Truth | gaps | each method's fill on the top row; errors on the hidden pixels below; maps
    of the first sample (the table scores all samples), drawn with ``origin`` (see :func:`_origin`)."""
    from matplotlib.figure import Figure  # no pyplot: no global backend state, works headless

    from .plotting import draw_panels

    path = Path(path)
    if many:
        path = path.with_name(f"{path.stem}_{variable}_{label}{path.suffix or '.png'}")
    first = (0,) * (truth.ndim - 2)
    t, k, h = truth[first], keep[first], hidden[first]
    finite = t[np.isfinite(t)]
    vmin, vmax = (np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0))
    errors = {m: np.where(h, f[first] - t, np.nan) for m, f in fills.items()}
    emax = max([np.nanmax(np.abs(e)) for e in errors.values() if np.isfinite(e).any()] or [1.0]) or 1.0
    ncol = 1 + len(fills)
    fig = Figure(figsize=(3.2 * ncol, 6.2), layout="constrained")
    axes = fig.subplots(2, ncol, squeeze=False)
    panels = [(axes[0, 0], t, "truth", "viridis", vmin, vmax),
              (axes[1, 0], np.where(k, t, np.nan), f"input with {label} gaps ({h.mean():.0%} hidden)",
               "viridis", vmin, vmax)]
    for j, (m, f) in enumerate(fills.items(), start=1):
        e = errors[m]
        rmse = float(np.sqrt(np.nanmean(e ** 2))) if np.isfinite(e).any() else np.nan
        panels.append((axes[0, j], f[first], f"{m}: filled", "viridis", vmin, vmax))
        panels.append((axes[1, j], e, f"{m}: error, sample 0 RMSE {rmse:.3g}", "RdBu_r", -emax, emax))
    draw_panels(fig, panels, origin=origin, fontsize=9)
    lead = "" if truth.ndim == 2 else " (maps: sample 0; the table scores every sample)"
    fig.suptitle(f"{variable}: gap filling on hidden valid pixels{lead}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    return path
