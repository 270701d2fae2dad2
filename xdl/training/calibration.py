"""Post-hoc calibration of a Gaussian sigma head: one factor that scales the model's sigmas.

On held-out pixels with known truth, ``z = (mean - truth) / sigma``. A calibrated Gaussian has 68.3%
of ``|z|`` within 1 and 95.4% within 2. Two candidate scales ``s`` (sigma -> s * sigma): the
0.683-quantile of ``|z|`` (exact 1-sigma coverage, robust to a few wild errors) and ``RMS(z)``
(right on average). The one whose 1- and 2-sigma coverages together are nearer the Gaussian's
(sum of absolute deviations) is kept.

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
                              "deviation": abs(c1 - ONE_SIGMA) + abs(c2 - TWO_SIGMA)}
    method = min(candidates, key=lambda k: candidates[k]["deviation"])
    best = candidates[method]
    return {"scale": best["scale"], "method": method, "coverage_1sigma": best["coverage_1sigma"],
            "coverage_2sigma": best["coverage_2sigma"], "n": int(z.size), "candidates": candidates}


def uncertainty_entry(result: dict, where: str) -> dict:
    """The card's ``uncertainty`` entry from a :func:`calibration_scale` result on ``where``'s pixels."""
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
    return {"kind": "gaussian", "scale": scale, "calibration": text, "method": result["method"],
            "n_pixels": result["n"], "coverage_1sigma": result["coverage_1sigma"],
            "coverage_2sigma": result["coverage_2sigma"], "candidates": c}


def calibrate(task, batches, where: str) -> dict:
    """The card's ``uncertainty`` entry of a gap-filling ``task`` (sigma head) on ``batches``.

    The module runs in eval mode on each batch; ``z`` is taken on the hidden pixels whose truth is
    known (originally valid, not shown to the model).
    """
    task.module.eval()
    zs = []
    with torch.no_grad():
        for b in batches:
            b = task.to_device(b)
            seen, mean, sigma = task.predict(b)
            n = mean.shape[1]
            hidden = b["valid"][:, :n] & ~seen
            zs.append(standardized_errors(mean, sigma, b["x"][:, :n], hidden))
    return uncertainty_entry(calibration_scale(np.concatenate(zs) if zs else np.zeros(0)), where)
