"""Opening inputs: netCDF files, zarr stores and globs of files, lazily, refusing unfinished stores."""

from __future__ import annotations

import glob
import json
import os
import warnings

from ..errors import InputError
from .files import GLOB_CHARS, is_zarr
from .zarr import describe_incomplete, store_status

__all__ = ["open_input", "read_config", "refuse_incomplete"]


def open_input(path: str, chunks="file"):
    """Open a netCDF file, a zarr store or a glob of files lazily, as a dask-backed Dataset.

    ``chunks="file"`` (the default, xarray's ``chunks={}``) keeps the file's own chunking; a dict
    of sizes or ``"auto"`` rechunks; ``None`` reads into memory without dask.

    >>> import numpy as np, xarray as xr, tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> xr.Dataset({"t": (("y", "x"), np.zeros((2, 3)))}).to_netcdf(os.path.join(d, "a.nc"))
    >>> open_input(os.path.join(d, "*.nc")).t.chunks
    ((2,), (3,))
    """
    chunks = {} if isinstance(chunks, str) and chunks == "file" else chunks
    if GLOB_CHARS & set(path) and not os.path.exists(path):
        files = sorted(glob.glob(path))
        if not files:
            raise InputError(f"{path}: no file matches this pattern; check the path and quote the pattern "
                             "so that the shell does not expand it.")
        if len(files) > 1:
            return _open_many(path, files, chunks)
        path = files[0]
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file or directory.")
    if is_zarr(path):
        refuse_incomplete(path)
    return _open_one(path, chunks)


def _open_many(pattern: str, files: list[str], chunks):
    import xarray as xr

    for f in files:
        if is_zarr(f):
            refuse_incomplete(f)
    units: dict[str, set] = {}

    def note_time_units(ds):  # raw times combine only where every file counts from the same origin
        for name in ds.dims:  # the axes files are combined along, not a file's own creation time
            if name in ds.variables and " since " in str(ds[name].attrs.get("units", "")):
                units.setdefault(name, set()).add(ds[name].attrs["units"])
        return ds

    def mixed_origins():
        mixed = {name: sorted(u) for name, u in units.items() if len(u) > 1}
        if mixed:
            raise InputError(f"{pattern}: the times of its files cannot be decoded, and as stored they count from "
                             f"different origins ({mixed}), so they cannot be put in order; give the files times "
                             "xarray can decode, or one origin.")

    def open_all(**extra):
        # Variables without the concatenated dim (grid mapping, land mask) are taken from the
        # first file rather than compared across hundreds of files.
        return xr.open_mfdataset(files, combine="by_coords", chunks=chunks, data_vars="minimal",
                                 coords="minimal", compat="override", join="outer",
                                 engine="zarr" if all(map(is_zarr, files)) else None,
                                 preprocess=note_time_units if extra.get("decode_times") is False else None,
                                 **extra)

    try:
        ds = _open_decoding_times(open_all, pattern)
    except (ValueError, OSError) as e:
        mixed_origins()  # the likelier reason when raw times of different origins overlap
        raise InputError(f"{pattern}: cannot combine its {len(files)} files by their coordinates ({e}); "
                         "give files that tile or follow each other along a coordinate. Files of one scene "
                         "holding one band each under the same name (GOES L1b 'Rad') do neither: merge them into "
                         "one file first, a variable per band (as examples/goes_band_repair.py does), then "
                         "--var and --context name the bands.") from None
    mixed_origins()
    return ds


def _open_one(path: str, chunks):
    import xarray as xr

    kwargs = {"engine": "zarr"} if is_zarr(path) else {}
    if str(path).lower().endswith((".grib", ".grib2", ".grb", ".grb2")):
        # cfgrib writes an index file beside its input by default: never into the input's folder
        # (a shared or read-only data folder got FILE.grib.5b7b6.idx; probe).
        kwargs = {"engine": "cfgrib", "backend_kwargs": {"indexpath": ""}}

    def open_it(**extra):
        with warnings.catch_warnings():  # stores without consolidated metadata are fine
            warnings.filterwarnings("ignore", message="Failed to open Zarr store with consolidated",
                                    category=RuntimeWarning)
            return xr.open_dataset(path, chunks=chunks, **kwargs, **extra)

    try:
        return _open_decoding_times(open_it, path)
    except (ValueError, OSError) as e:
        raise InputError(f"{path}: cannot open it as netCDF or zarr ({e}).") from None


def _open_decoding_times(open_with, path: str):
    """``open_with(**extra)`` with times decoded, else as cftime, else as stored (with a warning):
    times that numpy cannot hold, or units nobody can parse, must not stop a gap fill that never
    looks at them. A glob of such files failed, blaming its coordinates (probe)."""
    import xarray as xr

    attempts = [{}, {"decode_times": xr.coders.CFDatetimeCoder(use_cftime=True)}, {"decode_times": False}]
    for i, extra in enumerate(attempts):
        try:
            ds = open_with(**extra)
        except (ValueError, OSError) as e:
            if i + 1 < len(attempts) and "decode time" in str(e):
                continue
            raise
        if extra.get("decode_times") is False:
            warnings.warn(f"{path}: its times cannot be decoded; they pass through as stored (numbers "
                          "with their units).", UserWarning, stacklevel=4)
        return ds


def refuse_incomplete(path: str) -> None:
    """Refuse a zarr store that an interrupted xdl write left unfinished: some values were never written."""
    if store_status(path) == "incomplete":
        raise InputError(f"{path}: is {describe_incomplete(path)}, so some of its values were never "
                         "written; finish it first (rerun the command that wrote it with --resume).")


def read_config(path: str) -> dict:
    """A JSON object of :func:`xdl.fit.fit` keyword arguments (``xdl train --config``)."""
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such config file{' (a folder)' if os.path.isdir(path) else ''}.")
    try:
        with open(path) as f:
            config = json.load(f)
    except ValueError as e:
        raise InputError(f"{path}: not valid JSON ({e}).") from None
    if not isinstance(config, dict):
        raise InputError(f"{path}: must hold a JSON object of fit() keyword arguments, "
                         'e.g. {"epochs": 10, "masks": "clouds"}.')
    return config
