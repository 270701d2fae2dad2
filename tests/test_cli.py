"""The xdl command line, run in-process through main(): files in, files out, exit codes."""

import json
import shutil
import subprocess
import sys
import types

import numpy as np
import pytest
import xarray as xr

import xdl
from xdl.cli import main
from xdl.io.expr import mask_expression
from xdl.io.write import write_output
from xdl.errors import InputError


def make_dataset(seed=0, times=(0, 1)):
    rng = np.random.default_rng(seed)
    ny, nx = 40, 48
    y = np.linspace(0, 1, ny)[:, None]
    x = np.linspace(0, 1, nx)[None, :]
    base = 280 + 5 * np.sin(6 * x) * np.cos(4 * y)
    sst = np.stack([base + 0.1 * rng.standard_normal((ny, nx)) for _ in times]).astype("f4")
    sst[:, 10:13, :] = np.nan  # scan-line gaps
    sst[:, 25:30, 5:15] = np.nan
    dqf = np.where(np.isfinite(sst), 0, 1).astype("i1")
    dqf[:, 0, 0] = 2  # a finite value flagged bad: --mask "DQF == 0" hides it
    land = np.zeros((ny, nx), "i1")
    land[:, -6:] = 1
    sst[:, :, -6:] = np.nan  # land: no data, and outside the --domain below
    ds = xr.Dataset(
        {"sst": (("time", "y", "x"), sst, {"units": "K", "long_name": "sea surface temperature",
                                           "grid_mapping": "crs"}),
         "DQF": (("time", "y", "x"), dqf, {"long_name": "quality flag", "grid_mapping": "crs"}),
         "land": (("y", "x"), land),
         "crs": ((), np.int32(0), {"grid_mapping_name": "transverse_mercator", "scale_factor_at_central_meridian": 0.9996})},
        coords={"time": ("time", np.array(times, "f8"), {"units": "days since 2020-01-01"}),
                "y": ("y", np.arange(ny) * 1000.0, {"units": "m", "axis": "Y", "standard_name": "projection_y_coordinate"}),
                "x": ("x", np.arange(nx) * 1000.0, {"units": "m", "axis": "X", "standard_name": "projection_x_coordinate"})},
        attrs={"title": "test field", "history": "made by test_cli"})
    return ds


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    import torch

    d = tmp_path_factory.mktemp("cli")
    ds = make_dataset()
    ds.to_netcdf(d / "in.nc")
    ds.to_zarr(d / "in.zarr", mode="w", consolidated=False)
    make_dataset(1, times=(2, 3)).to_netcdf(d / "part2.nc")
    shutil.copy(d / "in.nc", d / "part1.nc")
    torch.manual_seed(0)
    gap = xdl.zoo.create("pconv-unet", in_channels=1, depth=2, base_channels=4,
                         card={"normalization": {"kind": "per_sample"}})
    gap.save(d / "gap.safetensors")
    mapping = xdl.zoo.create("unet", in_channels=1, out_channels=1, depth=2, base_channels=4,
                             card={"inputs": ["sst"], "outputs": ["sst_anomaly"]})
    mapping.save(d / "map.safetensors")
    return types.SimpleNamespace(dir=d, nc=str(d / "in.nc"), zarr=str(d / "in.zarr"),
                                 gap=str(d / "gap.safetensors"), map=str(d / "map.safetensors"),
                                 source=xr.open_dataset(d / "in.nc").load())  # decoded, as the CLI sees it


def check_filled(out_path, source, mask=None):
    out = xr.open_dataset(out_path, chunks=None).load()
    assert out.sst.attrs["units"] == "K"
    assert (out.sst.attrs.get("grid_mapping") or out.sst.encoding.get("grid_mapping")) == "crs"
    assert out.crs.attrs["grid_mapping_name"] == "transverse_mercator"
    for c in ("time", "y", "x"):
        np.testing.assert_array_equal(out[c].values, source[c].values)
    assert out.y.attrs["standard_name"] == "projection_y_coordinate"
    assert out.attrs["title"] == "test field" and "inpaint" in out.attrs["history"]
    valid = np.isfinite(source.sst.values) if mask is None else mask
    np.testing.assert_array_equal(out.sst.values[valid], source.sst.values[valid])  # bit for bit
    assert "sst_inpainted" in out
    return out


def test_inpaint_netcdf_to_zarr(files, tmp_path):
    out = tmp_path / "filled.zarr"
    assert main(["inpaint", files.nc, str(out), "--model", files.gap, "--var", "sst", "--no-progress"]) == 0
    result = check_filled(out, files.source)
    assert np.isfinite(result.sst.values).all()  # no domain given: every gap filled
    assert not any(p.name.startswith(".filled.zarr.tmp") for p in tmp_path.iterdir())


@pytest.mark.filterwarnings("ignore:The specified chunks separate")  # chunks finer than the store's, on purpose
def test_inpaint_zarr_to_netcdf_with_mask_and_domain(files, tmp_path):
    out = tmp_path / "filled.nc"
    code = main(["inpaint", files.zarr, str(out), "--model", files.gap, "--var", "sst",
                 "--mask", "DQF == 0", "--domain", "land == 0", "--chunks", "y=20,x=24", "--no-progress"])
    assert code == 0
    src = files.source
    good = (src.DQF.values == 0) & np.isfinite(src.sst.values)
    result = check_filled(out, src, mask=good)
    land = np.broadcast_to(src.land.values == 1, good.shape)
    assert np.isnan(result.sst.values[land]).all()  # outside the domain: never filled
    assert np.isfinite(result.sst.values[~land]).all()
    assert result.sst.values[0, 0, 0] != src.sst.values[0, 0, 0]  # flagged bad -> refilled
    assert result.sst_inpainted.values[0, 0, 0] == 1


def test_inpaint_glob_of_files(files, tmp_path):
    out = tmp_path / "all.zarr"
    assert main(["inpaint", str(files.dir / "part*.nc"), str(out), "--model", files.gap, "--var", "sst",
                 "--no-progress"]) == 0
    result = xr.open_zarr(out)
    assert result.sizes["time"] == 4 and bool((result.time.diff("time") > np.timedelta64(0)).all())


def test_predict(files, tmp_path):
    out = tmp_path / "pred.zarr"
    assert main(["predict", files.nc, str(out), "--model", files.map, "--inputs", "sst", "--no-progress",
                 "--chunks", "none"]) == 0
    result = xr.open_zarr(out)
    assert list(result.data_vars) == ["sst_anomaly", "crs"] or set(result.data_vars) == {"sst_anomaly", "crs"}
    assert result.sst_anomaly.dims == ("time", "y", "x")
    assert result.sst_anomaly.attrs.get("grid_mapping") == "crs"
    np.testing.assert_array_equal(result.x.values, files.source.x.values)


def test_compile_flag(files, tmp_path):
    out = tmp_path / "pred.zarr"
    assert main(["predict", files.nc, str(out), "--model", files.map, "--inputs", "sst", "--no-progress",
                 "--compile", "no"]) == 0
    with pytest.raises(SystemExit) as bad:
        main(["predict", files.nc, str(tmp_path / "p2.zarr"), "--model", files.map, "--compile", "maybe"])
    assert bad.value.code == 2


def test_output_exists_needs_overwrite(files, tmp_path, capsys):
    out = tmp_path / "o.nc"
    out.write_text("precious")
    assert main(["inpaint", files.nc, str(out), "--model", files.gap, "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "already exists" in err and "--overwrite" in err and str(out) in err
    assert out.read_text() == "precious"
    assert main(["inpaint", files.nc, str(out), "--model", files.gap, "--var", "sst", "--overwrite",
                 "--no-progress"]) == 0
    assert "sst_inpainted" in xr.open_dataset(out)


def test_missing_file_is_exit_1(tmp_path, capsys):
    assert main(["inpaint", str(tmp_path / "nope.nc"), str(tmp_path / "o.zarr")]) == 1
    err = capsys.readouterr().err
    assert "nope.nc" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main(["evaluate", str(tmp_path / "none_*.nc")]) == 1
    assert "no file matches" in capsys.readouterr().err


def test_unknown_variable_is_exit_1(files, tmp_path, capsys):
    assert main(["inpaint", files.nc, str(tmp_path / "o.zarr"), "--var", "sstt", "--model", files.gap]) == 1
    err = capsys.readouterr().err
    assert "'sstt'" in err and "in.nc" in err and "sst" in err
    assert not (tmp_path / "o.zarr").exists()


def test_bad_mask_expression_runs_nothing(files, tmp_path, capsys):
    marker = tmp_path / "pwned"
    expr = f"__import__('os').system('touch {marker}')"
    assert main(["inpaint", files.nc, str(tmp_path / "o.zarr"), "--model", files.gap, "--mask", expr]) == 1
    assert not marker.exists()
    err = capsys.readouterr().err
    assert "--mask" in err and "not allowed" in err and "DQF == 0" in err


@pytest.mark.parametrize("expr, why", [
    ("sst.values > 0", "attribute access"),
    ("sst[0] > 0", "indexing"),
    ("open('x')", "function call"),
    ("nope == 0", "'nope' is not a variable"),
    ("DQF == 0 & sst > 0", "parentheses"),
    ("(DQF == 0) and (sst > 0)", "'and'"),
    ("DQF == 'a'", "not a number"),
    ("sst + 1 > 0", "arithmetic"),
    ("sst", "must be a condition"),
    ("DQF ==", "not a valid expression"),
    ("(lambda: 1)()", "function call"),
    ("DQF in (0, 1)", "only == != < <= > >="),
])
def test_mask_expression_rejects(files, expr, why):
    with pytest.raises(InputError, match=None) as info:
        mask_expression(expr, files.source)
    assert why in str(info.value) and json.dumps(expr) in str(info.value)


def test_mask_expression_accepts(files):
    ds = files.source
    got = mask_expression("(DQF == 0) & ~(sst < 281.5) | (land != 0)", ds)
    want = ((ds.DQF == 0) & ~(ds.sst < 281.5)) | (ds.land != 0)
    xr.testing.assert_equal(got, want)
    xr.testing.assert_equal(mask_expression("0 <= DQF < 2", ds), (ds.DQF >= 0) & (ds.DQF < 2))
    xr.testing.assert_equal(mask_expression("sst > -1.5e3", ds), ds.sst > -1500)


def test_usage_errors_exit_2(files, capsys):
    with pytest.raises(SystemExit) as info:
        main(["inpaint", files.nc])  # OUT missing
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["inpaint", files.nc, "o.zarr", "--chunks", "y:5"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["predict", files.nc, "o.zarr"])  # --model is required
    assert info.value.code == 2


def test_unknown_output_format_is_exit_1(files, tmp_path, capsys):
    assert main(["inpaint", files.nc, str(tmp_path / "o.tif"), "--model", files.gap]) == 1
    assert ".zarr" in capsys.readouterr().err


def test_console_script_help():
    exe = shutil.which("xdl")
    cmd = [exe] if exe else [sys.executable, "-m", "xdl.cli"]
    done = subprocess.run(cmd + ["inpaint", "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert "example:" in done.stdout and "xdl inpaint" in done.stdout and "--mask" in done.stdout


@pytest.mark.parametrize("command", ["inpaint", "predict", "train", "evaluate", "zoo", "demo"])
def test_every_help_has_an_example(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    assert f"example:\n  xdl {command}" in capsys.readouterr().out


def test_zoo_lists_architectures(capsys):
    assert main(["zoo"]) == 0
    out = capsys.readouterr().out
    for name in xdl.zoo.list():
        assert name in out
    assert "bundled models" in out


def test_evaluate_prints_table_and_writes(files, tmp_path, capsys):
    csv, nc, png = tmp_path / "m.csv", tmp_path / "m.nc", tmp_path / "e.png"
    args = ["evaluate", files.nc, "--var", "sst", "--model", files.gap, "--gaps", "scanlines,blocks",
            "--fraction", "0.1", "--mask", "DQF == 0", "--domain", "land == 0"]
    assert main(args + ["--out", str(csv), "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "gaps=scanlines" in out and "gaps=blocks" in out and "biharmonic" in out and "rmse" in out
    text = csv.read_text()
    assert text.splitlines()[0].startswith("variable,gaps,method") and "rmse" in text
    assert (tmp_path / "e_sst_scanlines.png").exists() and (tmp_path / "e_sst_blocks.png").exists()
    assert main(args + ["--out", str(nc), "--seed", "0"]) == 0
    report = xr.open_dataset(nc)
    assert report.rmse.dims == ("variable", "gaps", "method")
    assert np.allclose(report.rmse.values.ravel(), np.genfromtxt(csv, delimiter=",", names=True)["rmse"])
    assert main(args + ["--out", str(nc)]) == 1  # exists


def test_train_maps_config_and_flags_to_fit(files, tmp_path, monkeypatch):
    calls = {}

    def fit(obj, model, *, variables=None, inputs=None, targets=None, masks="irregular", epochs=10,
            steps_per_epoch=None, batch_size=None, tile=None, device="auto", checkpoint_dir=None,
            resume=False, progress=True):
        calls.update(model=model, variables=variables, masks=masks, epochs=epochs, steps=steps_per_epoch,
                     batch_size=batch_size, tile=tile, resume=resume, checkpoint_dir=checkpoint_dir,
                     dims=dict(obj.sizes))
        return xdl.zoo.create("pconv-unet", in_channels=1, depth=2, base_channels=4)

    monkeypatch.setitem(sys.modules, "xdl.train", types.SimpleNamespace(fit=fit))
    cfg = tmp_path / "fit.json"
    cfg.write_text(json.dumps({"epochs": 3, "masks": "clouds", "batch_size": 4, "tile": 32}))
    out = tmp_path / "trained.safetensors"
    code = main(["train", files.nc, "--model", "pconv-unet", "--out", str(out), "--config", str(cfg),
                 "--var", "sst", "--epochs", "5", "--steps", "2", "--checkpoint-dir", str(tmp_path / "ck"),
                 "--resume"])
    assert code == 0
    assert calls == {"model": "pconv-unet", "variables": ["sst"], "masks": "clouds", "epochs": 5, "steps": 2,
                     "batch_size": 4, "tile": 32, "resume": True, "checkpoint_dir": str(tmp_path / "ck"),
                     "dims": {"time": 2, "y": 40, "x": 48}}
    assert xdl.load_model(out).architecture == "pconv-unet"
    # A saved model is fine-tuned: fit receives the loaded xdl.Model.
    assert main(["train", files.nc, "--model", files.gap, "--out", str(out), "--overwrite"]) == 0
    assert isinstance(calls["model"], xdl.Model)
    cfg.write_text(json.dumps({"epocs": 3}))
    assert main(["train", files.nc, "--model", "pconv-unet", "--out", str(tmp_path / "x.safetensors"),
                 "--config", str(cfg)]) == 1
    assert main(["train", files.nc, "--model", "pconv-unet", "--out", str(out)]) == 1  # exists


def test_demo_writes_zarr_and_png(files, tmp_path, capsys):
    from xdl.demo import run

    result = run(out_dir=tmp_path, size=64, model=files.gap)
    assert (tmp_path / "filled.zarr").is_dir() and (tmp_path / "demo.png").stat().st_size > 5000
    filled = xr.open_zarr(tmp_path / "filled.zarr")
    assert filled.sst.shape == (64, 64) and bool(np.isfinite(filled.sst).all())
    assert result["rmse_model"] > 0 and result["rmse_linear"] > 0 and 0.1 < result["hidden_share"] < 0.2
    assert "RMSE" in capsys.readouterr().out
    assert main(["demo", "--out", str(tmp_path / "again"), "--size", "32", "--model", files.gap]) == 0
    assert (tmp_path / "again" / "demo.png").exists()


def test_demo_fills_every_gap_of_its_full_size_scene(tmp_path):
    # The README's `xdl demo` (256 x 256, bundled model): wide gaps near the edge are filled too
    # (domain="auto" would leave them NaN on a bare grid, as the sea around a country).
    from xdl.demo import run

    run(out_dir=tmp_path, size=256, verbose=False)
    assert bool(np.isfinite(xr.open_zarr(tmp_path / "filled.zarr").sst).all())


def test_demo_without_bundled_model_says_so(tmp_path, capsys, monkeypatch):
    from xdl.models import pretrained

    monkeypatch.setattr(pretrained, "names", lambda: [])  # as in an install without the weights
    assert main(["demo", "--out", str(tmp_path), "--size", "32"]) == 1
    assert "bundled default" in capsys.readouterr().err


def test_netcdf_output_is_atomic(files, tmp_path, monkeypatch):
    out = tmp_path / "x.nc"
    ds = xr.open_dataset(files.nc, chunks={})

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", boom)
    with pytest.raises(OSError):
        write_output(ds, str(out))
    assert list(tmp_path.iterdir()) == []


def test_interrupted_zarr_output_resumes(files, tmp_path, monkeypatch):
    import xdl.io.zarr

    reference = tmp_path / "reference.zarr"
    assert main(["inpaint", files.nc, str(reference), "--model", files.gap, "--chunks", "time=1", "--no-progress"]) == 0
    out = tmp_path / "out.zarr"
    real_log = xdl.io.zarr._write_log

    def stop_after_first_region(path, fingerprint, done):
        real_log(path, fingerprint, done)
        if len(done) == 1:
            raise KeyboardInterrupt  # the user hits Ctrl-C mid-write

    monkeypatch.setattr(xdl.io.zarr, "_write_log", stop_after_first_region)
    assert main(["inpaint", files.nc, str(out), "--model", files.gap, "--chunks", "time=1", "--no-progress"]) == 130
    monkeypatch.setattr(xdl.io.zarr, "_write_log", real_log)
    assert main(["inpaint", files.nc, str(out), "--model", files.gap, "--chunks", "time=1", "--no-progress"]) == 1  # exists
    assert main(["inpaint", files.nc, str(out), "--model", files.gap, "--chunks", "time=1", "--no-progress",
                 "--resume"]) == 0
    got, want = xr.open_zarr(out), xr.open_zarr(reference)
    np.testing.assert_array_equal(got.sst.values, want.sst.values)
    np.testing.assert_array_equal(got.sst_inpainted.values, want.sst_inpainted.values)


def test_packed_coordinates_and_lazy_non_index_coords_survive(files, tmp_path):
    # GOES files store x/y scan angles as int16 + scale_factor, and carry 1-element coords like
    # band_id: the output must hold the decoded floats and every coordinate, exactly.
    ds = make_dataset()
    ds = ds.assign_coords(x=("x", (np.arange(ds.sizes["x"]) * 5.6e-5 - 0.07).astype("f4"), {"axis": "X"}),
                          band_id=("band", np.array([16], "i1")))
    ds.x.encoding.update(dtype="int16", scale_factor=5.6e-5, add_offset=-0.07, _FillValue=-999)
    src = tmp_path / "packed.nc"
    ds.to_netcdf(src)
    source = xr.open_dataset(src).load()
    out = tmp_path / "out.zarr"
    assert main(["inpaint", str(src), str(out), "--model", files.gap, "--var", "sst", "--no-progress"]) == 0
    back = xr.open_zarr(out)
    np.testing.assert_array_equal(back.x.values, source.x.values)
    assert back.x.dtype == source.x.dtype
    np.testing.assert_array_equal(back.band_id.values, [16])
