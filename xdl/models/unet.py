"""UNet (Ronneberger et al. 2015) for field-to-field mappings."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .registry import MAX_IO_CHANNELS, check_float, check_int, check_levels, register


def prepare_input(net: nn.Module, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Shared by the UNets: append the valid mask as channels (``with_mask``) and check that the
    spatial size is a multiple of the net's size multiple."""
    if net.with_mask:
        if mask is None:
            mask = torch.ones_like(x)
        x = torch.cat([x, mask.expand_as(x).to(x.dtype)], 1)
    h, w = x.shape[-2:]
    if h % net.size_multiple or w % net.size_multiple:
        raise ValueError(f"{type(net).__name__}(depth={net.depth}) needs H and W multiples of "
                         f"{net.size_multiple}, got {h}x{w}")
    return x

__all__ = ["UNet"]


class _DoubleConv(nn.Module):
    """(3x3 conv, BN, ReLU) x 2, optionally with a residual (1x1 projected) shortcut."""

    def __init__(self, cin, cout, residual=False, dropout=0.0):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout))
        self.skip = None
        if residual:
            self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1, bias=False)
        self.drop = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x):
        y = self.body(x)
        if self.skip is not None:
            y = y + self.skip(x)
        return self.drop(F.relu(y, inplace=True))


@register("unet")
class UNet(nn.Module):
    """UNet (Ronneberger et al. 2015): double 3x3 conv + BN + ReLU per level, max-pool down, skip concat.

    ``depth`` pooling steps, channels ``base_channels * 2**i`` capped at ``max_channels``; upsampling
    by transposed convolution (or bilinear + 1x1 conv with ``bilinear=True``). ``residual=True``
    gives every level a residual shortcut; ``dropout`` applies channel dropout after every block.
    ``with_mask=True`` makes forward take ``(x, mask)`` and concatenates the mask to the input.

    Example:
        >>> net = UNet(in_channels=2, out_channels=1, depth=2, base_channels=8).eval()
        >>> tuple(net(torch.randn(1, 2, 16, 24)).shape)
        (1, 1, 16, 24)
    """

    mode = "spatial"
    fills_gaps = False

    def __init__(self, in_channels=1, out_channels=1, depth=4, base_channels=32, max_channels=256,
                 residual=False, dropout=0.0, with_mask=False, bilinear=False):
        super().__init__()
        # Bounds first, before anything is allocated (the config may come from a hostile file).
        in_channels = check_int("in_channels", in_channels, 1, MAX_IO_CHANNELS)
        out_channels = check_int("out_channels", out_channels, 1, MAX_IO_CHANNELS)
        depth, base_channels, max_channels = check_levels(depth, base_channels, max_channels)
        check_float("dropout", dropout, 0.0, 1.0)
        self.config = dict(in_channels=in_channels, out_channels=out_channels, depth=depth,
                           base_channels=base_channels, max_channels=max_channels, residual=bool(residual),
                           dropout=float(dropout), with_mask=bool(with_mask), bilinear=bool(bilinear))
        self.in_channels, self.out_channels, self.depth = in_channels, out_channels, depth
        self.with_mask = self.takes_mask = bool(with_mask)
        self.size_multiple = 2 ** depth
        # Effective receptive-field radius (99% of the input-gradient mass, xdl.engine.spec.probe_halo):
        # measured 8, 8, 16, 32 pixels for depths 2..5, i.e. one coarsest-level pixel, at least 8.
        self.halo = max(self.size_multiple, 8)

        ch = [min(base_channels * 2 ** i, max_channels) for i in range(depth + 1)]
        cin = in_channels * (2 if with_mask else 1)
        self.inc = _DoubleConv(cin, ch[0], residual, dropout)
        self.down = nn.ModuleList(_DoubleConv(ch[i], ch[i + 1], residual, dropout) for i in range(depth))
        # up[i] brings level i+1 to level i.
        if bilinear:
            self.up = nn.ModuleList(
                nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                              nn.Conv2d(ch[i + 1], ch[i], 1)) for i in range(depth))
        else:
            self.up = nn.ModuleList(nn.ConvTranspose2d(ch[i + 1], ch[i], 2, stride=2) for i in range(depth))
        self.dec = nn.ModuleList(_DoubleConv(2 * ch[i], ch[i], residual, dropout) for i in range(depth))
        self.head = nn.Conv2d(ch[0], out_channels, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = prepare_input(self, x, mask)
        skips = [self.inc(x)]
        for down in self.down:
            skips.append(down(F.max_pool2d(skips[-1], 2)))
        f = skips.pop()
        for i in reversed(range(self.depth)):
            f = self.up[i](f)
            f = self.dec[i](torch.cat([skips[i], f.to(skips[i].dtype)], 1))
        return self.head(f)
