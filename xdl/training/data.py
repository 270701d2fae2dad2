"""Training data: windows of named variables, their statistics and normalisation, batch samplers, gap generators.

Data is never loaded whole: each batch reads a few ``tile x tile`` windows with ``.isel(...).values``,
and the normalisation statistics are dask reductions (one pass for all of them).
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings

import dask
import dask.array as da
import numpy as np
import torch
import xarray as xr

from ..conventions import layout
from .. import masks as gapmasks
from ..errors import InputError
from ..modelcard import MIN_STD
from ..normalize import Normalization, sample_statistics

MIN_VALID_FRACTION = 0.1  # a window with fewer valid pixels is redrawn (up to RETRIES times)
RETRIES = 10


def as_dataset(obj, what: str, single_name: str | None = None) -> xr.Dataset:
    """``obj`` as a Dataset (a DataArray becomes one variable), or InputError naming ``what``."""
    if isinstance(obj, xr.Dataset):
        return obj
    if isinstance(obj, xr.DataArray):
        name = obj.name if obj.name is not None else (single_name or "data")
        return obj.to_dataset(name=name) if obj.name is None or obj.name == name else \
            obj.rename(name).to_dataset()
    raise InputError(f"{what} must be an xarray Dataset or DataArray, got {type(obj).__name__}.")


class Source:
    """Windows of named variables; samples are all combinations of the non-spatial dims (C order)."""

    def __init__(self, ds: xr.Dataset, names: list, dims, what: str, static_ok=()):
        first = ds[names[0]]
        self.spatial = layout.spatial_dims(first, dims)
        self.sample_dims = [d for d in first.dims if d not in self.spatial]
        self.arrays, self.static = {}, set()
        for n in names:
            a = ds[n]
            if n in static_ok and set(a.dims) == set(self.spatial) and self.sample_dims:
                self.static.add(n)  # a 2-D field (orography, land cover): the same for every sample
            elif set(a.dims) != set(first.dims) or any(a.sizes[d] != first.sizes[d] for d in a.dims):
                raise InputError(f"variable {n!r} of {what} has dims {dict(a.sizes)} but {names[0]!r} has "
                                 f"{dict(first.sizes)}; all variables must share dims and sizes "
                                 "(select or interpolate them onto one grid"
                                 + ("; a context field may also have only the spatial dims" if static_ok else "")
                                 + ").")
            if any(a.sizes[d] != first.sizes[d] for d in self.spatial):
                raise InputError(f"variable {n!r} of {what} has dims {dict(a.sizes)} but {names[0]!r} has "
                                 f"{dict(first.sizes)}; put them on one grid.")
            if not (np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.bool_)):
                raise InputError(f"variable {n!r} of {what} has dtype {a.dtype}; models need numbers. "
                                 "Convert it or choose another variable.")
            self.arrays[n] = a.transpose(*([] if n in self.static else self.sample_dims), *self.spatial)
        self.sample_shape = tuple(first.sizes[d] for d in self.sample_dims)
        self.n_samples = int(np.prod(self.sample_shape)) if self.sample_shape else 1
        self.H, self.W = (int(first.sizes[d]) for d in self.spatial)
        self.sizes = {str(k): int(v) for k, v in first.sizes.items()}
        self.attrs = ds.attrs
        if self.n_samples == 0 or self.H == 0 or self.W == 0:
            raise InputError(f"no valid data: {what} is empty ({dict(first.sizes)}).")

    def fingerprint(self) -> str:
        """A short hash of what the source holds: its sizes, coordinates, and the middle row of its
        first and last samples (a small read). A resumed fit compares it, so a checkpoint of other
        data (``tcw * 0.5 + 3`` on the same grid, a shorter series) is refused, not continued."""
        digest = hashlib.sha256(json.dumps(self.sizes, sort_keys=True).encode())
        for name, a in self.arrays.items():
            digest.update(name.encode())
            for d in a.dims:
                if d in a.coords:
                    values = np.asarray(a[d].values)
                    digest.update(repr(values.tolist()).encode() if values.dtype == object
                                  else np.ascontiguousarray(values).tobytes())
            for sample in sorted({0, self.n_samples - 1}):
                where = {} if name in self.static else self._sel(sample)
                row = np.asarray(a.isel(where).isel({self.spatial[0]: self.H // 2}).values, np.float64)
                digest.update(np.ascontiguousarray(row).tobytes())
        return digest.hexdigest()[:16]

    def _sel(self, sample: int) -> dict:
        if not self.sample_shape:
            return {}
        idx = np.unravel_index(int(sample), self.sample_shape)
        return {d: int(i) for d, i in zip(self.sample_dims, idx)}

    def load(self, names, sample, y0, x0, th, tw) -> np.ndarray:
        """The ``(C, th, tw)`` float32 window of ``names`` at ``(y0, x0)`` of one sample."""
        sel = self._sel(sample)
        sel[self.spatial[0]] = slice(int(y0), int(y0) + th)
        sel[self.spatial[1]] = slice(int(x0), int(x0) + tw)
        return np.stack([np.asarray(self.arrays[n].isel({d: i for d, i in sel.items() if d in self.arrays[n].dims})
                                    .values, dtype=np.float32) for n in names])

    def stats(self, names, x0=0, x1=None):
        """Lazy ``(count, mean, std)`` per (sample, channel) over the field's valid pixels in ``[x0, x1)``."""
        out = []
        for n in names:
            a = self.arrays[n]
            if x0 != 0 or (x1 is not None and x1 != self.W):
                a = a.isel({self.spatial[1]: slice(x0, x1)})
            if not isinstance(a.data, da.Array):
                # One chunk per few samples, whole fields: lazily indexed files are not read at once.
                a = a.chunk({**{d: "auto" for d in self.sample_dims if d in a.dims}, **{d: -1 for d in self.spatial}})
            # Mean and std as the engine takes them (xdl.normalize.sample_statistics: outliers fenced,
            # float64, one block per sample), so a model trains on what inference will give it.
            moments = sample_statistics(a.data[..., None, :, :], 2, raw_std=True)[..., 0, 0, :]
            triple = (da.isfinite(a.data).sum(axis=(-2, -1)), moments[..., 0], moments[..., 1])
            if n in self.static:  # one field for all samples
                triple = tuple(da.broadcast_to(t, self.sample_shape) for t in triple)
            out.append(triple)
        return out


def compute_stats(lazy: dict) -> dict:
    """Compute ``{key: [(count, mean, std) per name]}`` in one dask pass; each array flat over samples."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN fields: nanmean warns, we mask them
        (computed,) = dask.compute(lazy)
    return {k: [tuple(np.asarray(x, np.float64).reshape(-1) for x in triple) for triple in v]
            for k, v in computed.items()}


def combine(triples, samples) -> tuple[float, float, int]:
    """Mean, std and count over several samples from per-sample (count, mean, std) (exact, stable).

    >>> t = (np.array([2, 2]), np.array([0.0, 2.0]), np.array([0.0, 0.0]))
    >>> combine(t, np.array([0, 1]))
    (1.0, 1.0, 4)
    """
    c, m, s = (t[samples] for t in triples)
    n = c.sum()
    if n == 0:
        return 0.0, 1.0, 0
    ok = c > 0
    mean = float((c[ok] * m[ok]).sum() / n)
    var = float((c[ok] * (s[ok] ** 2 + (m[ok] - mean) ** 2)).sum() / n)
    return mean, math.sqrt(max(var, 0.0)), int(n)


# ============================================================================ normalisation

def normaliser(norm: dict, names, ps_mean=None, ps_std=None):
    """``f(x (C,h,w), sample) -> normalised x``: the engine's :class:`~xdl.normalize.Normalization`
    on a numpy window, with the card's statistics or sample ``s``'s row of ``ps_mean``/``ps_std``."""
    kind = norm["kind"]
    if kind == "none":
        return lambda x, s: x
    if kind == "global":
        card = Normalization.from_card(norm, names, ndim=3, n_spatial=2)
        return lambda x, s: card.apply(x)
    return lambda x, s: Normalization(ps_mean[s][:, None, None], ps_std[s][:, None, None]).apply(x)


def per_sample_arrays(triples):
    """(n_samples, C) float32 mean/std with the engine's fallbacks (0 and 1 where undefined)."""
    mean = np.stack([t[1] for t in triples], axis=1)
    std = np.stack([t[2] for t in triples], axis=1)
    mean = np.where(np.isfinite(mean), mean, 0.0).astype(np.float32)
    std = np.where(np.isfinite(std) & (std > 0), std, 1.0).astype(np.float32)
    return mean, std


def normalisers(norm: dict, ins, outs, triples):
    """Input and output normalisers; per-sample ones from ``triples`` (the inputs' whole-field stats)."""
    if norm["kind"] == "per_sample":
        pm, ps = per_sample_arrays(triples)
        return normaliser(norm, ins, pm, ps), normaliser(norm, ins, pm, ps)
    return normaliser(norm, ins), normaliser(norm, outs)


# ============================================================================ batches

class Sampler:
    """Draws batches of windows for one split: deterministic given a numpy Generator.

    ``kept_fn(rng, (h, w)) -> bool`` draws the gaps of gap filling (True = kept); None for mappings.
    """

    def __init__(self, src, pool, th, tw, x_range, ins, outs, mode, norm_in, norm_out, kept_fn=None):
        self.src, self.pool, self.th, self.tw = src, np.asarray(pool), th, tw
        self.x_lo, self.x_hi = x_range
        self.ins, self.outs, self.mode = ins, outs, mode
        self.norm_in, self.norm_out, self.kept_fn = norm_in, norm_out, kept_fn
        self.names = list(dict.fromkeys(ins + outs))

    def _window(self, rng, names_for_valid):
        best = None
        for _ in range(RETRIES):  # skip windows that are mostly gaps; keep the best if none passes
            s = int(self.pool[rng.integers(len(self.pool))])
            y0 = int(rng.integers(0, self.src.H - self.th + 1))
            x0 = int(rng.integers(self.x_lo, self.x_hi - self.tw + 1))
            raw = self._load(s, y0, x0)
            frac = float(np.mean([np.isfinite(raw[n]).mean() for n in names_for_valid]))
            if best is None or frac > best[0]:
                best = (frac, s, raw)
            if frac >= MIN_VALID_FRACTION:
                break
        return best[1], best[2]

    def _load(self, s, y0, x0) -> dict:
        """``{name: (th, tw) window}`` of sample ``s`` at ``(y0, x0)``."""
        return dict(zip(self.names, self.src.load(self.names, s, y0, x0, self.th, self.tw)))

    def batch(self, rng, n) -> dict:
        """``n`` windows: ``x``, ``valid`` and (gap filling) ``kept`` or (mappings) ``y``, ``y_valid``."""
        xs, vs, ys, yvs, kept = [], [], [], [], []
        for _ in range(n):
            s, raw = self._window(rng, self.ins if self.mode == "gap" else self.outs)
            x = np.stack([raw[v] for v in self.ins])
            valid = np.isfinite(x)
            xs.append(np.where(valid, self.norm_in(x, s), 0.0).astype(np.float32))
            vs.append(valid)
            if self.mode == "gap":
                kept.append(self.kept_fn(rng, (self.th, self.tw))[None])
            else:
                y = np.stack([raw[v] for v in self.outs])
                yv = np.isfinite(y)
                ys.append(np.where(yv, self.norm_out(y, s), 0.0).astype(np.float32))
                yvs.append(yv)
        out = {"x": torch.from_numpy(np.stack(xs)), "valid": torch.from_numpy(np.stack(vs))}
        if self.mode == "gap":
            out["kept"] = torch.from_numpy(np.stack(kept))
        else:
            out["y"] = torch.from_numpy(np.stack(ys))
            out["y_valid"] = torch.from_numpy(np.stack(yvs))
        return out

    def random_window(self, rng, hw, names):
        """A random ``hw`` window of ``names`` from this split's samples and x range (no retries)."""
        s = int(self.pool[rng.integers(len(self.pool))])
        y0 = int(rng.integers(0, self.src.H - hw[0] + 1))
        x0 = int(rng.integers(self.x_lo, self.x_hi - hw[1] + 1))
        return self.src.load(names, s, y0, x0, *hw)


# ============================================================================ gaps

def kept_fn(masks, fraction, dims, ins, train_sampler_ref):
    """``f(rng, (h, w)) -> bool`` (True = kept) for the ``masks`` argument, and its card description.

    ``train_sampler_ref`` is a list that holds the training :class:`Sampler` once it exists
    ("observed" masks copy the gap pattern of random training windows).
    """
    if fraction is not None and not (isinstance(fraction, (int, float)) and fraction > 0):
        # 0 hid nothing: every loss 0, a model returned as trained (probe).
        raise InputError(f"mask_fraction={fraction!r}: give a share above 0 of the pixels to hide for training "
                         "(None: the generator's own).")
    if isinstance(masks, tuple) and len(masks) == 2 and masks[0] == "observed":
        masks = masks[1]
    if isinstance(masks, xr.DataArray):
        return _from_mask_pool(masks, dims), f"observed:{masks.name or 'DataArray'}"
    if masks == "observed":
        def from_data(rng, hw):  # the data's own gap pattern, from a random window of a training sample
            return np.isfinite(train_sampler_ref[0].random_window(rng, hw, ins)).all(axis=0)
        return from_data, "observed"
    if masks == "mixed":
        return (lambda rng, hw: gapmasks.make(gapmasks.KINDS[int(rng.integers(len(gapmasks.KINDS)))],
                                              hw, fraction, rng)), "mixed"
    if isinstance(masks, str) and masks in gapmasks.KINDS:
        return (lambda rng, hw: gapmasks.make(masks, hw, fraction, rng)), masks
    raise InputError(f"masks={masks!r}: use one of {', '.join(gapmasks.KINDS)}, 'mixed', 'observed' (the "
                     "data's own gaps), or a bool DataArray of valid masks (True = kept).")


def _from_mask_pool(masks: xr.DataArray, dims):
    if masks.dtype != bool:
        raise InputError(f"masks DataArray {masks.name!r} has dtype {masks.dtype}; it must be bool "
                         "(True = valid/kept), e.g. masks=np.isfinite(coverage) or cover.astype(bool).")
    try:
        sp = layout.spatial_dims(masks, dims)
    except InputError:
        sp = tuple(masks.dims[-2:])
    lead = [d for d in masks.dims if d not in sp]
    m = masks.transpose(*lead, *sp)
    shape = tuple(m.sizes[d] for d in lead)
    n = int(np.prod(shape)) if shape else 1

    def from_pool(rng, hw):
        k = int(rng.integers(n))
        sel = {d: int(i) for d, i in zip(lead, np.unravel_index(k, shape))} if shape else {}
        return gapmasks.observed(np.asarray(m.isel(sel).values, dtype=bool), hw, rng)
    return from_pool


# ============================================================================ one split's samplers

def samplers(src, plan, ins, outs, mode, norm, masks, mask_fraction, dims, th, context=None):
    """``(train_sampler, val_sampler or None, mask description)`` for a split plan.

    Computes all statistics in one dask pass, drops samples without valid data from the pools,
    fills in a global normalisation's missing mean/std (in ``norm``, from the training split) and
    checks that "observed" masks have gaps to copy. ``context`` (a
    :class:`~xdl.training.context.ContextPlan`, gap filling only) adds its channels to the windows.
    """
    extra = [n for n in (context.variables if context is not None else ()) if n not in ins]
    names = list(dict.fromkeys(ins + outs)) + extra
    st = _split_statistics(src, plan, names, ins + extra, norm)
    idx = {n: i for i, n in enumerate(names)}
    valid_names = ins if mode == "gap" else outs
    train_pool = _pool(st["train"], plan.train_samples, idx, valid_names, "the training split" + _where(plan, "train"))
    val_pool = (_pool(st["val"], plan.val_samples, idx, valid_names, "the validation split" + _where(plan, "val"))
                if plan.vsrc is not None else None)
    if norm["kind"] == "global":
        for n in names:
            if n not in norm["mean"] or n not in norm["std"]:
                m, s, _ = combine(st["train"][idx[n]], plan.train_samples)
                norm["mean"][n] = m
                norm["std"][n] = s if s >= MIN_STD else 1.0  # a constant field: the card refuses less
    if mode == "gap" and isinstance(masks, str) and masks == "observed":
        full = sum(st["train"][idx[n]][0][plan.train_samples] for n in ins)
        if np.all(full == len(ins) * src.H * (plan.train_x[1] - plan.train_x[0])):
            raise InputError(f"masks='observed' copies the data's own gaps, but {ins} have no NaN in the "
                             "training split; use masks='irregular' (or another kind) or a bool DataArray.")
    train_ref = []
    kept, mask_desc = kept_fn(masks, mask_fraction, dims, ins, train_ref) if mode == "gap" else (None, None)
    if context is not None:
        from .context import ContextSampler
        train = ContextSampler(src, train_pool, th, plan.tw, plan.train_x, ins, kept, context, norm,
                               st.get("train_full"), plan.train_samples)
    else:
        n_in, n_out = normalisers(norm, ins, outs, st.get("train_full"))
        train = Sampler(src, train_pool, th, plan.tw, plan.train_x, ins, outs, mode, n_in, n_out, kept)
    train_ref.append(train)
    val = None
    if plan.vsrc is not None:
        full = st.get("val_full", st.get("train_full"))
        if context is not None:
            val = ContextSampler(plan.vsrc, val_pool, plan.vth, plan.vtw, plan.val_x, ins, kept, context, norm,
                                 full, plan.val_samples)
        else:
            v_in, v_out = normalisers(norm, ins, outs, full)
            val = Sampler(plan.vsrc, val_pool, plan.vth, plan.vtw, plan.val_x, ins, outs, mode, v_in, v_out, kept)
    return train, val, mask_desc


def _split_statistics(src, plan, names, ins, norm) -> dict:
    lazy = {"train": src.stats(names, *plan.train_x)}
    if norm["kind"] == "per_sample":
        lazy["train_full"] = src.stats(ins)
    vsrc = plan.vsrc
    if vsrc is not None and not (vsrc is src and plan.val_x == plan.train_x):
        lazy["val"] = vsrc.stats(names, *plan.val_x)
        if norm["kind"] == "per_sample" and vsrc is not src:
            lazy["val_full"] = vsrc.stats(ins)
    st = compute_stats(lazy)
    if vsrc is not None and "val" not in st:
        st["val"] = st["train"]
    return st


def _where(plan, part: str) -> str:
    """Where a split lies, for its errors: a region split's columns (a swath's empty border beyond
    the cut failed, advising to check the fill values first; probe)."""
    split = plan.split or {}
    if split.get("kind") == "region":
        lo, hi = split[part]
        return f" (columns {lo}-{hi - 1} of {split['dim']!r}; val= moves the cut)"
    if split.get("kind") == "time":
        return f" ({split[part][0]} to {split[part][1]} along {split['dim']!r})"
    return ""


def _pool(triples, samples, idx, valid_names, what):
    count = sum(triples[idx[n]][0] for n in valid_names)
    pool = samples[count[samples] > 0]
    if len(pool) == 0:
        raise InputError(f"no valid data: {valid_names} have no finite value in {what}. Check the variable "
                         "names, the fill values (decode them to NaN) and the split (val=...).")
    return pool
