"""Scale and reliability: resumable writes, cluster faults, weights shipped once, bad input,
determinism and chunking invariance as properties."""

import json
import os
import sys

import cloudpickle
import numpy as np
import pytest
import torch
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xdl
from xdl.errors import InputError, OutputExistsError, XdlError
from xdl.io import LOG_NAME, to_zarr_resumable

# Classes defined here travel to worker processes by value (the tests dir is not importable there).
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def conv(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Conv2d(4, 1, 3, padding=1)).eval()


def dataset(n=6, ny=48, nx=64, seed=0):
    rng = np.random.default_rng(seed)
    data = rng.standard_normal((n, ny, nx)).astype("f4")
    return xr.Dataset({"v": (("time", "y", "x"), data)},
                      coords={"time": np.arange(n), "y": np.arange(ny) * 1.0, "x": np.arange(nx) * 1.0})


class FailsOnce(torch.nn.Module):
    """Behaves like ``inner`` but fails the first time it sees a batch after ``fail_after`` calls,
    leaving a flag file so that retries (and resumed runs) succeed."""

    def __init__(self, inner, flag, fail_after=0, hard=False):
        super().__init__()
        self.inner, self.flag, self.fail_after, self.hard = inner, str(flag), fail_after, hard
        self.calls = 0

    def forward(self, x):
        self.calls += x.shape[-1] > 8  # count real tiles, not the engine's tiny shape probes
        if self.calls > self.fail_after and not os.path.exists(self.flag):
            open(self.flag, "w").close()
            if self.hard:
                os._exit(1)  # a worker process dying mid-write
            raise RuntimeError("simulated interruption")
        return self.inner(x)


def test_interrupted_write_resumes_to_the_same_store(tmp_path):
    ds = dataset().chunk({"time": 1})
    reference = tmp_path / "reference.zarr"
    to_zarr_resumable(ds.dl.predict(conv(), halo=2), reference)
    flaky = FailsOnce(conv(), tmp_path / "failed.flag", fail_after=3)
    store = tmp_path / "out.zarr"
    with pytest.raises(RuntimeError, match="simulated"):
        to_zarr_resumable(ds.dl.predict(flaky, halo=2, mode="spatial"), store,
                          regions_per_step=1)
    done_before = len(json.loads((store / LOG_NAME).read_text())["done"])
    assert 0 < done_before < ds.sizes["time"]
    to_zarr_resumable(ds.dl.predict(flaky, halo=2, mode="spatial"), store, resume=True, regions_per_step=1)
    np.testing.assert_array_equal(xr.open_zarr(store).v.values, xr.open_zarr(reference).v.values)


def test_resume_refuses_a_different_job_and_existing_outputs_need_mode_w(tmp_path):
    ds = dataset(n=2).chunk({"time": 1})
    store = tmp_path / "out.zarr"
    to_zarr_resumable(ds, store)
    with pytest.raises(OutputExistsError, match="mode='w'"):
        to_zarr_resumable(ds, store)
    with pytest.raises(InputError, match="different job"):
        to_zarr_resumable(dataset(n=3).chunk({"time": 1}), store, resume=True)
    to_zarr_resumable(ds * 2, store, mode="w")
    np.testing.assert_array_equal(xr.open_zarr(store).v.values, ds.v.values * 2)


def test_of_two_writes_started_at_once_to_a_new_store_one_is_refused(tmp_path, monkeypatch):
    """Found by a probe: two CLI writes to one new OUT both laid the store out and wrote into it,
    mixing two jobs, and both exited 0. The store's folder is claimed atomically."""
    store = tmp_path / "out.zarr"
    store.mkdir()  # the other process's claim, made after this one looked
    real_lexists = os.path.lexists
    monkeypatch.setattr(os.path, "lexists", lambda p: False if os.fspath(p) == os.fspath(store) else real_lexists(p))
    with pytest.raises(OutputExistsError, match="another process created it"):
        to_zarr_resumable(dataset(n=2).chunk({"time": 1}), store)
    assert store.is_dir() and not any(store.iterdir())  # the other's folder, untouched


def test_a_second_writer_of_one_store_is_refused_and_a_dead_ones_lock_is_taken_over(tmp_path):
    """Found by a probe: two --overwrite writes of one store at once removed each other's store and
    both failed, the output lost. A writer holds an OS lock (flock) on .NAME.xdl-writer beside the
    store, released when its process ends, killed or not: a file left by a killed run blocks nothing."""
    import socket
    import subprocess

    from xdl.io.files import writer_lock

    ds = dataset(n=2).chunk({"time": 1})
    store = tmp_path / "out.zarr"
    to_zarr_resumable(ds, store)
    with writer_lock(store):  # another writer at work
        with pytest.raises(OutputExistsError, match="another xdl process .* is writing it"):
            to_zarr_resumable(ds * 2, store, mode="w")
    np.testing.assert_array_equal(xr.open_zarr(store).v.values, ds.v.values)  # untouched
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = "".join(c if c.isalnum() or c in "-_" else "_" for c in socket.gethostname()) or "host"
    (tmp_path / ".out.zarr.xdl-writer").write_text(f"host {host}, pid {gone.stdout.strip()}")  # a killed run's file
    to_zarr_resumable(ds * 2, store, mode="w")
    np.testing.assert_array_equal(xr.open_zarr(store).v.values, ds.v.values * 2)
    assert not (tmp_path / ".out.zarr.xdl-writer").exists()


def test_resume_refuses_a_store_changed_after_the_job(tmp_path):
    """Found by a probe: a finished store appended to by another tool (its status dropped, a
    longer time axis) was resumed, marked complete and kept."""
    ds = dataset(n=4).chunk({"time": 1})
    store = tmp_path / "out.zarr"
    to_zarr_resumable(ds, store)
    dataset(n=2, seed=1).assign_coords(time=[4, 5]).chunk({"time": 1}).to_zarr(store, append_dim="time")
    with pytest.raises(InputError, match="holds 'v' with shape \\(6, 48, 64\\).*not the store this job left"):
        to_zarr_resumable(ds, store, resume=True)
    fresh = tmp_path / "fresh.zarr"
    to_zarr_resumable(ds, fresh)
    meta = fresh / "zarr.json"
    root = json.loads(meta.read_text())
    root["attributes"] = {}
    meta.write_text(json.dumps(root))
    with pytest.raises(InputError, match="no xdl write status"):
        to_zarr_resumable(ds, fresh, resume=True)


def test_write_output_refuses_to_replace_the_input_it_reads(tmp_path):
    """Found by a probe: write_output(result, its own input, overwrite=True) replaced the store it
    was still reading (0 finite values left) and a netCDF input, which the CLI refuses."""
    from xdl.io import write_output

    ds = dataset(n=2)
    ds["v"][:, 5:8, :] = np.nan
    ds.to_zarr(tmp_path / "in.zarr")
    ds.to_netcdf(tmp_path / "in.nc")
    for name, opened in (("in.zarr", xr.open_zarr(tmp_path / "in.zarr")),
                         ("in.nc", xr.open_dataset(tmp_path / "in.nc", chunks={}))):
        filled = opened.dl.inpaint(variables=["v"], domain=None)
        with pytest.raises(InputError, match="the output is an input"):
            write_output(filled, str(tmp_path / name), overwrite=True)
    np.testing.assert_array_equal(xr.open_zarr(tmp_path / "in.zarr").v.values, ds.v.values)
    # Merged inputs keep no encoding["source"]: the files are found in the dask graph (a merged
    # zarr store was emptied by its own result before).
    merged = xr.merge([xr.open_zarr(tmp_path / "in.zarr"),
                       xr.open_mfdataset([tmp_path / "in.nc"]).rename(v="w")])
    filled = merged.dl.inpaint(variables=["v", "w"], domain=None)
    assert not filled.encoding.get("source") and not filled.v.encoding.get("source")
    for name in ("in.zarr", "in.nc"):
        with pytest.raises(InputError, match="the output is an input"):
            write_output(filled, str(tmp_path / name), overwrite=True)
    # A file:// URL (an fsspec store, no root), merged or not, and a netCDF3 file read by scipy (review).
    ds.to_netcdf(tmp_path / "in3.nc", format="NETCDF3_64BIT", engine="scipy")
    url = xr.open_zarr(f"file://{tmp_path / 'in.zarr'}")
    scipy_nc = xr.open_dataset(tmp_path / "in3.nc", engine="scipy", chunks={}).rename(v="s")
    for opened, name in ((url, "in.zarr"), (xr.merge([url, scipy_nc]), "in.zarr"), (xr.merge([url, scipy_nc]), "in3.nc")):
        with pytest.raises(InputError, match="the output is an input"):
            write_output(opened.dl.inpaint(variables=["v"], domain=None), str(tmp_path / name), overwrite=True)
    np.testing.assert_array_equal(xr.open_zarr(tmp_path / "in.zarr").v.values, ds.v.values)


def test_outputs_of_awkward_kinds_and_names(tmp_path):
    """Found by a probe: overwriting a link to a store or a file named *.zarr failed with "Free
    space ... --resume"; a missing folder failed after the work for netCDF (zarr made it); a
    250-character name failed as "Permission denied" (its temporary name was too long)."""
    from xdl.io import write_output

    ds = dataset(n=2).chunk({"time": 1})
    (tmp_path / "elsewhere.zarr").mkdir()
    (tmp_path / "link.zarr").symlink_to(tmp_path / "elsewhere.zarr")
    (tmp_path / "file.zarr").write_text("not a store")
    for name in ("link.zarr", "file.zarr"):
        write_output(ds, str(tmp_path / name), overwrite=True)
        np.testing.assert_array_equal(xr.open_zarr(tmp_path / name).v.values, ds.v.values)
    assert (tmp_path / "elsewhere.zarr").is_dir()  # the link went, not what it pointed to
    for name in ("missing/out.nc", "missing/out.zarr"):
        with pytest.raises(InputError, match="the folder .*missing does not exist; create it first"):
            write_output(ds, str(tmp_path / name))
    long = tmp_path / ("x" * 250 + ".nc")
    write_output(ds, str(long))
    np.testing.assert_array_equal(xr.open_dataset(long).v.values, ds.v.values)
    assert sorted(os.listdir(tmp_path)) == sorted(["elsewhere.zarr", "link.zarr", "file.zarr", long.name])


@pytest.mark.slow
def test_killed_worker_leaves_a_complete_correct_store(tmp_path):
    distributed = pytest.importorskip("distributed")
    ds = dataset(n=8).chunk({"time": 1})
    expected = ds.dl.predict(conv(), halo=2).compute(scheduler="threads")
    killer = FailsOnce(conv(), tmp_path / "killed.flag", fail_after=1, hard=True)
    store = tmp_path / "out.zarr"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster):
        ds.dl.predict(killer, halo=2, mode="spatial").to_zarr(store)
    assert (tmp_path / "killed.flag").exists()  # a worker really died
    np.testing.assert_array_equal(xr.open_zarr(store).v.values, expected.v.values)


@pytest.mark.slow
def test_weights_travel_once_per_worker():
    distributed = pytest.importorskip("distributed")
    ds = dataset(n=16).chunk({"time": 1})
    with distributed.LocalCluster(n_workers=2, threads_per_worker=2, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        out = ds.dl.predict(conv(), halo=2).compute()
        loads = client.run(lambda: __import__("xdl.engine.runner", fromlist=["x"]).ModelPayload.loads)
    assert out.v.notnull().all()
    assert sum(loads.values()) <= len(loads)  # 16 tasks, at most one copy of the weights per worker
    assert all(count <= 1 for count in loads.values())


def test_chunks_smaller_than_the_halo_are_rechunked_not_wrong():
    ds = dataset(n=1, ny=40, nx=40)
    whole = ds.dl.predict(conv(), halo=16).v.values
    tiny = ds.chunk({"y": 4, "x": 4}).dl.predict(conv(), halo=16).v.values
    np.testing.assert_allclose(tiny, whole, atol=1e-6)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cy=st.integers(3, 48), cx=st.integers(3, 64), ct=st.integers(1, 3), seed=st.integers(0, 99))
def test_chunking_invariance_property(cy, cx, ct, seed):
    ds = dataset(n=3, seed=seed)
    ref = ds.dl.predict(conv(), tile=32, halo=4).v.values
    out = ds.chunk({"time": ct, "y": cy, "x": cx}).dl.predict(conv(), tile=32, halo=4).v.values
    np.testing.assert_allclose(out, ref, atol=1e-5)


def test_determinism_bit_for_bit_on_cpu():
    ds = dataset().chunk({"time": 2, "y": 24})
    model = xdl.zoo.create("pconv-unet", in_channels=1, depth=2, base_channels=4,
                           card={"normalization": {"kind": "per_sample"}})
    ds["v"][:, 10:12, :] = np.nan
    first = ds.dl.inpaint(model).v.values
    second = ds.dl.inpaint(model).v.values
    assert np.array_equal(first, second, equal_nan=True)


BAD_INPUTS = {
    "object dtype": lambda: xr.DataArray(np.array([["a"] * 8] * 8, dtype=object), dims=("y", "x"), name="s").dl.predict(conv(), halo=0),
    "integer without fill rule": lambda: xr.DataArray(np.zeros((8, 8), "i4"), dims=("y", "x"), name="n").dl.inpaint(
        xdl.zoo.create("pconv-unet", in_channels=1, depth=2, base_channels=4)),
    "NaN coordinate": lambda: xr.DataArray(np.zeros((4, 4), "f4"), dims=("y", "x"), coords={"x": [0, 1, np.nan, 3]}).dl.predict(conv(), halo=0),
    "non-monotonic coordinate": lambda: xr.DataArray(np.zeros((4, 4), "f4"), dims=("y", "x"), coords={"y": [0, 2, 1, 3]}).dl.predict(conv(), halo=0),
    "unusable dims": lambda: xr.DataArray(np.zeros((4, 4), "f4"), dims=("a", "b")).dl.predict(conv(), halo=0),
    "too few channels": lambda: dataset().dl.predict(torch.nn.Conv2d(3, 1, 1), inputs=["v"]),
    "one-pixel field for a spatial model": lambda: xr.DataArray(np.zeros((1, 5), "f4"), dims=("y", "x")).dl.predict(conv(), halo=0),
    "unknown zoo name": lambda: xdl.zoo.create("no-such-net"),
    "unknown model file or name": lambda: dataset().dl.predict("no_such_model.safetensors"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_gets_a_specific_xdl_error(case):
    with pytest.raises(XdlError) as info:
        BAD_INPUTS[case]()
    assert len(str(info.value)) > 20  # a sentence that names the problem and the fix


def test_resumable_write_keeps_lazy_coordinates_and_small_variables(tmp_path):
    # As from open_dataset(chunks={}): every variable and non-index coordinate is dask-backed.
    ds = dataset(n=3).assign_coords(band_id=("band", np.array([16], "i1")),
                                    lat=(("y", "x"), np.random.default_rng(0).random((48, 64))))
    ds["crs"] = ((), np.int32(7), {"grid_mapping_name": "geostationary"})
    lazy = ds.chunk({"time": 1})
    lazy = lazy.assign_coords(band_id=lazy.band_id.chunk(), lat=lazy.lat.chunk())
    store = tmp_path / "out.zarr"
    to_zarr_resumable(lazy, store)
    back = xr.open_zarr(store)
    np.testing.assert_array_equal(back.band_id.values, [16])
    np.testing.assert_array_equal(back.lat.values, ds.lat.values)
    assert int(back.crs.values) == 7 and back.crs.attrs["grid_mapping_name"] == "geostationary"
    np.testing.assert_array_equal(back.v.values, ds.v.values)


# ---------------------------------------------------------------- compile=

def _batch_recorder(monkeypatch, fail=False):
    """Stand in for torch.compile (no compiler needed): record batch shapes, or fail like a
    missing toolchain would."""
    shapes = []

    def fake_compile(module, **kwargs):
        def run(*args):
            if fail:
                raise RuntimeError("no C++ compiler found")
            shapes.append(tuple(args[0].shape))
            return module(*args)
        return run

    monkeypatch.setattr(torch, "compile", fake_compile)
    xdl.engine.runner.clear_cache()
    return shapes


def test_compiled_path_pads_short_batches_to_one_shape(monkeypatch):
    shapes = _batch_recorder(monkeypatch)
    net = xdl.zoo.create("unet", in_channels=1, out_channels=1, depth=2, base_channels=4)
    arr = xr.DataArray(np.random.default_rng(0).standard_normal((7, 40, 40)).astype("f4"), dims=("t", "y", "x"))
    eager = arr.dl.predict(net, compile=False).values
    compiled = arr.dl.predict(net, compile=True, batch_size=4).values
    np.testing.assert_allclose(compiled, eager, atol=1e-6)
    assert {s[0] for s in shapes} == {4}  # 7 samples in batches of 4: 4, then 3 padded to 4


def test_compile_failure_falls_back_to_eager_with_a_warning(monkeypatch):
    _batch_recorder(monkeypatch, fail=True)
    net = xdl.zoo.create("unet", in_channels=1, out_channels=1, depth=2, base_channels=4)
    arr = xr.DataArray(np.ones((2, 32, 32), "f4"), dims=("t", "y", "x"))
    with pytest.warns(RuntimeWarning, match="torch.compile failed.*compile=False"):
        out = arr.dl.predict(net, compile=True).values
    np.testing.assert_allclose(out, arr.dl.predict(net, compile=False).values)


def test_compile_option_is_checked():
    net = xdl.zoo.create("unet", in_channels=1, out_channels=1, depth=1, base_channels=4)
    arr = xr.DataArray(np.ones((16, 16), "f4"), dims=("y", "x"))
    with pytest.raises(InputError, match="compile='yes'"):
        arr.dl.predict(net, compile="yes")
