"""xdl.conventions.layout: which dims are spatial, time, periodic; coordinate checks."""

import numpy as np
import pytest
import xarray as xr

from xdl.conventions.layout import (CHANNEL_DIM_NAMES, check_coordinates, is_periodic_longitude, is_time_like,
                                    spatial_dims, time_dim)
from xdl.errors import InputError


def _da(dims, coords=None, shape=None):
    shape = shape or tuple(range(2, 2 + len(dims)))
    return xr.DataArray(np.zeros(shape), dims=dims, coords=coords or {}, name="v")


def test_spatial_dims_from_cf_axis_whatever_the_names_and_order():
    da = _da(("east", "north"), {"east": ("east", [0, 1], {"axis": "X"}), "north": ("north", [0, 1, 2], {"axis": "y"})})
    assert spatial_dims(da) == ("north", "east")  # always (y, x); axis is case-insensitive


def test_spatial_dims_from_standard_name_and_units():
    da = _da(("a", "b"), {"a": ("a", [0, 1], {"standard_name": "projection_y_coordinate"}),
                          "b": ("b", [0, 1, 2], {"standard_name": "projection_x_coordinate"})})
    assert spatial_dims(da) == ("a", "b")
    da = _da(("band", "p", "q"), {"p": ("p", [0, 1, 2], {"units": "degrees_north"}),
                                  "q": ("q", [0, 1, 2, 3], {"units": "degrees_east"})})
    assert spatial_dims(da) == ("p", "q")


def test_spatial_dims_from_2d_lat_lon_of_a_swath():
    da = _da(("scan", "pixel"), {"lat": (("scan", "pixel"), np.zeros((2, 3))), "lon": (("scan", "pixel"), np.zeros((2, 3)))})
    assert spatial_dims(da) == ("scan", "pixel")


@pytest.mark.parametrize("dims, expected", [(("time", "lat", "lon"), ("lat", "lon")),
                                            (("rlat", "rlon"), ("rlat", "rlon")),
                                            (("time", "south_north", "west_east"), ("south_north", "west_east"))])
def test_spatial_dims_from_usual_names(dims, expected):
    assert spatial_dims(_da(dims)) == expected


def test_spatial_dims_given_or_refused_with_the_fix():
    da = _da(("t", "r", "c"))
    assert spatial_dims(da, dims=["r", "c"]) == ("r", "c")
    with pytest.raises(InputError, match=r"give the two spatial dims as \(y, x\)"):
        spatial_dims(da, dims=("r",))
    with pytest.raises(InputError, match=r"dims \['z'\] are not dims of 'v'"):
        spatial_dims(da, dims=("r", "z"))
    with pytest.raises(InputError, match=r"Pass dims=\('y_dim', 'x_dim'\)"):
        spatial_dims(da)


def test_descending_latitude_is_spatial_and_accepted():
    lat = np.linspace(90, -90, 5)
    da = _da(("lat", "lon"), {"lat": ("lat", lat, {"standard_name": "latitude"}), "lon": np.arange(4.0)}, (5, 4))
    assert spatial_dims(da) == ("lat", "lon")
    check_coordinates(da, ("lat", "lon"))  # monotonic decreasing is fine (north-up images)


@pytest.mark.parametrize("values, message", [([0.0, 2.0, 1.0], "not monotonic"), ([0.0, 1.0, 1.0], "duplicated"),
                                             ([0.0, np.nan, 2.0], "contains NaN")])
def test_check_coordinates_refuses_broken_coordinates(values, message):
    da = _da(("y", "x"), {"y": values}, (3, 2))
    with pytest.raises(InputError, match=message):
        check_coordinates(da, ("y", "x"))


@pytest.mark.parametrize("lon, attrs, dim, expected", [
    (np.arange(0, 360, 1.0), {}, "lon", True),
    (np.arange(-180, 180, 0.25), {"standard_name": "longitude"}, "longitude", True),
    (np.arange(0, 360, 2.0)[::-1], {}, "lon", True),              # descending, still the full circle
    (np.arange(0, 360, 1.5), {"units": "degrees_east"}, "x", True),  # any name with CF units
    (np.arange(0, 100, 1.0), {}, "lon", False),                   # regional
    (np.r_[np.arange(0, 180, 1.0), np.arange(181, 361, 1.0)], {}, "lon", False),  # irregular step
    (np.arange(0, 360, 1.0), {}, "x", False),                     # not said to be longitude
    (np.roll(np.arange(0, 360, 2.5), 72), {}, "lon", True),       # rolled (180..357.5, 0..177.5): wraps
])
def test_periodic_longitude(lon, attrs, dim, expected):
    da = _da(("y", dim), {dim: (dim, lon, attrs)}, (2, lon.size))
    assert is_periodic_longitude(da, dim) is expected


def test_longitudes_across_the_dateline_are_monotonic_and_named_in_errors():
    pacific = np.r_[np.arange(170.0, 180.0), np.arange(-180.0, -169.0)]  # neighbours across 180
    da = _da(("lat", "lon"), {"lon": pacific}, (3, pacific.size))
    check_coordinates(da, ("lat", "lon"))
    assert not is_periodic_longitude(da, "lon")  # regional: mirrored at its edges, not wrapped
    with pytest.raises(InputError, match="'lon' of 'sst' has duplicated values"):  # 180 and -180: one meridian
        check_coordinates(_da(("lat", "lon"), {"lon": [179.0, 180.0, -180.0]}, (3, 3)), ("lat", "lon"), "sst")
    with pytest.raises(InputError, match="'x' of 'sst' is not monotonic"):  # not a longitude: no modulo
        check_coordinates(_da(("y", "x"), {"x": pacific}, (3, pacific.size)), ("y", "x"), "sst")


def test_time_dim_from_axis_datetime_or_name():
    da = _da(("step", "y", "x"), {"step": ("step", [0, 1], {"axis": "T"})})
    assert time_dim(da, ("y", "x")) == "step"
    when = np.array(["2020-01-01", "2020-01-02"], "datetime64[ns]")
    assert time_dim(_da(("when", "y", "x"), {"when": when}), ("y", "x")) == "when"
    assert time_dim(_da(("member", "valid_time", "y", "x")), ("y", "x")) == "valid_time"
    with pytest.raises(InputError, match="needs a time dim"):
        time_dim(_da(("member", "y", "x")), ("y", "x"))


def test_is_time_like():
    assert is_time_like(_da(("time", "x")), "time")
    assert is_time_like(_da(("s", "x"), {"s": ("s", [0, 1], {"axis": "T"})}), "s")
    assert not is_time_like(_da(("s", "x"), {"s": [0, 1]}), "s")
    assert "band" in CHANNEL_DIM_NAMES
