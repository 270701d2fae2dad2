"""Resumable zarr writes: stores that finish after an interruption and record the job they hold.

A resumable write lays out the store once (metadata, coordinates, small variables), then writes
the lazy variables region by region along one dim, recording each finished region in a small
JSON log inside the store (replaced atomically). After a crash, ``resume=True`` skips the regions
in the log and rewrites the others, so a half-written chunk is always redone.

The store records what it is a write of: the layout (names, dims, shapes, dtypes, regions) and,
when the caller gives one, a ``job`` (the CLI's: input files' identities, the model's content hash
and every option). ``resume=True`` refuses a store whose layout or job differs, naming what
changed, so a resumed write never mixes two jobs. The root attribute ``xdl_status`` is
``"incomplete"`` until the last region is written, then ``"complete"``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InputError, OutputExistsError
from .files import input_paths, refuse_existing, remove_path, replace_atomically, writer_lock

if TYPE_CHECKING:  # annotations only: the module imports no xarray at load time
    import xarray as xr

__all__ = ["JOB_NAME", "LOG_NAME", "STATUS_ATTR", "cleanup_quietly", "describe_incomplete", "input_identity", "job_record",
           "quiet_zarr_exit", "store_status", "to_zarr_resumable"]

LOG_NAME = ".xdl_progress.json"
JOB_NAME = ".xdl_job.json"
STATUS_ATTR = "xdl_status"


def _fingerprint(ds: xr.Dataset, dim: str, regions: list[tuple[int, int]], job=None) -> str:
    """What the store is a write of: variables, shapes, dtypes, regions and the caller's job."""
    layout = {name: [list(var.dims), list(var.shape), str(var.dtype)] for name, var in ds.variables.items()}
    text = json.dumps({"layout": layout, "dim": dim, "regions": regions, "job": _jsonable(job)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _jsonable(job):
    """``job`` as plain JSON values (tuples become lists, other objects their str)."""
    return None if job is None else json.loads(json.dumps(job, sort_keys=True, default=str))


def _job_changes(old, new) -> list[str]:
    """``["--mask changed: 'DQF == 0' -> 'DQF < 2'", ...]`` for the keys whose values differ."""
    old, new = old or {}, new or {}
    return [f"{key} changed: {old.get(key)!r} -> {new.get(key)!r}"
            for key in sorted(set(old) | set(new), key=str) if old.get(key) != new.get(key)]


def input_identity(path: str) -> dict:
    """What identifies an input's content cheaply: a file's path, size and modification time; a
    zarr store's hash of its metadata files plus the count, total size and newest time of its files."""
    st = os.stat(path)
    if not os.path.isdir(path):
        return {"path": path, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    meta, count, size, newest = hashlib.sha256(), 0, 0, 0
    for root, dirs, names in os.walk(path):
        dirs.sort()
        for name in sorted(names):
            full = os.path.join(root, name)
            try:
                fst = os.stat(full)
            except OSError:
                continue
            count, size, newest = count + 1, size + fst.st_size, max(newest, fst.st_mtime_ns)
            if name in ("zarr.json", ".zarray", ".zattrs", ".zgroup", ".zmetadata"):
                meta.update(os.path.relpath(full, path).encode() + b"\0")
                with open(full, "rb") as f:
                    meta.update(f.read())
    return {"path": path, "metadata_sha256": meta.hexdigest(), "files": count, "bytes": size,
            "newest_mtime_ns": newest}


# Options that say how to write, not what: a resumed write may change them.
_NOT_IN_JOB = ("output", "overwrite", "resume", "progress", "func")


def job_record(options: dict, model_hash: str | None = None) -> dict:
    """The CLI's ``job``: what determines an output's values, compared on ``--resume``. Every
    parsed option (``vars(args)`` with name lists as the command splits them; flag names as
    keys), the identities of the files that IN and --domain-file name, and the model's content
    hash."""
    job = {}
    for key, value in sorted(options.items()):
        if key in _NOT_IN_JOB:
            continue
        flag = "IN" if key == "input" else "command" if key == "command" else f"--{key.replace('_', '-')}"
        if key in ("input", "domain_file") and value is not None:
            # The files it names, not how it was typed: a relative path and an absolute one, or a
            # glob and the file it matches, are the same input (a resume from another directory
            # was refused as "IN changed").
            job[f"{flag} files"] = [input_identity(p) for p in input_paths(value)]
        elif key == "model" and model_hash is not None:
            continue  # its content hash says which model; a name and the file it names are one model
        else:
            job[flag] = value
    if model_hash is not None:
        job["--model content sha256"] = model_hash
    return job


def store_status(path) -> str | None:
    """``"complete"``, ``"incomplete"`` (an interrupted xdl write) or None (not written by xdl's
    resumable writer) for a zarr store, read from its root attributes without opening arrays."""
    path = Path(path)
    for name in ("zarr.json", ".zattrs"):
        meta = path / name
        if meta.is_file():
            try:
                attrs = json.loads(meta.read_text())
            except (OSError, ValueError):
                return None
            attrs = attrs.get("attributes", {}) if name == "zarr.json" else attrs
            status = attrs.get(STATUS_ATTR) if isinstance(attrs, dict) else None
            return status if isinstance(status, str) else None
    return None


def describe_incomplete(path) -> str:
    """A sentence saying how far an interrupted write got, from its progress log."""
    try:
        done = len(json.loads((Path(path) / LOG_NAME).read_text()).get("done", []))
        return f"an interrupted xdl write ({done} region(s) written)"
    except (OSError, ValueError, AttributeError):
        return "an interrupted xdl write"


def _set_status(path: Path, status: str) -> None:
    import zarr

    with warnings.catch_warnings():
        # The progress log and job files in the store are not zarr nodes; zarr says so, harmlessly.
        # Readers of the consolidated metadata must see the new status too; zarr 3 warns that
        # consolidated metadata is not in the v3 spec yet: noise to a user.
        warnings.filterwarnings("ignore", message="Object at .* is not recognized", category=UserWarning)
        warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
        group = zarr.open_group(str(path), mode="r+")
        group.attrs[STATUS_ATTR] = status
        zarr.consolidate_metadata(str(path))


def _is_time(var) -> bool:
    """Decoded times, or raw numbers with CF time units ("days since ...") kept undecoded."""
    units = var.attrs.get("units", var.encoding.get("units"))
    return var.dtype.kind in "Mm" or (isinstance(units, str) and " since " in units)


def _region_dim(ds: xr.Dataset) -> tuple[str, tuple[int, ...]]:
    """The dim to write along: the first dim of the first lazy variable, with its chunks."""
    import dask.array as da

    for var in ds.data_vars.values():
        if isinstance(var.data, da.Array):
            return var.dims[0], var.chunks[0]
    raise InputError("nothing lazy to write region by region; use ds.to_zarr(path) directly.")


# The least data (bytes in memory, all variables written region by region) a region holds: each
# region is a compute of its own, and a model's tiles reach across many thin chunks, so a
# row-chunked file written one row a region filled the whole field once a row (160 regions of a
# 160 x 256 scene: 100-160 s, against 1.5 s for the same job to netCDF).
MIN_REGION_BYTES = 64 * 2 ** 20


def to_zarr_resumable(ds: xr.Dataset, path, *, resume: bool = False, mode: str | None = None,
                      regions_per_step: int | None = None, progress: bool = False, job: dict | None = None) -> Path:
    """Write ``ds`` to a zarr store region by region; ``resume=True`` finishes an interrupted write.

    A region is ``regions_per_step`` chunks along the first dim of the first lazy variable, or
    (None) as many whole chunks as make :data:`MIN_REGION_BYTES`.

    ``job``: a JSON-able dict of what determines the values besides the layout (input files'
    identities, the model's hash, options); stored in the store and compared on ``resume=True``,
    which refuses (``InputError`` naming each changed key) when it differs. If this call created
    the store and fails before its first region is written, the store is removed again.

    >>> import numpy as np, xarray as xr, tempfile, os
    >>> ds = xr.Dataset({"v": (("time", "y"), np.arange(6.0).reshape(3, 2))}).chunk({"time": 1})
    >>> path = os.path.join(tempfile.mkdtemp(), "out.zarr")
    >>> _ = to_zarr_resumable(ds, path)
    >>> xr.open_zarr(path).v.values.tolist()
    [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]
    """
    import dask.array as da

    path = Path(path)
    dim, chunks = _region_dim(ds)
    # Align every lazy variable's chunks along the region dim so each region is whole chunks.
    ds = ds.chunk({dim: chunks})
    # Only lazy data variables along the region dim are written region by region; everything
    # else (coordinates, grid-mapping and other small variables) is computed now and written
    # with the layout: a dask-backed coordinate would otherwise never be written. Times (e.g.
    # CF climatology_bounds) go with the layout too: a region write decodes the store's existing
    # values, and an encoded time array that is still all fill value does not decode.
    lazy = [name for name, var in ds.data_vars.items() if dim in var.dims and isinstance(var.data, da.Array)
            and not _is_time(var)]
    ds = ds.copy()
    for name in list(ds.variables):
        if name not in lazy and isinstance(ds[name].variable.data, da.Array):
            ds[name].variable.load()
    if regions_per_step is None:
        bytes_per_index = sum(ds[name].nbytes for name in lazy) / max(ds.sizes[dim], 1)
        regions = _regions(chunks, 1, MIN_REGION_BYTES / max(bytes_per_index, 1))
    else:
        regions = _regions(chunks, regions_per_step)
    job = _jsonable(job)
    fingerprint = _fingerprint(ds, dim, regions, job)
    path.parent.mkdir(parents=True, exist_ok=True)  # the lock lives there
    with writer_lock(path):
        return _write_regions(ds, path, lazy, dim, regions, fingerprint, job, resume, mode, progress)


def _write_regions(ds, path: Path, lazy, dim, regions, fingerprint, job, resume, mode, progress) -> Path:
    """:func:`to_zarr_resumable`'s writing, under the store's writer lock."""
    log_path = path / LOG_NAME
    done: set[int] = set()
    created = False
    if resume and path.exists():
        done = _regions_done(path, fingerprint, job)
        _refuse_changed_store(path, ds)
    else:
        if os.path.lexists(path):  # a dangling link too
            if mode != "w":
                refuse_existing(path, "pass mode='w' (CLI: --overwrite) to replace it, or resume=True "
                                "(CLI: --resume) to finish an interrupted write")
            remove_path(path)  # a link itself, not what it points to; a file named *.zarr too
        _claim(path)
        created = True
    try:
        if created:
            layout = ds.copy()
            layout.attrs = {**ds.attrs, STATUS_ATTR: "incomplete"}
            # Into the folder this run claimed (mode "w-": xarray lays it out without clearing it).
            layout.to_zarr(path, compute=False, mode="w-", consolidated=False)  # consolidated once at the end
            if job is not None:
                (path / JOB_NAME).write_text(json.dumps(job, sort_keys=True, indent=1))
            _write_log(log_path, fingerprint, done)
        todo = [i for i in range(len(regions)) if i not in done]
        iterator = todo
        if progress:
            from tqdm.auto import tqdm

            iterator = tqdm(todo, desc=f"writing {path.name}", unit="region")
        for index in iterator:
            lo, hi = regions[index]
            _write_region(ds, path, lazy, dim, lo, hi)
            done.add(index)
            _write_log(log_path, fingerprint, done)
        _set_status(path, "complete")
    except BaseException:
        # Nothing of this run's values landed: leave no store that would block the next run.
        if created and not done:
            shutil.rmtree(path, ignore_errors=True)
        raise
    return path


# Attributes that make xarray encode on a region write: a variable that carries them as attributes
# holds raw (still packed) values, which xarray would pack a second time.
_RAW_KEYS = ("_FillValue", "missing_value", "scale_factor", "add_offset")


def _write_region(ds: xr.Dataset, path: Path, names: list[str], dim: str, lo: int, hi: int) -> None:
    """Write ``ds[names]`` between ``lo`` and ``hi`` along ``dim`` into the store at ``path``, in one
    compute. Raw variables (opened with ``mask_and_scale=False``) go straight into their zarr
    arrays: xarray's region write applies the store's decoded encoding to them, and fails on (or
    re-packs) values that are already packed (probe)."""
    import dask
    import dask.array as da
    import numpy as np
    import zarr

    part = ds[names].isel({dim: slice(lo, hi)})
    part = part.drop_vars([c for c in part.coords])  # coordinates were written with the layout
    raw = [name for name in names if any(key in part[name].attrs for key in _RAW_KEYS)]
    jobs = []
    if raw:
        group = zarr.open_group(str(path), mode="r+")
        regions = [tuple(slice(lo, hi) if d == dim else slice(None) for d in part[name].dims) for name in raw]
        targets = [group[name] for name in raw]
        # Floats into an integer array (an encoding dtype): rounded, as xarray's encoder does, not truncated.
        sources = [da.round(part[name].data) if np.issubdtype(t.dtype, np.integer)
                   and np.issubdtype(part[name].dtype, np.floating) else part[name].data
                   for name, t in zip(raw, targets)]
        jobs.append(da.store(sources, targets, regions=regions, compute=False))
        part = part.drop_vars(raw)
    if part.data_vars:
        with warnings.catch_warnings():
            # Opening a store without consolidated metadata lists its members; xdl's progress
            # log and job files are not zarr nodes, and zarr would warn about each of them.
            warnings.filterwarnings("ignore", message="Object at .* is not recognized", category=UserWarning)
            jobs.append(part.to_zarr(path, region={dim: slice(lo, hi)}, consolidated=False, compute=False))
    dask.compute(*jobs)


def _regions(chunks, regions_per_step: int = 1, min_length: float = 1) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` along the region dim: whole chunks, at least ``regions_per_step`` of
    them and ``min_length`` indices a region (the last may hold less).

    >>> _regions((2, 2, 2, 2, 1), 1, 3)
    [(0, 4), (4, 8), (8, 9)]
    """
    regions, start, stop, count = [], 0, 0, 0
    for size in chunks:
        stop += size
        count += 1
        if count >= regions_per_step and stop - start >= min_length:
            regions.append((start, stop))
            start, count = stop, 0
    if stop > start:
        regions.append((start, stop))
    return regions


def _claim(path: Path) -> None:
    """Create the store's folder, failing if it exists: of two writes started at once to a new
    OUT, one is refused here (both laid the store out and wrote their regions into it, mixing two
    jobs, and both said they wrote it; probe). Its parent exists: the writer lock is made there."""
    try:
        path.mkdir()
    except FileExistsError:
        raise OutputExistsError(f"{os.fspath(path)}: another process created it while this write started; "
                                "let that one finish, or choose another path.") from None


def _refuse_changed_store(path: Path, ds: xr.Dataset) -> None:
    """A store to resume must still be as this job left it: xdl's write status at its root and
    the job's arrays with the job's shapes (a finished store appended to or rewritten by another
    tool was resumed, marked complete and kept, mixed; probe)."""
    import zarr

    problem = None
    with warnings.catch_warnings():  # zarr names the progress log and job record as strangers
        warnings.simplefilter("ignore")
        group = zarr.open_group(os.fspath(path), mode="r")
        for name, var in ds.data_vars.items():
            if name not in group or tuple(group[name].shape) != var.shape:
                got = "no such array" if name not in group else f"shape {tuple(group[name].shape)}"
                problem = f"holds {name!r} with {got}, where this job writes {var.shape}"
                break
    if problem is None and store_status(path) is None:
        problem = "has no xdl write status (another tool wrote to it since)"
    if problem:
        raise InputError(f"{os.fspath(path)!r} {problem}: it is not the store this job left; pass mode='w' "
                         "(CLI: --overwrite) to start over, or choose another path.")


def _regions_done(path: Path, fingerprint: str, job) -> set[int]:
    """The regions an interrupted write of the same job finished; refuses a store of another job."""
    log_path = path / LOG_NAME
    if not log_path.exists():
        if store_status(path) == "incomplete":  # stopped between laying out the store and its log
            raise InputError(f"{os.fspath(path)!r} is an xdl write stopped before its first region (no progress "
                             "log): nothing to resume; pass mode='w' (CLI: --overwrite) to start over.")
        raise InputError(f"{os.fspath(path)!r} exists but was not written by a resumable xdl write "
                         "(no progress log); remove it or pass mode='w' (CLI: --overwrite).")
    log = json.loads(log_path.read_text())
    if log.get("fingerprint") != fingerprint:
        old_job = None
        if (path / JOB_NAME).exists():
            try:
                old_job = json.loads((path / JOB_NAME).read_text())
            except ValueError:
                old_job = None
        changes = _job_changes(old_job, job) if (old_job is not None or job is not None) else []
        what = "; ".join(changes) if changes else "variables, shapes or chunks changed"
        raise InputError(f"{os.fspath(path)!r} holds a different job ({what}); resume with the same "
                         "inputs, model and options, or pass mode='w' (CLI: --overwrite) to start over.")
    return set(log.get("done", []))


def _write_log(log_path: Path, fingerprint: str, done: set[int]) -> None:
    with replace_atomically(log_path) as temp:
        Path(temp).write_text(json.dumps({"fingerprint": fingerprint, "done": sorted(done)}))


def cleanup_quietly() -> None:
    """Close zarr's IO loop at exit, ignoring the error it raises when the loop is still running."""
    from zarr.core import sync

    try:
        sync.cleanup_resources()
    except RuntimeError:  # "Cannot close a running event loop": the process is exiting anyway
        pass


def quiet_zarr_exit() -> None:
    """After Ctrl-C mid-write, zarr's IO loop may still be busy when its exit hook closes it, which
    prints a "Cannot close a running event loop" traceback; swap the hook for one that does not."""
    sync = sys.modules.get("zarr.core.sync")
    if sync is not None and hasattr(sync, "cleanup_resources"):
        import atexit

        atexit.unregister(sync.cleanup_resources)
        atexit.unregister(cleanup_quietly)
        atexit.register(cleanup_quietly)
