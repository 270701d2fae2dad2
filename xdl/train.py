"""Compatibility module: training lives in :mod:`xdl.fit` (``fit``) and the :mod:`xdl.training` package.

Re-exports the public names that ``xdl.train`` has always offered.
"""

from .fit import fit
from .training.checkpoint import BEST_NAME, CHECKPOINT_FORMAT, CHECKPOINT_NAME, read_checkpoint
from .training.losses import GAN_WEIGHTS, GAP_WEIGHTS, gap_loss, masked_l1
from .training.splits import split_region, split_samples

__all__ = ["fit", "split_samples", "split_region", "gap_loss", "masked_l1", "GAP_WEIGHTS", "GAN_WEIGHTS",
           "CHECKPOINT_NAME", "BEST_NAME", "CHECKPOINT_FORMAT", "read_checkpoint"]
