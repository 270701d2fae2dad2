"""From what a user passes as ``model=`` to a model, and the names the engine and the outputs give it.

Every verb (``predict``, ``inpaint``, ``evaluate``, the demo, the CLI) resolves its model here:
an ``xdl.Model`` or ``torch.nn.Module`` as is, a path as a model file, a name as a bundled model,
and None as the verb's bundled default.

Example:
    >>> from xdl.models.resolve import resolve_model, model_label
    >>> model_label(resolve_model(None, default="fill-default"))
    'fill-default'
    >>> resolve_model("no-such-model")
    Traceback (most recent call last):
    ...
    xdl.errors.InputError: model 'no-such-model' is neither an existing file nor a bundled model (fill-context, fill-default); give a path to a .safetensors model file, an xdl.Model or a torch.nn.Module.
"""

from __future__ import annotations

import hashlib
import os

import cloudpickle
import torch

from ..errors import InputError
from . import pretrained, registry

__all__ = ["resolve_model", "model_key", "model_label", "DEFAULT_HINT"]

# What to do when a verb's bundled default model is missing from the install.
DEFAULT_HINT = ("pass model= (a .safetensors file or an xdl.Model, e.g. from ds.dl.fit('pconv-unet', ...)).")


def resolve_model(model, default: str | None = None, hint: str = DEFAULT_HINT):
    """An ``xdl.Model`` or ``torch.nn.Module`` from what the user gave: object, file path or name.

    ``model=None`` loads the bundled model ``default`` when the verb has one (an
    :class:`~xdl.errors.InputError` if it is not installed, ``hint`` saying what to pass instead)."""
    if model is None and default is not None:
        if default not in pretrained.names():
            raise InputError(f"no bundled default model {default!r} is installed with this xdl; {hint}")
        return pretrained.load(default)
    if isinstance(model, (str, os.PathLike)):
        from ..modelfile import load_model

        text = os.fspath(model)
        if os.path.exists(text):
            return load_model(text)
        if text in pretrained.names():
            return pretrained.load(text)
        raise InputError(f"model {text!r} is neither an existing file nor a bundled model "
                         f"({', '.join(pretrained.names())}); give a path to a .safetensors model file, "
                         "an xdl.Model or a torch.nn.Module.")
    if isinstance(model, torch.nn.Module) or hasattr(model, "card"):
        return model
    raise InputError(f"model must be an xdl.Model, a torch.nn.Module, a bundled model name or a "
                     f"file path; got {type(model).__name__}.")


def model_key(model) -> str:
    """A content hash of the model: the per-process cache key of the resident copy.

    A zoo model is its card (architecture and config) plus its tensors. A user's own module is
    hashed from its pickle, so two modules with equal weights but different Python attributes
    (an iteration count, a flag) never share a resident copy."""
    module = getattr(model, "module", model)
    if hasattr(model, "content_hash") and registry.name_of(module) is not None:
        return model.content_hash()
    return hashlib.sha256(cloudpickle.dumps(module)).hexdigest()


def model_label(model) -> str:
    """The model's name in outputs and messages: the card's ``name`` or architecture, else its class."""
    card = getattr(model, "card", None) or {}
    return card.get("name") or card.get("architecture") or type(getattr(model, "module", model)).__name__
