"""Context channels for training: other variables at the same sample and the targets at other time steps.

The channel order is the one inference builds (CONTRACT of issue 15): the targets, then the context
variables at the same sample (in ``context=`` order; a static 2-D field broadcast over samples), then
for each target its neighbours at offsets ``-k..-1, +1..+k`` along the time dim, by index. A
neighbour beyond the ends of the split's samples is all NaN (missing), so a training window never
sees a validation time step. The model gets ``info`` ``(K, 2)``: per context channel ``[offset,
1.0 if it is a target at another time step]``.

Example:
    >>> import numpy as np, xarray as xr
    >>> ds = xr.Dataset({"sst": (("time", "y", "x"), np.zeros((4, 8, 8), "f4")),
    ...                  "wind": (("time", "y", "x"), np.ones((4, 8, 8), "f4"))})
    >>> plan = resolve_context(ds, ["sst"], ["wind"], 1)
    >>> [(c.name, c.offset) for c in plan.channels], plan.info.tolist()
    ([('wind', 0), ('sst', -1), ('sst', 1)], [[0.0, 0.0], [-1.0, 1.0], [1.0, 1.0]])
    >>> plan.card()
    {'variables': ['wind'], 'time_window': 1}
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ..context import context_names, window_steps
from ..conventions import layout
from ..errors import InputError
from ..normalize import Normalization
from .data import Sampler, per_sample_arrays

MAX_TIME_WINDOW = 32
HIDE_CONTEXT_SHARE = 0.5  # windows whose context channels get gaps of their own (the rest keep theirs)


@dataclasses.dataclass(frozen=True)
class Channel:
    """One context channel: ``name`` at ``offset`` steps along the time dim (0: the sample itself)."""

    name: str
    offset: int = 0
    neighbour: bool = False  # one of the targets at another time step


@dataclasses.dataclass(frozen=True)
class ContextPlan:
    """The context of a fit: the variables, the time window and the channels they make."""

    variables: tuple
    time_window: int
    channels: tuple
    time_dim: str | None = None

    @property
    def info(self) -> np.ndarray:
        """``(K, 2)`` float32: ``[offset, is a neighbour]`` per context channel (the model's ``info``)."""
        rows = [[float(c.offset), 1.0 if c.neighbour else 0.0] for c in self.channels]
        return np.asarray(rows, np.float32).reshape(len(rows), 2)

    def card(self) -> dict:
        """The card's ``context`` entry of a model fit with this plan."""
        return {"variables": list(self.variables), "time_window": int(self.time_window)}


def resolve_context(ds, targets, context, time_window, dims=None) -> ContextPlan | None:
    """The :class:`ContextPlan` of ``fit(context=..., time_window=...)``; None when neither is given.

    Context variables must exist, differ from the targets and share the targets' dims and sizes,
    or have only the spatial dims (a static field). ``time_window`` needs a time dim.
    """
    if context is None and not time_window:
        return None
    names = context_names(context)
    for n in names:
        if n not in ds.data_vars:
            raise InputError(f"context variable {n!r} is not in the data; it has {sorted(map(str, ds.data_vars))}. "
                             "Pass context=[...] with existing names.")
        if n in targets:
            raise InputError(f"context variable {n!r} is also a target (variables={list(targets)}); a target's "
                             "other time steps come from time_window=k, not from context=.")
    k = window_steps(time_window or 0)
    if k > MAX_TIME_WINDOW:
        raise InputError(f"time_window={k} is more than {MAX_TIME_WINDOW} steps each side; use a smaller window.")
    # The dim inpaint and evaluate step along (refuses data without one, and vertical dims).
    time_dim = layout.sequence_dim(ds[targets[0]], tuple(layout.spatial_dims(ds[targets[0]], dims))) if k else None
    channels = [Channel(n) for n in names]
    channels += [Channel(t, off, True) for t in targets for off in (*range(-k, 0), *range(1, k + 1))]
    return ContextPlan(tuple(names), k, tuple(channels), time_dim)


def inherited_context(card: dict, takes_context: bool, context, time_window):
    """``(context, time_window)`` of a fine-tune of a model with ``card``: checked against the card's.

    A model fit on a user's data (card ``{"variables", "time_window"}``) keeps exactly that context
    (None = the same); the bundled default (``"accepts": "any"``) takes any; a model without
    context refuses one.

    >>> inherited_context({"context": {"variables": ["wind"], "time_window": 1}}, True, None, None)
    (['wind'], 1)
    >>> inherited_context({"context": {"variables": ["wind"], "time_window": 1}}, True, ["wind"], None)
    (['wind'], 1)
    """
    have = card.get("context")
    asked = context is not None or bool(time_window)
    if not isinstance(have, dict):
        if asked and not takes_context:
            raise InputError(f"this model was not trained with context (its card has no 'context'), so it cannot be "
                             f"fine-tuned with context={context!r}, time_window={time_window!r}; fit a new model: "
                             "ds.dl.fit('fill-unet', variables=[...], context=[...]).")
        return context, time_window
    if "variables" not in have:  # {"accepts": "any", ...}: any context
        return context, time_window
    want = ([str(v) for v in have["variables"]], int(have.get("time_window") or 0))
    if not asked:
        return want
    # Either left out (None) keeps the model's.
    got = (want[0] if context is None else [context] if isinstance(context, str) else [str(c) for c in context],
           want[1] if time_window is None else int(time_window))
    if got != want:
        raise InputError(f"this model was trained with context={want[0]}, time_window={want[1]}, but the "
                         f"fine-tune passes context={got[0]}, time_window={got[1]}; pass the same (or leave both "
                         "out to keep the model's), or fit a new model.")
    return want


class ContextSampler(Sampler):
    """Gap-filling windows of the targets and their context channels (:class:`ContextPlan` order).

    Gaps are hidden in the targets; in a share ``HIDE_CONTEXT_SHARE`` of windows each context channel
    also gets its own draw of the same generator (the model must cope with gappy context). ``kept``
    is then ``(C, h, w)``. Each channel is normalised by its own statistics: per sample (``full``:
    whole-field ``(count, mean, std)`` of the targets then the context variables, per sample; a
    neighbour takes its own time step's) or global (the card's, by variable name).
    """

    def __init__(self, src, pool, th, tw, x_range, ins, kept_fn, plan: ContextPlan, norm, full, allowed):
        super().__init__(src, pool, th, tw, x_range, ins, ins, "gap", None, None, kept_fn)
        self.plan, self.allowed = plan, frozenset(int(s) for s in allowed)
        self.axis = None
        if plan.time_dim is not None:
            if plan.time_dim not in src.sample_dims:
                raise InputError(f"time_window steps along {plan.time_dim!r}, which this data lacks "
                                 f"(dims {src.sizes}); give every split the same dims.")
            self.axis = src.sample_dims.index(plan.time_dim)
        self.kind = norm["kind"]
        channel_names = list(ins) + [c.name for c in plan.channels]
        if self.kind == "global":
            self.card_norm = Normalization.from_card(norm, channel_names, ndim=3, n_spatial=2)
        elif self.kind == "per_sample":
            self.ps_mean, self.ps_std = per_sample_arrays(full)
            base = {n: i for i, n in enumerate(list(ins) + list(plan.variables))}
            self.base_index = [base[n] for n in channel_names]
        self.offsets = [0] * len(ins) + [c.offset for c in plan.channels]

    def neighbour(self, sample: int, offset: int):
        """The sample ``offset`` steps along the time dim from ``sample``; None beyond the split's samples."""
        if offset == 0:
            return int(sample)
        shape = self.src.sample_shape
        idx = list(np.unravel_index(int(sample), shape))
        idx[self.axis] += offset
        if not 0 <= idx[self.axis] < shape[self.axis]:
            return None
        other = int(np.ravel_multi_index(idx, shape))
        return other if other in self.allowed else None

    def _load(self, s, y0, x0) -> dict:
        raw = super()._load(s, y0, x0)
        for j, c in enumerate(self.plan.channels):
            t = self.neighbour(s, c.offset)
            raw[j] = (self.src.load([c.name], t, y0, x0, self.th, self.tw)[0] if t is not None
                      else np.full((self.th, self.tw), np.nan, np.float32))
        return raw

    def normalise(self, x, s):
        """``x`` ``(C, h, w)`` of sample ``s`` normalised channel by channel."""
        if self.kind == "none":
            return x
        if self.kind == "global":
            return self.card_norm.apply(x)
        rows = [self.neighbour(s, off) for off in self.offsets]
        mean = np.array([self.ps_mean[r, b] if r is not None else 0.0 for r, b in zip(rows, self.base_index)],
                        np.float32)
        std = np.array([self.ps_std[r, b] if r is not None else 1.0 for r, b in zip(rows, self.base_index)],
                       np.float32)
        return Normalization(mean[:, None, None], std[:, None, None]).apply(x)

    def batch(self, rng, n) -> dict:
        xs, vs, kept = [], [], []
        hw, k = (self.th, self.tw), len(self.plan.channels)
        for _ in range(n):
            s, raw = self._window(rng, self.ins)
            x = np.stack([raw[v] for v in self.ins] + [raw[j] for j in range(k)])
            valid = np.isfinite(x)
            xs.append(np.where(valid, self.normalise(x, s), 0.0).astype(np.float32))
            vs.append(valid)
            target = self.kept_fn(rng, hw)
            hide = bool(rng.random() < HIDE_CONTEXT_SHARE)
            own = [self.kept_fn(rng, hw) if hide else np.ones(hw, bool) for _ in range(k)]
            kept.append(np.stack([target] * len(self.ins) + own))
        return {"x": torch.from_numpy(np.stack(xs)), "valid": torch.from_numpy(np.stack(vs)),
                "kept": torch.from_numpy(np.stack(kept))}
