"""Distance-to-data calibration of sigma (issue #16): the card's ``distance_bins`` /
``distance_scales``, the capped distance (exact, chunk-invariant), inpaint's use of it and the fit
that finds the factors."""

import json
import struct

import dask.array as da
import numpy as np
import pytest
import torch
import xarray as xr
from scipy import ndimage

import xdl
from xdl import modelcard, uncertainty
from xdl.errors import InputError, ModelFileError
from xdl.inpaint import FLAG_FILLED, FLAG_OUTSIDE, FLAG_VALID
from xdl.fit import fit
from xdl.training.calibration import ONE_SIGMA, TWO_SIGMA, coverage, distance_scales


class ConstantSigma(torch.nn.Module):
    """A gap filler giving 0 in the gaps (normalised units) and a constant sigma: every number exact."""
    takes_mask, fills_gaps, in_channels, out_channels, halo, size_multiple, sigma = True, True, 1, 2, 0, 1, True

    def forward(self, x, mask):
        mean = torch.where(mask > 0, x, torch.zeros_like(x))
        return torch.cat([mean, torch.full_like(x, 0.5)], 1)


BINS, SCALES = [0.0, 2.0, 4.0, 8.0, 16.0], [1.0, 1.5, 2.0, 3.0, 5.0]


def model(scale=3.0, **distance):
    return xdl.Model(ConstantSigma(), card={"normalization": {"kind": "none"},
                                            "uncertainty": {"kind": "gaussian", "scale": scale, **distance}})


def field(shape=(2, 48, 64)):
    rng = np.random.default_rng(0)
    arr = xr.DataArray((rng.standard_normal(shape) + 290).astype("f4"), dims=("time", "y", "x"), name="sst",
                       attrs={"units": "K"})
    arr.values[:, 10:40, 8:50] = np.nan  # a block: distances up to 15 px
    arr.values[:, 44, :] = np.nan        # a scan line
    return arr


def reference_distance(valid, cap):
    return np.stack([np.minimum(ndimage.distance_transform_edt(~v), cap) if v.any() else np.full(v.shape, cap)
                     for v in valid.reshape((-1,) + valid.shape[-2:])]).reshape(valid.shape).astype("f4")


# ------------------------------------------------------------------------------------- card

def test_card_accepts_distance_bins_and_refuses_hostile_ones():
    ok = {"kind": "gaussian", "scale": 0.9, "distance_bins": BINS, "distance_scales": SCALES}
    modelcard.check_card({"uncertainty": ok})
    modelcard.check_card({"uncertainty": {"kind": "gaussian", "scale": 0.9}})  # old cards
    bad = [dict(distance_bins=[0, 4, 4], distance_scales=[1, 2, 3]),          # not increasing
           dict(distance_bins=[0, 4], distance_scales=[1, 2, 3]),             # lengths differ
           dict(distance_bins=[0, 4]),                                        # one without the other
           dict(distance_scales=[1.0]),
           dict(distance_bins=[], distance_scales=[]),
           dict(distance_bins=[0, float("nan")], distance_scales=[1, 2]),
           dict(distance_bins=[-1, 4], distance_scales=[1, 2]),
           dict(distance_bins=[0, 1e12], distance_scales=[1, 2]),              # the halo it would ask for
           dict(distance_bins=[0, 4], distance_scales=[1, 0]),
           dict(distance_bins=[0, 4], distance_scales=[1, float("inf")]),
           dict(distance_bins=[0, 4], distance_scales=[1, True]),
           dict(distance_bins=[0, 4], distance_scales=[1, "2"]),
           dict(distance_bins="0 4", distance_scales=[1, 2]),
           dict(distance_bins=list(range(65)), distance_scales=[1.0] * 65),
           dict(distance_bins=list(range(10 ** 6)), distance_scales=[1.0] * 10 ** 6)]
    for extra in bad:
        with pytest.raises(InputError, match="distance_bins"):
            modelcard.check_card({"uncertainty": {"kind": "gaussian", "scale": 0.9, **extra}})
    with pytest.raises(InputError, match="distance_bins"):
        model(distance_bins=[0, 4], distance_scales=[1, -2])


def test_hostile_distance_card_in_a_file_is_a_model_file_error(tmp_path):
    path = tmp_path / "m.safetensors"
    xdl.zoo.create("fill-unet", in_channels=1, depth=2, base_channels=4, max_channels=8, sigma=True).save(path)
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    card = json.loads(header["__metadata__"]["xdl_card"])
    card["uncertainty"] = {"kind": "gaussian", "scale": 1.0, "distance_bins": [0, 5000.0], "distance_scales": [1, 2]}
    header["__metadata__"]["xdl_card"] = json.dumps(card)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + n:])
    with pytest.raises(ModelFileError, match="distance_bins"):
        xdl.load_model(bad)


# ------------------------------------------------------------------------------------- distance

@pytest.mark.parametrize("share", [0.0, 1.0])  # scipy's transform on every field / the gap-pixel pass on every field
def test_gap_distance_is_scipys_capped_distance(monkeypatch, share):
    monkeypatch.setattr(uncertainty, "SCIPY_SHARE", share)
    rng = np.random.default_rng(3)
    for trial in range(40):
        shape = (int(rng.integers(1, 3)), int(rng.integers(1, 50)), int(rng.integers(1, 60)))
        valid = rng.random(shape) > rng.random() ** 2
        cap = float(rng.choice([0.5, 1.0, 2.5, 7.0, 40.0, 300.0]))
        np.testing.assert_array_equal(uncertainty.gap_distance(valid, cap), reference_distance(valid, cap))
    # a real-size field with a few gaps and a large block, and one without any valid pixel
    valid = rng.random((2, 700, 900)) > 0.03
    valid[0, 100:400, 200:650] = False
    valid[1] = False
    np.testing.assert_array_equal(uncertainty.gap_distance(valid, 128.0), reference_distance(valid, 128.0))


def test_lazy_distance_does_not_depend_on_the_chunking():
    rng = np.random.default_rng(1)
    valid = rng.random((3, 260, 300)) > 0.05
    valid[0, 20:200, 30:250] = False
    valid[2] = False
    ref = reference_distance(valid, 64.0)
    for chunks in [(1, 37, 53), (3, 260, 300), (2, 64, 7), (1, 260, 100)]:
        arr = xr.DataArray(da.from_array(valid, chunks=chunks), dims=("t", "y", "x"))
        out = uncertainty.lazy_gap_distance(arr, ("y", "x"), 64.0)
        assert isinstance(out.data, da.Array) and out.data.chunks == arr.data.chunks
        np.testing.assert_array_equal(out.values, ref)
    # spatial dims not last
    moved = xr.DataArray(np.moveaxis(valid, 0, 2), dims=("y", "x", "t"))
    out = uncertainty.lazy_gap_distance(moved, ("y", "x"), 64.0)
    np.testing.assert_array_equal(np.moveaxis(out.values, 2, 0), ref)


def test_distance_factor_interpolates_between_bin_centres():
    f = uncertainty.distance_factor(np.array([0, 1, 2, 3, 6, 12, 16, 40]), BINS, SCALES)
    # centres 1, 3, 6, 12 and the last edge 16
    np.testing.assert_allclose(f, [1.0, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 5.0])
    assert f.dtype == np.float32


# ------------------------------------------------------------------------------------- inpaint

def test_sigma_grows_with_distance_and_keeps_its_rules():
    arr = field()
    domain = xr.DataArray(np.ones(arr.shape[1:], bool), dims=("y", "x"))
    domain[44, 50:] = False  # part of the scan line outside: no fill, NaN sigma
    out = arr.to_dataset().dl.inpaint(model(distance_bins=BINS, distance_scales=SCALES), domain=domain,
                                      uncertainty=True)
    sigma, flags = out.sst_sigma.values, out.sst_inpainted.values
    valid = np.isfinite(arr.values)
    expected = np.float32(1.5) * uncertainty.distance_factor(reference_distance(valid, 16.0), BINS, SCALES)
    assert (sigma[flags == FLAG_VALID] == 0).all()
    filled = flags == FLAG_FILLED
    assert (sigma[filled] > 0).all() and np.isfinite(sigma[filled]).all()
    np.testing.assert_array_equal(sigma[filled], expected[filled])
    assert np.isnan(sigma[flags == FLAG_OUTSIDE]).all() and (flags == FLAG_OUTSIDE).any()
    assert sigma[0, 25, 29] == np.float32(1.5 * 4.5) and sigma[0, 10, 20] == np.float32(1.5)  # 15 px in / at the edge
    plain = arr.to_dataset().dl.inpaint(model(distance_bins=BINS, distance_scales=SCALES), domain=domain)
    np.testing.assert_array_equal(plain.sst.values, out.sst.values)  # the values do not change


def test_old_cards_take_the_old_path_bit_for_bit(monkeypatch):
    arr = field()
    before = arr.to_dataset().dl.inpaint(model(), uncertainty=True)

    def refuse(*a, **k):
        raise AssertionError("a card without distance_bins must not scale by distance")

    monkeypatch.setattr(uncertainty, "distance_scaled", refuse)
    again = arr.to_dataset().dl.inpaint(model(), uncertainty=True)
    for name in ("sst", "sst_sigma", "sst_inpainted"):
        assert again[name].values.tobytes() == before[name].values.tobytes()
    monkeypatch.undo()
    # factors of 1 at every distance: the same bytes as the old card
    ones = arr.to_dataset().dl.inpaint(model(distance_bins=BINS, distance_scales=[1.0] * 5), uncertainty=True)
    assert ones.sst_sigma.values.tobytes() == before.sst_sigma.values.tobytes()


def test_inpaint_sigma_is_chunk_invariant_and_lazy():
    arr = field((3, 96, 120))
    arr.values[1, 20:90, 10:110] = np.nan
    m = model(distance_bins=BINS, distance_scales=SCALES)
    ref = arr.to_dataset().dl.inpaint(m, uncertainty=True)
    for chunks in [{"time": 1, "y": 17, "x": 23}, {"time": 3, "y": 96, "x": 40}, {"time": 2, "y": 50, "x": 120}]:
        lazy = arr.chunk(chunks).to_dataset().dl.inpaint(m, uncertainty=True)
        assert isinstance(lazy.sst_sigma.data, da.Array)
        assert lazy.sst_sigma.chunks == lazy.sst.chunks
        assert lazy.sst_sigma.values.tobytes() == ref.sst_sigma.values.tobytes()


# ------------------------------------------------------------------------------------- fitting

def test_fit_recovers_known_per_bin_scales():
    rng = np.random.default_rng(0)
    edges = (0.0, 2.0, 4.0, 8.0, 16.0, 32.0)
    true = [1.0, 1.3, 1.8, 2.5, 4.0, 6.0]
    d = np.concatenate([rng.uniform(lo, hi, 40_000) for lo, hi in zip(edges, edges[1:] + (60.0,))])
    z = rng.normal(0, 1, d.size) * np.array(true)[np.searchsorted(edges[1:], np.minimum(d, 32.0), "right")]
    fit = distance_scales(z, d, edges=edges, refine=0)
    assert fit["distance_bins"] == list(edges) and fit["n_pixels"] == [40_000] * 6
    np.testing.assert_allclose(fit["distance_scales"], true, rtol=0.03)
    # applied with interpolation (refined): each bin's coverage is a Gaussian's
    fit = distance_scales(z, d, edges=edges)
    applied = uncertainty.distance_factor(d, fit["distance_bins"], fit["distance_scales"])
    for lo, hi in zip(edges, edges[1:] + (99.0,)):
        b = (d >= lo) & (d < hi)
        c1, c2 = coverage(z[b] / applied[b], 1.0)
        assert abs(c1 - ONE_SIGMA) < 0.02 and abs(c2 - TWO_SIGMA) < 0.02, (lo, c1, c2)


def test_fit_merges_sparse_bins_and_keeps_factors_growing():
    rng = np.random.default_rng(2)
    d = np.concatenate([rng.uniform(0, 2, 30_000), rng.uniform(2, 4, 100), rng.uniform(4, 8, 30_000),
                        rng.uniform(8, 16, 30_000)])
    spread = np.select([d < 4, d < 8], [1.0, 3.0], 2.0)  # the far bin is smaller: joins its neighbour
    z = rng.normal(0, 1, d.size) * spread
    fit = distance_scales(z, d, edges=(0, 2, 4, 8), refine=0)
    # 2-4 (100 pixels) joins 4-8 (2-8); its factor (3) exceeds 8+'s (2): they join (2-)
    assert fit["distance_bins"] == [0.0, 2.0] and fit["n_pixels"] == [30_000, 60_100]
    assert np.all(np.diff(fit["distance_scales"]) >= 0)
    assert distance_scales(np.zeros(0), np.zeros(0))["distance_scales"] == [1.0]


def test_fit_writes_a_distance_calibration_that_inpaint_uses():
    rng = np.random.default_rng(0)
    f = rng.standard_normal((4, 48, 48)).cumsum(1).cumsum(2).astype("f4")
    ds = xr.Dataset({"sst": (("time", "y", "x"), f, {"units": "K"})})
    m = fit(ds, "fill-unet", variables=["sst"], epochs=1, steps_per_epoch=2, batch_size=8, tile=32, val_steps=10,
            progress=False, depth=2, base_channels=4, max_channels=8)
    u = m.card["uncertainty"]
    modelcard.check_card(m.card)
    assert "by distance to the nearest valid pixel" in u["calibration"]
    assert len(u["distance_bins"]) == len(u["distance_scales"]) >= 2 and u["distance_bins"][0] == 0
    assert np.all(np.diff(u["distance_scales"]) >= 0)
    gappy = ds.sst.where(ds.sst < 2.0)
    out = gappy.dl.inpaint(m, uncertainty=True)
    assert (out.sst_sigma.values[np.isnan(gappy.values)] > 0).all()
