"""Name -> architecture registry of the xdl zoo.

Example:
    >>> from xdl.models import registry
    >>> registry.names()
    ['fill-unet', 'mlp', 'pconv-unet', 'pix2pix', 'unet']
    >>> registry.get("mlp")(in_channels=3).mode
    'pointwise'
"""

from __future__ import annotations

import enum
import functools
import hashlib
import importlib
import math
import numbers
import types

import numpy as np
import torch

from ..errors import UnknownModelError

__all__ = ["register", "get", "names", "name_of", "describe", "count_parameters", "check_int",
           "check_float", "MAX_DEPTH", "MAX_CHANNELS", "MAX_IO_CHANNELS", "MAX_PARAMETERS"]

# Bounds on the architectures' options. They keep a hostile or mistyped config (a model card, a
# zoo.create call) from asking for terabytes or hanging: each bound is far above what the zoo's
# models use (depth 3-8, 32-512 channels, a few million parameters).
MAX_DEPTH = 10             # pooling levels: a size multiple of 2**10 = 1024 pixels
MAX_CHANNELS = 4096        # feature channels of any layer (base_channels, max_channels, ngf, ndf)
MAX_IO_CHANNELS = 1024     # input / output variables
MAX_PARAMETERS = 2 ** 29   # 537M parameters, 2 GiB in float32 (pix2pix's paper generator: 54M)

_REGISTRY: dict[str, type] = {}
_DESCRIPTIONS: dict[str, str] = {}
_BUILTIN = ("pconv_unet", "fill_unet", "unet", "pix2pix", "mlp")


def _load_builtin():
    # Imported lazily so that registry has no import cycle with the modules that use @register.
    for mod in _BUILTIN:
        importlib.import_module(f"{__package__}.{mod}")


def register(name: str, description: str | None = None):
    """Class decorator adding an architecture under ``name``; the description defaults to the
    first line of the class docstring."""

    def deco(cls):
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"architecture name {name!r} is already registered to {_REGISTRY[name]!r}")
        _REGISTRY[name] = cls
        doc = (cls.__doc__ or "").strip().splitlines()
        _DESCRIPTIONS[name] = description or (doc[0].strip() if doc else "")
        cls.architecture = name
        return cls

    return deco


def names() -> list[str]:
    """Sorted names of the known architectures."""
    _load_builtin()
    return sorted(_REGISTRY)


def get(name: str) -> type:
    """The class registered under ``name``; :class:`~xdl.errors.UnknownModelError` if none."""
    _load_builtin()
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise UnknownModelError(f"unknown model architecture {name!r}; known: {', '.join(names())}") from None


def name_of(module) -> str | None:
    """The registered name of ``module``'s exact class, or None for a plain module."""
    _load_builtin()
    for n, cls in _REGISTRY.items():
        if type(module) is cls:
            return n
    return None


def describe() -> dict[str, str]:
    """``{name: one-line description}`` of every architecture."""
    _load_builtin()
    return {n: _DESCRIPTIONS[n] for n in sorted(_REGISTRY)}


def check_int(name: str, value, lo: int, hi: int) -> int:
    """``value`` as an int if it is a whole number in ``[lo, hi]``, else a ValueError naming ``name``.

    >>> check_int("depth", 3, 1, 10), check_int("depth", 3.0, 1, 10)
    (3, 3)
    """
    ok = not isinstance(value, bool) and (isinstance(value, numbers.Integral)
                                          or isinstance(value, float) and value.is_integer())
    if not ok or not lo <= value <= hi:
        raise ValueError(f"{name} must be a whole number in [{lo}, {hi}], got {value!r}")
    return int(value)


def check_levels(depth, base_channels, max_channels) -> tuple[int, int, int]:
    """The UNet family's sizes checked: pooling levels and the first and widest feature channels.

    >>> check_levels(3, 32, 128)
    (3, 32, 128)
    """
    return (check_int("depth", depth, 1, MAX_DEPTH), check_int("base_channels", base_channels, 1, MAX_CHANNELS),
            check_int("max_channels", max_channels, 1, MAX_CHANNELS))


def check_float(name: str, value, lo: float, hi: float) -> float:
    """``value`` as a float if it is a finite number in ``[lo, hi]``, else a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
            or not lo <= value <= hi:
        raise ValueError(f"{name} must be a number in [{lo}, {hi}], got {value!r}")
    return float(value)


def count_parameters(module, trainable_only: bool = False) -> int:
    """Number of parameter elements (buffers such as BatchNorm running stats not counted).

    >>> import torch
    >>> count_parameters(torch.nn.Linear(3, 2))
    8
    """
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


PLAIN = (bool, int, float, str, bytes, type(None), tuple, list, dict)
# Numbers from numpy and torch too, sets, dtypes, enums and functions (an activation set after building).
VALUES = PLAIN + (np.generic, np.ndarray, torch.Tensor, set, frozenset, torch.dtype, enum.Enum, types.FunctionType,
                  types.BuiltinFunctionType, functools.partial)


def settings(module) -> dict:
    """``{(submodule path, name): value}`` of ``module``'s and its submodules' public attributes
    that are values (numbers, strings, containers, numpy values, tensors that are no parameter or
    buffer): what it computes with beside its state_dict."""
    return {(path, name): value for path, sub in module.named_modules() for name, value in sorted(vars(sub).items())
            if not name.startswith("_") and name != "training" and isinstance(value, VALUES)}


def _encoded(value) -> bytes:
    """A stable byte encoding of a setting: arrays and tensors by dtype, shape and every byte (a
    repr shortens long ones with "...": two settings differing in the middle hashed alike; probe),
    containers item by item, anything else by its repr."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        head = f"tensor:{value.dtype}:{tuple(value.shape)}:".encode()
        return head + value.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
    if isinstance(value, (np.ndarray, np.generic)):
        value = np.asarray(value)
        if value.dtype == object:
            return b"object[" + b",".join(_encoded(v) for v in value.ravel()) + b"]"
        return f"ndarray:{value.dtype.str}:{value.shape}:".encode() + np.ascontiguousarray(value).tobytes()
    if isinstance(value, dict):
        return b"{" + b",".join(_encoded(k) + b":" + _encoded(v) for k, v in value.items()) + b"}"
    if isinstance(value, (list, tuple)):
        return f"{type(value).__name__}[".encode() + b",".join(_encoded(v) for v in value) + b"]"
    if isinstance(value, (set, frozenset)):  # in a stable order (iteration follows PYTHONHASHSEED)
        return b"set[" + b",".join(sorted(_encoded(v) for v in value)) + b"]"
    if isinstance(value, functools.partial):
        return b"partial(" + _encoded(value.func) + _encoded(value.args) + _encoded(value.keywords) + b")"
    if callable(value) and hasattr(value, "__qualname__"):  # by name: its repr holds an address
        return f"callable:{getattr(value, '__module__', '')}.{value.__qualname__}".encode()
    if isinstance(value, PLAIN + (np.generic, torch.dtype, enum.Enum)):
        return f"{type(value).__name__}:{value!r}".encode()
    return f"object:{type(value).__module__}.{type(value).__qualname__}".encode()  # a repr may hold an address


def state_digest(module) -> str:
    """sha256 hex of what ``module`` computes with beside its code: its :func:`settings` (an
    iteration count set after building: two fill-unets that differed only in it shared a cache key,
    and one ran with the other's; probe) and its state_dict (:func:`tensor_digest`).

    >>> import torch
    >>> a, b = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    >>> b.load_state_dict(a.state_dict()) and None
    >>> state_digest(a) == state_digest(b), (setattr(b, "steps", np.int64(3)), state_digest(a) == state_digest(b))[1]
    (True, False)
    """
    h = hashlib.sha256()
    for (path, name), value in settings(module).items():
        h.update(f"{path}.{name}=".encode() + _encoded(value) + b"\n")
    h.update(tensor_digest(module).encode())
    return h.hexdigest()


def tensor_digest(module) -> str:
    """sha256 hex of ``module``'s state_dict: each tensor's name, dtype, shape and bytes in name
    order; an entry that is no tensor (a module's ``get_extra_state``) by :func:`_encoded`."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        if not isinstance(t, torch.Tensor):
            h.update(f"\0{name}\0".encode() + _encoded(t) + b"\0")
            continue
        t = t.detach().cpu().contiguous()
        h.update(f"\0{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
