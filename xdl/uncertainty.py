"""Per-pixel uncertainty outputs (issue #16): which models give a sigma, and the ``<var>_sigma``
variable that ``inpaint(uncertainty=True)`` and ``predict`` return beside each value.

A model gives a sigma when its card has ``"uncertainty"`` (``{"kind": "gaussian", "scale": s,
...}``: its sigma, in normalised units, times ``s``) or, for a plain module, when its ``sigma``
attribute is True; it then returns ``n`` means followed by ``n`` sigmas.

A card may also calibrate by distance to data (``"distance_bins": [d0, d1, ...]``, pixel edges,
increasing; ``"distance_scales": [f0, f1, ...]``, one per bin, the last bin open-ended). Then
``inpaint`` multiplies each filled pixel's sigma (already times ``s``) by ``f(d)``, where ``d`` is
the Euclidean distance in pixels from the pixel to the nearest valid pixel of the same variable
in the same 2-D field, capped at the last edge, and ``f`` interpolates the factors linearly
between bin centres (the last bin's centre is its edge; flat beyond the first and last centres):
a sigma that grows into large gaps without jumps at the edges. The cap makes ``d`` exact with a
halo of the cap (:func:`gap_distance`), so the result does not depend on the chunking.
``predict`` knows no gaps and gives the sigma times ``s`` only.

Example:
    >>> import numpy as np
    >>> sigma_block(np.array([True, False, False]), np.array([0, 1, 2], np.int8),
    ...             np.array([9.0, 0.5, 0.5], np.float32), dtype=np.dtype("f4")).tolist()
    [0.0, 0.5, nan]
"""

from __future__ import annotations

import math
import warnings

import dask.array as da
import numpy as np
import xarray as xr
from scipy import ndimage

from .dask_wrap import as_dask
from .errors import InputError, ModelError, XdlWarning
from .modelcard import sigma_name  # the rule lives with the card (that module imports no xarray)

__all__ = ["sigma_scale", "input_kind", "INPUT_KINDS", "require_sigma", "sigma_block", "stale_sigma", "is_fill_sigma", "sigma_attrs", "sigma_name", "FILLED",
           "distance_calibration", "gap_distance", "distance_factor", "lazy_gap_distance", "distance_scaled"]

SCIPY_SHARE = 0.05  # gap share above which scipy's transform is faster than visiting gap pixels (same numbers)
FILLED = 1  # the flag of a pixel the model filled (xdl.inpaint.FLAG_FILLED)


INPUT_KINDS = ("single", "context", "time")


def input_kind(context_names, time_window: int) -> str:
    """What the model is given beside the targets, as a card's ``scale_by_input`` names it:
    "time" (neighbouring time steps, with or without other variables), "context" (other
    variables only) or "single"."""
    return "time" if time_window else ("context" if context_names else "single")


def sigma_scale(model, kind: str | None = None) -> float | None:
    """The factor on the model's sigma output, or None when the model gives no sigma. A card may
    calibrate by what the model is given (``"scale_by_input": {"single": s1, "context": s2,
    "time": s3}``: a fill from another band can be trusted differently from one from the field
    alone): ``kind`` (see :func:`input_kind`) picks it, else ``scale``."""
    card = getattr(model, "card", None) or {}
    spec = card.get("uncertainty")
    if spec is None:
        return 1.0 if getattr(getattr(model, "module", model), "sigma", False) is True else None
    by_input = spec.get("scale_by_input") if isinstance(spec, dict) else None
    scale = spec.get("scale", 1.0) if isinstance(spec, dict) else None
    if kind is not None and isinstance(by_input, dict) and kind in by_input:
        scale = by_input[kind]
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
        raise InputError(f"the model card's uncertainty {spec!r} is not understood: it needs a 'scale' > 0 "
                         "(the factor on the model's sigma), e.g. {'kind': 'gaussian', 'scale': 1.0}.")
    return float(scale)


def require_sigma(scale: float | None, label: str) -> float:
    """``scale`` (a :func:`sigma_scale`), or an :class:`InputError` naming model ``label`` where it
    is None (the model gives no sigma)."""
    if scale is None:
        raise InputError(f"uncertainty=True but model {label!r} gives no sigma (its card has no "
                         "'uncertainty'); use a model with a sigma head (e.g. fill-unet with sigma=True, "
                         "fitted) or drop uncertainty=True.")
    return scale


def mean_channels(out_channels: int, scale: float | None, label: str) -> int:
    """How many of a model's ``out_channels`` are means: all without a sigma (``scale`` None),
    else half, the sigmas following; a sigma model with an odd count is an error (one that
    returned ``(mean, sigma)`` as a tuple, or forgot its sigma, gave an empty result: probe)."""
    if scale is None:
        return out_channels
    if out_channels < 2 or out_channels % 2:
        raise ModelError(f"model {label!r} gives a sigma (its card has 'uncertainty', or its module sigma=True) but "
                         f"returns {out_channels} channel(s): a sigma model returns its n means, then their n sigmas, "
                         "as one tensor (torch.cat([mean, sigma], 1); a tuple is read as (output, extras) and only "
                         "its first item is kept). Fix the model, or its card if it gives no sigma.")
    return out_channels // 2


def stale_sigma(ds: xr.Dataset, name: str) -> str | None:
    """The name of the ``<var>_sigma`` an earlier xdl fill of ``name`` left in ``ds`` (its long_name
    says so), or None: a new fill replaces those fills, so that sigma no longer describes them."""
    sigma = sigma_name(name)
    return sigma if sigma in ds.data_vars and is_fill_sigma(ds[sigma]) else None


def is_fill_sigma(var: xr.DataArray) -> bool:
    """Whether ``var`` is the standard error of an xdl fill (its long_name says so)."""
    return str(var.attrs.get("long_name", "")).startswith(_SIGMA_LONG_NAME.format(what=FILLED_WHAT, name=""))


def _usable(sigma: np.ndarray) -> np.ndarray:
    """Where ``sigma`` is a standard error: a positive finite number."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(sigma) & (sigma > 0)


def _warn_unusable(model, pixels: str, kept: str = "") -> None:
    # Same text from every block: Python shows it once per place under the default filters.
    warnings.warn(f"model {model!r} gave a sigma that is NaN, inf, 0 or negative for {pixels}; their sigma is "
                  f"NaN{kept}. Check the model's sigma output channels and its card's 'uncertainty' entry.",
                  XdlWarning, stacklevel=2)  # the caller is a dask task


def sigma_block(valid, flags, sigma, *, dtype, model=None):
    """One block of ``<var>_sigma``: 0 where the input was valid, the model's sigma where it
    filled the pixel (flag 1), NaN elsewhere (nothing filled: no error to give). A sigma that is
    not a positive finite number where the model filled is no standard error: NaN there, and a
    warning naming the model."""
    sigma = np.asarray(sigma).astype(dtype, copy=False)
    filled = flags == FILLED
    usable = _usable(sigma)
    if (filled & ~valid & ~usable).any():
        _warn_unusable(model, "filled pixels", " (the fills are kept)")
    filled = np.where(filled & usable, sigma, dtype.type(np.nan))
    return np.where(valid, dtype.type(0), filled).astype(dtype, copy=False)


def predicted_sigma(mean: xr.DataArray, sigma: xr.DataArray, model=None) -> xr.DataArray:
    """A predicted ``sigma`` (``predict`` of a model with a sigma output) with NaN where it is no
    standard error (NaN, inf, 0 or negative) and a warning naming the model where that is beside
    a finite mean, as :func:`sigma_block` does for fills (predict passed -2 and 0 on; probe)."""
    def block(m, s):
        s = np.asarray(s)
        usable = _usable(s)
        if (np.isfinite(m) & ~usable).any():
            _warn_unusable(model, "predicted pixels")
        return np.where(usable, s, s.dtype.type(np.nan))

    if isinstance(sigma.data, da.Array) and isinstance(mean.data, da.Array):  # both the engine's output
        return sigma.copy(data=da.map_blocks(block, mean.data.rechunk(sigma.data.chunks), sigma.data, dtype=sigma.dtype))
    return sigma.copy(data=block(np.asarray(mean.values), sigma.values))


FILLED_WHAT = "gap-filled"
_SIGMA_LONG_NAME = "standard error of the {what} {name}"  # is_fill_sigma knows xdl's fills' sigma by it


def sigma_attrs(source: xr.DataArray, what: str = FILLED_WHAT) -> dict:
    """CF attributes of the standard error of ``source`` (standard-name modifier ``standard_error``)."""
    name = source.name
    attrs = {"long_name": _SIGMA_LONG_NAME.format(what=what, name=name)}
    if "units" in source.attrs:
        attrs["units"] = source.attrs["units"]
    # A variable read without decoding (mask_and_scale=False) holds packed counts and carries its
    # scale_factor: its sigma is in the same counts, so it carries the factor too, and every reader
    # that decodes the value decodes the sigma (never the add_offset: an error has no offset).
    if source.attrs.get("scale_factor") is not None:
        attrs["scale_factor"] = abs(source.attrs["scale_factor"])
    standard_name = str(source.attrs.get("standard_name") or "").strip()
    # A name with a modifier already, or a placeholder (cfgrib writes "unknown"), takes no modifier:
    # "unknown standard_error" is no CF standard name.
    if standard_name and standard_name != "unknown" and len(standard_name.split()) == 1:
        attrs["standard_name"] = f"{standard_name} standard_error"
    return attrs


def link(attrs: dict, name: str) -> None:
    """Add ``name`` to ``attrs['ancillary_variables']`` (once)."""
    ancillary = str(attrs.get("ancillary_variables", "")).split()
    if name not in ancillary:
        ancillary.append(name)
    attrs["ancillary_variables"] = " ".join(ancillary)


def distance_calibration(model) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """``(distance_bins, distance_scales)`` of the model's card, or None (no distance calibration).
    The card was checked when the model was built (:func:`xdl.modelcard.check_card`)."""
    spec = (getattr(model, "card", None) or {}).get("uncertainty")
    if not isinstance(spec, dict) or spec.get("distance_bins") is None:
        return None
    return tuple(float(e) for e in spec["distance_bins"]), tuple(float(f) for f in spec["distance_scales"])


def gap_distance(valid, cap: float, axes=(-2, -1)) -> np.ndarray:
    """``min(d, cap)`` (float32) for every pixel of the boolean ``valid``, where ``d`` is the
    Euclidean distance in pixels to the nearest True pixel of the same 2-D field (``axes``; every
    other axis indexes fields): 0 on valid pixels, ``cap`` in a field with none. The same numbers as
    ``minimum(scipy.ndimage.distance_transform_edt(~valid), cap)`` (which it calls on fields with
    more than 5% gaps; fewer are visited one by one, 5 x faster on a CONUS scene with 3% gaps).

    >>> v = np.zeros((1, 5), bool); v[0, 0] = True
    >>> gap_distance(v, 3.0).tolist()
    [[0.0, 1.0, 2.0, 3.0, 3.0]]
    """
    valid = np.moveaxis(np.asarray(valid, bool), axes, (-2, -1))
    out = np.zeros(valid.shape, np.float32)
    for index in np.ndindex(valid.shape[:-2]):
        out[index] = _capped_distance(valid[index], cap)
    return np.moveaxis(out, (-2, -1), axes)


def _capped_distance(valid: np.ndarray, cap: float) -> np.ndarray:
    """One field of :func:`gap_distance`: the exact two-pass distance (squared distance along each
    row, then the best row within the distance found so far), capped."""
    out = np.zeros(valid.shape, np.float32)
    gaps = ~valid
    if not gaps.any():
        return out
    if not valid.any():
        return np.full(valid.shape, np.float32(cap))
    if gaps.mean() > SCIPY_SHARE:
        return np.minimum(ndimage.distance_transform_edt(gaps), cap).astype(np.float32)
    limit = int(math.ceil(cap)) + 1  # a row further than this, or this far along it, only gives >= cap
    ny, nx = valid.shape
    ys, xs, along = _row_distance(gaps, limit)
    row2 = np.zeros(valid.shape, np.int32)  # squared distance along the row: 0 on valid pixels
    row2[ys, xs] = along * along
    best = row2[ys, xs]
    todo = np.arange(ys.size)
    for k in range(1, limit + 1):
        todo = todo[best[todo] > k * k]  # rows k away give at least k^2: these pixels are done
        if todo.size == 0:
            break
        y, x = ys[todo], xs[todo]
        for other in (y - k, y + k):
            inside = (other >= 0) & (other < ny)
            t = todo[inside]
            best[t] = np.minimum(best[t], k * k + row2[other[inside], x[inside]])
    out[ys, xs] = np.minimum(np.sqrt(best.astype(np.float64)), cap)
    return out


def _row_distance(gaps: np.ndarray, limit: int):
    """Row, column and distance along the row to the nearest valid pixel (at most ``limit``) of
    every gap pixel, in row-major order, from the runs of gaps in each row."""
    ny, nx = gaps.shape
    padded = np.zeros((ny, nx + 2), np.int8)
    padded[:, 1:-1] = gaps
    rows, cols = np.nonzero(np.diff(padded, axis=1))  # each row: a run's first gap column, then the column after it
    rows, starts, ends = rows[0::2], cols[0::2], cols[1::2]
    length = ends - starts
    start, end = np.repeat(starts, length), np.repeat(ends, length)
    xs = start + (np.arange(start.size) - np.repeat(np.cumsum(length) - length, length))
    left = np.where(start > 0, xs - start + 1, limit)   # the valid pixel before the run, if any
    right = np.where(end < nx, end - xs, limit)         # the one after it
    along = np.minimum(np.minimum(left, right), limit).astype(np.int32)
    return np.repeat(rows, length), xs, along


def distance_factor(distance, bins, scales) -> np.ndarray:
    """The factor on sigma at ``distance`` pixels (float32): ``scales`` interpolated linearly between
    the bin centres (midpoints of the edges ``bins``; the last bin's centre is its edge).

    >>> distance_factor(np.array([0.0, 1.5, 3.5, 8.0, 99.0]), [0, 3, 8], [1.0, 2.0, 4.0]).tolist()
    [1.0, 1.0, 1.5, 4.0, 4.0]
    """
    bins = np.asarray(bins, np.float64)
    centres = np.append((bins[:-1] + bins[1:]) / 2, bins[-1])
    return np.interp(np.asarray(distance, np.float64), centres, np.asarray(scales, np.float64)).astype(np.float32)


def lazy_gap_distance(valid: xr.DataArray, spatial, cap: float, factors=None) -> xr.DataArray:
    """:func:`gap_distance` of ``valid`` over its ``spatial`` dims, lazily: each block with a halo of
    ``cap`` pixels, so every pixel is exact and the result the same for any chunking. Works on
    blocks of at least 2048 pixels (or 4 x the cap) a side, that the halo stays a small share.
    ``factors`` (``(bins, scales)``): the :func:`distance_factor` of the distances instead."""
    axes = tuple(valid.get_axis_num(d) for d in spatial)
    data = valid.data if isinstance(valid.data, da.Array) else as_dask(valid.data)
    halo = int(math.ceil(cap))
    side = max(2048, 4 * halo)
    work = data.rechunk({a: max(side, max(data.chunks[a])) for a in axes})
    depth = {a: (min(halo, data.shape[a] - 1) if a in axes else 0) for a in range(data.ndim)}
    fn, extra = (gap_distance, {}) if factors is None else (_factor_block, dict(bins=factors[0], scales=factors[1]))
    dist = da.map_overlap(fn, work, depth=depth, boundary="none", trim=True, dtype=np.float32,
                          meta=np.empty((0,) * data.ndim, np.float32), cap=cap, axes=axes, **extra)
    return valid.copy(data=dist.rechunk(data.chunks))


def distance_scaled(sigma: xr.DataArray, valid: xr.DataArray, spatial, calibration) -> xr.DataArray:
    """``sigma`` times the distance factor of each pixel (see the module doc), lazily."""
    bins, scales = calibration
    factor = lazy_gap_distance(valid.transpose(*sigma.dims), spatial, bins[-1], (bins, scales))
    return sigma * factor.astype(sigma.dtype)


def _factor_block(valid, cap, axes, bins, scales):
    """:func:`distance_factor` of :func:`gap_distance`, interpolated on the gap pixels only (the
    factor on valid pixels, whose sigma is 0, is that of distance 0)."""
    distance = gap_distance(valid, cap, axes)
    out = np.full(distance.shape, distance_factor(np.zeros(1), bins, scales)[0], np.float32)
    gaps = distance > 0
    out[gaps] = distance_factor(distance[gaps], bins, scales)
    return out
