"""CLI and io hardening (issue 13 points 1, 4, 6, 8; issue 12 points 9, 12): --resume never mixes
two jobs, --overwrite never deletes an input, interrupted stores are recognisable, hostile masks
and failing writes give one line and exit 1, untouched variables pass through."""

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import types

import numpy as np
import pytest
import xarray as xr

import xdl
import xdl.io.zarr
from xdl.cli import main
from xdl.errors import InputError, OutputWriteError
from xdl.io import JOB_NAME, LOG_NAME, STATUS_ATTR, store_status, to_zarr_resumable
from xdl.io.expr import mask_expression
from xdl.io.write import write_output

from conftest import shared_file


def field(seed=0, n=3, ny=32, nx=40):
    rng = np.random.default_rng(seed)
    base = 280 + 4 * np.sin(np.linspace(0, 3, nx))[None, :] * np.cos(np.linspace(0, 2, ny))[:, None]
    sst = np.stack([base + 0.1 * rng.standard_normal((ny, nx)) for _ in range(n)]).astype("f4")
    sst[:, 8:11, :] = np.nan
    dqf = np.where(np.isfinite(sst), 0, 1).astype("i1")
    dqf[:, 20:22, 5:9] = 1  # finite but flagged: --mask decides whether they are kept
    return xr.Dataset({"sst": (("time", "y", "x"), sst, {"units": "K"}), "DQF": (("time", "y", "x"), dqf)},
                      coords={"time": np.arange(n) * 1.0, "y": np.arange(ny) * 1.0, "x": np.arange(nx) * 1.0})


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    import torch

    d = tmp_path_factory.mktemp("hard")
    field(0).to_netcdf(d / "a.nc")
    field(1).to_netcdf(d / "b.nc")  # same shape, other values
    models = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        m = xdl.zoo.create("pconv-unet", in_channels=1, depth=2, base_channels=4,
                           card={"normalization": {"kind": "per_sample"}})
        m.save(d / f"gap{seed}.safetensors")
        models.append(str(d / f"gap{seed}.safetensors"))
    return types.SimpleNamespace(dir=d, a=str(d / "a.nc"), b=str(d / "b.nc"), m0=models[0], m1=models[1])


def run(*args):
    return main(["inpaint", *map(str, args), "--chunks", "time=1", "--no-progress"])


def interrupt_after_first_region(monkeypatch):
    """Ctrl-C right after the first region is logged, as a user would; returns an undo."""
    real = xdl.io.zarr._write_log

    def log(path, fingerprint, done):
        real(path, fingerprint, done)
        if len(done) == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(xdl.io.zarr, "_write_log", log)
    return lambda: monkeypatch.setattr(xdl.io.zarr, "_write_log", real)


# ----------------------------------------------------------------------------- issue 13.1: resume

def test_resume_refuses_another_input_model_mask_or_domain(env, tmp_path, monkeypatch, capsys):
    reference = tmp_path / "ref.zarr"
    assert run(env.a, reference, "--model", env.m0, "--mask", "DQF == 0") == 0
    out = tmp_path / "out.zarr"
    undo = interrupt_after_first_region(monkeypatch)
    assert run(env.a, out, "--model", env.m0, "--mask", "DQF == 0") == 130
    undo()
    assert json.loads((out / LOG_NAME).read_text())["done"] == [0]
    capsys.readouterr()
    other = tmp_path / "a_copy.nc"  # same name stem, same shape, other values
    shutil.copy(env.b, other)
    cases = [((other, out, "--model", env.m0, "--mask", "DQF == 0"), "IN"),
             ((env.a, out, "--model", env.m1, "--mask", "DQF == 0"), "--model"),
             ((env.a, out, "--model", env.m0, "--mask", "DQF < 2"), "--mask changed: 'DQF == 0' -> 'DQF < 2'"),
             ((env.a, out, "--model", env.m0, "--mask", "DQF == 0", "--domain", "none"), "--domain changed"),
             ((env.a, out, "--model", env.m0), "--mask changed")]
    for args, named in cases:
        assert run(*args, "--resume") == 1, args
        err = capsys.readouterr().err
        assert "different job" in err and named in err and "Traceback" not in err, (args, err)
        assert len(err.strip().splitlines()) == 1
    assert json.loads((out / LOG_NAME).read_text())["done"] == [0]  # nothing was written by them
    # The same input touched (same values, new modification time) is another input too.
    st = os.stat(env.a)
    os.utime(env.a, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    try:
        assert run(env.a, out, "--model", env.m0, "--mask", "DQF == 0", "--resume") == 1
        assert "IN files changed" in capsys.readouterr().err
    finally:
        os.utime(env.a, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert run(env.a, out, "--model", env.m0, "--mask", "DQF == 0", "--resume") == 0
    got, want = xr.open_zarr(out), xr.open_zarr(reference)
    for name in ("sst", "sst_inpainted"):
        np.testing.assert_array_equal(got[name].values, want[name].values)
    assert got.attrs[STATUS_ATTR] == "complete"


def test_resume_names_the_input_by_its_files_not_its_spelling(env, tmp_path, monkeypatch, capsys):
    # Probe: the same IN given as an absolute path from another directory was refused ("IN changed").
    out = tmp_path / "out.zarr"
    undo = interrupt_after_first_region(monkeypatch)
    monkeypatch.chdir(os.path.dirname(env.a))
    assert run(os.path.basename(env.a), out, "--model", env.m0) == 130
    undo()
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert run(os.path.abspath(env.a), out, "--model", env.m0, "--resume") == 0, capsys.readouterr().err
    assert xr.open_zarr(out).attrs[STATUS_ATTR] == "complete"


def test_resuming_a_finished_store_with_another_input_is_refused(env, tmp_path, capsys):
    out = tmp_path / "done.zarr"
    assert run(env.a, out, "--model", env.m0) == 0
    before = xr.open_zarr(out).sst.values
    assert run(env.a, out, "--model", env.m0, "--resume") == 0  # same job: nothing to do
    capsys.readouterr()
    assert run(env.b, out, "--model", env.m0, "--resume") == 1
    err = capsys.readouterr().err
    assert "different job" in err and "IN" in err and "wrote" not in err
    np.testing.assert_array_equal(xr.open_zarr(out).sst.values, before)


def test_library_resume_compares_the_job():
    ds = field().chunk({"time": 1})
    path = os.path.join(pytest.importorskip("tempfile").mkdtemp(), "lib.zarr")
    to_zarr_resumable(ds, path, job={"model": "abc", "mask": "DQF == 0"})
    assert json.loads(open(os.path.join(path, JOB_NAME)).read())["mask"] == "DQF == 0"
    to_zarr_resumable(ds, path, job={"model": "abc", "mask": "DQF == 0"}, resume=True)
    with pytest.raises(InputError, match=r"mask changed: 'DQF == 0' -> 'DQF < 2'.*mode='w'"):
        to_zarr_resumable(ds, path, job={"model": "abc", "mask": "DQF < 2"}, resume=True)
    with pytest.raises(InputError, match="model changed"):
        to_zarr_resumable(ds, path, job={"model": "xyz", "mask": "DQF == 0"}, resume=True)


# ----------------------------------------------------------------------------- issue 13.4: overwrite

def test_overwrite_never_deletes_an_input(env, tmp_path, capsys):
    # xdl inpaint par.zarr/in.nc par.zarr --overwrite
    par = tmp_path / "par.zarr"
    par.mkdir()
    shutil.copy(env.a, par / "in.nc")
    assert run(par / "in.nc", par, "--model", env.m0, "--overwrite") == 1
    err = capsys.readouterr().err
    assert "contains an input" in err and str(par / "in.nc") in err
    assert (par / "in.nc").exists()
    # xdl inpaint 'g/*.zarr' g/b.zarr --overwrite
    g = tmp_path / "g"
    g.mkdir()
    field(0).chunk({"time": 1}).to_zarr(g / "a.zarr")
    field(1).isel(time=[0]).assign_coords(time=[9.0]).to_zarr(g / "b.zarr")
    kept = xr.open_zarr(g / "b.zarr").sst.values
    assert run(g / "*.zarr", g / "b.zarr", "--model", env.m0, "--overwrite") == 1
    assert "is an input" in capsys.readouterr().err
    np.testing.assert_array_equal(xr.open_zarr(g / "b.zarr").sst.values, kept)
    # An output inside an input store, and the model file as output.
    assert run(g / "a.zarr", g / "a.zarr" / "sub.zarr", "--model", env.m0, "--overwrite") == 1
    assert "lies inside an input" in capsys.readouterr().err
    model_copy = tmp_path / "m.nc"
    shutil.copy(env.m0, model_copy)
    assert run(env.a, model_copy, "--model", model_copy, "--overwrite") == 1
    assert model_copy.read_bytes() == open(env.m0, "rb").read()


# ----------------------------------------------------------------------------- issue 13.6: incomplete

@pytest.mark.filterwarnings("ignore:Object at .* is not recognized")
def test_interrupted_store_is_marked_and_refused_as_input(env, tmp_path, monkeypatch, capsys):
    out = tmp_path / "part.zarr"
    undo = interrupt_after_first_region(monkeypatch)
    assert run(env.a, out, "--model", env.m0) == 130
    undo()
    assert store_status(out) == "incomplete"
    assert xr.open_zarr(out, consolidated=False).attrs[STATUS_ATTR] == "incomplete"
    capsys.readouterr()
    assert run(out, tmp_path / "next.zarr", "--model", env.m0) == 1
    err = capsys.readouterr().err
    assert "interrupted xdl write (1 region(s) written)" in err and "--resume" in err
    assert not (tmp_path / "next.zarr").exists()
    assert run(env.a, out, "--model", env.m0) == 1  # a plain rerun says how to finish it
    err = capsys.readouterr().err
    assert "interrupted" in err and "--resume" in err and "--overwrite" in err
    assert run(env.a, out, "--model", env.m0, "--resume") == 0
    assert store_status(out) == "complete"
    assert run(out, tmp_path / "next.nc", "--model", env.m0) == 0
    assert STATUS_ATTR not in xr.open_dataset(tmp_path / "next.nc").attrs  # not the input's status


# ----------------------------------------------------------------------------- issue 13.8: errors

@pytest.mark.parametrize("expr", [" | ".join(["(DQF == 0)"] * 3000), "~" * 200_000 + "(DQF == 0)",
                                  "~" * 500 + "(DQF == 0)", "(" * 5000 + "DQF" + ")" * 5000])
def test_hostile_mask_expressions_are_one_line_errors(env, tmp_path, capsys, expr):
    ds = field()
    with pytest.raises(InputError, match="--mask") as info:
        mask_expression(expr, ds)
    assert len(str(info.value)) < 600  # the expression is not echoed whole
    assert run(env.a, tmp_path / "o.zarr", "--model", env.m0, "--mask", expr) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "o.zarr").exists()


def test_long_but_sane_mask_still_works():
    ds = field()
    expr = " | ".join(f"(DQF == {i})" for i in range(40))
    assert mask_expression(expr, ds).values.sum() == (ds.DQF.values < 40).sum()


def test_full_disk_netcdf_is_one_line_error_and_leaves_nothing(env, tmp_path, monkeypatch, capsys):
    real = xr.Dataset.to_netcdf

    def hdf_error(self, path, *a, **k):
        real(self, path, *a, **k)  # a partial file appears...
        raise RuntimeError("NetCDF: HDF error")  # ...and the disk fills up

    monkeypatch.setattr(xr.Dataset, "to_netcdf", hdf_error)
    out = tmp_path / "o.nc"
    assert run(env.a, out, "--model", env.m0) == 1
    err = capsys.readouterr().err
    assert f"{out}: writing failed (RuntimeError: NetCDF: HDF error)" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_full_disk_at_the_zarr_layout_leaves_no_store(env, tmp_path, monkeypatch, capsys):
    real = xr.Dataset.to_zarr

    def no_space(self, store, *a, **k):
        if k.get("region") is None:
            real(self, store, *a, **k)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(xr.Dataset, "to_zarr", no_space)
    out = tmp_path / "o.zarr"
    assert run(env.a, out, "--model", env.m0) == 1
    err = capsys.readouterr().err
    assert str(out) in err and "No space left on device" in err and "Traceback" not in err
    assert not out.exists()
    with pytest.raises(OutputWriteError):
        write_output(field().chunk({"time": 1}), str(out))


def test_ctrl_c_at_the_first_region_exits_130_and_leaves_nothing(env, tmp_path, monkeypatch, capsys):
    real = xr.Dataset.to_zarr

    def interrupted(self, store, *a, **k):
        if k.get("region") is not None:
            raise KeyboardInterrupt
        return real(self, store, *a, **k)

    monkeypatch.setattr(xr.Dataset, "to_zarr", interrupted)
    out = tmp_path / "o.zarr"
    assert run(env.a, out, "--model", env.m0) == 130
    assert capsys.readouterr().err.strip() == "xdl inpaint: interrupted"
    assert not out.exists()  # nothing written: the next run starts afresh, no "already exists"
    monkeypatch.setattr(xr.Dataset, "to_zarr", real)
    assert run(env.a, out, "--model", env.m0) == 0


# ----------------------------------------------------------------------------- issue 12.9: pass-through

def climatology(tmp_path):
    ds = field(n=1)
    ds["time"].attrs.update(units="days since 1600-1-1 0:0:0", calendar="gregorian", climatology="climatology_bounds")
    ds = ds.assign_coords(time=[113406.0])
    ds["time"].attrs.update(units="days since 1600-1-1 0:0:0", calendar="gregorian", climatology="climatology_bounds")
    ds["climatology_bounds"] = (("time", "nv"), np.array([[113225.0, 113589.0]]),
                                {"long_name": "Climatology_bounds", "units": "days since 1600-1-1 0:0:0"})
    path = tmp_path / "clim.nc"
    ds.to_netcdf(path)
    return path


@pytest.mark.parametrize("source", ["generated", "real"])
def test_untouched_time_bounds_pass_through(env, tmp_path, source):
    path = climatology(tmp_path) if source == "generated" else shared_file("projected/uk_tmean_1910_osgb.nc")
    out = tmp_path / "out.zarr"
    assert main(["inpaint", str(path), str(out), "--model", env.m0, "--no-progress"]) == 0
    raw_in = xr.open_dataset(path, decode_times=False)
    raw_out = xr.open_zarr(out, decode_times=False)
    np.testing.assert_array_equal(raw_out.climatology_bounds.values, raw_in.climatology_bounds.values)
    np.testing.assert_array_equal(raw_out.time.values, raw_in.time.values)
    assert store_status(out) == "complete"


def test_a_failed_run_leaves_nothing_that_blocks_the_next(env, tmp_path, monkeypatch, capsys):
    real = xr.Dataset.to_zarr

    def fails(self, store, *a, **k):
        if k.get("region") is not None:
            raise ValueError("unable to decode time units")  # what the OSGB file did before
        return real(self, store, *a, **k)

    monkeypatch.setattr(xr.Dataset, "to_zarr", fails)
    out = tmp_path / "out.zarr"
    assert run(env.a, out, "--model", env.m0) == 1
    assert not out.exists()
    monkeypatch.setattr(xr.Dataset, "to_zarr", real)
    existing = tmp_path / "existing.zarr"  # something that was there before is never removed
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    monkeypatch.setattr(xr.Dataset, "to_zarr", fails)
    assert run(env.a, existing, "--model", env.m0, "--resume") == 1
    assert (existing / "keep.txt").read_text() == "mine"
    monkeypatch.setattr(xr.Dataset, "to_zarr", real)
    capsys.readouterr()
    assert run(env.a, out, "--model", env.m0) == 0


# ----------------------------------------------------------------------------- issue 12.12: evaluate plots

def record_imshow(monkeypatch):
    from matplotlib.axes import Axes

    calls, real = [], Axes.imshow

    def imshow(self, img, *a, **k):
        calls.append(k.get("origin"))
        return real(self, img, *a, **k)

    monkeypatch.setattr(Axes, "imshow", imshow)
    return calls


@pytest.mark.parametrize("ascending", [True, False])
def test_evaluate_maps_put_north_up(env, tmp_path, monkeypatch, ascending):
    ds = field(n=2)
    lat = np.linspace(-60, 60, ds.sizes["y"])
    ds = ds.rename(y="lat", x="lon").assign_coords(lat=lat if ascending else lat[::-1])
    calls = record_imshow(monkeypatch)
    report = xdl.evaluate.evaluate(ds[["sst"]], env.m0, gaps=["scanlines", "blocks"], fraction=0.1, domain=None,
                                   baselines=("linear",), plot=tmp_path / "scores.png")
    assert calls and set(calls) == {"lower" if ascending else "upper"}
    assert sorted(os.path.basename(p) for p in report.attrs["plots"]) == ["scores_sst_blocks.png",
                                                                           "scores_sst_scanlines.png"]
    assert all(os.path.getsize(p) > 1000 for p in report.attrs["plots"])


def test_evaluate_merra2_is_drawn_with_south_at_the_bottom(env, tmp_path, monkeypatch, capsys):
    path = shared_file("reanalysis/merra2_M2T1NXSLV_ps.nc*")
    calls = record_imshow(monkeypatch)
    png = tmp_path / "ps.png"
    assert main(["evaluate", str(path), "--var", "PS", "--model", env.m0, "--baselines", "", "--plot", str(png),
                 "--fraction", "0.05"]) == 0
    assert xr.open_dataset(path).lat.values[0] < 0  # ascending latitude: row 0 is Antarctica
    assert calls and set(calls) == {"lower"}
    assert f"wrote {png}" in capsys.readouterr().err and png.exists()


def test_evaluate_panel_rmse_says_which_sample_it_is(env, tmp_path, monkeypatch):
    """The maps show the middle sample (the first lacks the step before it, which a time_window fill
    reads; probe) and say so; the hidden share is of the valid pixels, as in the table."""
    from matplotlib.axes import Axes

    titles, real = [], Axes.set_title
    monkeypatch.setattr(Axes, "set_title", lambda self, t, *a, **k: (titles.append(t), real(self, t, *a, **k))[1])
    xdl.evaluate.evaluate(field(n=2)[["sst"]], env.m0, fraction=0.1, domain=None, baselines=(),
                          plot=tmp_path / "p.png")
    assert any(re.search(r"error, \w+=1 RMSE", t) for t in titles), titles
    assert any("% of valid hidden)" in t for t in titles)


def test_ctrl_c_exit_hook_never_prints_an_event_loop_traceback(monkeypatch):
    import atexit

    from zarr.core import sync

    def busy():
        raise RuntimeError("Cannot close a running event loop")

    monkeypatch.setattr(sync, "cleanup_resources", busy)
    xdl.io.zarr.quiet_zarr_exit()
    try:
        xdl.io.zarr.cleanup_quietly()  # what runs at exit instead of zarr's own hook: no error
    finally:
        atexit.unregister(xdl.io.zarr.cleanup_quietly)
        monkeypatch.undo()  # zarr's own hook was never unregistered: the patched one was


def test_undecodable_times_pass_through_raw(env, tmp_path):
    import netCDF4

    path = tmp_path / "badtime.nc"
    with netCDF4.Dataset(path, "w") as nc:
        for name, size in (("time", 2), ("y", 16), ("x", 20)):
            nc.createDimension(name, size)
        t = nc.createVariable("time", "f8", ("time",))
        t.units, t[:] = "days since the big bang", [1.0, 2.0]
        b = nc.createVariable("obs_time", "f8", ("time",))
        b.units, b[:] = "hours since 1600-13-45", [7.0, 8.0]
        v = nc.createVariable("sst", "f4", ("time", "y", "x"))
        v[:] = 280 + np.arange(640, dtype="f4").reshape(2, 16, 20) / 100
        v[0, 5, 5] = np.nan
    out = tmp_path / "out.zarr"
    with pytest.warns(UserWarning, match="times cannot be decoded"):
        assert main(["inpaint", str(path), str(out), "--model", env.m0, "--no-progress"]) == 0
    back = xr.open_zarr(out, decode_times=False)
    np.testing.assert_array_equal(back.obs_time.values, [7.0, 8.0])
    assert back.obs_time.attrs["units"] == "hours since 1600-13-45"
    assert back.time.attrs["units"] == "days since the big bang"
    assert np.isfinite(back.sst.values).all()


def test_a_glob_of_files_with_undecodable_times_passes_them_through(env, tmp_path, capsys):
    """One file with 'months since' times opened with them raw; a glob of three failed, blaming
    the files' coordinates (probe). Files that count from different origins cannot be ordered
    as stored: refused."""
    for i in range(3):
        data = 280 + np.arange(2 * 16 * 20, dtype="f4").reshape(2, 16, 20) / 100
        data[0, 5, 5] = np.nan
        ds = xr.Dataset({"sst": (("time", "y", "x"), data)}, coords={"time": [2.0 * i, 2.0 * i + 1]})
        ds.time.attrs = {"units": "months since 1990-01-01", "calendar": "standard", "axis": "T"}
        ds.to_netcdf(tmp_path / f"m{i}.nc")
    out = tmp_path / "out.zarr"
    with pytest.warns(UserWarning, match="times cannot be decoded"):
        assert main(["inpaint", str(tmp_path / "m*.nc"), str(out), "--model", env.m0, "--no-progress"]) == 0
    back = xr.open_zarr(out, decode_times=False)
    np.testing.assert_array_equal(back.time.values, np.arange(6.0))
    assert np.isfinite(back.sst.values).all()
    ds = ds.assign_coords(time=[0.0, 1.0])  # overlapping raw values: refused for the origins, not the overlap
    ds.time.attrs = {"units": "months since 1991-01-01", "calendar": "standard", "axis": "T"}
    ds.to_netcdf(tmp_path / "m2.nc")
    with pytest.warns(UserWarning, match="times cannot be decoded"):
        assert main(["inpaint", str(tmp_path / "m*.nc"), str(tmp_path / "o2.zarr"), "--model", env.m0,
                     "--no-progress"]) == 1
    assert "count from different origins" in capsys.readouterr().err


def test_evaluate_and_train_never_overwrite_an_input(env, tmp_path, capsys):
    src = tmp_path / "in.nc"
    shutil.copy(env.a, src)
    before = src.read_bytes()
    assert main(["evaluate", str(src), "--model", env.m0, "--out", str(src), "--overwrite"]) == 1
    assert "is an input" in capsys.readouterr().err
    model = tmp_path / "m.safetensors"
    shutil.copy(env.m0, model)
    assert main(["train", str(src), "--model", str(model), "--out", str(model), "--overwrite",
                 "--epochs", "1", "--steps", "1"]) == 1
    assert "is an input" in capsys.readouterr().err
    assert src.read_bytes() == before and model.read_bytes() == open(env.m0, "rb").read()


def test_evaluate_plot_is_checked_as_out_is(env, tmp_path, capsys):
    # --plot used to replace an existing picture without --overwrite and to write into an input store.
    src = tmp_path / "in.nc"
    shutil.copy(env.a, src)
    png = tmp_path / "scores.png"
    png.write_bytes(b"mine")
    assert main(["evaluate", str(src), "--model", env.m0, "--baselines", "", "--plot", str(png)]) == 1
    assert "already exists; pass --overwrite" in capsys.readouterr().err and png.read_bytes() == b"mine"
    assert main(["evaluate", str(src), "--model", env.m0, "--baselines", "", "--plot", str(src)]) == 1
    assert "is an input" in capsys.readouterr().err
    store = tmp_path / "in.zarr"
    store.mkdir()
    assert main(["evaluate", str(store), "--model", env.m0, "--plot", str(store / "p.png")]) == 1
    assert "inside an input" in capsys.readouterr().err and not (store / "p.png").exists()
    # "--plot fig" writes fig.png (matplotlib adds the suffix): that file is the one checked and named
    assert main(["evaluate", str(src), "--model", env.m0, "--baselines", "", "--plot", str(tmp_path / "scores")]) == 1
    assert "scores.png: already exists" in capsys.readouterr().err and png.read_bytes() == b"mine"
    assert main(["evaluate", str(src), "--model", env.m0, "--baselines", "", "--plot", str(tmp_path / "other")]) == 0
    assert f"wrote {tmp_path / 'other.png'}" in capsys.readouterr().err and (tmp_path / "other.png").exists()
    # a format matplotlib cannot write: refused before the evaluation, not after it
    out = tmp_path / "m.csv"
    assert main(["evaluate", str(src), "--model", env.m0, "--plot", str(tmp_path / "f.xyz"), "--out", str(out)]) == 1
    assert "cannot write '.xyz' files" in capsys.readouterr().err


def test_out_of_memory_is_one_line(env, tmp_path, monkeypatch, capsys):
    def exhausted(*args, **kwargs):
        raise MemoryError("Unable to allocate 4.50 GiB for an array with shape (12288, 12288)")

    monkeypatch.setattr(importlib.import_module("xdl.inpaint"), "_inpaint_dataset", exhausted)
    assert main(["inpaint", env.a, str(tmp_path / "o.nc"), "--model", env.m0]) == 1
    err = capsys.readouterr().err
    assert "error: out of memory (Unable to allocate 4.50 GiB" in err and "--chunks" in err and len(err.splitlines()) == 1


def test_resume_on_real_goes_files_refuses_another_band(env, tmp_path, monkeypatch, capsys):
    c13 = shared_file("goes/OR_ABI-L1b-RadM1-M6C13_G17_*.nc")
    c14 = shared_file("goes/OR_ABI-L1b-RadM1-M6C14_G17_*.nc")  # same 500x500 grid, other values
    args = ["--var", "Rad", "--mask", "DQF == 0", "--model", env.m0, "--chunks", "y=250", "--no-progress"]
    reference = tmp_path / "ref.zarr"
    assert main(["inpaint", str(c13), str(reference), *args]) == 0
    out = tmp_path / "out.zarr"
    undo = interrupt_after_first_region(monkeypatch)
    assert main(["inpaint", str(c13), str(out), *args]) == 130
    undo()
    capsys.readouterr()
    assert main(["inpaint", str(c14), str(out), *args, "--resume"]) == 1
    assert "IN files changed" in capsys.readouterr().err
    assert main(["inpaint", str(c13), str(out), *args, "--resume"]) == 0
    np.testing.assert_array_equal(xr.open_zarr(out).Rad.values, xr.open_zarr(reference).Rad.values)


def test_resume_of_an_in_memory_result_checks_the_store_too(env, tmp_path, capsys):
    """--chunks none makes the result in memory; it was written whole, and with --resume that
    replaced any store at OUT (another job's, or a store of the user's own) unchecked (probe)."""
    other = tmp_path / "other.zarr"
    assert run(env.a, other, "--model", env.m0) == 0
    mine = tmp_path / "mine.zarr"
    xr.Dataset({"precious": ("x", np.arange(5.0))}).to_zarr(mine)
    capsys.readouterr()
    for out, said in ((other, "different job"), (mine, "not written by a resumable xdl write")):
        assert main(["inpaint", env.b, str(out), "--model", env.m0, "--chunks", "none", "--resume",
                     "--no-progress"]) == 1
        assert said in capsys.readouterr().err
    assert list(xr.open_zarr(mine).data_vars) == ["precious"]
    assert xr.open_zarr(other).attrs[STATUS_ATTR] == "complete"
    # The same job in memory resumes (here: nothing left to do) and its fresh write is resumable.
    fresh = tmp_path / "fresh.zarr"
    args = ["inpaint", env.a, str(fresh), "--model", env.m0, "--chunks", "none", "--no-progress"]
    assert main(args) == 0 and main(args + ["--resume"]) == 0
    want = xr.open_zarr(other)
    np.testing.assert_array_equal(xr.open_zarr(fresh).sst.values, want.sst.values)


def test_a_store_stopped_before_its_progress_log_says_how_to_start_over(env, tmp_path, monkeypatch, capsys):
    """Killed between laying out the store and writing its log: the rerun said "run with --resume",
    the resume "not written by xdl; pass mode='w'" (a library keyword), both unhelpful (probe)."""
    out = tmp_path / "out.zarr"
    undo = interrupt_after_first_region(monkeypatch)
    assert run(env.a, out, "--model", env.m0) == 130
    undo()
    (out / LOG_NAME).unlink()  # as a SIGKILL before the log was first written leaves it
    assert store_status(out) == "incomplete"
    capsys.readouterr()
    assert run(env.a, out, "--model", env.m0, "--resume") == 1
    err = capsys.readouterr().err
    assert "stopped before its first region" in err and "--overwrite" in err
    assert run(env.a, out, "--model", env.m0, "--overwrite") == 0


def test_sigterm_cleans_up_as_ctrl_c_does(env, tmp_path, monkeypatch, capsys):
    """kill / timeout / a batch scheduler send SIGTERM: a netCDF OUT's temporary file was left
    behind (probe). Now it is taken as Ctrl-C, exit status 143, and the handler is restored."""
    import signal

    import xdl.cli

    before = signal.getsignal(signal.SIGTERM)
    real = xdl.cli.write_output

    def terminated_while_writing(ds, path, **kw):
        os.kill(os.getpid(), signal.SIGTERM)
        real(ds, path, **kw)

    monkeypatch.setattr(xdl.cli, "write_output", terminated_while_writing)
    out = tmp_path / "out.nc"
    assert run(env.a, out, "--model", env.m0) == 143
    assert "terminated" in capsys.readouterr().err
    assert os.listdir(tmp_path) == [] and signal.getsignal(signal.SIGTERM) == before


def test_resume_takes_the_same_job_spelled_another_way(env, tmp_path, monkeypatch, capsys):
    """--var a,b and --var a --var b, or a model's path and the same file under another name, are
    one job (refused as different before: safe, but unfriendly; probe)."""
    two = tmp_path / "two.nc"
    field(2).assign(sst2=field(3).sst).to_netcdf(two)
    copy = tmp_path / "same_model.safetensors"
    shutil.copy(env.m0, copy)
    out = tmp_path / "out.zarr"
    undo = interrupt_after_first_region(monkeypatch)
    assert run(two, out, "--model", env.m0, "--var", "sst,sst2") == 130
    undo()
    capsys.readouterr()
    assert run(two, out, "--model", copy, "--var", "sst", "--var", "sst2", "--resume") == 0, capsys.readouterr().err
    assert xr.open_zarr(out).attrs[STATUS_ATTR] == "complete"


def test_cli_checks_paths_values_and_rules_before_the_work(env, tmp_path, monkeypatch, capsys):
    """Found by a CLI probe: each of these ran the work first, or gave a traceback, or did
    nothing and exited 0."""
    import sys
    import types

    def one_line_error(args, said, code=1):
        capsys.readouterr()
        assert main(args) == code, args
        err = capsys.readouterr().err
        assert said in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, (args, err)

    # A rule comparing a time with a number: a traceback (TypeError) before.
    timed = tmp_path / "timed.nc"
    ds = field(0)
    ds["obs"] = (ds.sst.dims, np.full(ds.sst.shape, np.datetime64("2020-01-01", "ns")))
    ds.to_netcdf(timed)
    one_line_error(["inpaint", str(timed), str(tmp_path / "o.nc"), "--var", "sst", "--mask", "obs > 0"],
                   "cannot be compared")
    # A mask true nowhere: an all-NaN output, exit 0, before.
    one_line_error(["inpaint", env.a, str(tmp_path / "o.nc"), "--mask", "DQF == 99"], "is true nowhere")
    one_line_error(["inpaint", env.a, str(tmp_path / "o.nc"), "--var", " , "], "--var names no variable")
    assert not os.path.exists(tmp_path / "o.nc")
    # evaluate --out in a missing folder or on a folder: refused before evaluating; a seed that no
    # netCDF attribute takes, or a negative one, named.
    one_line_error(["evaluate", env.a, "--model", env.m0, "--out", str(tmp_path / "no" / "m.csv")], "does not exist")
    os.mkdir(tmp_path / "m.nc")
    one_line_error(["evaluate", env.a, "--model", env.m0, "--out", str(tmp_path / "m.nc"), "--overwrite"], "is a folder")
    for seed in ("-1", str(2 ** 64)):
        one_line_error(["evaluate", env.a, "--model", env.m0, "--seed", seed], "seed=")
    # Chunk sizes under 1 (blamed on the file, or ignored) are usage errors; "a, b" lists work.
    with pytest.raises(SystemExit) as usage:
        main(["inpaint", env.a, str(tmp_path / "c.nc"), "--chunks", "y=0"])
    assert usage.value.code == 2 and "at least 1" in capsys.readouterr().err
    capsys.readouterr()
    assert main(["evaluate", env.a, "--model", env.m0, "--gaps", "blocks, clouds", "--fraction", "0.05"]) == 0
    # train: --out a folder, --checkpoint-dir a file, --config a folder: refused before training.
    calls = {}
    monkeypatch.setitem(sys.modules, "xdl.train", types.SimpleNamespace(
        fit=lambda obj, model, **kw: calls.update(kw) or xdl.zoo.create("pconv-unet", in_channels=1, depth=2,
                                                                         base_channels=4)))
    os.mkdir(tmp_path / "adir")
    (tmp_path / "afile").write_text("x")
    base = ["train", env.a, "--model", "pconv-unet"]
    one_line_error(base + ["--out", str(tmp_path / "adir"), "--overwrite"], "is a folder")
    one_line_error(base + ["--out", str(tmp_path / "t.safetensors"), "--checkpoint-dir", str(tmp_path / "afile")],
                   "is a file")
    one_line_error(base + ["--out", str(tmp_path / "t.safetensors"), "--config", str(tmp_path / "adir")], "(a folder)")
    assert calls == {}
    # One name in a config file is one name (it was split into letters), as fit() takes it.
    config = tmp_path / "fit.json"
    config.write_text(json.dumps({"variables": "sst"}))
    assert main(base + ["--out", str(tmp_path / "t.safetensors"), "--config", str(config)]) == 0
    assert calls["variables"] == ["sst"] and calls["progress"] is False  # no bar into a log file


def test_demo_replaces_only_its_own_outputs(tmp_path, capsys):
    """demo --out deleted a user's own filled.zarr (and wrote into a zarr store given as --out); a
    refused run left an empty folder behind (probe)."""
    mine = tmp_path / "mine"
    (mine / "filled.zarr").mkdir(parents=True)
    (mine / "filled.zarr" / "keep.txt").write_text("precious")
    assert main(["demo", "--out", str(mine), "--size", "32"]) == 1
    assert (mine / "filled.zarr" / "keep.txt").read_text() == "precious"
    assert main(["demo", "--out", str(tmp_path / "never"), "--seed", "-1"]) == 1
    assert not (tmp_path / "never").exists()
    ours = tmp_path / "ours"
    assert main(["demo", "--out", str(ours), "--size", "32"]) == 0
    assert main(["demo", "--out", str(ours), "--size", "32"]) == 0  # an earlier demo's: replaced
    assert main(["demo", "--out", str(ours / "demo.png"), "--size", "32"]) == 1
    assert "is a file" in capsys.readouterr().err
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "filled.zarr").symlink_to(ours / "filled.zarr")  # an earlier demo's, through a link
    assert main(["demo", "--out", str(linked), "--size", "32"]) == 1
    assert "is a link" in capsys.readouterr().err and (ours / "filled.zarr").exists()


def test_cli_warnings_are_one_line_naming_the_command(tmp_path):
    """Found by a probe: the CLI printed warnings in Python's format, with xdl's or dask's file,
    line and source line (traceback noise to a user), where its errors are one clean line. In a
    process of its own: pytest records warnings instead of printing them."""
    values = np.random.default_rng(0).random((1, 40, 50))
    values[0, :, :12] = np.nan  # a wide region at the scene's edge: domain="auto" warns and leaves it
    values[0, 20:23, 20:30] = np.nan
    xr.Dataset({"v": (("time", "y", "x"), values)}).to_netcdf(tmp_path / "in.nc")
    run = subprocess.run([sys.executable, "-m", "xdl.cli", "inpaint", str(tmp_path / "in.nc"), str(tmp_path / "out.nc")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    err = run.stderr
    warned = [line for line in err.splitlines() if ": warning" in line]
    assert warned and all(line.startswith("xdl inpaint: warning: domain='auto'") for line in warned), err
    assert ".py:" not in err and "warnings.warn" not in err


def test_a_model_error_is_one_line_in_the_cli(tmp_path, monkeypatch, capsys):
    """Found by fuzzing: xdl's ModelError is also a RuntimeError, and the CLI's out-of-memory clause
    (RuntimeError) re-raised it: a 16-30 line traceback for a model that misbehaved."""
    import xdl.cli
    from xdl.errors import ModelError

    def misbehaves(args):
        raise ModelError("model 'm' returned 3 channels, its card says 1")

    help_text, arguments, _ = xdl.cli._COMMANDS["inpaint"]
    monkeypatch.setitem(xdl.cli._COMMANDS, "inpaint", (help_text, arguments, misbehaves))
    assert main(["inpaint", "in.nc", str(tmp_path / "o.nc")]) == 1
    assert capsys.readouterr().err == "xdl inpaint: error: model 'm' returned 3 channels, its card says 1\n"

    def out_of_memory(args):  # torch's CPU message, wrapped by the engine (a review found the advice lost)
        raise ModelError("model 'm' raised RuntimeError: DefaultCPUAllocator: can't allocate memory: you tried ...")

    monkeypatch.setitem(xdl.cli._COMMANDS, "inpaint", (help_text, arguments, out_of_memory))
    assert main(["inpaint", "in.nc", str(tmp_path / "o.nc")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("xdl inpaint: error: out of memory (") and "give smaller --chunks or --tile" in err


def test_a_grib_input_gets_no_index_file_beside_it(tmp_path):
    """Found by a probe: cfgrib's default wrote FILE.grib.5b7b6.idx into the input's folder (the
    shared data folder); xdl never writes beside its inputs."""
    pytest.importorskip("cfgrib")
    source = shared_file("reanalysis/era5-2mt-2019-03-uk.grib")
    (tmp_path / "in").mkdir()
    grib = tmp_path / "in" / "t2m.grib"
    shutil.copy(source, grib)
    assert main(["inpaint", str(grib), str(tmp_path / "out.zarr")]) == 0
    assert os.listdir(tmp_path / "in") == ["t2m.grib"]
