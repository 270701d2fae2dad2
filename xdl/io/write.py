"""Writing outputs: netCDF or zarr by suffix, streamed chunk by chunk, never half-written, never
over an input, never over an existing output unless asked."""

from __future__ import annotations

import errno
import os
import warnings

from ..conventions import cf
from ..errors import InputError, OutputExistsError, OutputWriteError, XdlError
from .files import is_zarr, refuse_existing, refuse_overlap, replace_atomically
from .zarr import STATUS_ATTR, describe_incomplete, store_status

__all__ = ["NETCDF_SUFFIXES", "check_output", "keep_coordinate_metadata", "output_kind", "ready_to_write",
           "write_output"]

NETCDF_SUFFIXES = (".nc", ".nc4", ".h5", ".hdf5", ".netcdf", ".cdf")
# How the source stored its variables: chunks, and zarr codecs (a v2 store's numcodecs codecs fail
# a v3 write; probe). netCDF compression keys (zlib, complevel) are netcdf_ready's to set.
_STORAGE_KEYS = (*cf.ZARR_CHUNK_KEYS, "chunksizes", *cf.ZARR_CODEC_KEYS)


def output_kind(path: str) -> str:
    """``"netcdf"`` or ``"zarr"`` from an output's name (or an existing store's metadata)."""
    p = path.rstrip("/")
    if p.lower().endswith(NETCDF_SUFFIXES):
        return "netcdf"
    if p.endswith(".zarr") or (os.path.isdir(p) and is_zarr(p)):
        return "zarr"
    raise InputError(f"{path}: unknown output format; end the name in .zarr (zarr store) or "
                     f"{', '.join(NETCDF_SUFFIXES)} (netCDF).")


def check_output(path: str, overwrite: bool, inputs=(), overlap_fix: str | None = None) -> str:
    """The output kind; refuses an output that is, contains or lies inside any input (overwriting
    or writing it would destroy data being read), and an existing output without --overwrite."""
    kind = output_kind(path)
    refuse_overlap(path, inputs, *([overlap_fix] if overlap_fix else []))
    folder = os.path.dirname(os.path.abspath(path.rstrip("/") or path))
    if not os.path.isdir(folder):  # a netCDF write failed after the work, a zarr one made the folders
        raise InputError(f"{path}: the folder {folder} does not exist; create it first.")
    if overwrite:
        return kind
    if kind == "zarr" and os.path.lexists(path) and store_status(path) == "incomplete":
        raise OutputExistsError(f"{path}: already exists and is {describe_incomplete(path)}; run the "
                                "same command with --resume to finish it, or --overwrite to start over.")
    refuse_existing(path)
    return kind


# How to proceed when a result would be written over a file it was read from.
_SOURCE_FIX = ("Write to a path outside every input. xdl never replaces a file its result was read from (the "
               "project's rule, and a zarr store would be read back as NaN where its chunks went). Write elsewhere "
               "and move it once written, or, when nothing is read from the input any more (result.load()), drop "
               "the record of it: result.encoding.pop('source') and each variable's.")


def sources(obj) -> list[str]:
    """The files ``obj`` was read from, as xarray records them (``encoding["source"]`` of the
    Dataset and its variables): an output must not replace them (``write_output(result, its input,
    overwrite=True)`` replaced the input it was still reading: a store of NaN; probe)."""
    found = [_local(obj.encoding.get("source"))] + [_local(v.encoding.get("source")) for v in obj.variables.values()]
    found += _files_read(obj)
    # Files and stores only: a plain folder recorded as a source (".") is no input to replace.
    return sorted({s for s in found if isinstance(s, str) and s and (os.path.isfile(s) or is_zarr(s))})


_WRAPPER_DEPTH = 8  # xarray's lazy wrappers around a backend array: 3-4 deep in xarray 2025


def _files_read(obj) -> list[str]:
    """The local zarr stores and netCDF files ``obj``'s dask graph reads (not after
    ``dask.optimize``, which may inline them into tasks): a store opened with
    ``open_zarr`` and then merged (``xr.merge``) keeps no ``encoding["source"]``, nor does a
    gap-filled variable of ``open_mfdataset``, and ``write_output(result, that store,
    overwrite=True)`` emptied the store it was still reading (probe, session 36). Found through the
    public ``array`` chain of xarray's lazy wrappers (:func:`_file_read`); others are skipped."""
    graph = obj.__dask_graph__() if hasattr(obj, "__dask_graph__") else None
    if not graph:
        return []
    found = set()
    for layer in getattr(graph, "layers", {"": graph}).values():
        for value in (layer.values() if isinstance(layer, dict) or hasattr(layer, "mapping") else ()):
            path = _file_read(value)
            if path:
                found.add(path)
    return sorted(found)


def _file_read(value):
    """The local zarr store or netCDF file behind ``value`` (an xarray lazy array), or None: the
    zarr wrapper's ``get_array()`` store (a ``LocalStore``'s root, a ``file://`` fsspec store's
    path), or the file of the netCDF wrapper's ``datastore.ds`` (netCDF4's ``filepath()``, scipy's
    and h5netcdf's ``filename``)."""
    for _ in range(_WRAPPER_DEPTH):
        try:
            if hasattr(value, "datastore"):  # netCDF4, scipy, h5netcdf
                opened = value.datastore.ds
                path = opened.filepath() if hasattr(opened, "filepath") else getattr(opened, "filename", None)
                return _local(path)
            if hasattr(value, "get_array"):
                store = value.get_array().store_path.store  # zarr
                if getattr(store, "root", None) is not None:
                    return os.fspath(store.root)
                protocol = getattr(getattr(store, "fs", None), "protocol", ())
                local = protocol == "file" or (isinstance(protocol, tuple) and "file" in protocol)
                return _local(getattr(store, "path", None)) if local else None
        except Exception:  # another backend, or another version of one: nothing to find
            return None
        value = getattr(value, "array", None)
        if value is None:
            return None
    return None


def _local(path):
    """``path`` (a file name or a ``file://`` URL) as a local path, or None."""
    if not isinstance(path, (str, os.PathLike)):
        return None
    path = os.fspath(path)
    return path[len("file://"):] if path.startswith("file://") else path


def ready_to_write(ds):
    """Drop the source format's chunk and codec encodings and make dask chunks regular (zarr needs it)."""
    import dask.array as da

    ds = ds.copy()
    for name, var in list(ds.variables.items()):
        for key in _STORAGE_KEYS:
            var.encoding.pop(key, None)
        data = var.data
        if isinstance(data, da.Array) and data.ndim:
            if any(len(set(c[:-1])) > 1 or (len(c) > 1 and c[-1] > c[0]) for c in data.chunks):
                ds[name] = var.chunk({d: c[0] for d, c in zip(var.dims, data.chunks)})
    return ds


def write_output(ds, path: str, *, overwrite: bool = False, progress: bool = False, resume: bool = False,
                 job: dict | None = None) -> None:
    """Write ``ds`` to netCDF or zarr (by suffix), streamed chunk by chunk.

    zarr: region by region with a progress log in the store (:func:`xdl.io.to_zarr_resumable`),
    so ``resume=True`` finishes an interrupted write of the same ``job``.
    netCDF: to a temporary sibling renamed into place at the end, so a failure never leaves a
    half-written OUT (nor destroys an existing one). A failed write (disk full, HDF error) raises
    :class:`xdl.errors.OutputWriteError` naming OUT and the cause.
    """
    kind = check_output(path, overwrite or resume, inputs=sources(ds), overlap_fix=_SOURCE_FIX)
    original, ds = ds, ready_to_write(ds)
    if kind == "netcdf":  # compression, chunk sizes, CF-clean coordinates and bounds
        from ..conventions.cf import netcdf_ready

        ds = netcdf_ready(ds, original)
    ds.attrs.pop(STATUS_ATTR, None)  # an input's status says nothing about this output
    if resume and kind != "zarr":
        raise InputError(f"{path}: --resume needs a zarr output (netCDF files are written whole).")
    try:
        if kind == "zarr" and any(v.ndim for v in ds.data_vars.values()):
            from .zarr import to_zarr_resumable

            # An in-memory result (--chunks none) is one region: written whole it replaced any
            # store at OUT under --resume, another job's or none of xdl's, unchecked (probe).
            ds = ds.copy()
            for name, var in ds.data_vars.items():
                if var.ndim and not hasattr(var.data, "dask"):
                    ds[name] = var.chunk()

            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
                to_zarr_resumable(ds, path.rstrip("/"), resume=resume, mode="w" if overwrite else None,
                                  progress=progress, job=job)
            return
        _write_whole(ds, path, kind, progress)
    except (OSError, RuntimeError) as e:
        if isinstance(e, XdlError):
            raise
        # netCDF4 reports a full disk as RuntimeError("NetCDF: HDF error"); zarr as OSError.
        full = getattr(e, "errno", None) == errno.ENOSPC or "HDF error" in str(e)
        fix = "Free space or choose another place" if full else "Mend the cause"
        hint = (f" {fix}, then rerun with --resume (the regions written are kept)."
                if kind == "zarr" and os.path.exists(path) else " Nothing was left at OUT.")
        raise OutputWriteError(f"{path}: writing failed ({type(e).__name__}: {e}).{hint}") from e


def _write_whole(ds, path, kind, progress) -> None:
    with replace_atomically(path, clear=True) as tmp:
        if kind == "zarr":
            with warnings.catch_warnings():
                # Consolidated metadata lets readers open the store in one read; zarr 3 warns that it
                # is not in the v3 spec yet, which is noise to a CLI user.
                warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
                job = ds.to_zarr(tmp, mode="w", compute=False, consolidated=True)
        else:
            job = ds.to_netcdf(tmp, compute=False)
        if progress:
            from ..progress import progress_bar

            with progress_bar(f"writing {os.path.basename(path.rstrip('/'))}"):
                job.compute()
        else:
            job.compute()


def keep_coordinate_metadata(result, source):
    """Give the output's coordinates the source's attrs and time encoding where the engine lost them
    (axis, standard_name and units are what CF readers use to find the grid)."""
    import numpy as np

    for name, coord in result.coords.items():
        if name in source.coords and source[name].dims == coord.dims:
            coord.attrs = {**source[name].attrs, **coord.attrs}
            # Time coordinates keep their units/calendar; never the source's packing (an int16
            # dtype without its scale_factor would truncate GOES scan angles to 0).
            if np.issubdtype(coord.dtype, np.datetime64) or np.issubdtype(coord.dtype, np.timedelta64):
                for key in ("units", "calendar"):
                    if key in source[name].encoding:
                        coord.encoding.setdefault(key, source[name].encoding[key])
    # Decoded float coordinates: a packing copied back with the attrs would be applied again.
    return cf.drop_packing(result)
