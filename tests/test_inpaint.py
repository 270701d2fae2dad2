"""Gap filling: valid data bit-identical, domain, CF masks, flags, history, chunk invariance."""

import dask.array as da
import numpy as np
import pytest
import torch
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xdl
from xdl.errors import InputError
from xdl.inpaint import FLAG_FILLED, FLAG_OUTSIDE, FLAG_UNFILLABLE, FLAG_VALID

from conftest import shared_file


def gap_model():
    import torch

    torch.manual_seed(0)
    return xdl.zoo.create("pconv-unet", in_channels=1, depth=3, base_channels=8,
                          card={"normalization": {"kind": "per_sample"}})


MODEL = None


def model():
    global MODEL
    if MODEL is None:
        MODEL = gap_model()
    return MODEL


def smooth_field(shape, seed=0):
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, shape[-2])[:, None]
    x = np.linspace(0, 1, shape[-1])[None, :]
    base = np.sin(6 * x + rng.uniform(0, 6)) * np.cos(4 * y + rng.uniform(0, 6))
    return (280 + 5 * base + 0.1 * rng.standard_normal(shape)).astype("f4")


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), ny=st.integers(9, 70), nx=st.integers(9, 70),
       gap_share=st.floats(0.0, 0.6), chunk_y=st.integers(4, 70), chunk_x=st.integers(4, 70),
       dtype=st.sampled_from(["f4", "f8"]))
def test_valid_values_come_back_bit_identical(seed, ny, nx, gap_share, chunk_y, chunk_x, dtype):
    rng = np.random.default_rng(seed)
    data = (rng.standard_normal((2, ny, nx)) * 10 ** rng.uniform(-3, 5)).astype(dtype)
    data[rng.random(data.shape) < gap_share] = np.nan
    arr = xr.DataArray(data, dims=("time", "y", "x"), name="v")
    out = arr.chunk({"y": chunk_y, "x": chunk_x}).dl.inpaint(model()).values
    valid = np.isfinite(data)
    assert out.dtype == data.dtype
    assert np.array_equal(out[valid], data[valid])  # bit for bit, not approximately
    has_any = valid.reshape(2, -1).any(axis=1)
    for t in range(2):
        if has_any[t]:
            assert np.isfinite(out[t]).all()  # no NaN left inside the (default: whole) domain


def test_results_do_not_depend_on_chunking():
    data = smooth_field((2, 90, 110))
    data[:, 40:43, :] = np.nan
    data[1, 10:30, 60:80] = np.nan
    arr = xr.DataArray(data, dims=("time", "y", "x"), name="t")
    results = [arr.dl.inpaint(model(), tile=48).values]
    for chunks in ({"y": 30, "x": 25}, {"time": 1, "y": 90, "x": 110}, {"y": 17, "x": 64}):
        results.append(arr.chunk(chunks).dl.inpaint(model(), tile=48).values)
    for other in results[1:]:
        np.testing.assert_allclose(other, results[0], rtol=0, atol=1e-4)


def test_domain_is_respected_and_flags_say_why():
    data = smooth_field((1, 40, 50))
    data[0, 5:8, :] = np.nan          # a scan line crossing land and sea
    data[0, :, 45:] = np.nan          # "land": outside the domain, must stay NaN
    domain = np.ones((40, 50), bool)
    domain[:, 45:] = False
    ds = xr.Dataset({"sst": (("time", "y", "x"), data, {"units": "K"})})
    out = ds.dl.inpaint(model(), domain=xr.DataArray(domain, dims=("y", "x")))
    filled = out["sst"].values[0]
    assert np.isnan(filled[:, 45:]).all()
    assert np.isfinite(filled[:, :45]).all()
    flags = out["sst_inpainted"].values[0]
    assert (flags[:, 45:] == FLAG_OUTSIDE).all()
    assert (flags[5:8, :45] == FLAG_FILLED).all()
    assert (flags[:5, :45] == FLAG_VALID).all()
    assert out["sst_inpainted"].attrs["flag_meanings"].split()[0] == "valid_input"
    np.testing.assert_array_equal(out["sst_inpainted"].attrs["flag_values"], [0, 1, 2, 3, 4])  # 4: the model returned NaN or inf
    assert "sst_inpainted" in out["sst"].attrs["ancillary_variables"]
    assert "inpaint" in out.attrs["history"] and "pconv-unet" in out.attrs["history"]
    assert out["sst"].attrs["units"] == "K"


def test_coordinate_attributes_survive():
    ds = xr.Dataset({"v": (("time", "y", "x"), smooth_field((1, 32, 32)))},
                    coords={"y": ("y", np.arange(32.0), {"axis": "Y", "units": "m"}),
                            "x": ("x", np.arange(32.0), {"axis": "X", "units": "m"})})
    ds["v"][0, 3:5] = np.nan
    out = ds.dl.inpaint(model())
    assert out.y.attrs == {"axis": "Y", "units": "m"} and out.x.attrs["axis"] == "X"


def test_a_time_step_without_data_stays_nan_and_is_flagged_unfillable():
    data = smooth_field((3, 32, 32))
    data[1] = np.nan
    data[0, 10:12] = np.nan
    ds = xr.Dataset({"v": (("time", "y", "x"), data)}).chunk({"time": 1})
    out = ds.dl.inpaint(model()).compute()
    assert np.isnan(out["v"].values[1]).all()
    assert (out["v_inpainted"].values[1] == FLAG_UNFILLABLE).all()
    assert np.isfinite(out["v"].values[0]).all()


def test_no_gaps_means_unchanged_and_no_model_call():
    data = smooth_field((2, 32, 32))
    calls = []
    m = gap_model()
    original_forward = m.module.forward
    m.module.forward = lambda *a, **k: calls.append(1) or original_forward(*a, **k)
    out = xr.DataArray(data, dims=("time", "y", "x"), name="v").dl.inpaint(m)
    np.testing.assert_array_equal(out.values, data)
    assert calls == []


def test_quality_flag_rule_as_mask():
    data = smooth_field((1, 32, 40))
    dqf = np.zeros_like(data, dtype="f4")
    dqf[0, 3:6, :] = 2  # bad-quality rows: valid numbers, but not to be trusted
    ds = xr.Dataset({"Rad": (("time", "y", "x"), data), "DQF": (("time", "y", "x"), dqf,
                                                                {"flag_values": [0, 1, 2], "flag_meanings": "good a b"})})
    out = ds.dl.inpaint(model(), variables=["Rad"], mask=ds.DQF == 0)
    assert not np.array_equal(out["Rad"].values[0, 3:6], data[0, 3:6])  # replaced
    np.testing.assert_array_equal(out["Rad"].values[0, 6:], data[0, 6:])
    assert "DQF_inpainted" not in out  # flag variables are never filled


def test_cf_valid_range_on_packed_data_excludes_flag_values(tmp_path):
    # Raw int16 with scale 0.001: data 0..30 (raw 0..30000), flag codes raw 32000+ decode to 32+:
    # inside the RAW valid_range's numbers, outside the DECODED one, so they are not data.
    raw = np.full((1, 20, 30), 15000, dtype="i2")
    raw[0, :, :] += np.arange(30, dtype="i2") * 100
    raw[0, 4:6, :] = 32001  # e.g. "ice" flags
    raw[0, 10, 10] = -1     # _FillValue
    ds = xr.Dataset({"sst": (("time", "y", "x"), raw, {"scale_factor": 0.001, "add_offset": 0.0,
                                                       "_FillValue": np.int16(-1), "valid_range": np.array([0, 30000], "i2")})})
    path = tmp_path / "packed.nc"
    ds.to_netcdf(path)
    opened = xr.open_dataset(path)
    assert float(opened.sst.max()) > 32  # the flag codes decode into plausible-looking numbers
    valid = xdl.conventions.cf.cf_valid_mask(opened.sst).values
    assert not valid[0, 4:6].any() and not valid[0, 10, 10]
    assert valid[0, 0].all()
    with pytest.warns(xdl.XdlWarning, match=r"'sst': 60 of its 599 finite values .* outside its CF valid range"):
        out = opened.dl.inpaint(model())
    assert (out["sst_inpainted"].values[0, 4:6] == FLAG_FILLED).all()
    assert float(out["sst"].values[0, 4:6].max()) < 32


def _packed_then_where(tmp_path):
    """A packed uint16 temperature (GOES LST's packing: valid_range in raw units), opened and
    masked with .where(), which drops .encoding: its limits are raw numbers on decoded values."""
    raw = (np.arange(20 * 30, dtype="u2").reshape(1, 20, 30) % 400) * 40 + 36000  # 280-320 K
    flag = np.zeros((1, 20, 30), "u2")
    flag[0, 8:12, 5:25] = 2  # e.g. cloudy
    ds = xr.Dataset({"LST": (("time", "y", "x"), raw, {"scale_factor": 0.0025, "add_offset": 190.0,
                                                       "_FillValue": np.uint16(65535),
                                                       "valid_range": np.array([9200, 56000], "u2")}),
                     "DQF": (("time", "y", "x"), flag, {"_FillValue": np.uint16(65535),
                                                        "valid_range": np.array([0, 40], "u2")})})
    ds.to_netcdf(tmp_path / "lst.nc")
    opened = xr.open_dataset(tmp_path / "lst.nc")
    return opened, opened.LST.where(opened.DQF == 0)


def test_limits_of_a_lost_packing_are_an_error_not_a_field_of_nan(tmp_path):
    # .where() keeps attrs but drops .encoding: the raw valid_range [9200, 56000] then meets values
    # of 280-320 K and would make every one a gap (an all-NaN result) without this error.
    opened, masked = _packed_then_where(tmp_path)
    assert masked.encoding == {} and float(masked.max()) < 330
    for form in (masked, masked.chunk({"x": 10})):
        with pytest.raises(InputError, match=r"'LST': all 520 of its finite values .* packing is gone .*mask="):
            form.dl.inpaint(model()).compute()
    with pytest.raises(InputError, match=r"'LST': all 520 of its finite values .* packing is gone"):
        masked.dl.evaluate(model(), gaps="blocks")
    # Some values inside the raw limits: the warning (values outside become gaps) names the cause.
    partly = masked.where(masked.x < 20, 20000.0)  # a third of the columns inside the raw limits
    with pytest.warns(xdl.XdlWarning, match=r"outside its CF valid range .* uint16 .* dropped\?"):
        partly.dl.inpaint(model())
    # A few values outside such limits (under the 1% that warns otherwise: good GOES radiances
    # below the raw range's 0 after .where()) are told too, with the ways out (probe).
    few = masked.copy()
    few.attrs["valid_range"] = np.array([0, 56000], "u2")
    few[0, 0, 0] = -0.5
    with pytest.warns(xdl.XdlWarning, match=r"1 of its 520 finite values \(0.2%\) .* uint16 .*attrs.pop"):
        few.dl.inpaint(model())
    # The two ways out the message gives: the variable as opened with mask=, or mask= on the
    # masked one. Fills stay within the data's own range (the raw limits are no clip).
    valid = np.isfinite(masked.values)
    for out in (opened.LST.dl.inpaint(model(), mask=opened.DQF == 0),
                masked.dl.inpaint(model(), mask=np.isfinite(masked))):
        assert np.array_equal(out.values[valid], masked.values[valid])
        fills = out.values[~valid]
        assert np.isfinite(fills).all() and 275 < fills.min() < fills.max() < 325
    # An integer-coded flag turned float by its _FillValue (codes within its range) stays fine,
    # and so does a context variable of that kind; a context with lost packing is an error too.
    assert not xdl.conventions.validity.range_check(opened.DQF.where(opened.DQF < 100))
    fixed = masked.copy()
    fixed.attrs.pop("valid_range")  # the message's other way out
    gappy = opened.assign(LST=fixed)
    out = gappy.dl.inpaint(variables=["LST"], context=["DQF"])  # the bundled context model
    assert np.isfinite(out.LST.values).all()
    with pytest.raises(InputError, match=r"context variable 'LST2': all 600 .* model would see none"):
        gappy.assign(LST2=opened.LST.where(opened.LST > 0)).chunk({"x": 10}).dl.inpaint(
            variables=["LST"], context=["LST2"]).compute()


def test_mask_and_domain_shape_errors():
    arr = xr.DataArray(smooth_field((1, 20, 20)), dims=("time", "y", "x"), name="v")
    with pytest.raises(InputError, match="shape"):
        arr.dl.inpaint(model(), mask=np.ones((20, 21), bool))
    with pytest.raises(InputError, match="same grid"):
        arr.dl.inpaint(model(), domain=xr.DataArray(np.ones((20, 19), bool), dims=("y", "x")))
    with pytest.warns(UserWarning, match="no valid value"):  # no error: NaN back, as for dask input
        assert np.isnan((arr * np.nan).dl.inpaint(model()).values).all()
    with pytest.raises(InputError, match="dtype"):
        xr.DataArray(np.zeros((1, 8, 8), "i4"), dims=("time", "y", "x"), name="counts").dl.inpaint(model())
    predict_only = xdl.zoo.create("unet", in_channels=1, out_channels=1, depth=2, base_channels=4)
    with pytest.raises(InputError, match="does not fill gaps"):
        arr.dl.inpaint(predict_only)


def test_lazy_input_gives_lazy_output():
    arr = xr.DataArray(smooth_field((2, 32, 32)), dims=("time", "y", "x"), name="v").chunk({"time": 1})
    out = arr.dl.inpaint(model())
    assert isinstance(out.data, da.Array)


@pytest.mark.parametrize("uncertainty", [False, True])
def test_coordinates_chunked_unlike_the_data(uncertainty):
    """A 2-D lat/lon chunked unlike its variable (netCDF files store them so, and
    ``open_dataset(chunks={})`` keeps it: xarray's ``chunksizes`` then raises) is no obstacle: the
    output keeps the variable's own chunks and its valid values."""
    values = smooth_field((24, 32))
    values[5:9, 10:20] = np.nan
    coords = {"lat": (("y", "x"), da.zeros((24, 32), chunks=(24, 32))),
              "lon": (("y", "x"), da.zeros((24, 32), chunks=(24, 32)))}
    arr = xr.DataArray(da.from_array(values, chunks=(1, 32)), dims=("y", "x"), coords=coords, name="t")
    # With a sigma: the bundled default (the test model has no sigma head).
    out = arr.dl.inpaint(uncertainty=True) if uncertainty else arr.dl.inpaint(model())
    filled = out if isinstance(out, xr.DataArray) else out["t"]
    assert filled.data.chunks == arr.data.chunks
    got = filled.values
    assert np.array_equal(got[np.isfinite(values)], values[np.isfinite(values)])
    assert np.isfinite(got).all()


def test_a_real_file_with_coordinates_chunked_unlike_the_data():
    """The SEVIRI stereographic file opened with chunks={}: data in rows, lat/lon whole."""
    ds = xr.open_dataset(shared_file("projected/msg_toa_bt_10p8_stereographic.nc"), chunks={})
    out = ds.dl.inpaint(model())
    assert out["data"].data.chunks == ds["data"].data.chunks
    src, got = ds["data"].values, out["data"].values
    assert np.array_equal(got[np.isfinite(src)], src[np.isfinite(src)])


def test_goes_space_is_never_filled_and_scan_lines_are():
    path = shared_file("goes/OR_ABI-L1b-RadC-M6C07_G16_*.nc")
    ds = xr.open_dataset(path, chunks={}).isel(y=slice(0, 384), x=slice(0, 448))  # holds the off-earth wedge
    space = ~np.isfinite(ds.Rad.values)
    assert space.any()
    rows = xr.DataArray(np.arange(ds.sizes["y"]) % 64 < 2, dims="y")
    holey = ds[["Rad", "goes_imager_projection"]].assign(Rad=ds.Rad.where(~rows))
    out = holey.dl.inpaint(model()).compute()
    assert np.isnan(out.Rad.values[space]).all()
    assert (out.Rad_inpainted.values[space] == FLAG_OUTSIDE).all()
    gap_on_earth = rows.values[:, None] & ~space
    assert np.isfinite(out.Rad.values[gap_on_earth]).all()
    valid = np.isfinite(holey.Rad.values)
    assert np.array_equal(out.Rad.values[valid], holey.Rad.values[valid])
    assert out.Rad.attrs["grid_mapping"] == "goes_imager_projection"


class _Wild(__import__("torch").nn.Module):
    """A 'gap filler' that extrapolates wildly."""

    mode, in_channels, out_channels, size_multiple, halo = "spatial", 1, 1, 1, 0
    takes_mask, fills_gaps = True, True

    def forward(self, x, mask):
        return x * 0 + 1e6


def test_fills_are_clipped_to_the_sample_range_unless_asked_not_to():
    data = smooth_field((2, 24, 24))
    data[:, 5:8, :] = np.nan
    arr = xr.DataArray(data, dims=("time", "y", "x"), name="v")
    out = arr.dl.inpaint(_Wild()).values
    for t in range(2):
        lo, hi = np.nanmin(data[t]), np.nanmax(data[t])
        assert np.allclose(out[t, 5:8], hi + 0.1 * (hi - lo))
    assert (arr.dl.inpaint(_Wild(), clip=None).values[:, 5:8] == 1e6).all()


def test_geolocation_kept_as_data_variables_is_not_filled():
    # ABoVE's Albers grid holds its 2-D lat/lon as data variables (standard_name latitude /
    # longitude): a default inpaint filled them and added lon_inpainted and lat_inpainted.
    ny, nx = 24, 32
    lat = np.linspace(50, 60, ny)[:, None] + np.zeros((1, nx))
    lon = np.linspace(-100, -80, nx)[None, :] + np.zeros((ny, 1))
    lat[:3, :3] = lon[:3, :3] = np.nan  # off the projection's valid area
    data = 280 + np.random.default_rng(0).standard_normal((2, ny, nx)).astype("f4")
    data[:, 10:12, :] = np.nan
    ds = xr.Dataset({"nee": (("time", "y", "x"), data, {"coordinates": "xlat xlon"}),
                     "lat": (("y", "x"), lat, {"standard_name": "latitude"}),
                     "lon": (("y", "x"), lon, {"standard_name": "longitude"}),
                     "xlat": (("y", "x"), lat), "xlon": (("y", "x"), lon)})
    out = ds.dl.inpaint(xdl.zoo.create("fill-unet", depth=2, base_channels=4), domain=None)
    assert sorted(out.data_vars) == ["lat", "lon", "nee", "nee_inpainted", "xlat", "xlon"]
    assert np.isfinite(out.nee.values).all()
    for name in ("lat", "lon", "xlat", "xlon"):
        np.testing.assert_array_equal(out[name].values, ds[name].values)


def test_in_memory_inputs_are_never_written():
    """In-memory input goes to dask without a copy (xdl.dask_wrap): no step may write into it."""
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:96, 0:96]
    a = (np.sin(x / 7.0) + np.cos(y / 5.0) + 0.1 * rng.standard_normal((96, 96))).astype("f4")
    gappy = np.where(rng.random((96, 96)) < 0.1, np.nan, a).astype("f4")
    ds = xr.Dataset({"t": (("y", "x"), gappy), "c": (("y", "x"), 2 * a + 1)})
    before = {k: v.values.copy() for k, v in ds.data_vars.items()}

    class WritesItsInput(torch.nn.Module):
        in_channels = out_channels = 1
        size_multiple, halo, mode = 1, 0, "spatial"

        def forward(self, x):
            return x.mul_(2)

    ds.dl.inpaint(variables=["t"], context=["c"], uncertainty=True)
    ds.dl.inpaint(variables=["t"])
    ds["c"].dl.predict(WritesItsInput(), compile=False)
    for k, v in before.items():
        assert ds[k].values.tobytes() == v.tobytes(), k


def test_one_mask_for_several_default_variables_warns():
    """mask=ds.C13_DQF == 0 on a Dataset of two bands refilled 600 good pixels of the other band,
    silently (probe). A mask applied to more than one default variable now warns, naming them."""
    import warnings

    v = np.random.default_rng(0).normal(size=(20, 20)).astype("f4")
    ds = xr.Dataset({"a": (("y", "x"), v), "b": (("y", "x"), v + 1), "b_DQF": (("y", "x"), np.zeros((20, 20), "i1"))})
    ds["b_DQF"][5] = 1
    with pytest.warns(xdl.XdlWarning, match=r"mask= \(made from 'b_DQF'\) is applied to every variable filled: a, b"):
        ds.dl.inpaint(mask=ds.b_DQF == 0, domain=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error", xdl.XdlWarning)
        out = ds.dl.inpaint(mask=ds.b_DQF == 0, domain=None, variables=["b"])
    assert (out.b_inpainted.values[5] == 1).all() and (out.b_inpainted.values[:5] == 0).all()


@pytest.mark.parametrize("attrs, top", [({"units": "1", "long_name": "snow cover fraction"}, 1.0),
                                        ({"units": "(0 - 1)", "long_name": "Sea-ice cover"}, 1.0),
                                        ({"standard_name": "relative_humidity", "units": "%"}, 100.0)])
def test_fractions_and_humidity_without_a_valid_range_are_filled_within_their_nature(attrs, top):
    # Found by a probe: a snow cover fraction without a valid range was filled up to 1.065 (ERA5
    # sea ice with time_window up to 1.10, relative humidity to 109.5%): clip's 10% margin above
    # the valid values had nothing to stop it. Their nature now bounds them as a valid_range would.
    rng = np.random.default_rng(22)
    ky, kx = np.fft.fftfreq(200)[:, None], np.fft.rfftfreq(200)[None, :]
    k = np.hypot(ky, kx)
    k[0, 0] = 1
    g = np.fft.irfft2(np.fft.rfft2(rng.normal(size=(200, 200))) * k ** -1.4, s=(200, 200))
    field = np.clip(0.5 + 1.2 * (g - g.mean()) / g.std(), 0, 1) * top  # wide areas at exactly 0 and 1
    hidden = np.zeros(field.shape, bool)
    for r0, c0 in rng.integers(0, 180, (40, 2)):
        hidden[r0:r0 + 14, c0:c0 + 14] = True
    arr = xr.DataArray(np.where(hidden, np.nan, field).astype("f4"), dims=("y", "x"), name="v", attrs=attrs)
    out = arr.dl.inpaint(domain=None).values
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= top


def test_a_direction_is_warned_to_be_filled_through_its_components():
    # Found by a probe: wind direction across north (358 -> 1 degrees) was filled through south.
    arr = xr.DataArray(np.full((1, 32, 32), 10.0, "f4"), dims=("time", "y", "x"), name="wd",
                       attrs={"standard_name": "wind_from_direction", "units": "degree"})
    arr[0, 10:12, :] = np.nan
    with pytest.warns(xdl.XdlWarning, match=r"'wd' is a direction .*components"):
        arr.to_dataset().dl.inpaint(domain=None)
