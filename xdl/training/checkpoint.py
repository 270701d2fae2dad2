"""Training checkpoints: safetensors files holding weights, best weights, optimiser state and run metadata.

``checkpoint.safetensors`` is rewritten atomically every ``checkpoint_every`` steps and at each epoch
end; ``best.safetensors`` is an ordinary xdl model file with the best validation weights so far.
"""

from __future__ import annotations

import json
import math
import os

import torch

from ..errors import InputError
from ..io.files import readable_like_a_new_file, replace_atomically
from ..modelfile import Model

CHECKPOINT_NAME = "checkpoint.safetensors"
BEST_NAME = "best.safetensors"
CHECKPOINT_FORMAT = "1"


def save_checkpoint(path, module, best_state, optimizers, meta) -> None:
    """Write weights, ``best_state`` (or None), the optimisers' state and JSON ``meta`` to ``path`` atomically."""
    from safetensors.torch import save_file

    tensors = {f"model/{k}": v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}
    if best_state is not None:
        tensors.update({f"best/{k}": v.detach().cpu().contiguous().clone() for k, v in best_state.items()})
    scalars = []
    for k, opt in enumerate(optimizers):
        sc = {}
        for i, st in opt.state_dict()["state"].items():
            for name, v in st.items():
                if torch.is_tensor(v):
                    tensors[f"optim{k}/{i}/{name}"] = v.detach().cpu().contiguous().clone()
                else:  # plain numbers (older torch keeps Adam's step as an int)
                    sc[f"{i}/{name}"] = v
        scalars.append(sc)
    meta = {**meta, "optimizer_scalars": scalars, "format": CHECKPOINT_FORMAT}
    with replace_atomically(path) as tmp:  # an interrupted save never leaves a half checkpoint
        save_file(tensors, tmp, metadata={"xdl_checkpoint": json.dumps(meta)})
        readable_like_a_new_file(tmp)


def read_checkpoint(path) -> tuple[dict, dict]:
    """``(metadata, tensors)`` of a training checkpoint (no pickle involved).

    Tensors: ``model/<name>`` (weights and buffers), ``best/<name>`` (best validation weights),
    ``optim<k>/<param index>/<state>`` (Adam ``exp_avg``, ``exp_avg_sq``, ``step``; k=0 the model or
    generator, k=1 the discriminator). Metadata: global step, epoch, history, best val loss, card, ...

    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), CHECKPOINT_NAME)
    >>> save_checkpoint(path, torch.nn.Linear(2, 1), None, [], {"step": 3, "epoch": 1})
    >>> meta, tensors = read_checkpoint(path)
    >>> meta["step"], meta["format"], sorted(tensors)
    (3, '1', ['model/bias', 'model/weight'])
    """
    from safetensors import safe_open

    path = os.fspath(path)
    try:
        with safe_open(path, framework="pt") as f:
            raw = (f.metadata() or {}).get("xdl_checkpoint")
            if raw is None:
                raise InputError(f"{path} is not an xdl training checkpoint (no 'xdl_checkpoint' metadata); "
                                 "remove it or pass resume=False.")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = json.loads(raw)
    except InputError:
        raise
    except Exception as error:  # noqa: BLE001 - truncated or corrupt: whatever safetensors or json raise
        raise InputError(f"{path} is not a readable xdl training checkpoint ({type(error).__name__}: "
                         f"{str(error)[:200]}); remove it, or pass resume=False (CLI: drop --resume).") from None
    if not isinstance(meta, dict):
        raise InputError(f"{path}: its 'xdl_checkpoint' metadata is not a JSON object; remove it or pass resume=False.")
    return meta, tensors


# A step or epoch count beyond this is no real run's (and a float one, or NaN, none at all).
_MAX_COUNT = 10 ** 12


def _check_meta(meta: dict, path, state, n_optimizers: int) -> None:
    """Refuse checkpoint metadata that no run of this task writes: missing keys, counts that are
    not whole numbers in range, histories of other losses or lengths, non-finite losses. Before,
    ``epoch=-5`` trained with six 0.0 losses in its history, ``epoch=NaN`` went into the card, and
    a missing key was a KeyError."""

    def bad(what):
        return InputError(f"checkpoint {path} has {what}; it was not written by this xdl run. Remove it, "
                          "or pass resume=False (CLI: drop --resume).")

    def count(key, low=0, high=_MAX_COUNT, none_ok=False):
        value = meta.get(key)
        if value is None and none_ok:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise bad(f"{key}={value!r} (a whole number in [{low}, {high}] expected)")
        return value

    def finite(value):
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

    if meta.get("format") != CHECKPOINT_FORMAT:
        raise bad(f"format {meta.get('format')!r} (this xdl writes {CHECKPOINT_FORMAT!r})")
    if not isinstance(meta.get("check"), dict):
        raise bad("no 'check' record of the run's settings")
    epoch = count("epoch")
    count("global_step")
    count("bad_epochs", high=epoch)
    count("best_epoch", high=epoch, none_ok=True)
    if not isinstance(meta.get("stopped"), bool):
        raise bad(f"stopped={meta.get('stopped')!r}")
    if meta.get("best_val") is not None and not finite(meta["best_val"]):
        raise bad(f"best_val={meta.get('best_val')!r}")
    history, running = meta.get("history"), meta.get("running")
    if not isinstance(history, dict) or set(history) != set(state.history):
        raise bad(f"a history of {sorted(history) if isinstance(history, dict) else history!r} "
                  f"(this task keeps {sorted(state.history)})")
    for key, values in history.items():
        if not isinstance(values, list) or len(values) > epoch or not all(finite(v) for v in values):
            raise bad(f"history[{key!r}] that is not at most {epoch} finite numbers")
    if not isinstance(running, dict) or set(running) != set(state.running) or not all(finite(v) for v in running.values()):
        raise bad(f"running sums {running!r} (this task keeps {sorted(state.running)})")
    scalars = meta.get("optimizer_scalars")
    if (not isinstance(scalars, list) or len(scalars) != n_optimizers
            or not all(isinstance(sc, dict) and all(isinstance(k, str) and "/" in k and k.split("/", 1)[0].isdigit()
                                                   and finite(v) for k, v in sc.items()) for sc in scalars)):
        raise bad(f"optimizer_scalars that do not fit its {n_optimizers} optimiser(s)")


def restore_optimizer(opt, k, tensors, scalars) -> None:
    """Load optimiser ``k``'s state from checkpoint ``tensors`` and its plain-number ``scalars``."""
    state = {}
    for key, v in tensors.items():
        if key.startswith(f"optim{k}/"):
            _, i, name = key.split("/", 2)
            state.setdefault(int(i), {})[name] = v
    for key, v in scalars.items():
        i, name = key.split("/", 1)
        state.setdefault(int(i), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": opt.state_dict()["param_groups"]})


def _fits(module, state: dict) -> None:
    """Raise ValueError unless ``state`` has exactly ``module``'s tensors, with their shapes."""
    own = module.state_dict()
    if set(own) != set(state) or any(tuple(own[k].shape) != tuple(v.shape) for k, v in state.items()):
        raise ValueError("its best weights have other names or shapes than the model's")


class Checkpointer:
    """Saves and restores one run's checkpoint in ``directory``; ``check`` identifies the run's settings."""

    def __init__(self, directory, check: dict):
        os.makedirs(directory, exist_ok=True)
        self.path = os.path.join(os.fspath(directory), CHECKPOINT_NAME)
        self.best_path = os.path.join(os.fspath(directory), BEST_NAME)
        self.check = check

    def restore(self, task, state) -> bool:
        """Continue from the checkpoint when there is one: weights, optimisers and ``state``; True if restored."""
        if not os.path.exists(self.path):
            return False
        meta, tensors = read_checkpoint(self.path)
        _check_meta(meta, self.path, state, len(task.optimizers))
        diff = {k: (meta["check"].get(k), v) for k, v in json.loads(json.dumps(self.check)).items()
                if meta["check"].get(k) != v}
        if diff:
            raise InputError(f"checkpoint {self.path} was written by a different run: "
                             + "; ".join(f"{k} was {a!r}, now {b!r}" for k, (a, b) in diff.items())
                             + ". Pass the same settings, or resume=False (or another checkpoint_dir) to start over.")
        try:
            task.module.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model/")})
            best = {k[5:]: v for k, v in tensors.items() if k.startswith("best/")}
            if best:  # the best weights must fit the model too: they become the saved model
                _fits(task.module, best)
            for k, opt in enumerate(task.optimizers):
                restore_optimizer(opt, k, tensors, meta["optimizer_scalars"][k])
        except (RuntimeError, ValueError, KeyError, IndexError) as error:
            raise InputError(f"checkpoint {self.path} does not fit this model or its optimiser ({type(error).__name__}: "
                             f"{str(error)[:200]}); remove it, or pass resume=False (CLI: drop --resume).") from None
        state.best_state = best or None
        state.global_step, state.epoch, state.running = meta["global_step"], meta["epoch"], meta["running"]
        state.history = meta["history"]
        state.best_val = math.inf if meta["best_val"] is None else meta["best_val"]
        state.best_epoch, state.bad_epochs, state.stopped = meta["best_epoch"], meta["bad_epochs"], meta["stopped"]
        return True

    def save(self, task, state, card: dict) -> None:
        meta = {"global_step": state.global_step, "epoch": state.epoch, "running": state.running,
                "history": state.history, "best_val": None if math.isinf(state.best_val) else state.best_val,
                "best_epoch": state.best_epoch, "bad_epochs": state.bad_epochs, "stopped": state.stopped,
                "check": self.check, "card": card}
        save_checkpoint(self.path, task.module, state.best_state, task.optimizers, meta)

    def save_best(self, module, card: dict) -> None:
        Model(module, card).save(self.best_path)
