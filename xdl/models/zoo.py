"""The model zoo: named architectures, built fresh (untrained) as :class:`xdl.Model`.

Example:
    >>> import xdl
    >>> xdl.zoo.list()
    ['fill-unet', 'mlp', 'pconv-unet', 'pix2pix', 'unet']
    >>> m = xdl.zoo.create("pconv-unet", in_channels=1, depth=3, base_channels=8)
    >>> m.architecture, m.size_multiple, m.takes_mask, m.fills_gaps
    ('pconv-unet', 8, True, True)
    >>> xdl.zoo.create("mlp", inputs=["t", "p", "q"], outputs=["rain"]).in_channels
    3
"""

from __future__ import annotations

import builtins
import inspect

from ..errors import InputError
from ..modelfile import CARD_KEYS, Model, build_module
from . import registry

__all__ = ["list", "describe", "create"]


def list() -> builtins.list[str]:  # noqa: A001 - xdl.zoo.list() is the public name
    """Names of the zoo architectures, sorted."""
    return registry.names()


def describe() -> dict[str, str]:
    """``{name: one-line description}`` of every zoo architecture."""
    return registry.describe()


def create(name: str, card: dict | None = None, **kwargs) -> Model:
    """Build the zoo architecture ``name`` as an untrained :class:`xdl.Model`.

    Keyword arguments that the architecture's constructor takes form its ``config``; the others
    must be card keys (``inputs=``, ``outputs=``, ``units=``, ``normalization=``, ...) and join
    ``card``. ``in_channels``/``out_channels`` default to the number of ``inputs``/``outputs``.

    Example:
        >>> m = create("unet", in_channels=2, depth=2, base_channels=4, card={"inputs": ["u", "v"]})
        >>> m.inputs, m.config["depth"]
        (['u', 'v'], 2)
    """
    cls = registry.get(name)
    params = inspect.signature(cls.__init__).parameters
    card = dict(card or {})
    config = {}
    for k, v in kwargs.items():
        if k in params:
            config[k] = v
        elif k in CARD_KEYS:
            card[k] = v
        else:
            raise InputError(f"{name!r} takes no argument {k!r}; its options: "
                             f"{', '.join(p for p in params if p != 'self')}; card keys: {', '.join(CARD_KEYS)}")
    for key, ch in (("inputs", "in_channels"), ("outputs", "out_channels")):
        if card.get(key) and ch in params and ch not in config:
            config[ch] = len(card[key])
    # Ranges checked, size checked on the meta device, then built: absurd options never allocate.
    module = build_module(name, config, f"xdl.zoo.create({name!r})")
    # The module records its full config (defaults included), so the card rebuilds it exactly.
    card.setdefault("architecture", name)
    card.setdefault("config", getattr(module, "config", config))
    return Model(module, card)
