"""inpaint(uncertainty=True) and predict of sigma models: ``<var>_sigma`` values, CF attributes,
chunks, files (issue #16). Stand-in models give a known sigma so that every number is exact."""

import dask.array as da
import netCDF4
import numpy as np
import pytest
import torch
import xarray as xr

import xdl
from xdl import normalize
from xdl.cli import main
from xdl.errors import InputError, ModelError, XdlWarning
from xdl.inpaint import FLAG_FILLED, FLAG_OUTSIDE, FLAG_VALID


class ConstantSigma(torch.nn.Module):
    """A gap filler (no context) giving 0 in the gaps (normalised units) and a constant sigma."""
    takes_mask, fills_gaps, in_channels, out_channels, halo, size_multiple, sigma = True, True, 1, 2, 0, 1, True

    def __init__(self, value=0.5):
        super().__init__()
        self.value = value

    def forward(self, x, mask):
        mean = torch.where(mask > 0, x, torch.zeros_like(x))
        return torch.cat([mean, torch.full_like(x, self.value)], 1)


def field(seed=0, shape=(3, 32, 40)):
    rng = np.random.default_rng(seed)
    values = (rng.standard_normal(shape) * 2 + 290).astype("f4")
    arr = xr.DataArray(values.copy(), dims=("time", "y", "x"), name="sst",
                       attrs={"units": "K", "standard_name": "sea_surface_temperature", "long_name": "SST"})
    arr.values[:, 8:12, 5:25] = np.nan
    return arr, values


def test_sigma_values_and_attrs():
    arr, values = field()
    gap = np.isnan(arr.values)
    domain = xr.DataArray(np.ones(arr.shape[1:], bool), dims=("y", "x"))
    domain[8:12, 20:] = False  # some gaps outside the domain: no fill, no sigma
    model = xdl.Model(ConstantSigma(0.5), card={"normalization": {"kind": "none"},
                                               "uncertainty": {"kind": "gaussian", "scale": 3.0}})
    out = arr.to_dataset().dl.inpaint(model, domain=domain, uncertainty=True)
    sigma, flags = out.sst_sigma.values, out.sst_inpainted.values
    assert out.sst_sigma.dtype == out.sst.dtype == np.float32
    assert (sigma[flags == FLAG_VALID] == 0).all()
    np.testing.assert_array_equal(sigma[flags == FLAG_FILLED], np.float32(1.5))  # 0.5 x the card's scale 3
    assert (flags[gap] != FLAG_VALID).all() and (flags == FLAG_OUTSIDE).any()
    assert np.isnan(sigma[flags == FLAG_OUTSIDE]).all()
    assert out.sst_sigma.attrs == {"long_name": "standard error of the gap-filled sst", "units": "K",
                                   "standard_name": "sea_surface_temperature standard_error"}
    assert out.sst.attrs["ancillary_variables"] == "sst_inpainted sst_sigma"
    # cfgrib's placeholder "unknown", or a name with a modifier already: no "... standard_error"
    for name in ("unknown", "sea_surface_temperature standard_error"):
        odd = arr.assign_attrs(standard_name=name).to_dataset().dl.inpaint(model, domain=domain, uncertainty=True)
        assert "standard_name" not in odd.sst_sigma.attrs and odd.sst_sigma.attrs["units"] == "K"
    # without uncertainty=True the same fills, no sigma
    plain = arr.to_dataset().dl.inpaint(model, domain=domain)
    assert "sst_sigma" not in plain and plain.sst.attrs["ancillary_variables"] == "sst_inpainted"
    np.testing.assert_array_equal(plain.sst.values, out.sst.values)



def test_dataarray_sigma_output_names_only_variables_it_holds():
    """GOES Rad names its quality flag DQF in ancillary_variables; the Dataset that
    da.dl.inpaint(uncertainty=True) returns does not hold DQF, so it must not name it (CF)."""
    arr, _ = field()
    arr.attrs["ancillary_variables"] = "DQF"
    model = xdl.Model(ConstantSigma(0.5), card={"normalization": {"kind": "none"}})
    out = arr.dl.inpaint(model, domain=None, uncertainty=True)
    assert out.sst.attrs["ancillary_variables"] == "sst_inpainted sst_sigma"
    # a Dataset that holds the flag keeps naming it
    ds = arr.to_dataset().assign(DQF=arr.isnull().astype("i1"))
    kept = ds.dl.inpaint(model, variables=["sst"], domain=None, uncertainty=True)
    assert kept.sst.attrs["ancillary_variables"] == "DQF sst_inpainted sst_sigma"


def test_dataarray_names_a_nameless_input_and_clashes_with_its_coordinates():
    """Found by a probe: a nameless DataArray came back named 'data'; with uncertainty=True a
    name that is also a coordinate (nameless with a 'data' coordinate, 'lat' beside a 2-D lat)
    failed with xarray's MergeError."""
    arr, _ = field()
    model = xdl.Model(ConstantSigma(0.5), card={"normalization": {"kind": "none"}})
    assert arr.rename(None).dl.inpaint(model, domain=None).name is None
    assert list(arr.rename(None).dl.inpaint(model, domain=None, uncertainty=True).data_vars) == [
        "data", "data_inpainted", "data_sigma"]
    lat = xr.DataArray(np.zeros(arr.shape[1:]), dims=("y", "x"))
    for clash, name in ((arr.rename(None).assign_coords(data=lat), "data"), (arr.assign_coords(lat=lat).rename("lat"), "lat")):
        with pytest.raises(InputError, match=f"'{name}' is already a coordinate of the DataArray: name it otherwise"):
            clash.dl.inpaint(model, domain=None, uncertainty=True)


def test_dataset_output_names_only_variables_it_holds():
    """A user's Dataset of the variable alone (its flag left behind) still names the flag; the
    filled variable's ancillary_variables then names only what the output holds. Another
    variable's attributes are the user's business and stay as they were."""
    arr, _ = field()
    arr.attrs["ancillary_variables"] = "DQF"
    other = xr.zeros_like(arr).rename("other").assign_attrs(ancillary_variables="gone")
    ds = xr.merge([arr, other])
    model = xdl.Model(ConstantSigma(0.5), card={"normalization": {"kind": "none"}})
    out = ds.dl.inpaint(model, variables=["sst"], domain=None, uncertainty=True)
    assert out.sst.attrs["ancillary_variables"] == "sst_inpainted sst_sigma"
    assert out.other.attrs["ancillary_variables"] == "gone"
    assert ds.sst.attrs["ancillary_variables"] == "DQF"  # the input is not touched
    plain = ds.dl.inpaint(model, variables=["sst"], domain=None, flags=False)
    assert "ancillary_variables" not in plain.sst.attrs


def test_sigma_is_unnormalised_by_the_targets_std_only():
    arr, values = field(1)
    model = xdl.Model(ConstantSigma(0.25), card={"normalization": {"kind": "per_sample"}})
    out = arr.dl.inpaint(model, domain=None, uncertainty=True)
    assert isinstance(out, xr.Dataset) and sorted(out.data_vars) == ["sst", "sst_inpainted", "sst_sigma"]
    stats = normalize.robust_moments(arr.values[:, None], 2)  # (time, 1, 1, 4): mean, std, fences
    gap = np.isnan(arr.values)
    for t in range(arr.shape[0]):
        mean, std = stats[t, 0, 0, :2]
        np.testing.assert_array_equal(out.sst_sigma.values[t][gap[t]], np.float32(0.25) * std)
        np.testing.assert_array_equal(out.sst.values[t][gap[t]], np.float32(0) * std + mean)
    assert np.array_equal(out.sst.values[~gap].view("u4"), values[~gap].view("u4"))


def test_chunks_laziness_and_chunk_invariance():
    arr, _ = field(2)
    torch.manual_seed(0)
    model = xdl.zoo.create("fill-unet", in_channels=1, depth=2, base_channels=8, sigma=True,
                           card={"normalization": {"kind": "per_sample"}})
    whole = arr.dl.inpaint(model, domain=None, uncertainty=True)
    assert np.isfinite(whole.sst_sigma.values).all() and (whole.sst_sigma.values[np.isnan(arr.values)] > 0).all()
    for chunks in ({"time": 1}, {"time": 2, "y": 16, "x": 16}):
        lazy = arr.chunk(chunks).dl.inpaint(model, domain=None, uncertainty=True)
        assert isinstance(lazy.sst_sigma.data, da.Array)
        assert lazy.sst_sigma.chunks == lazy.sst.chunks == arr.chunk(chunks).chunks
        got = lazy.compute()
        for name in whole.data_vars:
            np.testing.assert_array_equal(got[name].values, whole[name].values, err_msg=f"{name} {chunks}")


def test_model_without_sigma_refuses():
    arr, _ = field()
    plain = xdl.zoo.create("pconv-unet", in_channels=1, depth=2, base_channels=8, card={"name": "no-sigma"})
    with pytest.raises(InputError, match="'no-sigma' gives no sigma"):
        arr.dl.inpaint(plain, uncertainty=True)


def test_sigma_card_without_sigma_channels_is_a_model_error():
    class Same(torch.nn.Module):
        takes_mask, fills_gaps, in_channels, out_channels, halo, size_multiple = True, True, 1, 1, 0, 1

        def forward(self, x, mask):
            return x

    # Refused where the card is made, loaded or not (a file with it failed at its first fill, the
    # CLI with a traceback; probe); a module whose channels the card cannot see fails at the fill.
    with pytest.raises(InputError, match="'uncertainty' says the model gives a sigma .* Same module has no sigma output"):
        xdl.Model(Same(), card={"uncertainty": {"kind": "gaussian", "scale": 1.0}})
    del Same.out_channels
    model = xdl.Model(Same(), card={"uncertainty": {"kind": "gaussian", "scale": 1.0}})
    with pytest.raises(ModelError, match="returns 1 channel"):
        field()[0].dl.inpaint(model)
    with pytest.raises(InputError, match="'context' says the model takes context fields, but its Same module takes none"):
        xdl.Model(Same(), card={"context": {"variables": ["c"], "time_window": 0}})


def test_sigma_survives_zarr_and_netcdf(tmp_path):
    arr, _ = field(3)
    model = xdl.Model(ConstantSigma(0.5), card={"normalization": {"kind": "none"}})
    out = arr.to_dataset().chunk({"time": 1}).dl.inpaint(model, domain=None, uncertainty=True)
    expected = out.compute()
    out.to_zarr(tmp_path / "o.zarr")
    out.to_netcdf(tmp_path / "o.nc")
    for back in (xr.open_zarr(tmp_path / "o.zarr"), xr.open_dataset(tmp_path / "o.nc")):
        np.testing.assert_array_equal(back.sst_sigma.values, expected.sst_sigma.values)
        assert back.sst_sigma.attrs["standard_name"] == "sea_surface_temperature standard_error"
        assert back.sst.attrs["ancillary_variables"] == "sst_inpainted sst_sigma"
        back.close()
    with netCDF4.Dataset(tmp_path / "o.nc") as nc:
        var = nc["sst_sigma"]
        assert var.standard_name == "sea_surface_temperature standard_error" and var.units == "K"
        assert var.long_name == "standard error of the gap-filled sst"
        data = var[:]
        np.testing.assert_array_equal(np.ma.filled(data, np.nan), expected.sst_sigma.values)


def test_predict_returns_sigma_variables():
    net = torch.nn.Conv2d(1, 2, 1)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[[[1.0]]], [[[0.0]]]]))
        net.bias.copy_(torch.tensor([0.0, 0.5]))
    model = xdl.Model(net, card={"inputs": ["t"], "outputs": ["u", "u_sigma"], "halo": 0,
                                 "uncertainty": {"kind": "gaussian", "scale": 2.0},
                                 "normalization": {"kind": "global", "mean": {"t": 10.0, "u": 1.0},
                                                   "std": {"t": 4.0, "u": 3.0}}})
    ds = xr.Dataset({"t": (("y", "x"), np.full((6, 7), 18.0, "f4"))})
    out = ds.dl.predict(model)
    assert sorted(out.data_vars) == ["u", "u_sigma"]
    np.testing.assert_array_equal(out.u.values, np.float32(2 * 3 + 1))  # (18-10)/4 = 2 -> 2*3+1
    np.testing.assert_array_equal(out.u_sigma.values, np.float32(0.5 * 3 * 2))  # std only, times the scale
    assert out.u.attrs["ancillary_variables"] == "u_sigma"
    assert out.u_sigma.attrs["long_name"] == "standard error of the predicted u"
    single = ds.t.dl.predict(model, outputs=["w"])
    assert list(single.channel.values) == ["w", "w_sigma"]


def test_predict_makes_a_sigma_that_is_no_standard_error_nan_and_warns():
    """Found by a probe: predict passed a model's negative and zero sigmas on (-2, 0 after the
    card's scale 2) where inpaint makes them NaN and warns."""
    class Bad(torch.nn.Module):
        in_channels, out_channels = 1, 2

        def forward(self, x):
            s = torch.full_like(x, 0.5)
            s[..., ::3, :] = -1.0
            s[..., 1::3, :] = 0.0
            return torch.cat([x, s], 1)

    ds = xr.Dataset({"t": (("y", "x"), np.random.default_rng(0).normal(280, 1, (24, 24)).astype("f4"))})
    model = xdl.Model(Bad(), card={"inputs": ["t"], "outputs": ["t"], "uncertainty": {"kind": "gaussian", "scale": 2.0}})
    for call in (lambda: ds.dl.predict(model).t_sigma, lambda: ds.t.dl.predict(model).sel(channel="t_sigma"),
                 lambda: ds.chunk({"y": 12}).dl.predict(model).t_sigma.compute()):
        with pytest.warns(XdlWarning, match="gave a sigma that is NaN, inf, 0 or negative for predicted pixels"):
            values = call().values
        assert np.isnan(values[::3]).all() and np.isnan(values[1::3]).all() and (values[2::3] == 1.0).all()


def test_a_sigma_model_with_an_odd_channel_count_is_a_model_error_in_predict():
    """A module with sigma = True that returned (mean, sigma) as a tuple, or only its mean, gave
    predict an empty Dataset (and a DataArray without sigma), silently (probe)."""
    class AsTuple(torch.nn.Module):
        in_channels, sigma = 1, True

        def forward(self, x):
            return x * 2, torch.ones_like(x)

    class MeanOnly(AsTuple):
        def forward(self, x):
            return x * 2

    ds = xr.Dataset({"t": (("y", "x"), np.ones((6, 7), "f4"))})
    for module in (AsTuple(), MeanOnly()):
        for call in (lambda: ds.dl.predict(module), lambda: ds.dl.predict(module, inputs=["t"]),
                     lambda: ds.t.dl.predict(module)):
            with pytest.raises(ModelError, match=r"gives a sigma .* returns 1 channel.*torch.cat\(\[mean, sigma\], 1\)"):
                call()


def test_a_card_naming_the_means_counts_their_sigmas_too():
    """outputs=["rain"] with an uncertainty: two channels (the mean, its sigma), as predict reads
    them; the card said one and the model was refused (probe). Both names given: two as before."""
    net = torch.nn.Conv2d(1, 2, 1)
    ds = xr.Dataset({"T": (("y", "x"), np.ones((6, 7), "f4"))})
    sigma = {"kind": "gaussian", "scale": 1.0}
    for outputs in (["rain"], ["rain", "rain_sigma"]):
        model = xdl.Model(net, card={"inputs": ["T"], "outputs": outputs, "uncertainty": sigma, "halo": 0})
        assert model.card["out_channels"] == 2
        assert list(ds.dl.predict(model).data_vars) == ["rain", "rain_sigma"]
    assert xdl.Model(torch.nn.Conv2d(1, 2, 1), card={"outputs": ["a", "b"], "halo": 0}).card["out_channels"] == 2


def test_predict_names_sigma_channels_alike_on_both_paths():
    # Four outputs without names: two means, then their sigmas; a DataArray's channels are named
    # as a Dataset's variables, never a sigma taken for a mean.
    net = torch.nn.Conv2d(1, 4, 1)
    card = {"in_channels": 1, "out_channels": 4, "halo": 0, "normalization": {"kind": "none"},
            "uncertainty": {"kind": "gaussian", "scale": 1.0}}
    ds = xr.Dataset({"t": (("y", "x"), np.ones((6, 7), "f4"))})
    model = xdl.Model(net, card=card)
    names = ["t_0", "t_1", "t_0_sigma", "t_1_sigma"]
    assert list(ds.t.dl.predict(model).channel.values) == names
    assert list(ds.dl.predict(model).data_vars) == names


class SigmaOf(torch.nn.Module):
    """A gap filler that copies the data and gives the sigma ``value`` (normalised units)."""
    takes_mask, fills_gaps, in_channels, out_channels, halo, size_multiple, sigma = True, True, 1, 2, 0, 1, True

    def __init__(self, value):
        super().__init__()
        self.value = value

    def forward(self, x, mask):
        return torch.cat([torch.where(mask > 0, x, torch.zeros_like(x)), torch.full_like(x, self.value)], 1)


@pytest.mark.parametrize("value", [0.0, -0.5, float("nan"), float("inf")])
def test_a_sigma_that_is_no_positive_number_is_nan_and_warned(value):
    arr, _ = field()
    card = {"uncertainty": {"kind": "gaussian", "scale": 1.0}, "normalization": {"kind": "per_sample"}}
    with pytest.warns(xdl.XdlWarning, match="sigma that is NaN, inf, 0 or negative"):
        out = arr.to_dataset().dl.inpaint(xdl.Model(SigmaOf(value), card=card), uncertainty=True,
                                          domain=None).compute()
    filled = out.sst_inpainted.values == FLAG_FILLED
    assert filled.any() and np.isnan(out.sst_sigma.values[filled]).all()
    assert np.isfinite(out.sst.values[filled]).all()  # the fills themselves are kept
    assert (out.sst_sigma.values[out.sst_inpainted.values == FLAG_VALID] == 0).all()


def test_a_second_pass_drops_the_first_pass_sigma():
    # The second pass fills the first's gaps anew (an earlier fill is no data): the first's sigma
    # describes fills that are gone, so it goes, with a warning, and the link with it.
    arr, _ = field()
    card = {"uncertainty": {"kind": "gaussian", "scale": 1.0}, "normalization": {"kind": "per_sample"}}
    first = arr.to_dataset().dl.inpaint(xdl.Model(SigmaOf(0.5), card=card), uncertainty=True, domain=None)
    with pytest.warns(xdl.XdlWarning, match="'sst_sigma' .* is dropped"):
        second = first.dl.inpaint(xdl.Model(ConstantSigma(), card={"normalization": {"kind": "per_sample"}}),
                                  domain=None)
    assert "sst_sigma" not in second and "sst_sigma" not in second.sst.attrs.get("ancillary_variables", "")
    again = first.dl.inpaint(xdl.Model(SigmaOf(0.25), card=card), uncertainty=True, domain=None)
    assert float(again.sst_sigma.max()) < float(first.sst_sigma.max())  # a new sigma replaces it


def test_a_field_seen_in_a_few_pixels_gets_the_spread_of_its_values_as_sigma():
    # 3 or 30 known pixels hold no pairs to say how the error grows with distance: sigma is the
    # spread of their values (of the order of the field's), never the floor.
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:73, 0:144]
    truth = (20 * np.sin(x / 9.0) * np.cos(y / 7.0) + 30).astype("f4")
    for count in (3, 30):
        keep = np.zeros(truth.size, bool)
        keep[rng.choice(truth.size, count, replace=False)] = True
        ds = xr.Dataset({"w": (("y", "x"), np.where(keep.reshape(truth.shape), truth, np.nan))})
        out = ds.dl.inpaint(uncertainty=True, domain=None).compute()
        gaps = ~keep.reshape(truth.shape)
        sigma, error = out.w_sigma.values[gaps], np.abs(out.w.values - truth)[gaps]
        # Before: RMS(sigma) / RMSE 0.001 (3 pixels) and 0.2 (30). Three values' spread is itself
        # a rough guess of the field's.
        assert np.sqrt(np.mean(sigma ** 2)) > 0.3 * np.sqrt(np.mean(error ** 2)), count
        if count == 30:
            assert np.mean(error <= 2 * sigma) > 0.8


def test_for_output_keeps_the_old_behaviour():
    x = da.from_array(np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype("f4") * 5 + 7, chunks=(1, 3, 8, 8))
    n = normalize.for_input({"kind": "per_sample"}, ["a", "b", "c"], x, 2)
    same = normalize.for_output({"kind": "per_sample"}, ["a", "b", "c"], n, x, 2)
    assert same.mean is n.mean and same.std is n.std
    targets = normalize.for_output({"kind": "per_sample"}, ["a"], n, x[:, :2], 2, target_channels=1, sigma_scale=2.0)
    y = np.ones((2, 2, 8, 8), "f4")
    back = np.asarray(targets.invert(y))
    mean, std = np.asarray(n.mean)[:, 0], np.asarray(n.std)[:, 0]
    np.testing.assert_array_equal(back[:, 0], np.broadcast_to(std + mean, (2, 8, 8)))
    np.testing.assert_array_equal(back[:, 1], np.broadcast_to(std * np.float32(2.0), (2, 8, 8)))
    with pytest.raises(InputError, match="as many output channels"):
        normalize.for_output({"kind": "per_sample"}, ["a"], n, x[:, :1], 2)


def test_cli_uncertainty(tmp_path):
    arr, _ = field(4)
    arr.to_dataset().to_netcdf(tmp_path / "in.nc")
    torch.manual_seed(0)
    model = xdl.zoo.create("fill-unet", in_channels=1, depth=2, base_channels=8, sigma=True,
                           card={"normalization": {"kind": "per_sample"}})
    model.save(tmp_path / "m.xdl.safetensors")
    assert main(["inpaint", str(tmp_path / "in.nc"), str(tmp_path / "out.nc"), "--model",
                 str(tmp_path / "m.xdl.safetensors"), "--uncertainty", "--domain", "none"]) == 0
    with xr.open_dataset(tmp_path / "out.nc") as got:
        assert got.sst_sigma.attrs["standard_name"] == "sea_surface_temperature standard_error"
        assert (got.sst_sigma.values[np.isnan(arr.values)] > 0).all()
        assert (got.sst_sigma.values[np.isfinite(arr.values)] == 0).all()


def test_sigma_of_packed_counts_carries_the_scale_factor(tmp_path):
    """A file opened with mask_and_scale=False: the value stays in packed counts with its
    scale_factor, and so does its sigma, so netCDF4 and a decoding xarray read both in physical
    units (the sigma was 1/scale_factor too large there)."""
    arr, values = field(4)
    scale, offset = 0.01, 280.0
    packed = np.round((values - offset) / scale).astype("i2")
    packed[:, 8:12, 5:25] = -32767
    src = xr.Dataset({"sst": (("time", "y", "x"), packed, {"units": "K", "_FillValue": np.int16(-32767),
                                                          "scale_factor": scale, "add_offset": offset})})
    src.to_netcdf(tmp_path / "in.nc")
    model = xdl.Model(ConstantSigma(0.5), card={"normalization": {"kind": "per_sample"}})
    raw = xr.open_dataset(tmp_path / "in.nc", mask_and_scale=False)
    decoded = xr.open_dataset(tmp_path / "in.nc")
    out_raw = raw.dl.inpaint(model, variables=["sst"], domain=None, uncertainty=True)
    out_dec = decoded.dl.inpaint(model, domain=None, uncertainty=True)
    assert out_raw.sst_sigma.attrs["scale_factor"] == scale and "add_offset" not in out_raw.sst_sigma.attrs
    out_raw.to_netcdf(tmp_path / "raw.nc")
    gaps = np.isnan(arr.values)
    with netCDF4.Dataset(tmp_path / "raw.nc") as nc:
        sigma = np.ma.filled(nc["sst_sigma"][:].astype("f8"), np.nan)
    expected = out_dec.sst_sigma.values.astype("f8")
    np.testing.assert_allclose(sigma[gaps], expected[gaps], rtol=1e-3)
    assert (sigma[~gaps] == 0).all()
    back = xr.open_dataset(tmp_path / "raw.nc")
    np.testing.assert_allclose(back.sst_sigma.values[gaps], expected[gaps], rtol=1e-3)
    back.close(); raw.close(); decoded.close()


def test_added_variables_never_replace_the_users_own_or_a_context_field():
    """<var>_inpainted and <var>_sigma replace only what an earlier xdl fill left (probe: a user's
    retrieval error named sst_sigma, and a context field of that name, were silently replaced)."""
    arr, _ = field()
    own = xr.DataArray(np.full(arr.shape, 0.3, "f4"), dims=arr.dims, attrs={"long_name": "retrieval uncertainty"})
    ds = arr.to_dataset().assign(sst_sigma=own, other=arr.fillna(0) * 2)
    with pytest.raises(InputError, match="'sst_sigma', which is already a variable of this dataset that xdl did not write"):
        ds.dl.inpaint(variables=["sst"], uncertainty=True, domain=None)
    with pytest.raises(InputError, match="'sst_sigma', which is already a context variable"):
        ds.dl.inpaint(variables=["sst"], context=["sst_sigma"], uncertainty=True, domain=None)
    out = ds.dl.inpaint(variables=["sst"], domain=None)  # no sigma asked for: the user's stays as it is
    np.testing.assert_array_equal(out.sst_sigma.values, own.values)
    flagged = ds.drop_vars("sst_sigma").assign(sst_inpainted=own)
    with pytest.raises(InputError, match="'sst_inpainted'.*flags=False"):
        flagged.dl.inpaint(variables=["sst"], domain=None)
    kept = flagged.dl.inpaint(variables=["sst"], domain=None, flags=False)
    np.testing.assert_array_equal(kept.sst_inpainted.values, own.values)
    # xdl's own output filled again (the same options): its flags and sigma are replaced, as before
    first = ds.drop_vars("sst_sigma").dl.inpaint(variables=["sst"], context=["other"], uncertainty=True, domain=None)
    again = first.dl.inpaint(variables=["sst"], context=["other"], uncertainty=True, domain=None)
    for name in ("sst", "sst_sigma", "sst_inpainted"):
        np.testing.assert_array_equal(again[name].values, first[name].values)


def test_a_flag_variable_named_as_a_variable_to_fill_is_refused():
    """Bit words outside valid_range were interpolated into non-integer floats (probe: GHRSST
    l2p_flags named in --var). The default selection never picks flag variables."""
    arr, _ = field()
    words = xr.DataArray(np.where(np.isnan(arr.values), -32767, 3).astype("i2"), dims=arr.dims,
                         attrs={"flag_masks": np.array([1, 2], "i2"), "flag_meanings": "microwave land",
                                "valid_min": 0, "valid_max": 2047})
    ds = arr.to_dataset().assign(l2p_flags=words)
    with pytest.raises(InputError, match="'l2p_flags' is a flag variable.*mask=ds\\['l2p_flags'\\] == 0"):
        ds.dl.inpaint(variables=["l2p_flags"])
    assert "l2p_flags_inpainted" not in ds.dl.inpaint(domain=None)


def test_earlier_fills_are_recognised_through_their_link():
    """Found by a probe of chained use: a renamed output's fills came back as observations (flag 0,
    sigma 0), as the flags were found by name only; a DataArray of an output took its fills for
    data without a word; evaluate scored xdl's flag codes; a variable's own earlier sigma was read
    as its context and then dropped from the output."""
    arr, _ = field()
    card = {"uncertainty": {"kind": "gaussian", "scale": 1.0}, "normalization": {"kind": "per_sample"}}
    first = arr.to_dataset().dl.inpaint(xdl.Model(SigmaOf(0.5), card=card), uncertainty=True, domain=None)
    filled = first.sst_inpainted.values == FLAG_FILLED
    renamed = first.rename({"sst": "temp"})
    again = renamed.dl.inpaint(xdl.Model(SigmaOf(0.25), card=card), variables=["temp"], uncertainty=True,
                               domain=None)
    assert (again.temp_inpainted.values[filled] == FLAG_FILLED).all() and (again.temp_sigma.values[filled] > 0).all()
    with pytest.warns(xdl.XdlWarning, match="'sst_inpainted' in ancillary_variables.*not at hand"):
        first.sst.dl.inpaint(xdl.Model(SigmaOf(0.25), card=card), domain=None)
    with pytest.raises(InputError, match="'sst_inpainted' is a flag variable"):
        first.dl.evaluate(xdl.Model(SigmaOf(0.25), card=card), variables=["sst_inpainted"], domain=None)
    with pytest.raises(InputError, match=r"context=\['sst_sigma'\]: the standard error of an earlier fill"):
        first.dl.inpaint(variables=["sst"], context=["sst_sigma"], domain=None)


def test_earlier_fills_written_without_flags_are_known_by_their_sigma(tmp_path):
    """Found by a probe: a fill written with flags=False and uncertainty=True, filled again, gave
    its earlier fills flag 0 and sigma 0 (observations), with no word; sigma > 0 marks them."""
    arr, _ = field()
    card = {"uncertainty": {"kind": "gaussian", "scale": 1.0}, "normalization": {"kind": "per_sample"}}
    first = arr.to_dataset().dl.inpaint(xdl.Model(SigmaOf(0.5), card=card), uncertainty=True, flags=False,
                                        domain=None)
    first.to_netcdf(tmp_path / "first.nc")
    back = xr.open_dataset(tmp_path / "first.nc")
    filled = back.sst_sigma.values > 0
    assert filled.any() and "sst_inpainted" not in back
    again = back.dl.inpaint(xdl.Model(SigmaOf(0.25), card=card), uncertainty=True, domain=None)
    assert (again.sst_inpainted.values[filled] == FLAG_FILLED).all() and (again.sst_sigma.values[filled] > 0).all()
    assert (again.sst_sigma.values[~filled & np.isfinite(arr.values)] == 0).all()
    # Flags dropped by the user, sigma kept: the same; both dropped: a warning that names the Dataset.
    assert (first.sst_sigma.values[filled] > 0).all()
    renamed = back.rename({"sst": "temp"})
    again = renamed.dl.inpaint(xdl.Model(SigmaOf(0.25), card=card), variables=["temp"], domain=None)
    assert (again.temp_inpainted.values[filled] == FLAG_FILLED).all()
    # sigma packed by the user: its 0 reads back within a packing step of 0 (here -0.0005): still valid
    for i, (scale, offset) in enumerate([(0.001, -0.0005), (0.01, 273.15), (0.4, 0.3)]):
        first.to_netcdf(tmp_path / f"packed{i}.nc", encoding={"sst_sigma": {
            "dtype": "i2", "scale_factor": scale, "add_offset": offset, "_FillValue": -32767}})
        packed = xr.open_dataset(tmp_path / f"packed{i}.nc")
        again = packed.dl.inpaint(xdl.Model(SigmaOf(0.25), card=card), domain=None)
        np.testing.assert_array_equal(again.sst_inpainted.values == FLAG_FILLED, filled)
    with pytest.warns(xdl.XdlWarning, match="'sst_sigma' in ancillary_variables.*this Dataset does not hold them"):
        back.drop_vars("sst_sigma").dl.inpaint(xdl.Model(SigmaOf(0.25), card=card), domain=None)
