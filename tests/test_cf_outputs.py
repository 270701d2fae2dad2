"""Outputs other tools read as xarray does: decoded attributes, physical fill bounds, the CF
valid-range warning, flag fill values, model failures, CF compliance and compression."""

import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import torch
import xarray as xr

from xdl.conventions import cf
from xdl.cli import main
from xdl.errors import XdlWarning
from xdl.inpaint import (FLAG_FILLED, FLAG_MODEL_FAILED, FLAG_NOT_WRITTEN, FLAG_UNFILLABLE, FLAG_VALID)
from xdl.io.write import write_output

from conftest import shared_file

LST = "goes/goes16_OR_ABI-L2-LSTM2-*.nc"
CONUS = "goes/OR_ABI-L1b-RadC-M6C16_G16_*.nc"
MODIS = "swath/MODIS_T-JPL-L2P-v2014.0.nc"
AMSR2 = "swath/AMSR2-L2B_*.nc"
ERA40 = "reanalysis/era40_tcw.nc"


class _Const(torch.nn.Module):
    """A 'gap filler' that answers one value everywhere (wild extrapolation, NaN, inf)."""

    mode, in_channels, out_channels, size_multiple, halo = "spatial", 1, 1, 1, 2
    takes_mask, fills_gaps = True, True

    def __init__(self, value):
        super().__init__()
        self.value = value

    def forward(self, x, mask):
        return x * 0 + self.value


def _netcdf4_values(path, name):
    with netCDF4.Dataset(path) as d:
        return np.ma.filled(d[name][:].astype(np.float64), np.nan)


# ----------------------------------------------------------------------------- issue 12.2: packed inputs

def _packed_file(tmp_path):
    """uint16 + scale_factor with a packed valid_range, as GOES LST stores it."""
    rng = np.random.default_rng(0)
    raw = rng.integers(30000, 40000, (1, 40, 48)).astype("u2")
    raw[0, 10:14, :] = 65535  # a gap (fill value)
    path = tmp_path / "packed.nc"
    with netCDF4.Dataset(path, "w") as d:
        for name, n in (("time", 1), ("y", 40), ("x", 48)):
            d.createDimension(name, n)
        d.createVariable("y", "f8", ("y",))[:] = np.arange(40.0)
        d.createVariable("x", "f8", ("x",))[:] = np.arange(48.0)
        t = d.createVariable("time", "f8", ("time",))
        t.units = "seconds since 2000-01-01 12:00:00"
        t[:] = [6.7e8]
        v = d.createVariable("lst", "u2", ("time", "y", "x"), fill_value=np.uint16(65535), zlib=True)
        v.set_auto_maskandscale(False)
        v.units = "K"
        v.scale_factor = np.float32(0.0025)
        v.add_offset = np.float32(190.0)
        v.valid_range = np.array([9200, 56000], "u2")
        v[:] = raw
    return path


def test_output_attrs_are_in_decoded_units_and_dtype(tmp_path):
    src = xr.open_dataset(_packed_file(tmp_path))
    out = src.dl.inpaint(_Const(300.0))
    attrs = out.lst.attrs
    assert attrs["valid_range"].dtype == np.float32
    np.testing.assert_allclose(attrs["valid_range"], [213.0, 330.0])
    for key in ("scale_factor", "add_offset", "_Unsigned", "_FillValue"):
        assert key not in attrs
    for key in ("scale_factor", "add_offset", "_Unsigned"):
        assert key not in out.lst.encoding
    # Not the packed fill value: NaN, as xarray writes floats (and rioxarray reads as nodata).
    assert np.isnan(out.lst.encoding["_FillValue"])
    assert attrs["units"] == "K"


def test_raw_counts_lose_unsigned_on_float_output(tmp_path):
    # mask_and_scale=False keeps the packing in the attributes (the values are still counts), but
    # _Unsigned on a float variable means nothing: xarray warned on reading the output back.
    src = xr.open_dataset(_packed_file(tmp_path), mask_and_scale=False)
    src["lst"].attrs["_Unsigned"] = "true"
    out = src.dl.inpaint(_Const(0.5), variables=["lst"])
    assert "_Unsigned" not in out.lst.attrs and out.lst.attrs["scale_factor"] == np.float32(0.0025)
    write_output(out, str(tmp_path / "o.nc"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", xr.SerializationWarning)
        xr.open_dataset(tmp_path / "o.nc").load()


def test_raw_unsigned_counts_are_read_as_unsigned(tmp_path):
    """Found by a probe: int16 counts marked _Unsigned, opened with mask_and_scale=False, were
    filled as signed (values above 32767 wrapped to negatives) and written as floats without the
    mark: read back, 320-480 K came out as -327..327 K, valid pixels too; a valid_range [0, -2]
    (0..65534 unsigned) made every value invalid."""
    ny, nx = 40, 48
    yy, xx = np.mgrid[0:ny, 0:nx]
    counts = (40000 + 8000 * np.sin(xx / 9.0) * np.cos(yy / 11.0)).astype("u2")
    counts[10:12, :] = 65535
    path = tmp_path / "u.nc"
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("y", ny)
        nc.createDimension("x", nx)
        v = nc.createVariable("T", "i2", ("y", "x"), fill_value=np.int16(-1))
        v.set_auto_maskandscale(False)
        v.setncattr("_Unsigned", "true")
        v.scale_factor, v.add_offset, v.units = np.float32(0.01), np.float32(0.0), "K"
        v.valid_range = np.array([0, -2], "i2")
        v[:] = counts.view("i2")
    raw = xr.open_dataset(path, mask_and_scale=False)
    decoded = xr.open_dataset(path).T.values
    for obj in (raw, raw.T):
        out = obj.dl.inpaint(_Const(0.5), domain=None, **({"variables": ["T"]} if obj is raw else {}))
        values = out.T if isinstance(out, xr.Dataset) else out
        valid = counts != 65535
        np.testing.assert_array_equal(values.values[valid], counts[valid].astype("f8"))
        write_output(values.to_dataset() if isinstance(out, xr.DataArray) else out, str(tmp_path / "o.nc"))
        back = xr.open_dataset(tmp_path / "o.nc").T.values
        np.testing.assert_allclose(back[valid], decoded[valid], rtol=1e-6)
        assert 300 < np.nanmin(back) and np.nanmax(back) < 500 and np.isfinite(back).all()  # the wrap: -327
        os.remove(tmp_path / "o.nc")
    sigma = raw.dl.inpaint(variables=["T"], uncertainty=True, domain=None).T_sigma
    assert float(sigma.max()) < 2000  # counts: under 20 K, where the wrap gave sigmas of 11,000 counts


def test_packed_netcdf_round_trip_reads_alike_and_twice_gives_the_same(tmp_path):
    path = _packed_file(tmp_path)
    first, second = tmp_path / "first.nc", tmp_path / "second.nc"
    model = _Const(300.0)
    out = xr.open_dataset(path).dl.inpaint(model)
    write_output(out, str(first))
    back = xr.open_dataset(first)
    # netCDF4 masks nothing that xarray shows (before: all values masked by a packed valid_range).
    np.testing.assert_array_equal(_netcdf4_values(first, "lst"), back.lst.values.astype(np.float64))
    assert np.isfinite(back.lst.values).all()
    again = back.dl.inpaint(model)
    write_output(again, str(second))
    np.testing.assert_array_equal(xr.open_dataset(second).lst.values, back.lst.values)


def test_a_second_pass_keeps_the_first_passes_flags_and_sigma(tmp_path):
    # An xdl output filled again (read back from netCDF, flags as float with NaN): the pixels its
    # flags call filled are not observations. The same model and options give every variable back;
    # another model refills them, never the observed pixels; sigma and flags are no fields to fill.
    ds = xr.open_dataset(shared_file(ERA40)).isel(time=slice(0, 6))
    gappy = ds.tcw.values.copy()
    gappy[1:, 20:30, 40:60] = np.nan  # observed on the first day: a gap, not land (domains.SERIES)
    observed = np.isfinite(gappy)
    first = ds.assign(tcw=(ds.tcw.dims, gappy, ds.tcw.attrs)).dl.inpaint(time_window=1, uncertainty=True)
    write_output(first, str(tmp_path / "first.nc"))
    back = xr.open_dataset(tmp_path / "first.nc")
    again = back.dl.inpaint(time_window=1, uncertainty=True)
    assert sorted(again.data_vars) == ["tcw", "tcw_inpainted", "tcw_sigma"]  # no tcw_sigma_inpainted
    for name in ("tcw", "tcw_sigma", "tcw_inpainted"):
        np.testing.assert_array_equal(again[name].values, back[name].values)
    assert (again.tcw_inpainted.values[~observed] == 1).all() and (again.tcw_sigma.values[~observed] > 0).all()
    other = back.dl.inpaint(_Const(30.0))
    assert (other.tcw.values[~observed] == 30.0).all()
    np.testing.assert_array_equal(other.tcw.values[observed], gappy[observed])
    np.testing.assert_array_equal(other.tcw_inpainted.values, back.tcw_inpainted.values)
    # mask= is the user's own rule: taken as given (here: every finite value is data)
    assert (back.dl.inpaint(_Const(30.0), mask=np.isfinite(back.tcw)).tcw_inpainted.values == 0).all()
    # evaluate hides and scores observed pixels only, never the first pass's fills
    # (its auto domain reads the observed pixels too, as inpaint's does): the same scores as the input's
    from_input = xr.open_dataset(shared_file(ERA40)).isel(time=slice(0, 6)).assign(tcw=(ds.tcw.dims, gappy)).dl.evaluate(
        _Const(30.0), variables=["tcw"], gaps="blocks", baselines=["linear"])
    from_output = back.dl.evaluate(_Const(30.0), variables=["tcw"], gaps="blocks", baselines=["linear"])
    assert int(from_output.n.sum()) == int(from_input.n.sum()) > 0
    np.testing.assert_allclose(from_output.rmse.values, from_input.rmse.values, rtol=1e-6)


def test_lst_real_file_cli_twice_and_netcdf4_agrees(tmp_path):
    src = shared_file(LST)
    first, second = tmp_path / "lst1.nc", tmp_path / "lst2.nc"
    assert main(["inpaint", str(src), str(first), "--var", "LST", "--no-progress"]) == 0
    assert main(["inpaint", str(first), str(second), "--var", "LST", "--no-progress"]) == 0
    one, two = xr.open_dataset(first), xr.open_dataset(second)
    nc = _netcdf4_values(first, "LST")
    # none masked by netCDF4; water (DQF "invalid_due_to_water_surface_type") is outside the
    # auto domain of a land variable, so its 22,678 pixels stay NaN (test_domains.py)
    assert np.isfinite(nc).sum() == np.isfinite(one.LST.values).sum() == 250_000 - 22_678
    np.testing.assert_array_equal(nc, one.LST.values.astype(np.float64))
    np.testing.assert_array_equal(two.LST.values, one.LST.values)  # the second pass gives it back
    np.testing.assert_allclose(one.LST.attrs["valid_range"], [213.0, 330.0])
    assert one.LST.attrs["valid_range"].dtype == np.float32
    # valid values bit for bit, and the CLI writes the first pass's flags once in ancillary_variables
    raw = xr.open_dataset(src)
    good = np.isfinite(raw.LST.values)
    np.testing.assert_array_equal(one.LST.values[good], raw.LST.values[good])
    assert two.LST.attrs["ancillary_variables"] == "DQF LST_inpainted"


def test_dataarray_outputs_carry_their_grid_mapping_variable(tmp_path):
    # ds.LST holds only the mapping's name: its output written alone had no CRS for GDAL (which then
    # read the scan angles in radians as the grid). The mapping now comes along from the source file.
    ds = xr.open_dataset(shared_file(LST))
    for i, out in enumerate((ds.LST.dl.inpaint(mask=ds.DQF == 0),
                             ds.LST.dl.inpaint(mask=ds.DQF == 0, uncertainty=True),
                             xr.open_dataset(shared_file(LST), chunks={}).LST.dl.inpaint(mask=ds.DQF == 0))):
        path = tmp_path / f"out{i}.nc"
        out.to_netcdf(path)
        with netCDF4.Dataset(path) as nc:
            assert nc["LST"].grid_mapping == "goes_imager_projection"
            mapping = nc["goes_imager_projection"]
            assert mapping.grid_mapping_name == "geostationary" and mapping.longitude_of_projection_origin == -75.0
            assert mapping.perspective_point_height == ds.goes_imager_projection.attrs["perspective_point_height"]
    # A Dataset's own mapping variable is what it was; no second copy.
    assert list(ds.dl.inpaint(variables=["LST"], mask=ds.DQF == 0).goes_imager_projection.dims) == []


def test_lst_python_api_twice(tmp_path):
    src = xr.open_dataset(shared_file(LST), chunks={})
    first = src.dl.inpaint(variables=["LST"]).compute()
    path = tmp_path / "lst.nc"
    write_output(first, str(path))
    second = xr.open_dataset(path, chunks={}).dl.inpaint(variables=["LST"]).compute()
    np.testing.assert_array_equal(second.LST.values, first.LST.values)
    assert second.LST.attrs["ancillary_variables"] == "DQF LST_inpainted"


def test_conus_rad_attrs_decoded(tmp_path):
    ds = xr.open_dataset(shared_file(CONUS), chunks={})
    out = ds.dl.inpaint(mask=ds.DQF == 0, variables=["Rad"])
    lo, hi = out.Rad.attrs["valid_range"]
    assert out.Rad.attrs["valid_range"].dtype == np.float32
    # raw 0..1022 with scale 0.176, offset -5.24: decoded -5.24..174.7
    np.testing.assert_allclose([lo, hi], [-5.2392, 1022 * 0.17605852 - 5.2392], rtol=1e-6)
    assert "_Unsigned" not in out.Rad.attrs and "scale_factor" not in out.Rad.encoding


def test_modis_valid_min_max_decoded():
    ds = xr.open_dataset(shared_file(MODIS))
    attrs = cf.output_attrs(ds.sea_surface_temperature, np.float32)
    np.testing.assert_allclose([attrs["valid_min"], attrs["valid_max"]], [268.15, 323.15], rtol=1e-6)
    assert attrs["valid_min"].dtype == np.float32


def test_predict_dataarray_attrs_decoded(tmp_path):
    src = xr.open_dataset(_packed_file(tmp_path))
    out = src.lst.dl.predict(_Const(300.0))
    if "valid_range" in out.attrs:
        np.testing.assert_allclose(out.attrs["valid_range"], [213.0, 330.0])
    assert "scale_factor" not in out.attrs and "scale_factor" not in out.encoding


def test_predict_dataarray_output_forgets_what_described_the_input():
    """Found by a probe: a DataArray's predict output kept GRIB_name '2 metre temperature' and
    the like (written to a file, a network's output labelled as ERA5 t2m); the Dataset path keeps
    none. Where the values lie (grid_mapping) stays."""
    arr = xr.DataArray(np.random.default_rng(0).random((20, 24)).astype("f4"), dims=("y", "x"), name="t2m",
                       attrs={"GRIB_name": "2 metre temperature", "GRIB_paramId": 167, "units": "K",
                              "comment": "analysis", "grid_mapping": "crs"})
    out = arr.dl.predict(torch.nn.Conv2d(1, 1, 3, padding=1))
    assert set(out.attrs) == {"grid_mapping", "history"}


# ----------------------------------------------------------------------------- issue 12.7: physical bounds

def test_fills_never_cross_zero_for_a_positive_field():
    rng = np.random.default_rng(1)
    data = rng.uniform(0.0, 5.0, (2, 24, 24)).astype("f4")
    data[:, 8:12, :] = np.nan
    arr = xr.DataArray(data, dims=("time", "y", "x"), name="rain")
    out = arr.dl.inpaint(_Const(-1e3)).values
    assert (out[:, 8:12] == 0).all()  # before: lo - 0.1 * range, about -0.5
    valid = np.isfinite(data)
    assert np.array_equal(out[valid], data[valid])
    negative = arr.copy(data=-data).dl.inpaint(_Const(1e3)).values
    assert (negative[:, 8:12] == 0).all()
    # clip=None lets a model extrapolate, but still not across zero nor beyond the CF range
    assert (arr.dl.inpaint(_Const(-1e3), clip=None).values[:, 8:12] == 0).all()
    big = arr.assign_attrs(valid_max=np.float32(6.0)).dl.inpaint(_Const(1e3), clip=None).values
    assert (big[:, 8:12] == 6.0).all()


def test_fills_respect_the_cf_valid_range():
    data = np.full((20, 20), 280.0, "f4")
    data[1::2] = 280.4
    data[5:8] = np.nan
    arr = xr.DataArray(data, dims=("y", "x"), name="t", attrs={"valid_min": 279.0, "valid_max": 280.5})
    low = arr.dl.inpaint(_Const(0.0), clip=None).values
    high = arr.dl.inpaint(_Const(1e9), clip=None).values
    assert (low[5:8] == 279.0).all() and (high[5:8] == 280.5).all()
    clipped = arr.dl.inpaint(_Const(1e9)).values  # the sample's range + 10% is tighter here
    assert (clipped[5:8] == np.float32(280.4 + 0.04)).all()


def test_era40_tcw_fills_are_not_negative():
    ds = xr.open_dataset(shared_file(ERA40))
    tcw = ds.tcw.isel(time=slice(0, 4))
    holey = tcw.where(~((tcw.latitude > 40) & (tcw.latitude < 70)))
    out = holey.dl.inpaint(_Const(-50.0), domain=None).values  # the same gap every day: not "never valid"
    gaps = np.isnan(holey.values)
    assert gaps.sum() > 1000
    assert out[gaps].min() == 0.0  # before: down to -7 (lo - 0.1 of the range)
    np.testing.assert_array_equal(out[~gaps], holey.values[~gaps])


def test_amsr2_rain_and_wind_fills_stay_in_valid_range():
    ds = xr.open_dataset(shared_file(AMSR2))
    for name in ("rain_rate", "wind_speed"):
        arr = ds[name]
        lo, hi = cf.valid_limits(arr)
        assert lo == pytest.approx(0.0, abs=1e-6)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", XdlWarning)
            out = arr.dl.inpaint(_Const(-1e3), domain=None)
        filled = out.values[~cf.cf_valid_mask(arr).values & np.isfinite(out.values)]
        assert filled.size > 1000
        assert filled.min() >= 0.0, name  # before: rain -2.54, wind -0.42 (the default model)


# ----------------------------------------------------------------------------- issue 12.8: out-of-range warning

def test_warns_once_when_many_values_are_outside_the_valid_range():
    data = np.full((30, 30), 5.0, "f4")
    data[:3] = 50.0  # 10% above valid_max
    data[10:12] = np.nan
    arr = xr.DataArray(data, dims=("y", "x"), name="sst", attrs={"valid_max": 10.0})
    with pytest.warns(XdlWarning, match=r"'sst': 90 of its 840 finite values \(10.7%\).*mask=") as record:
        arr.dl.inpaint(_Const(5.0))
    assert len([w for w in record if issubclass(w.category, XdlWarning)]) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", XdlWarning)
        arr.dl.inpaint(_Const(5.0), mask=np.isfinite(arr))  # the user's own rule: no warning
        arr.where(arr < 10).dl.inpaint(_Const(5.0))  # nothing out of range: no warning


def test_raw_fill_values_are_not_counted_as_out_of_range():
    """Raw packed counts (mask_and_scale=False) keep _FillValue 4095 as an integer: those pixels
    are missing values, not range outliers (the warning advised mask=np.isfinite(...), which would
    make 4095 a radiance)."""
    data = np.full((30, 30), 500, "i2")
    data[::10] = 4095  # dropped scan lines, as the file writes them
    attrs = {"_FillValue": np.int16(4095), "valid_range": np.array([0, 4094], "i2"), "scale_factor": 0.05}
    arr = xr.DataArray(data, dims=("y", "x"), name="Rad", attrs=attrs)
    with warnings.catch_warnings():
        warnings.simplefilter("error", XdlWarning)
        out = arr.dl.inpaint(_Const(5.0))
    assert np.isfinite(out.values).all()
    data[1] = 4094 + 10  # a real outlier row (beyond valid_range) still counts: 30 of 810
    with pytest.warns(XdlWarning, match=r"'Rad': 30 of its 810 finite values"):
        arr.copy(data=data).dl.inpaint(_Const(5.0))


def test_lazy_warning_comes_at_compute():
    data = np.full((30, 30), 5.0, "f4")
    data[:3] = 50.0
    data[10:12] = np.nan
    arr = xr.DataArray(data, dims=("y", "x"), name="sst", attrs={"valid_max": 10.0}).chunk({"y": 10})
    with warnings.catch_warnings():
        warnings.simplefilter("error", XdlWarning)
        lazy = arr.dl.inpaint(_Const(5.0))  # building the graph reads nothing
    with pytest.warns(XdlWarning, match="10.7%"):
        lazy.compute()


def test_modis_warns_about_its_sst_below_valid_min():
    ds = xr.open_dataset(shared_file(MODIS))
    with pytest.warns(XdlWarning, match=r"'sea_surface_temperature': \d+ of its \d+ finite values \(2\d\.\d%\)"):
        ds.sea_surface_temperature.dl.inpaint(_Const(290.0), domain=None)


# ----------------------------------------------------------------------------- issue 13.6 / 13.7: flags

def test_flag_fill_value_means_not_written(tmp_path):
    data = np.full((4, 16, 16), 280.0, "f4")
    data[:, 4:6] = np.nan
    ds = xr.Dataset({"v": (("time", "y", "x"), data)}).chunk({"time": 1})
    out = ds.dl.inpaint(_Const(281.0))
    flags = out.v_inpainted
    assert flags.encoding["_FillValue"] == FLAG_NOT_WRITTEN
    assert FLAG_NOT_WRITTEN not in flags.attrs["flag_values"]  # CF: the fill is no flag value
    assert "not written" in flags.attrs["comment"]
    path = tmp_path / "half.zarr"
    out.to_zarr(path, compute=False, mode="w", consolidated=False)  # layout only: nothing written
    out.isel(time=slice(0, 2)).drop_vars([]).to_zarr(path, region={"time": slice(0, 2)}, consolidated=False)
    raw = xr.open_zarr(path, mask_and_scale=False, consolidated=False).v_inpainted.values
    assert (raw[2:] == FLAG_NOT_WRITTEN).all()  # before: 0, "valid_input"
    assert set(np.unique(raw[:2])) == {FLAG_VALID, FLAG_FILLED}
    decoded = xr.open_zarr(path, consolidated=False).v_inpainted.values
    assert np.isnan(decoded[2:]).all()


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_model_returning_non_finite_is_flagged_and_named(value):
    data = np.full((24, 24), 280.0, "f4")
    data[8:10] = np.nan  # gap pixels next to valid data: the model ran there
    data[16:, :] = np.nan  # rows 16..23: the far ones (> halo) have no valid input nearby
    ds = xr.Dataset({"v": (("y", "x"), data)})
    with pytest.warns(XdlWarning, match="model .*_Const.* returned NaN or inf"):
        out = ds.dl.inpaint(_Const(value), domain=None)
    flags = out.v_inpainted.values
    assert (flags[8:10] == FLAG_MODEL_FAILED).all()
    assert (flags[16:18] == FLAG_MODEL_FAILED).all()  # within the halo (2) of valid rows
    assert (flags[18:] == FLAG_UNFILLABLE).all()
    assert np.isnan(out.v.values[8:10]).all()


def test_model_failed_flag_does_not_depend_on_chunks():
    data = np.full((2, 24, 24), 280.0, "f4")
    data[:, 5:15, 5:15] = np.nan
    ds = xr.Dataset({"v": (("time", "y", "x"), data)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", XdlWarning)
        whole = ds.dl.inpaint(_Const(np.nan), domain=None).v_inpainted.values
        pieces = ds.chunk({"y": 7, "x": 5}).dl.inpaint(_Const(np.nan), domain=None).v_inpainted.values
    np.testing.assert_array_equal(whole, pieces)
    assert (whole == FLAG_MODEL_FAILED).sum() > 0 and (whole == FLAG_UNFILLABLE).sum() > 0


# ----------------------------------------------------------------------------- issue 12.12: small things

def test_zarr_writes_raise_no_consolidated_warning(tmp_path):
    from xdl.io import to_zarr_resumable

    data = np.where(np.arange(16) % 5 == 0, np.nan, 280.0).astype("f4") * np.ones((2, 16, 1), "f4")
    ds = xr.Dataset({"v": (("time", "y", "x"), data)})
    ds.to_netcdf(tmp_path / "in.nc")
    out = ds.chunk({"time": 1}).dl.inpaint(_Const(281.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # before: ZarrUserWarning "Consolidated metadata ..." per write
        to_zarr_resumable(out, tmp_path / "api.zarr")
        assert xr.open_zarr(tmp_path / "api.zarr").v.shape == (2, 16, 16)  # consolidated: read quietly
    code = subprocess.run([sys.executable, "-W", "error::UserWarning", "-c",
                           "import sys, xdl.cli; sys.exit(xdl.cli.main(sys.argv[1:]))",
                           "inpaint", str(tmp_path / "in.nc"), str(tmp_path / "out.zarr"), "--no-progress",
                           "--chunks", "time=1"], capture_output=True, text=True)
    assert code.returncode == 0, code.stderr
    assert "Consolidated metadata" not in code.stderr


# ----------------------------------------------------------------------------- issue 12.10: CF compliance

def _cchecker():
    """The compliance-checker CLI: on PATH, or in the project's .venv-cc (see pyproject's `cf` extra)."""
    found = shutil.which("cchecker.py")
    local = Path(__file__).resolve().parents[1] / ".venv-cc" / "bin" / "cchecker.py"
    if found is None and local.exists():
        found = str(local)
    if found is None:
        pytest.skip("compliance-checker is not installed (pip install 'xdl[cf]' or "
                    "python -m venv .venv-cc && .venv-cc/bin/pip install compliance-checker)")
    return found


def _high_medium(checker, path, tmp_path):
    report = tmp_path / f"{Path(path).name}.json"
    subprocess.run([checker, "--test=cf", "-f", "json_new", "-o", str(report), str(path)],
                   capture_output=True, text=True, timeout=120)
    result = next(iter(json.loads(report.read_text()).values()))["cf"]
    messages = set()

    def canonical(message):  # the checker prints a variable's dims from a set: in any order
        return re.sub(r"\(([^()]*)\)", lambda m: "(" + ", ".join(sorted(m.group(1).split(", "))) + ")", message)

    def walk(items, level):
        for item in items:
            messages.update((level, item["name"], canonical(m)) for m in item.get("msgs", []))
            walk(item.get("children", []), level)

    for level in ("high_priorities", "medium_priorities"):
        walk(result.get(level, []), level)
    return messages


@pytest.mark.parametrize("pattern, args", [(LST, ["--var", "LST"]), (CONUS, ["--var", "Rad", "--mask", "DQF == 0"]),
                                            (LST, ["--var", "LST", "--uncertainty"]),
                                            (ERA40, ["--var", "tcw", "--time-window", "1", "--uncertainty"])],
                         ids=["lst", "conus", "lst-sigma", "era40-time-window-sigma"])
def test_compliance_checker_finds_nothing_new(pattern, args, tmp_path):
    checker = _cchecker()
    src = shared_file(pattern)
    out = tmp_path / "out.nc"
    assert main(["inpaint", str(src), str(out), *args, "--no-progress"]) == 0
    new = _high_medium(checker, out, tmp_path) - _high_medium(checker, src, tmp_path)
    assert not new, sorted(new)


def test_netcdf_output_is_compressed_like_the_source(tmp_path):
    src = shared_file(CONUS)
    out = tmp_path / "rad.nc"
    assert main(["inpaint", str(src), str(out), "--var", "Rad", "--mask", "DQF == 0", "--no-progress"]) == 0
    size, source_size = os.path.getsize(out), os.path.getsize(src)
    assert size < 1.6 * source_size  # float32 kelvin vs packed int16; before: 18.8 MB vs 3.3 MB
    with netCDF4.Dataset(out) as d:
        assert d["Rad"].filters()["zlib"] and d["Rad"].chunking() == [250, 250]  # the source's
        assert d["Rad_inpainted"].filters()["zlib"]
        for name in ("x", "y", "t", "time_bounds"):
            assert "_FillValue" not in d[name].ncattrs(), name
        # CF: bounds take their coordinate's units (a units attribute of their own must agree)
        assert d["time_bounds"].__dict__.get("units", d["t"].units) == d["t"].units


def test_netcdf_ready_on_generated_data(tmp_path):
    t0 = np.datetime64("2020-01-04T03:16:00", "ns")
    ds = xr.Dataset({"v": (("y", "x"), np.ones((30, 40), "f4"))},
                    coords={"y": np.arange(30.0), "x": np.arange(40.0), "t": ((), t0, {"bounds": "tb"})})
    ds["tb"] = ("nb", np.array([t0, t0 + np.timedelta64(150, "s")]))
    ds.v.encoding.update(zlib=True, complevel=1, chunksizes=(64, 64))  # larger than the shape: clipped
    ds.t.encoding["units"] = "seconds since 2000-01-01 12:00:00"
    path = tmp_path / "g.nc"
    cf.netcdf_ready(ds).to_netcdf(path)
    with netCDF4.Dataset(path) as d:
        assert d["v"].chunking() == [30, 40] and d["v"].filters()["complevel"] == 1
        assert all("_FillValue" not in d[n].ncattrs() for n in ("x", "y", "t", "tb"))
        assert d["tb"].__dict__.get("units", d["t"].units) == d["t"].units and "calendar" not in d["t"].ncattrs()
    back = xr.open_dataset(path)
    assert back.t.values == t0 and (back.tb.values == ds.tb.values).all()
    plain = xr.Dataset({"w": (("y", "x"), np.ones((30, 40)))})
    cf.netcdf_ready(plain).to_netcdf(tmp_path / "p.nc")
    with netCDF4.Dataset(tmp_path / "p.nc") as d:
        assert d["w"].filters()["zlib"] and d["w"].filters()["complevel"] == 4  # compressed by default


def test_cell_bounds_are_never_filled_as_data():
    # lon_bnds of a curvilinear grid (named by lon:bounds) is coordinate metadata: the default
    # variables leave it alone, even with NaN in it.
    rng = np.random.default_rng(1)
    tos = rng.standard_normal((20, 24)).astype("f4")
    tos[5:8, 4:12] = np.nan
    bnds = rng.standard_normal((20, 24, 4))
    bnds[3, 3] = np.nan
    ds = xr.Dataset({"tos": (("j", "i"), tos), "lon_bnds": (("j", "i", "v"), bnds)},
                    coords={"lon": (("j", "i"), rng.random((20, 24)), {"bounds": "lon_bnds"}),
                            "j": np.arange(20), "i": np.arange(24)})
    out = ds.dl.inpaint(_Const(0.5), domain=None, dims=("j", "i"))
    assert "lon_bnds_inpainted" not in out and np.isnan(out.lon_bnds.values[3, 3]).all()
    assert "tos_inpainted" in out and not out.lon_bnds.attrs


def test_float_coordinates_never_carry_a_packing_back_into_the_file(tmp_path):
    # GDAL copies a GOES GeoTIFF's fixed-grid packing onto x/y in metres: written back, every
    # reader applied it again (x -2564641 m read as -71.88).
    from xdl.io.write import keep_coordinate_metadata

    x = np.linspace(-2.5e6, -1.5e6, 8)
    src = xr.Dataset({"v": (("y", "x"), np.ones((6, 8), "f4"))},
                     coords={"x": ("x", x, {"scale_factor": 2.8e-05, "add_offset": -0.07, "axis": "X"}),
                             "y": np.arange(6.0)})
    out = keep_coordinate_metadata(src.dl.inpaint(_Const(0.5), variables=["v"]), src)
    assert out.x.attrs.get("axis") == "X" and "scale_factor" not in out.x.attrs
    write_output(out, str(tmp_path / "o.nc"))
    with netCDF4.Dataset(tmp_path / "o.nc") as nc:
        np.testing.assert_array_equal(nc["x"][:], x)


def test_raw_counts_with_a_float32_packing_read_alike_in_every_reader(tmp_path):
    """Counts opened with mask_and_scale=False, packed with a float32 scale_factor/add_offset (as
    GOES radiances are): the output's float64 counts carry the packing as float64, so netCDF4 and
    xarray decode them alike (they were 6e-6 apart on GOES C13: netCDF4 in float64, xarray in
    float32), and the zarr output reads as the netCDF one does (probe)."""
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:48, 0:64]
    counts = np.round(2000 + 300 * np.sin(x / 7.0) + 200 * np.cos(y / 5.0) + 5 * rng.standard_normal((48, 64)))
    counts = counts.astype("i2")
    counts[20:24, 10:50] = 4095
    attrs = {"_FillValue": np.int16(4095), "scale_factor": np.float32(0.04572892),
             "add_offset": np.float32(-1.6443), "units": "mW m-2 sr-1 (cm-1)-1"}
    xr.Dataset({"Rad": (("y", "x"), counts, attrs)}).to_netcdf(tmp_path / "in.nc")
    raw = xr.open_dataset(tmp_path / "in.nc", mask_and_scale=False)
    out = raw.dl.inpaint(variables=["Rad"], domain=None, uncertainty=True)
    out.to_netcdf(tmp_path / "out.nc")
    out.to_zarr(tmp_path / "out.zarr")
    back, zback = xr.open_dataset(tmp_path / "out.nc"), xr.open_zarr(tmp_path / "out.zarr")
    with netCDF4.Dataset(tmp_path / "out.nc") as nc:
        for name in ("Rad", "Rad_sigma"):
            by_netcdf4 = np.ma.filled(nc[name][:].astype("f8"), np.nan)
            assert by_netcdf4.tobytes() == back[name].values.astype("f8").tobytes(), name
            np.testing.assert_array_equal(zback[name].values, back[name].values)
    valid = counts != 4095
    np.testing.assert_array_equal(xr.open_dataset(tmp_path / "out.nc", mask_and_scale=False).Rad.values[valid],
                                  counts[valid])
    back.close(); raw.close()


def test_raw_pixels_left_unfilled_hold_the_declared_fill_value(tmp_path):
    """Counts opened raw (mask_and_scale=False) with pixels outside the domain: the unfilled ones
    were written as NaN under the source's _FillValue 4095, so netCDF4 did not mask them (its mean
    was NaN) while xarray read NaN (probe). Now they hold 4095, as in the input, in every reader."""
    y, x = np.mgrid[0:48, 0:64]
    counts = np.round(2000 + 300 * np.sin(x / 7.0) + 200 * np.cos(y / 5.0)).astype("i2")
    counts[20:24, 10:50] = 4095   # a gap inside the domain: filled
    counts[:, :6] = 4095          # outside the domain below: left unfilled
    attrs = {"_FillValue": np.int16(4095), "scale_factor": np.float32(0.04572892),
             "add_offset": np.float32(-1.6443), "units": "mW m-2 sr-1 (cm-1)-1"}
    xr.Dataset({"Rad": (("y", "x"), counts, attrs)}).to_netcdf(tmp_path / "in.nc")
    raw = xr.open_dataset(tmp_path / "in.nc", mask_and_scale=False)
    out = raw.dl.inpaint(variables=["Rad"], domain=xr.DataArray(x >= 6, dims=("y", "x")), uncertainty=True)
    flags = out.Rad_inpainted.values
    assert (flags[:, :6] == 3).all() and (flags[20:24, 10:50] == FLAG_FILLED).all()
    assert (out.Rad.values[:, :6] == 4095).all() and not np.isnan(out.Rad.values).any()
    out.to_netcdf(tmp_path / "out.nc")
    with netCDF4.Dataset(tmp_path / "out.nc") as nc:
        read = nc["Rad"][:]
        assert np.ma.getmaskarray(read)[:, :6].all() and not np.ma.getmaskarray(read)[:, 6:].any()
        assert np.isfinite(np.ma.mean(read))
    back = xr.open_dataset(tmp_path / "out.nc")
    assert back.Rad.isnull()[:, :6].all() and back.Rad.notnull()[:, 6:].all()
    np.testing.assert_array_equal(xr.open_dataset(tmp_path / "out.nc", mask_and_scale=False).Rad.values,
                                  out.Rad.values)
    back.close(); raw.close()
    # Float data built in memory with a _FillValue attribute and NaN gaps: a NaN left unfilled
    # stays NaN (it came back as the fill value; probe), a pixel holding the fill value keeps it.
    values = np.where(x >= 6, np.sin(x / 7.0), np.nan).astype("f4")
    values[0, 10] = -999.0
    built = xr.DataArray(values, dims=("y", "x"), name="t", attrs={"_FillValue": np.float32(-999.0)})
    got = built.dl.inpaint(domain=xr.DataArray((x >= 6) & ~((y == 0) & (x == 10)), dims=("y", "x")))
    assert np.isnan(got.values[:, :6]).all() and got.values[0, 10] == -999.0


def test_a_stale_coordinates_attribute_is_not_written_back(tmp_path):
    """GDAL's tags put `coordinates: band_id band_wavelength t y x` in a GeoTIFF's attrs (probe):
    written back, it named variables the output file does not hold."""
    values = np.arange(32 * 40, dtype="f4").reshape(32, 40) / 100
    values[10:12] = np.nan
    arr = xr.DataArray(values, dims=("y", "x"), name="CMI",
                       coords={"y": np.arange(32.0), "x": np.arange(40.0)},
                       attrs={"coordinates": "band_id band_wavelength t y x", "units": "1"})
    out = arr.dl.inpaint(uncertainty=True, domain=None)
    out.to_netcdf(tmp_path / "out.nc")
    with netCDF4.Dataset(tmp_path / "out.nc") as nc:
        for name, var in nc.variables.items():
            if "coordinates" in var.ncattrs():
                assert set(var.getncattr("coordinates").split()) <= set(nc.variables), name
    assert xr.open_dataset(tmp_path / "out.nc").CMI.attrs.get("units") == "1"


def test_coordinates_attributes_name_only_variables_in_the_file(tmp_path):
    """A GOES variable's `coordinates` encoding names band_id and band_wavelength, which a predict
    or inpaint output does not keep: it was written as it was, naming variables the file lacks (probe)."""
    ds = xr.open_dataset(shared_file("goes/OR_ABI-L1b-RadM1-M6C13_G17_*.nc"), chunks={}).isel(y=slice(0, 96), x=slice(0, 96))
    outputs = {"predict": ds.dl.predict(torch.nn.Conv2d(1, 1, 3, padding=1), inputs=["Rad"], outputs=["out"]),
               "inpaint": ds.dl.inpaint(variables=["Rad"], uncertainty=True)}
    for how, out in outputs.items():
        path = tmp_path / f"{how}.nc"
        out.to_netcdf(path)
        with netCDF4.Dataset(path) as nc:
            for name, var in nc.variables.items():
                if "coordinates" in var.ncattrs():
                    missing = set(var.getncattr("coordinates").split()) - set(nc.variables)
                    assert not missing, (how, name, missing)


def test_a_second_pass_over_the_output_of_integers_gives_it_back():
    """int16 counts come back as float64; the first pass read them as float32 (where() made them so)
    and a second pass over the float64 output with float64 statistics changed 320 fills (probe)."""
    y, x = np.mgrid[0:64, 0:80]
    counts = (500 + 200 * np.sin(x / 9.0) + 100 * np.cos(y / 7.0)).astype("i2")
    counts[20:24, :] = 1023
    ds = xr.Dataset({"Rad": (("y", "x"), counts, {"_FillValue": np.int16(1023)})})
    first = ds.dl.inpaint(variables=["Rad"], domain=None)
    second = first.dl.inpaint(variables=["Rad"], domain=None)
    assert first.Rad.dtype == np.float64
    np.testing.assert_array_equal(second.Rad.values, first.Rad.values)


def test_fills_near_the_limits_of_the_output_type():
    """float16 peaking near its largest value: the bounds reached beyond it, fills became inf and
    were left NaN as "unfillable" (probe). float64 with a large offset (101325 +- 0.001) was filled
    with float32 statistics, one value for every gap; float64 beyond float32's range was all NaN
    under a warning blaming the model file. Each now fills like its scaled float32 version."""
    y, x = np.mgrid[0:48, 0:64]
    bump = np.exp(-((y - 24) ** 2 + (x - 32) ** 2) / 300.0)
    gap = (np.abs(y - 24) < 2) & (np.abs(x - 32) < 10)
    half = xr.DataArray(np.where(gap, np.nan, 66000 * bump).astype("f2"), dims=("y", "x"), name="h")
    out = half.dl.inpaint(domain=None)
    assert out.dtype == np.float16 and np.isfinite(out.values).all()
    field = np.sin(x / 7.0) + np.cos(y / 5.0)
    reference = xr.DataArray(np.where(gap, np.nan, field), dims=("y", "x"), name="p").dl.inpaint(domain=None)
    for offset, scale in ((101325.0, 1e-3), (0.0, 1e39), (0.0, 1e300)):
        arr = xr.DataArray(np.where(gap, np.nan, offset + scale * field), dims=("y", "x"), name="p")
        got = arr.dl.inpaint(domain=None)
        assert got.dtype == np.float64 and np.isfinite(got.values).all()
        np.testing.assert_allclose((got.values[gap] - offset) / scale, reference.values[gap], rtol=0, atol=1e-5)


def test_cftime_axes_and_climatology_bounds_are_written_as_cf_asks(tmp_path):
    """A noleap time axis (cftime dates) got _FillValue NaN on the coordinate and its bounds, an
    error for the CF checker; climatology bounds were not treated as bounds (other units and
    calendar than their time, and a _FillValue; probe)."""
    cftime = pytest.importorskip("cftime")
    times = [cftime.DatetimeNoLeap(2001, 1, 16 + k) for k in range(3)]
    bounds = [[cftime.DatetimeNoLeap(2001, 1, 15 + k), cftime.DatetimeNoLeap(2001, 1, 16 + k)] for k in range(3)]
    values = np.arange(3 * 8 * 9, dtype="f4").reshape(3, 8, 9)
    values[:, 3, 2:6] = np.nan
    ds = xr.Dataset({"t": (("time", "y", "x"), values), "time_bnds": (("time", "nv"), bounds)},
                    coords={"time": ("time", times, {"bounds": "time_bnds"})})
    write_output(ds.dl.inpaint(domain=None), str(tmp_path / "noleap.nc"))
    with netCDF4.Dataset(tmp_path / "noleap.nc") as nc:
        assert "_FillValue" not in nc["time"].ncattrs() and "_FillValue" not in nc["time_bnds"].ncattrs()
    dates = np.array(["2001-01-16", "2001-01-17", "2001-01-18"], "datetime64[ns]")
    clim = np.stack([dates - np.timedelta64(1, "D"), dates], axis=1)
    ds = xr.Dataset({"t": (("time", "y", "x"), values), "climatology_bounds": (("time", "nv"), clim)},
                    coords={"time": ("time", dates, {"climatology": "climatology_bounds"})})
    ds.time.encoding.update(units="days since 1600-1-1 0:0:0", calendar="gregorian")
    write_output(ds.dl.inpaint(domain=None), str(tmp_path / "clim.nc"))
    with netCDF4.Dataset(tmp_path / "clim.nc") as nc:
        time, bnds = nc["time"], nc["climatology_bounds"]
        assert bnds.units == time.units and bnds.calendar == time.calendar and "_FillValue" not in bnds.ncattrs()


def test_raw_counts_write_region_by_region_to_zarr(tmp_path):
    """write_output of raw counts (mask_and_scale=False: packing and _FillValue held as attributes)
    to zarr failed: xarray's region write applied the store's decoded encoding to values already
    packed ("Key '_FillValue' already exists"). Raw variables now go straight into their arrays:
    the store reads back as the in-memory result, raw and decoded (probe, session 34)."""
    y, x = np.mgrid[0:48, 0:64]
    counts = np.round(2000 + 300 * np.sin(x / 7.0) + 200 * np.cos(y / 5.0)).astype("i2")
    counts[20:24, 10:50] = 4095
    attrs = {"_FillValue": np.int16(4095), "scale_factor": np.float32(0.04572892),
             "add_offset": np.float32(-1.6443), "units": "mW m-2 sr-1 (cm-1)-1"}
    xr.Dataset({"Rad": (("y", "x"), counts, attrs)}).to_netcdf(tmp_path / "in.nc")
    raw = xr.open_dataset(tmp_path / "in.nc", mask_and_scale=False, chunks={"y": 16})
    out = raw.dl.inpaint(variables=["Rad"], domain=None, uncertainty=True)
    write_output(out, str(tmp_path / "out.zarr"))
    expected = out.compute()
    back = xr.open_zarr(tmp_path / "out.zarr", mask_and_scale=False)
    for name in ("Rad", "Rad_sigma", "Rad_inpainted"):
        np.testing.assert_array_equal(back[name].values, expected[name].values, err_msg=name)
    decoded = xr.open_zarr(tmp_path / "out.zarr").Rad.values
    valid = counts != 4095
    np.testing.assert_allclose(decoded[valid], counts[valid] * 0.04572892 - 1.6443, rtol=1e-6)
    assert np.isfinite(decoded).all()
    raw.close()


def test_zarr_v2_inputs_and_restored_chunks_write_to_a_new_zarr(tmp_path):
    """A zarr v2 store (Blosc, numcodecs) filled and written to zarr (v3) failed with "Expected a
    BytesBytesCodec" in the CLI and with to_zarr; a variable passed through as opened with other
    chunks than stored failed with "would overlap multiple Dask chunks" (probe). Both write now,
    the values as the input's."""
    rng = np.random.default_rng(0)
    v = (280 + rng.normal(0, 0.1, (2, 96, 96))).astype("f4")
    v[:, 40:42] = np.nan
    ds = xr.Dataset({"sst": (("time", "y", "x"), v), "other": (("time", "y", "x"), v + 1)},
                    coords={"time": [0, 1], "y": np.arange(96.0), "x": np.arange(96.0)})
    ds.to_zarr(tmp_path / "v2.zarr", zarr_format=2, encoding={n: {"chunks": (1, 40, 40)} for n in ("sst", "other")})
    opened = xr.open_zarr(tmp_path / "v2.zarr", chunks={"time": 1, "y": 64, "x": 64})
    filled = opened.dl.inpaint(variables=["sst"], domain=None)
    filled.to_zarr(tmp_path / "out.zarr")
    back = xr.open_zarr(tmp_path / "out.zarr")
    np.testing.assert_array_equal(back.other.values, v + 1)
    np.testing.assert_array_equal(back.sst.values, filled.sst.values)
    assert main(["inpaint", str(tmp_path / "v2.zarr"), str(tmp_path / "cli.zarr"), "--domain", "none",
                 "--var", "sst", "--no-progress"]) == 0
    np.testing.assert_array_equal(xr.open_zarr(tmp_path / "cli.zarr").sst.values, back.sst.values)


def test_outputs_never_name_bounds_they_do_not_hold(tmp_path):
    """predict dropped time_bnds but kept time:bounds; a DataArray's fill wrote t:bounds naming a
    variable its file lacked (CF errors; probes). predict now carries the bounds, a DataArray's
    result forgets a name it cannot hold."""
    times = np.array(["2020-01-01", "2020-01-02", "2020-01-03"], dtype="datetime64[ns]")
    bnds = np.stack([times, times + np.timedelta64(1, "D")], 1)
    v = np.random.default_rng(1).normal(size=(3, 16, 16)).astype("f4")
    v[:, 5, :] = np.nan
    ds = xr.Dataset({"t": (("time", "y", "x"), v), "time_bnds": (("time", "nv"), bnds)},
                    coords={"time": ("time", times, {"bounds": "time_bnds"})})
    out = ds.dl.predict(torch.nn.Conv2d(1, 1, 1), inputs=["t"], outputs=["t2"])
    assert "time_bnds" in out and out.time.attrs["bounds"] == "time_bnds"
    da = ds.t.dl.inpaint(domain=None)
    assert "bounds" not in da.time.attrs and "bounds" not in da.time.encoding
    da.to_netcdf(tmp_path / "a.nc")
    with netCDF4.Dataset(tmp_path / "a.nc") as nc:
        assert "bounds" not in nc["time"].ncattrs()


def test_a_float_files_fill_value_is_kept_and_the_flags_get_their_own(tmp_path):
    """Found by a probe: a float32 file's _FillValue -999 became NaN in the output (its readers
    look for -999 outside the domain); packed files' fill values stay dropped (values are decoded)."""
    v = np.random.default_rng(0).random((2, 30, 40)).astype("f4")
    v[:, 5:8, 5:9] = np.nan
    v[:, :, :3] = np.nan  # outside the domain: stays missing
    ds = xr.Dataset({"v": (("time", "y", "x"), v)})
    ds.v.encoding.update(_FillValue=np.float32(-999.0), missing_value=np.float32(-999.0), dtype=np.dtype("f4"))
    out = ds.dl.inpaint(domain=xr.DataArray(np.arange(40) >= 3, dims="x"), uncertainty=True)
    out.to_netcdf(tmp_path / "o.nc")
    with netCDF4.Dataset(tmp_path / "o.nc") as nc:
        nc.set_auto_mask(False)
        assert nc["v"].getncattr("_FillValue") == -999 and nc["v"].getncattr("missing_value") == -999
        assert (nc["v"][:, :, :3] == -999).all() and (nc["v_sigma"][:, :, :3] == -999).all()
        assert nc["v_inpainted"].getncattr("_FillValue") == -1 and "missing_value" not in nc["v_inpainted"].ncattrs()
    np.testing.assert_array_equal(xr.open_dataset(tmp_path / "o.nc").v.values, out.v.values)
    packed = ds.copy()
    packed.v.encoding.update(dtype=np.dtype("i2"), scale_factor=0.001, _FillValue=np.int16(-32768))
    assert np.isnan(packed.dl.inpaint(domain=None).v.encoding["_FillValue"])  # not -32768
    # A missing_value that differs from _FillValue (or a list of them) is not kept: xarray refuses
    # to write the two (a review found the outputs of such files unwritable).
    for missing in (np.float32(-9999.0), np.array([-999.0, -9999.0], "f4")):
        other = ds.copy()
        other.v.encoding.update(_FillValue=np.float32(-999.0), missing_value=missing)
        filled = other.dl.inpaint(domain=None)
        assert filled.v.encoding["_FillValue"] == -999 and "missing_value" not in filled.v.encoding
        filled.to_netcdf(tmp_path / "other.nc")


def test_a_zarr_input_writes_netcdf_without_byte_order_warnings(tmp_path):
    """Found by a probe: a zarr 3 store records dtypes with their byte order ('<i2'), and netCDF4
    warned "endian-ness of dtype and endian kwarg do not match" for every such variable."""
    from xdl.io import write_output

    counts = (np.arange(600, dtype="i2") % 50).reshape(1, 20, 30)
    ds = xr.Dataset({"v": (("time", "y", "x"), np.random.default_rng(0).random((1, 20, 30))),
                     "n": (("time", "y", "x"), counts)})
    ds.to_zarr(tmp_path / "in.zarr")
    opened = xr.open_zarr(tmp_path / "in.zarr")
    assert opened.n.encoding["dtype"].str == "<i2"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_output(opened.dl.inpaint(variables=["v"], domain=None), str(tmp_path / "out.nc"))
    np.testing.assert_array_equal(xr.open_dataset(tmp_path / "out.nc").n.values, counts)


def test_outputs_keep_cf_coordinate_variables_and_ancillaries_clean(tmp_path):
    """Packed int16 x/y (GOES) came out of the Python API as float32 with _FillValue NaN, which CF
    forbids on a coordinate variable; a DataArray's fill kept ancillary_variables = "DQF" without
    DQF (checker errors; probe). Neither now; the values of x/y as decoded."""
    x = np.arange(16, dtype="i2")
    ds = xr.Dataset({"LST": (("y", "x"), np.random.default_rng(2).normal(300, 2, (12, 16)).astype("f4"),
                             {"ancillary_variables": "DQF"}),
                     "DQF": (("y", "x"), np.zeros((12, 16), "u1"))},
                    coords={"x": ("x", x, {"scale_factor": 5.6e-05, "add_offset": -0.1, "units": "rad"}),
                            "y": ("y", np.arange(12, dtype="i2"), {"scale_factor": -5.6e-05, "add_offset": 0.1})})
    ds.LST[4, 3:9] = np.nan
    ds.to_netcdf(tmp_path / "in.nc")
    src = xr.open_dataset(tmp_path / "in.nc")
    for name, out in {"ds": src.dl.inpaint(variables=["LST"], domain=None),
                      "da": src.LST.dl.inpaint(domain=None)}.items():
        out.to_netcdf(tmp_path / f"{name}.nc")
        with netCDF4.Dataset(tmp_path / f"{name}.nc") as nc:
            for coord in ("x", "y"):
                assert "_FillValue" not in nc[coord].ncattrs(), (name, coord)
            np.testing.assert_array_equal(nc["x"][:], src.x.values)
            assert "DQF" in nc.variables or "ancillary_variables" not in nc["LST"].ncattrs(), name
    src.close()


def test_netcdf_default_fill_values_are_gaps(tmp_path):
    """A netCDF variable without _FillValue holds the library's default fill (9.97e36) where nothing
    was written: netCDF4 masks it, xarray reads it as a number, and xdl took it for data (a context
    field with it spoilt the fills beside them; probe). It is a gap now, for targets and context."""
    y, x = np.mgrid[0:40, 0:56]
    t = (np.sin(x / 6.0) + np.cos(y / 5.0)).astype("f4")
    with netCDF4.Dataset(tmp_path / "in.nc", "w") as nc:
        nc.createDimension("y", 40)
        nc.createDimension("x", 56)
        for name in ("t", "c"):
            v = nc.createVariable(name, "f4", ("y", "x"), fill_value=False)  # no _FillValue attribute
            v[:] = t if name == "t" else 2 * t
        nc["t"][10:13, 5:40] = netCDF4.default_fillvals["f4"]
        nc["c"][30:33, 0:20] = netCDF4.default_fillvals["f4"]
    ds = xr.open_dataset(tmp_path / "in.nc")
    assert "_FillValue" not in ds.t.attrs and float(ds.t.max()) > 1e36  # xarray reads the number
    out = ds.dl.inpaint(variables=["t"], domain=None)
    assert (out.t_inpainted.values[10:13, 5:40] == FLAG_FILLED).all()
    assert float(np.abs(out.t.values).max()) < 10
    with_c = ds.dl.inpaint(variables=["t"], context=["c"], domain=None)
    assert float(np.abs(with_c.t.values - t).max()) < 0.05
    ds.close()


def test_another_bands_valid_range_does_not_clamp_fills_under_a_mask():
    """Found by a probe: bands joined by open_mfdataset all carry the first file's valid_range (GOES
    C07's -0.04..25.6 on C13 radiances of 20-124); under mask= every fill was clamped to 25.59 (true
    mean 87.6), silently. A limit some values the mask calls valid lie beyond bounds no fill (the
    README's way to keep out-of-range values, mask=np.isfinite(...), stays quiet)."""
    y, x = np.mgrid[0:40, 0:50]
    values = (70 + 30 * np.sin(x / 6.0) + 10 * np.cos(y / 5.0)).astype("f4")
    gappy = values.copy()
    gappy[18:21, :] = -1.0  # bad pixels, flagged
    ds = xr.Dataset({"Rad": (("y", "x"), gappy, {"valid_range": np.array([-0.04, 25.6], "f4")}),
                     "DQF": (("y", "x"), (gappy < 0).astype("i1"))})
    for mask in (ds.DQF == 0, (ds.DQF == 0).chunk({"y": 20})):
        out = ds.chunk({"y": 20}).dl.inpaint(variables=["Rad"], mask=mask, domain=None).compute()
        filled = out.Rad.values[18:21]
        assert filled.std() > 5 and np.abs(filled - values[18:21]).mean() < 5  # not one clamped value
        assert filled.max() <= gappy.max()  # within the valid values the mask admits beyond the range
        np.testing.assert_array_equal(out.Rad.values[ds.DQF.values == 0], gappy[ds.DQF.values == 0])


def test_a_masked_geotiff_keeps_its_nodata_as_nan_through_rioxarray(tmp_path):
    # A nodata-0 uint16 GeoTIFF read masked: the output's NaN collar was written by to_raster with
    # no nodata tag (its encoding dropped the packed fill value 0 and said nothing instead; probe).
    rasterio = pytest.importorskip("rasterio")
    rioxarray = pytest.importorskip("rioxarray")
    yy, xx = np.mgrid[0:64, 0:80]
    counts = (8000 + 40 * yy + 30 * xx).astype("u2")
    counts[:, :12] = 0  # the collar: nodata, wide at the edge, outside
    counts[30:32, 20:60] = 0  # a gap to fill
    src = xr.DataArray(counts[None], dims=("band", "y", "x"),
                       coords={"band": [1], "y": 4e6 - 30.0 * yy[:, 0], "x": 5e5 + 30.0 * xx[0]})
    src = src.rio.write_crs("EPSG:32633").rio.write_nodata(0)
    src.rio.to_raster(tmp_path / "in.tif")
    da = rioxarray.open_rasterio(tmp_path / "in.tif", masked=True)
    with pytest.warns(XdlWarning, match="taken for sea or space"):
        out = da.dl.inpaint()
    assert np.isnan(out.rio.encoded_nodata)
    out.rio.to_raster(tmp_path / "out.tif")
    with rasterio.open(tmp_path / "out.tif") as r:
        assert np.isnan(r.nodata)
        read = r.read(1)
    assert np.isnan(read[:, :12]).all() and np.isfinite(read[30:32, 20:60]).all()
