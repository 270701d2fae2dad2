"""pix2pix (Isola et al. 2017): UNet generator and PatchGAN discriminator for image-to-image mappings."""

from __future__ import annotations

import torch
import torch.nn as nn

from .registry import MAX_CHANNELS, MAX_DEPTH, MAX_IO_CHANNELS, check_float, check_int, register
from .unet import prepare_input

__all__ = ["Pix2PixGenerator", "PatchDiscriminator", "Pix2Pix", "receptive_field"]


def receptive_field(n_layers: int = 3) -> int:
    """Receptive field (pixels) of a PatchDiscriminator: ``n_layers`` 4x4 stride-2 convs, then
    two 4x4 stride-1 convs.

    >>> receptive_field(3), receptive_field(1)
    (70, 16)
    """
    if n_layers < 1:
        raise ValueError("n_layers must be >= 1")
    jumps = [2 ** i for i in range(n_layers)] + [2 ** n_layers] * 2
    return 1 + sum(3 * j for j in jumps)


class Pix2PixGenerator(nn.Module):
    """pix2pix UNet generator: 4x4 stride-2 convs, LeakyReLU(0.2) down, ReLU up, BatchNorm, dropout.

    ``depth`` stride-2 levels (8 for the paper's 256x256 ``unet_256``), channels
    ``ngf * min(2**i, 8)``; the innermost encoder layer has no BatchNorm; dropout 0.5 in the first
    three decoder blocks (``dropout`` sets the rate, 0 disables); ``out_activation`` "tanh" (paper)
    or None (unbounded physical fields). ``with_mask`` concatenates the mask to the input.

    Example:
        >>> g = Pix2PixGenerator(3, 1, depth=3, ngf=8).eval()
        >>> tuple(g(torch.randn(1, 3, 16, 24)).shape)
        (1, 1, 16, 24)
    """

    mode = "spatial"
    fills_gaps = False

    def __init__(self, in_channels=1, out_channels=1, depth=8, ngf=64, with_mask=False, dropout=0.5,
                 out_activation="tanh"):
        super().__init__()
        # Bounds first, before anything is allocated (the config may come from a hostile file).
        in_channels = check_int("in_channels", in_channels, 1, MAX_IO_CHANNELS)
        out_channels = check_int("out_channels", out_channels, 1, MAX_IO_CHANNELS)
        depth = check_int("depth", depth, 2, MAX_DEPTH)
        ngf = check_int("ngf", ngf, 1, MAX_CHANNELS // 8)  # channels go up to 8 * ngf
        check_float("dropout", dropout, 0.0, 1.0)
        if out_activation not in (None, "tanh"):
            raise ValueError(f"out_activation must be 'tanh' or None, got {out_activation!r}")
        self.config = dict(in_channels=in_channels, out_channels=out_channels, depth=depth, ngf=ngf,
                           with_mask=bool(with_mask), dropout=float(dropout), out_activation=out_activation)
        self.in_channels, self.out_channels, self.depth = in_channels, out_channels, depth
        self.with_mask = self.takes_mask = bool(with_mask)
        self.size_multiple = 2 ** depth
        self.halo = 2 * self.size_multiple

        c = [ngf * min(2 ** i, 8) for i in range(depth)]
        cin = in_channels * (2 if with_mask else 1)
        down = [nn.Sequential(nn.Conv2d(cin, c[0], 4, 2, 1))]
        for i in range(1, depth):
            inner = i == depth - 1
            # Not in place: the block's input is also the skip tensor kept for the decoder.
            layers = [nn.LeakyReLU(0.2), nn.Conv2d(c[i - 1], c[i], 4, 2, 1, bias=inner)]
            if not inner:  # the 1x1 bottleneck of a 256 input cannot be batch-normalised per sample
                layers.append(nn.BatchNorm2d(c[i]))
            down.append(nn.Sequential(*layers))
        self.down = nn.ModuleList(down)
        # up[j] maps level j+1 to level j; the innermost takes no skip, the others take one.
        up = []
        for j in range(depth):
            cin_up = c[j] if j == depth - 1 else 2 * c[j]
            if j == 0:
                layers = [nn.ReLU(inplace=True), nn.ConvTranspose2d(cin_up, out_channels, 4, 2, 1)]
                if out_activation == "tanh":
                    layers.append(nn.Tanh())
            else:
                layers = [nn.ReLU(inplace=True), nn.ConvTranspose2d(cin_up, c[j - 1], 4, 2, 1, bias=False),
                          nn.BatchNorm2d(c[j - 1])]
                # The paper's decoder: CD512-CD1024-CD1024-C1024...: dropout in its first three blocks.
                if depth - 1 - j < 3 and dropout > 0:
                    layers.append(nn.Dropout(dropout))
            up.append(nn.Sequential(*layers))
        self.up = nn.ModuleList(up)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = prepare_input(self, x, mask)
        skips = []
        f = x
        for d in self.down:
            f = d(f)
            skips.append(f)
        f = self.up[-1](skips[-1])
        for j in reversed(range(self.depth - 1)):
            f = self.up[j](torch.cat([f, skips[j].to(f.dtype)], 1))
        return f


class PatchDiscriminator(nn.Module):
    """PatchGAN discriminator: one real/fake logit per patch (70x70 for ``n_layers=3``).

    It sees ``concat(input, output)`` along channels, so ``in_channels`` is their sum.

    Example:
        >>> d = PatchDiscriminator(4, ndf=8)
        >>> tuple(d(torch.randn(1, 4, 64, 64)).shape)
        (1, 1, 6, 6)
    """

    def __init__(self, in_channels, ndf=64, n_layers=3):
        super().__init__()
        in_channels = check_int("in_channels", in_channels, 1, 2 * MAX_IO_CHANNELS)
        ndf = check_int("ndf", ndf, 1, MAX_CHANNELS // 8)  # channels go up to 8 * ndf
        n_layers = check_int("n_layers", n_layers, 1, 8)
        self.n_layers = n_layers
        self.receptive_field = receptive_field(n_layers)
        layers = [nn.Conv2d(in_channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        c = ndf
        for i in range(1, n_layers + 1):
            nc = ndf * min(2 ** i, 8)
            stride = 2 if i < n_layers else 1
            layers += [nn.Conv2d(c, nc, 4, stride, 1, bias=False), nn.BatchNorm2d(nc),
                       nn.LeakyReLU(0.2, inplace=True)]
            c = nc
        layers.append(nn.Conv2d(c, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@register("pix2pix")
class Pix2Pix(nn.Module):
    """pix2pix (Isola et al. 2017) conditional GAN: UNet generator + PatchGAN; forward is the generator's.

    Train with ``GAN + 100 * L1`` and Adam(2e-4, betas=(0.5, 0.999)); at inference only
    ``.generator`` runs, so the engine treats this like any spatial model.

    Example:
        >>> p = Pix2Pix(1, 1, depth=3, ngf=8, ndf=8).eval()
        >>> x = torch.randn(1, 1, 32, 32)
        >>> tuple(p(x).shape), tuple(p.discriminator(torch.cat([x, p(x)], 1)).shape)
        ((1, 1, 32, 32), (1, 1, 2, 2))
    """

    mode = "spatial"
    fills_gaps = False

    def __init__(self, in_channels=1, out_channels=1, depth=8, ngf=64, ndf=64, n_layers=3, with_mask=False,
                 dropout=0.5, out_activation="tanh"):
        super().__init__()
        # Bounds first, before anything is allocated (the config may come from a hostile file).
        in_channels = check_int("in_channels", in_channels, 1, MAX_IO_CHANNELS)
        out_channels = check_int("out_channels", out_channels, 1, MAX_IO_CHANNELS)
        depth = check_int("depth", depth, 2, MAX_DEPTH)
        ngf = check_int("ngf", ngf, 1, MAX_CHANNELS // 8)
        ndf = check_int("ndf", ndf, 1, MAX_CHANNELS // 8)
        n_layers = check_int("n_layers", n_layers, 1, 8)
        dropout = check_float("dropout", dropout, 0.0, 1.0)
        self.config = dict(in_channels=in_channels, out_channels=out_channels, depth=depth, ngf=ngf, ndf=ndf,
                           n_layers=n_layers, with_mask=bool(with_mask), dropout=float(dropout),
                           out_activation=out_activation)
        self.generator = Pix2PixGenerator(in_channels, out_channels, depth, ngf, with_mask, dropout,
                                          out_activation)
        self.discriminator = PatchDiscriminator(in_channels + out_channels, ndf, n_layers)
        g = self.generator
        self.in_channels, self.out_channels = in_channels, out_channels
        self.takes_mask, self.size_multiple, self.halo = g.takes_mask, g.size_multiple, g.halo

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.generator(x, mask)
