"""Post-hoc calibration of a Gaussian sigma head: one factor that scales the model's sigmas, and
factors per distance-to-data bin on top of it (:func:`distance_scales`).

On held-out pixels with known truth, ``z = (mean - truth) / sigma``. A calibrated Gaussian has 68.3%
of ``|z|`` within 1 and 95.4% within 2. Two candidate scales ``s`` (sigma -> s * sigma): the
0.683-quantile of ``|z|`` (exact 1-sigma coverage, robust to a few wild errors) and ``RMS(z)``
(right on average). The one whose 1- and 2-sigma coverages together are nearer the Gaussian's
(sum of absolute deviations) is kept.

A sigma head trained on small windows never saw errors far from data: its sigmas are too small
inside large gaps. :func:`distance_scales` fits one factor per bin of distance to the nearest valid
pixel (the card's ``distance_bins`` / ``distance_scales``, applied by :mod:`xdl.uncertainty`).

Example:
    >>> import numpy as np
    >>> z = np.random.default_rng(0).normal(0.0, 2.0, 200_000)
    >>> c = calibration_scale(z)
    >>> round(c["scale"], 2), c["method"] in ("quantile", "rms"), round(c["coverage_1sigma"], 3)
    (2.0, True, 0.683)
"""

from __future__ import annotations

import math

import numpy as np
import torch

ONE_SIGMA = math.erf(1 / math.sqrt(2))   # 0.6827: share of a Gaussian within 1 sigma
TWO_SIGMA = math.erf(2 / math.sqrt(2))   # 0.9545: within 2 sigma
SCALE_RANGE = (1e-5, 1e5)  # a card's scale lies in (0, 1e6); beyond this the sigma head is broken anyway


def standardized_errors(mean, sigma, truth, where) -> np.ndarray:
    """``(mean - truth) / sigma`` on the pixels ``where`` is True, as a flat float64 numpy array.

    >>> t = torch.tensor
    >>> standardized_errors(t([1.0, 2.0]), t([2.0, 1.0]), t([0.0, 9.0]), t([True, False])).tolist()
    [0.5]
    """
    where = where.expand_as(mean)
    m, s, y = (torch.as_tensor(a).detach().to("cpu", torch.float64) for a in (mean, sigma, truth))
    w = where.detach().to("cpu")
    return ((m[w] - y[w]) / s[w]).numpy()


def off_gaussian(c1: float, c2: float) -> float:
    """How far 1- and 2-sigma coverages are from a Gaussian's (sum of absolute differences)."""
    return abs(c1 - ONE_SIGMA) + abs(c2 - TWO_SIGMA)


def coverage(z: np.ndarray, scale: float) -> tuple[float, float]:
    """Shares of ``|z| / scale`` within 1 and within 2."""
    a = np.abs(np.asarray(z, np.float64)) / scale
    return float(np.mean(a <= 1.0)), float(np.mean(a <= 2.0))


def calibration_scale(z: np.ndarray) -> dict:
    """The scale that calibrates sigmas whose standardised errors are ``z`` (see the module doc).

    Returns ``{"scale", "method" ("quantile" or "rms"), "coverage_1sigma", "coverage_2sigma", "n",
    "candidates": {method: {"scale", "coverage_1sigma", "coverage_2sigma"}}}``; the coverages are
    those of ``z / scale``. Non-finite ``z`` are dropped; none left gives scale 1 (method "none").
    """
    z = np.asarray(z, np.float64).ravel()
    z = z[np.isfinite(z)]
    if z.size == 0:
        return {"scale": 1.0, "method": "none", "coverage_1sigma": None, "coverage_2sigma": None, "n": 0,
                "candidates": {}}
    a = np.abs(z)
    candidates = {}
    for method, s in (("quantile", float(np.quantile(a, ONE_SIGMA))), ("rms", float(np.sqrt(np.mean(a * a))))):
        s = s if s > 0 and math.isfinite(s) else 1.0  # all errors zero: nothing to scale
        c1, c2 = coverage(a, s)
        candidates[method] = {"scale": s, "coverage_1sigma": c1, "coverage_2sigma": c2,
                              "deviation": off_gaussian(c1, c2)}
    method = min(candidates, key=lambda k: candidates[k]["deviation"])
    best = candidates[method]
    return {"scale": best["scale"], "method": method, "coverage_1sigma": best["coverage_1sigma"],
            "coverage_2sigma": best["coverage_2sigma"], "n": int(z.size), "candidates": candidates}


DISTANCE_EDGES = (0.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0)  # pixels; the last is the cap
MIN_BIN_PIXELS = 2000  # a bin with fewer hidden pixels joins its neighbour


def best_scale(a: np.ndarray) -> float:
    """The factor on sigma whose 1- and 2-sigma coverages of ``|z| = a`` are together nearest a
    Gaussian's: the best of the 0.683-quantile (exact 1-sigma coverage), half the 0.954-quantile
    (exact 2-sigma coverage), RMS(z) and 17 steps between the two quantile ones (heavy tails).

    >>> round(best_scale(np.abs(np.random.default_rng(0).normal(0, 3.0, 100_000))), 1)
    3.0
    """
    a = np.sort(np.abs(np.asarray(a, np.float64)))
    q1, q2 = float(np.quantile(a, ONE_SIGMA)), float(np.quantile(a, TWO_SIGMA)) / 2
    candidates = [q1, q2, float(np.sqrt(np.mean(a * a)))]
    if q1 > 0 and q2 > 0:
        candidates += list(np.geomspace(q1, q2, 19)[1:-1])
    candidates = [c for c in candidates if c > 0 and math.isfinite(c)] or [1.0]

    def dev(s):  # on the sorted values: two binary searches
        n = a.size
        return off_gaussian(np.searchsorted(a, s, "right") / n, np.searchsorted(a, 2 * s, "right") / n)

    return float(min(candidates, key=dev))


def distance_scales(z, distance, edges=DISTANCE_EDGES, min_pixels: int = MIN_BIN_PIXELS, refine: int = 3) -> dict:
    """Per-distance-bin factors on sigma from standardised errors ``z`` (error / sigma) of hidden
    pixels ``distance`` pixels from the nearest valid one (capped at ``edges[-1]`` or not).

    Each bin gets :func:`best_scale` of its pixels. Bins with fewer than ``min_pixels`` join their
    neighbour (the next; the last joins the one before), and a bin whose factor exceeds the next
    one's joins it, until the factors grow with distance. Then, ``refine`` times, each factor is
    corrected for the linear interpolation between bin centres that applies it
    (:func:`xdl.uncertainty.distance_factor`), so that each bin's coverage is that of its fit.
    Returns ``{"distance_bins", "distance_scales", "n_pixels"}`` (lists); one bin without pixels
    (nothing to fit) gives factor 1.

    >>> rng = np.random.default_rng(0)
    >>> d = rng.uniform(0, 40, 200_000)
    >>> z = rng.normal(0, 1, d.size) * np.where(d < 16, 1.0, 2.0)
    >>> fit = distance_scales(z, d, edges=(0, 16, 32), refine=0)  # the bins' own fits: a step
    >>> fit["distance_bins"], [round(s, 1) for s in fit["distance_scales"]], fit["n_pixels"]
    ([0.0, 16.0, 32.0], [1.0, 2.0, 2.0], [80027, 80372, 39601])
    """
    from ..uncertainty import distance_factor

    z, d = np.abs(np.asarray(z, np.float64).ravel()), np.asarray(distance, np.float64).ravel()
    ok = np.isfinite(z) & np.isfinite(d)
    z, d = z[ok], np.minimum(d[ok], edges[-1])
    edges = [float(e) for e in edges]
    edges = _merged(z, d, edges, min_pixels)
    scales = [best_scale(z[b]) if b.any() else 1.0 for b in _members(d, edges)]
    for _ in range(refine if len(edges) > 1 else 0):
        applied = distance_factor(d, edges, scales).astype(np.float64)
        scales = [s * best_scale(z[b] / applied[b]) for s, b in zip(scales, _members(d, edges))]
        scales = list(np.maximum.accumulate(scales))  # the correction must not undo the order
    return {"distance_bins": edges, "distance_scales": [float(s) for s in scales],
            "n_pixels": [int(b.sum()) for b in _members(d, edges)]}


def _members(d, edges):
    """Boolean masks of the pixels in each bin (the last open-ended)."""
    index = np.searchsorted(np.asarray(edges[1:]), d, side="right")
    return [index == i for i in range(len(edges))]


def _merged(z, d, edges, min_pixels):
    """``edges`` after joining bins with too few pixels, then bins whose factor exceeds the next's."""
    counts = [int(b.sum()) for b in _members(d, edges)]
    i = 0
    while len(edges) > 1 and i < len(edges):
        if counts[i] >= min_pixels:
            i += 1
            continue
        j = i + 1 if i + 1 < len(edges) else i  # join the next bin; the last joins the one before
        del edges[j]
        counts[j - 1:j + 1] = [counts[j - 1] + counts[j]]
        i = max(j - 1, 0) if j == i else i
    while len(edges) > 1:
        scales = [best_scale(z[b]) for b in _members(d, edges)]
        down = [k for k in range(len(edges) - 1) if scales[k] > scales[k + 1]]
        if not down:
            break
        del edges[down[0] + 1]
    return edges


def uncertainty_entry(result: dict, where: str, distance: dict | None = None) -> dict:
    """The card's ``uncertainty`` entry from a :func:`calibration_scale` result on ``where``'s pixels;
    with ``distance`` (a :func:`distance_scales` fit of the errors once scaled) of two bins or more,
    its ``distance_bins`` / ``distance_scales`` too."""
    if result["n"] == 0:
        return {"kind": "gaussian", "scale": 1.0,
                "calibration": f"none: no hidden pixel with known truth in {where}"}
    c = result["candidates"]
    scale = min(max(result["scale"], SCALE_RANGE[0]), SCALE_RANGE[1])
    clamped = "" if scale == result["scale"] else (f"; the fit gave {result['scale']:.4g}, clamped to {scale:g}: "
                                                     "the sigma head is far off, retrain it")
    text = (f"one scale on {result['n']} hidden pixels of {where}: {result['method']} "
            f"(0.683-quantile of |z| {c['quantile']['scale']:.4g}: coverage "
            f"{c['quantile']['coverage_1sigma']:.1%} / {c['quantile']['coverage_2sigma']:.1%}; RMS(z) "
            f"{c['rms']['scale']:.4g}: {c['rms']['coverage_1sigma']:.1%} / {c['rms']['coverage_2sigma']:.1%} "
            f"within 1 / 2 sigma){clamped}")
    entry = {"kind": "gaussian", "scale": scale, "calibration": text, "method": result["method"],
             "n_pixels": result["n"], "coverage_1sigma": result["coverage_1sigma"],
             "coverage_2sigma": result["coverage_2sigma"], "candidates": c}
    if distance is not None and len(distance["distance_bins"]) > 1:
        factors = [min(max(f, SCALE_RANGE[0]), SCALE_RANGE[1]) for f in distance["distance_scales"]]
        entry.update(distance_bins=list(distance["distance_bins"]), distance_scales=factors)
        entry["calibration"] += (f"; times a factor by distance to the nearest valid pixel (bins from "
                                 f"{distance['distance_bins']} px: {distance['n_pixels']} pixels)")
    return entry


def calibrate(task, batches, where: str) -> dict:
    """The card's ``uncertainty`` entry of a gap-filling ``task`` (sigma head) on ``batches``.

    The module runs in eval mode on each batch; ``z`` is taken on the hidden pixels whose truth is
    known (originally valid, not shown to the model), with their distance to the nearest pixel
    shown to the model in the same window (:func:`xdl.uncertainty.gap_distance`): one scale, then
    factors by distance on top of it (:func:`distance_scales`; none when the windows give one bin).
    """
    from ..uncertainty import gap_distance

    task.module.eval()
    zs, ds = [], []
    with torch.no_grad():
        for b in batches:
            b = task.to_device(b)
            seen, mean, sigma = task.predict(b)
            n = mean.shape[1]
            hidden = b["valid"][:, :n] & ~seen
            zs.append(standardized_errors(mean, sigma, b["x"][:, :n], hidden))
            distance = gap_distance(seen.detach().to("cpu").numpy(), DISTANCE_EDGES[-1])
            ds.append(distance[hidden.detach().to("cpu").numpy()].astype(np.float64))
    z = np.concatenate(zs) if zs else np.zeros(0)
    result = calibration_scale(z)
    distance = distance_scales(z / result["scale"], np.concatenate(ds)) if result["n"] else None
    return uncertainty_entry(result, where, distance)
