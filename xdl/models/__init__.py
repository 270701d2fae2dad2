"""Pure-torch model architectures of the xdl zoo. Nothing here imports xarray or dask.

:mod:`~xdl.models.registry` names the architectures, one module each; :mod:`~xdl.models.zoo`
builds them as untrained :class:`xdl.Model` (``xdl.zoo``); :mod:`~xdl.models.pretrained` loads the
models bundled in ``xdl/weights`` (``xdl.pretrained``); :mod:`~xdl.models.resolve` turns what a
user passes as ``model=`` (object, path, bundled name, None for a default) into a model.

Contract every zoo architecture follows (the engine relies on it, and on nothing else):

* instance attributes ``mode`` ("spatial" | "pointwise" | "volume"), ``in_channels``,
  ``out_channels``, ``size_multiple`` (spatial sizes the forward accepts are multiples of it),
  ``halo`` (pixels of context each side that the engine gives every tile; the effective
  receptive-field radius), ``takes_mask`` (forward takes ``(x, mask)``) and ``fills_gaps``
  (the output is meaningful where the input was invalid);
* optional: ``min_tile``, the smallest tile side worth running (a model with a wide halo wastes
  less on context with big tiles; the engine's default tile is raised to it); ``cpu_bf16``,
  True when the model keeps its accuracy under bf16 autocast, so that ``precision="auto"`` uses
  bf16 on CPUs with native bf16 instructions too (it always does on CUDA); ``cpu_threads``, the
  CPU threads per call the model runs best with (1: a model of many small ops, whose calls the
  engine then runs several at once, one per dask thread; its forward must be safe to call from
  several threads at once);
* spatial models map ``(N, C, H, W) -> (N, C_out, H, W)``; pointwise models map
  ``(P, C) -> (P, C_out)``; volume models map ``(N, C, T, H, W) -> (N, C_out, T, H, W)``;
* models that take a mask get ``x`` with invalid entries already set to 0 and ``mask`` of the
  same shape as ``x``, 1.0 where valid and 0.0 where not.
"""
