"""The model card's schema: its keys in their documented order and the checks of their types and ranges.

The engine trusts a card (it sizes tiles and allocations from it), so every card, from a user or
from a file, passes :func:`check_card` first.
"""

from __future__ import annotations

import math
import numbers

from .errors import InputError
from .models import registry

__all__ = ["CARD_KEYS", "CARD_LIMITS", "CONTEXT_ANY", "MAX_DEPTH", "MAX_TIME_WINDOW", "check_card", "json_depth", "sigma_name",
           "short"]

MAX_DEPTH = 32  # nesting of the card's JSON: deeper would only exhaust recursion (deepcopy)

# Card keys in a stable, documented order (see Model).
CARD_KEYS = ("architecture", "config", "mode", "in_channels", "out_channels", "size_multiple", "halo",
             "takes_mask", "fills_gaps", "inputs", "outputs", "units", "output_units", "standard_names",
             "normalization", "training", "metrics", "description", "xdl_version")


# Ranges of the card's numbers: each bounds what the engine allocates or loops over for a tile
# (a halo of 10**12 asked for 14.6 TiB), as large as the zoo's deepest models declare (a fill-unet
# of depth 9: halo 2048). A card may not claim more halo than its module declares (see
# modelfile): 4096 on fill-context made 10304 x 10304 tiles of a 2100 x 2100 field, 10 GB (fuzzing).
CARD_LIMITS = {"in_channels": (1, registry.MAX_IO_CHANNELS), "out_channels": (1, registry.MAX_IO_CHANNELS),
               "size_multiple": (1, 4096), "halo": (0, 4096), "min_tile": (0, 8192),
               "cpu_threads": (1, 4096)}
MAX_TIME_WINDOW = 8       # neighbouring time steps each side a context model may be given
MAX_CONTEXT_FIELDS = 64   # as xdl.models.context.MAX_CONTEXT_FIELDS
# The "context" entry of a model that takes any context (the bundled default): a model fit on a
# user's data records {"variables": [...], "time_window": k} instead and takes only that.
CONTEXT_ANY = {"accepts": "any", "max_fields": 32, "max_time_window": 3}
_MODES = (None, "spatial", "pointwise", "volume")
_NORM_KINDS = ("none", "global", "per_sample")
_FLOAT32_MAX = 3.4e38
# The smallest normalisation std: dividing by 1e-38 overflowed float32 and every fill came back
# NaN, blamed on the weights (fuzzing); trace gases in mol/mol vary by 1e-10.
MIN_STD = 1e-20


def module_mode(module):
    """A module's ``mode`` attribute when it is one of xdl's engine modes, else None: torch's own
    modules name other things so (``nn.Upsample``'s "nearest", a user's "bilinear"), and those
    were refused as xdl's mode (probe).

    >>> import torch
    >>> module_mode(torch.nn.Upsample(scale_factor=1)), module_mode(type("M", (), {"mode": "volume"})())
    (None, 'volume')
    """
    mode = getattr(module, "mode", None)
    return mode if isinstance(mode, str) and mode in _MODES else None


def short(v, n=80):
    r = repr(v)
    return r if len(r) <= n else r[:n] + "..."


def sigma_name(name: str) -> str:
    """The name of ``name``'s standard error: a variable's, and a sigma model's output channel's."""
    return f"{name}_sigma"


def check_card(card: dict) -> None:
    """Check the types and ranges of a card's fields (those present); :class:`InputError` naming
    the key otherwise. Numbers: :data:`CARD_LIMITS`; ``inputs``/``outputs`` lists of names;
    ``units``/``output_units``/``standard_names`` ``{name: text}``; ``normalization`` a dict with a
    known ``kind`` and finite ``mean``/``std`` (std > 0); nesting at most 32 deep.

    >>> check_card({"halo": 10 ** 12})
    Traceback (most recent call last):
    ...
    xdl.errors.InputError: card 'halo' must be a whole number in [0, 4096], got 1000000000000
    """
    if not isinstance(card, dict):
        raise InputError(f"card must be a JSON object (dict), got {type(card).__name__}")
    if json_depth(card) > MAX_DEPTH:
        raise InputError(f"card is nested more than {MAX_DEPTH} levels deep")

    def fail(key, want, v):
        raise InputError(f"card {key!r} must be {want}, got {short(v)}")

    for key, (lo, hi) in CARD_LIMITS.items():
        if card.get(key) is not None:
            try:
                registry.check_int(f"card {key!r}", card[key], lo, hi)
            except ValueError as e:
                raise InputError(str(e)) from None
    for key in ("architecture", "xdl_version", "description"):
        if card.get(key) is not None and not isinstance(card[key], str):
            fail(key, "a string", card[key])
    for key in ("config", "training", "metrics"):
        if card.get(key) is not None and not isinstance(card[key], dict):
            fail(key, "a JSON object", card[key])
    for key in ("takes_mask", "fills_gaps", "cpu_bf16"):
        if card.get(key) is not None and not isinstance(card[key], bool):
            fail(key, "true or false", card[key])
    if card.get("mode") not in _MODES:
        raise InputError(f"mode must be 'spatial', 'pointwise' or 'volume', got {short(card['mode'])}")
    for key in ("inputs", "outputs"):
        v = card.get(key)
        if v is not None and (not isinstance(v, list) or len(v) > registry.MAX_IO_CHANNELS
                              or not all(isinstance(x, str) for x in v)):
            fail(key, f"a list of at most {registry.MAX_IO_CHANNELS} variable names", v)
    for key in ("units", "output_units", "standard_names"):
        v = card.get(key)
        if v is not None and (not isinstance(v, dict) or not all(isinstance(x, str) for x in v.values())):
            fail(key, "an object {variable: text}", v)
    _check_uncertainty(card.get("uncertainty"), fail)
    _check_context(card.get("context"), fail)
    norm = card.get("normalization")
    if norm is not None:
        if not isinstance(norm, dict):
            fail("normalization", "an object like {'kind': 'global', 'mean': {var: x}, 'std': {var: x}}", norm)
        if norm.get("kind", "none") not in _NORM_KINDS:
            raise InputError(f"normalization kind must be 'none', 'global' or 'per_sample', "
                             f"got {short(norm.get('kind'))}")
        if norm.get("neighbours", "own") not in ("own", "target"):
            fail("normalization neighbours", "'own' or 'target'", norm.get("neighbours"))
        for stat_key in ("mean", "std"):
            v = norm.get(stat_key)
            if v is None:
                continue
            ok = isinstance(v, dict) and all(
                isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)
                and abs(x) < _FLOAT32_MAX and (stat_key == "mean" or x >= MIN_STD) for x in v.values())
            if not ok:
                fail(f"normalization {stat_key}", "an object {variable: finite number}"
                     + (f" with every std >= {MIN_STD:g}" if stat_key == "std" else ""), v)


MAX_DISTANCE_BINS = 64      # distance-to-data bins of a sigma calibration
MAX_DISTANCE = 4096         # pixels: the last bin edge is inpaint's halo for the distances (as CARD_LIMITS' halo)


def _check_uncertainty(v, fail) -> None:
    """``{"kind": "gaussian", "scale": s > 0, ...}``: the model's second half of outputs are sigmas;
    optional ``scale_by_input`` ({"single" / "context" / "time": s > 0}) and ``distance_bins`` (increasing pixel edges in [0, 4096]) with as many ``distance_scales``
    (factors in (0, 1e6)), at most 64."""
    if v is None:
        return
    scale = v.get("scale", 1.0) if isinstance(v, dict) else None
    if (not isinstance(v, dict) or v.get("kind") != "gaussian" or not _positive(scale)):
        fail("uncertainty", "an object {'kind': 'gaussian', 'scale': a number > 0}", v)
    by_input = v.get("scale_by_input")
    if by_input is not None and not (isinstance(by_input, dict) and set(by_input) <= {"single", "context", "time"}
                                     and all(_positive(x) for x in by_input.values())):
        fail("uncertainty scale_by_input", "an object {'single' / 'context' / 'time': a number > 0}", by_input)
    bins, scales = v.get("distance_bins"), v.get("distance_scales")
    if bins is None and scales is None:
        return
    want = (f"lists of 1 to {MAX_DISTANCE_BINS} increasing pixel edges in [0, {MAX_DISTANCE}] and as many "
            "factors > 0 (one per bin, the last open-ended)")
    if not (isinstance(bins, list) and isinstance(scales, list) and 1 <= len(bins) == len(scales) <= MAX_DISTANCE_BINS
            and all(_positive(f) for f in scales) and all(_real(e) and 0 <= e <= MAX_DISTANCE for e in bins)
            and all(a < b for a, b in zip(bins, bins[1:]))):
        fail("uncertainty distance_bins/distance_scales", want, {"distance_bins": bins, "distance_scales": scales})


def _real(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


def _positive(x) -> bool:
    return _real(x) and 0 < x < 1e6


def _check_context(v, fail) -> None:
    """``CONTEXT_ANY``-like (bounds) or ``{"variables": [names], "time_window": k}``."""
    if v is None:
        return
    want = ("an object {'accepts': 'any', 'max_fields': n, 'max_time_window': k} or "
            "{'variables': [names], 'time_window': k}")
    if not isinstance(v, dict):
        fail("context", want, v)

    def whole(key, hi):
        x = v.get(key, 0)
        return isinstance(x, numbers.Integral) and not isinstance(x, bool) and 0 <= x <= hi

    if v.get("accepts") == "any":
        if not (whole("max_fields", MAX_CONTEXT_FIELDS) and whole("max_time_window", MAX_TIME_WINDOW)):
            fail("context", want, v)
        return
    names = v.get("variables", [])
    if (not isinstance(names, list) or len(names) > MAX_CONTEXT_FIELDS or not all(isinstance(x, str) for x in names)
            or not whole("time_window", MAX_TIME_WINDOW)):
        fail("context", want, v)


def json_depth(obj) -> int:
    """Nesting depth of a parsed JSON value (iterative: a deep value must not recurse)."""
    depth, level = 0, [obj]
    while level:
        depth += 1
        if depth > MAX_DEPTH:
            return depth
        nxt = []
        for o in level:
            if isinstance(o, dict):
                nxt.extend(o.values())
            elif isinstance(o, list):
                nxt.extend(o)
        level = [o for o in nxt if isinstance(o, (dict, list))]
    return depth - 1 if depth else 0
