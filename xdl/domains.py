"""Where gaps may be filled: helpers that build ``domain`` masks (True = fillable)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from . import cf


def geostationary_projection(obj) -> xr.DataArray | None:
    """The CF ``geostationary`` grid-mapping variable of a Dataset/DataArray, if it has one."""
    names = []
    if isinstance(obj, xr.Dataset):
        names = [cf.grid_mapping_name(v) for v in obj.data_vars.values()]
        pool = obj.variables
    else:
        names = [cf.grid_mapping_name(obj)]
        pool = obj.coords
    for name in names:
        if name and name in pool and pool[name].attrs.get("grid_mapping_name") == "geostationary":
            return xr.DataArray(pool[name]) if not isinstance(pool[name], xr.DataArray) else pool[name]
    return None


def earth_disk(obj, x: str = "x", y: str = "y") -> xr.DataArray:
    """True where a geostationary imager's line of sight hits the Earth (never fill space).

    Uses the fixed-grid scan angles ``x``/``y`` (radians) and the ``geostationary`` grid mapping
    (perspective_point_height, semi_major_axis, semi_minor_axis), as in the GOES-R Product User
    Guide's navigation: the pixel is on Earth when the ray-ellipsoid quadratic has a real root.
    """
    proj = geostationary_projection(obj)
    if proj is None:
        raise ValueError("earth_disk needs a CF 'geostationary' grid mapping variable")
    r_eq = float(proj.attrs["semi_major_axis"])
    r_pol = float(proj.attrs["semi_minor_axis"])
    height = float(proj.attrs["perspective_point_height"]) + r_eq
    xs = np.asarray(obj[x].values, dtype=np.float64)
    ys = np.asarray(obj[y].values, dtype=np.float64)
    # Ray-ellipsoid quadratic a t^2 + b t + c = 0 with a = sin2x + cos2x * (cos2y + k sin2y),
    # b = -2 H cosx cosy, c = H^2 - r_eq^2: a real root when b^2 >= 4ac. Divided by c cos2x
    # (> 0 for scan angles under 90 degrees) that is tan2x <= H^2 cos2y / c - (cos2y + k sin2y):
    # one threshold per row, so a whole scene is a single comparison.
    c = height ** 2 - r_eq ** 2
    cos2y = np.cos(ys) ** 2
    threshold = height ** 2 * cos2y / c - (cos2y + (r_eq / r_pol) ** 2 * np.sin(ys) ** 2)
    disk = np.tan(xs)[None, :] ** 2 <= threshold[:, None]
    return xr.DataArray(disk, dims=(y, x), coords={y: obj[y], x: obj[x]}, name="earth_disk")


def auto_domain(obj) -> xr.DataArray | None:
    """The default domain: the Earth disk on geostationary grids, else everywhere (None)."""
    if geostationary_projection(obj) is None:
        return None
    try:
        return earth_disk(obj)
    except (KeyError, ValueError):
        return None
