"""The inference engine: run a model over arrays of any size, tile by tile.

Imports go one way, from numpy up to dask:

- :mod:`xdl.engine.tiling` - the tile grid on numpy arrays (halo, padding to the model's size
  multiple, cutting and stitching); no torch, no dask.
- :mod:`xdl.engine.spec` - what the engine needs to know about a model (halo, size multiple, channels).
- :mod:`xdl.engine.checks` - one-pass value checks (a block complete, outputs finite, same bits).
- :mod:`xdl.engine.feeding` - the feeder thread and lock per device, single-threaded CPU calls,
  host tensors, the copy stream.
- :mod:`xdl.engine.runner` - torch: batches of tiles through a model on a device, model caching.
- :mod:`xdl.engine.graph` - dask: pads and aligns the input, maps the runner over its blocks.
- :mod:`xdl.engine.options` - the checked run options (tile, batch size, device, ...).

Nothing here imports xarray; the verbs (:mod:`xdl.predict`, :mod:`xdl.inpaint`) sit above it.
Submodules load on first use (``xdl.engine.tiling``), so importing the package does not import torch.
"""

from ..lazy import attach

__getattr__, __dir__ = attach(__name__, globals(), {"tiling", "spec", "checks", "feeding", "runner", "graph", "options"})
del attach
