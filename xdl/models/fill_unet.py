"""FillUNet: a harmonic first guess plus a UNet-learned correction inside the gaps."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .context import SIGMA_FLOOR, ContextEncoder, check_info, factor_from_raw, sigma_from_raw
from .harmonic import harmonic_fill
from .kriging import SILL_BELOW, Kriged, interpolation_variance, krige, own_interpolation, spatial_std, with_own_interpolation
from .registry import MAX_IO_CHANNELS, check_int, check_levels, register
from .regression import MIN_SUPPORT, absent_fields, local_regression, presence_regression, unfitted_fields
from .unet import UNet

__all__ = ["FillUNet"]

MAX_ITERATIONS = 10_000  # harmonic / biharmonic relaxation steps per level (defaults 8 and 10)
MAX_PATCH = 16
MAX_SIZE_MULTIPLE = 4096
# The context first guess: "local" (one window of 7 x 7 cells of 16 pixels, else the tile's fit, on
# the context completed by a coarse interpolation); "presence" (a 25 x 25-cell window before the
# tile's deep inside large gaps, and where no context field is present, the target's own
# interpolation moved by the regression around it instead: see presence_regression).
REGRESSIONS = ("local", "presence")
# The UNet's correction and sigma in units of: "none" the field's standard deviation; "fit" the
# local residual standard deviation of the context regression used at the pixel (1 where none
# is): where another field predicts the target almost exactly, the correction cannot spoil it;
# "kriged" the standard error of a first guess whose regression residual is kriged into the gaps
# (xdl.models.kriging; the sigma head then gives a factor on that standard error, 1 untrained).
CORRECTION_SCALES = ("none", "fit", "kriged")
FIT_VARIANCE_FLOOR = 1e-6  # standardised units: scale >= 1e-3
# With correction_scale="fit", sigma is also capped at this many standard deviations of the field:
# an error bar wider than the field's own spread says nothing (a few such sigmas, 1000x the error,
# made the RMS of sigma meaningless on a held-out scene).
SIGMA_CAP = 4.0


@register("fill-unet")
class FillUNet(nn.Module):
    """Gap filler: harmonic interpolation of the gaps, corrected by a UNet that sees it and the mask.

    ``forward(x, mask)`` returns ``x`` unchanged where ``mask`` is 1 and ``fill + correction`` in
    the gaps, where ``fill`` is :func:`~xdl.models.harmonic.harmonic_fill` (which closes gaps of any
    size; ``iterations`` harmonic and ``biharmonic_iterations`` biharmonic relaxation steps per
    level, the latter making joins across thin gaps cubic rather than linear: on held-out scenes
    10 of them took the scan-line RMSE of the trained model from 1.09-1.21 to 1.04-1.07 x the best
    classical baseline) and the correction comes from a plain UNet (``depth``, ``base_channels``,
    ``max_channels``, ``residual`` as in :class:`~xdl.models.unet.UNet`) whose input is the filled
    field and the mask. The correction head starts at zero, so an untrained FillUNet is exactly the
    harmonic fill and training can only learn what interpolation misses.

    ``patch`` folds each ``patch x patch`` block of pixels into channels before the UNet and
    unfolds its output (pixel unshuffle / shuffle): the UNet then runs at 1/patch resolution,
    ``patch**2`` times cheaper, while still giving every pixel its own correction. The defaults
    (patch 4, 3 levels, 32-128 channels: the bundled ``fill-default``) run at 13-17 Mpix/s on two
    CPU cores.

    ``context_features`` > 0 makes it a context model, called ``forward(x, mask, info)`` with the
    targets first and any number of context fields after them (:mod:`xdl.models.context`):
    each target then also gets a local regression on the (harmonically completed) context
    (:func:`~xdl.models.regression.local_regression`) as its first guess, and the UNet sees, beside
    the harmonic fill and the mask, the regression's departure from it, the fit's residual
    variance and the context features pooled over the fields. ``regression="presence"`` makes that
    regression reach 25 cells deep into large gaps and keeps it off pixels where no context field
    is present (there: the target's own fill, joined to the regression around it);
    ``correction_scale="fit"`` expresses the UNet's correction and sigma in units of the
    regression's local residual standard deviation, so a context that predicts the target almost
    exactly (the next hour of a slow field) cannot be spoilt by it. ``correction_scale="kriged"``
    instead kriges the regression's residual into the gaps (:func:`~xdl.models.kriging.krige`:
    ``2 rho(d) / (1 + rho(2d))`` of its interpolation (harmonic, or a thin plate for a smooth
    residual), ``rho`` the residual's
    autocorrelation measured on the tile, ``d`` the distance to data) and expresses the correction
    and sigma in units of that first guess's kriging standard error; its sigma head gives a bounded
    factor on that error (1 when untrained). Without context fields the error is
    :func:`~xdl.models.kriging.spatial_std` (half the field's structure function at the distance
    to data, times its local roughness); without a correction either, the fill and its error are
    :func:`~xdl.models.kriging.own_interpolation`'s (the harmonic fill or, for a smooth field, a
    thin plate). ``sigma=True`` adds a per-pixel standard deviation head: the output
    is then the means followed by the sigmas (normalised units), trained with a Gaussian
    likelihood.

    Example:
        >>> net = FillUNet(in_channels=1, depth=2, base_channels=8).eval()
        >>> x = torch.randn(2, 1, 32, 48); m = (torch.rand_like(x) > 0.3).float()
        >>> out = net(x * m, m)
        >>> bool(torch.equal(out[m > 0], x[m > 0]))
        True
    """

    mode = "spatial"
    takes_mask = True
    fills_gaps = True

    def __init__(self, in_channels=1, out_channels=None, depth=3, base_channels=32, max_channels=128,
                 residual=False, iterations=8, patch=4, biharmonic_iterations=10, context_features=0,
                 sigma=False, regression="local", correction_scale="none", correction=True):
        super().__init__()
        # Bounds first, before anything is allocated (the config may come from a hostile file):
        # the iterations are per tile and level, unbounded they would hang inference.
        in_channels = check_int("in_channels", in_channels, 1, MAX_IO_CHANNELS)
        iterations = check_int("iterations", iterations, 0, MAX_ITERATIONS)
        biharmonic_iterations = check_int("biharmonic_iterations", biharmonic_iterations, 0, MAX_ITERATIONS)
        patch = check_int("patch", patch, 1, MAX_PATCH)
        depth, base_channels, max_channels = check_levels(depth, base_channels, max_channels)
        context_features = check_int("context_features", context_features, 0, 512)
        if regression not in REGRESSIONS:
            raise ValueError(f"regression must be one of {', '.join(REGRESSIONS)}, got {regression!r}")
        if correction_scale not in CORRECTION_SCALES or (correction_scale != "none" and regression != "presence"):
            raise ValueError(f"correction_scale must be one of {', '.join(CORRECTION_SCALES)} ('fit' and 'kriged' with "
                             f"regression='presence'), got {correction_scale!r}")
        if correction_scale == "kriged" and not context_features:
            raise ValueError("correction_scale='kriged' is for context models: give context_features > 0")
        if correction is not True and (correction is not False or correction_scale != "kriged"):
            raise ValueError(f"correction must be True or False (False: no learned correction, the kriged "
                             f"first guess and its standard error as they are; with correction_scale='kriged'), "
                             f"got {correction!r}")
        if in_channels * patch ** 2 > MAX_IO_CHANNELS:
            raise ValueError(f"in_channels * patch**2 = {in_channels * patch ** 2} folded channels, more than "
                             f"{MAX_IO_CHANNELS}; lower patch ({patch}) or in_channels ({in_channels})")
        if 2 ** depth * patch > MAX_SIZE_MULTIPLE:
            raise ValueError(f"depth {depth} and patch {patch} give a size multiple of {2 ** depth * patch} "
                             f"pixels (2**depth * patch), more than {MAX_SIZE_MULTIPLE}; lower either")
        out_channels = in_channels if out_channels is None else out_channels
        if out_channels != in_channels:
            raise ValueError(f"FillUNet fills its input variables: out_channels ({out_channels}) must "
                             f"equal in_channels ({in_channels})")
        self.config = dict(in_channels=in_channels, out_channels=out_channels, depth=depth,
                           base_channels=base_channels, max_channels=max_channels, residual=bool(residual),
                           iterations=int(iterations), patch=int(patch),
                           biharmonic_iterations=int(biharmonic_iterations))
        if context_features or sigma:  # absent from older cards: their models load as they were
            self.config.update(context_features=context_features, sigma=bool(sigma))
        if regression != "local":  # absent from older cards: "local" and "none", as they were trained
            self.config.update(regression=regression, correction_scale=correction_scale)
        if not correction:  # absent from older cards: they all have one
            self.config.update(correction=False)
        self.has_correction = correction
        # The kriged first guess alone takes -1 in the mask: a gap outside the domain, whose fill
        # is never read, and spends nothing on it (a GOES tile's off-Earth corner).
        self.takes_domain = correction_scale == "kriged" and not correction
        self.regression, self.correction_scale = regression, correction_scale
        self.in_channels = in_channels
        self.sigma = bool(sigma)
        self.out_channels = in_channels * (2 if self.sigma else 1)
        self.takes_context = context_features > 0
        if int(patch) < 1:
            raise ValueError(f"patch must be >= 1, got {patch}")
        self.depth, self.iterations, self.patch = depth, int(iterations), int(patch)
        self.biharmonic_iterations = int(biharmonic_iterations)
        folded = in_channels * self.patch ** 2
        out = folded * (2 if self.sigma else 1)
        self.size_multiple = 2 ** depth * self.patch  # the UNet's levels on patches (kept without one)
        if correction and self.takes_context:
            self.context = ContextEncoder(self.patch ** 2, context_features)
            # harmonic fill and mask; per target: regression - fill, (regression + interpolated
            # residual) - fill, log residual variance; the pooled context features
            cin = 4 * folded + in_channels + 2 * context_features
            self.correction = UNet(cin, out, depth=depth, base_channels=base_channels,
                                   max_channels=max_channels, residual=residual, with_mask=False)
        elif correction:
            self.correction = UNet(folded, out, depth=depth, base_channels=base_channels,
                                   max_channels=max_channels, residual=residual, with_mask=True)
        if correction:
            nn.init.zeros_(self.correction.head.weight)
            nn.init.zeros_(self.correction.head.bias)
        # Context for the correction net (one coarsest-level pixel, as for the UNet); the harmonic
        # fill itself reaches across the whole tile. Twice that scored the same on held-out scenes.
        # A context model's local regression reads about 56 pixels around each cell: give it that.
        self.halo = self.size_multiple * (2 if self.takes_context else 1)
        # Big tiles: less context and padding per output pixel (a 1500 x 2500 scene is 2 tiles of
        # 1568 x 1344 rather than 6 of 832 x 928), and the net is light enough for them.
        self.min_tile = 1536
        # Only the correction runs in bf16 under autocast (harmonic_fill stays fp32): on held-out
        # scenes its RMSE moved by < 0.1%, while a CPU with native bf16 runs it 1.5x faster.
        self.cpu_bf16 = bool(correction)
        # Without the correction net: thousands of small ops a tile, which a team of threads runs
        # no faster than one thread (each op waits at its barrier), so one thread a call, a tile
        # per dask thread at once (benchmarks/RESULTS.md, session 33).
        self.cpu_threads = None if correction else 1

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, info=None) -> torch.Tensor:
        n = self.in_channels
        if mask is None:
            mask = torch.ones_like(x)
        mask = mask.to(x.dtype)
        if mask.shape[1] != x.shape[1]:
            mask = mask.expand_as(x)
        wanted = None
        if self.takes_domain and bool((mask[:, :n] < -0.5).any()):  # gaps outside the domain: not read
            wanted = mask[:, :n] > -0.5
            mask = mask.clamp(min=0.0)
        if not self.takes_context and x.shape[1] != n:
            raise ValueError(f"FillUNet(in_channels={n}) takes no context fields; got {x.shape[1]} channels")
        xt, mt = x[:, :n], mask[:, :n]
        # The target's own fill: the first guess, and the UNet's input. A kriged model without a
        # correction never needs it whole: with context it fills from the regression, without it
        # computes the harmonic fill only for the planes that do not take a thin plate.
        own_fill = not (self.correction_scale == "kriged" and not self.has_correction and self.takes_context)
        first_guess = harmonic_fill(xt, mt, self.iterations, self.biharmonic_iterations) if own_fill else None
        base, scale, extra = first_guess, None, []
        if self.takes_context:
            base, extra, scale = self._context_inputs(x[:, n:], mask[:, n:], info, xt, mt, first_guess, wanted)
        if not self.has_correction:  # the kriged first guess and its standard error as they are
            mean = torch.where(mt > 0.5, xt.float(), base).to(x.dtype)
            if not self.sigma:
                return mean
            scaled = scale is not None and self.correction_scale != "none"
            sigma = torch.clamp(scale, SIGMA_FLOOR, SIGMA_CAP) if scaled else torch.ones_like(base)
            return torch.cat([mean, sigma.to(x.dtype)], 1)
        change, sigma = self._correction(first_guess.to(x.dtype), mt, extra)
        if scale is not None and self.correction_scale != "none":
            change = change * scale
            sigma = None if sigma is None else torch.clamp(sigma * scale, SIGMA_FLOOR, SIGMA_CAP)
        mean = torch.where(mt > 0.5, xt.float(), base + change).to(x.dtype)
        if sigma is None:
            return mean
        return torch.cat([mean, sigma.to(x.dtype)], 1)

    def _correction(self, first_guess, mt, extra):
        """The UNet's correction (N, n, H, W) and sigma (a factor with correction_scale="kriged"),
        from the folded first guess, mask and context inputs."""
        n, p = self.in_channels, self.patch
        folded = [F.pixel_unshuffle(first_guess, p), F.pixel_unshuffle(mt, p)]
        if self.takes_context:
            folded = [torch.cat(folded + extra, 1)]
        if first_guess.device.type == "cpu":  # oneDNN's convolutions run 20-30% faster on channels-last input
            folded = [t.contiguous(memory_format=torch.channels_last) for t in folded]
        correction = F.pixel_shuffle(self.correction(*folded).float(), p)
        change, raw = correction[:, :n], (correction[:, n:] if self.sigma else None)
        if raw is None:
            return change, None
        return change, (factor_from_raw(raw) if self.correction_scale == "kriged" else sigma_from_raw(raw))

    def _context_inputs(self, xc, mc, info, xt, mt, first_guess, wanted=None):
        """The context first guess per target and the UNet's extra inputs (all folded by the patch).
        ``wanted``: None, or (N, n, H, W) bool, the gaps whose fill is read (the kriged first guess
        skips the others)."""
        p, n = self.patch, self.in_channels
        k = xc.shape[1]
        info = check_info(info, k, xc.device, torch.float32)
        if k == 0:
            if self.correction_scale == "kriged" and not self.has_correction:  # harmonic or thin plate
                # Every gap, outside the domain too: the choice between its interpolants was
                # measured so (counting only the wanted gaps made a GOES tile take the thin plate
                # for 1% less error at 0.3 s more).
                # first_guess is None here (own_fill): the harmonic fill is made for the samples that take it.
                own = own_interpolation(xt, mt, iterations=(self.iterations, self.biharmonic_iterations))
                return own.value, [], torch.sqrt(own.std ** 2 + FIT_VARIANCE_FLOOR)
            scale = torch.sqrt(spatial_std(xt, mt) ** 2 + FIT_VARIANCE_FLOOR) if self.correction_scale == "kriged" else None
            if not self.has_correction:
                return first_guess, [], scale
            zeros = first_guess.new_zeros
            h, w = first_guess.shape[-2] // p, first_guess.shape[-1] // p
            extra = [zeros((xt.shape[0], 2 * n * p * p, h, w)), zeros((xt.shape[0], n, h, w)),
                     zeros((xt.shape[0], 2 * self.context.features, h, w))]
            return first_guess, extra, scale
        # Context fields complete (most have no gap: then as they are) so the regression exists
        # everywhere. A kriged model fills their gaps at full resolution: where the day before is
        # missing, the fit on its interpolation beat a fit on the day after alone, and the finer
        # fill cut the training time series' errors by 3-26% (benchmarks/RESULTS.md, 2026-12-06).
        # Learned corrections were trained on the coarse fill, so they keep it.
        context_complete = bool(mc.amin() > 0.5)  # one pass, no bool copy of the masks
        if context_complete:
            complete = xc
        elif self.correction_scale == "kriged" and not self.has_correction:
            complete = _complete_for_fit(xc, mc)
        else:
            complete = _smooth_fill(xc.float(), mc, p)
        # A field missing from a whole sample (a neighbour beyond the series' end) enters the
        # regression as a zero column (coefficient 0) instead of leaving it no pixel to fit on.
        absent = None if context_complete else absent_fields(mc)
        fit_mask = mc if absent is None or not bool(absent.any()) else torch.where(absent, torch.ones_like(mc), mc)
        estimates, spreads, variances, kriged = [], [], [], []
        for i in range(n):
            target, known = xt[:, i:i + 1], mt[:, i:i + 1]
            if self.regression == "presence":
                prior = (_neighbour_prior(complete, mc, info, i, n, known, target) if self.correction_scale == "kriged"
                         else None)
                present, fit_mask_i = mc, fit_mask
                if self.correction_scale == "kriged" and not context_complete:
                    unfitted = unfitted_fields(known, mc)  # no support to fit on: as absent
                    if bool(unfitted.any()):
                        present, fit_mask_i = (torch.where(unfitted, torch.zeros_like(mc), mc),
                                               torch.where(unfitted, torch.ones_like(mc), fit_mask))
                fit = presence_regression(target, known, complete, fit_mask_i, present, prior=prior)
                residual = fit.residual
                if self.correction_scale == "kriged":
                    wanted_i = None if wanted is None else wanted[:, i:i + 1]
                    kriged.append(with_own_interpolation(
                        krige(target, known, fit.estimate, fit.variance,
                              _interpolated_context_variance(fit, xc, present, known), wanted_i, fit.exact),
                        target, known, torch.isfinite(fit.estimate),
                        (self.iterations, self.biharmonic_iterations), wanted_i))
                    kriged[-1] = self._alone_as_without_context(kriged[-1], target, known, complete, present,
                                                                neighbours=bool((info[:, 1] > 0.5).any()))
                    if not self.has_correction:  # the kriged fill is the result: no regression input to build
                        continue
                    estimate = torch.where(torch.isfinite(fit.estimate), fit.estimate, kriged[-1].value)
                else:
                    estimate = _where_unfitted(fit.estimate, known, first_guess[:, i:i + 1])
                    # Where some context value is interpolated the fit's residual says little: the
                    # correction keeps the field's own scale there.
                    variances.append(torch.where(fit.exact, fit.variance, torch.ones_like(fit.variance)))
            else:
                estimate, residual, _ = local_regression(target, known, complete, fit_mask)
            estimates.append(estimate)
            if self.has_correction:  # per regression cell (16 pixels, four patches): to the patch grid, nearest
                spreads.append(F.interpolate(torch.log(residual.clamp(min=0) + 1e-4),
                                             size=[n // p for n in xt.shape[-2:]], mode="nearest"))
        estimate = torch.cat(estimates, 1) if estimates else None
        if kriged:  # the misfit kriged into the gaps (xdl.models.kriging), in units of its standard error
            corrected = _channels([k.value for k in kriged])
            scale = torch.sqrt(_channels([k.std for k in kriged]) ** 2 + FIT_VARIANCE_FLOOR)
        else:
            # The regression's misfit at the valid pixels, interpolated into the gaps (4x coarser)
            # and added back: the first guess (the target where valid); the UNet sees both versions.
            corrected = estimate + _smooth_fill(torch.where(mt > 0.5, xt.float() - estimate, 0.0), mt, p)
            scale = torch.sqrt(torch.cat(variances, 1).clamp(min=0) + FIT_VARIANCE_FLOOR) if variances else None
        if not self.has_correction:
            return corrected, [], scale
        pooled = self.context(F.pixel_unshuffle(complete.to(xt.dtype), p), F.pixel_unshuffle(mc, p), info)
        extra = [F.pixel_unshuffle((estimate - first_guess).to(xt.dtype), p),
                 F.pixel_unshuffle((corrected - first_guess).to(xt.dtype), p),
                 torch.cat(spreads, 1).to(xt.dtype), pooled]
        return corrected, extra, scale

    def _alone_as_without_context(self, kriged, target, known, context, present, neighbours):
        """``kriged`` with the samples where no context field has a value to fit on (``present``
        (N, K, H, W), unfitted fields cleared) replaced by the fill and error without context: an
        all-NaN context field, said to add nothing, moved fills by 67% of their error (probe). So
        too, without neighbouring steps (whose prior serves such a step), where the target has no
        more distinct known points (its value and the ``context`` values present there) than the
        fit has coefficients: in a small field's mirrored tile one pixel
        counted 12 times, and the exact fit through it had a sigma of 1e-3 for errors of 4 (probe)."""
        alone = absent_fields(present).flatten(1).all(1)
        if not neighbours:
            # One value more than the fit's coefficients (the context fields and an intercept): else
            # it passes through every value, with no residual to tell its error by.
            alone = alone | _few_distinct(target, known, present.shape[1] + 2, context, present)
        if not bool(alone.any()):
            return kriged
        own = own_interpolation(target[alone], known[alone], iterations=(self.iterations, self.biharmonic_iterations))
        value, std = kriged.value.float().clone(), kriged.std.float().clone()
        value[alone], std[alone] = own.value, own.std
        return Kriged(value, std)


def _few_distinct(target, known, needed: int, context, present) -> torch.Tensor:
    """(N,) bool: the samples with fewer than ``needed`` distinct points (the ``target`` (N, 1, H, W)
    value and the ``context`` (N, K, H, W) values where ``present``) at the target's ``known``
    pixels: a tile's mirrored halo repeats a point, never makes a new one. Counted only in planes
    with fewer known pixels than :data:`SILL_BELOW`."""
    known = known > 0.5
    count = torch.count_nonzero(known.flatten(1), dim=1)
    few = count < needed
    for i in torch.nonzero((count >= needed) & (count < SILL_BELOW)).flatten().tolist():
        here = known[i, 0]
        points = torch.cat([target[i][:, here], torch.where(present[i] > 0.5, context[i], 0.0)[:, here]], 0)
        few[i] = torch.unique(points.float(), dim=1).shape[1] < needed
    return few


def _channels(planes: list[torch.Tensor]) -> torch.Tensor:
    """``planes`` (N, 1, H, W each) along the channel axis; one plane as it is (no copy)."""
    return planes[0] if len(planes) == 1 else torch.cat(planes, 1)


def _neighbour_prior(complete, mc, info, i, n_targets, known, target=None):
    """For a tile with too few pixels of target ``i`` to fit a regression on (a step seen in a
    handful of pixels): "the mean of its neighbouring steps" (``info`` rows ``[offset, 1]``, the
    targets' in order, each target's as many), as coefficients (N, K) over the context fields
    present in the sample (NaN where it has none), and as the floor of its error variance (N,) the
    spread of those steps (half their variance across steps, averaged over the tile; one step
    alone: its variance over the tile). Read in units the target's own (the card's ``"neighbours": "target"``
    standardisation); None without neighbouring steps, or when every sample has pixels enough
    (``known``, the target's) for a fit (then no pass over the tile here)."""
    rows = torch.nonzero(info[:, 1] > 0.5).squeeze(1)
    if rows.numel() == 0 or rows.numel() % n_targets:
        return None
    needed = MIN_SUPPORT * (complete.shape[1] + 1)
    # Pixels that are copies of fewer distinct points (``target``'s value and the context values at
    # its known pixels) count as those points: in a small field's mirrored tile one pixel counted
    # about 24 times, fitted exactly, and filled its step with its own value (RMSE 1.4-2.6 K, sigma
    # 0.001 K, where the step seen in no pixel erred 0.08 K; probe).
    force = None if target is None else _few_distinct(target, known, needed, complete, mc)
    few = (known > 0.5).flatten(1).sum(-1) < needed
    if not bool((few if force is None else few | force).any()):
        return None
    per = rows.numel() // n_targets
    mine = rows[i * per:(i + 1) * per]
    n, k = complete.shape[:2]
    present = ~absent_fields(mc)[:, mine, 0, 0]  # (N, per)
    steps = complete[:, mine].float()
    count = present.sum(-1)  # (N,)
    weights = torch.zeros(n, k, dtype=torch.float32, device=complete.device)
    weights[:, mine] = present.float() / count.clamp(min=1)[:, None]
    weights = torch.where((count > 0)[:, None], weights, torch.full_like(weights, float("nan")))
    used = present[:, :, None, None].float()
    mean = (steps * used).sum(1, keepdim=True) / count.clamp(min=1)[:, None, None, None]
    across = (((steps - mean) ** 2) * used).sum(1) / (count - 1).clamp(min=1)[:, None, None]
    alone = steps.flatten(2).var(-1)  # (N, per): one step's variance over the tile
    alone = (alone * present).sum(-1) / count.clamp(min=1)
    # Half their variance across steps: for t-1 and t+1, var(c_+1 - c_-1) / 4, the error of their
    # midpoint on a random walk.
    variance = torch.where(count > 1, across.flatten(1).mean(-1) / 2, alone)
    return weights, torch.nan_to_num(variance, nan=1.0), force


def _interpolated_context_variance(fit, xc, mc, known):
    """Where the target is a gap and its estimate rests on some interpolated context values (the
    day before missing too): the error those interpolations bring into the regression,
    ``sum_k beta_k**2 * var_k``, with ``var_k`` the interpolation error variance of context field
    ``k`` (:func:`~xdl.models.kriging.interpolation_variance`, the thin-plate form: the completion
    is biharmonic-refined). None when there is no such pixel. On the full-size training time
    series these pixels had 45-83% of errors within 1 sigma where the others had 63-89%; with it,
    65-89% against 63-89% (benchmarks/RESULTS.md, 2026-12-06)."""
    if bool(fit.exact.all()):  # every context field present everywhere (the common case): no pass below
        return None
    gaps = (known < 0.5) & ~fit.exact & torch.isfinite(fit.estimate)
    if not bool(gaps.any()):
        return None
    where = gaps & (mc < 0.5) & ~absent_fields(mc)
    return (fit.coefficients ** 2 * interpolation_variance(xc.float(), mc, where, thin_plate=True)).sum(1, keepdim=True)


def _where_unfitted(estimate, known, first_guess):
    """Where no context field is present (``estimate`` NaN): the target's own interpolation, moved
    by the regression's departure from it at the fitted pixels around, interpolated (harmonic,
    biharmonic-refined): a stretch of scan line missing in both fields then joins the regression
    on either side rather than the field's own interpolation."""
    fitted = torch.isfinite(estimate)
    if bool(fitted.all()):
        return estimate
    departure = torch.where(known > 0.5, 0.0, torch.where(fitted, estimate - first_guess.float(), 0.0))
    moved = first_guess.float() + harmonic_fill(departure, ((known > 0.5) | fitted).float(), 8, 10)
    return torch.where(fitted, estimate, moved)


def _complete_for_fit(xc: torch.Tensor, mc: torch.Tensor) -> torch.Tensor:
    """The context fields with their gaps interpolated (harmonic, biharmonic-refined) where the
    regression reads them: at pixels where another field is present. A field's value where no field
    is present is never used (no estimate there), nor where the fit's weight is 0, so a field whose
    gaps lie only there (GOES bands missing off the Earth together) is left as it is (0 in its gaps):
    the same estimates, without a full-tile fill per field."""
    here = mc > 0.5
    out = torch.where(here, xc.float(), 0.0)
    # A field is read in its gaps only where another is present: never with one field, nor where
    # the fields share their gaps (the test in two reductions over the fields, before the per-field
    # one; a NaN in a mask makes the largest value NaN, and such masks take the per-field test).
    if mc.shape[1] < 2:
        return out
    top = mc.amax(1)
    if not bool(torch.isnan(top).any()) and not bool(((top > 0.5) & (mc.amin(1) <= 0.5)).any()):
        return out
    some = here.any(1, keepdim=True)
    needed = ((~here & some).flatten(2).any(-1) & ~absent_fields(mc).flatten(1)).any(0)  # (K,): read in a gap
    if bool(needed.any()):
        k = torch.nonzero(needed).squeeze(1)
        out[:, k] = harmonic_fill(xc[:, k].float(), mc[:, k], 8, 10)
    return out


def _smooth_fill(values: torch.Tensor, mask: torch.Tensor, factor: int) -> torch.Tensor:
    """``values`` where ``mask`` is 1, and in the gaps a harmonic fill computed ``factor`` times
    coarser (a smooth field such as a regression's misfit: 1/factor**2 of the full-size cost)."""
    m = mask.float()
    weight = F.avg_pool2d(m, factor, ceil_mode=True)
    coarse = F.avg_pool2d(values * m, factor, ceil_mode=True) / weight.clamp(min=1e-12)
    known = (weight > 0).float()
    filled = harmonic_fill(torch.where(known > 0, coarse, 0.0), known, 8, 0)
    up = F.interpolate(filled, size=values.shape[-2:], mode="bilinear", align_corners=False)
    return torch.where(m > 0.5, values, up)
