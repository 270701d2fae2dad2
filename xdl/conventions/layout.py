"""Where things are in an xarray object: spatial dims, batch dims, channels, periodic longitude."""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..errors import InputError

# Name pairs tried in order when no CF attribute says which dims are spatial.
_NAME_PAIRS = [
    ("y", "x"), ("lat", "lon"), ("latitude", "longitude"), ("rlat", "rlon"),
    ("nj", "ni"), ("j", "i"), ("south_north", "west_east"), ("row", "col"),
    ("rows", "columns"), ("nlat", "nlon"), ("yc", "xc"), ("ny", "nx"),
]
_X_STANDARD_NAMES = {"longitude", "projection_x_coordinate", "grid_longitude",
                     "projection_x_angular_coordinate"}
_Y_STANDARD_NAMES = {"latitude", "projection_y_coordinate", "grid_latitude",
                     "projection_y_angular_coordinate"}
_TIME_NAMES = ("time", "t", "valid_time", "date")
CHANNEL_DIM_NAMES = ("channel", "band", "variable", "channels", "bands")


def _axis_of(da: xr.DataArray, dim: str) -> str | None:
    """'X', 'Y' or None for a dim, read from its coordinate's CF attributes."""
    if dim not in da.coords:
        return None
    attrs = da.coords[dim].attrs
    axis = str(attrs.get("axis", "")).upper()
    if axis in ("X", "Y"):
        return axis
    std = attrs.get("standard_name")
    if std in _X_STANDARD_NAMES:
        return "X"
    if std in _Y_STANDARD_NAMES:
        return "Y"
    units = str(attrs.get("units", "")).lower()
    if units in ("degrees_east", "degree_east", "degrees_e"):
        return "X"
    if units in ("degrees_north", "degree_north", "degrees_n"):
        return "Y"
    return None


def spatial_dims(da: xr.DataArray, dims=None) -> tuple[str, str]:
    """The (y, x) dims of ``da``: given, from CF axis/standard_name/units, from 2-D lat/lon
    coordinates (curvilinear grids, swaths), then from common names.

    >>> import xarray as xr, numpy as np
    >>> spatial_dims(xr.DataArray(np.zeros((2, 3, 4)), dims=("time", "lat", "lon")))
    ('lat', 'lon')
    """
    if dims is not None:
        dims = tuple(dims)
        if len(dims) != 2:
            raise InputError(f"dims={dims!r}: give the two spatial dims as (y, x).")
        missing = [d for d in dims if d not in da.dims]
        if missing:
            raise InputError(f"dims {missing} are not dims of {da.name!r} {tuple(da.dims)}.")
        return dims
    found = {}
    for dim in da.dims:
        axis = _axis_of(da, dim)
        if axis and axis not in found:
            found[axis] = dim
    if len(found) == 2:
        return found["Y"], found["X"]
    # Curvilinear grids and swaths: a 2-D latitude/longitude coordinate names the two dims.
    for name, coord in da.coords.items():
        if coord.ndim == 2 and (coord.attrs.get("standard_name") in ("latitude", "longitude")
                                or str(name).lower() in ("lat", "latitude", "lon", "longitude", "nav_lat", "nav_lon")):
            return tuple(coord.dims)
    for pair in _NAME_PAIRS:
        if all(p in da.dims for p in pair):
            return pair
    raise InputError(
        f"cannot tell which dims of {da.name!r} {tuple(da.dims)} are spatial: no CF axis or "
        f"standard_name attribute and no usual names (y/x, lat/lon, ...). Pass dims=('y_dim', 'x_dim')."
    )


def time_dim(da: xr.DataArray, spatial: tuple[str, ...]) -> str:
    """The dim a volume (3-D) model runs along: CF axis T or a datetime coordinate of its own, else
    a usual name in any case (``Time``), else a datetime coordinate along it (an auxiliary one, as
    WRF's ``XTIME`` on ``Time``; last, since a forecast's ``valid(lead)`` beside its ``time`` is one).

    >>> w = xr.DataArray(np.zeros((2, 3, 4, 5)), dims=("Time", "bottom_top", "south_north", "west_east"))
    >>> time_dim(w, ("south_north", "west_east"))
    'Time'
    """
    others = [d for d in da.dims if d not in spatial]
    for d in others:
        if d in da.coords and _is_time_coordinate(da.coords[d]):
            return d
    for d in others:
        if _is_time_name(d):
            return d
    for d in others:
        if _has_time_coordinate(da, d):
            return d
    raise InputError(f"a volume model needs a time dim; none found in {tuple(da.dims)} of {da.name!r}. "
                     "Pass dims=('time_dim', 'y_dim', 'x_dim').")


# Lower case (names are compared so): WRF's bottom_top stepped as if it were time (probe).
_VERTICAL_NAMES = ("level", "lev", "plev", "levels", "isobaricinhpa", "pressure", "pressure_level", "depth",
                   "height", "altitude", "z", "model_level_number", "hybrid", "bottom_top", "bottom_top_stag",
                   "soil_layers", "soil_layers_stag")
_VERTICAL_STANDARD_NAMES = ("air_pressure", "depth", "height", "altitude", "model_level_number")


def sequence_dim(da: xr.DataArray, spatial: tuple[str, ...]) -> str:
    """The dim that ``time_window`` steps along: :func:`time_dim`, else the one other dim that is
    not vertical (passes, days, steps, months: a sequence whatever its coordinate; a vertical axis
    is CF axis Z, ``positive``, a pressure or depth standard_name or a usual level name): the levels
    above and below are no neighbouring times. An InputError naming the dims otherwise.

    >>> sequence_dim(xr.DataArray(np.zeros((2, 3, 4)), dims=("month", "y", "x")), ("y", "x"))
    'month'
    >>> sequence_dim(xr.DataArray(np.zeros((2, 2, 3, 4)), dims=("month", "level", "y", "x")), ("y", "x"))
    'month'
    """
    try:
        dim = time_dim(da, tuple(spatial))
    except InputError:
        others = [d for d in da.dims if d not in spatial]
        sequences = [d for d in others if not _is_vertical(da, d)]
        if len(sequences) != 1:  # levels beside it are no candidates: (month, level, lat, lon) was refused (probe)
            _refuse_no_sequence(da, spatial, others)
        dim = sequences[0]
    check_time_order(da, dim)
    return dim


def _refuse_no_sequence(da, spatial, others):
    found = "none" if not others else ("the vertical dim " if len(others) == 1 else "several other dims ") + str(others)
    raise InputError(f"time_window needs a time dim; {da.name!r} {tuple(da.dims)} has {found} (spatial "
                     f"{tuple(spatial)}). Give it a time coordinate (CF axis T or datetimes) or use time_window=0; "
                     "for other levels as inputs, split them into variables and pass them as context=.")


def check_time_order(da: xr.DataArray, dim, use: str = "which time_window steps along by index") -> None:
    """Refuse a sequence whose times are not in order: time_window steps by index, so a shuffled
    series (or two overlapping files concatenated) took other days for the neighbours, silently
    (probe: up to 18 kg m-2 apart); fit's time split put validation hours among the training
    ones. Times only (datetimes, or numbers counted "since" an origin): labels such as months
    1-12 over several years repeat by design. Equal neighbours (two passes on one date) and
    missing times (NaT) pass. ``use``: what steps along ``dim`` by index, for the message."""
    along = [c for c in da.coords.values() if c.dims == (dim,)]
    own = [c for c in along if c.name == dim]
    coord = own[0] if own else next((c for c in along if _is_time_coordinate(c)), None)
    if coord is None or coord.size < 2:
        return
    dated = coord.dtype.kind == "M" or (coord.dtype == object and _is_time_coordinate(coord))
    counted = coord.dtype.kind in "iuf" and " since " in str(coord.attrs.get("units", ""))
    if not (dated or counted):
        return
    index = coord.to_index()
    index = index[~index.isna()]
    if not (index.is_monotonic_increasing or index.is_monotonic_decreasing):
        raise InputError(f"coordinate {coord.name!r} of {da.name!r}, {use}, is "
                         "not in order (a shuffled series, or overlapping files concatenated), so neighbouring "
                         f"steps would not be neighbouring times; sort it first (ds.sortby({coord.name!r}); "
                         "ds.drop_duplicates(...) if the repeats are copies).")


def shifted(da: xr.DataArray, dim: str, offset: int, fill_value=np.nan) -> xr.DataArray:
    """The value at index ``i + offset`` along ``dim`` at each ``i``, ``fill_value`` beyond the ends:
    ``da.shift({dim: -offset})``, which dask cannot pad when the shift is the whole length or more
    (a one-step series with ``time_window=1`` raised a ZeroDivisionError).

    >>> a = xr.DataArray([1.0, 2.0], dims="t")
    >>> shifted(a, "t", 1).values.tolist(), shifted(a.chunk(), "t", 2).values.tolist()
    ([2.0, nan], [nan, nan])
    """
    if abs(int(offset)) >= da.sizes[dim]:
        return xr.full_like(da, fill_value)
    return da.shift({dim: -int(offset)}, fill_value=fill_value)


def _is_time_name(dim) -> bool:
    return str(dim).lower() in _TIME_NAMES


def _has_time_coordinate(da: xr.DataArray, dim) -> bool:
    """A datetime coordinate on ``dim``: its own, or a 1-D one along it (WRF's ``XTIME``)."""
    if dim in da.coords:
        return _is_time_coordinate(da.coords[dim])
    return any(c.dims == (dim,) and _is_time_coordinate(c) for c in da.coords.values())


def _is_vertical(da: xr.DataArray, dim: str) -> bool:
    attrs = da.coords[dim].attrs if dim in da.coords else {}
    return (str(dim).lower() in _VERTICAL_NAMES or str(attrs.get("axis", "")).upper() == "Z" or "positive" in attrs
            or attrs.get("standard_name") in _VERTICAL_STANDARD_NAMES)


def is_time_like(da: xr.DataArray, dim: str) -> bool:
    """True when ``dim`` of ``da`` looks like time: a usual name, a datetime coordinate or CF axis T.

    >>> is_time_like(xr.DataArray(np.zeros((2, 3)), dims=("step", "x"), coords={"step": [0, 1]}), "step")
    False
    """
    return _is_time_name(dim) or _has_time_coordinate(da, dim)


def _is_time_coordinate(c: xr.DataArray) -> bool:
    """A datetime coordinate (numpy's, or cftime's of a non-standard calendar: noleap, 360_day)
    or one with CF axis T."""
    if np.issubdtype(c.dtype, np.datetime64) or str(c.attrs.get("axis", "")).upper() == "T":
        return True
    if c.dtype != object or c.size == 0:
        return False
    try:
        import cftime
    except ImportError:  # without cftime xarray decodes no such calendar
        return False
    return isinstance(np.asarray(c.values).ravel()[0], cftime.datetime)


def _is_longitude(da: xr.DataArray, dim: str) -> bool:
    coord = da.coords[dim]
    return (_axis_of(da, dim) == "X" and (
        str(coord.attrs.get("units", "")).lower().startswith("degree")
        or coord.attrs.get("standard_name") in ("longitude", "grid_longitude")
    )) or str(dim).lower() in ("lon", "longitude")


def _steps(da: xr.DataArray, dim: str) -> np.ndarray:
    """The steps between neighbours of 1-D coordinate ``dim``; a longitude's taken modulo 360 (into
    [-180, 180)), so a grid across the dateline (170..180, -179..-170) or rolled steps evenly."""
    values = np.asarray(da.coords[dim].values)
    step = np.diff(values)
    if np.issubdtype(values.dtype, np.number) and _is_longitude(da, dim):
        step = (step.astype(float) + 180.0) % 360.0 - 180.0
    return step


def is_periodic_longitude(da: xr.DataArray, x_dim: str) -> bool:
    """True when ``x_dim`` is a regular 1-D longitude covering the full circle (last step wraps)."""
    if x_dim not in da.coords or da.coords[x_dim].ndim != 1:
        return False
    coord = da.coords[x_dim]
    if not _is_longitude(da, x_dim) or coord.size < 3 or not np.issubdtype(coord.dtype, np.number):
        return False
    step = _steps(da, x_dim)
    if not np.allclose(step, step[0], rtol=1e-3, atol=1e-6):
        return False
    return bool(np.isclose(abs(step[0]) * coord.size, 360.0, rtol=1e-3))


def check_coordinates(da: xr.DataArray, dims, name=None) -> None:
    """Reject NaN, duplicated or non-monotonic 1-D coordinates on the dims the model runs over
    (a longitude is monotonic modulo 360). ``name``: the variable the errors name (default da's)."""
    name = da.name if name is None else name
    for dim in dims:
        if dim not in da.coords or da.coords[dim].ndim != 1:
            continue
        values = np.asarray(da.coords[dim].values)
        if values.size < 2:
            continue
        if np.issubdtype(values.dtype, np.floating) and np.isnan(values).any():
            raise InputError(f"coordinate {dim!r} of {name!r} contains NaN; fix or drop it before running a model.")
        if np.issubdtype(values.dtype, np.number) or np.issubdtype(values.dtype, np.datetime64):
            diff = _steps(da, dim)  # a longitude modulo 360: across the dateline, still monotonic
            zero = np.zeros((), dtype=diff.dtype)
            if (diff == zero).any():
                raise InputError(f"coordinate {dim!r} of {name!r} has duplicated values; "
                                 f"drop them (e.g. da.drop_duplicates({dim!r})).")
            if not ((diff > zero).all() or (diff < zero).all()):
                raise InputError(f"coordinate {dim!r} of {name!r} is not monotonic; sort it "
                                 f"(da.sortby({dim!r})) so neighbouring pixels are neighbours.")


def data_chunks(da: xr.DataArray) -> dict:
    """The dask chunks of ``da``'s own data by dim. Not ``da.chunksizes``: that merges the
    coordinates' chunks and raises when a 2-D lat/lon is chunked unlike the data (netCDF files
    store them so; ``open_dataset(chunks={})`` keeps it).

    >>> import dask.array
    >>> v = xr.DataArray(dask.array.zeros((4, 6), chunks=(1, 6)), dims=("y", "x"))
    >>> v = v.assign_coords(lat=(("y", "x"), dask.array.zeros((4, 6), chunks=(4, 6))))
    >>> data_chunks(v)
    {'y': (1, 1, 1, 1), 'x': (6,)}
    """
    return dict(zip(da.dims, da.data.chunks))
