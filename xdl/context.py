"""Building the model input from target, context and neighbouring times (issue #15).

``inpaint(..., context=[...], time_window=k)`` gives a context model more channels after the
targets: the context variables at the same time (a static 2-D field broadcast over time), then,
for each target, its values at the time steps ``t-k .. t-1, t+1 .. t+k`` by index along the time
dim (``arr.shift``: lazy, exact, chunk-invariant; missing beyond the ends). Each context field
enters with its own valid mask (CF rules; NaN is missing) and is never modified, flagged or
output. One ``info`` row per extra channel tells the model what it is: ``[time offset, 1 if it
is a target at another time step else 0]``.

:func:`check_request` reads what the model's card accepts; :class:`ContextRequest` builds the
channels; :func:`context_model` wraps the model so that the engine calls it as ``(x, mask)``.

Example:
    >>> import numpy as np, xarray as xr
    >>> ds = xr.Dataset({"sst": (("time", "y", "x"), np.arange(12.0).reshape(3, 2, 2)),
    ...                  "depth": (("y", "x"), np.ones((2, 2)))})
    >>> request = ContextRequest(ds, ["depth"], 1)
    >>> [str(a.name) for a in request.channels([ds.sst], ("y", "x"))]
    ['depth', 'sst[t-1]', 'sst[t+1]']
    >>> request.info(1).tolist()
    [[0.0, 0.0], [-1.0, 1.0], [1.0, 1.0]]
    >>> request.channels([ds.sst], ("y", "x"))[2].values[:, 0, 0].tolist()  # sst at t+1
    [4.0, 8.0, nan]
"""

from __future__ import annotations

import hashlib
import warnings

import dask.array as da
import numpy as np
import torch
import xarray as xr

from .compose import observed_mask
from .conventions import cf, layout
from .conventions.validity import range_check
from .errors import InputError, XdlWarning
from .modelcard import CONTEXT_ANY
from .models.context import with_context
from .models.resolve import model_label
from .uncertainty import stale_sigma

__all__ = ["ContextRequest", "check_request", "context_model", "context_names", "takes_context", "window_steps",
           "DEFAULT_RULE"]

# What a context model accepts when its card says nothing (the bundled default's rule).
DEFAULT_RULE = CONTEXT_ANY


def context_names(context) -> list[str]:
    """``context`` as a list of variable names (one name may be given as a string), each once."""
    if context is None:
        return []
    names = [context] if isinstance(context, str) else list(context)
    if not all(isinstance(n, str) for n in names):
        # A DataArray's repr runs to dozens of lines: say what was given, not all of it.
        given = ", ".join(repr(n) if isinstance(n, str) else
                          f"<{type(n).__name__}{' ' + repr(n.name) if hasattr(n, 'name') else ''}>" for n in names)
        raise InputError(f"context=[{given}]: give a list of Dataset variable names (e.g. context=['C16']; put a "
                         "field into the Dataset first: ds['name'] = field).")
    if len(set(names)) != len(names):
        raise InputError(f"context={names} names a variable twice; give each once.")
    return names


def window_steps(time_window) -> int:
    """``time_window`` as a whole number of steps >= 0 (an InputError otherwise)."""
    if isinstance(time_window, (bool, np.bool_)) or not isinstance(time_window, (int, np.integer)) or time_window < 0:
        raise InputError(f"time_window={time_window!r}: time_window must be a whole number of time steps >= 0 "
                         "(1: the steps t-1 and t+1 of each variable as inputs).")
    return int(time_window)


def takes_context(model) -> bool:
    """True for a model that takes context fields: its card has ``context`` or its module ``takes_context``."""
    card = getattr(model, "card", None) or {}
    return card.get("context") is not None or getattr(getattr(model, "module", model), "takes_context", False) is True


def check_request(model, label: str, context, time_window, n_targets: int) -> tuple[list[str], int]:
    """``(context names, time_window)`` checked against what ``model`` accepts (its card's
    ``context`` rule): an :class:`InputError` naming both otherwise. ``([], 0)``: no context."""
    names, k = context_names(context), window_steps(time_window)
    card_rule = (getattr(model, "card", None) or {}).get("context") or {}
    if not names and not k and "variables" not in card_rule:  # a fitted model checks an empty request too
        return [], 0
    given = f"context={names}, time_window={k}" if names or k else "none"
    if not takes_context(model):
        raise InputError(f"model {label!r} takes no context fields (its card has no 'context'): it fills a "
                         f"variable from that variable alone, so {given} cannot be used. Pass a context "
                         "model (model=None, the bundled fill-context; or fill-unet with context_features), or drop context= "
                         "and time_window=.")
    rule = card_rule or DEFAULT_RULE
    if "variables" in rule:
        want, want_k = sorted(rule["variables"]), int(rule.get("time_window", 0))
        if set(names) != set(want) or k != want_k:
            raise InputError(f"model {label!r} was trained with context={want}, time_window={want_k}; got "
                             f"{given}. Pass those (in any order), or fit a model on this context.")
        return names, k
    max_k = int(rule.get("max_time_window", DEFAULT_RULE["max_time_window"]))
    max_fields = int(rule.get("max_fields", DEFAULT_RULE["max_fields"]))
    if k > max_k:
        raise InputError(f"time_window={k}: model {label!r} takes at most {max_k} steps each side.")
    fields = len(names) + 2 * k * n_targets
    if fields > max_fields:
        raise InputError(f"{given} makes {fields} context fields for {n_targets} variable(s); model "
                         f"{label!r} takes at most {max_fields}. Give fewer context variables or a smaller time_window.")
    return names, k


def _like(arr: xr.DataArray, target: xr.DataArray) -> xr.DataArray:
    """``arr`` on ``target``'s dims order and (dask) chunks."""
    arr = arr.transpose(*target.dims)
    if isinstance(target.data, da.Array):
        return arr.chunk(layout.data_chunks(target))
    if isinstance(arr.data, da.Array):
        return arr.compute()  # an in-memory target: its context in memory too
    return arr


class ContextRequest:
    """The extra input channels of a context model, in the contract's order (see the module)."""

    def __init__(self, ds: xr.Dataset, names: list[str], time_window: int):
        missing = [n for n in names if n not in ds.data_vars]
        if missing:
            raise InputError(f"context variables {missing} not in the dataset; it has {list(ds.data_vars)}.")
        self.ds, self.names, self.time_window = ds, list(names), int(time_window)
        self.offsets = [o for o in range(-self.time_window, self.time_window + 1) if o != 0]

    def check_targets(self, targets: list[str]) -> None:
        both = sorted(set(targets) & set(self.names))
        if both:
            raise InputError(f"{both} are both filled (variables=) and context (context=); a variable's own "
                             "other times come with time_window=, so drop them from context=.")
        # A target's own standard error from an earlier fill is no observation of anything: it was
        # read as data, then dropped from the output as stale (probe).
        own = sorted(n for n in self.names if n in {stale_sigma(self.ds, t) for t in targets})
        if own:
            raise InputError(f"context={own}: the standard error of an earlier fill of a variable being filled is "
                             "no context; drop it from context=.")

    def _field(self, name: str, target: xr.DataArray, spatial, targets=()) -> xr.DataArray:
        var = cf.unsigned_view(self.ds[name])
        wrong = [d for d in var.dims if d not in target.dims or var.sizes[d] != target.sizes[d]]
        if wrong or not set(spatial) <= set(var.dims):
            raise InputError(f"context variable {name!r} {dict(var.sizes)} is not on the grid of {target.name!r} "
                             f"{dict(target.sizes)}: it needs the same spatial dims {tuple(spatial)} (and, if it "
                             "has one, the same time dim). Regrid or select it first.")
        for d in var.dims:
            if d in var.indexes and d in target.indexes and not var.indexes[d].equals(target.indexes[d]):
                raise InputError(f"context variable {name!r} has other {d!r} coordinates than {target.name!r}; "
                                 "put it on the same grid first.")
        if var.dtype == bool:  # a land-sea mask as True/False: its values as numbers
            var = var.astype(np.float32)
        valid = observed_mask(self.ds, var, None, context=True)  # an earlier xdl fill's values are none
        field = var.where(valid)  # its own gaps: missing, the model sees its mask
        if not isinstance(field.data, da.Array) and not bool(valid.any()):  # valid values are finite
            # In memory, where it is free to see (as for a target): the model would just ignore it.
            warnings.warn(f"context variable {name!r} has no valid value at all, so it adds nothing to the fill. "
                          "Check its _FillValue/valid_range and its coordinates (xr.merge or assigning a variable "
                          "with other x/y labels leaves it all NaN).", XdlWarning, stacklevel=6)
        elif not isinstance(field.data, da.Array) and not any(isinstance(t.data, da.Array) for t in targets) \
                and not any(bool((valid.broadcast_like(t) & t.notnull()).any()) for t in targets):
            # Never beside a value of any target: nothing to learn how they relate from, where the
            # fill learns it from the scene (a 1 km band xr.merge'd onto a 2 km one: an outer join,
            # the two on disjoint pixels; probe). A model that learned it before may still use it.
            names = ", ".join(repr(str(t.name)) for t in targets)
            warnings.warn(f"context variable {name!r} has no valid value where {names} has one: a model that relates "
                          "them from the scene itself (the bundled fill-context) gets nothing from it. Are they on "
                          "different grids that xr.merge joined (each valid on its own pixels)? Put the context on "
                          "the target's grid first (coarsen, interp).", XdlWarning, stacklevel=6)
        checked = range_check(var, context=True)  # none of it data by its CF range: an error, not a blind model
        if isinstance(checked, da.Array) and isinstance(field.data, da.Array):
            field = field.copy(data=da.map_blocks(_after_check, field.data, checked, dtype=field.dtype))
        return _like(field.broadcast_like(target), target).rename(name)

    def channels(self, masked: list[xr.DataArray], spatial) -> list[xr.DataArray]:
        """The extra channels for the (masked) targets: context fields, then each target's neighbours."""
        target = masked[0]
        out = [self._field(n, target, spatial, masked) for n in self.names]
        for arr in masked:
            if not self.offsets:
                break
            time = layout.sequence_dim(arr, tuple(spatial))
            for offset in self.offsets:
                neighbour = layout.shifted(arr, time, offset)  # the value at t + offset; NaN beyond the ends
                out.append(_like(neighbour, arr).rename(f"{arr.name}[t{offset:+d}]"))
        return out

    def channel_names(self, targets: list[str]) -> list[str]:
        """Names for the card's statistics: context names, then each target's name per neighbour."""
        return list(self.names) + [t for t in targets for _ in self.offsets]

    def standardise_like(self, n_targets: int) -> list[int]:
        """Per input channel (targets, then :meth:`channels`), the channel whose per-sample mean and
        std it may take (:func:`xdl.normalize.for_input`): its own; a target's neighbouring steps the target's."""
        return list(range(n_targets + len(self.names))) + [i for i in range(n_targets) for _ in self.offsets]

    def info(self, n_targets: int) -> np.ndarray:
        rows = [[0.0, 0.0]] * len(self.names) + [[float(o), 1.0] for _ in range(n_targets) for o in self.offsets]
        return np.array(rows, np.float32).reshape(-1, 2)


def context_model(model, spec, info: np.ndarray, base_key: str):
    """``model`` wrapped to take ``info``'s context channels, as an ``xdl.Model`` whose card
    matches the wrapper, and its resident-copy key (``base_key`` and ``info``: two calls with
    other context never share a copy)."""
    from .modelfile import Model

    module = getattr(model, "module", model)
    n = spec.in_channels
    try:
        wrapper = with_context(module, torch.as_tensor(info))
    except ValueError as error:  # a module without takes_context, or too many fields for it
        raise InputError(f"model {model_label(model)!r} cannot take these context fields: {error}.") from None
    card = dict(getattr(model, "card", None) or {})
    outputs = card.get("outputs") or []
    card.update({"mode": "spatial", "in_channels": n + len(info), "out_channels": spec.out_channels,
                 "target_channels": n, "halo": spec.halo, "size_multiple": spec.size_multiple,
                 "takes_mask": True, "takes_domain": spec.takes_domain, "fills_gaps": True,
                 "min_tile": spec.min_tile, "cpu_bf16": spec.cpu_bf16, "cpu_threads": spec.cpu_threads,
                 "inputs": [],
                 "outputs": outputs if len(outputs) == spec.out_channels else []})
    digest = hashlib.sha256(base_key.encode() + np.ascontiguousarray(info, np.float32).tobytes()).hexdigest()
    return Model(wrapper, card=card), digest


def _after_check(block, checked):
    """``block`` as it is, once the lazy ``checked`` (a range check that raises) has run."""
    return block
