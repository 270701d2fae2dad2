"""Train/validation splits: by time (trailing steps), by region (right part of the x axis) or separate data."""

from __future__ import annotations

import dataclasses
import numbers

import numpy as np
import xarray as xr

from ..conventions import layout
from ..errors import InputError
from .card import describe_data
from .data import Source, as_dataset


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
    val = check_val_fraction(val)
    n_val = min(n - 1, max(1, int(round(val * n))))
    return np.arange(n - n_val), np.arange(n - n_val, n)


def split_region(width: int, val: float, tile: int, size_multiple: int) -> dict:
    """Cut the x axis at ``(1 - val) * width``: training windows lie left of the cut, validation windows right.

    Returns ``{"cut", "train": (x0, x1), "val": (x0, x1), "train_tile", "val_tile"}``; the tile widths
    are shrunk (to multiples of ``size_multiple``) so that windows fit in their part.

    >>> split_region(64, 0.25, 32, 8)
    {'cut': 48, 'train': (0, 48), 'val': (48, 64), 'train_tile': 32, 'val_tile': 16}
    """
    val = check_val_fraction(val)
    cut = int(round((1.0 - val) * width))
    tr = axis_tile(cut, tile, size_multiple, f"the training region (x < {cut})",
                   "use a smaller val fraction or a wider field")
    va = axis_tile(width - cut, tile, size_multiple, f"the validation region (x >= {cut} of {width})",
                   "use a larger val fraction, a wider field, or pass val=<Dataset>")
    return {"cut": cut, "train": (0, cut), "val": (cut, int(width)), "train_tile": tr, "val_tile": va}


def check_val_fraction(val) -> float:
    """``val`` as a float in (0, 1), or InputError saying what val may be.

    >>> check_val_fraction(0.25)
    0.25
    """
    if isinstance(val, bool) or not isinstance(val, numbers.Real) or not 0.0 < float(val) < 1.0:
        raise InputError(f"val={val!r}: give the validation fraction in (0, 1), e.g. val=0.2, "
                         "or val=0/None for no validation, or val=<Dataset> for separate validation data.")
    return float(val)


def axis_tile(n: int, tile: int, sm: int, what: str, fix: str) -> int:
    """The window side on an axis of ``n`` pixels: ``tile``, or the whole axis rounded down to ``sm``.

    >>> axis_tile(40, 64, 16, "the x axis", "use a larger field")
    32
    """
    t = min(int(tile), int(n) // sm * sm)
    if t < sm:
        raise InputError(f"{what} is {n} pixels, fewer than the model's size multiple {sm}; {fix} "
                         "(or use a shallower model).")
    return t


def is_no_validation(val) -> bool:
    """True for ``val=None`` or a numeric zero (no validation)."""
    return val is None or (isinstance(val, numbers.Real) and not isinstance(val, bool) and val == 0)


@dataclasses.dataclass
class SplitPlan:
    """Which samples and x ranges each split draws windows from, and the card's ``split`` entry."""

    train_samples: np.ndarray
    train_x: tuple
    tw: int
    split: dict
    vsrc: object = None  # the validation Source (the training one for time/region splits)
    val_samples: np.ndarray | None = None
    val_x: tuple | None = None
    vth: int | None = None
    vtw: int | None = None


def plan_split(src, val, names, ins, dims, tile, sm, th, static_ok=()) -> SplitPlan:
    """The split for ``val`` (see :func:`xdl.fit.fit`) of the training Source ``src``; ``th`` is the window height.

    ``static_ok``: context variables that may have only the spatial dims (see :class:`~xdl.training.data.Source`)."""
    tw = axis_tile(src.W, tile, sm, f"the field's {src.spatial[1]!r} axis", "use a larger field")
    plan = SplitPlan(np.arange(src.n_samples), (0, src.W), tw, {"kind": "none"})
    if isinstance(val, (xr.Dataset, xr.DataArray)):
        vds = as_dataset(val, "val", ins[0] if len(names) == 1 else None)
        for n in names:
            if n not in vds.data_vars:
                raise InputError(f"variable {n!r} is not in the validation data (val=...); it has "
                                 f"{sorted(map(str, vds.data_vars))}. Give val the training variables.")
        vsrc = Source(vds, names, dims, "the validation data (val=...)", static_ok)
        plan.vsrc, plan.val_samples, plan.val_x = vsrc, np.arange(vsrc.n_samples), (0, vsrc.W)
        plan.vth = axis_tile(vsrc.H, tile, sm, "the validation field's y axis", "use a larger validation field")
        plan.vtw = axis_tile(vsrc.W, tile, sm, "the validation field's x axis", "use a larger validation field")
        plan.split = {"kind": "separate", "val_data": describe_data(vsrc, names)}
    elif not is_no_validation(val):
        frac = check_val_fraction(val)
        dim = split_dim(src)
        if dim is not None:
            _time_split(plan, src, dim, frac, th)
        else:
            reg = split_region(src.W, frac, tile, sm)
            plan.train_x, plan.val_x, plan.tw, plan.vtw = reg["train"], reg["val"], reg["train_tile"], reg["val_tile"]
            plan.vsrc, plan.val_samples, plan.vth = src, np.arange(src.n_samples), th
            plan.split = {"kind": "region", "dim": src.spatial[1], "fraction": frac, "cut": reg["cut"],
                          "train": list(reg["train"]), "val": list(reg["val"])}
    return plan


def _time_split(plan: SplitPlan, src, dim, frac, th) -> None:
    layout.check_time_order(next(iter(src.arrays.values())), dim,
                            "which fit splits into training and then validation steps by index")
    k = src.sample_dims.index(dim)
    lead_tr, lead_va = split_samples(src.sample_shape[k], frac)
    along = np.unravel_index(np.arange(src.n_samples), src.sample_shape)[k]
    plan.train_samples = np.flatnonzero(along < len(lead_tr))
    plan.val_samples = np.flatnonzero(along >= len(lead_tr))
    plan.vsrc, plan.val_x, plan.vth, plan.vtw = src, (0, src.W), th, plan.tw
    plan.split = {"kind": "time", "dim": dim, "fraction": frac,
                  "train": [coord_label(src, dim, 0), coord_label(src, dim, len(lead_tr) - 1)],
                  "val": [coord_label(src, dim, len(lead_tr)), coord_label(src, dim, src.sample_shape[k] - 1)],
                  "n_train": int(len(lead_tr)), "n_val": int(len(lead_va))}


def split_dim(src):
    """The dim to split by time: a time-like sample dim with >= 2 steps, else the first such dim."""
    cands = [d for d in src.sample_dims if src.sizes[d] >= 2]
    arr = next(iter(src.arrays.values()))
    return next((d for d in cands if layout.is_time_like(arr, d)), cands[0] if cands else None)


def coord_label(src, dim, i):
    """A time step's coordinate value as text (its index when the dim has no coordinate)."""
    arr = next(iter(src.arrays.values()))
    return str(np.asarray(arr[dim].values[i])) if dim in arr.coords else int(i)
