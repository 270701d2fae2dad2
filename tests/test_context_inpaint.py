"""inpaint(context=..., time_window=k): context variables and neighbouring time steps as model inputs
(issue #15). A tiny stand-in context model following the contract (xdl.models.context) makes the
checks exact: it fills each gap with one chosen input channel's value."""

import json

import dask.array as da
import numpy as np
import pytest
import torch
import xarray as xr

import xdl
from xdl.cli import main
from xdl.context import ContextRequest, context_model
from xdl.engine.spec import engine_spec
from xdl.errors import InputError
from xdl.inpaint import FLAG_FILLED, FLAG_MODEL_FAILED, FLAG_UNFILLABLE
from xdl.io.zarr import JOB_NAME


class Pick(torch.nn.Module):
    """A context model (module(x, mask, info)) filling target gaps with the context channel whose
    info row is ``want`` (NaN where that channel is missing too); with ``sigma``, a constant sigma."""
    takes_context, takes_mask, fills_gaps = True, True, True
    in_channels, halo, size_multiple = 1, 0, 1

    def __init__(self, want=(1.0, 1.0), sigma=None):
        super().__init__()
        self.want, self.sigma_value = want, sigma
        self.sigma = sigma is not None
        self.out_channels = 2 if self.sigma else 1

    def forward(self, x, mask, info=None):
        target = x[:, :1]
        out = target
        hits = [] if info is None else [i for i in range(info.shape[0]) if tuple(info[i].tolist()) == tuple(self.want)]
        if hits:
            k = hits[0]
            source = torch.where(mask[:, 1 + k:2 + k] > 0, x[:, 1 + k:2 + k], torch.full_like(target, float("nan")))
            out = torch.where(mask[:, :1] > 0, target, source)
        if self.sigma:
            out = torch.cat([out, torch.full_like(out, self.sigma_value)], 1)
        return out


def picker(want=(1.0, 1.0), card=None, sigma=None):
    return xdl.Model(Pick(want, sigma), card={"normalization": {"kind": "none"}, **(card or {})})


T, H, W = 5, 40, 48


def scene(seed=0):
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((T, H, W)).astype("f4")
    ds = xr.Dataset({"sst": (("time", "y", "x"), v.copy()),
                     "wind": (("time", "y", "x"), (3 * v + 1).astype("f4")),
                     "oro": (("y", "x"), rng.standard_normal((H, W)).astype("f4"))},
                    coords={"time": np.arange(T), "y": np.arange(H), "x": np.arange(W)})
    for t in range(T):  # a different gap at each step: the neighbours hold data there
        ds.sst.values[t, 5 + 6 * t:9 + 6 * t, 4:30] = np.nan
    ds.wind.values[0, 30:, :] = np.nan  # the context has gaps of its own
    return ds, v


def test_time_window_fill_is_the_value_at_the_next_and_previous_step():
    ds, v = scene()
    gap = np.isnan(ds.sst.values)
    for want, offset in (((1.0, 1.0), 1), ((-1.0, 1.0), -1), ((2.0, 1.0), 2)):
        out = ds.dl.inpaint(picker(want), variables=["sst"], time_window=abs(offset), domain=None, clip=None)
        for t in range(T):
            source = t + offset
            if 0 <= source < T:
                np.testing.assert_array_equal(out.sst.values[t][gap[t]], v[source][gap[t]])
                assert (out.sst_inpainted.values[t][gap[t]] == FLAG_FILLED).all()
            else:  # beyond the ends: missing; the other neighbours are inputs, which this model ignores
                assert np.isnan(out.sst.values[t][gap[t]]).all()
                assert (out.sst_inpainted.values[t][gap[t]] == FLAG_MODEL_FAILED).all()
        np.testing.assert_array_equal(out.sst.values[~gap], v[~gap])


def test_time_window_as_long_as_the_series_leaves_every_neighbour_missing():
    # A one-step series with time_window=1 (and two steps with 2) raised a ZeroDivisionError from
    # dask's pad (probe): the neighbours are all beyond the ends, so missing.
    ds, v = scene()
    for steps, window in ((1, 1), (2, 2), (2, 3)):
        part = ds.isel(time=slice(0, steps))
        gap = np.isnan(part.sst.values)
        for data in (part, part.chunk({"time": 1})):
            out = data.dl.inpaint(variables=["sst"], time_window=window, uncertainty=True)
            np.testing.assert_array_equal(out.sst.values[~gap], v[:steps][~gap])
            assert np.isfinite(out.sst.values[gap]).any() and (out.sst_sigma.values[gap] > 0).any()
        # A model that reads the next step: beyond the end for the last step, so nothing filled there.
        out = part.dl.inpaint(picker((1.0, 1.0)), variables=["sst"], time_window=window, domain=None, clip=None)
        assert np.isnan(out.sst.values[-1][gap[-1]]).all()
        if steps > 1:
            np.testing.assert_array_equal(out.sst.values[0][gap[0]], v[1][gap[0]])


def test_context_fields_are_inputs_only():
    ds, v = scene()
    gap = np.isnan(ds.sst.values)
    out = ds.dl.inpaint(picker((0.0, 0.0)), variables=["sst"], context=["wind"], domain=None, clip=None)
    wind = 3 * v + 1
    usable = gap & np.isfinite(ds.wind.values)
    np.testing.assert_array_equal(out.sst.values[usable], wind[usable])
    assert np.isnan(out.sst.values[gap & ~usable]).all()  # the context's own gap: nothing to take
    assert out.wind.identical(ds.wind) and out.oro.identical(ds.oro)
    assert sorted(out.data_vars) == ["oro", "sst", "sst_inpainted", "wind"]
    assert out.sst.attrs["ancillary_variables"] == "sst_inpainted"
    # variables=None fills every float field except the context
    default = ds[["sst", "wind"]].dl.inpaint(picker((0.0, 0.0)), context=["wind"], domain=None, clip=None)
    assert "wind_inpainted" not in default and default.wind.identical(ds.wind)


def test_a_step_without_any_valid_target_value_stays_unfilled():
    ds, _ = scene()
    ds.sst.values[2] = np.nan  # the context could let the model run, but no bounds (nor scale) for the fill
    out = ds.dl.inpaint(picker((0.0, 0.0), sigma=0.5), variables=["sst"], context=["wind"], domain=None,
                        uncertainty=True)
    assert (out.sst_inpainted.values[2] == FLAG_UNFILLABLE).all()
    assert np.isnan(out.sst.values[2]).all() and np.isnan(out.sst_sigma.values[2]).all()
    assert (out.sst_inpainted.values[1][np.isnan(ds.sst.values[1]) & np.isfinite(ds.wind.values[1])] == FLAG_FILLED).all()


def test_static_context_is_broadcast_over_time():
    ds, _ = scene()
    gap = np.isnan(ds.sst.values)
    out = ds.dl.inpaint(picker((0.0, 0.0)), variables=["sst"], context=["oro"], domain=None, clip=None)
    for t in range(T):
        np.testing.assert_array_equal(out.sst.values[t][gap[t]], ds.oro.values[gap[t]])


def test_context_valid_mask_and_dims_order():
    ds, v = scene()
    gap = np.isnan(ds.sst.values)
    codes = np.round(ds.oro.values * 100).astype("i2")
    codes[:, 10] = -999  # the context's own _FillValue: missing, whatever its number
    ds["codes"] = xr.DataArray(codes.T, dims=("x", "y"), attrs={"_FillValue": np.int16(-999)})  # other dim order
    out = ds.dl.inpaint(picker((0.0, 0.0)), variables=["sst"], context=["codes"], domain=None, clip=None)
    missing = np.broadcast_to(codes == -999, gap.shape)
    np.testing.assert_array_equal(out.sst.values[gap & ~missing], np.broadcast_to(codes, gap.shape)[gap & ~missing])
    assert np.isnan(out.sst.values[gap & missing]).all()
    assert out.codes.identical(ds.codes)


def context_unet(sigma=False, seed=0):
    torch.manual_seed(seed)
    return xdl.zoo.create("fill-unet", in_channels=1, depth=2, base_channels=8, context_features=4, sigma=sigma,
                          card={"normalization": {"kind": "per_sample"}})


@pytest.mark.parametrize("chunks", [{"time": 1}, {"time": 2, "y": 16, "x": 20}, {"time": -1, "x": 24}])
def test_chunk_invariant_lazy_and_valid_bit_identical(chunks):
    ds, v = scene()
    ds["wind"] = ds.wind.astype("f8")  # another dtype: made float32 for the model, never changed
    model = context_unet(sigma=True)
    kwargs = dict(variables=["sst"], context=["wind", "oro"], time_window=1, domain=None, uncertainty=True)
    whole = ds.dl.inpaint(model, **kwargs)
    lazy = ds.chunk(chunks).dl.inpaint(model, **kwargs)
    assert all(isinstance(lazy[k].data, da.Array) for k in ("sst", "sst_sigma", "sst_inpainted"))
    assert lazy.sst.chunks == ds.chunk(chunks).sst.chunks
    got = lazy.compute()
    for name in whole.data_vars:
        np.testing.assert_array_equal(got[name].values, whole[name].values, err_msg=name)
    valid = np.isfinite(v) & np.isfinite(ds.sst.values)
    assert np.array_equal(whole.sst.values[valid].view("u4"), v[valid].view("u4"))
    assert np.isfinite(whole.sst.values).all()
    assert got.wind.identical(ds.chunk(chunks).wind.compute())


def test_resident_copy_key_includes_the_context():
    ds, _ = scene()
    model = context_unet()
    spec = engine_spec(model)
    keys = set()
    for names, k in ((["wind"], 0), (["oro"], 0), ([], 1), (["wind"], 1)):
        info = ContextRequest(ds, names, k).info(1)
        wrapped, key = context_model(model, spec, info, "base")
        assert wrapped.in_channels == 1 + len(info) and wrapped.card["target_channels"] == 1
        keys.add(key)
    assert len(keys) == 3  # wind and oro are both [0, 0] rows: the same model input layout


def test_card_rules():
    ds, _ = scene()
    fitted = picker((0.0, 0.0), card={"name": "fitted", "context": {"variables": ["wind"], "time_window": 1}})
    ds.dl.inpaint(fitted, variables=["sst"], context=["wind"], time_window=1, domain=None)
    with pytest.raises(InputError, match=r"trained with context=\['wind'\], time_window=1; got context=\['oro'\]"):
        ds.dl.inpaint(fitted, variables=["sst"], context=["oro"], time_window=1)
    with pytest.raises(InputError, match="time_window=0"):
        ds.dl.inpaint(fitted, variables=["sst"], context=["wind"])
    with pytest.raises(InputError, match=r"trained with context=\['wind'\], time_window=1; got none"):
        ds.dl.inpaint(fitted, variables=["sst"])  # no context at all is another context too
    bounded = picker((1.0, 1.0), card={"context": {"accepts": "any", "max_fields": 3, "max_time_window": 2}})
    with pytest.raises(InputError, match="at most 2 steps"):
        ds.dl.inpaint(bounded, variables=["sst"], time_window=3)
    with pytest.raises(InputError, match="makes 4 context fields.*at most 3"):
        ds.dl.inpaint(bounded, variables=["sst"], context=["wind", "oro"], time_window=1)
    plain = xdl.zoo.create("pconv-unet", in_channels=1, depth=2, base_channels=8, card={"name": "plain-pconv"})
    with pytest.raises(InputError, match="'plain-pconv' takes no context"):
        ds.dl.inpaint(plain, variables=["sst"], context=["wind"])
    with pytest.raises(InputError, match="'plain-pconv' takes no context"):
        ds.dl.inpaint(plain, variables=["sst"], time_window=1)


def test_bad_requests():
    ds, _ = scene()
    model = picker()
    with pytest.raises(InputError, match="Dataset"):
        ds.sst.dl.inpaint(model, context=["wind"])
    with pytest.raises(InputError, match="'elsewhere'.*not on the grid"):
        ds.assign(elsewhere=(("time", "a", "b"), np.zeros((T, H, W), "f4"))).dl.inpaint(
            model, variables=["sst"], context=["elsewhere"])
    with pytest.raises(InputError, match="'levels'.*not on the grid"):
        ds.assign(levels=(("level", "y", "x"), np.zeros((3, H, W), "f4"))).dl.inpaint(
            model, variables=["sst"], context=["levels"])
    with pytest.raises(InputError, match=r"\['nope'\] not in the dataset"):
        ds.dl.inpaint(model, variables=["sst"], context=["nope"])
    with pytest.raises(InputError, match="both filled"):
        ds.dl.inpaint(model, variables=["sst", "wind"], context=["wind"])
    for k in (-1, True, 1.5):
        with pytest.raises(InputError, match="time_window="):
            ds.dl.inpaint(model, variables=["sst"], time_window=k)
    with pytest.raises(InputError, match="time_window needs a time dim.*'oro'"):
        ds.dl.inpaint(model, variables=["oro"], time_window=1)
    # A DataArray may use its own neighbouring times (no Dataset needed).
    out = ds.sst.dl.inpaint(model, time_window=1, domain=None, clip=None)
    gap = np.isnan(ds.sst.values)
    np.testing.assert_array_equal(out.values[0][gap[0]], ds.sst.values[1][gap[0]])


def test_cli_context_flags(tmp_path, capsys):
    ds, _ = scene()
    ds.sst.attrs.update(units="K", standard_name="sea_surface_temperature")
    path = tmp_path / "in.nc"
    ds.to_netcdf(path)
    model_path = tmp_path / "ctx.xdl.safetensors"
    context_unet(sigma=True).save(model_path)
    base = ["inpaint", str(path), str(tmp_path / "out.zarr"), "--var", "sst", "--model", str(model_path),
            "--domain", "none"]
    assert main(base + ["--context", "wind,oro", "--time-window", "1", "--uncertainty"]) == 0
    got = xr.open_zarr(tmp_path / "out.zarr")
    with xr.open_dataset(path) as source:
        expected = source.load().dl.inpaint(xdl.load_model(model_path), variables=["sst"], context=["wind", "oro"],
                                            time_window=1, uncertainty=True, domain=None)
    for name in ("sst", "sst_sigma", "sst_inpainted", "wind", "oro"):
        np.testing.assert_array_equal(got[name].values, expected[name].values, err_msg=name)
    assert "wind_inpainted" not in got
    job = json.loads((tmp_path / "out.zarr" / JOB_NAME).read_text())  # what --resume compares
    assert job["--context"] == ["wind", "oro"] and job["--time-window"] == 1 and job["--uncertainty"] is True
    # --resume with another context is another job: refused, nothing rewritten
    capsys.readouterr()
    assert main(base + ["--context", "wind", "--time-window", "1", "--uncertainty", "--resume"]) == 1
    err = capsys.readouterr().err
    assert "error" in err and "--context" in err, err
    # evaluate and train take the same flags (evaluate adds the regression baselines on the context)
    assert main(["evaluate", str(path), "--var", "sst", "--model", str(model_path), "--context", "wind",
                 "--time-window", "1", "--domain", "none", "--gaps", "blocks"]) == 0
    report = capsys.readouterr().out
    assert "context: wind" in report and "local_regression" in report
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "--time-window K" in capsys.readouterr().out
    # A model without context: a clear error, exit 1
    plain = tmp_path / "plain.xdl.safetensors"
    xdl.zoo.create("pconv-unet", in_channels=1, depth=2, base_channels=8).save(plain)
    assert main(["inpaint", str(path), str(tmp_path / "o2.zarr"), "--var", "sst", "--model", str(plain),
                 "--context", "wind"]) == 1
    assert "takes no context" in capsys.readouterr().err


def test_cli_empty_context_is_no_context(tmp_path):
    """``--context ""`` (an empty shell variable) runs as if the flag were left out: the plain
    default model, not the context one with no context."""
    ds, _ = scene()
    path = tmp_path / "in.nc"
    ds.to_netcdf(path)
    base = ["inpaint", str(path), "--var", "sst", "--domain", "none"]
    assert main(base[:2] + [str(tmp_path / "a.nc")] + base[2:]) == 0
    assert main(base[:2] + [str(tmp_path / "b.nc")] + base[2:] + ["--context", ""]) == 0
    with xr.open_dataset(tmp_path / "a.nc") as a, xr.open_dataset(tmp_path / "b.nc") as b:
        np.testing.assert_array_equal(a.sst.values, b.sst.values)


def test_integer_and_boolean_context_fields_are_data_everywhere():
    """A land-sea mask as int8 or bool (no CF attributes) is a context field whose every value is
    data: it was refused with advice (mask=) that applies to the target only."""
    ds, _ = scene()
    land = ds.oro.values > 0
    gap = np.isnan(ds.sst.values)
    for lsm in (land.astype("i1"), land):
        got = ds.assign(lsm=(("y", "x"), lsm)).dl.inpaint(picker((0.0, 0.0)), variables=["sst"], context=["lsm"],
                                                           domain=None, clip=None)
        expected = np.broadcast_to(land.astype("f4"), gap.shape)
        np.testing.assert_array_equal(got.sst.values[gap], expected[gap])
        assert got.lsm.dtype == lsm.dtype and "lsm_inpainted" not in got
        # evaluate's context baselines read it alike (they refused it with inpaint's advice: probe)
        report = ds.assign(lsm=(("y", "x"), lsm)).dl.evaluate(
            variables=["sst"], context=["lsm"], gaps="blocks", domain=None, baselines=("regression", "local_regression"))
        assert np.isfinite(report.rmse.values).all()


def test_a_context_field_without_any_value_is_told():
    ds, _ = scene()
    ds["wind"] = ds.wind.where(ds.wind > 1e9)  # e.g. assigned with other x/y labels: all NaN
    with pytest.warns(xdl.XdlWarning, match="context variable 'wind' has no valid value at all"):
        ds.dl.inpaint(picker((0.0, 0.0)), variables=["sst"], context=["wind"], domain=None)
    # Valid only where the target is not (two grids outer-joined by xr.merge): told too (probe).
    apart, _ = scene()
    apart["wind"] = apart.wind.where(apart.sst.isnull())
    with pytest.warns(xdl.XdlWarning, match="context variable 'wind' has no valid value where 'sst' has one: a model"):
        apart.dl.inpaint(picker((0.0, 0.0)), variables=["sst"], context=["wind"], domain=None)
    # Told per variable filled: a second variable with values beside it gets no such warning.
    apart["other"] = apart.sst.fillna(1.0)
    apart["other"][:, :4, :4] = np.nan
    with pytest.warns(xdl.XdlWarning) as record:
        apart.dl.inpaint(variables=["sst", "other"], context=["wind"], domain=None)
    told = [str(w.message) for w in record if "has no valid value where" in str(w.message)]
    assert len(told) == 1 and "where 'sst' has one" in told[0]


def test_time_window_steps_along_a_sequence_dim_but_not_along_levels():
    """The one other dim is the sequence (months with an integer coordinate) for inpaint and
    evaluate alike (evaluate refused it); a vertical dim is no sequence: the levels above and
    below are no neighbouring times."""
    ds, v = scene()
    months = ds.rename(time="month")
    gap = np.isnan(months.sst.values)
    out = months.dl.inpaint(picker((1.0, 1.0)), variables=["sst"], time_window=1, domain=None, clip=None)
    np.testing.assert_array_equal(out.sst.values[0][gap[0]], v[1][gap[0]])
    report = months.dl.evaluate(picker((1.0, 1.0)), variables=["sst"], time_window=1, gaps="blocks", domain=None,
                                baselines=["linear"])
    assert np.isfinite(report.rmse.values).all()
    for levels in (ds.rename(time="level"), ds.rename(time="k").assign_coords(k=("k", np.arange(T), {"positive": "down"}))):
        for call in (levels.dl.inpaint, levels.dl.evaluate):
            with pytest.raises(InputError, match="time_window needs a time dim.*vertical dim"):
                call(picker((1.0, 1.0)), variables=["sst"], time_window=1, domain=None)
    # Months beside levels (a monthly climatology by level): the months are the sequence (refused before; probe).
    stacked = xr.concat([months, months], dim=xr.DataArray([500, 850], dims="level", name="level"))
    out = stacked.transpose("month", "level", ...).dl.inpaint(picker((1.0, 1.0)), variables=["sst"], time_window=1,
                                                              domain=None, clip=None)
    np.testing.assert_array_equal(out.sst.isel(level=1).values[0][gap[0]], v[1][gap[0]])


def test_time_window_refuses_a_series_out_of_order():
    """time_window steps by index: a shuffled series, or two overlapping files concatenated, took
    other days for the neighbours without a word (probe: up to 18 kg m-2 apart). Refused, as a
    spatial coordinate out of order is. Fine: a descending series, missing times (NaT), two passes
    on one date, labels that repeat by design (months 1-12 over years: a review probe)."""
    ds, v = scene()
    days = ds.assign_coords(time=np.arange(T).astype("datetime64[D]").astype("datetime64[ns]"))
    shuffled = days.isel(time=[0, 2, 1, 3, 4])
    overlapping = days.assign_coords(time=days.time.values[[0, 1, 2, 1, 2]])
    for data in (shuffled, overlapping):
        for call in (data.dl.inpaint, data.dl.evaluate):
            with pytest.raises(InputError, match="coordinate 'time' of 'sst'.*not in order.*sortby"):
                call(picker((1.0, 1.0)), variables=["sst"], time_window=1, domain=None)
    ascending = days.dl.inpaint(picker((1.0, 1.0)), variables=["sst"], time_window=1, domain=None, clip=None)
    descending = days.isel(time=slice(None, None, -1)).dl.inpaint(picker((-1.0, 1.0)), variables=["sst"],
                                                                   time_window=1, domain=None, clip=None)
    np.testing.assert_array_equal(descending.sst.values[::-1], ascending.sst.values)
    times = days.time.values.copy()
    times[2] = np.datetime64("NaT")
    two_passes = days.time.values[[0, 0, 1, 1, 2]]
    months = days.rename(time="month").assign_coords(month=[11, 12, 1, 2, 3])
    for fine in (days.assign_coords(time=times), days.assign_coords(time=two_passes), months):
        fine.dl.inpaint(picker((1.0, 1.0)), variables=["sst"], time_window=1, domain=None)
    # Without time_window the order is nobody's business.
    shuffled.dl.inpaint(picker((1.0, 1.0)), variables=["sst"], domain=None)


def test_a_wrf_time_dim_is_time_and_its_levels_are_not():
    """WRF: dims (Time, bottom_top, south_north, west_east), the dates in a non-dimension XTIME.
    The 4-D field was refused for several other dims; one time of it stepped along the model
    levels as if they were times (probe)."""
    ds, v = scene()
    wrf = xr.concat([ds.sst, ds.sst + 1.0], dim="bottom_top").transpose("time", "bottom_top", ...)
    wrf = xr.Dataset({"T": wrf.rename(time="Time", y="south_north", x="west_east").drop_vars("Time")})
    wrf = wrf.assign_coords(XTIME=("Time", np.arange(T).astype("datetime64[h]").astype("datetime64[ns]")))
    gap = np.isnan(wrf["T"].values)
    out = wrf.dl.inpaint(picker((1.0, 1.0)), variables=["T"], time_window=1, domain=None, clip=None)
    np.testing.assert_array_equal(out["T"].values[0, 1][gap[0, 1]], v[1][gap[0, 1]] + 1.0)
    with pytest.raises(InputError, match="time_window needs a time dim.*vertical dim"):
        wrf.isel(Time=0).dl.inpaint(picker((1.0, 1.0)), variables=["T"], time_window=1, domain=None)
    # A dim with a datetime coordinate of its own is time before one with an auxiliary datetime
    # (a forecast's valid time along its lead; the lead was taken: a review probe).
    lead = xr.concat([ds.sst, ds.sst + 1.0], dim="lead").assign_coords(
        time=np.arange(T).astype("datetime64[D]").astype("datetime64[ns]"),
        valid=("lead", np.array(["2000-01-01", "2000-01-02"], "datetime64[ns]")))
    assert xdl.conventions.layout.sequence_dim(lead, ("y", "x")) == "time"


def test_steps_without_any_value_are_told_when_a_time_window_fills_them():
    """xr.merge's outer join with a series 12 h apart doubled the steps: every inserted step was
    filled whole from its neighbours, flagged as an ordinary fill, and nothing said so (probe)."""
    ds, v = scene()
    ds["sst"][2] = np.nan
    with pytest.warns(xdl.XdlWarning, match=r"'sst' has no valid value in 1 of its 5 field\(s\).*outer join"):
        out = ds.dl.inpaint(picker((1.0, 1.0)), variables=["sst"], time_window=1, domain=None, clip=None)
    seen = np.isfinite(ds.sst.values[3])
    np.testing.assert_array_equal(out.sst.values[2][seen], v[3][seen])


def test_an_empty_selection_is_an_input_error():
    """A selection that kept no time step crashed in dask (a ZeroDivisionError in memory, a
    zero-size reduction when lazy; probe)."""
    ds, _ = scene()
    empty = ds.isel(time=slice(0, 0))
    for data in (empty, empty.chunk()):
        for kw in ({}, {"time_window": 1}):
            with pytest.raises(InputError, match=r"'sst' is empty along \['time'\]"):
                data.dl.inpaint(variables=["sst"], **kw)


def test_an_in_memory_fill_leaves_the_other_variables_as_they_came():
    """An in-memory target is filled eagerly, but a lazy context field and an unrelated lazy
    variable came back loaded too (the whole Dataset was computed: probe)."""
    ds, _ = scene()
    ds["wind"] = ds.wind.chunk({"time": 1})
    ds["unrelated"] = ds.sst.chunk({"time": 1}) * 0 + 1
    for progress in (False, True):
        out = ds.dl.inpaint(picker((0.0, 0.0), sigma=0.5), variables=["sst"], context=["wind"], domain=None,
                            uncertainty=True, progress=progress)
        assert all(isinstance(out[n].data, np.ndarray) for n in ("sst", "sst_inpainted", "sst_sigma"))
        assert all(isinstance(out[n].data, da.Array) for n in ("wind", "unrelated"))
        assert out.wind.identical(ds.wind) and out.sst.encoding == ds.sst.encoding


def test_a_field_given_as_context_is_named_not_printed():
    ds, _ = scene()
    with pytest.raises(InputError, match=r"^context=\['oro', <DataArray 'wind'>\]: give a list of Dataset variable names"):
        ds.dl.inpaint(picker(), variables=["sst"], context=["oro", ds.wind], domain=None)


def test_a_cftime_time_coordinate_is_time_beside_levels():
    """A non-standard calendar (noleap, as NEMO and CMIP files decode) gives cftime dates: with a
    level dim beside a time dim of an unusual name (time_counter) the window was refused, asking
    for "a time coordinate (CF axis T or datetimes)" the data had (probe)."""
    cftime = pytest.importorskip("cftime")
    ds, v = scene()
    levels = xr.concat([ds.sst, ds.sst + 1.0], dim="level").assign_coords(level=[500, 850])
    four_d = xr.Dataset({"sst": levels.transpose("time", "level", ...)}).rename(time="time_counter")
    gap = np.isnan(four_d.sst.values)
    dates = [cftime.DatetimeNoLeap(2002, 7, k + 1) for k in range(four_d.sizes["time_counter"])]
    numpy_dates = np.array(["2002-07-%02d" % (k + 1) for k in range(len(dates))], "datetime64[ns]")
    outs = [four_d.assign_coords(time_counter=t).dl.inpaint(picker((1.0, 1.0)), variables=["sst"], time_window=1,
                                                           domain=None, clip=None) for t in (dates, numpy_dates)]
    np.testing.assert_array_equal(outs[0].sst.values, outs[1].sst.values)
    np.testing.assert_array_equal(outs[0].sst.values[0, 0][gap[0, 0]], v[1][gap[0, 0]])


def test_time_window_fills_are_bounded_by_the_neighbours_range_too():
    """A step seen only in a small patch: its fills may span its neighbours' valid range (the
    default clip clamped them to the patch's range), the same in any time chunking."""
    ds, v = scene()
    patch = np.zeros((H, W), bool)
    patch[:4, :4] = True
    ds["sst"][2] = ds.sst[2].where(patch)
    gap = ~patch & np.isfinite(ds.sst.values[3])  # where the next step holds a value to pick
    for data in (ds, ds.chunk({"time": 1}), ds.chunk({"time": 2, "y": 20})):
        out = data.dl.inpaint(picker((1.0, 1.0)), variables=["sst"], time_window=1, domain=None).compute()
        np.testing.assert_array_equal(out.sst.values[2][gap], v[3][gap])
    assert v[3][gap].max() > 1.1 * np.nanmax(ds.sst.values[2])  # beyond the patch's range: not clamped


def test_time_window_default_variables_leave_a_static_field_out():
    """inpaint(time_window=1) without variables= on a Dataset holding a static 2-D field failed,
    advising a time coordinate for it (probe). The static field is now left out, with a warning;
    named as context it still serves."""
    rng = np.random.default_rng(0)
    sst = rng.normal(size=(4, 12, 16)).astype("f4")
    sst[2, 4:6, 3:9] = np.nan
    ds = xr.Dataset({"sst": (("time", "y", "x"), sst), "orog": (("y", "x"), rng.random((12, 16)).astype("f4"))},
                    coords={"time": np.arange(4)})
    with pytest.warns(xdl.XdlWarning, match="orog: no time dim"):
        out = ds.dl.inpaint(time_window=1, domain=None)
    assert "orog_inpainted" not in out and np.isfinite(out.sst.values).all()
    np.testing.assert_array_equal(out.orog.values, ds.orog.values)
    with pytest.raises(xdl.InputError, match="time_window needs a time dim"):
        ds.dl.inpaint(time_window=1, variables=["orog"], domain=None)


def test_a_context_fields_own_earlier_fills_are_no_observations():
    """A context field filled earlier by xdl (its <name>_inpainted flags 1) gave its fills to the
    fit as observations (found in session 34, not changed then). They are now missing for it, as a
    target's own earlier fills are: the same fill as with those pixels NaN."""
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:48, 0:64]
    c = (np.sin(x / 6.0) + np.cos(y / 5.0) + 0.05 * rng.standard_normal((48, 64))).astype("f4")
    t = (2.0 * c + 1.0 + 0.05 * rng.standard_normal((48, 64))).astype("f4")
    t[20:26, 10:50] = np.nan
    filled_c = c.copy()
    filled_c[18:28, 30:40] = 50.0  # an earlier fill gone wrong
    flags = np.zeros((48, 64), "i1")
    flags[18:28, 30:40] = 1
    earlier = xr.Dataset({"t": (("y", "x"), t), "c": (("y", "x"), filled_c),
                          "c_inpainted": (("y", "x"), flags, {"flag_values": np.array([-1, 0, 1, 2, 3, 4], "i1"),
                                                              "flag_meanings": "not_written valid filled_by_model "
                                                              "unfillable outside_fill_domain model_failed",
                                                              "comment": "written by xdl"})})
    got = earlier.dl.inpaint(variables=["t"], context=["c"], domain=None, uncertainty=True)
    missing_c = xr.Dataset({"t": (("y", "x"), t), "c": (("y", "x"), np.where(flags == 1, np.nan, c).astype("f4"))})
    want = missing_c.dl.inpaint(variables=["t"], context=["c"], domain=None, uncertainty=True)
    np.testing.assert_array_equal(got.t.values, want.t.values)
    np.testing.assert_array_equal(got.t_sigma.values, want.t_sigma.values)


def test_time_window_without_a_time_dim_is_refused_before_any_work():
    """Found by a probe: the CLI ran domain="auto"'s pass over the field, and printed its warning,
    before refusing time_window on a field without time."""
    import warnings

    values = np.random.default_rng(0).random((40, 50))
    values[:, :12] = np.nan  # a wide edge region: the domain pass would warn about it
    ds = xr.Dataset({"v": (("y", "x"), values)})
    for call in (lambda: ds.dl.inpaint(time_window=1), lambda: ds.v.dl.inpaint(time_window=1)):
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            with pytest.raises(InputError, match="time_window needs a time dim"):
                call()
        assert not [w for w in seen if "domain" in str(w.message)]
