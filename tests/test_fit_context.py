"""fit with context (other variables, static fields, neighbouring time steps): windows, normalisation,
skill, card and fine-tuning rules."""

import numpy as np
import pytest
import torch
import xarray as xr

import xdl
from xdl.errors import InputError
from xdl.fit import fit
from xdl.normalize import Normalization
from xdl.training import data as tdata
from xdl.training.context import ContextSampler, inherited_context, resolve_context
from xdl.training.splits import plan_split

TINY_FILL = dict(depth=2, base_channels=8, patch=2)


def smooth(n=8, ny=32, nx=32, seed=0):
    """Smooth moving fields (a few sinusoids with random phases drifting in time), float64."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:ny, 0:nx] / max(ny, nx)
    k = rng.uniform(2, 7, (3, 2))
    ph = rng.uniform(0, 2 * np.pi, 3)
    return np.stack([sum(np.sin(k[i, 0] * xx + ph[i] + 0.4 * t) * np.cos(k[i, 1] * yy + 0.2 * i * t)
                         for i in range(3)) for t in range(n)])


def labelled(n=6, ny=32, nx=32):
    """sst = 100 t + a pattern (its time step readable from any pixel), wind = -sst, oro a 2-D field."""
    pattern = np.add.outer(np.arange(ny), np.arange(nx) / 100.0) / 10.0
    sst = 100.0 * np.arange(n)[:, None, None] + pattern
    oro = 7.0 + pattern[::-1].copy()
    return xr.Dataset({"sst": (("time", "y", "x"), sst.astype("f4")), "wind": (("time", "y", "x"), (-sst).astype("f4")),
                       "oro": (("y", "x"), oro.astype("f4"))}, coords={"time": np.arange(n)})


def context_samplers(ds, norm, val=None, k=2, context=("wind", "oro")):
    ctx = resolve_context(ds, ["sst"], list(context), k)
    src = tdata.Source(ds, ["sst", *context], None, "data", list(context))
    plan = plan_split(src, val, ["sst", *context], ["sst"], None, 32, 4, 32, list(context))
    train, val_s, _ = tdata.samplers(src, plan, ["sst"], ["sst"], "gap", dict(norm), "irregular", None, None, 32, ctx)
    return ctx, src, train, val_s


# ============================================================================ windows

def test_windows_hold_the_context_and_the_right_time_steps():
    ds = labelled(n=6)
    ctx, _, sampler, _ = context_samplers(ds, {"kind": "none"})
    assert isinstance(sampler, ContextSampler)
    assert [(c.name, c.offset) for c in ctx.channels] == [("wind", 0), ("oro", 0), ("sst", -2), ("sst", -1),
                                                          ("sst", 1), ("sst", 2)]
    assert ctx.info.tolist() == [[0, 0], [0, 0], [-2, 1], [-1, 1], [1, 1], [2, 1]]
    b = sampler.batch(np.random.default_rng(3), 24)
    x, valid, kept = b["x"].numpy(), b["valid"].numpy(), b["kept"].numpy()
    assert x.shape == valid.shape == kept.shape == (24, 7, 32, 32)
    sst, wind, oro = (ds[v].values for v in ("sst", "wind", "oro"))
    seen_t = set()
    for i in range(24):
        t = int(round(float(x[i, 0, 0, 0]) / 100.0))
        seen_t.add(t)
        np.testing.assert_array_equal(x[i, 0], sst[t])   # the target, untouched ("none" normalisation)
        np.testing.assert_array_equal(x[i, 1], wind[t])  # a context variable at the same time
        np.testing.assert_array_equal(x[i, 2], oro)      # a static field, broadcast
        for j, off in zip(range(3, 7), (-2, -1, 1, 2)):
            if 0 <= t + off < 6:
                assert valid[i, j].all()
                np.testing.assert_array_equal(x[i, j], sst[t + off])
            else:  # beyond the ends: missing, zero
                assert not valid[i, j].any() and not x[i, j].any()
        assert not kept[i, 0].all()  # the target always gets hidden gaps
    assert len(seen_t) >= 4
    # Context gaps: in some windows every context channel keeps all (no own gaps), in others each has its own draw.
    ctx_all_kept = kept[:, 1:].reshape(24, 6, -1).all(axis=(1, 2))
    assert ctx_all_kept.any() and not ctx_all_kept.all()
    drawn = ~ctx_all_kept
    assert not np.array_equal(kept[drawn][:, 1], kept[drawn][:, 2])  # own draws, not the target's copied


def test_neighbours_never_cross_the_validation_split():
    ds = labelled(n=8)
    _, _, train, val = context_samplers(ds, {"kind": "none"}, val=0.25, k=1, context=())
    assert sorted(train.allowed) == list(range(6)) and sorted(val.allowed) == [6, 7]
    assert train.neighbour(5, 1) is None and train.neighbour(5, -1) == 4 and train.neighbour(0, -1) is None
    assert val.neighbour(6, -1) is None and val.neighbour(6, 1) == 7
    b = train.batch(np.random.default_rng(0), 30)
    t = np.rint(b["x"][:, 0, 0, 0].numpy() / 100).astype(int)
    assert t.max() == 5 and not b["valid"][t == 5][:, 2].any()  # t+1 = 6 is a validation step


def test_each_channel_is_normalised_by_its_own_time_steps_statistics():
    ds = labelled(n=5)
    a = smooth(n=5, seed=1) * np.arange(1.0, 6.0)[:, None, None]  # every step its own field and statistics
    ds["sst"] = (("time", "y", "x"), (a + 3.0).astype("f4"))
    ds["wind"] = (("time", "y", "x"), (a * a).astype("f4"))
    _, src, sampler, _ = context_samplers(ds, {"kind": "per_sample"}, k=1, context=("wind", "oro"))
    st = tdata.compute_stats({"s": src.stats(["sst", "wind", "oro"])})["s"]
    mean, std = tdata.per_sample_arrays(st)
    raw = {v: ds[v].values for v in ("sst", "wind", "oro")}

    def normalised(var, col, s, field=None):
        return Normalization(mean[s, col, None, None], std[s, col, None, None]).apply(raw[var][s] if field is None
                                                                                      else field).astype("f4")

    b = sampler.batch(np.random.default_rng(1), 10)
    x = b["x"].numpy()
    for i in range(10):
        t = next(s for s in range(5) if np.array_equal(x[i, 0], normalised("sst", 0, s)))  # the window's step
        np.testing.assert_array_equal(x[i, 1], normalised("wind", 1, t))
        np.testing.assert_array_equal(x[i, 2], normalised("oro", 2, t, raw["oro"]))
        for j, s in ((3, t - 1), (4, t + 1)):  # neighbours: their own step's statistics
            if 0 <= s < 5:
                np.testing.assert_array_equal(x[i, j], normalised("sst", 0, s))
            else:
                assert not x[i, j].any()
    assert mean[0, 2] == mean[4, 2] and std[0, 2] == std[4, 2]  # the static field: one set of statistics


# ============================================================================ skill and card

def _fill_rmse(model, fields, wind, hidden):
    """RMSE on ``hidden`` of ``model`` filling ``fields`` (per-sample standardised) with or without ``wind``."""
    def norm(a):
        return (a - a.mean(axis=(1, 2), keepdims=True)) / a.std(axis=(1, 2), keepdims=True)
    x = torch.from_numpy(norm(fields)[:, None].astype("f4"))
    keep = torch.from_numpy(~hidden[:, None])
    with torch.no_grad():
        if getattr(model.module, "takes_context", False):
            xc = torch.cat([torch.where(keep, x, 0.0), torch.from_numpy(norm(wind)[:, None].astype("f4"))], 1)
            mc = torch.cat([keep, torch.ones_like(keep)], 1).float()
            out = model.module(xc, mc, torch.zeros(1, 2))
        else:
            out = model.module(torch.where(keep, x, 0.0), keep.float())
    err = (out[:, :1] - x)[~keep]
    return float(err.square().mean().sqrt())


def test_affine_context_cuts_the_fill_error():
    a = smooth(n=10, seed=0)
    ds = xr.Dataset({"sst": (("time", "y", "x"), a.astype("f4")),
                     "wind": (("time", "y", "x"), (3.0 * a + 1.0).astype("f4"))})
    budget = dict(variables=["sst"], epochs=1, steps_per_epoch=3, batch_size=4, tile=32, val_steps=2,
                  progress=False, seed=0, **TINY_FILL)
    single = fit(ds, "fill-unet", **budget)
    with_ctx = fit(ds, "fill-unet", context=["wind"], **budget)
    test = smooth(n=4, seed=9)  # fields neither model trained on
    hidden = xdl.masks.make("blocks", (32, 32), 0.3, np.random.default_rng(0))[None].repeat(4, 0) == 0
    e_single = _fill_rmse(single, test, None, hidden)
    e_ctx = _fill_rmse(with_ctx, test, 3.0 * test + 1.0, hidden)
    assert e_ctx < 0.3 * e_single, (e_ctx, e_single)
    assert with_ctx.card["metrics"]["val_hole"] < 0.3 * single.card["metrics"]["val_hole"]
    card = with_ctx.card
    assert card["context"] == {"variables": ["wind"], "time_window": 0}
    assert card["config"]["context_features"] == 16 and card["config"]["sigma"] is True
    assert card["inputs"] == ["sst"] and "context" not in single.card


def test_time_window_static_context_and_observed_masks():
    a = smooth(n=8, seed=2)
    a[:, 5:12, 8:20] = np.nan  # real gaps to copy (masks="observed"), in target and context alike
    ds = xr.Dataset({"sst": (("time", "y", "x"), a.astype("f4")), "wind": (("time", "y", "x"), (2 * a).astype("f4")),
                     "oro": (("y", "x"), np.linspace(0, 1, 32 * 32).reshape(32, 32).astype("f4"))})
    m = fit(ds, "fill-unet", variables=["sst"], context=["wind", "oro"], time_window=1, masks="observed", epochs=1,
            steps_per_epoch=2, batch_size=2, tile=32, val_steps=1, progress=False, **TINY_FILL)
    assert m.card["context"] == {"variables": ["wind", "oro"], "time_window": 1}
    assert m.training["masks"] == "observed" and np.isfinite(m.training["history"]["val_loss"]).all()


def test_context_fields_are_read_by_the_context_rule():
    """fit reads a context field as inpaint does: an integer land mask without a fill value is data
    everywhere (reading every variable by the target rule refused it: a review), and a value
    outside a context field's valid range is missing."""
    a = smooth(n=6, seed=4)
    a[:, 5:12, 8:20] = np.nan
    wind = 2 * a
    wind[:, 0, :] = -50.0  # below its valid_min: no observation
    ds = xr.Dataset({"sst": (("time", "y", "x"), a.astype("f4")),
                     "wind": (("time", "y", "x"), wind.astype("f4"), {"valid_min": -10.0}),
                     "land": (("y", "x"), (np.arange(32 * 32).reshape(32, 32) % 3 == 0).astype("i1"))})
    read = xdl.fit.observed_only(ds, "gap", ["sst"], ["wind", "land"])
    assert np.isnan(read.wind.values[:, 0]).all() and np.isfinite(read.land.values).all()
    m = fit(ds, "fill-unet", variables=["sst"], context=["wind", "land"], epochs=1, steps_per_epoch=1,
            batch_size=2, tile=32, val_steps=1, progress=False, **TINY_FILL)
    assert m.card["context"]["variables"] == ["wind", "land"]


def test_fine_tune_keeps_the_context_and_refuses_another(tmp_path):
    a = smooth(n=6, seed=4)
    ds = xr.Dataset({"sst": (("time", "y", "x"), a.astype("f4")), "wind": (("time", "y", "x"), (a + 1).astype("f4")),
                     "rain": (("time", "y", "x"), (a * a).astype("f4"))})
    short = dict(epochs=1, steps_per_epoch=1, batch_size=2, tile=32, val_steps=1, progress=False)
    m = fit(ds, "fill-unet", variables=["sst"], context=["wind"], **short, **TINY_FILL)
    path = tmp_path / "m.safetensors"
    m.save(path)
    again = fit(ds, xdl.load_model(path), **short)  # no context named: the card's is kept
    assert again.card["context"] == {"variables": ["wind"], "time_window": 0} and again.inputs == ["sst"]
    with pytest.raises(InputError, match=r"trained with context=\['wind'\].*context=\['rain'\]"):
        fit(ds, m, context=["rain"], **short)
    with pytest.raises(InputError, match="time_window=1"):
        fit(ds, m, context=["wind"], time_window=1, **short)
    plain = fit(ds, "pconv-unet", variables=["sst"], **short, depth=2, base_channels=4)
    with pytest.raises(InputError, match="not trained with context"):
        fit(ds, plain, context=["wind"], **short)
    assert inherited_context({"context": {"accepts": "any", "max_fields": 32, "max_time_window": 3}}, True,
                             ["rain"], 2) == (["rain"], 2)
    # Either left out keeps the card's: the context alone, or the time window alone.
    card = {"context": {"variables": ["wind"], "time_window": 1}}
    assert inherited_context(card, True, ["wind"], None) == (["wind"], 1)
    assert inherited_context(card, True, None, 1) == (["wind"], 1)
    with pytest.raises(InputError, match=r"passes context=\['wind'\], time_window=0"):
        inherited_context(card, True, ["wind"], 0)


def test_time_window_never_steps_along_a_vertical_dim():
    # Levels 200/500/850 are no neighbouring times: refused by fit as inpaint and evaluate refuse them.
    a = smooth(n=3, seed=5)
    ds = xr.Dataset({"z": (("level", "y", "x"), a.astype("f4"))},
                    coords={"level": ("level", [200, 500, 850], {"long_name": "pressure_level", "positive": "down"})})
    with pytest.raises(InputError, match="has the vertical dim"):
        fit(ds, "fill-unet", variables=["z"], time_window=1, epochs=1, steps_per_epoch=1, batch_size=1, tile=32,
            val=None, progress=False, **TINY_FILL)


def test_context_errors():
    ds = labelled(n=4)
    short = dict(epochs=1, steps_per_epoch=1, batch_size=1, tile=32, val_steps=1, progress=False)
    with pytest.raises(InputError, match="context variable 'nope' is not in the data"):
        fit(ds, "fill-unet", variables=["sst"], context=["nope"], **short, **TINY_FILL)
    with pytest.raises(InputError, match="also a target"):
        fit(ds, "fill-unet", variables=["sst"], context=["sst"], **short, **TINY_FILL)
    with pytest.raises(InputError, match="'pconv-unet' takes no context"):
        fit(ds, "pconv-unet", variables=["sst"], context=["wind"], **short, depth=2, base_channels=4)
    with pytest.raises(InputError, match="for gap filling"):
        fit(ds, "unet", inputs=["sst"], targets=["wind"], context=["oro"], **short, depth=2, base_channels=4)
    with pytest.raises(InputError, match="time_window needs a time dim"):
        fit(ds.isel(time=0), "fill-unet", variables=["sst"], time_window=1, **short, **TINY_FILL)


def test_a_context_fit_resumes_bit_identically(tmp_path):
    a = smooth(n=6, seed=5)
    ds = xr.Dataset({"sst": (("time", "y", "x"), a.astype("f4")), "wind": (("time", "y", "x"), (a - 2).astype("f4"))})

    def run(where, **kw):
        return fit(ds, "fill-unet", variables=["sst"], context=["wind"], time_window=1, steps_per_epoch=2, batch_size=2,
                   tile=32, val_steps=1, progress=False, checkpoint_dir=str(tmp_path / where), seed=3, device="cpu",
                   **TINY_FILL, **kw)

    full = run("full", epochs=2)
    run("split", epochs=1)
    resumed = run("split", epochs=2, resume=True)
    sa, sb = full.module.state_dict(), resumed.module.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert full.card["uncertainty"] == resumed.card["uncertainty"] and full.training["history"] == resumed.training["history"]
    with pytest.raises(InputError, match="different run"):
        fit(ds, "fill-unet", variables=["sst"], context=["wind"], time_window=2, epochs=2, steps_per_epoch=2,
            batch_size=2, tile=32, val_steps=1, progress=False, checkpoint_dir=str(tmp_path / "split"), seed=3,
            resume=True, **TINY_FILL)


def test_the_default_is_refused_and_a_bundled_name_fine_tunes():
    """Found by probes: fit(xdl.pretrained.load()) raised torch's "optimizer got an empty parameter
    list" once the default had no weights; fit("fill-default") (and `xdl train --model
    fill-default`, as `xdl zoo` suggests) was an unknown architecture; a fine-tuned copy kept the
    bundled model's name."""
    rng = np.random.default_rng(0)
    ds = xr.Dataset({"sst": (("time", "y", "x"), rng.standard_normal((4, 64, 64)).astype("f4"))})
    with pytest.raises(InputError, match="'fill-context' has no weights to train.*load\\('fill-default'\\)"):
        fit(ds, xdl.pretrained.load(), variables=["sst"], epochs=1, steps_per_epoch=1, tile=64, batch_size=2,
            progress=False)
    tuned = fit(ds, "fill-default", variables=["sst"], epochs=1, steps_per_epoch=1, tile=64, batch_size=2,
                progress=False)
    assert tuned.card["name"] == "fill-default-fine-tuned"
    assert tuned.card["description"].startswith("fill-default-fine-tuned: fine-tuned by xdl fit from fill-default")
