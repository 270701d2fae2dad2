"""CUDA paths: same numbers as the CPU (to bf16/TF32 rounding), valid data still bit-identical."""

import numpy as np
import pytest
import xarray as xr

import xdl

pytestmark = pytest.mark.gpu


def _field(shape=(6, 200, 260), seed=0):
    rng = np.random.default_rng(seed)
    return xr.DataArray(rng.standard_normal(shape).astype("f4"), dims=("time", "y", "x"), name="v")


def test_predict_on_cuda_matches_cpu():
    net = xdl.zoo.create("unet", in_channels=1, out_channels=1, depth=3, base_channels=8)
    arr = _field().chunk({"time": 2, "y": 100})
    cpu = arr.dl.predict(net, device="cpu").values
    fp32 = arr.dl.predict(net, device="cuda", precision="fp32").values
    bf16 = arr.dl.predict(net, device="cuda").values
    np.testing.assert_allclose(fp32, cpu, atol=2e-3)
    assert np.abs(bf16 - cpu).mean() < 0.05 * np.abs(cpu).mean() + 1e-3


def test_inpaint_on_cuda_keeps_valid_values_bit_identical():
    m = xdl.zoo.create("pconv-unet", in_channels=1, depth=3, base_channels=8,
                       card={"normalization": {"kind": "per_sample"}})
    arr = _field()
    arr[:, 50:53, :] = np.nan
    out = arr.chunk({"time": 3}).dl.inpaint(m, device="cuda").values
    valid = np.isfinite(arr.values)
    assert np.array_equal(out[valid], arr.values[valid])
    assert np.isfinite(out).all()


def test_many_threads_share_one_device():
    # dask's default threaded scheduler: several threads, one GPU; results must not mix up.
    net = xdl.zoo.create("unet", in_channels=1, out_channels=1, depth=2, base_channels=8)
    arr = _field((16, 64, 64)).chunk({"time": 1})
    threaded = arr.dl.predict(net, device="cuda", precision="fp32").compute(scheduler="threads", num_workers=8)
    serial = arr.dl.predict(net, device="cuda", precision="fp32").compute(scheduler="synchronous")
    np.testing.assert_array_equal(threaded.values, serial.values)


def test_compiled_model_matches_eager_on_cuda():
    net = xdl.zoo.create("unet", in_channels=1, out_channels=1, depth=2, base_channels=8)
    arr = _field((8, 64, 64)).chunk({"time": 4})
    eager = arr.dl.predict(net, device="cuda", precision="fp32").values
    compiled = arr.dl.predict(net, device="cuda", precision="fp32", compile=True).values
    np.testing.assert_allclose(compiled, eager, atol=1e-3)


def test_fill_unet_on_cuda_keeps_valid_values_bit_identical():
    m = xdl.zoo.create("fill-unet", in_channels=1, depth=3, base_channels=8,
                       card={"normalization": {"kind": "per_sample"}})
    arr = _field()
    arr[:, 40:90, 100:160] = np.nan
    out = arr.chunk({"time": 3}).dl.inpaint(m, device="cuda").values
    valid = np.isfinite(arr.values)
    assert np.array_equal(out[valid], arr.values[valid])
    assert np.isfinite(out).all()


def test_bundled_context_model_on_cuda_matches_cpu():
    """The kriged context fill (regression, lag statistics, distances, harmonic fills) on the GPU
    under its default bf16 autocast: the CPU's numbers to float rounding, valid data bit-identical."""
    rng = np.random.default_rng(3)
    base = rng.standard_normal((4, 200, 260)).cumsum(-1).astype("f4")
    t = base.copy()
    t[:, 60:63, :] = np.nan
    t[:, 100:140, 50:120] = np.nan
    ds = xr.Dataset({"t": (("time", "y", "x"), t), "c": (("time", "y", "x"), 2 * base + 1)})
    kw = dict(variables=["t"], context=["c"], time_window=1, uncertainty=True, domain=None)
    cpu = ds.dl.inpaint(device="cpu", **kw)
    gpu = ds.dl.inpaint(device="cuda", **kw)
    valid = np.isfinite(t)
    assert np.array_equal(gpu.t.values[valid], t[valid])
    np.testing.assert_allclose(gpu.t.values, cpu.t.values, rtol=1e-3, atol=1e-3 * float(np.nanstd(t)))
    np.testing.assert_allclose(gpu.t_sigma.values, cpu.t_sigma.values, rtol=1e-2, atol=1e-3 * float(np.nanstd(t)))
