"""CF conventions: valid masks from encoding attributes, grid mappings, history lines."""

from __future__ import annotations

import datetime as _dt

import numpy as np
import xarray as xr

from ..version import __version__


def grid_mapping_name(da: xr.DataArray) -> str | None:
    """The name of ``da``'s grid-mapping variable: xarray keeps it in attrs or, once decoded, in encoding."""
    return da.attrs.get("grid_mapping") or da.encoding.get("grid_mapping")


def code_kind(da: xr.DataArray) -> str | None:
    """What kind of CF metadata variable ``da`` is, if it is one whose values are codes rather than a
    field ("a flag variable", "a grid-mapping variable"), else None.

    >>> code_kind(xr.DataArray([1, 2], attrs={"flag_masks": [1, 2], "flag_meanings": "a b"}))
    'a flag variable'
    """
    if any(key in da.attrs for key in ("flag_values", "flag_meanings", "flag_masks")) and own_flag_codes(da) is None:
        return "a flag variable"
    if "grid_mapping_name" in da.attrs:
        return "a grid-mapping variable"
    return None


# Meanings of a data variable's own flag codes that say only that the value is missing there: a
# gap like any other. Any other code (land, coast, lake, pole hole...) says what lies there.
_MISSING_WORDS = {"missing", "fill", "nodata", "no_data", "invalid", "unknown", "bad", "not_available"}


def own_flag_codes(da: xr.DataArray) -> list[tuple[float, str]] | None:
    """``(code, meaning)`` of each CF ``flag_values`` entry of a data variable whose codes all lie
    outside its valid range (NOAA/NSIDC sea-ice concentration: 0..100 valid, 251..255 pole hole,
    lakes, coast, land, missing), each code in the units of ``da``'s values; None for a variable
    without such codes (a flag variable proper, or one without a valid range).

    >>> v = xr.DataArray(np.zeros(2, "f4"), attrs={"valid_range": np.array([0, 100], "u1"),
    ...     "flag_values": np.array([253, 254], "u1"), "flag_meanings": "coastal land_mask"})
    >>> v.encoding.update(scale_factor=0.01)
    >>> [(round(c, 2), m) for c, m in own_flag_codes(v)]
    [(2.53, 'coastal'), (2.54, 'land_mask')]
    """
    values = da.attrs.get("flag_values")
    meanings = str(da.attrs.get("flag_meanings", "")).split()
    if values is None or "flag_masks" in da.attrs or np.size(values) != len(meanings) or not meanings:
        return None
    values = np.atleast_1d(np.asarray(values))
    if not np.issubdtype(values.dtype, np.number):
        return None
    lo, hi = valid_limits(da)
    if (lo is None and hi is None) or (lo is not None and hi is not None and lo > hi):
        return None  # no range, or an empty one (valid_range 0, -1 of a signed flag byte)
    # Land 254 of an _Unsigned byte is -2 in the file, as are its fill values.
    as_read = _unsigned_twin if _decoded_unsigned(da) else np.asarray
    values = as_read(values)
    # A code that is also the fill value is NaN once decoded: land there cannot be told from a
    # gap, so such a variable stays a flag variable, refused (it was filled as sea ice; review).
    fills = [np.ravel(as_read(f)) for f in (_encoding_or_attr(da, key)[0] for key in _FILL_KEYS) if f is not None]
    surfaces = [v for v, m in zip(values, meanings) if not _only_missing(m.lower())]
    if any(np.isin(surfaces, f).any() for f in fills):
        return None
    codes = _decode(values, da) if _packed(da) else values.astype(np.float64)
    inside = np.ones(codes.shape, bool)
    if lo is not None:
        inside &= codes >= lo
    if hi is not None:
        inside &= codes <= hi
    if inside.any():
        return None
    return [(float(c), m.lower()) for c, m in zip(codes, meanings)]


def _only_missing(meaning: str) -> bool:
    """Whether a flag code's ``meaning`` says only "no value here" (a gap to fill)."""
    return bool(set(meaning.split("_")) & _MISSING_WORDS) or meaning in _MISSING_WORDS


def own_flag_code_mask(da: xr.DataArray, surfaces_only: bool = False) -> xr.DataArray | None:
    """True where ``da`` holds one of its own flag codes (:func:`own_flag_codes`); with
    ``surfaces_only`` only the codes that say what lies there (land, coast, lake, pole hole), not
    only that the value is missing. None where there are no such codes."""
    codes = own_flag_codes(da) or []
    kept = [code for code, meaning in codes if not (surfaces_only and _only_missing(meaning))]
    if not kept:
        return None
    # Decoded values carry the packing's rounding (2.54 in float32 for the count 254 x 0.01).
    step = abs(float(da.encoding.get("scale_factor", 0.0))) / 2 if _packed(da) else 0.0
    out = None
    for code in kept:
        here = abs(da - code) <= step if step else da == code
        out = here if out is None else out | here
    return out.drop_vars([c for c in out.coords if c not in out.dims])


def carry_georeferencing(source: xr.DataArray, target: xr.DataArray) -> xr.DataArray:
    """Give ``target`` the grid mapping of ``source``, where ``source`` keeps it: in attrs after
    a plain decode, in encoding after ``decode_coords="all"`` (xarray refuses to write a variable
    that has it in both; rioxarray reads either)."""
    name = grid_mapping_name(source)
    if name:
        where = target.attrs if "grid_mapping" in source.attrs else target.encoding
        where["grid_mapping"] = name
    # The source's CF `coordinates`, naming only coordinates the target has: GOES's "band_id
    # band_wavelength t y x" named two variables a predict output's file did not hold (probe).
    names = str(source.encoding.get("coordinates", "")).split()
    kept = [n for n in names if n in target.coords]
    if kept:
        target.encoding["coordinates"] = " ".join(kept)
    else:
        target.encoding.pop("coordinates", None)
    return target


_PACKING_KEYS = ("scale_factor", "add_offset", "_Unsigned", "dtype", "_FillValue", "missing_value")


def drop_packing(obj):
    """Forget how the source file packed its coordinates (int16 + scale_factor in GOES files):
    re-packing goes through JSON/float64 in zarr and would not give back the same floats, so
    coordinates are written as the decoded values, bit for bit. Float coordinates also lose a
    ``scale_factor``/``add_offset``/``_Unsigned`` left in their attributes (GDAL copies a GOES
    GeoTIFF's fixed-grid packing onto x/y in metres): every reader of the output would apply it again."""
    for name, coord in obj.coords.items():
        if np.issubdtype(coord.dtype, np.floating):
            for key in _PACKING_KEYS:
                coord.encoding.pop(key, None)
            for key in ("scale_factor", "add_offset", "_Unsigned"):
                coord.attrs.pop(key, None)
            if coord.dims == (name,):  # a CF coordinate variable has no _FillValue (xarray gives floats NaN)
                coord.encoding["_FillValue"] = None
    return obj


def bounds_names(var) -> list[str]:
    """The variables ``var``'s CF ``bounds`` and ``climatology`` name (in its attrs, or in its encoding
    after ``decode_coords``).

    >>> bounds_names(xr.DataArray([0.0], dims="time", attrs={"bounds": "time_bnds"}))
    ['time_bnds']
    """
    names = (var.attrs.get(key) or var.encoding.get(key) for key in ("bounds", "climatology"))
    return [n for n in names if isinstance(n, str) and n]


def drop_dangling_references(obj):
    """Forget a coordinate's CF ``bounds``/``climatology`` naming a variable that ``obj`` (a result)
    does not hold, and a DataArray's ``ancillary_variables`` names it does not hold: a DataArray's
    output wrote ``t:bounds = "time_bounds"`` without ``time_bounds``, and GOES ``LST`` named
    ``DQF`` (CF errors; probes). A Dataset's ancillaries are :func:`drop_absent_ancillaries`'."""
    names = set(obj.variables) if isinstance(obj, xr.Dataset) else set(obj.coords) | {obj.name}
    for coord in obj.coords.values():
        for key in ("bounds", "climatology"):
            for where in (coord.attrs, coord.encoding):
                if key in where and str(where[key]) not in names:
                    del where[key]
    if isinstance(obj, xr.DataArray):
        drop_absent_ancillaries(obj)
    return obj


# A zarr source's codec and chunk encodings (netCDF's chunks are "chunksizes").
ZARR_CODEC_KEYS = ("compressors", "compressor", "filters", "serializer")
ZARR_CHUNK_KEYS = ("chunks", "preferred_chunks", "shards")


def drop_stale_storage(obj):
    """Forget storage encodings that would stop ``obj.to_zarr(new)``: zarr v2 codecs of a v2 source
    (zarr 3 writes v3 and refuses them: "Expected a BytesBytesCodec"), and stored chunks or shards
    that the variable's dask chunks no longer align with (a variable passed through as opened with
    other chunks: "would overlap multiple Dask chunks"; probe). xarray's own choice then applies."""
    import dask.array as da

    variables = obj.variables.values() if isinstance(obj, xr.Dataset) else [obj.variable, *obj.coords.values()]
    for var in variables:
        encoding = var.encoding
        if any(_is_v2_codec(encoding.get(key)) for key in ZARR_CODEC_KEYS):
            for key in ZARR_CODEC_KEYS:
                encoding.pop(key, None)
        data = var.data
        if isinstance(data, da.Array) and any(key in encoding for key in ZARR_CHUNK_KEYS):
            stored = encoding.get("shards") or encoding.get("chunks")
            if not _aligned(data.chunks, stored):
                for key in ZARR_CHUNK_KEYS:
                    encoding.pop(key, None)
    return obj


def _is_v2_codec(value) -> bool:
    """True for numcodecs codecs (zarr v2's), alone or in a list."""
    values = value if isinstance(value, (list, tuple)) else [value]
    return any(type(v).__module__.startswith("numcodecs") for v in values if v is not None)


def _aligned(chunks, stored) -> bool:
    """Whether dask ``chunks`` cut only at multiples of the ``stored`` chunk shape (the last may be short)."""
    if not stored or len(stored) != len(chunks):
        return not stored
    return all(all(c % s == 0 for c in cs[:-1]) for cs, s in zip(chunks, stored) if s)


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


def drop_absent_ancillaries(ds, names=None):
    """Remove from each variable's ``ancillary_variables`` (of the variables ``names`` only, if given)
    the names that are not in ``ds`` (in place; returns ``ds``): a DataArray's attribute can name a
    quality flag of the file it came from (GOES ``Rad`` names ``DQF``), which a new Dataset built
    from it, or a user's Dataset of ``Rad`` alone, does not hold, and CF asks that the names exist.
    ``ds`` may be a DataArray: its own attribute, against its coordinates.

    >>> ds = xr.Dataset({"Rad": ((), 1.0, {"ancillary_variables": "DQF Rad_sigma"}), "Rad_sigma": ((), 0.1)})
    >>> drop_absent_ancillaries(ds).Rad.attrs["ancillary_variables"]
    'Rad_sigma'
    """
    if isinstance(ds, xr.DataArray):
        held, variables = set(ds.coords) | {ds.name}, [ds.variable]
    else:
        held = ds.variables
        variables = ds.variables.values() if names is None else (ds.variables[n] for n in names)
    for var in variables:
        listed = str(var.attrs.get("ancillary_variables", "")).split()
        if not listed:
            continue
        kept = [n for n in listed if n in held]
        if kept:
            var.attrs["ancillary_variables"] = " ".join(kept)
        else:
            del var.attrs["ancillary_variables"]
    return ds


def _encoding_or_attr(da: xr.DataArray, key: str):
    if key in da.attrs:
        return da.attrs[key], "attrs"
    if key in da.encoding:
        return da.encoding[key], "encoding"
    return None, None


def _is_unsigned(da: xr.DataArray) -> bool:
    return str(da.encoding.get("_Unsigned", da.attrs.get("_Unsigned", ""))).lower() == "true"


def unsigned_view(da: xr.DataArray) -> xr.DataArray:
    """``da`` as its unsigned twin where it holds raw signed integers marked ``_Unsigned = "true"``
    (opened with ``mask_and_scale=False``, which leaves the mark in its attrs), its fill values and
    limits reinterpreted alike; else ``da`` itself. Read as signed, counts above 32767 wrapped to
    negatives: the fill interpolated across the wrap, and a float output (which has no sign to
    reinterpret, so loses the mark) decoded to -327 K where the file meant 327 (probe).

    >>> raw = xr.DataArray(np.array([-1, 5, -32768], "i2"), attrs={"_Unsigned": "true", "_FillValue": np.int16(-1),
    ...                                                         "missing_value": -1.0})
    >>> v = unsigned_view(raw)
    >>> v.values.tolist(), int(v.attrs["_FillValue"]), float(v.attrs["missing_value"]), "_Unsigned" in v.attrs
    ([65535, 5, 32768], 65535, 65535.0, False)
    """
    if not (_is_unsigned(da) and np.issubdtype(da.dtype, np.signedinteger)):
        return da
    unsigned = np.dtype(da.dtype.str.replace("i", "u"))
    info = np.iinfo(da.dtype)
    attrs = {k: v for k, v in da.attrs.items() if k != "_Unsigned"}
    for key in _FILL_KEYS + _RANGE_KEYS + ("flag_values",):
        if key not in attrs:
            continue
        value = np.asarray(attrs[key])
        if not np.issubdtype(value.dtype, np.number):
            continue
        # Signed values, and whole numbers of another type (a float missing_value -1.0 is no less
        # the count -1: left as it was, those pixels became observations of 65535; probe).
        if not (np.all(value == np.round(value)) and np.all((value >= info.min) & (value < -info.min))):
            continue
        negative = value < 0
        if not negative.any():
            continue
        as_type = unsigned if np.issubdtype(value.dtype, np.integer) else value.dtype
        twin = value.astype(da.dtype).view(unsigned).astype(as_type)
        attrs[key] = twin if twin.ndim else twin.dtype.type(twin)
    out = da.copy(data=da.data.view(unsigned))
    out.attrs = attrs
    return out


def _decode(value, da: xr.DataArray):
    """Raw (packed) value -> decoded units, when xarray unpacked the variable. ``_Unsigned``
    signed integers are read as their unsigned twins first, as netCDF readers do."""
    raw = _unsigned_twin(value) if _is_unsigned(da) else np.asarray(value)
    scale = da.encoding.get("scale_factor", 1.0)
    offset = da.encoding.get("add_offset", 0.0)
    return raw.astype(np.float64) * scale + offset


_ZERO_TO_ONE = {"(0 - 1)", "(0-1)", "0-1"}  # units that say the bounds themselves (ERA5)
_UNIT_ONE = {"1", "", "fraction", "dimensionless"} | _ZERO_TO_ONE
_PERCENT = {"%", "percent"}


def physical_limits(da: xr.DataArray) -> tuple[float | None, float | None]:
    """Bounds a decoded variable without a CF valid range has by its nature: 0-1 (0-100 in %) for
    a CF ``*_fraction`` standard name or ``relative_humidity`` (or "fraction" or "humidity" in its
    long_name) in units 1 (or %), and for units "(0 - 1)" (ERA5's
    sea-ice and cloud cover); ``(None, None)`` otherwise, or for raw packed counts. Sea-ice
    fractions were filled up to 1.10 and relative humidity to 109.5% (probe).

    >>> physical_limits(xr.DataArray([0.5], attrs={"standard_name": "relative_humidity", "units": "%"}))
    (0.0, 100.0)
    """
    if "scale_factor" in da.attrs or "add_offset" in da.attrs:
        return None, None  # raw counts (mask_and_scale=False): not in the units the names speak of
    name = str(da.attrs.get("standard_name", "")).strip()
    units = str(da.attrs.get("units", "")).strip().lower()
    words = set(str(da.attrs.get("long_name", "")).lower().replace("_", " ").split())
    bounded = name.endswith("_fraction") or name == "relative_humidity" or bool(words & {"fraction", "humidity"})
    if units in _ZERO_TO_ONE or (bounded and units in _UNIT_ONE):
        return 0.0, 1.0
    if bounded and units in _PERCENT:
        return 0.0, 100.0
    return None, None


_CIRCULAR_UNITS = {"degree", "degrees", "deg", "rad", "radian", "radians"}


def is_angle(da: xr.DataArray) -> bool:
    """Whether ``da`` holds directions, which wrap (359 and 1 degrees are 2 apart): a CF
    ``*_direction`` standard name, or angle units with "direction" in its name or long_name."""
    name = str(da.attrs.get("standard_name", ""))
    if name.endswith("_direction") or "_direction_" in name:
        return True
    text = f"{da.name} {da.attrs.get('long_name', '')}".lower()
    return str(da.attrs.get("units", "")).strip().lower() in _CIRCULAR_UNITS and "direction" in text


def _decoded_unsigned(da: xr.DataArray) -> bool:
    """True when xarray read ``da``'s signed integers as unsigned (``_Unsigned`` in its encoding):
    its attributes (limits, flag values) are still the signed numbers of the file."""
    return str(da.encoding.get("_Unsigned", "")).lower() == "true"


def _unsigned_twin(value):
    """A signed integer (array) as the unsigned number of the same bits (-2 int8 -> 254)."""
    raw = np.asarray(value)
    return raw.astype(raw.dtype.str.replace("i", "u")) if np.issubdtype(raw.dtype, np.signedinteger) else raw


def _packed(da: xr.DataArray) -> bool:
    """True when xarray unpacked ``da``: its valid_* attributes are then in packed (raw) units."""
    return "scale_factor" in da.encoding or "add_offset" in da.encoding


def valid_limits(da: xr.DataArray) -> tuple[float | None, float | None]:
    """``da``'s CF valid range ``(lo, hi)`` in the units of its values (None where unbounded):
    ``valid_min``/``valid_max`` win over ``valid_range``; packed limits are decoded.

    >>> import xarray as xr, numpy as np
    >>> v = xr.DataArray(np.zeros(2, "f4"), attrs={"valid_range": np.array([9200, 56000], "u2")})
    >>> v.encoding.update(scale_factor=0.0025, add_offset=190.0)
    >>> valid_limits(v)
    (213.0, 330.0)
    """
    lo, hi = None, None  # raw numpy scalars, so _Unsigned can reinterpret them
    valid_range, _ = _encoding_or_attr(da, "valid_range")
    if valid_range is not None and np.size(valid_range) == 2:
        lo, hi = np.asarray(valid_range).ravel()
    vmin, _ = _encoding_or_attr(da, "valid_min")
    vmax, _ = _encoding_or_attr(da, "valid_max")
    lo = np.asarray(vmin).ravel()[0] if vmin is not None else lo
    hi = np.asarray(vmax).ravel()[0] if vmax is not None else hi
    if _packed(da):
        lo = None if lo is None else _decode(lo, da)
        hi = None if hi is None else _decode(hi, da)
        if lo is not None and hi is not None and lo > hi:  # negative scale factor
            lo, hi = hi, lo
    elif _decoded_unsigned(da):
        lo = None if lo is None else _unsigned_twin(lo)
        hi = None if hi is None else _unsigned_twin(hi)
    return (None if lo is None else float(lo)), (None if hi is None else float(hi))


def cf_valid_mask(da: xr.DataArray) -> xr.DataArray:
    """True where ``da`` holds a valid value by CF rules (lazy when ``da`` is).

    Invalid: non-finite; equal to ``_FillValue`` / ``missing_value`` (decoded to data units when
    xarray unpacked the variable); outside ``valid_range`` / ``valid_min`` / ``valid_max``. Those
    limits are in the packed (raw) units when the variable has ``scale_factor``/``add_offset`` in
    its encoding (CF: "valid_range ... in the same units as the packed data"), so they are
    decoded before comparing (:func:`valid_limits`).

    >>> import xarray as xr, numpy as np
    >>> da = xr.DataArray([1.0, np.nan, -999.0, 50.0], attrs={"missing_value": -999.0, "valid_max": 10.0})
    >>> cf_valid_mask(da).values.tolist()
    [True, False, False, False]
    """
    valid = _present(da)
    in_range = _in_range(da)
    if in_range is not None:
        valid = valid & in_range
    return xr.DataArray(valid, dims=da.dims, coords=da.coords, name=f"{da.name}_valid" if da.name else None)


# netCDF's default fill value of float and double variables (NC_FILL_FLOAT, NC_FILL_DOUBLE): what an
# unwritten value holds when a file declares no _FillValue. netCDF4 masks it; xarray reads it as a
# number (a probe's context field with it among its values spoilt the fills beside them).
NC_DEFAULT_FILL = 9.969209968386869e36


def _present(da: xr.DataArray):
    """``da.data`` finite and not a ``_FillValue`` / ``missing_value`` (numpy or dask bool); a float
    variable that declares neither: not netCDF's default fill value either (:data:`NC_DEFAULT_FILL`),
    as netCDF4 reads it."""
    data = da.data
    present = np.isfinite(data) if np.issubdtype(da.dtype, np.floating) else xr.ones_like(da, dtype=bool).data
    packed = _packed(da)
    declared = False
    for key in ("_FillValue", "missing_value"):
        value, where = _encoding_or_attr(da, key)
        if value is None:
            continue
        declared = True
        values = np.atleast_1d(value)
        if where == "encoding" and packed:
            values = _decode(values, da)
        for v in values:
            present = present & (data != np.asarray(v).astype(da.dtype) if np.issubdtype(da.dtype, np.floating)
                                 else data != v)
    if not declared and da.dtype in (np.float32, np.float64):
        present = present & (data != da.dtype.type(NC_DEFAULT_FILL))
    return present


def _in_range(da: xr.DataArray):
    """``da.data`` inside its CF valid range (numpy or dask), or None when it has none."""
    lo, hi = valid_limits(da)
    data, result = da.data, None
    # A little slack: decoded limits carry float rounding of the packing.
    lo = None if lo is None else np.float64(lo) - 1e-6 * max(abs(lo), 1.0)
    hi = None if hi is None else np.float64(hi) + 1e-6 * max(abs(hi), 1.0)
    if data.dtype == np.float32:  # the same test without a float64 copy of the data
        lo, hi = _float32_limits(lo, hi)
    if lo is not None:
        result = data >= lo
    if hi is not None:
        above = data <= hi
        result = above if result is None else result & above
    return result


def _float32_limits(lo, hi):
    """Float32 limits that test float32 values exactly as the float64 ``lo`` and ``hi`` do: the
    smallest float32 >= ``lo``, the largest <= ``hi`` (a float32 ``x`` is >= ``lo`` exactly when it
    is >= the first float32 at or above it). A float32 array compared with a float64 scalar is
    compared in float64, a copy of the data twice the size (a CONUS band: 5 ms a test, 2.5 here).

    >>> tenth = np.float64(0.1)  # not a float32: 0.1 rounds up to one
    >>> lo, hi = _float32_limits(tenth, tenth)
    >>> bool(lo >= tenth > np.nextafter(lo, np.float32(0))), bool(hi <= tenth < np.nextafter(hi, np.float32(1)))
    (True, True)
    """
    with np.errstate(over="ignore"):
        if lo is not None:
            low = np.float32(lo)
            lo = np.nextafter(low, np.float32(np.inf)) if low < lo else low
        if hi is not None:
            high = np.float32(hi)
            hi = np.nextafter(high, np.float32(-np.inf)) if high > hi else high
    return lo, hi


def out_of_range_counts(da: xr.DataArray):
    """``(values outside the CF valid range, values)`` of ``da``, counting the finite values that
    are not ``_FillValue`` / ``missing_value`` (raw packed data keeps its fill value 4095 as an
    integer: a missing value, not a range outlier), as numpy or dask scalars (lazy when ``da`` is),
    or None when ``da`` has no valid range."""
    in_range = _in_range(da)
    if in_range is None:
        return None
    present = _present(da)
    codes = own_flag_code_mask(da)  # the variable's own flag codes are no range outliers either
    if codes is not None:
        present = present & ~codes.data
    return (present & ~in_range).sum(), present.sum()


def out_of_range_message(name, outside: int, finite: int, every: bool = False) -> str | None:
    """The warning text when more than 1% of the finite values are outside the valid range (any
    of them when ``every``: limits that may be stale, see :func:`lost_packing`)."""
    if finite == 0 or outside == 0 or (outside <= 0.01 * finite and not every):
        return None
    return (f"variable {name!r}: {outside} of its {finite} finite values ({outside / finite:.1%}) are outside "
            "its CF valid range (valid_range/valid_min/valid_max) and are treated as gaps, so they are "
            f"replaced; to keep them, pass your own rule, e.g. mask=np.isfinite(ds[{str(name)!r}]) "
            f"(CLI: --mask \"{name} > -1e30\", any rule true on every finite value).")


def lost_packing(da: xr.DataArray) -> str | None:
    """The integer type of ``da``'s valid_* attributes when ``da`` holds floats that xarray did not
    unpack (no scale_factor/add_offset in its encoding), else None. CF gives packed data's limits
    in the packed type: on floats they are raw units whose packing is gone (``.where()`` and
    arithmetic drop ``.encoding``), or integer codes that really are the data's (a quality flag
    that _FillValue turned into floats). Only the data can tell which."""
    if not np.issubdtype(da.dtype, np.floating) or _packed(da):
        return None
    for key in _RANGE_KEYS:
        value = da.attrs.get(key)
        if value is not None and np.issubdtype(np.asarray(value).dtype, np.integer):
            return str(np.asarray(value).dtype)
    return None


def no_value_in_range_message(name, finite: int, limits, packed_type: str | None, context: bool = False) -> str:
    """The error text when every finite value of a variable is outside its CF valid range
    ``limits`` (:func:`valid_limits`): none would be data, and every value would be replaced (of a
    ``context`` variable: the model would see none). ``packed_type``: :func:`lost_packing`'s answer."""
    lost = "the model would see none of them" if context else "every one would be replaced"
    text = (f"{'context ' if context else ''}variable {name!r}: all {finite} of its finite values are outside its "
            f"CF valid range [{limits[0]}, {limits[1]}], so none of them would count as data and {lost}. ")
    if packed_type:
        text += (f"The limits are of type {packed_type}, the type of packed data, but the values are floats "
                 "with no scale_factor/add_offset in .encoding: the limits are in raw units and the packing "
                 "is gone (.where() and arithmetic drop .encoding). Fill the variable as opened and give "
                 f"your own rule with mask= (e.g. ds[{str(name)!r}].dl.inpaint(mask=ds.DQF == 0)), or drop "
                 "the stale attribute (da.attrs.pop('valid_range')).")
    else:
        text += (f"Check the attribute, or give your own rule with mask= (e.g. mask=np.isfinite(ds[{str(name)!r}])).")
    return text


# ----------------------------------------------------------------------------- outputs

_RANGE_KEYS = ("valid_range", "valid_min", "valid_max")
_FILL_KEYS = ("_FillValue", "missing_value")
VALIDITY_ATTRS = _FILL_KEYS + _RANGE_KEYS  # the attributes by which CF says a value is no value
_COMPRESSION_KEYS = ("zlib", "complevel", "shuffle", "compression", "fletcher32")


def raw_missing_value(da: xr.DataArray) -> float | None:
    """The value that marks "no value" in ``da``'s values as they are, when xarray did not mask
    them (opened with ``mask_and_scale=False`` or ``decode_cf=False``: ``_FillValue`` or
    ``missing_value`` still in its attrs), else None. An output of such raw values keeps it in
    the unfilled pixels that held it, as the input did: written as NaN, netCDF4 would not mask
    them (they are not the declared fill value) while xarray reads NaN either way. (A NaN in
    float data built with such attrs stays NaN.)

    >>> import xarray as xr, numpy as np
    >>> raw_missing_value(xr.DataArray(np.zeros(2, "i2"), attrs={"_FillValue": np.int16(1023)}))
    1023.0
    >>> raw_missing_value(xr.DataArray(np.zeros(2, "f4"))) is None
    True
    """
    for key in _FILL_KEYS:
        value = da.attrs.get(key)
        if value is None or np.size(value) == 0 or not np.issubdtype(np.asarray(value).dtype, np.number):
            continue
        first = float(np.asarray(value).ravel()[0])
        return first if np.isfinite(first) else None
    return None


def output_attrs(source: xr.DataArray, dtype) -> dict:
    """The attrs of an output made from ``source`` holding decoded values of ``dtype``.

    xdl writes decoded values (it never re-packs: a fill would be rounded to the packing's step,
    and the valid values are kept as xarray decoded them, bit for bit). So packed ``valid_*``
    limits are converted to decoded units, packing attributes (scale_factor, add_offset,
    _Unsigned) are dropped, and the limits and fill values get the output's dtype: other tools
    (netCDF4, the CF checker) then read the same values that xarray reads. A ``source`` opened
    raw (``mask_and_scale=False``: packing in its attrs) keeps its packing attributes, as its
    values are still raw; only the dtypes change (and ``_Unsigned`` goes: floats have no sign to reinterpret).
    """
    dtype = np.dtype(dtype)
    attrs = dict(source.attrs)
    if own_flag_codes(source) is not None:
        # Codes the output no longer holds (xdl leaves those pixels NaN, flag 3; a missing one filled).
        for key in ("flag_values", "flag_meanings"):
            attrs.pop(key, None)
    # A CF `coordinates` left in attrs (GDAL's tags on a GeoTIFF: "band_id band_wavelength t y x")
    # names variables the output may not hold; xarray writes the attribute from the coordinates
    # the output has (and the source's encoding), so a stale copy only misleads readers.
    attrs.pop("coordinates", None)
    decoded = _packed(source)
    if decoded:
        lo, hi = valid_limits(source)
        for key in _RANGE_KEYS:
            attrs.pop(key, None)
        # CF: valid_range is of the variable's type; one attribute for both limits when both exist.
        if "valid_range" in source.attrs and lo is not None and hi is not None and \
                "valid_min" not in source.attrs and "valid_max" not in source.attrs:
            attrs["valid_range"] = np.array([lo, hi], dtype=dtype)
        else:
            if lo is not None:
                attrs["valid_min"] = dtype.type(lo)
            if hi is not None:
                attrs["valid_max"] = dtype.type(hi)
        for key in ("scale_factor", "add_offset", "_Unsigned", *_FILL_KEYS):
            attrs.pop(key, None)
    elif np.issubdtype(dtype, np.floating):
        # _Unsigned tells a reader to take signed integers as unsigned: on floats it means nothing,
        # and xarray warns on reading it back (SerializationWarning).
        attrs.pop("_Unsigned", None)
        # The packing of raw counts in the output's float type: float64 counts with a float32
        # scale_factor were decoded in float64 by netCDF4 and in float32 by xarray (6e-6 apart
        # on GOES C13); in one type, both compute counts * scale + offset alike (CF: the
        # packing attributes are of the unpacked type).
        for key in ("scale_factor", "add_offset"):
            if key in attrs and np.issubdtype(np.asarray(attrs[key]).dtype, np.floating):
                attrs[key] = dtype.type(attrs[key])
        for key in _RANGE_KEYS + _FILL_KEYS:
            if key in attrs and np.issubdtype(np.asarray(attrs[key]).dtype, np.number):
                value = np.asarray(attrs[key]).astype(dtype)
                attrs[key] = value if value.ndim else dtype.type(value)
    return attrs


def output_encoding(source: xr.DataArray) -> dict:
    """The parts of ``source``'s encoding an output of decoded values keeps: georeferencing and
    compression, and the fill values of an unpacked float variable (-999.0 in a float32 file: its
    missing pixels, outside the domain, are written as its readers expect; a probe saw them become
    NaN). Never its packing: dtype, scale_factor, add_offset, _Unsigned; a packed file's fill
    value becomes NaN, the decoded output's own.

    >>> v = xr.DataArray([1.0]); v.encoding = {"dtype": np.dtype("f4"), "_FillValue": -999.0, "zlib": True}
    >>> output_encoding(v)
    {'zlib': True, '_FillValue': -999.0}
    """
    # original_shape: xarray drops chunksizes that no longer fit when the output is a subset.
    keep = ("grid_mapping", "chunksizes", "original_shape") + _COMPRESSION_KEYS  # coordinates: carry_georeferencing
    out = {k: v for k, v in source.encoding.items() if k in keep}
    enc = source.encoding
    stored = np.dtype(enc.get("dtype", source.dtype))
    if stored.kind == "f" and source.dtype.kind == "f" and not any(k in enc for k in ("scale_factor", "add_offset")):
        fills = {k: enc[k] for k in _FILL_KEYS if k in enc and np.ndim(enc[k]) == 0}
        if len(fills) == 2 and not _same_value(*fills.values()):
            fills.pop("missing_value")  # xarray refuses to write two that differ (-999 and -9999: review)
        out.update(fills)
    elif "_FillValue" in enc and source.dtype.kind == "f":
        # A packed fill value (0 in a nodata-0 uint16 GeoTIFF read masked) means nothing among
        # decoded values: NaN marks the output's missing pixels, as xarray writes floats anyway,
        # and tells rioxarray its nodata (to_raster wrote a NaN collar with no nodata tag; probe).
        out["_FillValue"] = np.nan
    return out


def _same_value(a, b) -> bool:
    a, b = float(np.asarray(a)), float(np.asarray(b))
    return a == b or (np.isnan(a) and np.isnan(b))


DEFAULT_COMPRESSION = {"zlib": True, "complevel": 4, "shuffle": True}


def netcdf_ready(ds: xr.Dataset, hints: xr.Dataset | None = None) -> xr.Dataset:
    """A copy of ``ds`` whose encodings make a CF-clean, compressed netCDF file.

    - compression: each variable keeps its own (or ``hints``' same-named variable's) zlib/shuffle/
      level and chunk sizes (clipped to its shape); variables without any get zlib level 4 with
      shuffle;
    - no ``_FillValue`` on coordinate variables and cell bounds (CF forbids missing values in
      coordinate variables; xarray would add NaN to every float);
    - time bounds get the units and calendar of the coordinate they bound.
    """
    out = ds.copy()
    hints = ds if hints is None else hints
    bounds_of = {}
    for name, var in out.variables.items():
        for b in bounds_names(var):  # CF's climatology bounds are bounds too (probe)
            if b in out.variables:
                bounds_of[b] = name
    for name, var in out.variables.items():
        enc = var.encoding
        hint = hints.variables[name].encoding if name in hints.variables else {}
        stored = enc.get("dtype")
        if stored is not None and np.dtype(stored).isnative and np.dtype(stored).byteorder in "<>":
            # zarr 3 spells the byte order ('<i2'); netCDF4 warned that it did not match its 'native'
            enc["dtype"] = np.dtype(stored).newbyteorder("=")
        if var.ndim and var.dtype.kind in "biuf":
            if not any(k in enc for k in _COMPRESSION_KEYS) or not (enc.get("zlib") or enc.get("compression")):
                source = {k: hint[k] for k in _COMPRESSION_KEYS if k in hint}
                compressed = source.get("zlib") or source.get("compression")
                for key in _COMPRESSION_KEYS:
                    enc.pop(key, None)
                enc.update(source if compressed else DEFAULT_COMPRESSION)
            sizes = enc.get("chunksizes") or hint.get("chunksizes")
            enc.pop("contiguous", None)
            if sizes is not None and len(sizes) == var.ndim:
                enc["chunksizes"] = tuple(max(1, min(int(c), n)) for c, n in zip(sizes, var.shape))
            else:
                enc.pop("chunksizes", None)
        is_coordinate = name in out.dims and var.dims == (name,)
        if (is_coordinate or name in bounds_of or (name in out.coords and var.ndim == 0)) \
                and "_FillValue" not in hint and var.dtype.kind in "fcMO":  # O: cftime dates (noleap)
            enc["_FillValue"] = None
        if name in bounds_of and np.issubdtype(var.dtype, np.datetime64):
            # CF: bounds share their coordinate's units and calendar; take the first one known.
            parent = out.variables[bounds_of[name]]
            parent_hint = hints.variables[bounds_of[name]] if bounds_of[name] in hints.variables else parent
            for key in ("units", "calendar"):
                value = parent.encoding.get(key) or parent_hint.encoding.get(key) or enc.get(key) or hint.get(key)
                if value is not None:
                    enc[key] = parent.encoding[key] = value
    for name in [n for n, v in out.variables.items() if np.issubdtype(v.dtype, np.datetime64)
                 and (n in out.coords or n in bounds_of)]:
        out[name] = _encode_time(out.variables[name], name, hints.variables.get(name))
    return out


def _encode_time(var: xr.Variable, name, hint) -> xr.Variable:
    """Encode a (small) time coordinate or bounds variable now, as xarray would, so coordinate
    and bounds are written alike (xarray spells in-memory units differently from lazy ones)
    and no ``calendar`` appears that the source did not have: CF's default calendar is the
    proleptic Gregorian one from 1582-10-15 on, so it is only written for earlier times."""
    encoded = xr.conventions.encode_cf_variable(var.load(), name=name)
    had_calendar = hint is not None and ("calendar" in hint.encoding or "calendar" in hint.attrs)
    values = var.values[~np.isnat(var.values)] if var.size else var.values
    modern = values.size == 0 or values.astype("datetime64[D]").min() >= np.datetime64("1582-10-15", "D")
    if not had_calendar and modern and encoded.attrs.get("calendar") in ("proleptic_gregorian", "standard"):
        encoded.attrs.pop("calendar")
    # Encoded already: a _FillValue is now in its attrs (or nowhere); keep only the compression.
    encoded.encoding = {k: v for k, v in var.encoding.items() if k in _COMPRESSION_KEYS}
    if "_FillValue" not in encoded.attrs:
        encoded.encoding["_FillValue"] = None  # else xarray gives every float a NaN fill
    return encoded
