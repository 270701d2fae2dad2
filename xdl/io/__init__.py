"""Reading inputs and writing outputs.

- :mod:`xdl.io.open`: open netCDF files, zarr stores and globs lazily (:func:`open_input`).
- :mod:`xdl.io.write`: write netCDF/zarr outputs, never half-written (:func:`write_output`).
- :mod:`xdl.io.zarr`: resumable zarr writes that record their job (:func:`to_zarr_resumable`).
- :mod:`xdl.io.expr`: safe mask/domain expressions such as ``"DQF == 0"`` (:func:`mask_expression`).
- :mod:`xdl.io.files`: atomic replacement, the overwrite and input-overlap checks.

These modules import only the standard library at load time (xarray, dask and zarr inside the
functions that use them), so importing them keeps ``xdl --help`` fast.
"""

from ..errors import OutputWriteError
from .expr import domain_argument, mask_expression
from .files import (input_paths, is_zarr, refuse_existing, refuse_overlap, remove_path,
                    replace_atomically)
from .open import open_input, read_config, refuse_incomplete
from .write import (NETCDF_SUFFIXES, check_output, keep_coordinate_metadata, output_kind, ready_to_write,
                    write_output)
from .zarr import (JOB_NAME, LOG_NAME, STATUS_ATTR, describe_incomplete, input_identity, job_record,
                   quiet_zarr_exit, store_status, to_zarr_resumable)

__all__ = [
    "JOB_NAME", "LOG_NAME", "NETCDF_SUFFIXES", "OutputWriteError", "STATUS_ATTR", "check_output",
    "describe_incomplete", "domain_argument", "input_identity", "input_paths", "is_zarr", "job_record",
    "keep_coordinate_metadata", "mask_expression", "open_input", "output_kind", "quiet_zarr_exit",
    "read_config", "ready_to_write", "refuse_existing", "refuse_incomplete", "refuse_overlap",
    "remove_path", "replace_atomically", "store_status", "to_zarr_resumable", "write_output",
]
