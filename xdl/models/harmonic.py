"""Harmonic gap filling in torch: a cheap, exact-on-valid first guess for learned gap fillers.

Coarse to fine: the field and its valid mask are averaged down a pyramid until every coarse pixel
has data; from the coarsest level up, the gaps take the upsampled coarser solution and are relaxed
towards the mean of their four neighbours (Jacobi iterations of Laplace's equation) while valid
pixels stay fixed. The result is close to a membrane (harmonic) interpolation, like linear
interpolation between the gap's borders, at a cost linear in the number of pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["harmonic_fill"]


def _neighbour_mean(f: torch.Tensor) -> torch.Tensor:
    p = F.pad(f, (1, 1, 1, 1), mode="replicate")
    return 0.25 * (p[..., :-2, 1:-1] + p[..., 2:, 1:-1] + p[..., 1:-1, :-2] + p[..., 1:-1, 2:])


def harmonic_fill(x: torch.Tensor, mask: torch.Tensor, iterations: int = 8) -> torch.Tensor:
    """``x`` (N, C, H, W) with the pixels where ``mask`` is 0 filled; valid pixels returned as given.

    Runs in float32 whatever the autocast state (relaxation in bfloat16 would lose the field's
    detail). A sample with no valid pixel at all comes back as zeros.

    >>> x = torch.tensor([[[[1.0, 0.0, 0.0, 4.0]]]]); m = torch.tensor([[[[1.0, 0.0, 0.0, 1.0]]]])
    >>> harmonic_fill(x, m, iterations=200).round(decimals=3).tolist()
    [[[[1.0, 2.0, 3.0, 4.0]]]]
    """
    with torch.autocast(x.device.type, enabled=False):
        x = x.float()
        m = mask.float().expand_as(x)
        values, weights = [x * m], [m]
        while max(values[-1].shape[-2:]) > 1:
            v, w = values[-1], weights[-1]
            kernel = (min(2, v.shape[-2]), min(2, v.shape[-1]))
            w_down = F.avg_pool2d(w, kernel, ceil_mode=True)
            v_down = F.avg_pool2d(v * w, kernel, ceil_mode=True) / w_down.clamp_min(1e-12)
            values.append(torch.where(w_down > 0, v_down, 0.0))
            weights.append(w_down)
        mean = (x * m).sum((-2, -1), keepdim=True) / m.sum((-2, -1), keepdim=True).clamp_min(1e-12)
        f = mean.expand_as(values[-1])
        for level in range(len(values) - 1, -1, -1):
            v = values[level]
            # Coarse pixels with any data are fixed; at full resolution only fully valid ones.
            known = m > 0.5 if level == 0 else weights[level] > 0
            f = torch.where(known, v, F.interpolate(f, size=v.shape[-2:], mode="bilinear", align_corners=False))
            for _ in range(iterations):
                f = torch.where(known, v, _neighbour_mean(f))
        return f
