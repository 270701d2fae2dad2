"""Training losses: masked L1, the Liu et al. (2018) gap-filling loss and the pix2pix GAN terms."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import InputError

GAP_WEIGHTS = {"valid": 1.0, "hole": 6.0, "tv": 0.1, "hole_mse": 0.0}
GAN_WEIGHTS = {"gan": 1.0, "l1": 100.0}
# Added to GAP_WEIGHTS for a model with a sigma head: the NLL's weight and its beta (see gaussian_nll).
SIGMA_WEIGHTS = {"nll": 1.0, "nll_beta": 1.0}


def masked_l1(out: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean ``|out - target|`` over the pixels where ``valid``; NaNs in ``target`` elsewhere are ignored.

    >>> masked_l1(torch.tensor([1.0, 2.0]), torch.tensor([0.0, float("nan")]), torch.tensor([True, False]))
    tensor(1.)
    """
    valid = valid.expand_as(out)
    # where() before the difference: a NaN target would poison the gradient even where it is unused.
    target = torch.where(valid, target, torch.zeros((), dtype=target.dtype, device=target.device))
    w = valid.to(out.dtype)
    return ((out - target).abs() * w).sum() / w.sum().clamp(min=1.0)


def gap_loss(out, truth, valid, mask, weights=None) -> dict:
    """Liu et al. (2018) inpainting loss, restricted to originally valid pixels.

    ``out``/``truth`` ``(B, C, H, W)``; ``valid``: originally valid (finite) pixels; ``mask``: what the
    model saw (``valid & kept``). Terms: ``valid`` = mean L1 over seen pixels, ``hole`` = mean L1 over
    pixels hidden by the gap generator whose truth is known, ``tv`` = total variation of the composite
    ``mask*truth + (1-mask)*out`` over neighbour pairs that touch the hole (both pixels originally
    valid); ``hole_mse`` = mean squared error over the hole pixels (weight 0 by default: L1 aims at
    the median, squared error at the mean, which an RMSE score rewards); ``loss`` = the weighted
    sum. Originally invalid pixels get exactly zero gradient.

    >>> o = torch.zeros(1, 1, 4, 4); t = torch.ones(1, 1, 4, 4); v = torch.ones_like(t, dtype=torch.bool)
    >>> m = v.clone(); m[..., :2, :] = False
    >>> {k: round(float(x), 3) for k, x in gap_loss(o, t, v, m).items()}
    {'valid': 1.0, 'hole': 1.0, 'tv': 0.286, 'hole_mse': 1.0, 'loss': 7.029}
    """
    w = {**GAP_WEIGHTS, **(weights or {})}
    valid = valid.expand_as(out)
    seen = mask.expand_as(out) & valid
    hole = valid & ~seen
    zero = torch.zeros((), dtype=truth.dtype, device=truth.device)
    truth = torch.where(valid, truth, zero)
    err = (out - truth).abs()
    f = lambda b: b.to(out.dtype)  # noqa: E731
    l_valid = (err * f(seen)).sum() / f(seen).sum().clamp(min=1.0)
    l_hole = (err * f(hole)).sum() / f(hole).sum().clamp(min=1.0)
    l_hole_mse = (err.square() * f(hole)).sum() / f(hole).sum().clamp(min=1.0)
    comp = torch.where(seen, truth.to(out.dtype), out)
    tv_sum, n_pairs = out.new_zeros(()), out.new_zeros(())
    for a, b in (((Ellipsis, slice(None), slice(1, None)), (Ellipsis, slice(None), slice(None, -1))),
                 ((Ellipsis, slice(1, None), slice(None)), (Ellipsis, slice(None, -1), slice(None)))):
        pair = f((hole[a] | hole[b]) & valid[a] & valid[b])
        tv_sum = tv_sum + ((comp[a] - comp[b]).abs() * pair).sum()
        n_pairs = n_pairs + pair.sum()
    l_tv = tv_sum / n_pairs.clamp(min=1.0)
    total = w["valid"] * l_valid + w["hole"] * l_hole + w["tv"] * l_tv + w["hole_mse"] * l_hole_mse
    return {"valid": l_valid, "hole": l_hole, "tv": l_tv, "hole_mse": l_hole_mse, "loss": total}


def gaussian_nll(mean: torch.Tensor, sigma: torch.Tensor, truth: torch.Tensor, where: torch.Tensor,
                 beta: float = 0.0) -> torch.Tensor:
    """Gaussian negative log-likelihood (DINCAE's loss, Barth et al. 2020), up to a constant:
    mean of ``log(sigma) + (mean - truth)**2 / (2 sigma**2)`` over the pixels ``where`` is True.

    Pass a detached ``mean`` to train only the sigma head (the mean keeps its own loss).
    ``beta`` > 0 weights each pixel's term by ``sigma.detach() ** (2 beta)`` (beta-NLL, Seitzer et
    al. 2022): the same optimum (sigma**2 = the expected squared error), but the gradient on
    ``log sigma`` is ``sigma**2 - err**2`` (beta 1) instead of ``1 - err**2 / sigma**2``, which is
    huge while sigma is still far too small and, through the layers the sigma head shares with the
    mean, spoils the mean (a PConv-UNet's hidden-pixel L1 after 48 steps: 0.38 with beta 0, 0.17
    with beta 1, 0.19 without a sigma head).

    >>> m = torch.zeros(4); t = torch.tensor([1.0, -1.0, 1.0, -1.0]); w = torch.ones(4, dtype=torch.bool)
    >>> [round(float(gaussian_nll(m, torch.full((4,), s), t, w)), 4) for s in (0.5, 1.0, 2.0)]
    [1.3069, 0.5, 0.8181]
    >>> round(float(gaussian_nll(m, torch.full((4,), 0.5), t, w, beta=1.0)), 4)  # 1.3069 * 0.5**2
    0.3267
    """
    where = where.expand_as(mean)
    zero = torch.zeros((), dtype=truth.dtype, device=truth.device)
    truth = torch.where(where, truth, zero)  # a NaN truth elsewhere must not poison the gradient
    sigma = torch.where(where, sigma, torch.ones((), dtype=sigma.dtype, device=sigma.device))
    term = torch.log(sigma) + (mean - truth).square() / (2 * sigma.square())
    if beta:
        term = term * sigma.detach() ** (2 * float(beta))
    w = where.to(term.dtype)
    return (term * w).sum() / w.sum().clamp(min=1.0)


def discriminator_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """PatchGAN discriminator loss: real patches towards 1, fake ones towards 0 (logits, halved).

    >>> float(discriminator_loss(torch.zeros(2), torch.zeros(2)))  # log 2: no idea yet
    0.6931471824645996
    """
    return 0.5 * (F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real))
                  + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake)))


def generator_gan_loss(d_fake: torch.Tensor) -> torch.Tensor:
    """The generator's adversarial term: the discriminator should call its patches real."""
    return F.binary_cross_entropy_with_logits(d_fake, torch.ones_like(d_fake))


def resolve_weights(loss_weights, mode: str, gan: bool, sigma: bool = False) -> dict:
    """The loss weights of a run: the mode's defaults updated with ``loss_weights`` (floats);
    a gap filler with a sigma head (``sigma``) also has the Gaussian NLL's weight ``nll``.

    >>> resolve_weights({"hole": 3}, "gap", False)["hole"]
    3.0
    >>> resolve_weights(None, "gap", False, sigma=True)["nll"]
    1.0
    """
    weights = dict(GAN_WEIGHTS if gan else (GAP_WEIGHTS if mode == "gap" else {}))
    if sigma and mode == "gap":
        weights.update(SIGMA_WEIGHTS)
    if loss_weights:
        unknown = sorted(set(loss_weights) - set(weights))
        if unknown:
            raise InputError(f"loss_weights has unknown terms {unknown}; this mode uses {sorted(weights) or 'none'}.")
        weights.update({k: float(v) for k, v in loss_weights.items()})
    return weights
