"""The streaming engine: ds.dl.predict against direct model calls, chunkings, borders, NaN, modes."""

import dask.array as da
import numpy as np
import pytest
import torch
import xarray as xr

from xdl.errors import InputError

from conftest import shared_file


def conv_net(in_ch=1, out_ch=1, width=4, layers=3):
    """A plain conv net: receptive-field radius = layers (3x3 kernels)."""
    mods, ch = [], in_ch
    for i in range(layers):
        last = i == layers - 1
        mods.append(torch.nn.Conv2d(ch, out_ch if last else width, 3, padding=1))
        if not last:
            mods.append(torch.nn.ReLU())
        ch = width
    return torch.nn.Sequential(*mods).eval()


class TinyUNet(torch.nn.Module):
    """Two poolings (size multiple 4) and a receptive field larger than small halos."""

    def __init__(self):
        super().__init__()
        self.down1 = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.down2 = torch.nn.Conv2d(4, 8, 3, padding=1)
        self.mid = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.up = torch.nn.Conv2d(8 + 8, 4, 3, padding=1)
        self.out = torch.nn.Conv2d(4 + 1, 1, 3, padding=1)

    def forward(self, x):
        a = torch.relu(self.down1(x))
        b = torch.relu(self.down2(torch.nn.functional.max_pool2d(a, 2)))
        c = torch.relu(self.mid(torch.nn.functional.max_pool2d(b, 2)))
        c = torch.nn.functional.interpolate(c, scale_factor=2, mode="nearest")
        d = torch.relu(self.up(torch.cat([c, b], 1)))
        d = torch.nn.functional.interpolate(d, scale_factor=2, mode="nearest")
        return self.out(torch.cat([d, x], 1))


def field(shape=(3, 120, 160), seed=0):
    rng = np.random.default_rng(seed)
    data = rng.standard_normal(shape).astype("f4")
    dims = ("time", "y", "x")[-len(shape):]
    coords = {"y": np.arange(shape[-2]) * 1.0, "x": np.arange(shape[-1]) * 1.0}
    return xr.DataArray(data, dims=dims, coords=coords, name="v", attrs={"units": "K"})


def direct(net, array):
    with torch.no_grad():
        return net(torch.from_numpy(np.ascontiguousarray(array[:, None])))[:, 0].numpy()


CHUNKINGS = [None, {"time": 1, "y": 40, "x": 50}, {"time": 2, "y": 120, "x": 160}, {"time": 3, "y": 17, "x": 23}]


@pytest.mark.parametrize("chunks", CHUNKINGS)
def test_equals_direct_call_where_receptive_field_fits(chunks):
    net = conv_net(layers=3)
    arr = field()
    inp = arr if chunks is None else arr.chunk(chunks)
    out = inp.dl.predict(net, tile=48, halo=4)  # tiles of 48 < the 120x160 field
    ref = direct(net, arr.values)
    r = 3
    np.testing.assert_allclose(out.values[:, r:-r, r:-r], ref[:, r:-r, r:-r], rtol=0, atol=2e-6)


def test_chunking_invariance_with_receptive_field_beyond_halo():
    net = TinyUNet().eval()
    arr = field((2, 100, 140))
    results = [arr.chunk(c).dl.predict(net, tile=40, halo=4).values if c else arr.dl.predict(net, tile=40, halo=4).values
               for c in CHUNKINGS]
    for other in results[1:]:
        np.testing.assert_allclose(other, results[0], rtol=0, atol=1e-5)


def test_size_multiple_padded_and_cropped_back():
    net = TinyUNet().eval()
    arr = field((1, 50, 70))
    out = arr.dl.predict(net)  # 50x70 is not a multiple of 4
    assert out.shape == arr.shape
    assert np.isfinite(out.values).all()
    # The whole field fits in one tile: the interior equals a direct call on a size-4-multiple crop.
    ref = direct(net, arr.values[:, :48, :68])
    np.testing.assert_allclose(out.values[:, 12:36, 12:56], ref[:, 12:36, 12:56], atol=1e-5)


def test_periodic_longitude_wraps_at_the_dateline():
    lon = np.arange(0, 360, 2.5)
    lat = np.linspace(-60, 60, 40)
    rng = np.random.default_rng(1)
    data = rng.standard_normal((1, lat.size, lon.size)).astype("f4")
    arr = xr.DataArray(data, dims=("time", "lat", "lon"), coords={"lat": lat, "lon": lon}, name="t")
    arr.lon.attrs.update(units="degrees_east", standard_name="longitude")
    arr.lat.attrs.update(units="degrees_north", standard_name="latitude")
    net = conv_net(layers=3)
    out = arr.chunk({"lon": 48}).dl.predict(net, tile=64, halo=4).values
    wrapped = np.concatenate([data[..., -8:], data, data[..., :8]], axis=-1)  # the globe, continued
    ref = direct(net, wrapped)[..., 8:-8]
    np.testing.assert_allclose(out[:, 3:-3, :], ref[:, 3:-3, :], atol=2e-6)  # seam columns included
    not_periodic = arr.dl.predict(net, tile=64, halo=4, periodic=False).values
    assert not np.allclose(not_periodic[:, 3:-3, 0], ref[:, 3:-3, 0], atol=1e-3)


def test_descending_y_is_just_another_axis():
    net = conv_net()
    arr = field((1, 60, 80))
    flipped = arr.isel(y=slice(None, None, -1))
    out = flipped.chunk({"y": 25}).dl.predict(net, tile=32, halo=4)
    assert (np.diff(out.y.values) < 0).all()
    ref = direct(net, flipped.values)
    np.testing.assert_allclose(out.values[:, 3:-3, 3:-3], ref[:, 3:-3, 3:-3], atol=2e-6)


class NoNaNNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x):
        assert torch.isfinite(x).all(), "NaN reached the model"
        return self.conv(x)


def test_nan_never_reaches_the_model_and_comes_back_nan():
    arr = field((2, 64, 64))
    arr[0, 10:20, 5:9] = np.nan
    arr[1] = np.nan  # a sample with no valid value at all
    out = arr.chunk({"y": 32}).dl.predict(NoNaNNet().eval(), tile=32, halo=2).values
    # nan_policy="propagate" (default): NaN wherever a gap pixel is within the halo (2) of the output.
    expected = np.zeros((64, 64), bool)
    expected[8:22, 3:11] = True
    np.testing.assert_array_equal(np.isnan(out[0]), expected)
    assert np.isnan(out[1]).all()


def test_result_is_lazy_until_computed():
    calls = []

    class Counting(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 1, 1)

        def forward(self, x):
            calls.append(x.shape[0])
            return self.conv(x)

    net = Counting()
    arr = field((2, 40, 40)).chunk({"time": 1})
    calls.clear()  # probes at build time are allowed; the data must not run yet
    out = arr.dl.predict(net, halo=0, mode="spatial")
    probe_calls = len(calls)
    assert isinstance(out.data, da.Array)
    assert len(calls) == probe_calls
    out.compute()
    assert len(calls) > probe_calls


def test_model_is_one_graph_key_not_in_every_task():
    arr = field((4, 64, 64)).chunk({"time": 1, "y": 32, "x": 32})
    out = arr.dl.predict(conv_net(), tile=32, halo=4)
    graph = dict(out.data.__dask_graph__())
    model_keys = [k for k in graph if str(k).startswith("xdl-model-")]
    assert len(model_keys) == 1


def test_pointwise_mlp_over_dataset_variables():
    rng = np.random.default_rng(2)
    shape = (2, 30, 40)
    ds = xr.Dataset({n: (("time", "lat", "lon"), rng.standard_normal(shape).astype("f4")) for n in ("T", "P", "Q")},
                    coords={"lat": np.linspace(-10, 10, 30), "lon": np.linspace(0, 20, 40)})
    ds["Q"][0, 0, 0] = np.nan
    mlp = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1), torch.nn.Sigmoid()).eval()
    out = ds.chunk({"lat": 7}).dl.predict(mlp, inputs=["T", "P", "Q"], outputs=["p_rain"])
    stacked = np.stack([ds[n].values for n in ("T", "P", "Q")], axis=-1)
    with torch.no_grad():
        ref = mlp(torch.from_numpy(stacked.reshape(-1, 3))).numpy().reshape(shape)
    got = out["p_rain"].values
    assert np.isnan(got[0, 0, 0])
    mask = np.isfinite(ref)
    mask[0, 0, 0] = False
    np.testing.assert_allclose(got[mask], ref[mask], atol=1e-6)
    assert "history" in out.attrs and "predict" in out.attrs["history"]


def test_volume_model_over_time_y_x():
    net = torch.nn.Sequential(torch.nn.Conv3d(1, 2, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv3d(2, 1, 3, padding=1)).eval()
    rng = np.random.default_rng(3)
    data = rng.standard_normal((12, 40, 48)).astype("f4")
    arr = xr.DataArray(data, dims=("time", "y", "x"), name="v")
    out = arr.chunk({"time": 5, "y": 20}).dl.predict(net, tile=24, halo=2)
    with torch.no_grad():
        ref = net(torch.from_numpy(data[None, None]))[0, 0].numpy()
    np.testing.assert_allclose(out.values[2:-2, 2:-2, 2:-2], ref[2:-2, 2:-2, 2:-2], atol=2e-6)


def test_curvilinear_grid_with_2d_lat_lon():
    ny, nx = 30, 40
    lat = np.linspace(-30, 30, ny)[:, None] + np.zeros(nx)
    lon = np.linspace(0, 60, nx)[None, :] + 0.1 * np.arange(ny)[:, None]
    data = np.random.default_rng(4).standard_normal((ny, nx)).astype("f4")
    arr = xr.DataArray(data, dims=("nj", "ni"), coords={"lat": (("nj", "ni"), lat), "lon": (("nj", "ni"), lon)}, name="tos")
    net = conv_net()
    out = arr.dl.predict(net, halo=4)
    assert out.dims == ("nj", "ni")
    np.testing.assert_array_equal(out.lat.values, lat)
    np.testing.assert_allclose(out.values[3:-3, 3:-3], direct(net, data[None])[0][3:-3, 3:-3], atol=2e-6)


def test_multichannel_dataarray_and_output_names():
    net = conv_net(in_ch=2, out_ch=3)
    rng = np.random.default_rng(5)
    arr = xr.DataArray(rng.standard_normal((2, 32, 32)).astype("f4"), dims=("band", "y", "x"),
                       coords={"band": ["a", "b"]}, name="img")
    out = arr.dl.predict(net, outputs=["p", "q", "r"], halo=4)
    assert out.dims == ("channel", "y", "x")
    assert list(out.channel.values) == ["p", "q", "r"]
    with torch.no_grad():
        ref = net(torch.from_numpy(arr.values[None]))[0].numpy()
    np.testing.assert_allclose(out.values[:, 3:-3, 3:-3], ref[:, 3:-3, 3:-3], atol=2e-6)


def test_out_of_memory_halves_the_batch_and_continues():
    from xdl.engine.runner import clear_cache

    sizes = []

    class Fussy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 1, 1)

        def forward(self, x):
            sizes.append(x.shape[0])
            if x.shape[0] > 2:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
            return self.conv(x)

    clear_cache()
    arr = field((8, 32, 32))
    out = arr.dl.predict(Fussy(), halo=0, batch_size=8, mode="spatial")
    assert np.isfinite(out.values).all()
    after = sizes[sizes.index(8) + 1:]
    assert after[:2] == [4, 2] and max(after[2:]) <= 2  # halved twice, then stays at what fits


def test_errors_name_the_problem():
    ds = xr.Dataset({"a": (("y", "x"), np.zeros((8, 8), "f4"))})
    with pytest.raises(InputError, match="missing_var"):
        ds.dl.predict(conv_net(in_ch=2), inputs=["a", "missing_var"])
    with pytest.raises(InputError, match="2 channels"):
        ds.dl.predict(conv_net(in_ch=2))
    odd = xr.DataArray(np.zeros((8, 8), "f4"), dims=("p", "q"))
    with pytest.raises(InputError, match="dims="):
        odd.dl.predict(conv_net())
    dup = xr.DataArray(np.zeros((4, 4), "f4"), dims=("y", "x"), coords={"y": [0, 1, 1, 2]})
    with pytest.raises(InputError, match="duplicated"):
        dup.dl.predict(conv_net(), halo=0)
    with pytest.raises(InputError, match="torch.nn.Module"):
        odd.dl.predict(42)


def test_zarr_round_trip_and_append_into_source_store(tmp_path):
    arr = field((2, 48, 64))
    ds = arr.to_dataset()
    src = tmp_path / "src.zarr"
    ds.chunk({"time": 1, "y": 24, "x": 32}).to_zarr(src)
    opened = xr.open_zarr(src)
    out = opened.dl.predict(conv_net(), halo=4)
    assert isinstance(out["v"].data, da.Array)
    out = out.rename({"v": "v_pred"})
    out[["v_pred"]].to_zarr(src, mode="a")
    back = xr.open_zarr(src)
    np.testing.assert_array_equal(back["v"].values, arr.values)  # source untouched
    np.testing.assert_array_equal(back["v_pred"].values, out["v_pred"].values)


def _roundtrip_check(path, var, tmp_path):
    ds = xr.open_dataset(path, chunks={})
    gm = ds[var].attrs.get("grid_mapping") or ds[var].encoding.get("grid_mapping")
    out = ds.dl.predict(conv_net(), inputs=[var], outputs=[var + "_pred"], halo=4, nan_policy="fill")
    store = tmp_path / "out.zarr"
    out.to_zarr(store)
    back = xr.open_zarr(store)
    pred = back[var + "_pred"]
    for dim in ds[var].dims:
        if dim in ds.coords:
            np.testing.assert_array_equal(back[dim].values, ds[dim].values)
            assert back[dim].attrs == ds[dim].attrs
    for name, coord in ds[var].coords.items():
        if coord.ndim == 2:
            np.testing.assert_array_equal(back[name].values, coord.values)
    assert (pred.attrs.get("grid_mapping") or pred.encoding.get("grid_mapping")) == gm
    assert gm in back.variables
    for key, value in ds[gm].attrs.items():
        np.testing.assert_array_equal(back[gm].attrs[key], value)
    assert "xdl" in back.attrs["history"]
    valid = np.isfinite(ds[var].values)
    assert np.isfinite(pred.values[valid[:, :] if valid.ndim == pred.ndim else valid]).mean() > 0.99


def test_goes_coordinates_attrs_and_grid_mapping_survive_zarr(tmp_path):
    path = shared_file("goes/OR_ABI-L1b-RadM1-M6C13_G17_*.nc")
    _roundtrip_check(path, "Rad", tmp_path)


def test_projected_grid_mapping_survives_zarr(tmp_path):
    path = shared_file("projected/msg_toa_bt_10p8_stereographic.nc")
    _roundtrip_check(path, "data", tmp_path)


@pytest.mark.slow
def test_same_numbers_through_a_distributed_cluster():
    distributed = pytest.importorskip("distributed")
    net = conv_net()
    arr = field((4, 64, 96)).chunk({"time": 1, "y": 32})
    threaded = arr.dl.predict(net, tile=48, halo=4).compute(scheduler="threads")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        out = arr.dl.predict(net, tile=48, halo=4).compute()
        loads = client.run(lambda: __import__("xdl.engine.runner", fromlist=["ModelPayload"]).ModelPayload.loads)
    np.testing.assert_array_equal(out.values, threaded.values)
    assert all(count <= 1 for count in loads.values()), loads


def test_values_the_cf_attributes_call_missing_never_reach_the_model():
    # A file opened with mask_and_scale=False keeps _FillValue among the attributes: GOES Rad's
    # 1023 (space) reached the model as a radiance and came back as finite outputs.
    import torch

    raw = np.full((1, 16, 20), 300, "i2")
    raw[0, 4:6, 5:9] = 1023
    arr = xr.DataArray(raw, dims=("time", "y", "x"), name="Rad", attrs={"_FillValue": 1023, "valid_range": np.array([0, 1022], "i2")})
    seen = []

    class Spy(torch.nn.Module):
        in_channels = out_channels = 1

        def forward(self, x):
            seen.append(float(x.max()))
            return x * 2

    out = arr.dl.predict(Spy(), halo=0).values
    assert max(seen) <= 300 and np.isnan(out[0, 4:6, 5:9]).all()
    assert (out[np.isfinite(out)] == 600).all() and np.isfinite(out).sum() == raw.size - 8


def test_pointwise_results_do_not_depend_on_the_chunking():
    """A block's last model call holds the points left over, a count that follows the chunking;
    an MLP on a few rows rounds differently, so chunkings gave results 1.5e-8 apart (probe)."""
    rng = np.random.default_rng(0)
    ds = xr.Dataset({k: (("time", "lat", "lon"), rng.random((3, 40, 50)).astype("f4")) for k in "TPQ"})
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(3, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64), torch.nn.ReLU(),
                              torch.nn.Linear(64, 1))
    ref = ds.dl.predict(mlp, inputs=["T", "P", "Q"], outputs=["rain"]).rain.values
    for chunks in ({"time": 1}, {"time": 1, "lat": 7, "lon": 13}, {"lat": 3, "lon": 1}, {"lat": 20}):
        got = ds.chunk(chunks).dl.predict(mlp, inputs=["T", "P", "Q"], outputs=["rain"]).rain.values
        assert got.tobytes() == ref.tobytes(), chunks
    # The last rows of any call, not only of short calls, round otherwise (a 61 x 70 field; probe).
    field = ds.isel(time=0, lat=slice(0, 40), lon=slice(0, 50))
    field = xr.concat([field, field.isel(lat=slice(0, 21))], dim="lat").pad(lon=(0, 20), mode="reflect")
    ref = field.dl.predict(mlp, inputs=["T", "P", "Q"], outputs=["rain"]).rain.values
    for chunks in ({"lat": 30}, {"lat": 7}, {"lon": 33}):
        got = field.chunk(chunks).dl.predict(mlp, inputs=["T", "P", "Q"], outputs=["rain"]).rain.values
        assert got.tobytes() == ref.tobytes(), chunks


def test_predict_keeps_the_dim_order_and_takes_one_name_as_a_string():
    """predict put the spatial dims last (inpaint keeps the input's order), and inputs="tcw"
    was read as ['t', 'c', 'w'] (probe)."""
    arr = xr.DataArray(np.random.default_rng(1).random((32, 48, 3)).astype("f4"), dims=("lat", "lon", "time"),
                       name="t").chunk({"time": 1, "lat": 16})
    net = torch.nn.Conv2d(1, 1, 3, padding=1)
    out = arr.dl.predict(net)
    assert out.dims == arr.dims and out.chunks == arr.chunks
    ds = arr.to_dataset()
    got = ds.dl.predict(net, inputs="t", outputs="u")
    assert list(got.data_vars) == ["u"] and got.u.dims == arr.dims
    np.testing.assert_array_equal(got.u.values, out.values)


def test_an_input_dim_named_channel_beside_new_channels_is_an_input_error():
    arr = xr.DataArray(np.ones((3, 16, 16), "f4"), dims=("channel", "y", "x"), name="t")
    with pytest.raises(InputError, match="has a dim 'channel' that is not the model's input channels.*rename"):
        arr.dl.predict(torch.nn.Conv2d(1, 2, 1))


def test_a_modules_own_mode_attribute_is_not_xdls_engine_mode():
    """Found by a probe: a net with ``self.mode = "bilinear"`` (torch's nn.Upsample has one too)
    was refused as "mode='bilinear': use one of ('spatial', 'pointwise', 'volume')"."""
    import xdl

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.mode = "bilinear"
            self.conv = torch.nn.Conv2d(1, 1, 3, padding=1)

        def forward(self, x):
            return self.conv(x)

    ds = xr.Dataset({"t": (("y", "x"), np.random.default_rng(0).random((20, 24)).astype("f4"))})
    out = ds.dl.predict(Net(), inputs=["t"])
    assert out.t.shape == (20, 24) and xdl.Model(Net()).card["mode"] is None


def test_a_forward_that_always_raises_or_returns_bools_is_named_clearly():
    """Found by a probe: a forward that raised showed up as "does not return outputs of its input's
    spatial size ... (last error: ...)", and one returning a bool tensor as torch's raw
    NotImplementedError ("abs_cpu" not implemented for 'Bool')."""
    from xdl.errors import ModelError

    class Raises(torch.nn.Module):
        in_channels, out_channels = 1, 1

        def forward(self, x):
            raise RuntimeError("kernel missing for my custom op")

    class Bools(Raises):
        def forward(self, x):
            return x > 0.5

    ds = xr.Dataset({"t": (("y", "x"), np.random.default_rng(0).random((24, 24)).astype("f4"))})
    with pytest.raises(ModelError, match="'Raises' raised RuntimeError whenever xdl called it .* kernel missing"):
        ds.dl.predict(Raises(), inputs=["t"])
    with pytest.raises(ModelError, match="'Bools' returned a torch.bool tensor"):
        ds.dl.predict(Bools(), inputs=["t"])


def test_nan_out_of_a_finite_block_is_warned_in_predict():
    """Found by fuzzing: a model file whose weights (3e38) overflow passed every check and predict
    returned all NaN without a word; inpaint flags such pixels (4) and warns, predict now warns too.
    Input NaN that propagates is no failure: no warning then."""
    import warnings
    from xdl.errors import XdlWarning

    class Overflows(torch.nn.Module):
        in_channels, out_channels = 1, 1

        def forward(self, x):
            return x * 3e38

    ds = xr.Dataset({"t": (("y", "x"), np.full((16, 16), 2.0, "f4"))})
    for data in (ds, ds.chunk({"y": 8})):
        with pytest.warns(XdlWarning, match="returned NaN or inf for a block whose input is all finite"):
            assert np.isnan(data.dl.predict(Overflows(), inputs=["t"]).t.values).all()
    gappy = ds.copy(deep=True)
    gappy.t[3, 3] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error", XdlWarning)
        gappy.dl.predict(conv_net(), inputs=["t"]).compute()


def test_a_dataarray_channel_dim_without_labels_keeps_its_order():
    """Found by a review: the card-order check read no names off a channel dim without a
    coordinate and ran no channel at all (IndexError); a label given twice is no error for a
    module whose card names none."""
    torch.manual_seed(0)
    net = torch.nn.Conv2d(2, 1, 3, padding=1)
    arr = xr.DataArray(np.random.default_rng(0).random((2, 16, 16)).astype("f4"), dims=("band", "y", "x"))
    out = arr.dl.predict(net, channel_dim="band")
    with torch.no_grad():
        expected = net(torch.from_numpy(arr.values[None]))[0, 0].numpy()
    # the interior: xdl mirrors the borders where the bare call pads with zeros
    np.testing.assert_allclose(out.values[1:-1, 1:-1], expected[1:-1, 1:-1], rtol=1e-5, atol=1e-6)
    labelled = arr.assign_coords(band=["c", "c"]).dl.predict(net, channel_dim="band")
    np.testing.assert_array_equal(labelled.values, out.values)
