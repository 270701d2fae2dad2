"""The sigma head in fit: Gaussian NLL on the hidden pixels (means detached), calibration on the
validation batches, the card's uncertainty entry, and recovery of a known noise level."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import xarray as xr

import xdl
from xdl.errors import InputError
from xdl.fit import fit
from xdl.training import tasks
from xdl.training.calibration import (ONE_SIGMA, TWO_SIGMA, calibration_scale, coverage, standardized_errors,
                                      uncertainty_entry)
from xdl.training.losses import gap_loss, resolve_weights

TINY_PCONV = dict(depth=2, base_channels=8)


# ============================================================================ calibration

def test_calibration_scale_of_gaussian_errors_is_their_std():
    z = np.random.default_rng(0).normal(0.0, 2.0, 200_000)
    c = calibration_scale(z)
    assert c["scale"] == pytest.approx(2.0, rel=0.01) and c["n"] == 200_000
    for cand in c["candidates"].values():
        assert cand["scale"] == pytest.approx(2.0, rel=0.01)
    assert c["coverage_1sigma"] == pytest.approx(ONE_SIGMA, abs=0.003)
    assert c["coverage_2sigma"] == pytest.approx(TWO_SIGMA, abs=0.003)
    assert (ONE_SIGMA, TWO_SIGMA) == pytest.approx((0.6827, 0.9545), abs=1e-4)


def test_calibration_scale_by_hand():
    c = calibration_scale(np.array([0.5, -1.0, 2.0, -4.0, np.nan]))  # NaN dropped
    q, r = c["candidates"]["quantile"], c["candidates"]["rms"]
    assert q["scale"] == pytest.approx(2.0 + (3 * ONE_SIGMA - 2) * (4.0 - 2.0))  # linear 0.683-quantile of |z|
    assert r["scale"] == pytest.approx(np.sqrt((0.25 + 1 + 4 + 16) / 4))
    assert (q["coverage_1sigma"], q["coverage_2sigma"]) == (0.75, 1.0) == coverage([0.5, 1, 2, 4], r["scale"])
    assert c["method"] == "quantile" and c["n"] == 4  # equal deviations: the first candidate
    # Heavy tails: the candidate with the better 1- and 2-sigma coverage wins.
    heavy = calibration_scale(np.random.default_rng(1).laplace(0, 1, 50_000))
    dev = {k: v["deviation"] for k, v in heavy["candidates"].items()}
    assert heavy["method"] == min(dev, key=dev.get)
    assert calibration_scale(np.zeros(0))["scale"] == 1.0


def test_standardized_errors_and_card_entry():
    t = torch.tensor
    z = standardized_errors(t([[1.0, 3.0, 5.0]]), t([[2.0, 2.0, 1.0]]), t([[0.0, 0.0, 0.0]]), t([[True, True, False]]))
    assert z.tolist() == [0.5, 1.5]
    entry = uncertainty_entry(calibration_scale(np.array([1.0, -1.0])), "the test batches")
    assert entry["kind"] == "gaussian" and entry["scale"] == 1.0 and "2 hidden pixels of the test batches" in \
        entry["calibration"]
    xdl.Model(xdl.zoo.create("pconv-unet", in_channels=1, sigma=True, **TINY_PCONV).module,
              {"uncertainty": entry, "outputs": ["sst"]})  # the card check accepts it


# ============================================================================ the loss

class _MeanAndSigma(torch.nn.Module):
    """out = (a * x, softplus(b)): one parameter for the mean, one for the sigma."""

    sigma = True

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(0.5))
        self.b = torch.nn.Parameter(torch.tensor(0.0))

    def forward(self, x, mask):
        return torch.cat([self.a * x, F.softplus(self.b).expand_as(x)], 1)


def _batch():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 8, 8, generator=g)
    return {"x": x, "valid": torch.ones_like(x, dtype=torch.bool), "kept": torch.rand(2, 1, 8, 8, generator=g) > 0.4}


def test_the_nll_trains_the_sigmas_only_and_the_l1_terms_the_means():
    net = _MeanAndSigma()
    weights = resolve_weights(None, "gap", False, sigma=True)
    assert weights["nll"] == 1.0
    task = tasks.GapFillTask(net, torch.device("cpu"), None, True, weights)
    assert task.val_keys == ("loss", "valid", "hole", "tv", "nll") and "val_nll" in task.new_history()
    b = _batch()
    terms = task.validation_step(b)
    terms["loss"].backward()
    grad_a, grad_b = float(net.a.grad), float(net.b.grad)
    # The mean's gradient is the L1 terms' alone (the NLL sees a detached mean).
    net.a.grad = None
    mask = b["valid"] & b["kept"]
    gap_loss(net.a * torch.where(mask, b["x"], 0.0), b["x"], b["valid"], mask, weights)["loss"].backward()
    assert grad_a == pytest.approx(float(net.a.grad), rel=1e-6) and grad_b != 0.0
    hidden = ~mask
    m = 0.5 * torch.where(mask, b["x"], 0.0)
    s = F.softplus(torch.tensor(0.0))
    assert weights["nll_beta"] == 1.0  # beta-NLL: each pixel's term times sigma**2 (detached)
    want = ((torch.log(s) + (m - b["x"]).square() / (2 * s * s)) * s * s)[hidden].mean()
    assert float(terms["nll"].detach()) == pytest.approx(float(want), rel=1e-6)
    assert float(terms["loss"].detach()) == pytest.approx(float(gap_loss(m, b["x"], b["valid"], mask, weights)["loss"]
                                                       + terms["nll"].detach()), rel=1e-6)


def test_nll_weight_only_for_a_sigma_model():
    with pytest.raises(InputError, match=r"unknown terms \['nll'\]"):
        resolve_weights({"nll": 2.0}, "gap", False)
    assert resolve_weights({"nll": 2.0}, "gap", False, sigma=True)["nll"] == 2.0


# ============================================================================ fit

def _noisy(n, seed, size=32, noise=0.5, amp=0.2):
    """Known noise: a per-step level plus a weak large-scale wave, plus iid Gaussian noise of std ``noise``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / 64.0
    base = np.stack([amp * np.sin(2 * xx + rng.uniform(0, 6)) * np.cos(1.5 * yy + rng.uniform(0, 6)) for _ in range(n)])
    base += rng.uniform(280, 300, (n, 1, 1))
    return base, base + rng.normal(0, noise, base.shape)


def test_sigma_fit_calibrates_and_writes_the_card():
    _, f = _noisy(8, 0)
    ds = xr.Dataset({"sst": (("time", "y", "x"), f.astype("f4"), {"units": "K"})})
    m = fit(ds, "pconv-unet", variables=["sst"], epochs=2, steps_per_epoch=3, batch_size=4, tile=32, val_steps=2,
            progress=False, **TINY_PCONV)
    card = m.card
    assert card["config"]["sigma"] is True and m.module.sigma and m.out_channels == 2 and m.outputs == ["sst"]
    u = card["uncertainty"]
    assert u["kind"] == "gaussian" and u["scale"] > 0 and "the 2 validation batches" in u["calibration"]
    assert set(u["candidates"]) == {"quantile", "rms"} and u["scale"] == u["candidates"][u["method"]]["scale"]
    assert u["n_pixels"] > 100 and 0 < u["coverage_1sigma"] < u["coverage_2sigma"] <= 1
    tr = card["training"]
    assert tr["loss_weights"]["nll"] == 1.0 and "Gaussian NLL(hidden; sigmas only, means detached; beta 1)" in tr["loss"]
    assert len(tr["history"]["val_nll"]) == 2 and "val_nll" in card["metrics"]
    # Without validation the calibration uses training windows, and says so.
    m2 = fit(ds, "pconv-unet", variables=["sst"], epochs=1, steps_per_epoch=2, batch_size=4, tile=32, val=None,
             val_steps=2, progress=False, **TINY_PCONV)
    assert "training windows (no validation split)" in m2.card["uncertainty"]["calibration"]
    # sigma=False: the old model, no uncertainty, no NLL.
    m3 = fit(ds, "pconv-unet", variables=["sst"], epochs=1, steps_per_epoch=1, batch_size=2, tile=32, val_steps=1,
             progress=False, sigma=False, **TINY_PCONV)
    assert "uncertainty" not in m3.card and "nll" not in m3.training["loss_weights"] and m3.out_channels == 1


@pytest.mark.slow
def test_a_known_noise_level_is_recovered():
    # Fields = a per-step level + a weak wave + iid noise of std 0.5: the best predictor of a hidden
    # pixel is the smooth part (error std 0.5, as the base-vs-noisy RMSE below shows), so a good
    # mean and its sigma both come out at 0.5 (measured: RMSE 0.498, RMS sigma 0.514 before and
    # 0.522 after calibration, median 0.508, 1-sigma coverage 68.8%).
    noise = 0.5
    _, f = _noisy(24, 0, noise=noise)
    ds = xr.Dataset({"sst": (("time", "y", "x"), f.astype("f4"))})
    m = fit(ds, "pconv-unet", variables=["sst"], epochs=5, steps_per_epoch=10, batch_size=8, tile=32, val_steps=4,
            lr=1e-2, progress=False, **TINY_PCONV)
    base, g = _noisy(16, 99, noise=noise)  # held-out fields
    mu, sd = g.mean(axis=(1, 2), keepdims=True), g.std(axis=(1, 2), keepdims=True)
    x = torch.from_numpy(((g - mu) / sd)[:, None].astype("f4"))
    rng = np.random.default_rng(1)
    keep = torch.from_numpy(np.stack([xdl.masks.make("irregular", (32, 32), None, rng) for _ in range(16)])[:, None])
    with torch.no_grad():
        out = m.module(torch.where(keep, x, 0.0), keep.float()).numpy()
    hidden = ~keep.numpy()
    scale = m.card["uncertainty"]["scale"]
    err = (out[:, :1] * sd[:, None] + mu[:, None] - g[:, None])[hidden]
    sigma = (out[:, 1:] * sd[:, None])[hidden] * scale  # physical units, calibrated
    best = np.sqrt(np.mean(((base - g)[:, None][hidden]) ** 2))
    rmse = np.sqrt(np.mean(err ** 2))
    assert best == pytest.approx(noise, rel=0.03) and rmse == pytest.approx(best, rel=0.05)
    # Recovered before calibration (scale 1) and after, per pixel in RMS and in the median.
    assert np.sqrt(np.mean((sigma / scale) ** 2)) == pytest.approx(noise, rel=0.10)
    assert np.sqrt(np.mean(sigma ** 2)) == pytest.approx(noise, rel=0.10)
    assert np.median(sigma) == pytest.approx(noise, rel=0.10)
    assert 0.63 <= np.mean(np.abs(err) <= sigma) <= 0.75 and 0.91 <= np.mean(np.abs(err) <= 2 * sigma) <= 0.99


def test_an_absurd_scale_is_clamped_into_the_cards_range():
    entry = uncertainty_entry(calibration_scale(np.array([3e6, -2e6, 1e6])), "the test batches")
    assert entry["scale"] == 1e5 and "clamped to 100000: the sigma head is far off" in entry["calibration"]
