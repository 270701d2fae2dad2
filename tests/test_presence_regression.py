"""The context first guess that respects where each context field is (FillUNet regression="presence")
and the correction scaled by the regression's local misfit (correction_scale="fit")."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xdl.models.fill_unet import FillUNet
from xdl.models.regression import local_regression, presence_regression


def _scene(seed=0, size=96):
    g = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.arange(float(size)), torch.arange(float(size)), indexing="ij")
    a = torch.sin(x / 7) + torch.cos(y / 11) + 0.1 * torch.randn(size, size, generator=g)
    b = torch.cos(x / 5 + y / 9) + 0.1 * torch.randn(size, size, generator=g)
    return torch.stack([a, b])[None]


def test_all_present_is_the_local_regression_with_a_wide_window():
    c = _scene()
    t = 2 * c[:, :1] - 0.5 * c[:, 1:] + 0.3
    m = torch.ones_like(t)
    m[..., 30:60, 20:70] = 0
    ones = torch.ones_like(c)
    fit = presence_regression(t * m, m, c, ones, ones)
    ref, ref_res, _ = local_regression(t * m, m, c, ones, wide_radius=12)
    assert torch.equal(fit.estimate, ref) and torch.equal(fit.residual, ref_res) and bool(fit.exact.all())
    assert float((fit.estimate - t)[m == 0].abs().max()) < 1e-3  # an exact linear relation: recovered
    assert fit.variance.shape == t.shape and bool(torch.isfinite(fit.variance).all())


def test_the_wide_window_reaches_deep_into_a_large_gap():
    """The relation drifts across the scene: deep inside a large gap the 25-cell window's fit beats
    the whole tile's, which the 7-cell window falls back to."""
    size = 640  # wider than the wide window (25 cells of 16 pixels), else it is the tile's fit
    y, x = torch.meshgrid(torch.arange(float(size)), torch.arange(float(size)), indexing="ij")
    c = (torch.sin(x / 9) + torch.cos(y / 13))[None, None]
    t = (1 + x / 64) * c  # the slope drifts with x
    m = torch.ones_like(t)
    m[..., 200:440, 200:440] = 0
    ones = torch.ones_like(c)
    narrow = local_regression(t * m, m, c, ones)[0]
    wide = presence_regression(t * m, m, c, ones, ones).estimate
    err = lambda e: float((e - t)[m == 0].pow(2).mean().sqrt())  # noqa: E731
    assert err(wide) < 0.95 * err(narrow)  # measured 0.42 vs 0.45


def test_where_a_context_field_is_missing():
    c = _scene(1)
    t = 1.5 * c[:, :1] + 0.2 * c[:, 1:]
    m = torch.ones_like(t)
    m[..., 40:50, :] = 0
    present = torch.ones_like(c)
    present[:, 1, 40:45] = 0     # field 2 misses the top half of the gap
    present[:, :, 45:47] = 0     # both miss two rows
    fit = presence_regression(t * m, m, c, present, present)
    assert bool(torch.isnan(fit.estimate[..., 45:47, :]).all())           # no field: no estimate
    assert not bool(fit.exact[..., 40:45, :].any()) and bool(torch.isfinite(fit.estimate[..., 40:45, :]).all())
    assert bool(fit.exact[..., 47:50, :].all())
    assert float((fit.estimate - t)[..., 47:50, :].abs().max()) < 1e-3  # both present: exact


def test_a_field_absent_from_the_whole_sample_is_ignored():
    c = _scene(2)[:, :1]
    t = 3 * c - 1
    m = torch.ones_like(t)
    m[..., 10:20, :] = 0
    context = torch.cat([c, torch.zeros_like(c)], 1)         # a time step beyond the series' end
    present = torch.cat([torch.ones_like(c), torch.zeros_like(c)], 1)
    fit = presence_regression(t * m, m, context, torch.ones_like(context), present)
    assert bool(fit.exact.all()) and float((fit.estimate - t)[m == 0].abs().max()) < 1e-3
    nothing = presence_regression(t * m, m, torch.zeros_like(c), torch.ones_like(c), torch.zeros_like(c))
    assert bool(torch.isnan(nothing.estimate).all())  # only absent fields: the target's own fill


def test_a_gap_in_target_and_context_joins_the_regression_on_either_side():
    y, x = torch.meshgrid(torch.arange(96.0), torch.arange(96.0), indexing="ij")
    c = (torch.sin(y / 2) * (1 + x / 200) + x / 50)[None, None]  # rough across the line, smooth along it
    t = 2 * c + 0.5
    m = torch.ones_like(t)
    m[..., 50:54, :] = 0                       # a scan line in the target ...
    present = torch.ones_like(c)
    present[..., 50:54, 40:48] = 0             # ... and a short stretch of it in the context too
    x = torch.cat([t * m, c * present], 1)
    mask = torch.cat([m, present], 1)
    with torch.no_grad():
        out = _model(regression="presence", correction_scale="fit", zero=True)(x, mask, torch.zeros(1, 2))
        alone = _model(zero=True)(t * m, m)  # the target's own interpolation
    both = (slice(None), slice(0, 1), slice(50, 54), slice(40, 48))
    err = lambda o: float((o[both] - t[both]).abs().mean())  # noqa: E731
    assert err(out) < 0.8 * err(alone)  # measured 0.46 vs 0.69


def _model(zero=False, **kw):
    torch.manual_seed(0)
    features = 4 if kw else 0
    net = FillUNet(in_channels=1, depth=2, base_channels=8, max_channels=16, context_features=features,
                   sigma=True, **kw)
    if not zero:
        for p in net.correction.head.parameters():  # a trained-looking, non-zero correction
            torch.nn.init.normal_(p, std=0.5)
    return net.eval()


def test_fit_scaled_correction_keeps_a_near_exact_context_near_exact():
    c = _scene(3)[:, :1]
    t = 2 * c + 1e-4 * torch.randn_like(c)
    m = torch.ones_like(t)
    m[..., 30:34, :] = 0
    m[..., 60:80, 20:50] = 0
    x, mask, info = torch.cat([t * m, c], 1), torch.cat([m, torch.ones_like(c)], 1), torch.zeros(1, 2)
    with torch.no_grad():
        plain = _model(regression="presence")(x, mask, info)
        scaled = _model(regression="presence", correction_scale="fit")(x, mask, info)
    err = lambda out: float((out[:, :1] - t)[m == 0].abs().max())  # noqa: E731
    assert err(scaled) < 0.01 < err(plain)
    # valid pixels bit-identical, sigma > 0 in the gaps and small where the fit is exact
    assert torch.equal(scaled[:, :1][m > 0], t[m > 0])
    sigma = scaled[:, 1:][m == 0]
    assert bool((sigma > 0).all()) and float(sigma.median()) < 0.01


def test_configs_round_trip_and_old_configs_are_unchanged():
    net = _model(regression="presence", correction_scale="fit")
    assert net.config["regression"] == "presence" and net.config["correction_scale"] == "fit"
    old = FillUNet(in_channels=1, depth=2, base_channels=8, context_features=4, sigma=True)
    assert "regression" not in old.config and old.regression == "local" and old.correction_scale == "none"
    with pytest.raises(ValueError, match="regression must be one of"):
        FillUNet(context_features=4, regression="global")
    with pytest.raises(ValueError, match="correction_scale"):
        FillUNet(context_features=4, correction_scale="fit")  # needs the presence regression
    with pytest.raises(ValueError, match="correction_scale"):
        FillUNet(context_features=4, regression="presence", correction_scale=np.float64(1.0))


def test_fit_scaled_sigma_is_capped_at_a_few_field_deviations():
    from xdl.models.fill_unet import SIGMA_CAP

    net = _model(regression="presence", correction_scale="fit")
    torch.nn.init.constant_(net.correction.head.bias, 50.0)  # an exploding raw sigma
    c = _scene(5)[:, :1]
    m = torch.ones_like(c)
    m[..., 10:30, 10:30] = 0
    present = torch.ones_like(c)
    present[..., 10:20, 10:30] = 0  # no context there: the field's own scale
    with torch.no_grad():
        out = net(torch.cat([c * m, c * present], 1), torch.cat([m, present], 1), torch.zeros(1, 2))
    sigma = out[:, 1:][m == 0]
    assert float(sigma.max()) <= SIGMA_CAP and float(sigma.min()) > 0


def test_wide_windows_from_a_summed_area_table_equal_pooling():
    import torch.nn.functional as F

    from xdl.models.regression import _box_sums

    x = torch.rand(2, 9, 40, 33, dtype=torch.float64)
    for r in (3, 12):
        ref = F.avg_pool2d(x, 2 * r + 1, stride=1, padding=r, count_include_pad=True) * (2 * r + 1) ** 2
        assert torch.allclose(_box_sums(x, r), ref, rtol=1e-10, atol=1e-10)


def test_regression_is_not_run_in_bf16_under_autocast():
    """bf16 autocast is the engine's default on GPUs and bf16-capable CPUs: the moments of the fit
    summed by a bf16 matrix product lost it (a held-out GOES fill: RMSE 0.052 -> 0.072)."""
    c = _scene(3)
    t = 2 * c[:, :1] - 0.5 * c[:, 1:] + 0.1 * torch.randn(1, 1, 96, 96, generator=torch.Generator().manual_seed(4))
    m = torch.ones_like(t)
    m[..., 30:60, 20:70] = 0
    ones = torch.ones_like(c)
    ref = presence_regression(t * m, m, c, ones, ones)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = presence_regression(t * m, m, c, ones, ones)
    for a, b in zip(ref, got):
        assert torch.equal(a, b)


def test_a_window_of_alike_pixels_is_not_read_far_from_them():
    # The pole row of a global grid: constant along it. A cell whose window holds only that row
    # fits any slope there; a cell rows away would read it far outside what it was fitted on
    # (MERRA-2 surface pressure: 2,600 Pa off where the other hour's regression misses by 30).
    # The wider window, whose pixels span the cell's context, takes over.
    y = torch.arange(160.0)[:, None].expand(160, 96)
    c = (y / 10.0 + 0.01 * torch.sin(torch.arange(96.0) / 3))[None, None]
    t = c + 0.5
    known = torch.zeros_like(t)
    known[..., 0, :] = 1
    known[..., 112:, :] = 1
    c[..., 0, :] = 0.0  # the "pole": one value along the row
    t[..., 0, :] = 0.5
    fit = presence_regression(t * known, known, c, torch.ones_like(c), torch.ones_like(c))
    err = (fit.estimate - t)[..., 1:40, :].abs().max()
    assert float(err) < 0.05
