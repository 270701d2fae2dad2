"""Name -> architecture registry of the xdl zoo.

Example:
    >>> from xdl.models import registry
    >>> registry.names()
    ['fill-unet', 'mlp', 'pconv-unet', 'pix2pix', 'unet']
    >>> registry.get("mlp")(in_channels=3).mode
    'pointwise'
"""

from __future__ import annotations

import importlib

from ..errors import UnknownModelError

__all__ = ["register", "get", "names", "name_of", "describe", "count_parameters"]

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


def count_parameters(module, trainable_only: bool = False) -> int:
    """Number of parameter elements (buffers such as BatchNorm running stats not counted).

    >>> import torch
    >>> count_parameters(torch.nn.Linear(3, 2))
    8
    """
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
