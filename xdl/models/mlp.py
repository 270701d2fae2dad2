"""Pointwise multilayer perceptron: one grid point's variables in, its predictions out."""

from __future__ import annotations

import torch
import torch.nn as nn

from .registry import MAX_IO_CHANNELS, check_int, register

__all__ = ["MLP"]

MAX_LAYERS = 64       # hidden layers
MAX_WIDTH = 65_536    # units per hidden layer

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh,
                "leaky_relu": lambda: nn.LeakyReLU(0.2), "elu": nn.ELU}
_OUT_ACTIVATIONS = {None: nn.Identity, "sigmoid": nn.Sigmoid, "softplus": nn.Softplus, "relu": nn.ReLU}


@register("mlp")
class MLP(nn.Module):
    """Pointwise MLP, ``(P, C) -> (P, C_out)``, e.g. T, P, Q at each grid point -> P(rain).

    ``hidden`` lists the hidden widths; ``activation`` one of relu, gelu, silu, tanh, leaky_relu,
    elu; ``out_activation`` None, "sigmoid" (probabilities), "softplus" or "relu" (non-negative).

    Example:
        >>> net = MLP(3, 1, hidden=(16,), out_activation="sigmoid")
        >>> y = net(torch.randn(10, 3))
        >>> tuple(y.shape), bool(((y > 0) & (y < 1)).all())
        ((10, 1), True)
    """

    mode = "pointwise"
    size_multiple = 1
    halo = 0
    takes_mask = False
    fills_gaps = False

    def __init__(self, in_channels, out_channels=1, hidden=(64, 64), activation="relu", out_activation=None):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        if out_activation not in _OUT_ACTIVATIONS:
            raise ValueError(f"out_activation must be one of {list(_OUT_ACTIVATIONS)}, got {out_activation!r}")
        # Bounds first, before anything is allocated (the config may come from a hostile file).
        in_channels = check_int("in_channels", in_channels, 1, MAX_IO_CHANNELS)
        out_channels = check_int("out_channels", out_channels, 1, MAX_IO_CHANNELS)
        if isinstance(hidden, (str, bytes)) or not hasattr(hidden, "__len__") or len(hidden) > MAX_LAYERS:
            raise ValueError(f"hidden must be a list of at most {MAX_LAYERS} layer widths, got {hidden!r}")
        hidden = [check_int(f"hidden[{i}]", h, 1, MAX_WIDTH) for i, h in enumerate(hidden)]
        self.config = dict(in_channels=in_channels, out_channels=out_channels, hidden=hidden,
                           activation=activation, out_activation=out_activation)
        self.in_channels, self.out_channels = in_channels, out_channels
        layers, c = [], in_channels
        for h in hidden:
            layers += [nn.Linear(c, h), _ACTIVATIONS[activation]()]
            c = h
        layers += [nn.Linear(c, out_channels), _OUT_ACTIVATIONS[out_activation]()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.in_channels:
            raise ValueError(f"MLP expects (points, {self.in_channels}), got {tuple(x.shape)}")
        return self.net(x)
