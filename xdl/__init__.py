"""xdl: deep-learning models on xarray / Dask / Zarr Earth-science data.

Importing xdl registers the ``.dl`` accessor on ``xarray.Dataset`` and ``xarray.DataArray``.
"""

__version__ = "0.1.0"

from .errors import XdlError, InputError, ModelError, ModelFileError, UnknownModelError, OutputExistsError  # noqa: F401
from . import accessor as _accessor  # noqa: F401,E402  (registers .dl)

_SUBMODULES = {"engine", "conventions", "masks", "baselines", "metrics", "io", "inpaint", "predict",
               "train", "fit", "training", "evaluate", "pretrained", "demo", "cli", "model", "models", "zoo"}
# torch (about 2 s of CPU to import) loads on first use of a model, not with `import xdl`: the
# `xdl` command's --help and usage errors stay fast.
_LAZY = {"Model": "model", "load_model": "model"}


def __getattr__(name):  # xdl.masks, xdl.zoo, xdl.Model, ... imported on first use
    import importlib

    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'xdl' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | _SUBMODULES | set(_LAZY))
