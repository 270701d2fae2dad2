"""Which valid pixels ``evaluate`` hides: gap patterns drawn, copied or given, on the valid pixels.

A gap spec is a kind name from :data:`xdl.masks.KINDS` (drawn for a share of the pixels),
``"observed"`` (the gap pattern of real observations, laid over the data) or a bool array of the
pixels to hide. :func:`hide` intersects the pattern with the pixels that may be hidden (valid and
inside the domain) and redraws a generated kind until about ``fraction`` of those are hidden.

>>> import numpy as np
>>> specs = gap_specs(["scanlines", "blocks"], None)
>>> [label for label, _ in specs]
['scanlines', 'blocks']
>>> eligible = np.ones((64, 64), bool)
>>> h = hide("blocks", eligible.shape, 0.1, (0, 0, 0), None, None, eligible)
>>> bool(abs(h.mean() - 0.1) <= 0.005)
True
"""

from __future__ import annotations

import warnings

import numpy as np
import xarray as xr

from . import masks
from .errors import InputError, XdlWarning

__all__ = ["gap_specs", "hide", "broadcast_bool", "stream_key"]


def gap_specs(gaps, observed) -> list[tuple[str, object]]:
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


def broadcast_bool(value, arr: xr.DataArray, what: str) -> np.ndarray:
    """A numpy bool array of ``arr``'s shape (and dim order) from a DataArray/ndarray mask."""
    from .conventions.validity import as_mask

    if isinstance(value, np.ndarray) and value.shape != arr.shape:
        # A (y, x) array for a field with leading dims: the same pixels in every sample.
        if value.shape == arr.shape[-2:]:
            value = xr.DataArray(value, dims=arr.dims[-2:])
    m = as_mask(value, arr, what)
    return np.asarray(m.broadcast_like(arr).transpose(*arr.dims).values, dtype=bool)


def _pattern(spec, shape, fraction, rng, arr, observed) -> np.ndarray:
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
    return broadcast_bool(spec, arr, "gaps")


# A gap kind's place in the random-stream key: fixed per kind, so that adding a kind to ``gaps=``
# or reordering them never changes another kind's pattern (the standard three keep the positions
# they had in ``gaps=["scanlines", "blocks", "clouds"]``, and with them earlier results).
_KIND_KEYS = {"scanlines": 0, "blocks": 1, "clouds": 2, "irregular": 3, "observed": 4}


def stream_key(label: str, position: int) -> int:
    """The gap kind's part of :func:`hide`'s ``key``: fixed for each named kind, the position in
    ``gaps=`` for a custom mask (which draws nothing at random)."""
    return _KIND_KEYS.get(label, len(_KIND_KEYS) + position)


def hide(gspec, shape, fraction, key, arr, observed, eligible) -> np.ndarray:
    """The pixels to hide: the gap pattern restricted to the valid pixels inside the domain.

    Generated kinds are drawn for ``fraction`` of all pixels; where the data already have large
    gaps (clouds over cloud), fewer valid pixels fall under them, so the draw is repeated with a
    corrected fraction until the share of *valid* pixels hidden is near ``fraction``. Each draw
    restarts the same random stream (one per seed, variable and gap kind: adding a kind never
    changes another's gaps), so a cloud field keeps its shape and only its threshold moves.
    """
    n = max(int(eligible.sum()), 1)
    target, best = fraction, None
    low, high = 0.0, 1.0  # drawn fractions known to hide too little / too much (the share grows with it)
    for _ in range(12):
        rng = np.random.default_rng(key)
        hidden = _pattern(gspec, shape, target, rng, arr, observed) & eligible
        share = hidden.sum() / n
        if best is None or abs(share - fraction) < abs(best[1] - fraction):
            best = (hidden, share)
        if not isinstance(gspec, str) or gspec == "observed" or abs(share - fraction) <= 0.05 * fraction:
            break
        if share < fraction:
            low = max(low, target)
        else:
            high = min(high, target)
        step = target * 2 if share <= 0 else target * fraction / share
        # The proportional step while it stays inside what is known; else halfway: a cloud field
        # that mostly lies over existing gaps (sea around a country) once jumped between 5% and
        # 100% and hid 0.14% of the valid pixels for 5% asked.
        target = float(step if low < step < high else (low + high) / 2)
    if isinstance(gspec, str) and gspec != "observed" and not 0.5 * fraction <= best[1] <= 1.5 * fraction:
        warnings.warn(f"gaps={gspec!r}: hid {best[1]:.2%} of the valid pixels in the domain where "
                      f"fraction={fraction} asked for {fraction:.2%} (the pattern fits the data's own gaps badly); "
                      "the scores rest on fewer pixels (see the report's n).", XdlWarning, stacklevel=3)
    return best[0]
