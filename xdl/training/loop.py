"""The training loop: epochs of steps with prefetched batches, validation, early stopping, checkpoints.

Every batch depends only on ``(seed, step)`` and torch randomness is reseeded per step, so a run
resumed from a checkpoint draws the same batches and dropout as an unbroken one.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import math
import os

import numpy as np
import torch

VAL_STREAM = 0x76616C  # "val": the validation batches come from their own fixed RNG stream
CALIBRATION_STREAM = 0x63616C  # "cal": training windows for calibration when there is no validation split
TORCH_STRIDE = 1_000_003


@dataclasses.dataclass
class TrainState:
    """Where a run is: steps, per-epoch history, running sums, best validation loss and weights."""

    history: dict
    running: dict
    global_step: int = 0
    epoch: int = 0
    best_val: float = math.inf
    best_epoch: int | None = None
    bad_epochs: int = 0
    best_state: dict | None = None
    stopped: bool = False

    @classmethod
    def start(cls, task) -> "TrainState":
        return cls(history=task.new_history(), running={k: 0.0 for k in task.train_keys})


def rng_devices(dev: torch.device) -> list:
    """The CUDA devices whose RNG :func:`torch.random.fork_rng` must save for ``dev``."""
    return [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []


def run(task, train_sampler, val_sampler, config, checkpointer=None, *, state=None, card=None) -> "TrainState":
    """Train ``task`` for ``config.epochs`` epochs from ``state`` (default: the start); returns the final state.

    ``val_sampler`` None: no validation. ``checkpointer`` (a
    :class:`~xdl.training.checkpoint.Checkpointer`) saves every ``config.checkpoint_every`` steps, at
    each epoch end and on validation improvement; ``card(state)`` gives the model card to save.
    """
    from tqdm.auto import tqdm

    state = state if state is not None else TrainState.start(task)
    validate = _Validation(task, val_sampler, config) if val_sampler is not None else None
    total = config.total_steps
    bar = tqdm(total=total, initial=min(state.global_step, total), disable=not config.progress, desc="fit",
               unit="step", dynamic_ncols=True)
    # Loader threads cut and mask the next batches while the model trains on this one: one on the
    # CPU (the model needs the cores), a few on a GPU (which would otherwise wait for masks).
    # Each batch depends only on (seed, step), so more threads change nothing but speed.
    ahead = 1 if task.device.type == "cpu" else max(1, min(4, (os.cpu_count() or 2) - 1))
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=ahead)
    save = (lambda: checkpointer.save(task, state, card(state))) if checkpointer is not None else None
    try:
        with torch.random.fork_rng(devices=rng_devices(task.device)):
            while state.epoch < config.epochs and not state.stopped:
                _train_epoch(task, train_sampler, config, state, pool, ahead, bar, save)
                _end_epoch(task, config, state, validate, bar, checkpointer, card)
                if save:
                    save()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    return state


def _train_epoch(task, sampler, config, state, pool, ahead, bar, save) -> None:
    def batch_for(step):
        return sampler.batch(np.random.default_rng([config.seed, step]), config.batch_size)

    end = (state.epoch + 1) * config.steps_per_epoch
    step = state.global_step
    pending = collections.deque(pool.submit(batch_for, s) for s in range(step, min(step + ahead, end)))
    while state.global_step < end:
        batch = pending.popleft().result()
        if state.global_step + len(pending) + 1 < end:
            pending.append(pool.submit(batch_for, state.global_step + len(pending) + 1))
        # Dropout and other torch randomness depend only on (seed, step): resumable.
        torch.manual_seed(config.seed * TORCH_STRIDE + state.global_step)
        terms = task.training_step(task.to_device(batch))
        state.global_step += 1
        for k in task.train_keys:
            state.running[k] += float(terms[k].detach())
        bar.update(1)
        bar.set_postfix(loss=f"{float(terms['loss'].detach()):.4g}", refresh=False)
        if (save and config.checkpoint_every and state.global_step % config.checkpoint_every == 0
                and state.global_step != end):
            save()


def _end_epoch(task, config, state, validate, bar, checkpointer, card) -> None:
    """Record the epoch's mean training terms; validate, keep the best weights, stop early."""
    state.epoch += 1
    history, spe = state.history, config.steps_per_epoch
    history["train_loss"].append(state.running["loss"] / spe)
    for k in task.train_keys[1:]:
        history[k].append(state.running[k] / spe)
    state.running = {k: 0.0 for k in task.train_keys}
    if validate is None:
        return
    v = validate()
    history["val_loss"].append(v["loss"])
    for k in task.val_keys[1:]:
        history[f"val_{k}"].append(v[k])
    bar.set_postfix(loss=f"{history['train_loss'][-1]:.4g}", val=f"{v['loss']:.4g}")
    if v["loss"] < state.best_val:
        state.best_val, state.best_epoch, state.bad_epochs = v["loss"], state.epoch, 0
        state.best_state = {k: t.detach().to("cpu", copy=True) for k, t in task.module.state_dict().items()}
        if checkpointer is not None:
            checkpointer.save_best(task.module, card(state))
    else:
        state.bad_epochs += 1
        if config.patience is not None and state.bad_epochs >= config.patience:
            state.stopped = True


class _Validation:
    """Mean validation terms over the same ``config.val_steps`` batches every epoch."""

    def __init__(self, task, sampler, config):
        self.task, self.sampler, self.config = task, sampler, config
        self.batches = None

    def __call__(self) -> dict:
        task, keys = self.task, self.task.val_keys
        if self.batches is None:  # drawn on first use, from their own RNG stream
            self.batches = fixed_batches(self.sampler, self.config)
        task.module.eval()
        sums = {k: 0.0 for k in keys}
        with torch.no_grad():
            for b in self.batches:
                terms = task.validation_step(task.to_device(b))
                for k in keys:
                    sums[k] += float(terms[k])
        task.module.train()
        return {k: v / len(self.batches) for k, v in sums.items()}


def fixed_batches(sampler, config, stream=VAL_STREAM, steps=None) -> list:
    """``steps`` (default ``config.val_steps``) batches from RNG stream ``stream``: the validation
    batches of every epoch (and of the calibration after training)."""
    rng = np.random.default_rng([config.seed, stream])
    return [sampler.batch(rng, config.batch_size) for _ in range(steps or config.val_steps)]
