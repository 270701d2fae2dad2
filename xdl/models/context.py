"""Context fields for gap fillers: a shared encoder pooled over any number of fields, and the
wrapper that lets the engine call a context model like any other.

A context model is called ``module(x, mask, info)``: ``x`` and ``mask`` are ``(N, n + K, H, W)``,
the first ``n`` channels the targets, the next ``K`` context fields (other bands or variables of
the same scene, the targets at other time steps) in any order and number; ``info`` is ``(K, 2)``:
per field its time offset in steps and 1.0 if it is a target variable at another time. The
encoder sees each field with its mask and info through the same weights and averages (and takes
the maximum of) the features over the fields, so K can change from call to call.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .registry import check_int

__all__ = ["ContextEncoder", "with_context", "unwrapped", "MAX_CONTEXT_FIELDS", "sigma_from_raw", "factor_from_raw", "SIGMA_FLOOR"]

MAX_CONTEXT_FIELDS = 64
MAX_OFFSET = 64.0     # time offsets beyond this many steps are refused (a mistake, not context)
SIGMA_FLOOR = 1e-3    # normalised units: a sigma head never claims more certainty than this
SIGMA_INIT = 0.1      # an untrained sigma head says 0.1 standard deviations of the field


def sigma_from_raw(raw: torch.Tensor) -> torch.Tensor:
    """A sigma head's raw output to a positive sigma: softplus, floored; raw 0 gives SIGMA_INIT."""
    shift = float(torch.log(torch.expm1(torch.tensor(SIGMA_INIT))))
    return F.softplus(raw.float() + shift) + SIGMA_FLOOR


FACTOR_RANGE = 2.0  # a factor head's output stays within exp(-2)..exp(2) of its prior


def factor_from_raw(raw: torch.Tensor) -> torch.Tensor:
    """A factor head's raw output to a positive factor on a prior sigma: 1 at raw 0, bounded to
    exp(+-FACTOR_RANGE), so a head trained on a few scenes can adjust the prior, never replace it.

    >>> factor_from_raw(torch.tensor([0.0, 100.0])).tolist()[0], round(factor_from_raw(torch.tensor([100.0])).item(), 3)
    (1.0, 7.389)
    """
    return torch.exp(FACTOR_RANGE * torch.tanh(raw.float() / FACTOR_RANGE))


def check_info(info, k: int, device, dtype) -> torch.Tensor:
    """``info`` as a (K, 2) tensor (zeros when None), or ValueError for a wrong shape or value."""
    if k > MAX_CONTEXT_FIELDS:
        raise ValueError(f"{k} context fields; at most {MAX_CONTEXT_FIELDS}")
    if info is None:
        return torch.zeros((k, 2), device=device, dtype=dtype)
    info = torch.as_tensor(info, device=device, dtype=dtype)
    if tuple(info.shape) != (k, 2):
        raise ValueError(f"context info must be ({k}, 2) (time offset, is-target-variable) for {k} "
                         f"context fields, got {tuple(info.shape)}")
    if not bool(torch.isfinite(info).all()) or (k > 0 and float(info[:, 0].abs().max()) > MAX_OFFSET):
        raise ValueError(f"context time offsets must be finite and at most {MAX_OFFSET:g} steps")
    return info


class ContextEncoder(nn.Module):
    """Per context field (folded value, folded mask, info): two 3x3 convolutions with shared
    weights, then the mean and the maximum over the fields: ``(N, K * C_in, h, w) -> (N, 2F, h, w)``.
    No field gives zeros."""

    def __init__(self, folded: int, features: int):
        super().__init__()
        self.folded = check_int("folded", folded, 1, 4096)
        self.features = check_int("context_features", features, 1, 512)
        self.body = nn.Sequential(
            nn.Conv2d(2 * folded + 3, features, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(features, features, 3, padding=1), nn.ReLU(inplace=True))

    def forward(self, values: torch.Tensor, masks: torch.Tensor, info: torch.Tensor) -> torch.Tensor:
        n, kc, h, w = values.shape
        k = kc // self.folded
        if k == 0:
            return values.new_zeros((n, 2 * self.features, h, w))
        v = values.reshape(n * k, self.folded, h, w)
        m = masks.reshape(n * k, self.folded, h, w)
        # Offsets scaled to about unit size; a third channel tells a time neighbour's side.
        code = torch.stack([info[:, 0] / 4.0, info[:, 1], torch.sign(info[:, 0])], 1).to(v.dtype)
        code = code.repeat(n, 1)[:, :, None, None].expand(n * k, 3, h, w)
        f = self.body(torch.cat([v, m, code], 1)).reshape(n, k, self.features, h, w)
        return torch.cat([f.mean(1), f.amax(1)], 1)


class _WithContext(nn.Module):
    """``forward(x, mask)`` -> ``module(x, mask, info)``, with the engine's attributes."""

    def __init__(self, module: nn.Module, info: torch.Tensor):
        super().__init__()
        self.module = module
        self.register_buffer("info", info)
        n = int(module.in_channels)
        self.target_channels = n
        self.in_channels = n + int(info.shape[0])
        self.out_channels = int(module.out_channels)
        for name in ("mode", "halo", "size_multiple", "takes_mask", "takes_domain", "fills_gaps", "min_tile", "cpu_bf16",
                     "cpu_threads", "sigma"):
            if hasattr(module, name):
                setattr(self, name, getattr(module, name))

    def forward(self, x, mask=None):
        return self.module(x, mask, self.info)


def unwrapped(module: nn.Module) -> nn.Module:
    """The model inside :func:`with_context`'s wrapper (``module`` itself when it is not one)."""
    return module.module if isinstance(module, _WithContext) else module


def with_context(module: nn.Module, info) -> nn.Module:
    """``module`` (a context model) as a model the engine calls ``(x, mask)``, with ``info`` fixed.

    >>> from xdl.models.fill_unet import FillUNet
    >>> net = FillUNet(in_channels=1, depth=2, base_channels=8, context_features=4).eval()
    >>> wrapped = with_context(net, [[1.0, 1.0]])
    >>> wrapped.in_channels, wrapped.target_channels, wrapped.out_channels
    (2, 1, 1)
    """
    if not getattr(module, "takes_context", False):
        raise ValueError(f"{type(module).__name__} takes no context fields")
    info = torch.as_tensor(info, dtype=torch.float32).reshape(-1, 2)
    return _WithContext(module, check_info(info, info.shape[0], "cpu", torch.float32))
