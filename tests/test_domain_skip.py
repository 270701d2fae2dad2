"""Gaps outside the domain: the engine tells a model that takes them (``takes_domain``) with -1 in
the mask, and the bundled fill-context spends nothing on them, with the same output."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

import xdl
from xdl import masks
from xdl.engine import graph
from xdl.engine.spec import engine_spec
from xdl.engine.tiling import AxisPlan
from xdl.models.fill_unet import FillUNet


class MaskSpy(torch.nn.Module):
    """Returns its mask as the fill (1 target channel), so the test sees what the engine passed."""

    in_channels = out_channels = 1
    size_multiple, halo, mode, takes_mask, fills_gaps, takes_domain = 1, 2, "spatial", True, True, True

    def forward(self, x, mask):
        return mask.clone()


def test_the_engine_passes_minus_one_where_the_caller_marked_plus_inf():
    data = np.full((1, 1, 16, 20), 3.0, "f4")
    data[0, 0, 4:6, :] = np.nan  # gaps inside the domain
    data[0, 0, 10:12, :] = np.inf  # gaps outside it
    out = xr.DataArray(data[0, 0], dims=("y", "x")).dl.predict(MaskSpy()).values
    assert (out[4:6] == 0).all() and (out[10:12] == -1).all() and (out[:4] == 1).all()


def test_a_model_without_takes_domain_never_sees_minus_one():
    class Plain(MaskSpy):
        takes_domain = False

    data = np.full((16, 20), 3.0, "f4")
    data[10:12] = np.inf
    out = xr.DataArray(data, dims=("y", "x")).dl.predict(Plain()).values
    assert out.min() == 0.0


def test_a_tile_whose_only_gaps_are_outside_is_not_run():
    plans = [AxisPlan.build(8, halo=0, tile=8), AxisPlan.build(8, halo=0, tile=8)]
    valid = np.ones((1, 1, 8, 8), bool)
    valid[..., 2:4] = False
    outside = np.zeros_like(valid)
    assert graph.needed_tiles(valid, 1, plans, graph.TILES_GAPS, 1, outside).tolist() == [True]
    outside[..., 2:4] = True
    assert graph.needed_tiles(valid, 1, plans, graph.TILES_GAPS, 1, outside).tolist() == [False]


def test_only_the_kriged_first_guess_alone_takes_the_domain():
    assert engine_spec(xdl.pretrained.load("fill-context")).takes_domain
    assert not engine_spec(xdl.pretrained.load("fill-default")).takes_domain
    assert not FillUNet(in_channels=1, depth=2, base_channels=8).takes_domain


@pytest.fixture(scope="module")
def geo_scene():
    """A smooth field whose top-left corner is outside the domain (missing in every field, as off
    the Earth), with scan-line gaps that run into it, and a context field."""
    from scipy import ndimage

    rng = np.random.default_rng(3)
    truth = ndimage.gaussian_filter(rng.normal(size=(256, 320)), 6).astype("f4")
    truth = 250 + 20 * truth / truth.std()
    yy, xx = np.mgrid[:256, :320]
    domain = (yy + xx) > 120
    keep = masks.make("scanlines", truth.shape, fraction=0.05, rng=2) & domain
    context = np.where(domain, 0.5 * truth + rng.normal(0, 0.3, truth.shape), np.nan).astype("f4")
    ds = xr.Dataset({"t": (("y", "x"), np.where(keep, truth, np.nan)), "c": (("y", "x"), context)})
    return ds, xr.DataArray(domain, dims=("y", "x"))


@pytest.mark.parametrize("context", [["c"], None])
def test_skipping_outside_gaps_changes_no_output(geo_scene, monkeypatch, context):
    ds, domain = geo_scene
    calls = []
    forward = FillUNet.forward

    def spy(self, x, mask=None, info=None):
        calls.append(float(mask.min()))
        return forward(self, x, mask, info)

    monkeypatch.setattr(FillUNet, "forward", spy)
    kwargs = dict(variables=["t"], context=context, uncertainty=True, domain=domain, tile=128)
    skipped = ds.dl.inpaint(**kwargs)
    assert min(calls) == -1.0  # the model was told
    told_nothing = xdl.pretrained.load("fill-context")
    told_nothing.module.takes_domain = False
    calls.clear()
    full = ds.dl.inpaint(told_nothing, **kwargs)
    assert min(calls) == 0.0
    for name in ("t", "t_sigma", "t_inpainted"):
        np.testing.assert_array_equal(skipped[name].values, full[name].values, err_msg=name)
    assert np.isnan(skipped.t.values[~domain.values & np.isnan(ds.t.values)]).all()
