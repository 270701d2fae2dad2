"""xdl: deep-learning models on xarray / Dask / Zarr Earth-science data.

Importing xdl registers the ``.dl`` accessor on ``xarray.Dataset`` and ``xarray.DataArray``.
"""

__version__ = "0.1.0"

from .errors import XdlError, InputError, ModelFileError, UnknownModelError, OutputExistsError  # noqa: F401
from . import accessor as _accessor  # noqa: F401,E402  (registers .dl)
from .model import Model, load_model  # noqa: F401,E402
from . import zoo  # noqa: F401,E402

_SUBMODULES = {"cf", "layout", "masks", "baselines", "metrics", "domains", "io", "inpaint", "predict",
               "train", "evaluate", "pretrained", "tiling", "runner", "spec", "graph", "demo", "cli"}


def __getattr__(name):  # xdl.masks, xdl.baselines, ... imported on first use
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'xdl' has no attribute {name!r}")
