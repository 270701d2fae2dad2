"""Where gaps may be filled (domain="auto") and how masks/domains meet the data (by label).

Real files (skipped when ../shared/data is absent) are the scenes that showed each defect: GOES
space filled through the DataArray path and from raw integer coordinates, and land, sea, space and
outside-swath pixels filled on six non-geostationary files.
"""

import warnings

import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xdl
from xdl.conventions import cf, domains, projection
from xdl.cli import main
from xdl.errors import InputError
from xdl.evaluate import _broadcast_bool
from xdl.inpaint import FLAG_FILLED, FLAG_OUTSIDE, FLAG_UNFILLABLE

from conftest import shared_file

MODEL = None


def model():
    global MODEL
    if MODEL is None:
        import torch

        torch.manual_seed(0)
        MODEL = xdl.zoo.create("pconv-unet", in_channels=1, depth=3, base_channels=8,
                               card={"normalization": {"kind": "per_sample"}})
    return MODEL


def smooth(shape, seed=0):
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, shape[-2])[:, None]
    x = np.linspace(0, 1, shape[-1])[None, :]
    return (280 + 5 * np.sin(6 * x + rng.uniform(0, 6)) * np.cos(4 * y)
            + 0.1 * rng.standard_normal(shape)).astype("f4")


def outside(domain, arr):
    """Bool array of ``arr``'s shape: True where the domain says "outside" (None: nowhere)."""
    if domain is None:
        return np.zeros(arr.shape, bool)
    return ~np.broadcast_to(domain.broadcast_like(arr).transpose(*arr.dims).values, arr.shape)


# ---------------------------------------------------------------- GOES: DataArray path, raw integers

GOES_C16 = "goes/OR_ABI-L1b-RadC-M6C16_G16_*.nc"


def test_goes_dataarray_path_never_fills_space():
    ds = xr.open_dataset(shared_file(GOES_C16), chunks={})
    space = ~np.isfinite(ds.Rad.values)
    assert space.sum() == 47162
    # The DataArray has grid_mapping in attrs but not the mapping variable: found in its source file.
    assert "goes_imager_projection" not in ds.Rad.coords
    disk = domains.auto_domain(ds.Rad)
    assert np.array_equal(~disk.values, space)  # exactly the off-Earth pixels are outside
    sub = {"y": slice(0, 300), "x": slice(0, 400)}  # holds the whole off-Earth wedge
    out = ds.Rad.isel(sub).dl.inpaint(model(), mask=ds.DQF.isel(sub) == 0).compute()
    assert np.isnan(out.values[space[:300, :400]]).all()
    assert np.isfinite(out.values[~space[:300, :400]]).all()


def test_goes_raw_integer_coordinates_give_the_same_disk():
    path = shared_file(GOES_C16)
    decoded = xr.open_dataset(path)
    raw = xr.open_dataset(path, mask_and_scale=False)
    assert raw.x.dtype == np.int16
    disk = domains.auto_domain(raw, raw.Rad)
    assert np.array_equal(disk.values, domains.auto_domain(decoded, decoded.Rad).values)
    assert int((~disk.values).sum()) == 47162  # was 3,722,284 (disk from raw int16 "angles")
    sub = {"y": slice(0, 300), "x": slice(0, 400)}
    out = raw.Rad.isel(sub).dl.inpaint(model(), mask=raw.DQF.isel(sub) == 0)
    space = ~np.isfinite(decoded.Rad.values[:300, :400])
    # was: 372 space pixels filled; unfilled raw pixels hold the declared fill value, as in the input
    assert (out.values[space] == raw.Rad.attrs["_FillValue"]).all()


def geostationary_scene(n=120, mapping_as="dataset"):
    # GOES-like fixed grid: scan angles (rad) reaching past the limb at the corners.
    angles = np.linspace(-0.16, 0.16, n)
    data = smooth((n, n))
    attrs = dict(projection.GOES_R_PROJECTION, longitude_of_projection_origin=-75.0)
    coords = {"y": ("y", angles[::-1], {"units": "rad", "axis": "Y"}),
              "x": ("x", angles, {"units": "rad", "axis": "X"})}
    arr = xr.DataArray(data, dims=("y", "x"), coords=coords, name="Rad", attrs={"grid_mapping": "proj"})
    if mapping_as == "coord":
        arr = arr.assign_coords(proj=xr.DataArray(0, attrs=attrs))
    return arr, attrs


def test_dataarray_with_mapping_as_coordinate_or_unreachable():
    arr, attrs = geostationary_scene(mapping_as="coord")
    disk = domains.auto_domain(arr)
    expected = projection.projection_disk(arr, attrs, "y", "x")
    assert np.array_equal(disk.values, expected.values) and (~disk.values).sum() > 100
    assert disk.values[60, 60] and not disk.values[0, 0]  # corners are space
    # The mapping is named but nowhere to be found: a warning that says how to pass domain=.
    bare, _ = geostationary_scene()
    with pytest.warns(UserWarning, match=r"grid_mapping 'proj'.*domain="):
        domains.auto_domain(bare)


def test_metre_coordinates_under_stale_radian_units_give_the_same_disk():
    # A GOES GeoTIFF read with rioxarray: x/y in metres (angle x perspective height) while the
    # attributes copied from the netCDF still say "rad". Taken for radians, 99% of a mesoscale
    # scene over land was "space" and its gaps were left unfilled.
    arr, attrs = geostationary_scene(mapping_as="coord")
    h = float(attrs["perspective_point_height"])
    metres = arr.assign_coords(x=("x", arr.x.values * h, {"units": "rad"}), y=("y", arr.y.values * h, {"units": "rad"}))
    assert np.array_equal(domains.auto_domain(metres).values, domains.auto_domain(arr).values)


def test_goes_geotiff_read_with_rioxarray_fills_every_masked_gap(tmp_path):
    rioxarray = pytest.importorskip("rioxarray", reason="rioxarray (GeoTIFF reader) is not installed")
    cmi = shared_file("goes/OR_ABI-L2-CMIPM1-M6C03_G16_*_CMI.tif")
    dqf = rioxarray.open_rasterio(str(cmi).replace("_CMI.tif", "_DQF.tif"))
    band = rioxarray.open_rasterio(cmi, mask_and_scale=True)
    good = (dqf == 0).values
    assert (~good).sum() > 9000  # saturated (DQF 2) pixels
    out = band.dl.inpaint(mask=dqf == 0)
    assert np.array_equal(out.values[good], band.values[good])
    assert np.isfinite(out.values).all()  # a mesoscale sector over land: no space, every gap filled
    out.rio.to_raster(tmp_path / "filled.tif")
    back = rioxarray.open_rasterio(tmp_path / "filled.tif")
    assert back.rio.crs == band.rio.crs and np.array_equal(back.values, out.values)


def test_integer_coordinates_are_unpacked_or_refused():
    arr, attrs = geostationary_scene(mapping_as="coord")
    scale, offset = 5.6e-05, -0.16
    raw = np.round((arr.x.values - offset) / scale).astype("i2")
    packed = arr.assign_coords(x=("x", raw, {"units": "rad", "scale_factor": scale, "add_offset": offset}),
                               y=("y", raw[::-1].copy(), {"units": "rad", "scale_factor": scale, "add_offset": offset}))
    decoded = projection.coordinate_values(packed, "x")
    np.testing.assert_allclose(decoded, arr.x.values, atol=scale)
    disk = domains.auto_domain(packed)
    assert abs(int((~disk.values).sum()) - int((~domains.auto_domain(arr).values).sum())) <= 2 * arr.sizes["x"]
    no_scale = packed.assign_coords(x=("x", raw, {"units": "rad"}))
    with pytest.raises(InputError, match="raw integers.*mask_and_scale"):
        domains.auto_domain(no_scale)


@pytest.mark.parametrize("sweep", ["x", "y"])
def test_geostationary_disk_matches_rays_traced_for_either_sweep_axis(sweep):
    # The disk against an independent ray trace: for each pixel's scan angles, the line of sight
    # from the satellite (GOES sweeps along x, Meteosat and Himawari along y) meets the ellipsoid.
    r_eq, r_pol, h = 6378137.0, 6356752.31414, 35786023.0
    angles = np.linspace(-0.1535, 0.1535, 241)
    attrs = {"grid_mapping_name": "geostationary", "perspective_point_height": h, "semi_major_axis": r_eq,
             "semi_minor_axis": r_pol, "sweep_angle_axis": sweep}
    arr = xr.DataArray(np.zeros((241, 241), "f4"), dims=("y", "x"), name="v",
                       coords={"y": ("y", angles[::-1], {"units": "rad"}), "x": ("x", angles, {"units": "rad"})})
    disk = projection.projection_disk(arr, attrs, "y", "x").values
    y, x = np.meshgrid(angles[::-1], angles, indexing="ij")
    if sweep == "x":
        d = np.stack([np.cos(x) * np.cos(y), np.sin(x), np.cos(x) * np.sin(y)])
    else:
        d = np.stack([np.cos(x) * np.cos(y), np.sin(x) * np.cos(y), np.sin(y)])
    big_h = h + r_eq
    a = d[0] ** 2 + d[1] ** 2 + (r_eq / r_pol) ** 2 * d[2] ** 2
    traced = (big_h * d[0]) ** 2 >= a * (big_h ** 2 - r_eq ** 2)
    assert np.array_equal(disk, traced)
    assert 0.05 < (~disk).mean() < 0.4  # the corners are space
    # The two sweeps differ only through the Earth's flattening, at the limb: not at this size.
    other = projection.projection_disk(arr, dict(attrs, sweep_angle_axis="y" if sweep == "x" else "x"), "y", "x").values
    assert (disk != other).sum() < 0.001 * disk.size
    assert np.array_equal(projection.projection_disk(arr, {k: v for k, v in attrs.items() if k != "sweep_angle_axis"}
                                                     | {"fixed_angle_axis": "x" if sweep == "y" else "y"}, "y", "x").values, disk)


def test_vertical_perspective_disk():
    r, h = 6371000.0, 35786000.0
    horizon = r * np.sqrt(h / (2 * r + h))  # r sqrt((P-1)/(P+1)), P = (r + h) / r
    xs = np.linspace(-1.2 * horizon, 1.2 * horizon, 61)
    arr = xr.DataArray(np.zeros((61, 61), "f4"), dims=("y", "x"), name="v",
                       coords={"y": ("y", xs, {"axis": "Y", "units": "m"}), "x": ("x", xs, {"axis": "X", "units": "m"})})
    attrs = {"grid_mapping_name": "vertical_perspective", "perspective_point_height": h, "earth_radius": r}
    disk = projection.projection_disk(arr, attrs, "y", "x")
    radius = np.hypot(xs[None, :], xs[:, None])
    assert np.array_equal(disk.values, radius <= horizon)


# ---------------------------------------------------------------- the six non-geostationary files

def _amsr2_land(ds):
    return (ds.l2p_flags.values & 2) != 0


# (file, variable, truth of "outside" from the file, most "outside" gaps auto may still fill)
REAL = [
    ("projected/uk_tmean_1910_osgb.nc", "tmean", lambda ds: ~np.isfinite(ds.tmean.values), 0.007),
    ("projected/msg_toa_bt_10p8_stereographic.nc", "data", lambda ds: ~np.isfinite(ds.data.values), 0.02),
    ("ocean_land/tos_ocean_bipolar_grid.nc", "tos", lambda ds: ~np.isfinite(ds.tos.values), 0.0),
    ("land/ndvi_max.nc", "ndvi_max", lambda ds: ~np.isfinite(ds.ndvi_max.values), 0.03),
    ("swath/MODIS_T-JPL-L2P-v2014.0.nc", "sea_surface_temperature", lambda ds: ~np.isfinite(ds.lat.values), 0.0),
    ("swath/AMSR2-L2B_*.nc", "sea_surface_temperature", _amsr2_land, 0.0),
    ("swath/AMSR2-L2B_*.nc", "wind_speed", _amsr2_land, 0.0),
]


@pytest.mark.parametrize("relative, name, truth, share", REAL, ids=[f"{r[0].split('/')[1][:12]}-{r[1]}" for r in REAL])
def test_auto_domain_keeps_land_sea_space_and_outside_swath(relative, name, truth, share):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # files' own decoding warnings
        ds = xr.open_dataset(shared_file(relative))
    arr = ds[name]
    gaps = ~xdl.conventions.cf.cf_valid_mask(arr).values
    true_out = np.broadcast_to(truth(ds), gaps.shape)
    out = outside(domains.auto_domain(ds, arr), arr)
    before = int((gaps & true_out).sum())  # domain="auto" used to fill every one of them
    still = int((gaps & true_out & ~out).sum())
    assert before > 1000 and still <= share * before, (still, before)
    assert not (out & ~gaps).any()  # never a valid pixel outside
    # Gaps the file does not call outside stay fillable (MODIS: clouds and land inside the swath).
    assert not (out & gaps & ~true_out).any()


def test_model_ocean_grid_variable_keeps_every_missing_pixel_outside():
    # CMIP ocean output names its ocean cell area: its missing pixels are land, even a lake-sized
    # interior one that the shape rule would fill; without that attribute the interior hole is a gap.
    values = np.full((40, 60), 290.0, "f4")
    values[18:22, 28:32] = np.nan  # an island inside the grid
    plain = xr.DataArray(values, dims=("lat", "lon"), coords={"lat": np.arange(40.0), "lon": np.arange(60.0)},
                         name="tos")
    cmip = plain.assign_attrs(associated_files="baseURL: x areacello: areacello_fx_model.nc")
    assert domains.on_model_ocean_grid(cmip) and not domains.on_model_ocean_grid(plain)
    with pytest.warns(xdl.XdlWarning, match=r"ocean-grid output .* \(16\)"):  # one step: the user's gaps too (probe)
        assert outside(domains.auto_domain(cmip), cmip).sum() == 16
    assert domains.auto_domain(plain) is None
    cf_measures = plain.assign_attrs(cell_measures="area: areacello")
    with pytest.warns(xdl.XdlWarning, match="ocean-grid output"):
        assert outside(domains.auto_domain(cf_measures), cf_measures).sum() == 16
    # A series of 4 or more steps: a gap in some of them is seen in others, so no warning.
    series = xr.concat([cmip] * 4, "time").assign_attrs(cmip.attrs)
    with warnings.catch_warnings():
        warnings.simplefilter("error", xdl.XdlWarning)
        assert outside(domains.auto_domain(series), series[0]).sum() == 16


def test_goes_lst_water_flag_is_outside_and_clouds_are_filled():
    ds = xr.open_dataset(shared_file("goes/goes16_OR_ABI-L2-LSTM2-M6_G16_*.nc"))
    gaps = ~xdl.conventions.cf.cf_valid_mask(ds.LST).values
    water = (ds.DQF.fillna(0).values.astype(int) & 16) == 16  # "invalid_due_to_water_surface_type_qf"
    out = outside(domains.auto_domain(ds, ds.LST), ds.LST)
    assert np.array_equal(out, gaps & water) and int(out.sum()) == 22_678  # was 0: water filled
    assert int((gaps & ~out).sum()) == 180_630  # clouds: still filled


def test_water_surface_class_of_masks_and_values():
    _, land = sst_scene()
    lst = np.where(land, smooth((1, 64, 64)), np.nan)  # a land variable: valid only on land
    lst[0, 30, 30] = np.nan  # a gap on land
    dqf = np.where(land, 0, 16 | 4).astype("u2")  # water (16) and cloudy (4) bits at sea
    ds = xr.Dataset({"LST": (("time", "y", "x"), lst),
                     "DQF": (("y", "x"), dqf, {"flag_masks": np.array([4, 4, 16, 16], "u2"),
                                               "flag_values": np.array([0, 4, 0, 16], "u2"),
                                               "flag_meanings": "clear cloudy valid_land_or_inland_water "
                                                                "invalid_due_to_water_surface_type"})})
    assert np.array_equal(outside(domains.auto_domain(ds, ds.LST), ds.LST)[0], ~land)


def test_uk_osgb_inpaint_leaves_the_sea_and_fills_land_gaps():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = xr.open_dataset(shared_file("projected/uk_tmean_1910_osgb.nc"))[["tmean", "crs"]]
    sea = ~np.isfinite(ds.tmean.values)
    holey = ds.assign(tmean=ds.tmean.where(~((np.arange(290) % 50 < 2)[:, None] & ~sea[0])))  # scan lines on land
    out = holey.dl.inpaint(model())
    flags = out.tmean_inpainted.values
    assert (flags[sea] == FLAG_OUTSIDE).mean() > 0.99
    lines = np.isnan(holey.tmean.values) & ~sea
    # Within 4 pixels of the sea a scan line cannot be told from an inlet; beyond, it is filled.
    assert lines.sum() > 300 and (flags[lines] == FLAG_FILLED).mean() > 0.85


# ---------------------------------------------------------------- generated: each rule alone

def sst_scene(times=1, n=64):
    data = smooth((times, n, n))
    land = np.zeros((n, n), bool)
    land[20:40, 20:44] = True  # an island in the middle: interior, wide
    data[:, land] = np.nan
    data[:, 50:52, :] = np.nan  # scan lines across the scene (touch both edges)
    data[:, 5:9, 5:12] = np.nan  # a small cloud
    return data, land


def test_land_binary_mask_variable_is_used_for_sea_variables_only():
    data, land = sst_scene()
    t2m = smooth((1, 64, 64), seed=1)
    t2m[:, 50:52, :] = np.nan  # defined everywhere: gaps on land too
    t2m[:, 30, 30] = np.nan
    ds = xr.Dataset({"sst": (("time", "y", "x"), data), "t2m": (("time", "y", "x"), t2m),
                     "lsm": (("y", "x"), land.astype("f4"), {"standard_name": "land_binary_mask"})})
    out = ds.dl.inpaint(model())
    assert (out.sst_inpainted.values[0][land] == FLAG_OUTSIDE).all()
    assert np.isfinite(out.sst.values[0][~land]).all()  # scan lines and cloud at sea: filled
    assert np.isfinite(out.t2m.values).all()  # t2m lives on both sides: the mask does not restrict it


def test_land_area_fraction_in_percent_and_sea_binary_mask():
    data, land = sst_scene()
    for var in (xr.DataArray(np.where(land, 100.0, 0.0), dims=("y", "x"), attrs={"standard_name": "land_area_fraction", "units": "%"}),
                xr.DataArray((~land).astype("i1"), dims=("y", "x"), attrs={"standard_name": "sea_binary_mask"})):
        ds = xr.Dataset({"sst": (("time", "y", "x"), data), "m": var})
        assert np.array_equal(outside(domains.auto_domain(ds, ds.sst), ds.sst)[0], land)


def test_ghrsst_l2p_flags_land_bit():
    data, land = sst_scene(times=2)
    flags = np.where(land, 2, 0).astype("i2") | 1  # bit 0 "microwave" everywhere, bit 1 land
    meanings = "0_passive_microwave_data 1_observation_over_land 2_observation_over_ice " \
               "15_observation_has_possible_land_contamination"
    ds = xr.Dataset({"sst": (("time", "nj", "ni"), data),
                     "l2p_flags": (("time", "nj", "ni"), np.broadcast_to(flags, data.shape).copy(),
                                   {"flag_masks": np.array([1, 2, 4], "i2"), "flag_meanings": meanings})})
    out = outside(domains.auto_domain(ds, ds.sst, dims=("nj", "ni")), ds.sst)
    assert np.array_equal(out, np.broadcast_to(land, data.shape))
    plain = ds.assign(l2p_flags=ds.l2p_flags.assign_attrs(flag_meanings="microwave land ice", flag_masks=np.array([1, 2, 4], "i2")))
    assert np.array_equal(outside(domains.auto_domain(plain, plain.sst, dims=("nj", "ni")), plain.sst), out)


def test_swath_lat_lon_missing_is_outside():
    data, _ = sst_scene()
    lat = np.tile(np.linspace(-10, 10, 64)[:, None], (1, 64)).astype("f4")
    lon = lat.T.copy()
    lat[:, :6] = np.nan  # outside the swath
    lon[:, :6] = np.nan
    data[:, :, :6] = np.nan
    arr = xr.DataArray(data, dims=("time", "nj", "ni"), name="sst",
                       coords={"lat": (("nj", "ni"), lat), "lon": (("nj", "ni"), lon)})
    out = outside(domains.auto_domain(arr), arr)[0]
    assert out[:, :6].all() and not out[:, 6:].any()  # the island is not called outside: a swath says where


def test_single_scene_shape_rule():
    data, land = sst_scene()
    # The wide interior island, scan lines and the cloud are all gaps a single scene may fill.
    arr = xr.DataArray(data, dims=("time", "y", "x"), name="v")
    assert domains.auto_domain(arr) is None
    # Sea touching the edge, wide: outside; a scan line crossing land and sea stays fillable on land.
    scene = smooth((1, 64, 64))
    scene[:, :, 40:] = np.nan  # "sea": 24 columns at the right edge
    scene[:, 10:12, :] = np.nan
    arr = xr.DataArray(scene, dims=("time", "y", "x"), name="v")
    with pytest.warns(xdl.XdlWarning, match=r"domain='auto': 1544 missing pixels of 'v' .* domain=None"):
        out = outside(domains.auto_domain(arr), arr)[0]
    assert out[:, 40:].all()
    assert out[10:12, 36:40].all() and not out[10:12, :36].any()  # 4 pixels deep into the line
    assert not out[:10, :40].any()
    # Narrow edge strips (a subset border, test_cli's 6 land columns) are filled.
    strip = smooth((1, 64, 64))
    strip[:, :, -6:] = np.nan
    assert domains.auto_domain(xr.DataArray(strip, dims=("time", "y", "x"))) is None


def test_time_series_never_observed_region_is_outside():
    data, land = sst_scene(times=domains.SERIES)
    data[1, 5:9, 5:12] = 281.0  # the cloud moves: observed once
    arr = xr.DataArray(data, dims=("time", "y", "x"), name="sst")
    with pytest.warns(xdl.XdlWarning, match=r"480 missing pixels \(in each sample\) of 'sst' in regions that none of its 4 samples"):
        out = outside(domains.auto_domain(arr), arr)
    assert np.array_equal(out[0], land)  # interior, never observed, wide: land
    with pytest.warns(xdl.XdlWarning, match="domain=None to fill them"):
        filled = arr.dl.inpaint(model())
    assert np.isnan(filled.values[:, land]).all()
    assert np.isfinite(filled.values[:, ~land]).all()  # scan lines (same rows every step) filled


@pytest.mark.parametrize("times", [2, 3])
def test_a_short_series_fills_an_interior_region_none_of_its_samples_observes(times):
    # Two months that both miss the same interior block (ERA-Interim z at 500 hPa, a 30 x 60 block:
    # all 3,600 pixels were left NaN, flagged outside, without a word) are no evidence of land.
    data, land = sst_scene(times=times)
    arr = xr.DataArray(data, dims=("time", "y", "x"), name="sst")
    assert domains.auto_domain(arr) is None
    assert np.isfinite(arr.dl.inpaint(model()).values).all()


def test_all_nan_scene_has_no_shape_domain():
    arr = xr.DataArray(np.full((1, 32, 32), np.nan, "f4"), dims=("time", "y", "x"))
    assert domains.auto_domain(arr) is None


def test_unknown_domain_string_is_refused():
    arr = xr.DataArray(smooth((1, 16, 16)), dims=("time", "y", "x"), name="v")
    with pytest.raises(InputError, match="domain='land'"):
        arr.dl.inpaint(model(), domain="land")


# ---------------------------------------------------------------- masks and domains by label

def labelled(ny=40, nx=48, descending=True):
    y = np.arange(ny, dtype="f8")[::-1] if descending else np.arange(ny, dtype="f8")
    data = smooth((1, ny, nx))
    data[0, 5:7, :] = np.nan
    return xr.DataArray(data, dims=("time", "y", "x"), name="v",
                        coords={"y": ("y", y, {"axis": "Y"}), "x": ("x", np.arange(nx, dtype="f8"), {"axis": "X"})})


def test_reversed_mask_is_aligned_and_shifted_mask_is_refused():
    arr = labelled()
    good = xr.DataArray(np.ones((40, 48), bool), dims=("y", "x"), coords={"y": arr.y, "x": arr.x})
    good[20:24, :] = False  # rows to refill, by label
    expected = arr.dl.inpaint(model(), mask=good)
    flipped = good.isel(y=slice(None, None, -1))
    assert not np.array_equal(flipped.values, good.values)
    np.testing.assert_array_equal(arr.dl.inpaint(model(), mask=flipped).values, expected.values)
    shuffled = good.isel(x=np.random.default_rng(1).permutation(48))
    np.testing.assert_array_equal(arr.dl.inpaint(model(), mask=shuffled).values, expected.values)
    shifted = good.assign_coords(y=good.y + 100)
    with pytest.raises(InputError, match=r"mask's 'y' labels do not match"):
        arr.dl.inpaint(model(), mask=shifted)
    with pytest.raises(InputError, match=r"domain's 'y' labels do not match"):
        arr.dl.inpaint(model(), domain=shifted)
    with pytest.raises(InputError, match=r"gaps's 'y' labels"):
        _broadcast_bool(shifted, arr, "gaps")
    # evaluate's masks follow the same rule
    np.testing.assert_array_equal(_broadcast_bool(flipped, arr, "gaps"), _broadcast_bool(good, arr, "gaps"))
    # Float noise in the labels (float32 vs float64 coordinates) is the same grid.
    noisy = good.assign_coords(y=good.y.astype("f4"))
    np.testing.assert_array_equal(arr.dl.inpaint(model(), mask=noisy).values, expected.values)


def test_reversed_domain_is_aligned():
    arr = labelled()
    dom = xr.DataArray(np.ones((40, 48), bool), dims=("y", "x"), coords={"y": arr.y, "x": arr.x})
    dom[:, 30:] = False
    a = arr.dl.inpaint(model(), domain=dom).values
    b = arr.dl.inpaint(model(), domain=dom.isel(y=slice(None, None, -1))).values
    np.testing.assert_array_equal(a, b)
    assert np.isnan(a[0, 5:7, 30:]).all() and np.isfinite(a[0, 5:7, :30]).all()


# ---------------------------------------------------------------- all-NaN input: one behaviour

@pytest.mark.parametrize("lazy", [False, True])
def test_all_nan_input_gives_nan_and_unfillable_flags_in_memory_and_lazy(lazy):
    ds = xr.Dataset({"v": (("time", "y", "x"), np.full((2, 24, 24), np.nan, "f4"))})
    if lazy:
        ds = ds.chunk({"time": 1})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = ds.dl.inpaint(model()).compute()
    assert np.isnan(out.v.values).all()
    assert (out.v_inpainted.values == FLAG_UNFILLABLE).all()
    said = [w for w in caught if "no valid value" in str(w.message)]
    assert bool(said) == (not lazy)  # in memory it is free to see, so it says so


# ---------------------------------------------------------------- CLI: --domain-file

def test_cli_domain_file(tmp_path):
    import torch

    data, land = sst_scene(times=2, n=48)
    coords = {"y": ("y", np.arange(48.0)[::-1], {"axis": "Y"}), "x": ("x", np.arange(48.0), {"axis": "X"})}
    xr.Dataset({"sst": (("time", "y", "x"), data)}, coords=coords).to_netcdf(tmp_path / "in.nc")
    mask = xr.Dataset({"land": (("y", "x"), land.astype("i1"))}, coords=coords)
    mask.isel(y=slice(None, None, -1)).to_netcdf(tmp_path / "mask.nc")  # stored south-up: aligned by label
    torch.manual_seed(0)
    model().save(tmp_path / "m.safetensors")
    out = tmp_path / "out.zarr"
    assert main(["inpaint", str(tmp_path / "in.nc"), str(out), "--model", str(tmp_path / "m.safetensors"),
                 "--domain-file", str(tmp_path / "mask.nc"), "--domain", "land == 0", "--no-progress"]) == 0
    result = xr.open_zarr(out)
    assert np.isnan(result.sst.values[:, land]).all()
    assert np.isfinite(result.sst.values[:, ~land]).all()
    assert main(["inpaint", str(tmp_path / "in.nc"), str(tmp_path / "o2.zarr"), "--model", str(tmp_path / "m.safetensors"),
                 "--domain-file", str(tmp_path / "mask.nc"), "--no-progress"]) == 1


# ---------------------------------------------------------------- property test

@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), ny=st.integers(34, 60), nx=st.integers(34, 60),
       gap_share=st.floats(0.0, 0.5), chunk_y=st.integers(8, 60), chunk_x=st.integers(8, 60),
       descending=st.booleans(), periodic=st.booleans(),
       mask_order=st.sampled_from(["same", "reversed", "permuted", "shifted"]))
def test_property_valid_bit_identical_and_domain_filled(seed, ny, nx, gap_share, chunk_y, chunk_x,
                                                        descending, periodic, mask_order):
    rng = np.random.default_rng(seed)
    data = (rng.standard_normal((2, ny, nx)) * 10 ** rng.uniform(-2, 4)).astype("f4")
    data[rng.random(data.shape) < gap_share] = np.nan
    y = np.linspace(-60, 60, ny)[::-1] if descending else np.linspace(-60, 60, ny)
    x = np.arange(nx) * (360.0 / nx) if periodic else np.arange(nx) * 0.5
    arr = xr.DataArray(data, dims=("time", "lat", "lon"), name="v",
                       coords={"lat": ("lat", y, {"units": "degrees_north"}), "lon": ("lon", x, {"units": "degrees_east"})})
    quality = rng.random((ny, nx)) > 0.1  # a quality rule: True = trusted
    mask = xr.DataArray(quality, dims=("lat", "lon"), coords={"lat": arr.lat, "lon": arr.lon})
    domain = xr.DataArray(np.ones((ny, nx), bool), dims=("lat", "lon"), coords={"lat": arr.lat, "lon": arr.lon})
    domain[:, : nx // 5] = False
    if mask_order == "reversed":
        mask, domain = mask.isel(lat=slice(None, None, -1)), domain.isel(lon=slice(None, None, -1))
    elif mask_order == "permuted":
        mask, domain = mask.isel(lon=rng.permutation(nx)), domain.isel(lat=rng.permutation(ny))
    elif mask_order == "shifted":
        shifted = mask.assign_coords(lat=mask.lat + 100.0)
        with pytest.raises(InputError, match="'lat' labels do not match"):
            arr.dl.inpaint(model(), mask=shifted)
        return
    out = arr.chunk({"lat": chunk_y, "lon": chunk_x}).dl.inpaint(model(), mask=mask, domain=domain).values
    valid = np.isfinite(data) & quality[None]
    inside = np.broadcast_to(np.ones((ny, nx), bool) & (np.arange(nx) >= nx // 5)[None, :], data.shape)
    assert np.array_equal(out[valid], data[valid])  # bit for bit
    assert np.isnan(out[~valid & ~inside]).all()  # outside the domain: never filled
    for t in range(2):
        if valid[t][inside[t]].any():
            assert np.isfinite(out[t][inside[t]]).all()  # no NaN left inside the domain


def test_a_long_series_leaves_coarse_land_out_and_fills_a_dead_line():
    # sst_ndjfm_anom.nc (5 degrees, 50 winters): Australia and North America are 3-5 pixels across,
    # never observed, and were filled with anomalies of -1.8..3.0 K. A detector line NaN in every
    # scene is no land: it stays a gap to fill.
    data = smooth((domains.SERIES, 18, 30))
    data[:, 10:15, 22:28] = np.nan  # land, 5 x 6 pixels, interior
    data[:, 5, :] = np.nan  # a dead line, every scene
    data[:, 1:5, 10:14] = np.nan  # a 4-row dropout, every scene
    arr = xr.DataArray(data, dims=("time", "y", "x"), name="sst")
    with pytest.warns(xdl.XdlWarning, match="30 missing pixels"):
        out = outside(domains.auto_domain(arr), arr)[0]
    assert out[10:15, 22:28].all() and out.sum() == 30


def test_a_long_series_leaves_land_cut_by_the_grid_edge_out():
    # sst_ndjfm_anom.nc: Asia and northern Australia are cut by the 5-degree Pacific grid's edge,
    # 2-6 pixels from it: 47 of the 90 land pixels were filled with anomalies in all 50 winters.
    # A band of rows running across the scene (a dropout in every scene) stays a gap to fill.
    data = smooth((domains.SERIES, 18, 30))
    data[:, 15:, :7] = np.nan  # land in a corner, 3 x 7 pixels
    data[:, :2, 2:6] = np.nan  # land at the top edge, 2 x 4
    data[:, 8:11, :] = np.nan  # a 3-row dropout across the scene, every scene
    arr = xr.DataArray(data, dims=("time", "y", "x"), name="sst")
    with pytest.warns(xdl.XdlWarning, match="29 missing pixels"):
        out = outside(domains.auto_domain(arr), arr)[0]
    assert out[15:, :7].all() and out[:2, 2:6].all() and not out[8:11].any()


def test_the_sst_anomaly_series_never_fills_land():
    path = shared_file("ocean_land/sst_ndjfm_anom.nc")
    ds = xr.open_dataset(path)
    land = ~np.isfinite(ds.sst.values).any(0)
    out = outside(domains.auto_domain(ds, ds.sst), ds.sst)[0]
    assert out[land].all() and not out[~land].any()


def _lst_like_file(tmp_path):
    """A field with a DQF flag variable whose water class marks pixels never to fill (GOES LST)."""
    import netCDF4

    path = tmp_path / "lst.nc"
    rng = np.random.default_rng(0)
    with netCDF4.Dataset(path, "w") as d:
        d.createDimension("y", 40)
        d.createDimension("x", 48)
        d.createVariable("y", "f8", ("y",))[:] = np.arange(40.0)
        d.createVariable("x", "f8", ("x",))[:] = np.arange(48.0)
        dqf = d.createVariable("DQF", "u1", ("y", "x"))
        dqf.flag_masks = np.array([1, 16], "u1")
        dqf.flag_meanings = "cloud water"
        flags = np.zeros((40, 48), "u1")
        flags[:, 36:] = 16  # water at the right edge
        flags[10:14, :20] = 1  # a cloud over land
        dqf[:] = flags
        lst = d.createVariable("LST", "f4", ("y", "x"), fill_value=np.float32(np.nan))
        lst.ancillary_variables = "DQF"
        values = (290 + rng.standard_normal((40, 48))).astype("f4")
        values[flags > 0] = np.nan
        lst[:] = values
    return path


def test_a_dataarray_without_its_land_water_flags_warns(tmp_path):
    # The Dataset's fill keeps the DQF water class NaN; a DataArray does not carry DQF, so its fill
    # cannot: it says so (GOES LST: 323 water pixels were filled silently) and names the fixes.
    ds = xr.open_dataset(_lst_like_file(tmp_path))
    water = np.zeros((40, 48), bool)
    water[:, 36:] = True
    assert np.isnan(ds.dl.inpaint(variables=["LST"]).LST.values[water]).all()
    with pytest.warns(xdl.XdlWarning, match=r"names the flag variable 'DQF'.*assign_coords\(DQF=ds\['DQF'\]\)"):
        ds.LST.dl.inpaint()
    kept = ds.LST.assign_coords(DQF=ds.DQF).dl.inpaint()
    assert np.isnan(kept.values[water]).all()
    # A variable that names no flags (GHRSST L2P SST beside l2p_flags): the file's flag variable
    # on its dims is found too (AMSR2 SST filled every land pixel of its swath silently; probe).
    import netCDF4

    (tmp_path / "unnamed").mkdir()
    with netCDF4.Dataset(_lst_like_file(tmp_path / "unnamed"), "a") as nc:
        nc["LST"].delncattr("ancillary_variables")
    unnamed = xr.open_dataset(tmp_path / "unnamed" / "lst.nc")
    with pytest.warns(xdl.XdlWarning, match=r"comes from a file whose flag variable 'DQF' has land/water classes"):
        unnamed.LST.dl.inpaint()


def test_a_missing_grid_mapping_of_the_dataset_itself_is_no_geostationary_advice():
    ds = xr.Dataset({"h": (("lat", "lon"), np.ones((20, 30)), {"grid_mapping": "crs"})},
                    coords={"lat": np.linspace(-10, 10, 20), "lon": np.linspace(0, 30, 30)})
    with pytest.warns(UserWarning, match="neither the Dataset nor its file has") as record:
        domains.auto_domain(ds, ds.h)
    assert not any("Fill the Dataset instead" in str(w.message) for w in record)


def test_a_global_single_scene_takes_its_seam_for_an_edge():
    # Pinned, as the README states it: a wide gap across 0 E of one global scene is taken for sea
    # (warned) while the same gap inland is filled. Wrapping the rule filled Africa and Eurasia of
    # the one-scene global mss.nc (61% of its land instead of 25%; session 38's probe).
    lon = np.arange(0.0, 360.0, 3.0)
    scene = smooth((1, 60, lon.size))
    across, inland = scene.copy(), scene.copy()
    across[:, 20:40, np.r_[0:15, lon.size - 15:lon.size]] = np.nan
    inland[:, 20:40, 45:75] = np.nan
    coords = {"lon": ("lon", lon, {"units": "degrees_east"})}
    arr = xr.DataArray(across, dims=("time", "lat", "lon"), coords=coords)
    with pytest.warns(xdl.XdlWarning, match="600 missing pixels"):
        assert outside(domains.auto_domain(arr), arr).sum() == 600
    assert domains.auto_domain(xr.DataArray(inland, dims=("time", "lat", "lon"), coords=coords)) is None


def _sea_ice_codes(tmp_path):
    """A NOAA/NSIDC sea-ice CDR look-alike: ubyte concentration 0..100 (scale 0.01) whose own
    flag_values 251..255 mark pole hole, lakes, coast, land and missing data."""
    n = 48
    yy, xx = np.mgrid[0:n, 0:n]
    codes = np.clip(np.round(100 * (1 - yy / n) + 5 * np.sin(xx / 7)), 0, 100).astype("u1")
    land = (abs(yy - 30) < 6) & (abs(xx - 24) < 6)
    coast = ~land & (abs(yy - 30) < 8) & (abs(xx - 24) < 8)
    codes[land], codes[coast], codes[5:8, 20:26], codes[15, 5:20] = 254, 253, 251, 255
    ds = xr.Dataset({"conc": (("y", "x"), codes, dict(
        standard_name="sea_ice_area_fraction", units="1", scale_factor=np.float32(0.01), _FillValue=np.uint8(255),
        valid_range=np.array([0, 100], "u1"), flag_values=np.array([251, 252, 253, 254, 255], "u1"),
        flag_meanings="pole_hole_mask lakes coastal land_mask missing_data"))},
        coords={"x": ("x", 25e3 * np.arange(n), {"standard_name": "projection_x_coordinate", "units": "m"}),
                "y": ("y", -25e3 * np.arange(n), {"standard_name": "projection_y_coordinate", "units": "m"})})
    ds.to_netcdf(tmp_path / "seaice.nc")
    return tmp_path / "seaice.nc", codes


@pytest.mark.parametrize("open_kw", [{}, {"mask_and_scale": False}, {"chunks": {}}])
def test_a_data_variable_with_its_own_flag_codes_fills_only_its_missing_ones(tmp_path, open_kw):
    # Sea-ice concentration carries land, coast and pole-hole codes in the variable itself: the
    # Dataset refused it as "a flag variable", and the DataArray filled every code with a
    # concentration, flagged 1 (probe). The codes that say what lies there are outside (flag 3).
    path, codes = _sea_ice_codes(tmp_path)
    ds = xr.open_dataset(path, **open_kw)
    with warnings.catch_warnings():
        warnings.simplefilter("error", xdl.XdlWarning)  # no "outside its valid range" warning
        out = ds.dl.inpaint(variables=["conc"]).compute()  # raw counts are no default variable
    flags, values = out.conc_inpainted.values, out.conc.values
    for code in (251, 253, 254):
        assert (flags[codes == code] == FLAG_OUTSIDE).all() and np.isnan(values[codes == code]).all()
    assert (flags[codes == 255] == FLAG_FILLED).all() and np.isfinite(values[codes == 255]).all()
    valid = codes <= 100
    assert np.array_equal(values[valid], ds.conc.values[valid])
    if open_kw.get("mask_and_scale", True):
        assert "flag_values" not in out.conc.attrs  # decoded: the packed codes are gone
    da_out = ds.conc.dl.inpaint().compute()  # the DataArray path alike
    assert np.array_equal(da_out.values, values, equal_nan=True)


def test_a_scan_dropout_across_a_single_scene_is_filled_and_the_same_band_at_its_edge_is_not():
    # A VIIRS scan of 16 lines missing across a swath scene (its lat/lon complete) was left NaN as
    # "a wide region at the edge"; with the bow-tie rows beside it, 18 lines (probe).
    scene = smooth((1, 120, 150))
    dropout = scene.copy()
    dropout[:, 50:66, :] = np.nan
    dropout[:, 48:50, :40] = dropout[:, 66:68, :40] = np.nan  # bow-tie rows at the swath's side
    dropout[:, 49, :] = dropout[:, 66, :] = np.nan
    assert domains.auto_domain(xr.DataArray(dropout, dims=("time", "y", "x"))) is None
    at_edge = scene.copy()
    at_edge[:, :16, :] = np.nan  # the same band at the top: sea beyond a coast, outside as before
    arr = xr.DataArray(at_edge, dims=("time", "y", "x"))
    with pytest.warns(xdl.XdlWarning, match=f"{16 * 150} missing pixels"):
        assert outside(domains.auto_domain(arr), arr)[0, :16].all()


def test_own_flag_codes_of_an_unsigned_byte_a_fill_value_or_an_empty_range(tmp_path):
    # Review of the flag-code rule: an _Unsigned byte stores land 254 as -2 (land was filled with
    # concentrations); a land code that is also the fill value is NaN once decoded (refused, as
    # before); a signed flag byte with valid_range 0, -1 is no data variable.
    n = 32
    codes = np.full((n, n), 40, "u1")
    codes[10:20, 10:20] = 254
    codes[25, 2:8] = 255
    attrs = dict(valid_range=np.array([0, 100], "i1"), flag_values=np.array([-2, -1], "i1"),
                 flag_meanings="land missing", _Unsigned="true", _FillValue=np.int8(-1))
    ds = xr.Dataset({"conc": (("y", "x"), (codes.astype("f4") + np.linspace(0, 1, n)[None]).astype("f4"))})
    ds["conc"] = (("y", "x"), codes.view("i1"), attrs)
    ds.to_netcdf(tmp_path / "byte.nc", format="NETCDF3_CLASSIC")
    for kw in ({}, {"mask_and_scale": False}):
        out = xr.open_dataset(tmp_path / "byte.nc", **kw).dl.inpaint(variables=["conc"], domain="auto").compute()
        assert (out.conc_inpainted.values[codes == 254] == FLAG_OUTSIDE).all()
        assert (out.conc_inpainted.values[codes == 255] == FLAG_FILLED).all()
    land_is_fill = xr.DataArray(codes, dims=("y", "x"), attrs=dict(
        valid_range=np.array([0, 100], "u1"), flag_values=np.array([254], "u1"), flag_meanings="land"))
    land_is_fill.encoding["_FillValue"] = np.uint8(254)
    assert cf.code_kind(land_is_fill) == "a flag variable"
    empty = xr.DataArray(codes.view("i1"), dims=("y", "x"), attrs=dict(
        valid_range=np.array([0, -1], "i1"), flag_values=np.array([0, 1, -128], "i1"), flag_meanings="good ok bad"))
    assert cf.code_kind(empty) == "a flag variable"


def test_a_land_band_across_a_regional_crop_is_no_dropout():
    # Review: land crossing a crop end to end, with its coastline beside it (Anatolia in a crop of
    # mss.nc), was filled as a dropout when any observed pixel nearby sufficed.
    scene = smooth((1, 80, 60))
    yy, xx = np.mgrid[0:80, 0:60]
    land = (yy >= 30) & (yy < 47) | ((yy >= 26) & (yy < 30) & (xx % 9 < 5)) | ((yy >= 47) & (yy < 50) & (xx % 7 < 4))
    scene[:, land] = np.nan
    arr = xr.DataArray(scene, dims=("time", "y", "x"))
    with pytest.warns(xdl.XdlWarning, match="taken for sea or space"):
        assert outside(domains.auto_domain(arr), arr)[0, 30:47].all()
