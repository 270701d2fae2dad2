"""xdl: deep-learning models on xarray / Dask / Zarr Earth-science data.

Importing xdl registers the ``.dl`` accessor on ``xarray.Dataset`` and ``xarray.DataArray``.
"""

__version__ = "0.1.0"

from .errors import XdlError, InputError, ModelFileError, UnknownModelError, OutputExistsError  # noqa: F401
from . import accessor as _accessor  # noqa: F401,E402  (registers .dl)
from .model import Model, load_model  # noqa: F401,E402
from . import zoo  # noqa: F401,E402
