"""Reading inputs and writing outputs.

- :mod:`xdl.io.open`: open netCDF files, zarr stores and globs lazily (:func:`open_input`).
- :mod:`xdl.io.write`: write netCDF/zarr outputs, never half-written (:func:`write_output`).
- :mod:`xdl.io.zarr`: resumable zarr writes that record their job (:func:`to_zarr_resumable`).
- :mod:`xdl.io.expr`: safe mask/domain expressions such as ``"DQF == 0"`` (:func:`mask_expression`).
- :mod:`xdl.io.files`: atomic replacement, the overwrite and input-overlap checks.

The names below load their module on first use, so ``xdl --help`` imports neither xarray nor dask.
"""

from ..errors import OutputWriteError

_EXPORTS = {
    "open_input": "open", "read_config": "open", "refuse_incomplete": "open",
    "write_output": "write", "check_output": "write", "keep_coordinate_metadata": "write",
    "output_kind": "write", "ready_to_write": "write", "NETCDF_SUFFIXES": "write",
    "to_zarr_resumable": "zarr", "store_status": "zarr", "describe_incomplete": "zarr",
    "quiet_zarr_exit": "zarr", "job_record": "zarr", "input_identity": "zarr", "LOG_NAME": "zarr", "JOB_NAME": "zarr", "STATUS_ATTR": "zarr",
    "mask_expression": "expr", "domain_argument": "expr",
    "replace_atomically": "files", "refuse_existing": "files", "refuse_overlap": "files",
    "remove_path": "files", "input_paths": "files", "is_zarr": "files",
}
_SUBMODULES = {"open", "write", "zarr", "expr", "files"}

__all__ = ["OutputWriteError", *sorted(_EXPORTS)]


def __getattr__(name):
    import importlib

    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'xdl.io' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | _SUBMODULES | set(_EXPORTS))
