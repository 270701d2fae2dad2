"""xdl: deep-learning models on xarray / Dask / Zarr Earth-science data.

Importing xdl registers the ``.dl`` accessor on ``xarray.Dataset`` and ``xarray.DataArray``.
"""

from .version import __version__  # noqa: F401  (from the installed metadata)

from .errors import (XdlError, InputError, ModelError, ModelFileError, UnknownModelError,  # noqa: F401
                     OutputExistsError, OutputWriteError, XdlWarning)
from . import accessor as _accessor  # noqa: F401,E402  (registers .dl)
from . import lazy as _lazy

_SUBMODULES = {"engine", "conventions", "masks", "baselines", "metrics", "io", "inpaint", "predict",
               "train", "fit", "training", "evaluate", "report", "demo", "cli", "modelfile", "models", "progress"}
# The zoo and the bundled models live in xdl.models; xdl.zoo and xdl.pretrained name them.
_ALIASES = {"zoo": "models.zoo", "pretrained": "models.pretrained"}
# torch (about 2 s of CPU to import) loads on first use of a model, not with `import xdl`: the
# `xdl` command's --help and usage errors stay fast.
_LAZY = {"Model": "modelfile", "load_model": "modelfile", "clear_cache": "engine.runner"}

# The public API (`from xdl import *`, documentation tools); every name resolves (tests/unit/test_package.py).
__all__ = [
    "__version__",
    # exceptions
    "XdlError", "InputError", "ModelError", "ModelFileError", "UnknownModelError", "OutputExistsError",
    "OutputWriteError", "XdlWarning",
    # a model: card + torch module, saved and loaded as one file
    "Model", "load_model",
    # the models' resident copies (beyond 8 a process, those idle a minute go): freed now
    "clear_cache",
    # the modules of the verbs (also on the .dl accessor)
    "predict", "inpaint", "evaluate", "fit", "train", "demo",
    # building blocks
    "masks", "baselines", "metrics", "io", "progress", "zoo", "pretrained", "models", "training", "engine", "conventions",
]


# xdl.masks, xdl.zoo, xdl.Model, ... imported on first use
__getattr__, __dir__ = _lazy.attach(__name__, globals(), {**{n: n for n in _SUBMODULES}, **_ALIASES}, exports=_LAZY)
