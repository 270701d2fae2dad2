"""Value checks of the hot loop, one read pass each: is a block complete, is a model's output
finite, are two outputs the same bit for bit. The answers never depend on the order of a sum, as
NaN and inf propagate through any sum. The checks a dask thread makes use numpy, not torch: a
torch sum is about twice as fast, but it would leave an OpenMP team in every dask thread (see
feeding.in_passing_thread)."""

from __future__ import annotations

import numpy as np
import torch


def all_finite(values: np.ndarray) -> bool:
    """Whether every value is finite, in one read pass and no mask: a finite sum proves it (NaN
    and inf propagate through sums); a sum that overflows falls back to the exact test.

    >>> all_finite(np.ones(5, "f4")), all_finite(np.array([1, np.inf], "f4")), all_finite(np.full(3, 3e38, "f4"))
    (True, False, True)
    """
    if values.size == 0:
        return True
    with np.errstate(over="ignore", invalid="ignore"):
        finite = bool(np.isfinite(np.add.reduce(values, axis=None)))
    return finite or bool(np.isfinite(values).all())


def jointly_finite(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether every value of two float32 arrays of one size is finite, in one read pass of both: NaN
    or inf in either makes their dot product NaN or inf whatever the other holds there (inf * 0 is
    NaN). False also where the product overflows or the arrays differ in size, dtype or layout:
    the caller then tests each (:func:`all_finite`).

    >>> ones = np.ones(4, "f4")
    >>> jointly_finite(ones, ones), jointly_finite(ones, np.float32([1, 1, np.inf, 1])), jointly_finite(np.zeros(4, "f4"), np.float32([0, np.nan, 0, 0]))
    (True, False, False)
    """
    if (a.dtype != np.float32 or b.dtype != np.float32 or a.size != b.size or a.size == 0
            or not (a.flags.c_contiguous and b.flags.c_contiguous)):
        return False
    # numpy's dot (BLAS): in the two-core pipeline 4% faster a run than torch.dot, whose thread
    # team must wake up for it while the dask threads hold their own
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.isfinite(np.dot(a.reshape(-1), b.reshape(-1))))


def finite_or_nan(out: torch.Tensor) -> torch.Tensor:
    """``out`` with NaN wherever it is not finite. CPU: a finite sum proves the common case (NaN and
    inf propagate; an overflow takes the exact path); GPU: replaced on the device, no sync.

    >>> finite_or_nan(torch.tensor([1.0, float("inf"), -2.0])).tolist()
    [1.0, nan, -2.0]
    """
    if out.device.type == "cpu" and bool(torch.isfinite(out.sum())):
        return out
    return torch.where(torch.isfinite(out), out, torch.full((), float("nan"), dtype=out.dtype, device=out.device))


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two arrays hold the same bytes (so -0.0 differs from 0.0, and NaN equals NaN only
    with the same payload): what "bit-identical" means.

    >>> same_bits(np.float32([0.0, np.nan]), np.float32([0.0, np.nan])), same_bits(np.float32([0.0]), np.float32([-0.0]))
    (True, False)
    """
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    return bool(np.array_equal(np.ascontiguousarray(a).view(np.uint8), np.ascontiguousarray(b).view(np.uint8)))
