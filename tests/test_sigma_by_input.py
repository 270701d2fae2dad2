"""A card's sigma calibration per input kind (``uncertainty.scale_by_input``): inpaint picks the
scale for what the model is given (the field alone, other variables, neighbouring time steps)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

import xdl
from xdl import uncertainty
from xdl.errors import InputError
from xdl.modelcard import check_card
from xdl.models.fill_unet import FillUNet


def test_input_kind():
    assert uncertainty.input_kind([], 0) == "single"
    assert uncertainty.input_kind(["C16"], 0) == "context"
    assert uncertainty.input_kind(["C16"], 1) == "time"
    assert uncertainty.input_kind([], 2) == "time"


def _model(by_input):
    torch.manual_seed(0)
    net = FillUNet(in_channels=1, depth=2, base_channels=8, max_channels=16, context_features=4, sigma=True).eval()
    unc = {"kind": "gaussian", "scale": 1.0}
    if by_input is not None:
        unc["scale_by_input"] = by_input
    card = {"name": "t", "normalization": {"kind": "per_sample"}, "uncertainty": unc,
            "context": {"accepts": "any", "max_fields": 4, "max_time_window": 2}}
    return xdl.Model(net, card)


def test_sigma_scale_picks_the_kind_and_falls_back_to_scale():
    m = _model({"single": 0.5, "time": 3.0})
    assert uncertainty.sigma_scale(m) == 1.0
    assert uncertainty.sigma_scale(m, "single") == 0.5
    assert uncertainty.sigma_scale(m, "time") == 3.0
    assert uncertainty.sigma_scale(m, "context") == 1.0  # not in the card: its scale


@pytest.mark.parametrize("bad", [{"single": 0}, {"single": -1.0}, {"single": float("nan")}, {"other": 1.0},
                                 [1.0], {"time": True}])
def test_bad_scale_by_input_is_refused(bad):
    card = {"name": "t", "uncertainty": {"kind": "gaussian", "scale": 1.0, "scale_by_input": bad}}
    with pytest.raises(InputError, match="scale_by_input"):
        check_card(card)


def test_inpaint_uses_the_scale_of_its_request():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(3, 48, 64)).astype("f4")
    gappy = values.copy()
    gappy[:, 20:24, :] = np.nan
    ds = xr.Dataset({"t": (("time", "y", "x"), gappy), "c": (("time", "y", "x"), values * 2)})
    plain, scaled = _model(None), _model({"single": 0.5, "context": 2.0, "time": 4.0})
    for kw, factor in [({}, 0.5), ({"context": ["c"]}, 2.0), ({"time_window": 1}, 4.0)]:
        a = ds.dl.inpaint(plain, variables=["t"], uncertainty=True, **kw)
        b = ds.dl.inpaint(scaled, variables=["t"], uncertainty=True, **kw)
        gap = np.isnan(gappy)
        assert np.array_equal(a["t"].values, b["t"].values)  # the means do not change
        np.testing.assert_allclose(b["t_sigma"].values[gap], factor * a["t_sigma"].values[gap], rtol=1e-6)
