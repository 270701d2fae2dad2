"""The model card a training writes: data description, split, optimiser, history and metrics."""

from __future__ import annotations

import copy
import dataclasses

from ..models import pretrained


def describe_data(src, names) -> dict:
    """The card's description of a data source: variables, sizes, dims, sample count, title/source."""
    out = {"variables": list(names), "dims": src.sizes, "spatial_dims": list(src.spatial),
           "sample_dims": list(src.sample_dims), "n_samples": src.n_samples}
    for key in ("title", "source"):
        if key in src.attrs:
            out[key] = str(src.attrs[key])
    return out


@dataclasses.dataclass(frozen=True)
class CardContext:
    """What the card says about the model and data: fixed for a run (``norm`` is filled in once)."""

    old_card: dict
    ds: object
    src: object
    ins: list
    outs: list
    norm: dict
    split: dict
    tile_hw: tuple
    mask_desc: str | None = None
    mask_fraction: float | None = None
    context: dict | None = None  # the card's "context" of a model fit with context


UNCALIBRATED = {"kind": "gaussian", "scale": 1.0, "calibration": "none yet: calibrated when the fit ends"}


def loss_text(weights: dict) -> str:
    """The training loss a gap filler's ``weights`` make, in words (the card's ``training.loss``).

    >>> loss_text({"valid": 1.0, "hole": 6.0, "tv": 0.1, "hole_mse": 0.0, "nll": 1.0, "nll_beta": 1.0})
    '1 L1(seen) + 6 L1(hidden) + 0.1 TV + 1 Gaussian NLL(hidden; sigmas only, means detached; beta 1)'
    """
    names = {"valid": "L1(seen)", "hole": "L1(hidden)", "tv": "TV", "hole_mse": "MSE(hidden)",
             "nll": f"Gaussian NLL(hidden; sigmas only, means detached; beta {weights.get('nll_beta', 0.0):g})"}
    return " + ".join(f"{w:g} {names[k]}" for k, w in weights.items() if k in names and w)


def build_card(ctx: CardContext, task, config, state, uncertainty: dict | None = None) -> dict:
    """The card of the model as it is now: the old card updated with this run's training record;
    a sigma model gets ``uncertainty`` (its calibration; a placeholder before it is done)."""
    ds, ins, outs, history = ctx.ds, ctx.ins, ctx.outs, state.history
    units = {n: str(ds[n].attrs["units"]) for n in ins if "units" in ds[n].attrs}
    out_units = {n: str(ds[n].attrs["units"]) for n in outs if "units" in ds[n].attrs}
    std_names = {n: str(ds[n].attrs["standard_name"]) for n in outs if "standard_name" in ds[n].attrs}
    training = {
        "mode": task.card_mode,
        "data": describe_data(ctx.src, list(dict.fromkeys(ins + outs))),
        "epochs": state.epoch, "steps": state.global_step, "steps_per_epoch": config.steps_per_epoch,
        "batch_size": config.batch_size, "tile": list(ctx.tile_hw), "seed": config.seed, "split": ctx.split,
        "optimizer": {"name": "Adam", "lr": task.lr, "betas": list(task.betas)},
        "loss_weights": task.weights, "device": task.device.type,
        "precision": "fp32" if task.autocast_dtype is None else str(task.autocast_dtype).replace("torch.", ""),
        "best_epoch": state.best_epoch, "stopped_early": bool(state.stopped),
        "history": copy.deepcopy(history),
    }
    if task.mode == "gap":
        training["masks"] = ctx.mask_desc
        training["mask_fraction"] = ctx.mask_fraction
        training["loss"] = loss_text(task.weights)
    card = {k: v for k, v in ctx.old_card.items()}
    if card.get("name") in pretrained.names():
        # A bundled model fine-tuned on the user's data is no longer it: its name in outputs'
        # history and messages says so (it kept "fill-default" and that model's description; probe).
        # A user's own model keeps the name the user gave it.
        card["name"] = f"{card['name']}-fine-tuned"
        card["description"] = (f"{card['name']}: fine-tuned by xdl fit from {ctx.old_card['name']} "
                               f"(see training). {card.get('description', '')}")[:2000]
    card.update({"inputs": list(ins), "outputs": list(outs), "units": units, "output_units": out_units,
                 "standard_names": std_names, "normalization": ctx.norm,
                 "fills_gaps": True if task.mode == "gap" else bool(ctx.old_card.get("fills_gaps", False)),
                 "training": training, "metrics": _metrics(task, state)})
    if ctx.context is not None:
        card["context"] = copy.deepcopy(ctx.context)
    if getattr(task, "sigma", False):
        card["uncertainty"] = copy.deepcopy(uncertainty or UNCALIBRATED)
    return card


def _metrics(task, state) -> dict:
    history, best_epoch = state.history, state.best_epoch
    if best_epoch is None or not history["val_loss"]:
        return {}
    i = best_epoch - 1
    metrics = {"val_loss": history["val_loss"][i], "epoch": best_epoch}
    for k in task.val_keys[1:]:
        metrics[f"val_{k}"] = history[f"val_{k}"][i]
    if task.mode == "paired":  # pix2pix too: its validation loss is the generator's L1
        metrics["val_l1"] = history["val_loss"][i]
    metrics["final_val_loss"] = history["val_loss"][-1]
    return metrics
