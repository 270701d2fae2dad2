"""evaluate(context=, time_window=): the regression baselines, what the model is given, sigma scores."""

import inspect

import numpy as np
import pytest
import xarray as xr

import xdl
import xdl.inpaint
from xdl import metrics
from xdl.errors import InputError
from xdl.evaluate import evaluate
from xdl.report import format_report

CONTEXT_METHODS = ["linear", "biharmonic", "regression", "local_regression"]


def scene(nt=3, ny=48, nx=56, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:ny, 0:nx]
    c = np.sin(x / 5.0) + np.cos(y / 7.0) + 0.3 * rng.standard_normal((nt, ny, nx))
    t = (2.0 * c + 1.0).astype("f4")  # an affine copy of the context
    c = c.astype("f4")
    c[:, 5:9, 10:20] = np.nan  # the context has gaps of its own
    return xr.Dataset({"t": (("time", "y", "x"), t, {"units": "K"}), "c": (("time", "y", "x"), c),
                       "static": (("y", "x"), np.cos(x / 9.0))},
                      coords={"time": np.arange(nt), "y": np.arange(ny), "x": np.arange(nx)})


def tiny(**kw):
    import torch

    torch.manual_seed(0)
    return xdl.zoo.create("pconv-unet", in_channels=1, depth=2, base_channels=4,
                          card={"normalization": {"kind": "per_sample"}}, **kw)


class StandIn:
    """Replaces inpaint: records what evaluate passes; fills the target's NaN with 2 c + 1 (the truth
    where c is known, else 0) and, with uncertainty=True, a sigma of 0.5 where filled."""

    def __init__(self):
        self.calls = []

    def __call__(self, obj, model=None, **kw):
        self.calls.append((obj, kw))
        t = obj["t"]
        fill = (2.0 * obj["c"] + 1.0).fillna(0.0).astype(t.dtype)
        out = t.where(t.notnull(), fill)
        if not kw.get("uncertainty"):
            return xr.Dataset({"t": out})
        return xr.Dataset({"t": out, "t_sigma": xr.where(t.notnull(), 0.0, 0.5).astype(t.dtype)})


def test_context_adds_the_regression_baselines_which_use_it():
    ds = scene()
    report = evaluate(ds, False, variables=["t"], context=["c"], gaps=["scanlines", "blocks"], domain=None)
    assert report.method.values.tolist() == CONTEXT_METHODS
    assert report.attrs["context"] == "c" and report.attrs["model"] == "none (baselines only)"
    rmse = report.rmse.isel(variable=0)
    for g in ("scanlines", "blocks"):
        r = rmse.sel(gaps=g)
        # Exact where c is known; the hidden pixels under c's own gap get biharmonic.
        assert float(r.sel({"method": "regression"})) < 0.2 * float(r.sel({"method": "biharmonic"}))
        assert float(r.sel({"method": "local_regression"})) < 0.2 * float(r.sel({"method": "linear"}))
    # Without the context gap the regressions are exact (an affine copy).
    exact = evaluate(ds.assign(c=(ds.t - 1) / 2), False, variables=["t"], context=["c"], domain=None)
    assert float(exact.rmse.sel({"method": "regression"}).max()) < 1e-5
    # A static 2-D field broadcasts over time; several fields at once.
    both = evaluate(ds, False, variables=["t"], context=["c", "static"], domain=None)
    assert np.isfinite(both.rmse).all()


def test_model_gets_the_context_and_gaps_only_in_the_target(monkeypatch):
    ds = scene()
    stand_in = StandIn()
    monkeypatch.setattr(xdl.inpaint, "inpaint", stand_in)
    report = evaluate(ds, tiny(), variables=["t"], context=["c"], gaps="blocks", domain=None)
    assert report.method.values.tolist() == ["model"] + CONTEXT_METHODS
    (obj, kw), = stand_in.calls
    assert kw["context"] == ["c"] and kw["time_window"] == 0 and kw["variables"] == ["t"]
    np.testing.assert_array_equal(obj["c"].values, ds["c"].values)  # context: as given, own gaps kept
    hidden = int(report.n.sel({"method": "linear"}).item())
    assert int(obj["t"].isnull().sum()) == hidden  # the target lost exactly the hidden pixels
    # The stand-in fills with the truth where the context is known: the model scores like regression.
    r = report.rmse.isel(variable=0, gaps=0)
    assert float(r.sel({"method": "model"})) > 0  # 0 under the context's own gap
    assert "regression" in format_report(report)


def test_time_window_neighbours_feed_the_regressions():
    rng = np.random.default_rng(3)
    base = rng.standard_normal((40, 50)).cumsum(0).cumsum(1)  # rough: interpolation is poor
    field = xr.DataArray(np.stack([base * (1 + 0.1 * k) + k for k in range(4)]).astype("f8"),
                         dims=("time", "y", "x"), coords={"time": np.arange(4)}, name="v")
    hide = np.zeros(field.shape, bool)
    for k in range(4):
        hide[k, 3 + 8 * k:6 + 8 * k, :] = True  # scan lines lost at another place in each step
    report = evaluate(field, False, time_window=1, gaps=hide, domain=None)
    assert report.attrs["time_window"] == 1
    r = report.rmse.isel(variable=0, gaps=0)
    # Each step is an affine copy of its neighbours, known where its own lines are lost.
    assert float(r.sel({"method": "regression"})) < 1e-4 * float(r.sel({"method": "linear"}))  # ridge-limited
    assert float(r.sel({"method": "local_regression"})) < 1e-4 * float(r.sel({"method": "linear"}))  # ridge-limited
    # Drawn gaps: the neighbours' own hidden lines fall elsewhere (mostly): still far better.
    drawn = evaluate(field, False, time_window=1, gaps="scanlines", domain=None).rmse.isel(variable=0, gaps=0)
    assert float(drawn.sel({"method": "regression"})) < 0.6 * float(drawn.sel({"method": "linear"}))
    single = evaluate(field, False, gaps=hide, domain=None)
    assert single.method.values.tolist() == ["linear", "biharmonic"]
    np.testing.assert_array_equal(single.rmse.sel({"method": "linear"}), report.rmse.sel({"method": "linear"}))


def test_sigma_scores_equal_a_hand_computation(monkeypatch, tmp_path):
    ds = scene()
    stand_in = StandIn()
    monkeypatch.setattr(xdl.inpaint, "inpaint", stand_in)
    model = tiny(sigma=True)
    assert model.card.get("uncertainty")
    report = evaluate(ds, model, variables=["t"], context=["c"], gaps="scanlines", domain=None,
                      plot=tmp_path / "p.png")
    (obj, kw), = stand_in.calls
    assert kw["uncertainty"] is True
    # By hand: the stand-in's fill and sigma on the hidden pixels.
    truth = ds.t.values.astype("f8")
    hidden = obj["t"].isnull().values & ds.t.notnull().values
    fill = np.where(np.isnan(obj["c"].values), 0.0, 2.0 * ds.c.values.astype("f8") + 1.0)
    err = np.abs(fill - truth)[hidden]
    row = report.sel({"method": "model"}).isel(variable=0, gaps=0)
    assert float(row.coverage1) == pytest.approx(np.mean(err <= 0.5))
    assert float(row.coverage2) == pytest.approx(np.mean(err <= 1.0))
    assert float(row.spread_skill) == pytest.approx(0.5 / np.sqrt(np.mean(err ** 2)), rel=1e-6)
    z = err / 0.5  # CRPS is symmetric in the error's sign
    from scipy.stats import norm

    crps = 0.5 * (z * (2 * norm.cdf(z) - 1) + 2 * norm.pdf(z) - 1 / np.sqrt(np.pi))
    assert float(row.crps) == pytest.approx(crps.mean(), rel=1e-6)
    s = np.sqrt(np.mean(err ** 2))
    zc = err / s
    crps_c = s * (zc * (2 * norm.cdf(zc) - 1) + 2 * norm.pdf(zc) - 1 / np.sqrt(np.pi))
    assert float(row.crps_const) == pytest.approx(crps_c.mean(), rel=1e-6)
    assert report.coverage1.sel({"method": CONTEXT_METHODS}).isnull().all()  # NaN for the baselines
    assert "cov1" in format_report(report)
    assert len(report.attrs["plots"]) == 1 and (tmp_path / "p.png").stat().st_size > 1000


def test_no_sigma_columns_for_a_model_without_sigma(monkeypatch):
    monkeypatch.setattr(xdl.inpaint, "inpaint", StandIn())
    report = evaluate(scene(), tiny(), variables=["t"], context=["c"], domain=None)
    assert not set(metrics.UNCERTAINTY) & set(report.data_vars)


def test_errors_name_the_fix():
    ds = scene()
    with pytest.raises(InputError, match="pass a Dataset"):
        evaluate(ds.t, False, context=["c"])
    with pytest.raises(InputError, match=r"context variables \['q'\] not in the dataset"):
        evaluate(ds, False, variables=["t"], context=["q"])
    with pytest.raises(InputError, match="both as variables to score and as context"):
        evaluate(ds, False, variables=["t", "c"], context=["c"])
    with pytest.raises(InputError, match="pass context"):
        evaluate(ds, False, variables=["t"], baselines=("regression",))
    with pytest.raises(InputError, match="time_window must be"):
        evaluate(ds, False, variables=["t"], time_window=-1)
    with pytest.raises(InputError, match="not on the grid"):
        evaluate(ds.assign(small=(("y2", "x"), np.zeros((3, 56)))), False, variables=["t"], context=["small"])


@pytest.mark.skipif("context" not in inspect.signature(xdl.inpaint.inpaint).parameters,
                    reason="inpaint(context=) not available yet")
def test_end_to_end_with_a_context_model():
    import torch

    torch.manual_seed(0)
    model = xdl.zoo.create("fill-unet", in_channels=1, context_features=4, sigma=True, depth=2, base_channels=4,
                           card={"normalization": {"kind": "per_sample"}})
    report = evaluate(scene(), model, variables=["t"], context=["c"], time_window=1, gaps="blocks", domain=None)
    assert report.method.values.tolist() == ["model"] + CONTEXT_METHODS
    assert np.isfinite(report.rmse).all() and np.isfinite(report.crps.sel({"method": "model"})).all()


def test_the_default_variables_leave_the_context_out():
    """Found by a probe: inpaint(context=["c"]) fills the other float fields, evaluate with the
    same call refused its own default: "['c'] listed both as variables to score and as context"."""
    ds = scene().drop_vars("static")
    report = evaluate(ds, False, context=["c"], gaps="blocks", domain=None)
    assert report.variable.values.tolist() == ["t"]
    assert evaluate(ds, False, context="c", gaps="blocks", domain=None).variable.values.tolist() == ["t"]
