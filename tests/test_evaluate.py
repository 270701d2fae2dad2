"""evaluate: hand-checked scores, baselines on ramps, determinism, layout, masks, plots."""

import numpy as np
import pytest
import xarray as xr

import xdl
from xdl import metrics
from xdl.errors import InputError
from xdl.evaluate import METRICS, evaluate
from xdl.inpaint import inpaint


def tiny_model():
    import torch

    torch.manual_seed(0)
    return xdl.zoo.create("pconv-unet", in_channels=1, depth=2, base_channels=4,
                          card={"normalization": {"kind": "per_sample"}})


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def first(report):
    """The (variable, gaps) = (0, 0) block of a report: scalars per method."""
    return report.isel(variable=0, gaps=0)


def interior(ny, nx, x0=0):
    """Domain without the border: every hidden pixel then lies inside the valid pixels' hull,
    where linear interpolation of a plane is exact (outside it, fill_linear extrapolates)."""
    dom = np.zeros((ny, nx), bool)
    dom[1:-1, x0 + 1:-1] = True
    return xr.DataArray(dom, dims=("y", "x"))


def ramp(ny=32, nx=40):
    y, x = np.mgrid[0:ny, 0:nx]
    return xr.DataArray((2.0 + 0.3 * y - 0.2 * x).astype("f8"), dims=("y", "x"), name="ramp",
                        coords={"y": np.arange(ny), "x": np.arange(nx)}, attrs={"units": "K"})


def smooth(shape, seed=0):
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, shape[-2])[:, None]
    x = np.linspace(0, 1, shape[-1])[None, :]
    return (280 + 5 * np.sin(6 * x + rng.uniform(0, 6)) * np.cos(4 * y) + 0.1 * rng.standard_normal(shape)).astype("f4")


def test_model_scores_equal_metrics_by_hand(model):
    field = ramp(24, 24)
    hide = np.zeros(field.shape, bool)
    hide[5:8, :] = True
    hide[15:19, 3:11] = True
    report = evaluate(field, model, gaps=hide, baselines=("linear",))
    # The same fill, done by hand: inpaint with the hidden pixels masked out, then score them.
    filled = inpaint(field, model, mask=~hide).values
    expected = metrics.scores(field.values, filled, hide)
    got = report.sel(variable="ramp", gaps="custom")
    for key in ("rmse", "mae", "bias", "corr", "std_ratio", "n"):
        assert float(got[key].sel({"method": "model"})) == pytest.approx(expected[key], rel=1e-12, nan_ok=True)
    assert int(got.n.sel({"method": "model"})) == hide.sum() == 3 * 24 + 4 * 8
    assert float(first(report).hidden_share) == pytest.approx(hide.sum() / hide.size)


def test_nearest_scores_computed_by_hand(model):
    # Values = column index; hiding column 3 makes the nearest neighbour (column 2 or 4) off by 1.
    field = xr.DataArray(np.tile(np.arange(8.0), (8, 1)), dims=("y", "x"), name="col")
    hide = np.zeros((8, 8), bool)
    hide[:, 3] = True
    r = first(evaluate(field, model, gaps=hide, baselines=("nearest", "linear"))).sel({"method": ["nearest", "linear"]})
    assert r.rmse.values.ravel().tolist() == pytest.approx([1.0, 0.0], abs=1e-12)
    assert r.mae.values.ravel().tolist() == pytest.approx([1.0, 0.0], abs=1e-12)
    assert abs(float(r.bias.sel({"method": "nearest"}))) <= 1.0
    assert r.n.values.ravel().tolist() == [8, 8]


@pytest.mark.parametrize("gaps", ["scanlines", "blocks", "clouds", "irregular"])
def test_linear_is_exact_on_a_ramp(model, gaps):
    report = first(evaluate(ramp(), model, gaps=gaps, fraction=0.1, domain=interior(32, 40)))
    lin = report.sel({"method": "linear"})
    assert float(lin.rmse) < 1e-9
    assert int(lin.n) > 0
    assert float(report.sel({"method": "biharmonic"}).rmse) < 0.05  # smooth surface: near exact too


def test_result_layout_and_attrs(model):
    data = np.stack([smooth((30, 36), s) for s in range(3)])
    ds = xr.Dataset(
        {"a": (("time", "y", "x"), data, {"units": "K"}),
         "b": (("time", "y", "x"), data * 2.0),
         "flag": (("time", "y", "x"), np.zeros(data.shape, "i1")),  # not float: not scored
         "scalar": ((), 1.0)},
        coords={"time": [0, 1, 2], "y": np.arange(30.0), "x": np.arange(36.0)})
    report = ds.dl.evaluate(model, gaps=["scanlines", "clouds"], baselines=("linear", "nearest"),
                            fraction=0.15, seed=3)
    assert set(report.data_vars) == set(METRICS)
    for k in METRICS:
        assert report[k].dims == ("variable", "gaps", "method")
    assert report.variable.values.tolist() == ["a", "b"]
    assert report.gaps.values.tolist() == ["scanlines", "clouds"]
    assert report.method.values.tolist() == ["model", "linear", "nearest"]
    assert report.units.values.tolist() == ["K", ""]
    assert report.n.dtype == np.int64 and (report.n > 0).all()
    assert np.allclose(report.hidden_share, 0.15, atol=0.03)
    assert (report.seconds >= 0).all()
    assert report.attrs["model"] == "pconv-unet" and report.attrs["seed"] == 3
    assert report.attrs["fraction"] == 0.15
    # b = 2a and the gaps depend on the variable's position: b's linear scores are not a's doubled...
    # ...but each method sees the same hidden pixel count for a given variable and gap kind.
    assert (report.n.sel({"method": "linear"}) == report.n.sel({"method": "nearest"})).all()


def test_deterministic_given_seed(model):
    field = xr.DataArray(smooth((2, 32, 32)), dims=("t", "y", "x"), name="v")
    kw = dict(gaps=["blocks", "scanlines"], baselines=("linear",), fraction=0.2)
    one = evaluate(field, model, seed=7, **kw).drop_vars("seconds")
    two = evaluate(field, model, seed=7, **kw).drop_vars("seconds")
    other = evaluate(field, model, seed=8, **kw).drop_vars("seconds")
    xr.testing.assert_identical(one, two)
    assert not np.array_equal(one.rmse.values, other.rmse.values)


def test_only_valid_pixels_are_hidden_and_scored(model):
    field = ramp(32, 32)
    data = field.values.copy()
    data[:, :8] = 1e6  # garbage, declared invalid by the mask below
    data[20:, 20:] = np.nan  # NaN is never valid
    bad = field.copy(data=data)
    valid = xr.DataArray(np.arange(32) >= 8, dims="x")
    report = first(evaluate(bad, model, gaps="clouds", fraction=0.3, mask=valid,
                            domain=interior(32, 32, x0=8)))
    assert float(report.sel({"method": "linear"}).rmse) < 1e-9  # no garbage pixel was scored
    n_valid = int((np.isfinite(data) & valid.values[None, :]).sum())
    assert int(report.n.sel({"method": "linear"})) <= n_valid


def test_domain_limits_the_hidden_pixels(model):
    field = ramp(32, 32)
    domain = xr.DataArray(np.arange(32) < 16, dims="y")
    hide_everywhere = np.ones((32, 32), bool)
    report = first(evaluate(field, model, gaps=hide_everywhere, domain=domain, baselines=()))
    assert 0 < int(report.n.item()) <= 16 * 32
    assert report.method.values.tolist() == ["model"]


def test_observed_gaps(model):
    src = np.ones((3, 32, 32), bool)
    src[:, 10:14, :] = False
    report = evaluate(ramp(32, 32), model, gaps="observed", observed=src, baselines=("linear",))
    assert report.gaps.values.tolist() == ["observed"]
    report = first(report)
    assert int(report.n.sel({"method": "linear"})) == 4 * 32


def test_errors(model):
    field = ramp(16, 16)
    with pytest.raises(InputError, match="unknown gap kind 'stripes'"):
        evaluate(field, model, gaps="stripes")
    with pytest.raises(InputError, match="observed="):
        evaluate(field, model, gaps="observed")
    with pytest.raises(InputError, match="fraction"):
        evaluate(field, model, fraction=1.5)
    with pytest.raises(InputError, match=r"fraction must be in \(0, 1\) .*nothing to fill from"):
        evaluate(field, model, fraction=1.0)  # hid everything: all-NaN scores, the data blamed (probe)
    with pytest.raises(InputError, match="unknown baseline|baseline"):
        evaluate(field, model, baselines=("kriging",))
    with pytest.raises(InputError, match="does not fill gaps"):
        evaluate(field, xdl.zoo.create("unet", in_channels=1, depth=2, base_channels=4))
    with pytest.raises(InputError, match="not in the dataset"):
        evaluate(field.to_dataset(), model, variables=["nope"])
    with pytest.raises(InputError, match="listed twice"):
        evaluate(field, model, gaps=["blocks", "blocks"])


def test_plot_written(model, tmp_path):
    png = tmp_path / "eval.png"
    report = evaluate(ramp(24, 24), model, gaps="blocks", plot=png)
    assert png.exists() and png.stat().st_size > 5000
    assert report.attrs["plots"] == [str(png)]
    report = evaluate(ramp(24, 24), model, gaps=["blocks", "scanlines"], plot=tmp_path / "many.png")
    names = sorted(p.name for p in tmp_path.glob("many_*.png"))
    assert names == ["many_ramp_blocks.png", "many_ramp_scanlines.png"]


def test_fraction_is_a_share_of_the_valid_pixels_on_gappy_dask_data(model):
    data = smooth((48, 48))
    data[:, :20] = np.nan  # a large existing gap: clouds drawn over it would hide too few valid pixels
    field = xr.DataArray(data, dims=("y", "x"), name="v").chunk({"y": 16})
    report = first(evaluate(field, model, gaps="clouds", fraction=0.2, baselines=()))
    assert abs(float(report.hidden_share) - 0.2) < 0.02
    assert int(report.n.item()) == pytest.approx(0.2 * np.isfinite(data).sum(), rel=0.1)


def test_a_kinds_pattern_does_not_depend_on_the_other_kinds_listed(model):
    # Each named kind has its own random stream: reordering gaps= or adding a kind leaves it alone.
    field = xr.DataArray(smooth((40, 48)), dims=("y", "x"), name="v")
    kw = dict(baselines=("linear",), fraction=0.1, seed=3)
    alone = evaluate(field, model, gaps="clouds", **kw).drop_vars("seconds").sel(gaps="clouds")
    for gaps in (["scanlines", "clouds"], ["clouds", "blocks"], ["blocks", "irregular", "clouds"]):
        listed = evaluate(field, model, gaps=gaps, **kw).drop_vars("seconds").sel(gaps="clouds")
        xr.testing.assert_identical(listed, alone)


def test_clouds_over_a_scene_mostly_missing_still_hide_the_fraction_asked():
    # A country in its sea (61% of the scene missing): a cloud draw that mostly lies over the sea
    # once jumped between 5% and 100% of the scene and hid 0.14% of the land for 5% asked.
    from xdl import hiding

    y, x = np.mgrid[0:290, 0:180]
    land = ((y - 150) / 120.0) ** 2 + ((x - 90) / 55.0) ** 2 < 1
    for key in range(12):
        hidden = hiding.hide("clouds", land.shape, 0.05, (0, 0, key), None, None, land)
        assert not (hidden & ~land).any()
        assert 0.025 <= hidden.sum() / land.sum() <= 0.075, key


def test_packed_counts_are_scored_in_physical_units():
    # mask_and_scale=False: raw counts with scale_factor in the attributes; the scores are the
    # decoded file's (the units coordinate names physical units).
    counts = np.round((smooth((40, 48)) - 270) / 0.05).astype("i2")
    attrs = {"units": "K", "scale_factor": 0.05, "add_offset": 270.0, "_FillValue": np.int16(-32768)}
    raw = xr.Dataset({"t": (("y", "x"), counts, attrs)})
    decoded = xr.Dataset({"t": (("y", "x"), counts * 0.05 + 270.0, {"units": "K"})})
    kw = dict(variables=["t"], gaps="blocks", baselines=("linear",), seed=3)
    a, b = evaluate(raw, False, **kw), evaluate(decoded, False, **kw)
    for k in ("rmse", "mae", "bias"):
        np.testing.assert_allclose(a[k].values, b[k].values, rtol=1e-5)
    assert float(a.rmse.squeeze()) > 0 and str(a.units.values[0]) == "K"


def test_the_figure_is_in_physical_units_and_counts_the_domain(tmp_path, monkeypatch):
    """Found by a probe: with packed counts the figure showed counts ("RMSE 2.27e+03" beside the
    table's 3.07), and its share hidden was of every valid pixel, not of those in the domain."""
    from xdl import plotting

    seen = {}

    def spy(path, title, label, truth, keep, hidden, fills, **kw):
        seen.update(truth=truth, fill=fills["linear"], eligible=kw["eligible"], hidden=hidden)
        return path

    monkeypatch.setattr(plotting, "evaluation_figure", spy)
    counts = np.round((smooth((40, 48)) - 270) / 0.05).astype("i2")
    attrs = {"units": "K", "scale_factor": 0.05, "add_offset": 270.0, "_FillValue": np.int16(-32768)}
    raw = xr.Dataset({"t": (("y", "x"), counts, attrs)})
    domain = xr.DataArray(np.arange(48) < 24, dims="x").broadcast_like(raw.t)
    evaluate(raw, False, variables=["t"], gaps="blocks", baselines=("linear",), seed=3, domain=domain,
             fraction=0.2, plot=tmp_path / "p.png")
    np.testing.assert_allclose(seen["truth"], counts * 0.05 + 270.0, rtol=1e-6)
    assert 260 < np.nanmean(seen["fill"]) < 280
    assert not seen["eligible"][:, 24:].any() and seen["eligible"][:, :24].all()
    assert seen["hidden"].sum() / seen["eligible"].sum() == pytest.approx(0.2, abs=0.02)


def test_a_model_of_two_variables_is_scored_on_both():
    # A fill-unet fitted on u and v fills them together: evaluate gives it both (each in turn
    # hidden, the other as it is), and refuses one of them alone with advice.
    u, v = smooth((4, 32, 32), seed=1), smooth((4, 32, 32), seed=2)
    ds = xr.Dataset({"u": (("time", "y", "x"), u), "v": (("time", "y", "x"), v)})
    m = ds.dl.fit("fill-unet", variables=["u", "v"], masks="blocks", epochs=1, steps_per_epoch=1, batch_size=2,
                  tile=32, val=None, progress=False, depth=2, base_channels=4)
    report = evaluate(ds, m, variables=["u", "v"], gaps="blocks", baselines=("linear",))
    assert list(report.variable.values) == ["u", "v"] and np.isfinite(report.rmse.values).all()
    assert (report.n.values > 0).all()
    with pytest.raises(InputError, match="fills 2 variables together"):
        evaluate(ds, m, variables=["u"], gaps="blocks")
    # Names in another order go to the card's channels; one at another's channel is refused (a
    # u, v model given v, u filled each through the other's channel, silently; probe).
    swapped = evaluate(ds, m, variables=["v", "u"], gaps="blocks", baselines=("linear",))  # gaps by position
    assert np.isfinite(swapped.rmse.values).all()
    gappy = ds.copy(deep=True)
    gappy.u[:, 10:14, 10:20] = np.nan
    gappy.v[:, 10:14, 10:20] = np.nan
    xr.testing.assert_equal(gappy.dl.inpaint(m, variables=["v", "u"], domain=None)[["u", "v"]],
                            gappy.dl.inpaint(m, variables=["u", "v"], domain=None)[["u", "v"]])
    predicted = gappy.fillna(0).dl.predict(m, inputs=["v", "u"])
    xr.testing.assert_equal(predicted, gappy.fillna(0).dl.predict(m, inputs=["u", "v"]))
    other = gappy.assign(w=gappy.u)
    for call in (lambda: other.dl.inpaint(m, variables=["w", "u"]), lambda: other.fillna(0).dl.predict(m, inputs=["w", "u"])):
        with pytest.raises(InputError, match=r"takes \['u', 'v'\] in that order .* puts some of them at other channels"):
            call()
    stacked = gappy.fillna(0).to_dataarray("channel")  # a DataArray's channel coordinate, in another order too
    np.testing.assert_array_equal(stacked.sel(channel=["v", "u"]).dl.predict(m, channel_dim="channel").values,
                                  stacked.dl.predict(m, channel_dim="channel").values)
    with pytest.raises(InputError, match="outputs=\\['V', 'U'\\] name its output channels, which follow the card's order"):
        gappy.fillna(0).dl.predict(m, inputs=["v", "u"], outputs=["V", "U"])
    with pytest.raises(InputError, match="names \\['u'\\] more than once"):
        gappy.dl.inpaint(m, variables=["u", "u"])
    renamed = gappy.rename(u="a", v="b")  # names the card does not know: taken in order
    np.testing.assert_array_equal(renamed.dl.inpaint(m, variables=["a", "b"], domain=None).a.values,
                                  gappy.dl.inpaint(m, variables=["u", "v"], domain=None).u.values)


def test_methods_scored_on_different_pixels_are_told():
    """A step hidden whole: the model fills it from its neighbours (time_window), linear cannot,
    and RMSE compared 1080 pixels with 630 silently (the model ranked worst while best on the
    pixels all filled; probe)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:24, 0:32]
    steps = [np.sin(x / 5.0 + k / 3) + np.cos(y / 4.0) + 0.05 * rng.standard_normal((24, 32)) for k in range(8)]
    field = xr.DataArray(np.stack(steps).astype("f4"), dims=("time", "y", "x"), name="v")
    gaps = xr.zeros_like(field, dtype=bool)
    gaps[:, 6:9, :] = True
    gaps[5] = True
    with pytest.warns(xdl.XdlWarning, match=r"scored on different numbers of hidden pixels \(model \d+, linear \d+\)"):
        report = field.dl.evaluate(gaps=gaps, time_window=1, baselines=("linear",), domain=None)
    n = report.n.squeeze().values
    assert n[0] > n[1]
