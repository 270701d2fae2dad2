"""The engine's run options (device, precision, tile, batch size, ...), each checked before anything runs.

:meth:`RunOptions.check` checks every option on its own (an :class:`~xdl.errors.InputError` naming
the option and the fix), before a model is probed; :meth:`RunOptions.build` then fixes the defaults
that depend on the model and the device. ``predict`` and ``inpaint`` take the same options.

Example:
    >>> from xdl.engine.options import RunOptions
    >>> RunOptions.check(device="cpu", tile=0)
    Traceback (most recent call last):
    ...
    xdl.errors.InputError: tile=0: must be between 1 and 65536 of pixels per tile side (core + halo both sides), or None for the default.
"""

from __future__ import annotations

import numbers

import numpy as np
import torch

from ..errors import InputError
from .runner import resolve_device, resolve_precision

__all__ = ["RunOptions", "check_halo", "integer_option", "NAN_POLICIES", "DEFAULT_TILE", "DEFAULT_TILE_CUDA",
           "MAX_TILE", "MAX_HALO"]

DEFAULT_TILE = 512        # CPU: tile side (core + halo both sides)
DEFAULT_TILE_CUDA = 1024  # GPU: bigger tiles, less halo overhead, batches fill the device
NAN_POLICIES = ("propagate", "fill")
MAX_TILE = 2 ** 16  # pixels per tile side: beyond this one tile would not fit any memory
MAX_HALO = 2 ** 13


def integer_option(value, name: str, minimum: int, maximum: int | None = None, meaning: str = "") -> int:
    """``value`` as an int within bounds, or an :class:`InputError` naming the option.

    >>> integer_option(4.0, "tile", 1)
    4
    """
    integral = isinstance(value, (numbers.Integral, np.integer)) and not isinstance(value, (bool, np.bool_))
    if not integral and isinstance(value, (float, np.floating)) and np.isfinite(value) and float(value).is_integer():
        integral = True
    if not integral:
        raise InputError(f"{name}={value!r}: give a whole number{meaning}.")
    value = int(value)
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise InputError(f"{name}={value}: must be {bounds}{meaning}.")
    return value


def check_halo(halo) -> int | None:
    """The ``halo`` engine option checked: None (from the model) or a whole number of pixels >= 0."""
    if halo is None:
        return None
    return integer_option(halo, "halo", 0, MAX_HALO, " of context pixels each side of a tile (or None: "
                          "from the model card or a receptive-field probe)")


class RunOptions:
    """The checked options of one engine run (see :func:`xdl.predict.predict` for their meaning)."""

    def __init__(self, device, autocast, tile, batch_size, periodic, compile=False, nan_policy="propagate",
                 threads=None):
        self.device, self.autocast, self.tile = device, autocast, tile
        self.batch_size, self.periodic, self.compile = batch_size, periodic, compile
        self.nan_policy = nan_policy
        self.threads = threads or torch.get_num_threads()

    @staticmethod
    def check(device="auto", precision="auto", tile=None, batch_size=None, periodic=None, compile="auto",
              nan_policy="propagate", threads=None, halo=None):
        """Every engine option checked on its own, before the model is probed or anything runs:
        an :class:`InputError` naming the option and the fix. Returns the device."""
        dev = resolve_device(device)
        if not ((isinstance(compile, str) and compile == "auto") or isinstance(compile, (bool, np.bool_))):
            raise InputError(f"compile={compile!r}: use 'auto' (compile on CUDA), True or False.")
        resolve_precision(precision, dev)
        if tile is not None:
            integer_option(tile, "tile", 1, MAX_TILE, " of pixels per tile side (core + halo both sides), "
                           "or None for the default")
        if batch_size is not None:
            integer_option(batch_size, "batch_size", 1, None, " of tiles per model call, or None (the default)")
        if periodic is not None and not isinstance(periodic, (bool, np.bool_)):
            raise InputError(f"periodic={periodic!r}: use None (detect a global longitude), True or False.")
        if not isinstance(nan_policy, str) or nan_policy not in NAN_POLICIES:
            raise InputError(f"nan_policy={nan_policy!r}: use 'propagate' (NaN wherever a missing input is "
                             "within the model's reach) or 'fill' (a harmonic first guess in the gaps).")
        if threads is not None:
            integer_option(threads, "threads", 1, 4096, " of CPU threads per model call, or None "
                           "(torch.get_num_threads() here)")
        check_halo(halo)
        return dev

    @classmethod
    def build(cls, spec, device, precision, tile, batch_size, periodic, compile="auto", nan_policy="propagate",
              threads=None):
        """The run options for ``spec``'s model, every option checked (see :meth:`check`)."""
        dev = cls.check(device, precision, tile, batch_size, periodic, compile, nan_policy, threads)
        compile = dev.type == "cuda" if isinstance(compile, str) else bool(compile)
        autocast = resolve_precision(precision, dev, spec.cpu_bf16)
        if tile is None:
            tile = max(DEFAULT_TILE_CUDA if dev.type == "cuda" else DEFAULT_TILE, spec.min_tile)
        tile = int(tile)
        batch_size = None if batch_size is None else int(batch_size)
        periodic = None if periodic is None else bool(periodic)
        # The model's own count or the caller's, recorded in the graph: every worker runs the model
        # with it (CPU results depend on it).
        if threads is None:
            threads = spec.cpu_threads or torch.get_num_threads()
        threads = int(threads)
        return cls(dev, autocast, tile, batch_size, periodic, compile, nan_policy, threads)
