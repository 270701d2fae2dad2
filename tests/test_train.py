"""Tests of xdl.train.fit: gap filling, paired UNet and pix2pix, splits, checkpoints/resume, NaN handling."""

import re
import threading

import dask.array as da
import numpy as np
import pytest
import torch
import xarray as xr
from hypothesis import given, settings, strategies as st

import xdl
from xdl import train
from xdl.errors import InputError
from xdl.training import data as tdata
from xdl import normalize
from xdl.predict import predict
from xdl.train import fit, gap_loss, masked_l1, split_region, split_samples

TINY_PCONV = dict(depth=3, base_channels=8)


def smooth_fields(n=12, ny=64, nx=64, seed=0, blobs=4):
    """Smooth random fields: a few drifting Gaussian blobs plus a sinusoid, one per time step."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float64)
    c = rng.uniform(0, 1, (blobs, 2)) * (ny, nx)
    v = rng.normal(0, 1.5, (blobs, 2))
    amp = rng.uniform(0.5, 2.0, blobs) * rng.choice([-1, 1], blobs)
    w = rng.uniform(6, 14, blobs)
    out = np.empty((n, ny, nx))
    for t in range(n):
        f = 0.5 * np.sin(2 * np.pi * (xx / nx + 0.05 * t)) * np.cos(2 * np.pi * yy / ny)
        for k in range(blobs):
            cy, cx = c[k] + t * v[k]
            f += amp[k] * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * w[k] ** 2))
        out[t] = f
    return out


def with_holes(a, seed=1, n_holes=2, size=6):
    a = a.copy()
    rng = np.random.default_rng(seed)
    for t in range(a.shape[0]):
        for _ in range(n_holes):
            y, x = rng.integers(0, a.shape[-2] - size), rng.integers(0, a.shape[-1] - size)
            a[t, y:y + size, x:x + size] = np.nan
    return a


def gap_dataset(n=12, ny=64, nx=64, holes=True):
    a = smooth_fields(n, ny, nx)
    a = (with_holes(a) if holes else a) * 2.0 + 290.0
    ds = xr.Dataset({"sst": (("time", "y", "x"), a.astype("f4"), {"units": "K", "standard_name": "sea_surface_temperature"})},
                    coords={"time": np.arange(n)}, attrs={"title": "synthetic sst"})
    return ds


def paired_dataset(n=12, ny=64, nx=64):
    a = smooth_fields(n, ny, nx, seed=3)
    b = np.tanh(a) * 3.0 + 0.5 * a ** 2 + 10.0  # a smooth function of a
    return xr.Dataset({"a": (("time", "y", "x"), a.astype("f4"), {"units": "m"}),
                       "b": (("time", "y", "x"), b.astype("f4"), {"units": "K", "standard_name": "air_temperature"})})


# ============================================================================ splits

@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 200), val=st.floats(0.01, 0.99))
def test_split_samples_is_contiguous_and_disjoint(n, val):
    tr, va = split_samples(n, val)
    assert len(tr) >= 1 and len(va) >= 1
    assert set(tr).isdisjoint(va)
    assert sorted(np.concatenate([tr, va]).tolist()) == list(range(n))
    assert tr.max() < va.min()  # validation is the trailing block of time steps
    assert va.tolist() == list(range(n - len(va), n))


def test_split_samples_errors():
    with pytest.raises(InputError, match="at least 2 samples"):
        split_samples(1, 0.2)
    with pytest.raises(InputError, match="val="):
        split_samples(10, 1.5)


def test_split_region_and_too_narrow():
    r = split_region(64, 0.25, 32, 8)
    assert r["train"] == (0, 48) and r["val"] == (48, 64) and r["val_tile"] == 16
    with pytest.raises(InputError, match="validation region"):
        split_region(64, 0.05, 32, 8)  # 3 px right of the cut < size multiple 8


def _record_loads(monkeypatch):
    """Record every window load: training batches load in the loader thread, validation in the main one."""
    calls = []
    orig = tdata.Source.load

    def load(self, names, sample, y0, x0, th, tw):
        calls.append((threading.current_thread() is threading.main_thread(), int(sample), int(x0), tw))
        return orig(self, names, sample, y0, x0, th, tw)

    monkeypatch.setattr(tdata.Source, "load", load)
    return calls


def test_time_split_never_shares_a_time_step(monkeypatch):
    calls = _record_loads(monkeypatch)
    ds = gap_dataset(n=10, ny=32, nx=32)
    m = fit(ds, "pconv-unet", variables=["sst"], epochs=1, steps_per_epoch=3, batch_size=4, tile=32,
            val=0.3, val_steps=2, progress=False, **TINY_PCONV)
    train_s = {s for is_val, s, _, _ in calls if not is_val}
    val_s = {s for is_val, s, _, _ in calls if is_val}
    assert train_s and val_s and train_s.isdisjoint(val_s)
    assert max(train_s) < min(val_s) and val_s <= {7, 8, 9}
    split = m.training["split"]
    assert split["kind"] == "time" and split["dim"] == "time" and split["n_val"] == 3


def test_fit_trains_only_on_what_inference_takes_for_observations(monkeypatch):
    """fit read every finite value as truth, where inpaint and evaluate apply the CF rule and skip
    an earlier xdl fill's values: MODIS L2P SST 30% below its valid_min, a raw _FillValue of
    -32768 read as data, a filled output's fills (probe). Now the windows fit loads hold NaN there."""
    loaded = []
    orig = tdata.Source.load

    def load(self, names, sample, y0, x0, th, tw):
        out = orig(self, names, sample, y0, x0, th, tw)
        loaded.append(out)
        return out

    monkeypatch.setattr(tdata.Source, "load", load)
    ds = gap_dataset(n=6, ny=32, nx=32)
    ds["sst"].values[:, ::7, ::5] = 200.0  # cloud-contaminated: below the valid minimum
    ds["sst"].attrs["valid_min"] = 250.0
    raw = ds.copy()
    raw["sst"] = xr.where(np.isfinite(ds.sst), ((ds.sst - 290.0) * 100).round(), -32768).astype("i2")
    raw["sst"].attrs = {"_FillValue": -32768, "scale_factor": 0.01, "add_offset": 290.0, "units": "K",
                        "valid_min": -4000}
    filled = ds.dl.inpaint(variables=["sst"], domain=None)  # its fills are no observations
    filled["sst"] = filled.sst.where(filled.sst_inpainted != 1, 999.0)  # marked, to be seen if read
    for data, bad in ((ds, lambda v: v < 250.0), (raw, lambda v: v == -32768), (filled, lambda v: v == 999.0)):
        loaded.clear()
        fit(data, "pconv-unet", variables=["sst"], epochs=1, steps_per_epoch=2, batch_size=2, tile=32,
            val=0.3, val_steps=1, progress=False, **TINY_PCONV)
        values = np.concatenate([w.ravel() for w in loaded])
        assert np.isnan(values).any() and not bad(values[np.isfinite(values)]).any()


def test_time_split_refuses_times_out_of_order():
    """Split by index, a shuffled hourly series put validation hours among the training ones, and
    the card's ranges read backwards (probe)."""
    ds = gap_dataset(n=6, ny=32, nx=32).assign_coords(
        time=np.arange(6).astype("datetime64[h]").astype("datetime64[ns]"))
    with pytest.raises(InputError, match="'time' of 'sst', which fit splits .* is not in order.*sortby"):
        fit(ds.isel(time=[0, 3, 1, 4, 2, 5]), "pconv-unet", variables=["sst"], epochs=1, steps_per_epoch=1,
            batch_size=2, tile=32, val=0.3, progress=False, **TINY_PCONV)


def test_an_empty_split_says_where_it_lies():
    """A swath's empty border beyond the region cut failed with advice to check the fill values
    first (probe): the error now names the split's columns."""
    a = np.random.default_rng(0).standard_normal((32, 96)).astype("f4")
    a[:, 70:] = np.nan
    with pytest.raises(InputError, match=r"validation split \(columns 77-95 of 'x'; val= moves the cut\)"):
        fit(xr.Dataset({"sst": (("y", "x"), a)}), "pconv-unet", variables=["sst"], epochs=1, steps_per_epoch=1,
            batch_size=2, tile=32, val=0.2, progress=False, **TINY_PCONV)


def test_region_split_keeps_windows_apart(monkeypatch):
    calls = _record_loads(monkeypatch)
    field = gap_dataset(n=1, ny=32, nx=96).isel(time=0)  # a single 2-D field: split by region
    m = fit(field, "pconv-unet", variables=["sst"], epochs=1, steps_per_epoch=4, batch_size=4, tile=32,
            val=0.25, val_steps=2, progress=False, **TINY_PCONV)
    cut = m.training["split"]["cut"]
    assert m.training["split"]["kind"] == "region" and cut == 72
    tr = [(x0, tw) for is_val, _, x0, tw in calls if not is_val]
    va = [(x0, tw) for is_val, _, x0, tw in calls if is_val]
    assert tr and va
    assert all(x0 + tw <= cut for x0, tw in tr)
    assert all(x0 >= cut and x0 + tw <= 96 for x0, tw in va)


# ============================================================================ gap filling

def test_gap_filling_fit_lowers_val_loss_and_writes_card():
    ds = gap_dataset()
    m = fit(ds, "pconv-unet", variables=["sst"], epochs=4, steps_per_epoch=12, batch_size=8, tile=32,
            val_steps=3, progress=False, seed=0, **TINY_PCONV)
    assert isinstance(m, xdl.Model)
    card = m.card
    assert card["inputs"] == ["sst"] and card["outputs"] == ["sst"]
    assert card["fills_gaps"] is True and card["architecture"] == "pconv-unet"
    assert card["normalization"]["kind"] == "per_sample"
    assert card["units"] == {"sst": "K"} and card["output_units"] == {"sst": "K"}
    assert card["standard_names"] == {"sst": "sea_surface_temperature"}
    tr = card["training"]
    hist = tr["history"]
    assert len(hist["train_loss"]) == len(hist["val_loss"]) == 4
    assert hist["val_loss"][-1] < hist["val_loss"][0]
    assert tr["mode"] == "gap_filling" and tr["masks"] == "irregular" and tr["steps"] == 48
    assert tr["data"]["title"] == "synthetic sst" and tr["data"]["variables"] == ["sst"]
    assert card["metrics"]["val_loss"] == min(hist["val_loss"])
    assert not m.module.training and m.device.type == "cpu"
    # The inference engine accepts the card and fills the gaps.
    out = predict(ds.isel(time=slice(0, 2)), m, tile=64)
    assert np.isfinite(out["sst"].values).all()


def test_training_windows_are_normalised_as_the_engine_normalises():
    # Training (numpy windows, whole-field statistics) and predict (dask blocks) must give the model
    # the same numbers, bit for bit, for both kinds of normalisation.
    ds = gap_dataset(n=4, ny=32, nx=32)
    src = tdata.Source(ds, ["sst"], None, "data")
    st_ = tdata.compute_stats({"s": src.stats(["sst"])})
    mean, std = tdata.per_sample_arrays(st_["s"])
    data = da.from_array(ds["sst"].values[:, None], chunks=(1, 1, 32, 32))
    windows = ds["sst"].values[:, None]
    for norm in ({"kind": "per_sample"}, {"kind": "global", "mean": {"sst": 290.5}, "std": {"sst": 3.25}}):
        engine = np.asarray(normalize.for_input(norm, ["sst"], data, 2).apply(data))
        train_norm = tdata.normaliser(norm, ["sst"], mean, std)
        trained = np.stack([train_norm(windows[s], s) for s in range(4)])
        assert trained.dtype == engine.dtype == np.float32 and np.isnan(engine).any()
        np.testing.assert_array_equal(trained, engine)


@pytest.mark.parametrize("masks", ["mixed", "observed"])
def test_other_mask_kinds(masks):
    ds = gap_dataset(n=6, ny=32, nx=32)
    m = fit(ds, "pconv-unet", variables=["sst"], masks=masks, epochs=1, steps_per_epoch=2, batch_size=2,
            tile=32, val_steps=1, progress=False, **TINY_PCONV)
    assert m.training["masks"] == masks


def test_bool_dataarray_masks():
    ds = gap_dataset(n=6, ny=32, nx=32)
    cover = xr.DataArray(np.random.default_rng(0).random((3, 40, 40)) > 0.3, dims=("t", "y", "x"), name="cover")
    m = fit(ds, "pconv-unet", variables=["sst"], masks=cover, epochs=1, steps_per_epoch=2, batch_size=2,
            tile=32, val_steps=1, progress=False, **TINY_PCONV)
    assert m.training["masks"] == "observed:cover"
    with pytest.raises(InputError, match="must be bool"):
        fit(ds, "pconv-unet", variables=["sst"], masks=cover.astype("f4"), epochs=1, steps_per_epoch=1,
            tile=32, progress=False, **TINY_PCONV)


# ============================================================================ NaN handling

def test_gap_loss_ignores_originally_invalid_pixels():
    g = torch.Generator().manual_seed(0)
    truth = torch.randn(2, 1, 16, 16, generator=g)
    valid = torch.rand(2, 1, 16, 16, generator=g) > 0.3
    kept = torch.rand(2, 1, 16, 16, generator=g) > 0.4
    truth_nan = torch.where(valid, truth, torch.tensor(float("nan")))
    out = torch.randn(2, 1, 16, 16, generator=g, requires_grad=True)
    terms = gap_loss(out, truth_nan, valid, valid & kept)
    assert all(torch.isfinite(v) for v in terms.values())
    terms["loss"].backward()
    assert torch.isfinite(out.grad).all()
    assert (out.grad[~valid] == 0).all()  # originally invalid pixels never contribute
    assert (out.grad[valid & ~kept] != 0).any()  # the generated hole does
    # Any value at invalid pixels (NaN, huge) gives the same loss.
    other = gap_loss(out.detach(), torch.where(valid, truth, torch.tensor(1e6)), valid, valid & kept)
    assert float(other["loss"]) == pytest.approx(float(terms["loss"].detach()))
    # masked L1 likewise
    y = torch.tensor([1.0, float("nan"), 3.0])
    o = torch.zeros(3, requires_grad=True)
    loss = masked_l1(o, y, torch.isfinite(y))
    loss.backward()
    assert float(loss.detach()) == 2.0 and o.grad[1] == 0


def test_nan_never_reaches_the_model():
    ds = gap_dataset(n=6, ny=32, nx=32)
    seen = []
    base = xdl.zoo.create("pconv-unet", in_channels=1, **TINY_PCONV)

    def hook(_module, args):
        x, mask = args
        seen.append((bool(torch.isfinite(x).all()), bool((x[mask == 0] == 0).all())))

    base.module.register_forward_pre_hook(hook)
    fit(ds, base, variables=["sst"], epochs=1, steps_per_epoch=3, batch_size=4, tile=32, val_steps=1,
        progress=False)
    assert seen and all(finite and zeroed for finite, zeroed in seen)


# ============================================================================ checkpoints and resume

def _run(tmp, ds=None, **kw):
    ds = gap_dataset(n=8, ny=32, nx=32) if ds is None else ds
    # CPU: bit-identical resumption is promised there (cuDNN kernels may be nondeterministic).
    args = dict(variables=["sst"], steps_per_epoch=3, batch_size=4, tile=32, val_steps=2, progress=False,
                checkpoint_dir=str(tmp), seed=5, device="cpu", **TINY_PCONV)
    args.update(kw)
    return fit(ds, "pconv-unet", **args)


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_checkpoint_and_resume_bit_identical(tmp_path):
    full = _run(tmp_path / "full", epochs=2)
    _run(tmp_path / "split", epochs=1)
    meta, tensors = train.read_checkpoint(tmp_path / "split" / train.CHECKPOINT_NAME)
    assert meta["global_step"] == 3 and meta["epoch"] == 1 and len(meta["history"]["val_loss"]) == 1
    assert any(k.startswith("model/") for k in tensors) and any(k.endswith("/exp_avg_sq") for k in tensors)
    assert any(k.startswith("optim0/") and k.endswith("/step") for k in tensors)
    assert (tmp_path / "split" / train.BEST_NAME).exists()
    assert xdl.load_model(tmp_path / "split" / train.BEST_NAME).fills_gaps
    # The checkpoint is readable as best.safetensors is (it was owner-only, 0600; probe).
    modes = {(tmp_path / "split" / name).stat().st_mode & 0o777 for name in (train.CHECKPOINT_NAME, train.BEST_NAME)}
    assert len(modes) == 1 and modes.pop() & 0o044
    resumed = _run(tmp_path / "split", epochs=2, resume=True)
    _same_weights(full, resumed)
    assert full.training["history"] == resumed.training["history"]
    _, t_full = train.read_checkpoint(tmp_path / "full" / train.CHECKPOINT_NAME)
    _, t_res = train.read_checkpoint(tmp_path / "split" / train.CHECKPOINT_NAME)
    assert t_full.keys() == t_res.keys()
    assert all(torch.equal(t_full[k], t_res[k]) for k in t_full)


def test_resume_mid_epoch_bit_identical(tmp_path):
    full = _run(tmp_path / "full", epochs=1, steps_per_epoch=4)

    class Stop(Exception):
        pass

    calls = [0]

    def interrupt(module, _args):
        if module.training:
            calls[0] += 1
            if calls[0] == 4:  # "crash" in step 4: the checkpoint of step 2 exists, step 3 is lost
                raise Stop

    # The same initial weights as fit's own zoo.create under seed 5 (fit adds the sigma head), with an
    # interrupting hook.
    torch.manual_seed(5)
    ds = gap_dataset(n=8, ny=32, nx=32)
    handle_model = xdl.zoo.create("pconv-unet", in_channels=1, sigma=True, **TINY_PCONV)
    handle_model.module.register_forward_pre_hook(interrupt)
    with pytest.raises(Stop):
        fit(ds, handle_model, variables=["sst"], epochs=1, steps_per_epoch=4, batch_size=4, tile=32,
            val_steps=2, progress=False, checkpoint_dir=str(tmp_path / "cut"), checkpoint_every=2, seed=5,
            device="cpu")
    meta, _ = train.read_checkpoint(tmp_path / "cut" / train.CHECKPOINT_NAME)
    assert meta["global_step"] == 2 and meta["epoch"] == 0
    resumed = _run(tmp_path / "cut", epochs=1, steps_per_epoch=4, checkpoint_every=2, resume=True)
    _same_weights(full, resumed)


def test_resume_refuses_a_different_run(tmp_path):
    _run(tmp_path, epochs=1)
    with pytest.raises(InputError, match="different run"):
        _run(tmp_path, epochs=2, resume=True, steps_per_epoch=5)
    # Other data on the same grid, a shorter series, other gaps: each went on silently before, the
    # card naming the second run's data and split (its validation days trained on in epoch 1).
    other = gap_dataset(n=8, ny=32, nx=32)
    other["sst"] = other.sst * 0.5 + 3
    for changed, kw in (("data was", dict(ds=other)), ("split was", dict(ds=gap_dataset(n=6, ny=32, nx=32))),
                        ("masks was", dict(masks="clouds")),
                        # and what the weights learn from (went on silently: probe)
                        ("normalization was", dict(normalization="global")),
                        ("loss_weights was", dict(loss_weights={"hole": 0.0, "valid": 0.0}))):
        with pytest.raises(InputError, match=changed):
            _run(tmp_path, epochs=2, resume=True, **kw)


def test_training_that_hides_no_known_value_is_told(tmp_path):
    """mask_fraction=0 hid nothing, and masks="observed" over data whose only gaps are fixed land
    laid land over land: every loss 0, a model returned as trained, without a word (probe)."""
    with pytest.raises(InputError, match="mask_fraction=0.0: give a share above 0"):
        _run(tmp_path / "a", epochs=1, mask_fraction=0.0)
    ds = gap_dataset(n=8, ny=32, nx=32)
    land = np.zeros((32, 32), bool)
    land[:, :6] = True
    ds["sst"] = ds.sst.fillna(0).where(~xr.DataArray(land, dims=("y", "x")))  # the same gaps in every step
    with pytest.warns(xdl.XdlWarning, match="no training step hid a pixel with a known value"):
        _run(tmp_path / "b", ds=ds, epochs=1, masks="observed")


@pytest.mark.parametrize("edit, message", [
    (lambda meta: meta.update(epoch=-5), "epoch=-5"),
    (lambda meta: meta.update(epoch=float("nan")), "epoch=nan"),
    (lambda meta: meta.update(epoch="1"), "epoch='1'"),
    (lambda meta: meta.pop("check"), "no 'check' record"),
    (lambda meta: meta.update(global_step=10 ** 18), "global_step="),
    (lambda meta: meta.update(history={"train_loss": [0.0]}), "a history of"),
    (lambda meta: meta.update(optimizer_scalars=[{"x": 1}]), "optimizer_scalars"),
    (lambda meta: meta.update(format="9"), "format '9'"),
    (None, "not a readable xdl training checkpoint"),  # truncated
])
def test_resume_refuses_a_checkpoint_no_run_wrote(tmp_path, edit, message):
    # Edited or truncated checkpoints raised IndexError, TypeError, KeyError or SafetensorError from
    # deep inside, or were taken (epoch=NaN went into the card; epoch=-5 trained with 0.0 losses).
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    _run(tmp_path, epochs=1)
    path = tmp_path / train.CHECKPOINT_NAME
    if edit is None:
        path.write_bytes(path.read_bytes()[:100])
    else:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads(f.metadata()["xdl_checkpoint"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        edit(meta)
        save_file(tensors, str(path), metadata={"xdl_checkpoint": json.dumps(meta)})
    with pytest.raises(InputError, match=re.escape(message)):
        _run(tmp_path, epochs=2, resume=True)


# ============================================================================ paired mappings

def test_paired_unet_fit_and_global_stats():
    ds = paired_dataset()
    m = fit(ds, "unet", inputs=["a"], targets=["b"], epochs=3, steps_per_epoch=15, batch_size=8, tile=32,
            val_steps=3, progress=False, depth=2, base_channels=8)
    hist = m.training["history"]
    assert hist["val_loss"][-1] < hist["val_loss"][0]
    norm = m.normalization
    assert norm["kind"] == "global"
    n_train = 10  # 12 steps, val=0.2: the last 2 are validation
    for v in ("a", "b"):
        x = ds[v].values[:n_train].astype(np.float64)
        assert norm["mean"][v] == pytest.approx(np.nanmean(x), rel=1e-6, abs=1e-9)
        assert norm["std"][v] == pytest.approx(np.nanstd(x), rel=1e-6)
    assert m.inputs == ["a"] and m.outputs == ["b"] and not m.fills_gaps
    assert m.units == {"a": "m"} and m.output_units == {"b": "K"} and m.standard_names == {"b": "air_temperature"}
    assert m.metrics["val_l1"] == min(hist["val_loss"])


def test_paired_with_gappy_inputs_and_mask():
    ds = paired_dataset(n=6, ny=32, nx=32)
    ds["a"] = ds["a"].copy(data=with_holes(ds["a"].values))
    ds["b"] = ds["b"].copy(data=with_holes(ds["b"].values, seed=7))
    m = fit(ds.chunk({"time": 1}), "unet", inputs=["a"], targets=["b"], epochs=1, steps_per_epoch=2,
            batch_size=2, tile=32, val_steps=1, progress=False, depth=2, base_channels=4, with_mask=True)
    assert np.isfinite(m.training["history"]["val_loss"]).all() and m.takes_mask


def test_pix2pix_fit_logs_gan_terms_and_lowers_l1():
    ds = paired_dataset()
    m = fit(ds, "pix2pix", inputs=["a"], targets=["b"], epochs=3, steps_per_epoch=15, batch_size=8, tile=32,
            val_steps=3, progress=False, depth=3, ngf=8, ndf=8)
    hist = m.training["history"]
    for k in ("d_loss", "g_gan", "g_l1", "train_loss", "val_loss"):
        assert len(hist[k]) == 3 and np.isfinite(hist[k]).all(), k
    assert hist["val_loss"][-1] < hist["val_loss"][0]
    assert m.config["out_activation"] is None and m.training["optimizer"]["lr"] == 2e-4
    assert m.training["mode"] == "pix2pix"


# ============================================================================ errors

def test_error_unknown_variable():
    with pytest.raises(InputError, match="'nope'.*not in the data"):
        fit(gap_dataset(n=4, ny=32, nx=32), "pconv-unet", variables=["nope"], progress=False, **TINY_PCONV)
    with pytest.raises(InputError, match="'c'.*targets"):
        fit(paired_dataset(n=4, ny=32, nx=32), "unet", inputs=["a"], targets=["c"], progress=False)


def test_error_tile_smaller_than_size_multiple():
    with pytest.raises(InputError, match="tile=4 is smaller than the model's size multiple 8"):
        fit(gap_dataset(n=4, ny=32, nx=32), "pconv-unet", variables=["sst"], tile=4, progress=False, **TINY_PCONV)
    with pytest.raises(InputError, match="fewer than the model's size multiple"):
        fit(gap_dataset(n=4, ny=4, nx=32, holes=False), "pconv-unet", variables=["sst"], tile=32, progress=False, **TINY_PCONV)


def test_error_no_valid_data():
    ds = gap_dataset(n=4, ny=32, nx=32)
    ds["sst"][:] = np.nan
    with pytest.raises(InputError, match="no valid data"):
        fit(ds, "pconv-unet", variables=["sst"], epochs=1, steps_per_epoch=1, tile=32, progress=False,
            **TINY_PCONV)


def test_early_stopping_returns_best_weights(tmp_path):
    m = _run(tmp_path, epochs=6, lr=3.0, patience=1)  # an absurd lr: validation soon stops improving
    tr = m.training
    assert tr["stopped_early"] and tr["epochs"] < 6
    best = tr["best_epoch"]
    assert m.metrics["val_loss"] == tr["history"]["val_loss"][best - 1] == min(tr["history"]["val_loss"])
    _same_weights(m, xdl.load_model(tmp_path / train.BEST_NAME))


@pytest.mark.gpu
def test_cuda_bf16_fits_all_modes():
    ds, pd_ = gap_dataset(), paired_dataset()
    runs = [fit(ds, "pconv-unet", variables=["sst"], device="cuda", **TINY_PCONV, **FAST),
            fit(pd_, "unet", inputs=["a"], targets=["b"], device="cuda", depth=2, base_channels=8, **FAST),
            fit(pd_, "pix2pix", inputs=["a"], targets=["b"], device="cuda", depth=3, ngf=8, ndf=8, **FAST)]
    for m in runs:
        hist = m.training["history"]
        assert m.training["precision"] == "bfloat16" and m.training["device"] == "cuda"
        assert np.isfinite(hist["val_loss"]).all() and hist["val_loss"][-1] < hist["val_loss"][0]
        assert m.device.type == "cpu" and not m.module.training


FAST = dict(epochs=3, steps_per_epoch=15, batch_size=8, tile=32, val_steps=3, progress=False)


def test_a_batch_that_leaves_batch_norm_one_value_is_refused_before_training():
    """A batch of one tile the size multiple's side: torch raised "Expected more than 1 value per
    channel when training" from inside the first step (probe: fill-unet tile 32, unet tile 4)."""
    rng = np.random.default_rng(0)
    ds = xr.Dataset({"a": (("time", "y", "x"), rng.standard_normal((4, 32, 32)).astype("f4"))})
    model = xdl.zoo.create("unet", in_channels=1, depth=2, base_channels=4)
    with pytest.raises(InputError, match="batch_size=1 with tile=4 .* use batch_size >= 2 or tile >= 8"):
        ds.dl.fit(model, inputs=["a"], targets=["a"], epochs=1, steps_per_epoch=1, batch_size=1, tile=4,
                  val=0.25, val_steps=1, progress=False)


def test_a_model_without_a_mask_is_refused_as_a_gap_filler():
    """Found by a probe: fit("unet", variables=[...]) trained a "gap filler" on zeros in its holes
    that inpaint then gave NaN there (nan_policy "propagate"): every gap unfilled, flag 4, with a
    warning blaming its weights."""
    ds = xr.Dataset({"a": (("time", "y", "x"), np.random.default_rng(0).standard_normal((4, 32, 32)).astype("f4"))})
    with pytest.raises(InputError, match="'unet' takes no mask, so it cannot tell a gap from data"):
        ds.dl.fit("unet", variables=["a"], epochs=1, steps_per_epoch=1, batch_size=2, tile=16, progress=False)
