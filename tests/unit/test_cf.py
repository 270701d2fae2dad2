"""xdl.conventions.cf: CF valid masks (packed limits, fill values) and the attrs of outputs."""

import dask.array as da
import numpy as np
import pytest
import xarray as xr

from xdl.conventions.cf import (append_history, cf_valid_mask, history_line, out_of_range_counts,
                                out_of_range_message, output_attrs, output_encoding, valid_limits)


def _goes_like(values):
    """A GOES-style packed variable as xarray decodes it: valid_range in raw uint16 counts."""
    v = xr.DataArray(np.asarray(values, "f4"), dims="x", name="CMI",
                     attrs={"valid_range": np.array([9200, 56000], "u2"), "units": "K"})
    v.encoding.update(scale_factor=0.0025, add_offset=190.0, _FillValue=np.uint16(65535), dtype="u2")
    return v


def test_packed_valid_range_is_decoded_before_comparing():
    v = _goes_like([212.9, 213.0, 250.0, 330.0, 330.1])
    assert valid_limits(v) == (213.0, 330.0)  # 9200 * 0.0025 + 190, 56000 * 0.0025 + 190
    assert cf_valid_mask(v).values.tolist() == [False, True, True, True, False]


def test_fill_values_in_encoding_are_decoded_and_attrs_compared_as_is():
    v = xr.DataArray(np.array([9.5, 10.0, 11.0]), dims="x", name="a")
    v.encoding.update(_FillValue=np.int16(-1), scale_factor=0.5, add_offset=10.0)  # raw -1 -> 9.5
    assert cf_valid_mask(v).values.tolist() == [False, True, True]
    w = xr.DataArray(np.array([0, -1, 5], "i2"), dims="x", attrs={"_FillValue": -1})  # opened raw
    assert cf_valid_mask(w).values.tolist() == [True, False, True]


def test_unsigned_and_negative_scale_limits():
    u = xr.DataArray(np.array([0.0, 200.0, 255.0]), dims="x", attrs={"valid_range": np.array([0, -2], "i1")})
    u.encoding.update(_Unsigned="true", scale_factor=1.0, add_offset=0.0)
    assert valid_limits(u) == (0.0, 254.0)  # -2 read as the unsigned byte 254
    assert cf_valid_mask(u).values.tolist() == [True, True, False]
    n = xr.DataArray(np.zeros(1), dims="x", attrs={"valid_min": np.int16(0), "valid_max": np.int16(100)})
    n.encoding.update(scale_factor=-0.5, add_offset=10.0)
    assert valid_limits(n) == (-40.0, 10.0)  # swapped: a negative scale reverses the order


def test_valid_min_max_win_over_valid_range():
    v = xr.DataArray(np.array([1.0, 5.0]), dims="x", attrs={"valid_range": [0.0, 10.0], "valid_max": 4.0})
    assert valid_limits(v) == (0.0, 4.0)
    assert valid_limits(xr.DataArray(np.zeros(1))) == (None, None)


def test_valid_mask_stays_lazy():
    v = _goes_like(np.linspace(200, 340, 8)).chunk({"x": 4})
    mask = cf_valid_mask(v)
    assert isinstance(mask.data, da.Array) and mask.chunks == ((4, 4),) and mask.name == "CMI_valid"
    # 200, 220, ..., 340: the two ends are outside [213, 330]
    assert mask.values.tolist() == [False, True, True, True, True, True, True, False]


def test_out_of_range_counts_and_message_above_one_percent():
    v = xr.DataArray(np.r_[np.full(98, 5.0), 50.0, 60.0, np.nan], dims="x", attrs={"valid_max": 10.0})
    outside, finite = (int(n) for n in out_of_range_counts(v))
    assert (outside, finite) == (2, 100)
    assert "2 of its 100 finite values (2.0%)" in out_of_range_message("sst", outside, finite)
    assert out_of_range_message("sst", 1, 100) is None
    assert out_of_range_counts(xr.DataArray(np.zeros(3))) is None


def test_output_attrs_of_a_packed_source_are_decoded_with_the_outputs_dtype():
    attrs = output_attrs(_goes_like([250.0]), np.float32)
    assert attrs["valid_range"].dtype == np.float32 and attrs["valid_range"].tolist() == [213.0, 330.0]
    assert attrs["units"] == "K"
    assert not {"scale_factor", "add_offset", "_Unsigned", "_FillValue", "valid_min"} & set(attrs)


def test_output_attrs_of_a_decoded_float_source_take_the_dtype():
    src = xr.DataArray(np.zeros(2), dims="x", attrs={"_FillValue": -999.0, "valid_min": 0.0, "long_name": "t"})
    attrs = output_attrs(src, np.float32)
    assert type(attrs["_FillValue"]) is np.float32 and attrs["_FillValue"] == -999.0
    assert type(attrs["valid_min"]) is np.float32 and attrs["long_name"] == "t"


def test_output_attrs_keep_the_packing_of_a_raw_source():
    raw = xr.DataArray(np.zeros(2, "i2"), dims="x", attrs={"scale_factor": 0.01, "add_offset": 5.0, "_FillValue": -1})
    attrs = output_attrs(raw, np.int16)
    assert attrs["scale_factor"] == 0.01 and attrs["add_offset"] == 5.0 and attrs["_FillValue"] == -1


def test_output_encoding_keeps_georeferencing_and_compression_only():
    src = xr.DataArray(np.zeros(2), dims="x")
    src.encoding.update(grid_mapping="goes_imager_projection", zlib=True, complevel=1, dtype="u2",
                        scale_factor=0.1, _FillValue=0, chunksizes=(2,))
    out = output_encoding(src)
    assert np.isnan(out.pop("_FillValue"))  # the decoded output's own, not the packed 0
    assert out == {"grid_mapping": "goes_imager_projection", "zlib": True, "complevel": 1, "chunksizes": (2,)}


def test_history_is_prepended_newest_first():
    line = history_line("inpaint sst")
    assert line.endswith(" inpaint sst") and " xdl " in line and line[4] == "-" and line[19] == "Z"
    attrs = append_history({"history": "older entry"}, "inpaint sst")
    first, second = attrs["history"].split("\n")
    assert first.endswith("inpaint sst") and second == "older entry"
    assert "\n" not in append_history({}, "x")["history"]


@pytest.mark.parametrize("dtype", ["f4", "f8"])
def test_valid_mask_compares_fill_values_in_the_variables_dtype(dtype):
    # a float32 variable with a float64 fill attribute: -999.9 as float32 is not -999.9 as float64
    v = xr.DataArray(np.array([-999.9, 1.0], dtype), dims="x", attrs={"_FillValue": -999.9})
    assert cf_valid_mask(v).values.tolist() == [False, True]
