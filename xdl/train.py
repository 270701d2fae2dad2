"""Training zoo models on xarray / Dask / Zarr data: self-supervised gap filling and paired mappings.

Two modes:

* **gap filling** (``variables=[...]``; PConv-UNet or any model whose card has ``fills_gaps``):
  random tiles of single samples get extra gaps from :mod:`xdl.masks`; the model learns to restore
  the hidden, originally valid pixels (loss of Liu et al. 2018: ``L_valid + 6 L_hole + 0.1 L_tv``).
* **paired mapping** (``inputs=[...]``, ``targets=[...]``; UNet or pix2pix): masked L1 to the targets,
  plus a PatchGAN adversarial term for pix2pix (Isola et al. 2017).

Data is never loaded whole: each batch reads a few ``tile x tile`` windows with ``.isel(...).values``,
and the normalisation statistics are dask reductions. The normalisation is written to the model
card exactly as the inference engine (:func:`xdl.predict.predict`) applies it.

Example:
    >>> import numpy as np, xarray as xr, xdl
    >>> from xdl.train import fit
    >>> yy, xx = np.mgrid[0:32, 0:32] / 32.0
    >>> t = np.stack([np.sin(6 * xx + k) * np.cos(4 * yy) for k in range(4)]).astype("f4")
    >>> ds = xr.Dataset({"sst": (("time", "y", "x"), t)})
    >>> m = fit(ds, "pconv-unet", variables=["sst"], epochs=1, steps_per_epoch=2, batch_size=2,
    ...         tile=32, val_steps=1, progress=False, depth=2, base_channels=4)
    >>> m.fills_gaps, m.inputs, m.normalization["kind"], len(m.training["history"]["val_loss"])
    (True, ['sst'], 'per_sample', 1)
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import copy
import json
import math
import numbers
import os
import warnings

import dask
import dask.array as da
import numpy as np
import torch
import torch.nn.functional as F
import xarray as xr

from . import layout
from . import masks as gapmasks
from .errors import InputError
from .model import Model
from .runner import resolve_device, resolve_precision

__all__ = ["fit", "split_samples", "split_region", "gap_loss", "masked_l1",
           "CHECKPOINT_NAME", "BEST_NAME", "CHECKPOINT_FORMAT", "read_checkpoint"]

CHECKPOINT_NAME = "checkpoint.safetensors"
BEST_NAME = "best.safetensors"
CHECKPOINT_FORMAT = "1"
GAP_WEIGHTS = {"valid": 1.0, "hole": 6.0, "tv": 0.1, "hole_mse": 0.0}
GAN_WEIGHTS = {"gan": 1.0, "l1": 100.0}
MIN_VALID_FRACTION = 0.1
_RETRIES = 10
_VAL_STREAM = 0x76616C  # "val": the validation batches come from their own fixed RNG stream
_TORCH_STRIDE = 1_000_003


# ============================================================================ splits

def split_samples(n: int, val: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Split ``n`` consecutive samples (time steps) into a leading training and a trailing validation part.

    The last ``val`` fraction (at least one, leaving at least one for training) is validation, so no
    time step is in both and validation lies after all training data.

    >>> tr, va = split_samples(10, 0.2)
    >>> tr.tolist(), va.tolist()
    ([0, 1, 2, 3, 4, 5, 6, 7], [8, 9])
    """
    n = int(n)
    if n < 2:
        raise InputError(f"split_samples needs at least 2 samples to split by time, got n={n}; "
                         "split by region instead (a single field) or pass val=<Dataset>.")
    val = _check_val_fraction(val)
    n_val = min(n - 1, max(1, int(round(val * n))))
    return np.arange(n - n_val), np.arange(n - n_val, n)


def split_region(width: int, val: float, tile: int, size_multiple: int) -> dict:
    """Cut the x axis at ``(1 - val) * width``: training windows lie left of the cut, validation windows right.

    Returns ``{"cut", "train": (x0, x1), "val": (x0, x1), "train_tile", "val_tile"}``; the tile widths
    are shrunk (to multiples of ``size_multiple``) so that windows fit in their part.

    >>> split_region(64, 0.25, 32, 8)
    {'cut': 48, 'train': (0, 48), 'val': (48, 64), 'train_tile': 32, 'val_tile': 16}
    """
    val = _check_val_fraction(val)
    cut = int(round((1.0 - val) * width))
    tr = _axis_tile(cut, tile, size_multiple, f"the training region (x < {cut})",
                    "use a smaller val fraction or a wider field")
    va = _axis_tile(width - cut, tile, size_multiple, f"the validation region (x >= {cut} of {width})",
                    "use a larger val fraction, a wider field, or pass val=<Dataset>")
    return {"cut": cut, "train": (0, cut), "val": (cut, int(width)), "train_tile": tr, "val_tile": va}


def _check_val_fraction(val) -> float:
    if isinstance(val, bool) or not isinstance(val, numbers.Real) or not 0.0 < float(val) < 1.0:
        raise InputError(f"val={val!r}: give the validation fraction in (0, 1), e.g. val=0.2, "
                         "or val=0/None for no validation, or val=<Dataset> for separate validation data.")
    return float(val)


def _axis_tile(n: int, tile: int, sm: int, what: str, fix: str) -> int:
    """The window side on an axis of ``n`` pixels: ``tile``, or the whole axis rounded down to ``sm``."""
    t = min(int(tile), int(n) // sm * sm)
    if t < sm:
        raise InputError(f"{what} is {n} pixels, fewer than the model's size multiple {sm}; {fix} "
                         "(or use a shallower model).")
    return t


# ============================================================================ losses

def masked_l1(out: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean ``|out - target|`` over the pixels where ``valid``; NaNs in ``target`` elsewhere are ignored.

    >>> masked_l1(torch.tensor([1.0, 2.0]), torch.tensor([0.0, float("nan")]), torch.tensor([True, False]))
    tensor(1.)
    """
    valid = valid.expand_as(out)
    # where() before the difference: a NaN target would poison the gradient even where it is unused.
    target = torch.where(valid, target, torch.zeros((), dtype=target.dtype, device=target.device))
    w = valid.to(out.dtype)
    return ((out - target).abs() * w).sum() / w.sum().clamp(min=1.0)


def gap_loss(out, truth, valid, mask, weights=None) -> dict:
    """Liu et al. (2018) inpainting loss, restricted to originally valid pixels.

    ``out``/``truth`` ``(B, C, H, W)``; ``valid``: originally valid (finite) pixels; ``mask``: what the
    model saw (``valid & kept``). Terms: ``valid`` = mean L1 over seen pixels, ``hole`` = mean L1 over
    pixels hidden by the gap generator whose truth is known, ``tv`` = total variation of the composite
    ``mask*truth + (1-mask)*out`` over neighbour pairs that touch the hole (both pixels originally
    valid); ``hole_mse`` = mean squared error over the hole pixels (weight 0 by default: L1 aims at
    the median, squared error at the mean, which an RMSE score rewards); ``loss`` = the weighted
    sum. Originally invalid pixels get exactly zero gradient.

    >>> o = torch.zeros(1, 1, 4, 4); t = torch.ones(1, 1, 4, 4); v = torch.ones_like(t, dtype=torch.bool)
    >>> m = v.clone(); m[..., :2, :] = False
    >>> {k: round(float(x), 3) for k, x in gap_loss(o, t, v, m).items()}
    {'valid': 1.0, 'hole': 1.0, 'tv': 0.286, 'hole_mse': 1.0, 'loss': 7.029}
    """
    w = {**GAP_WEIGHTS, **(weights or {})}
    valid = valid.expand_as(out)
    seen = mask.expand_as(out) & valid
    hole = valid & ~seen
    zero = torch.zeros((), dtype=truth.dtype, device=truth.device)
    truth = torch.where(valid, truth, zero)
    err = (out - truth).abs()
    f = lambda b: b.to(out.dtype)  # noqa: E731
    l_valid = (err * f(seen)).sum() / f(seen).sum().clamp(min=1.0)
    l_hole = (err * f(hole)).sum() / f(hole).sum().clamp(min=1.0)
    l_hole_mse = (err.square() * f(hole)).sum() / f(hole).sum().clamp(min=1.0)
    comp = torch.where(seen, truth.to(out.dtype), out)
    tv_sum, n_pairs = out.new_zeros(()), out.new_zeros(())
    for a, b in (((Ellipsis, slice(None), slice(1, None)), (Ellipsis, slice(None), slice(None, -1))),
                 ((Ellipsis, slice(1, None), slice(None)), (Ellipsis, slice(None, -1), slice(None)))):
        pair = f((hole[a] | hole[b]) & valid[a] & valid[b])
        tv_sum = tv_sum + ((comp[a] - comp[b]).abs() * pair).sum()
        n_pairs = n_pairs + pair.sum()
    l_tv = tv_sum / n_pairs.clamp(min=1.0)
    total = w["valid"] * l_valid + w["hole"] * l_hole + w["tv"] * l_tv + w["hole_mse"] * l_hole_mse
    return {"valid": l_valid, "hole": l_hole, "tv": l_tv, "hole_mse": l_hole_mse, "loss": total}


# ============================================================================ data access

def _as_dataset(obj, what: str, single_name: str | None = None) -> xr.Dataset:
    if isinstance(obj, xr.Dataset):
        return obj
    if isinstance(obj, xr.DataArray):
        name = obj.name if obj.name is not None else (single_name or "data")
        return obj.to_dataset(name=name) if obj.name is None or obj.name == name else \
            obj.rename(name).to_dataset()
    raise InputError(f"{what} must be an xarray Dataset or DataArray, got {type(obj).__name__}.")


class _Source:
    """Windows of named variables; samples are all combinations of the non-spatial dims (C order)."""

    def __init__(self, ds: xr.Dataset, names: list, dims, what: str):
        first = ds[names[0]]
        self.spatial = layout.spatial_dims(first, dims)
        self.sample_dims = [d for d in first.dims if d not in self.spatial]
        self.arrays = {}
        for n in names:
            a = ds[n]
            if set(a.dims) != set(first.dims) or any(a.sizes[d] != first.sizes[d] for d in a.dims):
                raise InputError(f"variable {n!r} of {what} has dims {dict(a.sizes)} but {names[0]!r} has "
                                 f"{dict(first.sizes)}; all variables must share dims and sizes "
                                 "(select or interpolate them onto one grid).")
            if not (np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.bool_)):
                raise InputError(f"variable {n!r} of {what} has dtype {a.dtype}; models need numbers. "
                                 "Convert it or choose another variable.")
            self.arrays[n] = a.transpose(*self.sample_dims, *self.spatial)
        self.sample_shape = tuple(first.sizes[d] for d in self.sample_dims)
        self.n_samples = int(np.prod(self.sample_shape)) if self.sample_shape else 1
        self.H, self.W = (int(first.sizes[d]) for d in self.spatial)
        self.sizes = {str(k): int(v) for k, v in first.sizes.items()}
        self.attrs = ds.attrs
        if self.n_samples == 0 or self.H == 0 or self.W == 0:
            raise InputError(f"no valid data: {what} is empty ({dict(first.sizes)}).")

    def _sel(self, sample: int) -> dict:
        if not self.sample_shape:
            return {}
        idx = np.unravel_index(int(sample), self.sample_shape)
        return {d: int(i) for d, i in zip(self.sample_dims, idx)}

    def load(self, names, sample, y0, x0, th, tw) -> np.ndarray:
        sel = self._sel(sample)
        sel[self.spatial[0]] = slice(int(y0), int(y0) + th)
        sel[self.spatial[1]] = slice(int(x0), int(x0) + tw)
        return np.stack([np.asarray(self.arrays[n].isel(sel).values, dtype=np.float32) for n in names])

    def stats(self, names, x0=0, x1=None):
        """Lazy ``(count, mean, std)`` per (sample, channel) over the field's valid pixels in ``[x0, x1)``."""
        out = []
        for n in names:
            a = self.arrays[n]
            if x0 != 0 or (x1 is not None and x1 != self.W):
                a = a.isel({self.spatial[1]: slice(x0, x1)})
            if not isinstance(a.data, da.Array):
                # One chunk per few samples, whole fields: lazily indexed files are not read at once.
                a = a.chunk({**{d: "auto" for d in self.sample_dims}, **{d: -1 for d in self.spatial}})
            # Mean and std as the engine takes them (xdl.predict.sample_statistics: outliers fenced,
            # float64, one block per sample), so a model trains on what inference will give it.
            from .predict import sample_statistics

            moments = sample_statistics(a.data[..., None, :, :], 2, raw_std=True)[..., 0, 0, :]
            out.append((da.isfinite(a.data).sum(axis=(-2, -1)), moments[..., 0], moments[..., 1]))
        return out


def _compute_stats(lazy: dict) -> dict:
    """Compute ``{key: [(count, mean, std) per name]}`` in one dask pass; each array flat over samples."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN fields: nanmean warns, we mask them
        (computed,) = dask.compute(lazy)
    return {k: [tuple(np.asarray(x, np.float64).reshape(-1) for x in triple) for triple in v]
            for k, v in computed.items()}


def _combine(triples, samples) -> tuple[float, float, int]:
    """Mean, std and count over several samples from per-sample (count, mean, std) (exact, stable)."""
    c, m, s = (t[samples] for t in triples)
    n = c.sum()
    if n == 0:
        return 0.0, 1.0, 0
    ok = c > 0
    mean = float((c[ok] * m[ok]).sum() / n)
    var = float((c[ok] * (s[ok] ** 2 + (m[ok] - mean) ** 2)).sum() / n)
    return mean, math.sqrt(max(var, 0.0)), int(n)


class _Sampler:
    """Draws batches of windows for one split: deterministic given a numpy Generator."""

    def __init__(self, src, pool, th, tw, x_range, ins, outs, mode, norm_in, norm_out, kept_fn):
        self.src, self.pool, self.th, self.tw = src, np.asarray(pool), th, tw
        self.x_lo, self.x_hi = x_range
        self.ins, self.outs, self.mode = ins, outs, mode
        self.norm_in, self.norm_out, self.kept_fn = norm_in, norm_out, kept_fn
        self.names = list(dict.fromkeys(ins + outs))

    def _window(self, rng, names_for_valid):
        best = None
        for _ in range(_RETRIES):  # skip windows that are mostly gaps; keep the best if none passes
            s = int(self.pool[rng.integers(len(self.pool))])
            y0 = int(rng.integers(0, self.src.H - self.th + 1))
            x0 = int(rng.integers(self.x_lo, self.x_hi - self.tw + 1))
            raw = dict(zip(self.names, self.src.load(self.names, s, y0, x0, self.th, self.tw)))
            frac = float(np.mean([np.isfinite(raw[n]).mean() for n in names_for_valid]))
            if best is None or frac > best[0]:
                best = (frac, s, raw)
            if frac >= MIN_VALID_FRACTION:
                break
        return best[1], best[2]

    def batch(self, rng, n) -> dict:
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


def _normaliser(norm: dict, names, ps_mean=None, ps_std=None):
    """``f(x (C,h,w), sample) -> normalised x``, exactly as xdl.predict._normalise does it (float32)."""
    kind = norm["kind"]
    if kind == "none":
        return lambda x, s: x
    if kind == "global":
        mean = np.array([norm["mean"].get(n, 0.0) for n in names], np.float32)[:, None, None]
        std = np.array([norm["std"].get(n, 1.0) for n in names], np.float32)[:, None, None]
        return lambda x, s: (x - mean) / std
    return lambda x, s: (x - ps_mean[s][:, None, None]) / ps_std[s][:, None, None]


def _per_sample_arrays(triples):
    """(n_samples, C) float32 mean/std with the engine's fallbacks (0 and 1 where undefined)."""
    mean = np.stack([t[1] for t in triples], axis=1)
    std = np.stack([t[2] for t in triples], axis=1)
    mean = np.where(np.isfinite(mean), mean, 0.0).astype(np.float32)
    std = np.where(np.isfinite(std) & (std > 0), std, 1.0).astype(np.float32)
    return mean, std


# ============================================================================ masks

def _kept_fn(masks, fraction, train_sampler_ref, dims, ins):
    """``f(rng, (h, w)) -> bool`` (True = kept) for the ``masks`` argument, and its card description."""
    if isinstance(masks, tuple) and len(masks) == 2 and masks[0] == "observed":
        masks = masks[1]
    if isinstance(masks, xr.DataArray):
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
        return from_pool, f"observed:{masks.name or 'DataArray'}"
    if masks == "observed":
        def from_data(rng, hw):  # the data's own gap pattern, from a random window of a training sample
            smp = train_sampler_ref[0]
            s = int(smp.pool[rng.integers(len(smp.pool))])
            y0 = int(rng.integers(0, smp.src.H - hw[0] + 1))
            x0 = int(rng.integers(smp.x_lo, smp.x_hi - hw[1] + 1))
            return np.isfinite(smp.src.load(ins, s, y0, x0, *hw)).all(axis=0)
        return from_data, "observed"
    if masks == "mixed":
        return (lambda rng, hw: gapmasks.make(gapmasks.KINDS[int(rng.integers(len(gapmasks.KINDS)))],
                                              hw, fraction, rng)), "mixed"
    if isinstance(masks, str) and masks in gapmasks.KINDS:
        return (lambda rng, hw: gapmasks.make(masks, hw, fraction, rng)), masks
    raise InputError(f"masks={masks!r}: use one of {', '.join(gapmasks.KINDS)}, 'mixed', 'observed' (the "
                     "data's own gaps), or a bool DataArray of valid masks (True = kept).")


# ============================================================================ checkpoints

def _save_checkpoint(path, module, best_state, optimizers, meta):
    from safetensors.torch import save_file

    tensors = {f"model/{k}": v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}
    if best_state is not None:
        tensors.update({f"best/{k}": v.detach().cpu().contiguous().clone() for k, v in best_state.items()})
    scalars = []
    for k, opt in enumerate(optimizers):
        sc = {}
        for i, st in opt.state_dict()["state"].items():
            for name, v in st.items():
                if torch.is_tensor(v):
                    tensors[f"optim{k}/{i}/{name}"] = v.detach().cpu().contiguous().clone()
                else:  # plain numbers (older torch keeps Adam's step as an int)
                    sc[f"{i}/{name}"] = v
        scalars.append(sc)
    meta = {**meta, "optimizer_scalars": scalars, "format": CHECKPOINT_FORMAT}
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        save_file(tensors, tmp, metadata={"xdl_checkpoint": json.dumps(meta)})
        os.replace(tmp, path)  # atomic: an interrupted save never leaves a half checkpoint
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def read_checkpoint(path) -> tuple[dict, dict]:
    """``(metadata, tensors)`` of a training checkpoint (no pickle involved).

    Tensors: ``model/<name>`` (weights and buffers), ``best/<name>`` (best validation weights),
    ``optim<k>/<param index>/<state>`` (Adam ``exp_avg``, ``exp_avg_sq``, ``step``; k=0 the model or
    generator, k=1 the discriminator). Metadata: global step, epoch, history, best val loss, card, ...

    >>> read_checkpoint("run/checkpoint.safetensors")  # doctest: +SKIP
    """
    from safetensors import safe_open

    path = os.fspath(path)
    with safe_open(path, framework="pt") as f:
        raw = (f.metadata() or {}).get("xdl_checkpoint")
        if raw is None:
            raise InputError(f"{path} is not an xdl training checkpoint (no 'xdl_checkpoint' metadata); "
                             "remove it or pass resume=False.")
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    return json.loads(raw), tensors


def _restore_optimizer(opt, k, tensors, scalars):
    state = {}
    for key, v in tensors.items():
        if key.startswith(f"optim{k}/"):
            _, i, name = key.split("/", 2)
            state.setdefault(int(i), {})[name] = v
    for key, v in scalars.items():
        i, name = key.split("/", 1)
        state.setdefault(int(i), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": opt.state_dict()["param_groups"]})


# ============================================================================ fit

def _names(value, what) -> list:
    if isinstance(value, str):
        return [value]
    try:
        out = [str(v) for v in value]
    except TypeError:
        raise InputError(f"{what} must be a variable name or a list of names, got {value!r}") from None
    if not out:
        raise InputError(f"{what} is empty; name at least one variable.")
    return out


def _positive_int(value, what, minimum=1):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise InputError(f"{what} must be an int >= {minimum}, got {value!r}")
    return int(value)


def fit(obj, model, *, variables=None, inputs=None, targets=None, masks="irregular", mask_fraction=None,
        dims=None, epochs=10, steps_per_epoch=100, batch_size=8, tile=128, val=0.2, val_steps=10, lr=None,
        loss_weights=None, normalization=None, device="auto", precision="auto", checkpoint_dir=None,
        checkpoint_every=None, resume=False, patience=None, progress=True, seed=0, **model_config) -> Model:
    """Train a zoo model (or fine-tune an :class:`xdl.Model`) on an xarray Dataset/DataArray.

    Parameters
    ----------
    obj : Dataset or DataArray, numpy- or dask/zarr-backed; only small windows are ever loaded.
    model : zoo name ("fill-unet", "pconv-unet", "unet", "pix2pix") built with ``**model_config`` and channels
        from the variables, or an :class:`xdl.Model` to fine-tune (a copy is trained).
    variables : gap filling: the variables to fill (one channel each).
    inputs, targets : paired mapping: input and target variables.
    masks : gap generator: "irregular", "scanlines", "blocks", "clouds", "mixed" (random kind per
        window), "observed" (the data's own gap pattern), or a bool DataArray of valid masks
        (True = kept; also ``("observed", bool_da)``) sampled with :func:`xdl.masks.observed`.
    mask_fraction : share of pixels the generator hides (default: the generator's own).
    dims : the spatial dims ``(y, x)`` (found from CF attributes / usual names when omitted).
    epochs, steps_per_epoch, batch_size, tile : training length, windows per step, window side
        (rounded down to the model's size multiple; the whole axis when the field is smaller).
    val : validation fraction (last time steps, or the right part of a single field), 0/None for
        none, or a Dataset/DataArray of separate validation data. ``val_steps`` fixed batches.
    lr : Adam learning rate (1e-3; pix2pix 2e-4 with betas (0.5, 0.999)).
    loss_weights : gap filling ``{"valid": 1, "hole": 6, "tv": 0.1, "hole_mse": 0}``; pix2pix ``{"gan": 1, "l1": 100}``.
    normalization : "none", "global", "per_sample" or a card dict (default: per_sample for gap
        filling, global for mappings; a fine-tuned model keeps its own).
    device, precision : "auto" = CUDA with bf16 autocast when present, else CPU fp32.
    checkpoint_dir, checkpoint_every, resume : ``checkpoint.safetensors`` every ``checkpoint_every``
        steps and at each epoch end, ``best.safetensors`` (an xdl model file) on val improvement;
        ``resume=True`` continues from the checkpoint, drawing the same batches as an unbroken run.
    patience : stop after this many epochs without val improvement.
    seed : all randomness (initial weights, windows, gaps, dropout) derives from it.

    Returns the trained :class:`xdl.Model` on CPU in eval mode, with the best validation weights
    when validation ran, and a card holding normalisation, training history and metrics.

    Example:
        >>> import numpy as np, xarray as xr
        >>> a = np.random.default_rng(0).normal(size=(6, 32, 32)).astype("f4")
        >>> ds = xr.Dataset({"a": (("time", "y", "x"), a), "b": (("time", "y", "x"), 2 * a + 1)})
        >>> m = fit(ds, "unet", inputs=["a"], targets=["b"], epochs=1, steps_per_epoch=2, batch_size=2,
        ...         tile=16, val_steps=1, progress=False, depth=2, base_channels=4)
        >>> m.inputs, m.outputs, m.normalization["kind"], round(m.normalization["mean"]["b"])
        (['a'], ['b'], 'global', 1)
    """
    # ------------------------------------------------------------ arguments
    ds = _as_dataset(obj, "obj")
    epochs = _positive_int(epochs, "epochs", 0)
    steps_per_epoch = _positive_int(steps_per_epoch, "steps_per_epoch")
    batch_size = _positive_int(batch_size, "batch_size")
    tile = _positive_int(tile, "tile")
    if patience is not None:
        patience = _positive_int(patience, "patience")
    if checkpoint_every is not None:
        checkpoint_every = _positive_int(checkpoint_every, "checkpoint_every")
    if (checkpoint_every is not None or resume) and checkpoint_dir is None:
        raise InputError("checkpoint_every/resume need checkpoint_dir='path/to/run' to write and read checkpoints.")

    existing = model if isinstance(model, Model) else (Model(model) if isinstance(model, torch.nn.Module) else None)
    if existing is None and not isinstance(model, str):
        raise InputError(f"model must be a zoo name (e.g. 'fill-unet', 'unet', 'pix2pix') or an xdl.Model, "
                         f"got {type(model).__name__}")
    if existing is not None and model_config:
        raise InputError(f"model options {sorted(model_config)} only apply when model is a zoo name; "
                         "an existing xdl.Model keeps its architecture.")
    arch = existing.architecture if existing is not None else model
    old_card = existing.card if existing is not None else {}

    mode, ins, outs = _resolve_mode(ds, existing, arch, variables, inputs, targets)
    for what, names in (("variables" if mode == "gap" else "inputs", ins), ("targets", outs)):
        for n in names:
            if n not in ds.data_vars:
                raise InputError(f"variable {n!r} (in {what}) is not in the data; it has "
                                 f"{sorted(map(str, ds.data_vars))}. Pass {what}=[...] with existing names.")
    gan = arch == "pix2pix"
    if gan and mode == "gap":
        raise InputError("pix2pix learns paired mappings: pass inputs=[...] and targets=[...]; "
                         "for gap filling use model='fill-unet' or 'pconv-unet' with variables=[...].")

    # ------------------------------------------------------------ model
    dev = resolve_device(device)
    autocast_dtype = resolve_precision(precision, dev)
    rng_devices = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=rng_devices):  # leave the caller's global RNG state alone
        torch.manual_seed(seed)
        if existing is None:
            from . import zoo
            cfg = dict(model_config)
            cfg.setdefault("in_channels", len(ins))
            cfg.setdefault("out_channels", len(outs))
            if gan:
                cfg.setdefault("out_activation", None)  # normalised physical fields are unbounded
            built = zoo.create(arch, **cfg)
            module, old_card = built.module, built.card
        else:
            module = copy.deepcopy(existing.module)
        for key, n in (("in_channels", len(ins)), ("out_channels", len(outs))):
            have = old_card.get(key)
            if have is not None and int(have) != n:
                raise InputError(f"the model has {key}={have} but {n} variable(s) were given "
                                 f"({ins if key == 'in_channels' else outs}); pass as many variables "
                                 "as channels or build a new model.")
        if old_card.get("mode") not in (None, "spatial"):
            raise InputError(f"fit trains spatial (2-D) models; this model's mode is {old_card.get('mode')!r}.")
        takes_mask = bool(old_card.get("takes_mask"))
        sm = old_card.get("size_multiple") or getattr(module, "size_multiple", None)
        if sm is None:
            from .spec import probe_size_multiple
            sm = probe_size_multiple(module, len(ins), 2, takes_mask)
        sm = int(sm)
        if tile < sm:
            raise InputError(f"tile={tile} is smaller than the model's size multiple {sm}; use tile >= {sm} "
                             f"(a multiple of {sm}), or a shallower model.")
        tile = tile // sm * sm

        return _train(**locals())


def _arch_fills_gaps(arch) -> bool:
    from .errors import UnknownModelError
    from .models import registry

    try:
        return bool(getattr(registry.get(arch), "fills_gaps", False))
    except UnknownModelError:  # reported where the model is built
        return False


def _resolve_mode(ds, existing, arch, variables, inputs, targets):
    if variables is not None:
        if inputs is not None or targets is not None:
            raise InputError("pass either variables=[...] (gap filling) or inputs=[...] with targets=[...] "
                             "(mapping), not both.")
        v = _names(variables, "variables")
        return "gap", v, list(v)
    if inputs is not None or targets is not None:
        if inputs is None or targets is None:
            raise InputError("a mapping needs both inputs=[...] and targets=[...]; for gap filling pass "
                             "variables=[...] instead.")
        return "paired", _names(inputs, "inputs"), _names(targets, "targets")
    card = existing.card if existing is not None else {}
    fills = bool(card.get("fills_gaps")) or _arch_fills_gaps(arch)
    if card.get("inputs"):
        if fills:
            return "gap", list(card["inputs"]), list(card["inputs"])
        if card.get("outputs"):
            return "paired", list(card["inputs"]), list(card["outputs"])
    if fills and len(ds.data_vars) == 1:
        name = str(next(iter(ds.data_vars)))
        return "gap", [name], [name]
    raise InputError(f"which variables? Pass variables=[...] for gap filling or inputs=[...] and targets=[...] "
                     f"for a mapping (the data has {sorted(map(str, ds.data_vars))}).")


def _resolve_norm(normalization, mode, old_card, ins, outs, fine_tune):
    if normalization is None:
        prev = old_card.get("normalization") or {}
        if fine_tune and prev.get("kind", "none") != "none":
            norm = copy.deepcopy(prev)  # the pretrained weights expect their own normalisation
        else:
            norm = {"kind": "per_sample" if mode == "gap" else "global"}
    elif isinstance(normalization, str):
        norm = {"kind": normalization}
    elif isinstance(normalization, dict):
        norm = copy.deepcopy(normalization)
    else:
        raise InputError(f"normalization={normalization!r}: use 'none', 'global', 'per_sample' or a dict "
                         "like {'kind': 'global', 'mean': {var: x}, 'std': {var: x}}.")
    kind = norm.get("kind", "none")
    if kind not in ("none", "global", "per_sample"):
        raise InputError(f"normalization kind {kind!r}: use 'none', 'global' or 'per_sample'.")
    if kind == "per_sample" and len(ins) != len(outs):
        raise InputError(f"per_sample normalisation undoes the inputs' statistics on the outputs, so it needs "
                         f"as many targets as inputs (got {len(ins)} and {len(outs)}); use normalization='global'.")
    norm["kind"] = kind
    norm["mean"] = {str(k): float(v) for k, v in (norm.get("mean") or {}).items()}
    norm["std"] = {str(k): float(v) for k, v in (norm.get("std") or {}).items()}
    return norm


def _describe_data(src: _Source, names) -> dict:
    out = {"variables": list(names), "dims": src.sizes, "spatial_dims": list(src.spatial),
           "sample_dims": list(src.sample_dims), "n_samples": src.n_samples}
    for key in ("title", "source"):
        if key in src.attrs:
            out[key] = str(src.attrs[key])
    return out


def _coord_label(src: _Source, dim, i):
    """A time step's coordinate value as text (its index when the dim has no coordinate)."""
    arr = next(iter(src.arrays.values()))
    return str(np.asarray(arr[dim].values[i])) if dim in arr.coords else int(i)


def _train(*, ds, epochs, steps_per_epoch, batch_size, tile, patience, checkpoint_every, existing, arch,
           old_card, mode, ins, outs, gan, dev, autocast_dtype, module, takes_mask, sm, variables, inputs,
           targets, masks, mask_fraction, dims, val, val_steps, lr, loss_weights, normalization, device,
           precision, checkpoint_dir, resume, progress, seed, model, model_config, obj, rng_devices,
           **_unused):
    from tqdm.auto import tqdm

    names = list(dict.fromkeys(ins + outs))
    src = _Source(ds, names, dims, "the training data")
    th = _axis_tile(src.H, tile, sm, f"the field's {src.spatial[0]!r} axis", "use a larger field")
    norm = _resolve_norm(normalization, mode, old_card, ins, outs, existing is not None)
    valid_names = ins if mode == "gap" else outs

    # ------------------------------------------------------------ split
    train_samples = np.arange(src.n_samples)
    train_x, val_x = (0, src.W), None
    tw = _axis_tile(src.W, tile, sm, f"the field's {src.spatial[1]!r} axis", "use a larger field")
    vsrc, val_samples, vth, vtw = None, None, None, None
    if isinstance(val, (xr.Dataset, xr.DataArray)):
        vds = _as_dataset(val, "val", ins[0] if len(names) == 1 else None)
        for n in names:
            if n not in vds.data_vars:
                raise InputError(f"variable {n!r} is not in the validation data (val=...); it has "
                                 f"{sorted(map(str, vds.data_vars))}. Give val the training variables.")
        vsrc = _Source(vds, names, dims, "the validation data (val=...)")
        val_samples, val_x = np.arange(vsrc.n_samples), (0, vsrc.W)
        vth = _axis_tile(vsrc.H, tile, sm, "the validation field's y axis", "use a larger validation field")
        vtw = _axis_tile(vsrc.W, tile, sm, "the validation field's x axis", "use a larger validation field")
        split = {"kind": "separate", "val_data": _describe_data(vsrc, names)}
    elif val is None or (isinstance(val, numbers.Real) and not isinstance(val, bool) and val == 0):
        split = {"kind": "none"}
    else:
        frac = _check_val_fraction(val)
        dim = _split_dim(src)
        if dim is not None:
            k = src.sample_dims.index(dim)
            lead_tr, lead_va = split_samples(src.sample_shape[k], frac)
            along = np.unravel_index(np.arange(src.n_samples), src.sample_shape)[k]
            train_samples = np.flatnonzero(along < len(lead_tr))
            val_samples = np.flatnonzero(along >= len(lead_tr))
            vsrc, val_x, vth, vtw = src, (0, src.W), th, tw
            split = {"kind": "time", "dim": dim, "fraction": frac,
                     "train": [_coord_label(src, dim, 0), _coord_label(src, dim, len(lead_tr) - 1)],
                     "val": [_coord_label(src, dim, len(lead_tr)), _coord_label(src, dim, src.sample_shape[k] - 1)],
                     "n_train": int(len(lead_tr)), "n_val": int(len(lead_va))}
        else:
            reg = split_region(src.W, frac, tile, sm)
            train_x, val_x, tw, vtw = reg["train"], reg["val"], reg["train_tile"], reg["val_tile"]
            vsrc, val_samples, vth = src, np.arange(src.n_samples), th
            split = {"kind": "region", "dim": src.spatial[1], "fraction": frac, "cut": reg["cut"],
                     "train": list(reg["train"]), "val": list(reg["val"])}

    # ------------------------------------------------------------ statistics (one dask pass)
    lazy = {"train": src.stats(names, *train_x)}
    if norm["kind"] == "per_sample":
        lazy["train_full"] = src.stats(ins)
    if vsrc is not None and not (vsrc is src and val_x == train_x):
        lazy["val"] = vsrc.stats(names, *val_x)
        if norm["kind"] == "per_sample" and vsrc is not src:
            lazy["val_full"] = vsrc.stats(ins)
    st = _compute_stats(lazy)
    if vsrc is not None and "val" not in st:
        st["val"] = st["train"]
    idx = {n: i for i, n in enumerate(names)}

    def pool_of(triples, samples, what):
        count = sum(triples[idx[n]][0] for n in valid_names)
        pool = samples[count[samples] > 0]
        if len(pool) == 0:
            raise InputError(f"no valid data: {valid_names} have no finite value in {what}. Check the variable "
                             "names, the fill values (decode them to NaN) and the split (val=...).")
        return pool

    train_pool = pool_of(st["train"], train_samples, "the training split")
    val_pool = pool_of(st["val"], val_samples, "the validation split") if vsrc is not None else None
    if norm["kind"] == "global":
        for n in names:
            if n not in norm["mean"] or n not in norm["std"]:
                m, s, _ = _combine(st["train"][idx[n]], train_samples)
                norm["mean"][n] = m
                norm["std"][n] = s if s > 0 else 1.0
    if mode == "gap" and isinstance(masks, str) and masks == "observed":
        full = sum(st["train"][idx[n]][0][train_samples] for n in ins)
        if np.all(full == len(ins) * src.H * (train_x[1] - train_x[0])):
            raise InputError(f"masks='observed' copies the data's own gaps, but {ins} have no NaN in the "
                             "training split; use masks='irregular' (or another kind) or a bool DataArray.")

    def normalisers(key_full):
        if norm["kind"] == "per_sample":
            pm, ps = _per_sample_arrays(st[key_full])
            return _normaliser(norm, ins, pm, ps), _normaliser(norm, ins, pm, ps)
        return _normaliser(norm, ins), _normaliser(norm, outs)

    sampler_ref = []
    kept_fn, mask_desc = (_kept_fn(masks, mask_fraction, sampler_ref, dims, ins) if mode == "gap"
                          else (None, None))
    n_in, n_out = normalisers("train_full")
    train_sampler = _Sampler(src, train_pool, th, tw, train_x, ins, outs, mode, n_in, n_out, kept_fn)
    sampler_ref.append(train_sampler)
    val_sampler = None
    if vsrc is not None:
        v_in, v_out = normalisers("val_full" if "val_full" in st else "train_full")
        val_sampler = _Sampler(vsrc, val_pool, vth, vtw, val_x, ins, outs, mode, v_in, v_out, kept_fn)

    # ------------------------------------------------------------ optimisation setup
    weights = dict(GAN_WEIGHTS if gan else (GAP_WEIGHTS if mode == "gap" else {}))
    if loss_weights:
        unknown = sorted(set(loss_weights) - set(weights))
        if unknown:
            raise InputError(f"loss_weights has unknown terms {unknown}; this mode uses {sorted(weights) or 'none'}.")
        weights.update({k: float(v) for k, v in loss_weights.items()})
    lr = float(lr) if lr is not None else (2e-4 if gan else 1e-3)
    betas = (0.5, 0.999) if gan else (0.9, 0.999)
    module.to(dev).train()
    if gan:
        gen, disc = module.generator, module.discriminator
        optimizers = [torch.optim.Adam(gen.parameters(), lr=lr, betas=betas),
                      torch.optim.Adam(disc.parameters(), lr=lr, betas=betas)]
    else:
        optimizers = [torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=lr, betas=betas)]
    scaler = torch.amp.GradScaler("cuda", enabled=autocast_dtype == torch.float16 and dev.type == "cuda")

    def autocast():
        if autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(dev.type, dtype=autocast_dtype)

    def call(net, x, m):
        return net(x, m.to(x.dtype)) if takes_mask else net(x)

    def to_dev(batch):
        return {k: v.to(dev, non_blocking=True) for k, v in batch.items()}

    def step_terms(b, train: bool) -> dict:
        """Loss terms of one batch; with ``train`` also the backward pass and optimiser step(s)."""
        if mode == "gap":
            mask = b["valid"] & b["kept"]
            with autocast():
                out = call(module, torch.where(mask, b["x"], 0.0), mask)
            terms = gap_loss(out.float(), b["x"], b["valid"], mask, weights)
            if train:
                _backward(terms["loss"], optimizers[0])
            return terms
        if not gan:
            with autocast():
                out = call(module, b["x"], b["valid"])
            l1 = masked_l1(out.float(), b["y"], b["y_valid"])
            if train:
                _backward(l1, optimizers[0])
            return {"loss": l1, "l1": l1}
        yv = b["y_valid"]
        with autocast():
            fake = call(gen, b["x"], b["valid"])
        fake = fake.float()
        l1 = masked_l1(fake, b["y"], yv)
        if not train:
            return {"loss": l1, "l1": l1}
        # Invalid target pixels are 0 in the real pair; zero them in the fake pair too so they give nothing away.
        fake_m = torch.where(yv, fake, 0.0)
        real_pair, fake_pair = torch.cat([b["x"], b["y"]], 1), torch.cat([b["x"], fake_m], 1)
        disc.requires_grad_(True)
        with autocast():
            d_real, d_fake = disc(real_pair).float(), disc(fake_pair.detach()).float()
        d_loss = 0.5 * (F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real))
                        + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake)))
        _backward(d_loss, optimizers[1])
        disc.requires_grad_(False)  # the generator step must not accumulate discriminator gradients
        with autocast():
            d_fake_g = disc(fake_pair).float()
        g_gan = F.binary_cross_entropy_with_logits(d_fake_g, torch.ones_like(d_fake_g))
        g_loss = weights["gan"] * g_gan + weights["l1"] * l1
        _backward(g_loss, optimizers[0])
        disc.requires_grad_(True)
        return {"loss": g_loss, "d_loss": d_loss, "g_gan": g_gan, "g_l1": l1}

    def _backward(loss, opt):
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    train_keys = ["loss"] + (["d_loss", "g_gan", "g_l1"] if gan else [])
    val_terms_keys = ["loss", "valid", "hole", "tv"] if mode == "gap" else ["loss"]
    history = {"train_loss": [], "val_loss": []}
    if mode == "gap":
        history.update({"val_valid": [], "val_hole": [], "val_tv": []})
    if gan:
        history.update({"d_loss": [], "g_gan": [], "g_l1": []})

    # ------------------------------------------------------------ resume
    global_step, epoch, running = 0, 0, {k: 0.0 for k in train_keys}
    best_val, best_epoch, bad_epochs, best_state, stopped = math.inf, None, 0, None, False
    ckpt_path = best_path = None
    check = {"architecture": old_card.get("architecture"), "config": old_card.get("config"), "mode": mode,
             "inputs": ins, "outputs": outs, "steps_per_epoch": steps_per_epoch, "batch_size": batch_size,
             "tile": tile, "seed": seed}
    if checkpoint_dir is not None:
        os.makedirs(checkpoint_dir, exist_ok=True)
        ckpt_path = os.path.join(os.fspath(checkpoint_dir), CHECKPOINT_NAME)
        best_path = os.path.join(os.fspath(checkpoint_dir), BEST_NAME)
        if resume and os.path.exists(ckpt_path):
            meta, tensors = read_checkpoint(ckpt_path)
            diff = {k: (meta["check"].get(k), v) for k, v in json.loads(json.dumps(check)).items()
                    if meta["check"].get(k) != v}
            if diff:
                raise InputError(f"checkpoint {ckpt_path} was written by a different run: "
                                 + "; ".join(f"{k} was {a!r}, now {b!r}" for k, (a, b) in diff.items())
                                 + ". Pass the same settings, or resume=False (or another checkpoint_dir) to start over.")
            module.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model/")})
            best = {k[5:]: v for k, v in tensors.items() if k.startswith("best/")}
            best_state = best or None
            for k, opt in enumerate(optimizers):
                _restore_optimizer(opt, k, tensors, meta["optimizer_scalars"][k])
            global_step, epoch, running = meta["global_step"], meta["epoch"], meta["running"]
            history = meta["history"]
            best_val = math.inf if meta["best_val"] is None else meta["best_val"]
            best_epoch, bad_epochs, stopped = meta["best_epoch"], meta["bad_epochs"], meta["stopped"]

    has_val = val_sampler is not None
    val_batches = None

    def evaluate() -> dict:
        nonlocal val_batches
        if val_batches is None:  # the same fixed batches every epoch, from their own RNG stream
            vrng = np.random.default_rng([seed, _VAL_STREAM])
            val_batches = [val_sampler.batch(vrng, batch_size) for _ in range(val_steps)]
        module.eval()
        sums = {k: 0.0 for k in val_terms_keys}
        with torch.no_grad():
            for b in val_batches:
                terms = step_terms(to_dev(b), train=False)
                for k in val_terms_keys:
                    sums[k] += float(terms[k])
        module.train()
        return {k: v / len(val_batches) for k, v in sums.items()}

    if has_val:
        val_steps = _positive_int(val_steps, "val_steps")

    def card_now():
        return _build_card(old_card, ds, src, ins, outs, norm, mode, gan, mask_desc, mask_fraction, epoch,
                           global_step, steps_per_epoch, batch_size, (th, tw), seed, split, history, lr, betas,
                           weights, dev, autocast_dtype, best_epoch, stopped, best_val, val_terms_keys)

    def save_ckpt():
        meta = {"global_step": global_step, "epoch": epoch, "running": running, "history": history,
                "best_val": None if math.isinf(best_val) else best_val, "best_epoch": best_epoch,
                "bad_epochs": bad_epochs, "stopped": stopped, "check": check, "card": card_now()}
        _save_checkpoint(ckpt_path, module, best_state, optimizers, meta)

    # ------------------------------------------------------------ loop
    def batch_for(step):
        return train_sampler.batch(np.random.default_rng([seed, step]), batch_size)

    total = epochs * steps_per_epoch
    bar = tqdm(total=total, initial=min(global_step, total), disable=not progress, desc="fit", unit="step",
               dynamic_ncols=True)
    # Loader threads cut and mask the next batches while the model trains on this one: one on the
    # CPU (the model needs the cores), a few on a GPU (which would otherwise wait for masks).
    # Each batch depends only on (seed, step), so more threads change nothing but speed.
    ahead = 1 if dev.type == "cpu" else max(1, min(4, (os.cpu_count() or 2) - 1))
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=ahead)
    try:
        with torch.random.fork_rng(devices=rng_devices):
            while epoch < epochs and not stopped:
                end = (epoch + 1) * steps_per_epoch
                pending = collections.deque(pool.submit(batch_for, s) for s in range(global_step, min(global_step + ahead, end)))
                while global_step < end:
                    batch = pending.popleft().result()
                    if global_step + len(pending) + 1 < end:
                        pending.append(pool.submit(batch_for, global_step + len(pending) + 1))
                    # Dropout and other torch randomness depend only on (seed, step): resumable.
                    torch.manual_seed(seed * _TORCH_STRIDE + global_step)
                    terms = step_terms(to_dev(batch), train=True)
                    global_step += 1
                    for k in train_keys:
                        running[k] += float(terms[k].detach())
                    bar.update(1)
                    bar.set_postfix(loss=f"{float(terms['loss'].detach()):.4g}", refresh=False)
                    if (ckpt_path and checkpoint_every and global_step % checkpoint_every == 0
                            and global_step != end):
                        save_ckpt()
                epoch += 1
                history["train_loss"].append(running["loss"] / steps_per_epoch)
                for k in train_keys[1:]:
                    history[k].append(running[k] / steps_per_epoch)
                running = {k: 0.0 for k in train_keys}
                if has_val:
                    v = evaluate()
                    history["val_loss"].append(v["loss"])
                    for k in val_terms_keys[1:]:
                        history[f"val_{k}"].append(v[k])
                    bar.set_postfix(loss=f"{history['train_loss'][-1]:.4g}", val=f"{v['loss']:.4g}")
                    if v["loss"] < best_val:
                        best_val, best_epoch, bad_epochs = v["loss"], epoch, 0
                        best_state = {k: t.detach().to("cpu", copy=True) for k, t in module.state_dict().items()}
                        if best_path:
                            Model(module, card_now()).save(best_path)
                    else:
                        bad_epochs += 1
                        if patience is not None and bad_epochs >= patience:
                            stopped = True
                if ckpt_path:
                    save_ckpt()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()

    if best_state is not None:
        module.load_state_dict(best_state)
    module.to("cpu").eval()
    return Model(module, card_now())


def _split_dim(src: _Source):
    """The dim to split by time: a time-like sample dim with >= 2 steps, else the first such dim."""
    cands = [d for d in src.sample_dims if src.sizes[d] >= 2]
    arr = next(iter(src.arrays.values()))

    def time_like(d):
        if d in layout._TIME_NAMES:
            return True
        if d in arr.coords:
            c = arr.coords[d]
            return np.issubdtype(c.dtype, np.datetime64) or str(c.attrs.get("axis", "")).upper() == "T"
        return False

    return next((d for d in cands if time_like(d)), cands[0] if cands else None)


def _build_card(old_card, ds, src, ins, outs, norm, mode, gan, mask_desc, mask_fraction, epoch, step, spe,
                batch_size, tile_hw, seed, split, history, lr, betas, weights, dev, autocast_dtype, best_epoch,
                stopped, best_val, val_keys):
    card = {k: v for k, v in old_card.items()}
    units = {n: str(ds[n].attrs["units"]) for n in ins if "units" in ds[n].attrs}
    out_units = {n: str(ds[n].attrs["units"]) for n in outs if "units" in ds[n].attrs}
    std_names = {n: str(ds[n].attrs["standard_name"]) for n in outs if "standard_name" in ds[n].attrs}
    training = {
        "mode": "gap_filling" if mode == "gap" else ("pix2pix" if gan else "paired"),
        "data": _describe_data(src, list(dict.fromkeys(ins + outs))),
        "epochs": epoch, "steps": step, "steps_per_epoch": spe, "batch_size": batch_size,
        "tile": list(tile_hw), "seed": seed, "split": split,
        "optimizer": {"name": "Adam", "lr": lr, "betas": list(betas)},
        "loss_weights": weights, "device": dev.type,
        "precision": "fp32" if autocast_dtype is None else str(autocast_dtype).replace("torch.", ""),
        "best_epoch": best_epoch, "stopped_early": bool(stopped),
        "history": copy.deepcopy(history),
    }
    if mode == "gap":
        training["masks"] = mask_desc
        training["mask_fraction"] = mask_fraction
    metrics = {}
    if best_epoch is not None and history["val_loss"]:
        i = best_epoch - 1
        metrics = {"val_loss": history["val_loss"][i], "epoch": best_epoch}
        for k in val_keys[1:]:
            metrics[f"val_{k}"] = history[f"val_{k}"][i]
        if gan or mode == "paired":
            metrics["val_l1"] = history["val_loss"][i]
        metrics["final_val_loss"] = history["val_loss"][-1]
    card.update({"inputs": list(ins), "outputs": list(outs), "units": units, "output_units": out_units,
                 "standard_names": std_names, "normalization": norm,
                 "fills_gaps": True if mode == "gap" else bool(old_card.get("fills_gaps", False)),
                 "training": training, "metrics": metrics})
    return card
