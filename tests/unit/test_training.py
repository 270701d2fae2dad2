"""Unit tests of the xdl.training pieces: splits, losses, TrainConfig, checkpoints, tasks, data statistics."""

import dataclasses

import numpy as np
import pytest
import torch
import xarray as xr

from xdl.conventions import layout
from xdl.errors import InputError
from xdl.training import checkpoint, data, losses, splits, tasks
from xdl.training.config import TrainConfig
from xdl.training.loop import TrainState


# ============================================================================ splits

def test_split_samples_trailing_block_and_minimums():
    tr, va = splits.split_samples(10, 0.25)
    assert tr.tolist() == list(range(8)) and va.tolist() == [8, 9]  # round(2.5) = 2
    tr, va = splits.split_samples(2, 0.99)  # at least one step stays for training
    assert tr.tolist() == [0] and va.tolist() == [1]
    tr, va = splits.split_samples(50, 0.001)  # at least one validation step
    assert len(va) == 1 and va[0] == 49


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, True, "0.2", None])
def test_check_val_fraction_refuses(bad):
    with pytest.raises(InputError, match=r"val=.*\(0, 1\)"):
        splits.check_val_fraction(bad)


def test_split_region_shrinks_tiles_to_the_size_multiple():
    r = splits.split_region(100, 0.3, 64, 16)
    assert r["cut"] == 70 and r["train"] == (0, 70) and r["val"] == (70, 100)
    assert r["train_tile"] == 64 and r["val_tile"] == 16  # 30 px -> 16, a multiple of 16
    assert splits.axis_tile(40, 64, 16, "x", "fix") == 32
    with pytest.raises(InputError, match="fewer than the model's size multiple 16; fix"):
        splits.axis_tile(15, 64, 16, "the x axis", "fix")


def test_is_no_validation():
    assert splits.is_no_validation(None) and splits.is_no_validation(0) and splits.is_no_validation(0.0)
    assert not splits.is_no_validation(False) and not splits.is_no_validation(0.2)


def _source(n=6, ny=16, nx=32, time_coord=True):
    a = np.arange(n * ny * nx, dtype="f4").reshape(n, ny, nx)
    coords = {"time": np.arange(n)} if time_coord else {}
    ds = xr.Dataset({"v": (("time", "y", "x"), a)}, coords=coords)
    return data.Source(ds, ["v"], None, "data")


def test_plan_split_by_time_and_by_region():
    src = _source()
    plan = splits.plan_split(src, 0.34, ["v"], ["v"], None, 16, 8, 16)
    assert plan.split["kind"] == "time" and plan.split["n_train"] == 4 and plan.split["n_val"] == 2
    assert plan.train_samples.tolist() == [0, 1, 2, 3] and plan.val_samples.tolist() == [4, 5]
    assert plan.split["train"] == ["0", "3"] and plan.split["val"] == ["4", "5"]
    field = data.Source(xr.Dataset({"v": (("y", "x"), np.zeros((16, 32), "f4"))}), ["v"], None, "data")
    plan = splits.plan_split(field, 0.25, ["v"], ["v"], None, 16, 8, 16)
    assert plan.split["kind"] == "region" and plan.split["cut"] == 24
    assert plan.train_x == (0, 24) and plan.val_x == (24, 32) and (plan.tw, plan.vtw) == (16, 8)
    assert splits.plan_split(src, None, ["v"], ["v"], None, 16, 8, 16).vsrc is None


def test_is_time_like():
    a = xr.DataArray(np.zeros((2, 2, 3)), dims=("member", "step", "x"),
                     coords={"step": ("step", np.array(["2020-01-01", "2020-01-02"], "datetime64[ns]"))})
    assert layout.is_time_like(a, "step") and not layout.is_time_like(a, "member")
    assert layout.is_time_like(a.rename(member="time"), "time")
    b = a.assign_coords(member=("member", [0, 1], {"axis": "T"}))
    assert layout.is_time_like(b, "member")


# ============================================================================ losses

def test_masked_l1_ignores_invalid_targets_with_zero_gradient():
    out = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    target = torch.tensor([0.0, float("nan"), 5.0])
    valid = torch.tensor([True, False, True])
    loss = losses.masked_l1(out, target, valid)
    loss.backward()
    assert float(loss.detach()) == 1.5  # (|1 - 0| + |3 - 5|) / 2
    assert out.grad.tolist() == [0.5, 0.0, -0.5]


def test_gap_loss_terms_and_no_gradient_outside_the_data():
    truth = torch.ones(1, 1, 4, 4)
    truth[..., 0, 0] = float("nan")
    valid = torch.isfinite(truth)
    mask = valid.clone()
    mask[..., 2:, :] = False  # the lower half is the hole
    out = torch.zeros(1, 1, 4, 4, requires_grad=True)
    terms = losses.gap_loss(out, truth, valid, mask, {"hole_mse": 2.0})
    v = {k: float(t.detach()) for k, t in terms.items()}
    assert v["valid"] == 1.0 and v["hole"] == 1.0 and v["hole_mse"] == 1.0
    assert v["loss"] == pytest.approx(1.0 + 6.0 * 1.0 + 0.1 * v["tv"] + 2.0 * 1.0)
    terms["loss"].backward()
    assert out.grad[0, 0, 0, 0] == 0.0 and torch.isfinite(out.grad).all()


def test_gan_terms():
    z = torch.zeros(3)
    assert float(losses.discriminator_loss(z, z)) == pytest.approx(np.log(2.0))
    assert float(losses.generator_gan_loss(torch.full((3,), 50.0))) == pytest.approx(0.0, abs=1e-12)


def test_resolve_weights():
    assert losses.resolve_weights(None, "gap", False) == losses.GAP_WEIGHTS
    assert losses.resolve_weights({"l1": 10}, "paired", True) == {"gan": 1.0, "l1": 10.0}
    assert losses.resolve_weights(None, "paired", False) == {}
    with pytest.raises(InputError, match=r"unknown terms \['gan'\]; this mode uses none"):
        losses.resolve_weights({"gan": 1}, "paired", False)


# ============================================================================ TrainConfig

def test_train_config_checks_and_is_frozen():
    c = TrainConfig(epochs=0, tile=np.int64(64))
    assert c.epochs == 0 and type(c.tile) is int and c.total_steps == 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.epochs = 3
    for kw, msg in [({"steps_per_epoch": 0}, "steps_per_epoch must be an int >= 1"),
                    ({"batch_size": True}, "batch_size must be an int >= 1"),
                    ({"patience": 0}, "patience must be an int >= 1"),
                    ({"epochs": 1.5}, "epochs must be an int >= 0"),
                    ({"checkpoint_every": 5}, "need checkpoint_dir"),
                    ({"resume": True}, "need checkpoint_dir")]:
        with pytest.raises(InputError, match=msg):
            TrainConfig(**kw)
    with pytest.raises(InputError, match="tile must be"):
        dataclasses.replace(c, tile=0)  # replace() checks again


def test_train_config_val_steps_checked_only_when_asked():
    c = TrainConfig(val_steps=0)  # no validation: val_steps is never used
    with pytest.raises(InputError, match="val_steps must be an int >= 1, got 0"):
        c.checked_val_steps()
    assert TrainConfig(val_steps=np.int32(3)).checked_val_steps() == 3


# ============================================================================ checkpoints

def _trained_task():
    torch.manual_seed(0)
    net = torch.nn.Conv2d(1, 1, 3, padding=1)
    task = tasks.PairedTask(net, torch.device("cpu"), lr=1e-2)
    b = {"x": torch.randn(2, 1, 8, 8), "valid": torch.ones(2, 1, 8, 8, dtype=torch.bool)}
    b["y"], b["y_valid"] = 2 * b["x"], b["valid"]
    for _ in range(3):
        task.training_step(b)
    return task


def test_checkpoint_round_trip(tmp_path):
    task = _trained_task()
    state = TrainState.start(task)
    state.global_step, state.epoch, state.best_val, state.best_epoch = 3, 1, 0.25, 1
    state.history["train_loss"].append(0.5)
    state.best_state = {k: v.clone() for k, v in task.module.state_dict().items()}
    ck = checkpoint.Checkpointer(tmp_path / "run", {"seed": 0, "tile": 8})
    ck.save(task, state, {"architecture": "x"})
    meta, tensors = checkpoint.read_checkpoint(ck.path)
    assert meta["global_step"] == 3 and meta["card"] == {"architecture": "x"} and meta["format"] == "1"
    assert {"model/weight", "best/weight", "optim0/0/exp_avg", "optim0/0/exp_avg_sq"} <= set(tensors)

    fresh = tasks.PairedTask(torch.nn.Conv2d(1, 1, 3, padding=1), torch.device("cpu"), lr=1e-2)
    back = TrainState.start(fresh)
    assert checkpoint.Checkpointer(tmp_path / "run", {"seed": 0, "tile": 8}).restore(fresh, back)
    assert (back.global_step, back.epoch, back.best_val, back.best_epoch) == (3, 1, 0.25, 1)
    assert back.history["train_loss"] == [0.5]
    for k, v in task.module.state_dict().items():
        assert torch.equal(fresh.module.state_dict()[k], v) and torch.equal(back.best_state[k], v)
    a, b = task.optimizers[0].state_dict()["state"], fresh.optimizers[0].state_dict()["state"]
    for i in a:
        for name in a[i]:
            assert torch.equal(torch.as_tensor(a[i][name]), torch.as_tensor(b[i][name]))


def test_checkpoint_from_another_run_is_refused(tmp_path):
    task = _trained_task()
    checkpoint.Checkpointer(tmp_path, {"seed": 0}).save(task, TrainState.start(task), {})
    with pytest.raises(InputError, match="different run: seed was 0, now 1"):
        checkpoint.Checkpointer(tmp_path, {"seed": 1}).restore(task, TrainState.start(task))
    assert not checkpoint.Checkpointer(tmp_path / "empty", {"seed": 1}).restore(task, TrainState.start(task))
    (tmp_path / "plain.safetensors").write_bytes(b"")
    from safetensors.torch import save_file
    save_file({"w": torch.zeros(1)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(InputError, match="not an xdl training checkpoint"):
        checkpoint.read_checkpoint(tmp_path / "plain.safetensors")


# ============================================================================ tasks and data

def test_tasks_histories_and_optimisers():
    assert tasks.GapFillTask.card_mode == "gap_filling" and tasks.Pix2PixTask.card_mode == "pix2pix"
    net = torch.nn.Conv2d(1, 1, 1)
    gap = tasks.make_task("gap", False, net, torch.device("cpu"), None, False, {}, None)
    assert isinstance(gap, tasks.GapFillTask) and gap.lr == 1e-3
    assert list(gap.new_history()) == ["train_loss", "val_loss", "val_valid", "val_hole", "val_tv"]
    assert list(tasks.Pix2PixTask.new_history(tasks.Pix2PixTask.__new__(tasks.Pix2PixTask))) == \
        ["train_loss", "val_loss", "d_loss", "g_gan", "g_l1"]


def test_combine_matches_numpy_over_samples():
    rng = np.random.default_rng(1)
    a = rng.normal(3.0, 2.0, (5, 8, 8))
    a[1, :4] = np.nan
    a[3] = np.nan  # a sample without data counts for nothing
    c = np.isfinite(a).sum(axis=(1, 2))
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
        m, s = np.nanmean(a, axis=(1, 2)), np.nanstd(a, axis=(1, 2))
    mean, std, n = data.combine((c, m, s), np.arange(5))
    assert n == np.isfinite(a).sum()
    assert mean == pytest.approx(np.nanmean(a), rel=1e-12) and std == pytest.approx(np.nanstd(a), rel=1e-12)
    assert data.combine((c, m, s), np.array([3])) == (0.0, 1.0, 0)


def test_normaliser_kinds():
    x = np.array([[[2.0, 4.0]]], np.float32)
    norm = {"kind": "global", "mean": {"v": 1.0}, "std": {"v": 2.0}}
    assert data.normaliser(norm, ["v"])(x, 0).tolist() == [[[0.5, 1.5]]]
    assert data.normaliser({"kind": "none"}, ["v"])(x, 0) is x
    pm, ps = data.per_sample_arrays([(None, np.array([1.0, np.nan]), np.array([0.0, 2.0]))])
    assert pm.tolist() == [[1.0], [0.0]] and ps.tolist() == [[1.0], [2.0]]  # engine fallbacks: 0 and 1
    f = data.normaliser({"kind": "per_sample"}, ["v"], pm, ps)
    assert f(x, 1).tolist() == [[[1.0, 2.0]]]
