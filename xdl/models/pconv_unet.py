"""PConv-UNet (Liu et al. 2018; CRAI, Kadow et al. 2020): a UNet of partial convolutions for gap filling."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .context import sigma_from_raw
from .partialconv import PartialConv2d
from .registry import MAX_IO_CHANNELS, check_int, check_levels, register

__all__ = ["PConvUNet", "default_kernels"]


def default_kernels(depth: int) -> tuple[int, ...]:
    """Encoder kernel sizes of the paper, extended with 3s: ``(7, 5, 5, 3, 3, ...)``.

    >>> default_kernels(5)
    (7, 5, 5, 3, 3)
    """
    return tuple((7, 5, 5)[i] if i < 3 else 3 for i in range(depth))


class _PConvBlock(nn.Module):
    def __init__(self, cin, cout, k, stride, bn, act, circular_x):
        super().__init__()
        self.conv = PartialConv2d(cin, cout, k, stride=stride, padding=k // 2, bias=not bn,
                                  multi_channel=True, circular_x=circular_x)
        self.bn = nn.BatchNorm2d(cout) if bn else None
        self.act = act

    def forward(self, x, mask):
        x, mask = self.conv(x, mask)
        if self.bn is not None:
            x = self.bn(x)
        if self.act is not None:
            x = self.act(x)
        return x, mask


@register("pconv-unet")
class PConvUNet(nn.Module):
    """UNet of partial convolutions that fills gaps (Liu et al. 2018); forward(x, mask) -> filled x.

    Encoder: ``depth`` stride-2 partial convolutions (kernels 7, 5, 5, 3, ...), BatchNorm except on
    the first, ReLU. Decoder: nearest x2 upsampling of features and masks, concat with the skip
    features and masks, 3x3 partial convolution, BatchNorm, LeakyReLU(0.2); the last decoder layer
    sees the input image and mask and has no BatchNorm or activation. ``sigma=True`` doubles the
    last layer's outputs: the means, then a per-pixel standard deviation each (positive, through
    :func:`~xdl.models.context.sigma_from_raw`), trained with a Gaussian likelihood. Channels go
    ``base_channels * 2**i`` capped at ``max_channels``. H and W must be multiples of ``2**depth``.

    Example:
        >>> net = PConvUNet(in_channels=1, depth=3, base_channels=8).eval()
        >>> x = torch.randn(2, 1, 32, 48); m = (torch.rand_like(x) > 0.3).float()
        >>> tuple(net(x * m, m).shape)
        (2, 1, 32, 48)
    """

    mode = "spatial"
    takes_mask = True
    fills_gaps = True

    def __init__(self, in_channels=1, out_channels=None, depth=4, base_channels=32, max_channels=256,
                 kernels=None, circular_x=False, freeze_encoder_bn=False, sigma=False):
        super().__init__()
        # Bounds first, before anything is allocated (the config may come from a hostile file).
        in_channels = check_int("in_channels", in_channels, 1, MAX_IO_CHANNELS)
        out_channels = in_channels if out_channels is None else out_channels
        out_channels = check_int("out_channels", out_channels, 1, MAX_IO_CHANNELS)
        depth, base_channels, max_channels = check_levels(depth, base_channels, max_channels)
        if kernels is not None and (isinstance(kernels, (str, bytes)) or not hasattr(kernels, "__len__")
                                    or len(kernels) != depth):
            raise ValueError(f"kernels needs one size per level ({depth}), got {kernels!r}")
        kernels = tuple(default_kernels(depth) if kernels is None else
                        [check_int(f"kernels[{i}]", k, 1, 31) for i, k in enumerate(kernels)])
        if any(k % 2 == 0 for k in kernels):  # an even kernel changes the size: the skips would not fit
            raise ValueError(f"kernels must be odd sizes, got {list(kernels)}")
        if len(kernels) != depth:
            raise ValueError(f"kernels needs one size per level ({depth}), got {kernels}")
        self.config = dict(in_channels=in_channels, out_channels=out_channels, depth=depth,
                           base_channels=base_channels, max_channels=max_channels, kernels=list(kernels),
                           circular_x=bool(circular_x), freeze_encoder_bn=bool(freeze_encoder_bn))
        if sigma:  # absent from older cards: their models load as they were
            self.config["sigma"] = True
        self.sigma = bool(sigma)
        self.means = out_channels
        self.in_channels, self.out_channels, self.depth = in_channels, out_channels * (2 if sigma else 1), depth
        self.size_multiple = 2 ** depth
        # Effective receptive field radius, rounded to the size multiple: two coarsest-level pixels.
        self.halo = 2 * self.size_multiple
        self.freeze_encoder_bn = bool(freeze_encoder_bn)

        ch = [min(base_channels * 2 ** i, max_channels) for i in range(depth)]
        self.encoder = nn.ModuleList(
            _PConvBlock(in_channels if i == 0 else ch[i - 1], ch[i], kernels[i], 2, bn=i > 0,
                        act=nn.ReLU(inplace=True), circular_x=circular_x)
            for i in range(depth))
        # decoder[j] brings level j+1 (resolution /2**(j+1)) up to level j, joining skip j.
        dec = []
        for j in range(depth):
            skip = in_channels if j == 0 else ch[j - 1]
            last = j == 0
            width = self.out_channels if last else ch[j - 1]
            dec.append(_PConvBlock(ch[j] + skip, width, 3, 1, bn=not last,
                                   act=None if last else nn.LeakyReLU(0.2, inplace=True),
                                   circular_x=circular_x))
        self.decoder = nn.ModuleList(dec)

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.freeze_encoder_bn:
            # Fine-tuning on few, gappy samples: keep the encoder's statistics from pre-training.
            for m in self.encoder.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is None:
            mask = torch.ones_like(x)
        elif mask.shape[1] == 1 and x.shape[1] != 1:
            mask = mask.expand_as(x)
        mask = mask.to(x.dtype)
        h, w = x.shape[-2:]
        if h % self.size_multiple or w % self.size_multiple:
            raise ValueError(f"PConvUNet(depth={self.depth}) needs H and W multiples of "
                             f"{self.size_multiple}, got {h}x{w}")
        feats, masks = [x], [mask]
        f, m = x, mask
        for enc in self.encoder:
            f, m = enc(f, m)
            feats.append(f)
            masks.append(m)
        for j in reversed(range(self.depth)):
            f = F.interpolate(f, scale_factor=2, mode="nearest")
            m = F.interpolate(m, scale_factor=2, mode="nearest")
            skip_f, skip_m = feats[j], masks[j]
            f = torch.cat([f, skip_f.to(f.dtype)], 1)
            m = torch.cat([m.to(f.dtype), skip_m.to(f.dtype)], 1)
            f, m = self.decoder[j](f, m)
        if self.sigma:
            return torch.cat([f[:, :self.means], sigma_from_raw(f[:, self.means:]).to(f.dtype)], 1)
        return f
