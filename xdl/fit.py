"""Training zoo models on xarray / Dask / Zarr data: self-supervised gap filling and paired mappings.

Two modes:

* **gap filling** (``variables=[...]``; PConv-UNet or any model whose card has ``fills_gaps``):
  random tiles of single samples get extra gaps from :mod:`xdl.masks`; the model learns to restore
  the hidden, originally valid pixels (loss of Liu et al. 2018: ``L_valid + 6 L_hole + 0.1 L_tv``).
* **paired mapping** (``inputs=[...]``, ``targets=[...]``; UNet or pix2pix): masked L1 to the targets,
  plus a PatchGAN adversarial term for pix2pix (Isola et al. 2017).

Gap fillers built from a zoo name get a sigma head (``sigma=True``): a per-pixel standard deviation
trained with the Gaussian NLL on the hidden pixels and calibrated on the validation batches
(``card["uncertainty"]``). ``context=[...]`` and ``time_window=k`` add other variables and the
targets' neighbouring time steps as input channels (:mod:`xdl.training.context`).

Data is never loaded whole: each batch reads a few ``tile x tile`` windows with ``.isel(...).values``,
and the normalisation statistics are dask reductions. The normalisation is written to the model
card exactly as the inference engine (:func:`xdl.predict.predict`) applies it.

:func:`fit` checks its arguments, builds (or copies) the model and resolves the mode and the
normalisation; the rest lives in :mod:`xdl.training` (splits, data, losses, tasks, loop,
checkpoint, card).

Example:
    >>> import numpy as np, xarray as xr, xdl
    >>> from xdl.fit import fit
    >>> yy, xx = np.mgrid[0:32, 0:32] / 32.0
    >>> t = np.stack([np.sin(6 * xx + k) * np.cos(4 * yy) for k in range(4)]).astype("f4")
    >>> ds = xr.Dataset({"sst": (("time", "y", "x"), t)})
    >>> m = fit(ds, "pconv-unet", variables=["sst"], epochs=1, steps_per_epoch=2, batch_size=2,
    ...         tile=32, val_steps=1, progress=False, depth=2, base_channels=4)
    >>> m.fills_gaps, m.inputs, m.normalization["kind"], len(m.training["history"]["val_loss"])
    (True, ['sst'], 'per_sample', 1)
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import warnings

import numpy as np
import torch

from .compose import observed_mask
from .conventions import cf
from .errors import InputError, XdlWarning
from .models import pretrained
from .models.resolve import model_label
from .modelfile import Model
from .predict import as_float, cf_masked
from .engine.runner import resolve_device, resolve_precision
from .training import data
from .training.card import CardContext, build_card
from .training.calibration import calibrate
from .training.checkpoint import Checkpointer
from .training.config import TrainConfig
from .training.context import ContextPlan, inherited_context, resolve_context
from .training.data import Source, as_dataset
from .training.loop import CALIBRATION_STREAM, TrainState, fixed_batches, rng_devices, run
from .training.losses import resolve_weights
from .training.splits import axis_tile, plan_split
from .training.tasks import make_task

__all__ = ["fit"]

CONTEXT_FEATURES = 16  # fill-unet's context encoder width when fit adds context


def fit(obj, model, *, variables=None, inputs=None, targets=None, context=None, time_window=None,
        masks="irregular", mask_fraction=None, dims=None, epochs=10, steps_per_epoch=100, batch_size=8, tile=128, val=0.2, val_steps=10, lr=None,
        loss_weights=None, normalization=None, device="auto", precision="auto", checkpoint_dir=None,
        checkpoint_every=None, resume=False, patience=None, progress=True, seed=0, **model_config) -> Model:
    """Train a zoo model (or fine-tune an :class:`xdl.Model`) on an xarray Dataset/DataArray.

    Parameters
    ----------
    obj : Dataset or DataArray, numpy- or dask/zarr-backed; only small windows are ever loaded.
    model : zoo name ("fill-unet", "pconv-unet", "unet", "pix2pix") built with ``**model_config`` and channels
        from the variables, or an :class:`xdl.Model` to fine-tune (a copy is trained).
    variables : gap filling: the variables to fill (one channel each).
    inputs, targets : paired mapping: input and target variables.
    context : gap filling: variables the model sees as inputs only, at the same sample (a 2-D field
        with only the spatial dims is broadcast); their own gaps are allowed. In half the windows
        they get hidden gaps of their own too. Builds "fill-unet" with ``context_features=16``.
    time_window : gap filling: also give the model the targets at ``t-k..t+k`` along the time dim
        (by index; missing beyond the ends of the split). A fine-tuned model keeps the context it
        was trained with (None = the same; another one is an InputError).
    masks : gap generator: "irregular", "scanlines", "blocks", "clouds", "mixed" (random kind per
        window), "observed" (the data's own gap pattern), or a bool DataArray of valid masks
        (True = kept; also ``("observed", bool_da)``) sampled with :func:`xdl.masks.observed`.
    mask_fraction : share of pixels the generator hides (default: the generator's own).
    dims : the spatial dims ``(y, x)`` (found from CF attributes / usual names when omitted).
    epochs, steps_per_epoch, batch_size, tile : training length, windows per step, window side
        (rounded down to the model's size multiple; the whole axis when the field is smaller).
    val : validation fraction (last time steps, or the right part of a single field), 0/None for
        none, or a Dataset/DataArray of separate validation data. ``val_steps`` fixed batches.
    lr : Adam learning rate (1e-3; pix2pix 2e-4 with betas (0.5, 0.999)).
    loss_weights : gap filling ``{"valid": 1, "hole": 6, "tv": 0.1, "hole_mse": 0}`` and, for a model with a
        sigma head (every zoo gap filler is built with ``sigma=True``), ``"nll": 1`` (the Gaussian NLL of the
        hidden pixels, training the sigmas only) and ``"nll_beta": 1`` (its beta-NLL exponent, 0 = plain
        NLL; see :func:`xdl.training.losses.gaussian_nll`); pix2pix ``{"gan": 1, "l1": 100}``.
    normalization : "none", "global", "per_sample" or a card dict (default: per_sample for gap
        filling, global for mappings; a fine-tuned model keeps its own).
    device, precision : "auto" = CUDA with bf16 autocast when present, else CPU fp32.
    checkpoint_dir, checkpoint_every, resume : ``checkpoint.safetensors`` every ``checkpoint_every``
        steps and at each epoch end, ``best.safetensors`` (an xdl model file) on val improvement;
        ``resume=True`` continues from the checkpoint, drawing the same batches as an unbroken run.
    patience : stop after this many epochs without val improvement.
    seed : all randomness (initial weights, windows, gaps, dropout) derives from it.

    Returns the trained :class:`xdl.Model` on CPU in eval mode, with the best validation weights
    when validation ran, and a card holding normalisation, training history and metrics; with a
    sigma head, ``card["uncertainty"]`` holds the scale calibrated on the validation batches
    (:mod:`xdl.training.calibration`), with context ``card["context"]`` the variables and window.

    Example:
        >>> import numpy as np, xarray as xr
        >>> a = np.random.default_rng(0).normal(size=(6, 32, 32)).astype("f4")
        >>> ds = xr.Dataset({"a": (("time", "y", "x"), a), "b": (("time", "y", "x"), 2 * a + 1)})
        >>> m = fit(ds, "unet", inputs=["a"], targets=["b"], epochs=1, steps_per_epoch=2, batch_size=2,
        ...         tile=16, val_steps=1, progress=False, depth=2, base_channels=4)
        >>> m.inputs, m.outputs, m.normalization["kind"], round(m.normalization["mean"]["b"])
        (['a'], ['b'], 'global', 1)
    """
    ds = as_dataset(obj, "obj")
    config = TrainConfig(epochs=epochs, steps_per_epoch=steps_per_epoch, batch_size=batch_size, tile=tile,
                         val_steps=val_steps, patience=patience, checkpoint_dir=checkpoint_dir,
                         checkpoint_every=checkpoint_every, resume=resume, progress=progress, seed=seed)
    existing = _existing_model(model, model_config)
    arch = existing.architecture if existing is not None else model
    mode, ins, outs = resolve_mode(ds, existing, arch, variables, inputs, targets)
    gan = arch == "pix2pix"
    ctx = _check_variables(ds, existing, mode, ins, outs, gan, context, time_window, dims)
    ds = observed_only(ds, mode, list(dict.fromkeys(ins + outs)), list(ctx.variables) if ctx is not None else [])

    dev = resolve_device(device)
    autocast_dtype = resolve_precision(precision, dev)
    with torch.random.fork_rng(devices=rng_devices(dev)):  # leave the caller's global RNG state alone
        torch.manual_seed(seed)
        module, old_card, takes_mask, sm = _build_module(existing, arch, model_config, ins, outs, gan, ctx)
        if mode == "gap" and not takes_mask:
            # Trained on zeros in its holes, it got NaN there from inpaint (nan_policy "propagate"):
            # every gap came back unfilled, blamed on its weights (probe).
            raise InputError(f"{arch or type(module).__name__!r} takes no mask, so it cannot tell a gap from data: "
                             "for gap filling (variables=[...]) use model='fill-unet' or 'pconv-unet'; "
                             "to learn a mapping between variables pass inputs=[...] and targets=[...].")
        if config.tile < sm:
            raise InputError(f"tile={config.tile} is smaller than the model's size multiple {sm}; use tile >= {sm} "
                             f"(a multiple of {sm}), or a shallower model.")
        config = dataclasses.replace(config, tile=config.tile // sm * sm)
        _check_batch_norm(module, config, sm, mode)
        setup = _Setup(module, old_card, existing is not None, mode, ins, outs, gan, dev, autocast_dtype,
                       takes_mask, sm, ctx)
        return _train(ds, config, setup, masks=masks, mask_fraction=mask_fraction, dims=dims, val=val, lr=lr,
                      loss_weights=loss_weights, normalization=normalization)


def observed_only(ds, mode, names, context=()):
    """``ds`` with NaN wherever inference takes a value for no observation, each variable by the
    rule of its role there: a gap-filling target as ``inpaint`` reads it (the CF rule, less an
    earlier xdl fill's values: :func:`xdl.compose.observed_mask`); a context field likewise, with
    the context rule (an integer land mask is data everywhere); a mapping's inputs and targets as
    ``predict`` reads inputs (:func:`xdl.predict.cf_masked`). fit read every finite value as
    truth: MODIS L2P SST 30% below its ``valid_min``, a raw ``_FillValue`` of -32768, a filled
    output's fills (probe).

    >>> import numpy as np, xarray as xr
    >>> ds = xr.Dataset({"sst": ("x", np.array([280.0, 200.0, 290.0]), {"valid_min": 268.15})})
    >>> observed_only(ds, "gap", ["sst"]).sst.values.tolist()
    [280.0, nan, 290.0]
    """
    out = ds.copy()
    for name in names:
        if mode == "gap":
            arr = cf.unsigned_view(ds[name])
            out[name] = as_float(arr).where(observed_mask(ds, arr, None))
        else:
            out[name] = cf_masked(ds[name])
    for name in context:
        arr = cf.unsigned_view(ds[name])
        out[name] = as_float(arr).where(observed_mask(ds, arr, None, context=True))
    return out


_BATCH_NORMS = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d, torch.nn.SyncBatchNorm)


def _check_batch_norm(module, config, size_multiple: int, mode: str) -> None:
    """Batch normalisation trains on more than one value per channel: one tile of the size
    multiple's side a batch leaves one at the deepest level (torch raised "Expected more than 1
    value per channel when training" from inside the first step; probe)."""
    if mode == "pointwise" or not any(isinstance(m, _BATCH_NORMS) for m in module.modules()):
        return
    deepest = (config.tile // size_multiple) ** (3 if mode == "volume" else 2)
    if config.batch_size * deepest < 2:
        raise InputError(f"batch_size={config.batch_size} with tile={config.tile} leaves the model's deepest level one "
                         "value per channel, which its batch normalisation cannot train on; use batch_size >= 2 or "
                         f"tile >= {2 * size_multiple}.")


def _existing_model(model, model_config) -> Model | None:
    """The :class:`Model` to fine-tune (None for a zoo name), or InputError. A bundled model's name
    (``"fill-default"``) is that model (``xdl zoo`` lists them for --model; it was taken for an
    unknown architecture: probe)."""
    if isinstance(model, str) and model in pretrained.names():
        model = pretrained.load(model)
    existing = model if isinstance(model, Model) else (Model(model) if isinstance(model, torch.nn.Module) else None)
    if existing is None and not isinstance(model, str):
        raise InputError(f"model must be a zoo name (e.g. 'fill-unet', 'unet', 'pix2pix') or an xdl.Model, "
                         f"got {type(model).__name__}")
    if existing is not None and model_config:
        raise InputError(f"model options {sorted(model_config)} only apply when model is a zoo name; "
                         "an existing xdl.Model keeps its architecture.")
    if existing is not None and not any(p.requires_grad for p in existing.module.parameters()):
        # The bundled default (fill-context) has no learned weights: torch said "optimizer got an
        # empty parameter list" (probe).
        raise InputError(f"model {model_label(existing)!r} has no weights to train. Fine-tune the bundled model "
                         "whose UNet learns, xdl.pretrained.load('fill-default'), or fit a zoo model by name "
                         "(e.g. 'fill-unet').")
    return existing


@dataclasses.dataclass(frozen=True)
class _Setup:
    """The model and mode ``fit`` resolved from its arguments."""

    module: torch.nn.Module
    old_card: dict
    fine_tune: bool
    mode: str
    ins: list
    outs: list
    gan: bool
    dev: torch.device
    autocast_dtype: object
    takes_mask: bool
    sm: int
    context: ContextPlan | None = None


def _check_variables(ds, existing, mode, ins, outs, gan, context, time_window, dims):
    """Refuse unknown variables and impossible combinations; the :class:`ContextPlan` (or None)."""
    for what, names in (("variables" if mode == "gap" else "inputs", ins), ("targets", outs)):
        for n in names:
            if n not in ds.data_vars:
                raise InputError(f"variable {n!r} (in {what}) is not in the data; it has "
                                 f"{sorted(map(str, ds.data_vars))}. Pass {what}=[...] with existing names.")
    if gan and mode == "gap":
        raise InputError("pix2pix learns paired mappings: pass inputs=[...] and targets=[...]; "
                         "for gap filling use model='fill-unet' or 'pconv-unet' with variables=[...].")
    if mode != "gap":
        if context is not None or time_window:
            raise InputError("context= and time_window= are for gap filling (variables=[...]); a mapping's "
                             "inputs=[...] already lists every input variable.")
        return None
    if existing is not None:
        takes = bool(getattr(existing.module, "takes_context", False))
        context, time_window = inherited_context(existing.card, takes, context, time_window)
    return resolve_context(ds, ins, context, time_window, dims)


def _zoo_options(arch, cfg, ctx):
    """Zoo options fit adds: a sigma head for every gap filler that has one, context features when asked."""
    from .models import registry
    cls = registry.get(arch)
    params = inspect.signature(cls.__init__).parameters
    if getattr(cls, "fills_gaps", False) and "sigma" in params:
        cfg.setdefault("sigma", True)
    if ctx is not None:
        if "context_features" not in params:
            raise InputError(f"{arch!r} takes no context; fit with context=/time_window= builds 'fill-unet' "
                             f"(model='fill-unet'), or leave context out for {arch!r}.")
        cfg.setdefault("context_features", CONTEXT_FEATURES)
    return cfg


def _build_module(existing, arch, model_config, ins, outs, gan, ctx=None):
    """``(module, card, takes_mask, size_multiple)``: a zoo model built for the channels, or a copy to fine-tune."""
    if existing is None:
        from .models import zoo
        cfg = dict(model_config)
        cfg.setdefault("in_channels", len(ins))
        cfg.setdefault("out_channels", len(outs))
        if gan:
            cfg.setdefault("out_activation", None)  # normalised physical fields are unbounded
        else:
            cfg = _zoo_options(arch, cfg, ctx)
        built = zoo.create(arch, **cfg)
        module, old_card = built.module, built.card
    else:
        module, old_card = copy.deepcopy(existing.module), existing.card
    if ctx is not None and not getattr(module, "takes_context", False):
        raise InputError(f"this model ({old_card.get('architecture')!r}) takes no context, so context="
                         f"{list(ctx.variables)}, time_window={ctx.time_window} cannot be used; build a "
                         "context model: ds.dl.fit('fill-unet', variables=[...], context=[...]).")
    n_out = len(outs) * (2 if getattr(module, "sigma", False) else 1)  # a sigma head doubles the outputs
    for key, n in (("in_channels", len(ins)), ("out_channels", n_out)):
        have = old_card.get(key)
        if have is not None and int(have) != n:
            raise InputError(f"the model has {key}={have} but {n} variable(s) were given "
                             f"({ins if key == 'in_channels' else outs}); pass as many variables "
                             "as channels or build a new model.")
    if old_card.get("mode") not in (None, "spatial"):
        raise InputError(f"fit trains spatial (2-D) models; this model's mode is {old_card.get('mode')!r}.")
    takes_mask = bool(old_card.get("takes_mask"))
    sm = old_card.get("size_multiple") or getattr(module, "size_multiple", None)
    if sm is None:
        from .engine.spec import probe_size_multiple
        sm = probe_size_multiple(module, len(ins), 2, takes_mask)
    return module, old_card, takes_mask, int(sm)


def _train(ds, config: TrainConfig, s: _Setup, *, masks, mask_fraction, dims, val, lr, loss_weights,
           normalization) -> Model:
    """Data, split, samplers, task and checkpointer for a resolved setup; then the loop."""
    ins, outs = s.ins, s.outs
    names = list(dict.fromkeys(ins + outs))
    extra = [n for n in s.context.variables if n not in names] if s.context is not None else []
    src = Source(ds, names + extra, dims, "the training data", extra)
    th = axis_tile(src.H, config.tile, s.sm, f"the field's {src.spatial[0]!r} axis", "use a larger field")
    norm = resolve_norm(normalization, s.mode, s.old_card, ins, outs, s.fine_tune)
    plan = plan_split(src, val, names + extra, ins, dims, config.tile, s.sm, th, extra)
    train_sampler, val_sampler, mask_desc = data.samplers(src, plan, ins, outs, s.mode, norm, masks,
                                                          mask_fraction, dims, th, s.context)
    sigma = s.mode == "gap" and bool(getattr(s.module, "sigma", False))
    weights = resolve_weights(loss_weights, s.mode, s.gan, sigma)
    info = None
    if getattr(s.module, "takes_context", False):
        info = s.context.info if s.context is not None else np.zeros((0, 2), np.float32)
    task = make_task(s.mode, s.gan, s.module, s.dev, s.autocast_dtype, s.takes_mask, weights, lr, info)
    state = TrainState.start(task)
    checkpointer = None
    if config.checkpoint_dir is not None:
        check = {"architecture": s.old_card.get("architecture"), "config": s.old_card.get("config"),
                 "mode": s.mode, "inputs": ins, "outputs": outs, "steps_per_epoch": config.steps_per_epoch,
                 "batch_size": config.batch_size, "tile": config.tile, "seed": config.seed,
                 # the data, gaps and split too: a resumed fit on other data or with other gaps
                 # used to go on silently, its card naming the second run's data and split.
                 "data": src.fingerprint(), "masks": mask_desc, "mask_fraction": mask_fraction,
                 "split": plan.split,
                 # and what the weights learn from: a resume under other normalisation or loss
                 # weights went on silently, its card naming the second's (probe)
                 "normalization": norm, "loss_weights": loss_weights}
        if s.context is not None:
            check["context"] = s.context.card()
        checkpointer = Checkpointer(config.checkpoint_dir, check)
        if config.resume:
            checkpointer.restore(task, state)
    if val_sampler is not None:
        config = dataclasses.replace(config, val_steps=config.checked_val_steps())
    context_card = s.context.card() if s.context is not None else None
    if context_card is None and info is not None and not s.fine_tune:
        context_card = {"variables": [], "time_window": 0}  # a context model trained without any: takes none
    ctx = CardContext(s.old_card, ds, src, ins, outs, norm, plan.split, (th, plan.tw), mask_desc, mask_fraction,
                      context_card)

    def card(st, uncertainty=None):
        return build_card(ctx, task, config, st, uncertainty)

    state = run(task, train_sampler, val_sampler, config, checkpointer, state=state, card=card)
    if state.best_state is not None:
        s.module.load_state_dict(state.best_state)
    _warn_if_nothing_learned(task, masks)
    uncertainty = _calibrate(task, train_sampler, val_sampler, config) if sigma else None
    if uncertainty is not None and str(uncertainty.get("calibration", "")).startswith("none:"):
        warnings.warn(f"the sigma is not calibrated ({uncertainty['calibration']}); give data whose training "
                      "gaps cover known values (see masks=) or a larger validation share.", XdlWarning, stacklevel=3)
    s.module.to("cpu").eval()
    return Model(s.module, card(state, uncertainty))


def _warn_if_nothing_learned(task, masks) -> None:
    """No training step hid a pixel with a known value (masks="observed" laying another step's
    gaps over land that is never a target): the model learned nothing to fill, and was returned
    as trained without a word (probe). A resumed run counts its own steps only."""
    hidden = getattr(task, "hidden_trained", None)
    if hidden is not None and getattr(task, "steps_trained", 0) > 0 and int(hidden) == 0:
        warnings.warn(f"no training step hid a pixel with a known value (masks={masks!r}), so the model learned "
                      "nothing to fill. Hide pixels that are valid (another masks=, a larger mask_fraction, or data "
                      "whose gaps differ between time steps).", XdlWarning, stacklevel=3)


def _calibrate(task, train_sampler, val_sampler, config) -> dict:
    """The card's ``uncertainty``: the sigma scale fit on the validation batches (training windows without)."""
    if val_sampler is not None:
        return calibrate(task, fixed_batches(val_sampler, config), f"the {config.val_steps} validation batches")
    steps = config.val_steps if isinstance(config.val_steps, int) and config.val_steps > 0 else 10
    return calibrate(task, fixed_batches(train_sampler, config, CALIBRATION_STREAM, steps),
                     f"{steps} batches of training windows (no validation split)")


def _names(value, what) -> list:
    if isinstance(value, str):
        return [value]
    try:
        out = [str(v) for v in value]
    except TypeError:
        raise InputError(f"{what} must be a variable name or a list of names, got {value!r}") from None
    if not out:
        raise InputError(f"{what} is empty; name at least one variable.")
    return out


def _arch_fills_gaps(arch) -> bool:
    from .errors import UnknownModelError
    from .models import registry

    try:
        return bool(getattr(registry.get(arch), "fills_gaps", False))
    except UnknownModelError:  # reported where the model is built
        return False


def resolve_mode(ds, existing, arch, variables, inputs, targets):
    if variables is not None:
        if inputs is not None or targets is not None:
            raise InputError("pass either variables=[...] (gap filling) or inputs=[...] with targets=[...] "
                             "(mapping), not both.")
        v = _names(variables, "variables")
        return "gap", v, list(v)
    if inputs is not None or targets is not None:
        if inputs is None or targets is None:
            raise InputError("a mapping needs both inputs=[...] and targets=[...]; for gap filling pass "
                             "variables=[...] instead.")
        return "paired", _names(inputs, "inputs"), _names(targets, "targets")
    card = existing.card if existing is not None else {}
    fills = bool(card.get("fills_gaps")) or _arch_fills_gaps(arch)
    if card.get("inputs"):
        if fills:
            return "gap", list(card["inputs"]), list(card["inputs"])
        if card.get("outputs"):
            return "paired", list(card["inputs"]), list(card["outputs"])
    if fills and len(ds.data_vars) == 1:
        name = str(next(iter(ds.data_vars)))
        return "gap", [name], [name]
    raise InputError(f"which variables? Pass variables=[...] for gap filling or inputs=[...] and targets=[...] "
                     f"for a mapping (the data has {sorted(map(str, ds.data_vars))}).")


def resolve_norm(normalization, mode, old_card, ins, outs, fine_tune):
    if normalization is None:
        prev = old_card.get("normalization") or {}
        if fine_tune and prev.get("kind", "none") != "none":
            norm = copy.deepcopy(prev)  # the pretrained weights expect their own normalisation
        else:
            norm = {"kind": "per_sample" if mode == "gap" else "global"}
    elif isinstance(normalization, str):
        norm = {"kind": normalization}
    elif isinstance(normalization, dict):
        norm = copy.deepcopy(normalization)
    else:
        raise InputError(f"normalization={normalization!r}: use 'none', 'global', 'per_sample' or a dict "
                         "like {'kind': 'global', 'mean': {var: x}, 'std': {var: x}}.")
    kind = norm.get("kind", "none")
    if kind not in ("none", "global", "per_sample"):
        raise InputError(f"normalization kind {kind!r}: use 'none', 'global' or 'per_sample'.")
    if kind == "per_sample" and len(ins) != len(outs):
        raise InputError(f"per_sample normalisation undoes the inputs' statistics on the outputs, so it needs "
                         f"as many targets as inputs (got {len(ins)} and {len(outs)}); use normalization='global'.")
    norm["kind"] = kind
    norm["mean"] = {str(k): float(v) for k, v in (norm.get("mean") or {}).items()}
    norm["std"] = {str(k): float(v) for k, v in (norm.get("std") or {}).items()}
    return norm
