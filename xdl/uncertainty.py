"""Per-pixel uncertainty outputs (issue #16): which models give a sigma, and the ``<var>_sigma``
variable that ``inpaint(uncertainty=True)`` and ``predict`` return beside each value.

A model gives a sigma when its card has ``"uncertainty"`` (``{"kind": "gaussian", "scale": s,
...}``: its sigma, in normalised units, times ``s``) or, for a plain module, when its ``sigma``
attribute is True; it then returns ``n`` means followed by ``n`` sigmas.

Example:
    >>> import numpy as np
    >>> sigma_block(np.array([True, False, False]), np.array([0, 1, 2], np.int8),
    ...             np.array([9.0, 0.5, 0.5], np.float32), dtype=np.dtype("f4")).tolist()
    [0.0, 0.5, nan]
"""

from __future__ import annotations

import math

import numpy as np
import xarray as xr

from .errors import InputError

__all__ = ["sigma_scale", "require_sigma", "sigma_block", "sigma_attrs", "sigma_name", "FILLED"]

FILLED = 1  # the flag of a pixel the model filled (xdl.inpaint.FLAG_FILLED)


def sigma_scale(model) -> float | None:
    """The factor on the model's sigma output, or None when the model gives no sigma."""
    card = getattr(model, "card", None) or {}
    spec = card.get("uncertainty")
    if spec is None:
        return 1.0 if getattr(getattr(model, "module", model), "sigma", False) is True else None
    scale = spec.get("scale", 1.0) if isinstance(spec, dict) else None
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
        raise InputError(f"the model card's uncertainty {spec!r} is not understood: it needs a 'scale' > 0 "
                         "(the factor on the model's sigma), e.g. {'kind': 'gaussian', 'scale': 1.0}.")
    return float(scale)


def require_sigma(model, label: str) -> float:
    """:func:`sigma_scale`, or an :class:`InputError` for a model without a sigma output."""
    scale = sigma_scale(model)
    if scale is None:
        raise InputError(f"uncertainty=True but model {label!r} gives no sigma (its card has no "
                         "'uncertainty'); use a model with a sigma head (e.g. fill-unet with sigma=True, "
                         "fitted) or drop uncertainty=True.")
    return scale


def sigma_name(name: str) -> str:
    return f"{name}_sigma"


def sigma_block(valid, flags, sigma, *, dtype):
    """One block of ``<var>_sigma``: 0 where the input was valid, the model's sigma where it
    filled the pixel (flag 1), NaN elsewhere (nothing filled: no error to give)."""
    sigma = np.asarray(sigma).astype(dtype, copy=False)
    filled = np.where(flags == FILLED, sigma, dtype.type(np.nan))
    return np.where(valid, dtype.type(0), filled).astype(dtype, copy=False)


def sigma_attrs(source: xr.DataArray, what: str = "gap-filled") -> dict:
    """CF attributes of the standard error of ``source`` (standard-name modifier ``standard_error``)."""
    name = source.name
    attrs = {"long_name": f"standard error of the {what} {name}"}
    if "units" in source.attrs:
        attrs["units"] = source.attrs["units"]
    if source.attrs.get("standard_name"):
        attrs["standard_name"] = f"{source.attrs['standard_name']} standard_error"
    return attrs


def link(attrs: dict, name: str) -> None:
    """Add ``name`` to ``attrs['ancillary_variables']`` (once)."""
    ancillary = str(attrs.get("ancillary_variables", "")).split()
    if name not in ancillary:
        ancillary.append(name)
    attrs["ancillary_variables"] = " ".join(ancillary)
