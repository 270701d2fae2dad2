"""Learned mappings between variables: pix2pix / UNet fits, what predict writes, save/load, the GOES example."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import xdl
from xdl.train import fit

from conftest import SHARED_DATA

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TINY_GAN = dict(depth=3, ngf=16, ndf=8, n_layers=2)


def _smooth(rng, shape, sigma):
    from scipy.ndimage import gaussian_filter

    f = gaussian_filter(rng.normal(size=shape), sigma=(0, sigma, sigma), mode="wrap")
    return f / f.std()


def paired_fields(n=6, ny=48, nx=64, seed=0) -> xr.Dataset:
    """Two smooth inputs and a target = smooth nonlinear function of both + texture tied to an input."""
    rng = np.random.default_rng(seed)
    a, b = _smooth(rng, (n, ny, nx), 4), _smooth(rng, (n, ny, nx), 6)
    texture = np.sin(3.0 * a) * _smooth(rng, (n, ny, nx), 1)
    target = 280.0 + 5.0 * np.tanh(a * b) + 2.0 * b ** 2 + 1.5 * texture
    x = np.linspace(-10.0, 10.0, nx)
    y = np.linspace(40.0, 30.0, ny)  # descending, as on most satellite grids
    dims = ("time", "y", "x")
    gm = {"grid_mapping": "crs"}
    ds = xr.Dataset(
        {"a": (dims, a.astype("f4"), {"units": "1", **gm}),
         "b": (dims, b.astype("f4"), {"units": "m s-1", **gm}),
         "t": (dims, target.astype("f4"), {"units": "K", "standard_name": "air_temperature",
                                           "long_name": "target", **gm}),
         "q": (dims, (0.01 * a * b).astype("f4"), {"units": "kg kg-1", **gm}),  # no standard_name
         "crs": ((), np.int32(0), {"grid_mapping_name": "latitude_longitude"})},
        coords={"time": np.arange(n).astype("datetime64[D]"),
                "y": ("y", y, {"units": "degrees_north", "standard_name": "latitude"}),
                "x": ("x", x, {"units": "degrees_east", "standard_name": "longitude"})},
        attrs={"title": "paired test fields"})
    return ds


@pytest.fixture(scope="module")
def gan():
    ds = paired_fields()
    model = fit(ds, "pix2pix", inputs=["a", "b"], targets=["t", "q"], epochs=5, steps_per_epoch=30,
                batch_size=8, tile=32, val=0.34, val_steps=2, progress=False, seed=0, **TINY_GAN)
    return ds, model


def test_pix2pix_fit_lowers_val_l1_and_logs_gan_terms(gan):
    _, model = gan
    tr = model.card["training"]
    h = tr["history"]
    assert tr["mode"] == "pix2pix" and tr["split"]["kind"] == "time"
    assert tr["loss_weights"] == {"gan": 1.0, "l1": 100.0}
    assert tr["optimizer"]["lr"] == 2e-4 and tr["optimizer"]["betas"] == [0.5, 0.999]
    for key in ("d_loss", "g_gan", "g_l1", "train_loss", "val_loss"):
        assert len(h[key]) == 5 and np.all(np.isfinite(h[key])), key
    # The discriminator and the adversarial term are really trained (not constant, not zero).
    assert all(v > 0 for v in h["d_loss"] + h["g_gan"])
    assert h["g_l1"][-1] < h["g_l1"][0]
    # Validation L1 (the generator's, normalised units) goes down, and the best weights are kept.
    assert min(h["val_loss"]) < 0.8 * h["val_loss"][0]
    assert model.card["metrics"]["val_l1"] == min(h["val_loss"])


def test_unet_fit_lowers_val_l1():
    ds = paired_fields()
    model = fit(ds, "unet", inputs=["a", "b"], targets=["t"], epochs=3, steps_per_epoch=10, batch_size=4,
                tile=32, val=0.34, val_steps=2, progress=False, depth=2, base_channels=8)
    h = model.card["training"]["history"]
    assert model.card["training"]["mode"] == "paired" and "d_loss" not in h
    assert min(h["val_loss"]) < h["val_loss"][0]


def test_predict_writes_named_cf_variables_on_the_input_grid(gan):
    ds, model = gan
    out = ds.dl.predict(model)
    assert set(out.data_vars) == {"t", "q", "crs"}
    for name in ("t", "q"):
        v = out[name]
        assert v.dims == ds[name].dims and v.dtype == np.float32
        assert v.attrs["units"] == ds[name].attrs["units"]
        assert v.attrs["grid_mapping"] == "crs"
        for c in ("time", "y", "x"):
            assert np.array_equal(v[c].values, ds[c].values)
            assert v[c].attrs == ds[c].attrs
        assert np.isfinite(v.values).all()
    assert out["t"].attrs["standard_name"] == "air_temperature"
    assert "standard_name" not in out["q"].attrs  # none on the target: none invented
    assert out["crs"].attrs["grid_mapping_name"] == "latitude_longitude"
    first = out.attrs["history"].splitlines()[0]
    assert "predict model=pix2pix" in first and "['a', 'b']" in first
    assert out.attrs["title"] == ds.attrs["title"]
    # Denormalised into physical units: the output lies in the target's range, not around 0.
    assert abs(float(out["t"].mean()) - float(ds["t"].mean())) < 2.0


def test_predict_inputs_renamed_outputs(gan):
    ds, model = gan
    renamed = ds.rename({"a": "a2"})
    out = renamed.dl.predict(model, inputs=["a2", "b"], outputs=["t_hat", "q_hat"])
    assert {"t_hat", "q_hat"} <= set(out.data_vars)
    ref = ds.dl.predict(model)
    # The card's normalisation and units belong to the channel positions, whatever the names.
    assert np.array_equal(out["t_hat"].values, ref["t"].values)
    assert out["t_hat"].attrs["units"] == "K"


def test_save_load_predict_is_bit_identical(gan, tmp_path):
    ds, model = gan
    path = tmp_path / "map.xdl.safetensors"
    model.save(path)
    back = xdl.load_model(path)
    assert back.card["inputs"] == ["a", "b"] and back.card["outputs"] == ["t", "q"]
    assert back.card["output_units"] == {"t": "K", "q": "kg kg-1"}
    assert back.card["normalization"] == model.card["normalization"]
    assert back.content_hash() == model.content_hash()
    ref, again = ds.dl.predict(model), ds.dl.predict(back)
    for name in ("t", "q"):
        assert np.array_equal(ref[name].values, again[name].values)
        assert ref[name].attrs == again[name].attrs
    # Lazy (dask) input gives the same numbers as in-memory input.
    lazy = ds.chunk({"time": 2}).dl.predict(back)
    assert np.array_equal(lazy["t"].compute().values, ref["t"].values)


@pytest.mark.slow
def test_goes_band_mapping_example_runs(tmp_path):
    if not sorted((SHARED_DATA / "goes").glob("OR_ABI-L1b-RadM1-M6C1[034]_G17_*.nc")):
        pytest.skip(f"GOES-17 mesoscale files are absent under {SHARED_DATA / 'goes'} (shared data folder missing)")
    proc = subprocess.run([sys.executable, str(EXAMPLES / "goes_band_mapping.py"), "--small", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, cwd=EXAMPLES)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    for label in ("pix2pix cGAN", "UNet (L1)", "linear regression"):
        assert label in out
    assert "RMSE" in out and "std ratio" in out
    assert out.count("save -> load -> predict bit for bit: True") == 2
    assert "units='mW m-2 sr-1 (cm-1)-1'" in out and "grid_mapping='goes_imager_projection'" in out
    assert (tmp_path / "goes_band_mapping.png").stat().st_size > 10_000
