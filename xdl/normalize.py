"""Normalisation, written once: per-channel statistics from the model card (``global``) or from
each sample (``per_sample``: robust moments, outliers fenced), applied and undone by the same code
on numpy windows (training, :mod:`xdl.training.data`) and on dask blocks (:mod:`xdl.predict`).

:class:`Normalization` holds the statistics as arrays that broadcast against the data along its
channel axis and uses only operators and numpy ufuncs, which dask arrays take as they are.

Example:
    >>> import numpy as np, dask.array as da
    >>> card = {"kind": "global", "mean": {"t": 280.0}, "std": {"t": 10.0}}
    >>> n = Normalization.from_card(card, ["t"], ndim=3, n_spatial=2)
    >>> x = np.full((1, 2, 2), 290.0, np.float32)
    >>> n.apply(x)[0, 0].tolist(), n.apply(da.from_array(x)).compute()[0, 0].tolist()
    ([1.0, 1.0], [1.0, 1.0])
    >>> n.invert(n.apply(x))[0, 0, 0]
    np.float32(290.0)
"""

from __future__ import annotations

import dask.array as da
import numpy as np

from .errors import InputError

__all__ = ["Normalization", "channel_shape", "for_input", "for_output", "robust_moments", "sample_statistics",
           "stats_stride", "STATS_PIXELS", "QUANTILE_PIXELS", "STATS_QUANTILES", "CONTEXT_STATS_PIXELS"]


def channel_shape(ndim: int, n_spatial: int) -> list[int]:
    """The shape of per-channel statistics for an array ``(*batch, C, *spatial)``: -1 on the channel axis."""
    shape = [1] * ndim
    shape[ndim - n_spatial - 1] = -1
    return shape


class Normalization:
    """``x -> (clip(x, lo, hi) - mean) / std`` per channel, undone by ``y -> y * std + mean``.

    ``mean``, ``std`` and the optional outlier fences ``lo``/``hi`` are numpy or dask arrays that
    broadcast against the data (per channel, or per sample and channel); the data may be numpy or
    dask, and the result is of the same kind, computed with the same float32 operations."""

    def __init__(self, mean, std, lo=None, hi=None):
        self.mean, self.std, self.lo, self.hi = mean, std, lo, hi

    @classmethod
    def from_card(cls, norm: dict, names: list, ndim: int, n_spatial: int) -> "Normalization":
        """A card's ``global`` statistics for the channels ``names`` (0 and 1 for a name it lacks)."""
        shape = channel_shape(ndim, n_spatial)
        mean = np.array([norm["mean"].get(n, 0.0) for n in names], np.float32).reshape(shape)
        std = np.array([norm["std"].get(n, 1.0) for n in names], np.float32).reshape(shape)
        return cls(mean, std)

    def apply(self, x):
        # The model sees outliers at the fences (winsorised): a few 1e38 values in a field of
        # 280 K would otherwise enter as 1e37 sigmas and overflow its activations. Identity on
        # fields with nothing beyond the fences; NaN stays NaN.
        if self.lo is None:
            return (x - self.mean) / self.std
        arrays = (x, self.lo, self.hi, self.mean, self.std)
        if not any(isinstance(a, da.Array) for a in arrays):
            return _standardise(*arrays)
        # One task a block, one output array written in place: the same float32 operations as
        # four elementwise layers, without their three temporaries (a fifth of the cost of a
        # three-field GOES CONUS input).
        dtype = np.result_type(*(getattr(a, "dtype", np.float32) for a in arrays))
        return da.core.elemwise(_standardise, *arrays, dtype=dtype)

    def invert(self, y):
        return y * self.std + self.mean


def _standardise(x, lo, hi, mean, std):
    """``(clip(x, lo, hi) - mean) / std``, in one array after the first operation."""
    out = np.maximum(x, lo)
    np.minimum(out, hi, out=out)
    np.subtract(out, mean, out=out)
    np.divide(out, std, out=out)
    return out


def card_kind(norm) -> str:
    """The card's normalisation kind, checked."""
    kind = (norm or {"kind": "none"}).get("kind", "none")
    if kind not in ("none", "global", "per_sample"):
        raise InputError(f"unknown normalization kind {kind!r} in the model card; use 'none', 'global' or 'per_sample'.")
    return kind


def for_input(norm, names: list, data: da.Array, n_spatial: int,
              target_channels: int | None = None, standardise_like: list[int] | None = None) -> Normalization | None:
    """The normalisation of the model input ``data`` (``(*batch, C, *spatial)``, channels ``names``)
    that the card ``norm`` asks for; None for ``kind: none``. Per-sample statistics are lazy.

    ``target_channels``: the first channels are the targets, the rest context fields, whose
    per-sample statistics (only used to standardise them for the model) come from a regular
    subsample of at most :data:`CONTEXT_STATS_PIXELS` pixels: a quarter of the cost on a GOES
    CONUS scene, the targets' statistics unchanged.

    ``standardise_like``: for each channel, the channel whose per-sample mean and std it takes (its
    own fences kept), applied when the card says ``"neighbours": "target"``: a target's values at
    neighbouring time steps then take the target's, so that "as the step before" reads the same in
    standardised units however few values the step itself has (cards without it: each its own)."""
    kind = card_kind(norm)
    if kind == "none":
        return None
    if kind == "global":
        return Normalization.from_card(norm, names, data.ndim, n_spatial)
    if not n_spatial:  # pointwise: a "sample" is one point; kept as it always was
        mean = da.where(da.isfinite(data), data, 0.0).astype(np.float32)
        return Normalization(mean, da.ones_like(mean))
    channel_axis = data.ndim - n_spatial - 1
    like = list(standardise_like) if standardise_like is not None else list(range(data.shape[channel_axis]))
    shared = (norm or {}).get("neighbours") == "target" and like != list(range(len(like)))
    if target_channels is not None and 0 < target_channels < data.shape[channel_axis]:
        split = (slice(None),) * channel_axis
        stats = da.concatenate([
            sample_statistics(data[split + (slice(0, target_channels),)], n_spatial, raw_std=shared),
            sample_statistics(data[split + (slice(target_channels, None),)], n_spatial, limit=CONTEXT_STATS_PIXELS)],
            axis=channel_axis)
    else:
        stats = sample_statistics(data, n_spatial)
    index = (slice(None),) * (data.ndim - 1)
    mean, std, lo, hi = (stats[index + (slice(k, k + 1),)] for k in range(4))
    if shared:
        std = _std_from_neighbours(std, like, channel_axis, target_channels)
        take = (slice(None),) * channel_axis + (like,)
        mean, std = mean[take], std[take]
    return Normalization(mean, std, lo, hi)


def _std_from_neighbours(std, like, channel_axis, n_targets):
    """``std`` with each target's 0 (a step with one value, or none: no spread of its own) replaced
    by the mean std of its neighbouring steps (the channels standardised like it), else 1: the
    spread a fill and its sigma are scaled by (a sigma is capped at a few of them)."""
    index = (slice(None),) * channel_axis
    parts = []
    for i in range(n_targets):
        own = std[index + (slice(i, i + 1),)]
        others = [j for j, t in enumerate(like) if t == i and j != i]
        fallback = (da.mean(std[index + (others,)], axis=channel_axis, keepdims=True) if others
                    else da.ones_like(own))
        parts.append(da.where(own > 0, own, fallback))
    return da.concatenate(parts + [std[index + (slice(n_targets, None),)]], axis=channel_axis)


def for_output(norm, names: list, inputs: Normalization | None, out, n_spatial: int, *,
               target_channels: int | None = None, sigma_scale: float | None = None) -> Normalization | None:
    """The normalisation to undo on the model output ``out`` (channels ``names``, one per mean):
    the card's statistics of the outputs (``global``), or the input's own (``per_sample``).

    ``target_channels``: the input's first channels that the outputs belong to (the rest are
    context fields, issue #15); None: all of them. ``sigma_scale``: the output is ``n`` means then
    ``n`` sigmas (in normalised units): the sigmas are multiplied by the std only (no mean), then
    by ``sigma_scale`` (the card's calibration). Without either, as it always was.

    >>> import numpy as np
    >>> inputs = Normalization(np.array([10.0, 5.0], "f4").reshape(2, 1, 1), np.array([2.0, 3.0], "f4").reshape(2, 1, 1))
    >>> out = np.ones((2, 1, 1), "f4")  # one mean, one sigma
    >>> n = for_output({"kind": "per_sample"}, ["t"], inputs, out, 2, target_channels=1, sigma_scale=1.5)
    >>> n.invert(out).ravel().tolist()
    [12.0, 3.0]
    """
    kind = card_kind(norm)
    channel_axis = out.ndim - n_spatial - 1
    n_out = out.shape[channel_axis]
    n_means = n_out // 2 if sigma_scale is not None else n_out
    if kind == "none" or inputs is None:
        if sigma_scale is None or sigma_scale == 1:
            return None
        shape = channel_shape(out.ndim, n_spatial)
        return Normalization(np.zeros(n_out, np.float32).reshape(shape),
                             np.array([1.0] * n_means + [sigma_scale] * n_means, np.float32).reshape(shape))
    if kind == "global":
        means = Normalization.from_card(norm, names[:n_means], out.ndim, n_spatial)
    else:
        n_in = inputs.mean.shape[channel_axis]
        wanted = n_in if target_channels is None else target_channels
        if n_means != wanted or n_in < wanted:
            raise InputError("per-sample normalisation needs as many output channels as input channels.")
        if n_in == n_means and sigma_scale is None:
            return Normalization(inputs.mean, inputs.std)  # the common case, exactly as before
        take = (slice(None),) * channel_axis + (slice(0, n_means),)
        means = Normalization(inputs.mean[take], inputs.std[take])
    if sigma_scale is None:
        return means
    join = da.concatenate if any(isinstance(v, da.Array) for v in (means.mean, means.std)) else np.concatenate
    # Sigmas: scaled, never shifted (a standard error has no offset).
    return Normalization(join([means.mean, means.mean * np.float32(0)], axis=channel_axis),
                         join([means.std, means.std * np.float32(sigma_scale)], axis=channel_axis))


STATS_PIXELS = 2 ** 22  # per sample: larger fields are subsampled on a regular stride for statistics
QUANTILE_PIXELS = 2 ** 18  # the fences' percentiles come from at most this many of them
CONTEXT_STATS_PIXELS = 2 ** 20  # context fields: statistics from at most this many pixels per sample
STATS_QUANTILES = (1.0, 99.0)  # values beyond these quantiles by more than their spread are clipped


def stats_stride(shape, limit: int | None = None) -> int:
    """The stride (same on every spatial axis) that keeps a sample to at most ``limit`` pixels:
    1 for fields up to 2048 x 2048 (a GOES CONUS scene) with the default."""
    limit = STATS_PIXELS if limit is None else limit
    stride = 1
    while int(np.prod([-(-n // stride) for n in shape])) > limit:
        stride += 1
    return stride


def robust_moments(sub: np.ndarray, n_spatial: int, raw_std: bool = False) -> np.ndarray:
    """Per sample and channel of ``sub`` (``(..., *spatial)``): a robust mean and std and the
    outlier fences, stacked on the last axis (the spatial axes become size 1, the last size 4:
    mean, std, low fence, high fence), float32 (float64 for float64 data: a field of 101325 +- 0.001 Pa
    standardised and restored with float32 statistics was filled with one value for all its gaps).

    Values further than the spread of the 1st-99th percentiles beyond them (the fences, when that
    spread is > 0) are clipped to the fence (a field with a handful of 1e38 values keeps the statistics of its ordinary values),
    then the mean and standard deviation of the finite values are taken in float64 in one fixed
    order. On fields with nothing beyond the fences this is exactly the plain mean and std. A
    sample without finite values gets (0, 1); a constant one std 1 (0 with ``raw_std``)."""
    axes = tuple(range(sub.ndim - n_spatial, sub.ndim))
    x = sub.astype(np.float64)
    finite = np.isfinite(x)
    all_finite = bool(finite.all())  # the common case skips the masking passes below
    q_stride = stats_stride(x.shape[x.ndim - n_spatial:], QUANTILE_PIXELS)
    step = (Ellipsis,) + (slice(None, None, q_stride),) * n_spatial
    few = x[step] if all_finite else np.where(finite[step], x[step], np.nan)
    # A sample without any finite value takes its percentiles from zeros and then NaN (handled just
    # below), so nanpercentile never warns: silencing it with warnings.catch_warnings is not
    # thread-safe, and under dask's threads the "All-NaN slice" warning leaked to users.
    some = np.isfinite(few).any(axis=axes, keepdims=True)
    with np.errstate(all="ignore"):
        q_lo, q_hi = np.nanpercentile(np.where(some, few, 0.0), STATS_QUANTILES, axis=axes, keepdims=True)
    q_lo, q_hi = np.where(some, q_lo, np.nan), np.where(some, q_hi, np.nan)
    spread = q_hi - q_lo
    # No fences where the percentiles are undefined or equal (a mostly constant field such as
    # rain: its few other values are the signal, not outliers).
    fenced = np.isfinite(spread) & (spread > 0)
    lo = np.where(fenced, q_lo - spread, -np.inf)
    hi = np.where(fenced, q_hi + spread, np.inf)
    if stats_dtype(sub.dtype) == np.float32:
        # In float32 (what the model input is clipped with), rounded outwards: never tighter.
        lo32, hi32 = lo.astype(np.float32), hi.astype(np.float32)
        lo = np.where(lo32 > lo, np.nextafter(lo32, np.float32(-np.inf)), lo32).astype(np.float64)
        hi = np.where(hi32 < hi, np.nextafter(hi32, np.float32(np.inf)), hi32).astype(np.float64)
    with np.errstate(invalid="ignore"):
        beyond = bool((x < lo).any() or (x > hi).any())  # NaN compares False: never "beyond"
    clipped = np.minimum(np.maximum(x, lo), hi) if beyond else x
    if not all_finite:
        clipped = np.where(finite, clipped, 0.0)
    count = np.maximum(finite.sum(axis=axes, keepdims=True), 1)
    mean = clipped.sum(axis=axes, keepdims=True) / count

    def deviations():
        deviation = clipped - mean
        return deviation if all_finite else np.where(finite, deviation, 0.0)

    deviation = deviations()
    with np.errstate(over="ignore"):
        np.multiply(deviation, deviation, out=deviation)
    std = np.sqrt(deviation.sum(axis=axes, keepdims=True) / count)
    if not bool(np.isfinite(std).all()):
        # Squares of deviations beyond 1e154 overflow float64 (a field of 1e300: std inf, every
        # fill NaN; probe): those samples again, scaled by their largest deviation first (a
        # second pass only then, off the common path).
        deviation = deviations()
        scale = np.where(np.isfinite(std), 1.0, np.abs(deviation).max(axis=axes, keepdims=True))
        std = np.sqrt(np.square(deviation / scale).sum(axis=axes, keepdims=True) / count) * scale
    if not raw_std:
        std = np.where(std > 0, std, 1.0)
    return np.concatenate([mean, std, lo, hi], axis=-1).astype(stats_dtype(sub.dtype))


def stats_dtype(dtype) -> np.dtype:
    """The type of a field's statistics: float64 for float64 data (its precision kept through the
    standardisation and back), else float32."""
    return np.dtype(np.float64 if np.dtype(dtype) == np.float64 else np.float32)


def sample_statistics(data: da.Array, n_spatial: int, raw_std: bool = False, limit: int | None = None) -> da.Array:
    """Lazy :func:`robust_moments` of ``data`` (``(*batch, C, *spatial)``): shape
    ``(*batch, C, 1, ..., 4)``. Each sample's statistics come from one block holding the whole
    sample (on a regular subsample when it is large), so they are the same whatever the chunking
    of ``data`` and whatever the scheduler: the same numbers in the same order."""
    spatial = data.shape[data.ndim - n_spatial:]
    stride = stats_stride(spatial, limit)
    sub = data[(Ellipsis,) + (slice(None, None, stride),) * n_spatial] if stride > 1 else data
    lead = data.ndim - n_spatial
    big = int(np.prod(sub.shape[lead - 1:])) >= 2 ** 16  # then one sample per block (memory)
    sub = sub.rechunk({**{a: -1 for a in range(lead - 1, data.ndim)}, **({a: 1 for a in range(lead - 1)} if big else {})})
    chunks = sub.chunks[:lead] + ((1,),) * (n_spatial - 1) + ((4,),)
    dtype = stats_dtype(data.dtype)
    return da.map_blocks(robust_moments, sub, n_spatial, raw_std, chunks=chunks, dtype=dtype,
                         meta=np.empty((0,) * data.ndim, dtype))
