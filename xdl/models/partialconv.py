"""Partial convolution (Liu et al. 2018, "Image Inpainting for Irregular Holes Using Partial Convolutions").

    out      = W^T (X * M) * sum(1) / sum(M) + b    where sum(M) > 0, else 0
    new_mask = sum(M) > 0

``sum(M)`` is the number of valid inputs under the kernel window at each output position and
``sum(1)`` the window size (``C * kh * kw`` for per-channel masks, ``kh * kw`` for a single-channel
mask shared by all channels).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["PartialConv2d"]

_EPS = 1e-6


class PartialConv2d(nn.Conv2d):
    """2-D partial convolution; ``forward(x, mask) -> (out, new_mask)``.

    ``mask`` is 1.0 where ``x`` is valid and 0.0 where not: shape ``(N, 1, H, W)``, or
    ``(N, C, H, W)`` with ``multi_channel=True``. ``new_mask`` has one channel, or
    ``out_channels`` channels with ``multi_channel=True`` (so it can feed the next layer).
    ``circular_x=True`` wraps the last axis (longitude) and zero-pads the y axis.

    Example:
        >>> conv = PartialConv2d(1, 4, 3, padding=1)
        >>> x, m = torch.randn(2, 1, 8, 8), torch.ones(2, 1, 8, 8)
        >>> out, new_mask = conv(x, m)
        >>> tuple(out.shape), tuple(new_mask.shape)
        ((2, 4, 8, 8), (2, 1, 8, 8))
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 bias=True, multi_channel=False, circular_x=False):
        # With circular_x the padding is done by hand, so the underlying conv pads nothing.
        super().__init__(in_channels, out_channels, kernel_size, stride=stride,
                         padding=0 if circular_x else padding, dilation=dilation, bias=bias)
        self.multi_channel = bool(multi_channel)
        self.circular_x = bool(circular_x)
        if isinstance(padding, str):
            raise ValueError("PartialConv2d needs integer padding, not a padding mode string")
        self.pad_yx = tuple(padding) if isinstance(padding, (tuple, list)) else (padding, padding)
        kh, kw = self.kernel_size
        mask_channels = in_channels if self.multi_channel else 1
        self.window_size = float(mask_channels * kh * kw)  # sum(1)
        # Not a parameter or persistent buffer: it is a constant, so it stays out of state dicts.
        self.register_buffer("ones_kernel", torch.ones(1, mask_channels, kh, kw), persistent=False)

    def _pad(self, t: torch.Tensor) -> torch.Tensor:
        py, px = self.pad_yx
        if px:
            t = F.pad(t, (px, px, 0, 0), mode="circular")
        if py:
            t = F.pad(t, (0, 0, py, py))  # zeros: nothing valid beyond the poles / y edges
        return t

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None):
        if mask is None:
            mask = torch.ones_like(x[:, :1] if not self.multi_channel else x)
        expected_c = self.in_channels if self.multi_channel else 1
        if mask.dim() != 4 or mask.shape[1] != expected_c or mask.shape[0] != x.shape[0] \
                or mask.shape[-2:] != x.shape[-2:]:
            raise ValueError(f"mask must have shape {(x.shape[0], expected_c) + tuple(x.shape[-2:])}, "
                             f"got {tuple(mask.shape)}")
        if self.circular_x:
            x, mask = self._pad(x), self._pad(mask)
            pad = 0
        else:
            pad = self.padding

        # Mask bookkeeping in float32 with autocast off: a bf16 window sum of up to thousands of
        # ones is inexact, and 1/sum(M) overflows fp16 when sum(M) is tiny.
        with torch.autocast(device_type=x.device.type, enabled=False):
            m32 = mask.float()
            msum = F.conv2d(m32, self.ones_kernel.to(m32.device, torch.float32), stride=self.stride, padding=pad,
                            dilation=self.dilation)
            new_mask = (msum > 0).float()
            ratio = self.window_size / msum.clamp(min=_EPS) * new_mask

        raw = F.conv2d(x * mask.to(x.dtype), self.weight, None, self.stride, pad, self.dilation)
        out = raw.float() * ratio
        if self.bias is not None:
            out = out + self.bias.float().view(1, -1, 1, 1)
        out = (out * new_mask).to(raw.dtype)
        if self.multi_channel:
            new_mask = new_mask.expand(-1, self.out_channels, -1, -1)
        return out, new_mask.to(raw.dtype)

    def extra_repr(self):
        s = super().extra_repr()
        if self.circular_x:
            s += f", padding_yx={self.pad_yx}, circular_x=True"
        return s + (", multi_channel=True" if self.multi_channel else "")
