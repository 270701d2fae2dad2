"""Grid mappings and what a projection can see: CF grid-mapping lookup (Dataset, coordinates, the
source file, GOES-R constants) and the Earth disk of ``geostationary`` and ``vertical_perspective``
views, where ``domain="auto"`` never fills (space)."""

from __future__ import annotations

import functools
import os
import warnings

import numpy as np
import xarray as xr

from . import cf

# GOES-R ABI fixed grid (Product User Guide, vol. 3, section 4.2.8): the same for GOES-16..19.
GOES_R_PROJECTION = {"grid_mapping_name": "geostationary", "perspective_point_height": 35786023.0,
                     "semi_major_axis": 6378137.0, "semi_minor_axis": 6356752.31414,
                     "sweep_angle_axis": "x"}
_DISK_MAPPINGS = ("geostationary", "vertical_perspective")


def source_variable_attrs(arr: xr.DataArray, name: str) -> dict | None:
    """The attributes of variable ``name`` in the file ``arr`` was read from, if it can be read."""
    found = _source_variables(arr).get(name)
    return None if found is None else dict(found[1])


def source_flag_variables(arr: xr.DataArray) -> dict:
    """``{name: (dims, attrs)}`` of the variables with ``flag_meanings`` in the file ``arr`` was read
    from (empty when it cannot be read): the flags a DataArray left behind in its file."""
    return {name: (dims, dict(attrs)) for name, (dims, attrs) in _source_variables(arr).items()
            if "flag_meanings" in attrs}


def _source_variables(arr: xr.DataArray) -> dict:
    """``{name: (dims, attrs)}`` of every variable of the file ``arr`` was read from ({} when none)."""
    source = arr.encoding.get("source")
    if not source or not isinstance(source, str):
        return {}
    try:
        stat = os.stat(source)
    except OSError:
        return {}
    return dict(_file_variables(source, stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=32)
def _file_variables(source: str, mtime_ns: int, size: int) -> tuple:
    # Cached by path, modification time and size: the auto domain (ancillary and other flag
    # variables) and the output's mapping variable all ask, and a file rewritten in place is read
    # again. Callers get copies of the attributes.
    try:
        import netCDF4

        with netCDF4.Dataset(source) as nc:
            return tuple((name, (tuple(var.dimensions), {k: var.getncattr(k) for k in var.ncattrs()}))
                         for name, var in nc.variables.items())
    except (OSError, ImportError, RuntimeError, ValueError):
        return ()


def with_mapping_variable(out, arr: xr.DataArray):
    """``out`` (a DataArray or Dataset made from DataArray ``arr``) with ``arr``'s CF grid-mapping
    variable as a scalar coordinate, where ``arr`` names one (``grid_mapping``) that is not among
    its coordinates but is in the file it was read from: ``ds.LST`` holds the name only, so its
    output written to netCDF had no CRS for GDAL and other GIS tools. ``out`` as it is otherwise
    (never GOES-R's constants: they lack the satellite's longitude)."""
    name = cf.grid_mapping_name(arr)
    if not name or name in arr.coords or name in out.coords or (isinstance(out, xr.Dataset) and name in out.variables):
        return out
    attrs = source_variable_attrs(arr, name)
    if not attrs or "grid_mapping_name" not in attrs:
        return out
    attrs.pop("_FillValue", None)
    return out.assign_coords({name: xr.DataArray(np.int32(0), attrs=attrs)})


def grid_mapping(obj, arr: xr.DataArray | None = None, *, warn: bool = False) -> dict | None:
    """The attributes of ``arr``'s CF grid mapping (``grid_mapping_name`` and its parameters).

    Looked up in the Dataset ``obj``, in ``arr``'s coordinates (a mapping kept as a coordinate,
    or any scalar coordinate with ``grid_mapping_name``), in the netCDF file ``arr`` was read
    from, and on ``arr``'s own attributes. With ``warn``, a ``grid_mapping`` that names a variable
    none of these has gives a warning that says how to pass the domain instead.
    """
    if arr is None:
        if isinstance(obj, xr.DataArray):
            arr = obj
        else:
            for v in obj.data_vars.values():
                if cf.grid_mapping_name(v):
                    arr = v
                    break
            if arr is None:
                return None
    name = cf.grid_mapping_name(arr)
    pools = [arr.coords] if obj is arr or isinstance(obj, xr.DataArray) else [obj.variables, arr.coords]
    if name:
        for pool in pools:
            if name in pool and "grid_mapping_name" in pool[name].attrs:
                return dict(pool[name].attrs)
    for coord in arr.coords.values():
        if coord.ndim == 0 and "grid_mapping_name" in coord.attrs:
            return dict(coord.attrs)
    if name:
        attrs = source_variable_attrs(arr, name)
        if attrs and "grid_mapping_name" in attrs:
            return attrs
    if "grid_mapping_name" in arr.attrs:
        return dict(arr.attrs)
    if name == "goes_imager_projection":
        return dict(GOES_R_PROJECTION)
    if name and warn:
        if isinstance(obj, xr.Dataset) and obj is not arr:  # the Dataset itself lacks it: the file does
            message = (f"{arr.name!r} names grid_mapping {name!r}, which neither the Dataset nor its file has: "
                       "if the grid is geostationary, domain='auto' cannot find the Earth's disk (pass domain=, "
                       "or None to fill everywhere); on any other grid nothing is lost.")
        else:
            message = (f"{arr.name!r} names grid_mapping {name!r}, but that variable is not among its coordinates "
                       "nor in a file xdl can read, so domain='auto' cannot find the disk of a geostationary grid. "
                       f"Fill the Dataset instead (ds.dl.inpaint(variables=[{str(arr.name)!r}])), keep the mapping "
                       f"as a coordinate (da.assign_coords({name}=ds[{name!r}])), or pass domain= (e.g. "
                       "xdl.conventions.projection.earth_disk(ds), or None to fill everywhere).")
        warnings.warn(message, UserWarning, stacklevel=4)
    return None


def geostationary_projection(obj) -> xr.DataArray | None:
    """The CF ``geostationary`` grid mapping of a Dataset/DataArray, as a scalar DataArray, if any."""
    attrs = grid_mapping(obj)
    if attrs is None or attrs.get("grid_mapping_name") != "geostationary":
        return None
    return xr.DataArray(0, attrs=attrs)


def coordinate_values(arr: xr.DataArray, dim: str) -> np.ndarray:
    """The float64 values of coordinate ``dim`` in its units: packed integer coordinates (read with
    ``mask_and_scale=False``: GOES x/y are int16 with scale_factor/add_offset) are unpacked as
    xarray would unpack them."""
    coord = arr[dim]
    values = np.asarray(coord.values)
    if np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.unsignedinteger):
        attrs = coord.attrs
        if "scale_factor" in attrs or "add_offset" in attrs:
            variable = xr.Variable(coord.dims, values, dict(attrs))
            values = np.asarray(xr.conventions.decode_cf_variable(dim, variable).values)
        else:
            from ..errors import InputError

            raise InputError(f"coordinate {dim!r} of {arr.name!r} holds raw integers ({values.dtype}) "
                             "without scale_factor/add_offset, so its positions are unknown; open the "
                             "file with mask_and_scale=True (the default), or pass domain=.")
    return values.astype(np.float64)


def _angles(arr: xr.DataArray, dim: str, height: float) -> np.ndarray:
    """Scan angles (radians) of a geostationary coordinate given in radians or in metres (x = h * angle)."""
    values = coordinate_values(arr, dim)
    units = str(arr[dim].attrs.get("units", "")).lower()
    if units == "km":
        return values * 1000.0 / height
    # No scan angle reaches a radian (the Earth spans +-0.152): larger values are metres, whatever
    # the units say (a GOES GeoTIFF read with rioxarray has metres under the netCDF's "rad").
    if units in ("m", "meter", "meters", "metre", "metres") or np.nanmax(np.abs(values)) > 1.0:
        return values / height
    return values


def _sweep_axis(attrs: dict) -> str:
    """The geostationary mapping's sweep-angle axis: CF's ``sweep_angle_axis``, or the other one of
    ``fixed_angle_axis``; "x" (GOES) when the mapping gives neither."""
    sweep = str(attrs.get("sweep_angle_axis", "")).strip().lower()
    if sweep in ("x", "y"):
        return sweep
    fixed = str(attrs.get("fixed_angle_axis", "")).strip().lower()
    return {"x": "y", "y": "x"}.get(fixed, "x")


def projection_disk(arr: xr.DataArray, attrs: dict, y: str, x: str) -> xr.DataArray | None:
    """True where a geostationary or vertical-perspective view sees the Earth; None for other mappings."""
    kind = attrs.get("grid_mapping_name")
    if kind not in _DISK_MAPPINGS or x not in arr.coords or y not in arr.coords:
        return None
    try:
        r_eq = float(attrs.get("semi_major_axis", attrs.get("earth_radius")))
        r_pol = float(attrs.get("semi_minor_axis", r_eq))
        h = float(attrs["perspective_point_height"])
    except (KeyError, TypeError, ValueError):
        return None
    if kind == "geostationary":
        xs, ys = _angles(arr, x, h), _angles(arr, y, h)
        height = h + r_eq
        # Ray-ellipsoid quadratic a t^2 + b t + c = 0 for the ray (dx, dy, dz) from the satellite,
        # H = h + r_eq from the Earth's centre: a = dx2 + dy2 + k dz2 (k = (r_eq / r_pol)^2),
        # b = -2 H dx, c = H^2 - r_eq^2; a real root when b^2 >= 4ac. Sweeping along x (GOES):
        # d = (cosx cosy, sinx, cosx siny); divided by c cos2x (> 0 for scan angles under 90
        # degrees), tan2x <= H^2 cos2y / c - (cos2y + k sin2y). Sweeping along y (Meteosat,
        # Himawari): d = (cosx cosy, sinx cosy, siny), tan2x <= H^2 cos2y / (c (cos2y + k sin2y)) - 1.
        # One threshold per row either way, so a whole scene is a single comparison.
        c = height ** 2 - r_eq ** 2
        cos2y = np.cos(ys) ** 2
        tilt = cos2y + (r_eq / r_pol) ** 2 * np.sin(ys) ** 2
        if _sweep_axis(attrs) == "y":
            threshold = height ** 2 * cos2y / (c * tilt) - 1.0
        else:
            threshold = height ** 2 * cos2y / c - tilt
        disk = np.tan(xs)[None, :] ** 2 <= threshold[:, None]
    else:
        # Near-sided perspective on a sphere of radius r_eq seen from height h: the horizon is the
        # circle of radius r_eq * sqrt((P - 1) / (P + 1)) on the projection plane, P = (r_eq + h) / r_eq.
        xs, ys = coordinate_values(arr, x), coordinate_values(arr, y)
        p = (r_eq + h) / r_eq
        disk = xs[None, :] ** 2 + ys[:, None] ** 2 <= r_eq ** 2 * (p - 1) / (p + 1)
    return xr.DataArray(disk, dims=(y, x), coords={y: arr[y], x: arr[x]}, name="earth_disk")


def earth_disk(obj, x: str = "x", y: str = "y") -> xr.DataArray:
    """True where a geostationary imager's line of sight hits the Earth (never fill space).

    Uses the fixed-grid scan angles ``x``/``y`` (radians, or metres = angle x perspective height)
    and the ``geostationary`` grid mapping (perspective_point_height, semi_major_axis,
    semi_minor_axis), as in the GOES-R Product User Guide's navigation: the pixel is on Earth when
    the ray-ellipsoid quadratic has a real root.
    """
    arr = obj if isinstance(obj, xr.DataArray) else None
    attrs = grid_mapping(obj, arr)
    if attrs is None or attrs.get("grid_mapping_name") not in _DISK_MAPPINGS:
        raise ValueError("earth_disk needs a CF 'geostationary' (or 'vertical_perspective') grid mapping variable")
    target = obj if isinstance(obj, xr.DataArray) else xr.DataArray(
        np.zeros((obj.sizes[y], obj.sizes[x]), bool), dims=(y, x), coords={y: obj[y], x: obj[x]})
    disk = projection_disk(target, attrs, y, x)
    if disk is None:
        raise ValueError("earth_disk: the grid mapping lacks perspective_point_height or semi_major_axis")
    return disk
