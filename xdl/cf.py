"""CF conventions: valid masks from encoding attributes, grid mappings, history lines."""

from __future__ import annotations

import datetime as _dt

import numpy as np
import xarray as xr

from . import __version__


def grid_mapping_name(da: xr.DataArray) -> str | None:
    """The name of ``da``'s grid-mapping variable: xarray keeps it in attrs or, once decoded, in encoding."""
    return da.attrs.get("grid_mapping") or da.encoding.get("grid_mapping")


def carry_georeferencing(source: xr.DataArray, target: xr.DataArray) -> xr.DataArray:
    """Give ``target`` the grid mapping of ``source``, where ``source`` keeps it: in attrs after
    a plain decode, in encoding after ``decode_coords="all"`` (xarray refuses to write a variable
    that has it in both; rioxarray reads either)."""
    name = grid_mapping_name(source)
    if name:
        where = target.attrs if "grid_mapping" in source.attrs else target.encoding
        where["grid_mapping"] = name
    for key in ("coordinates",):
        if key in source.encoding:
            target.encoding[key] = source.encoding[key]
    return target


_PACKING_KEYS = ("scale_factor", "add_offset", "_Unsigned", "dtype", "_FillValue", "missing_value")


def drop_packing(obj):
    """Forget how the source file packed its coordinates (int16 + scale_factor in GOES files):
    re-packing goes through JSON/float64 in zarr and would not give back the same floats, so
    coordinates are written as the decoded values, bit for bit."""
    for coord in obj.coords.values():
        if np.issubdtype(coord.dtype, np.floating):
            for key in _PACKING_KEYS:
                coord.encoding.pop(key, None)
    return obj


def history_line(action: str) -> str:
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{now} xdl {__version__} {action}"


def append_history(attrs: dict, action: str) -> dict:
    """Return a copy of ``attrs`` with a history line added (newest first, CF/NCO habit)."""
    attrs = dict(attrs)
    previous = attrs.get("history")
    line = history_line(action)
    attrs["history"] = f"{line}\n{previous}" if previous else line
    return attrs


def _encoding_or_attr(da: xr.DataArray, key: str):
    if key in da.attrs:
        return da.attrs[key], "attrs"
    if key in da.encoding:
        return da.encoding[key], "encoding"
    return None, None


def _decode(value, da: xr.DataArray):
    """Raw (packed) value -> decoded units, when xarray unpacked the variable."""
    scale = da.encoding.get("scale_factor", 1.0)
    offset = da.encoding.get("add_offset", 0.0)
    return np.asarray(value, dtype=np.float64) * scale + offset


def cf_valid_mask(da: xr.DataArray) -> xr.DataArray:
    """True where ``da`` holds a valid value by CF rules (lazy when ``da`` is).

    Invalid: non-finite; equal to ``_FillValue`` / ``missing_value`` (decoded to data units when
    xarray unpacked the variable); outside ``valid_range`` / ``valid_min`` / ``valid_max``. Those
    limits are in the packed (raw) units when the variable has ``scale_factor``/``add_offset`` in
    its encoding (CF: "valid_range ... in the same units as the packed data"), so they are
    decoded before comparing.

    >>> import xarray as xr, numpy as np
    >>> da = xr.DataArray([1.0, np.nan, -999.0, 50.0], attrs={"missing_value": -999.0, "valid_max": 10.0})
    >>> cf_valid_mask(da).values.tolist()
    [True, False, False, False]
    """
    data = da.data
    valid = np.isfinite(data) if np.issubdtype(da.dtype, np.floating) else xr.ones_like(da, dtype=bool).data
    packed = "scale_factor" in da.encoding or "add_offset" in da.encoding
    for key in ("_FillValue", "missing_value"):
        value, where = _encoding_or_attr(da, key)
        if value is None:
            continue
        values = np.atleast_1d(value)
        if where == "encoding" and packed:
            values = _decode(values, da)
        for v in values:
            valid = valid & (data != np.asarray(v).astype(da.dtype) if np.issubdtype(da.dtype, np.floating) else data != v)
    lo, hi = None, None
    valid_range, _ = _encoding_or_attr(da, "valid_range")
    if valid_range is not None and np.size(valid_range) == 2:
        lo, hi = np.asarray(valid_range).tolist()
    vmin, _ = _encoding_or_attr(da, "valid_min")
    vmax, _ = _encoding_or_attr(da, "valid_max")
    lo = vmin if vmin is not None else lo
    hi = vmax if vmax is not None else hi
    if packed:
        lo = None if lo is None else _decode(lo, da)
        hi = None if hi is None else _decode(hi, da)
        if lo is not None and hi is not None and lo > hi:  # negative scale factor
            lo, hi = hi, lo
    # A little slack: decoded limits carry float rounding of the packing.
    if lo is not None:
        valid = valid & (data >= np.float64(lo) - 1e-6 * max(abs(float(lo)), 1.0))
    if hi is not None:
        valid = valid & (data <= np.float64(hi) + 1e-6 * max(abs(float(hi)), 1.0))
    return xr.DataArray(valid, dims=da.dims, coords=da.coords, name=f"{da.name}_valid" if da.name else None)
