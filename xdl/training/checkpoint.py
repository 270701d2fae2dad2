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
from ..io.files import replace_atomically
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
    with safe_open(path, framework="pt") as f:
        raw = (f.metadata() or {}).get("xdl_checkpoint")
        if raw is None:
            raise InputError(f"{path} is not an xdl training checkpoint (no 'xdl_checkpoint' metadata); "
                             "remove it or pass resume=False.")
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    return json.loads(raw), tensors


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
        diff = {k: (meta["check"].get(k), v) for k, v in json.loads(json.dumps(self.check)).items()
                if meta["check"].get(k) != v}
        if diff:
            raise InputError(f"checkpoint {self.path} was written by a different run: "
                             + "; ".join(f"{k} was {a!r}, now {b!r}" for k, (a, b) in diff.items())
                             + ". Pass the same settings, or resume=False (or another checkpoint_dir) to start over.")
        task.module.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model/")})
        best = {k[5:]: v for k, v in tensors.items() if k.startswith("best/")}
        state.best_state = best or None
        for k, opt in enumerate(task.optimizers):
            restore_optimizer(opt, k, tensors, meta["optimizer_scalars"][k])
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
