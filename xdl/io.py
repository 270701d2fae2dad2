"""Writing results: zarr stores that can resume after an interruption, and no silent overwrites.

A resumable write lays out the store once (metadata, coordinates, small variables), then writes
the lazy variables region by region along one dim, recording each finished region in a small
JSON log inside the store (replaced atomically). After a crash, ``resume=True`` skips the regions
in the log and rewrites the others, so a half-written chunk is always redone.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import dask.array as da
import xarray as xr

from .errors import InputError, OutputExistsError

LOG_NAME = ".xdl_progress.json"


def _fingerprint(ds: xr.Dataset, dim: str, regions: list[tuple[int, int]]) -> str:
    """What the store is a write of: variables, shapes, dtypes and regions."""
    layout = {name: [list(var.dims), list(var.shape), str(var.dtype)] for name, var in ds.variables.items()}
    text = json.dumps({"layout": layout, "dim": dim, "regions": regions}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _region_dim(ds: xr.Dataset) -> tuple[str, tuple[int, ...]]:
    """The dim to write along: the first dim of the first lazy variable, with its chunks."""
    for var in ds.data_vars.values():
        if isinstance(var.data, da.Array):
            return var.dims[0], var.chunks[0]
    raise InputError("nothing lazy to write region by region; use ds.to_zarr(path) directly.")


def check_writable(path, mode: str | None) -> None:
    """Refuse to overwrite an existing output unless ``mode="w"``."""
    if os.path.exists(path) and mode != "w":
        raise OutputExistsError(f"{os.fspath(path)!r} already exists; pass mode='w' (CLI: --overwrite) to "
                                "replace it, or resume=True (CLI: --resume) to finish an interrupted write.")


def to_zarr_resumable(ds: xr.Dataset, path, *, resume: bool = False, mode: str | None = None,
                      regions_per_step: int = 1, progress: bool = False) -> Path:
    """Write ``ds`` to a zarr store region by region; ``resume=True`` finishes an interrupted write.

    >>> import numpy as np, xarray as xr, tempfile, os
    >>> ds = xr.Dataset({"v": (("time", "y"), np.arange(6.0).reshape(3, 2))}).chunk({"time": 1})
    >>> path = os.path.join(tempfile.mkdtemp(), "out.zarr")
    >>> _ = to_zarr_resumable(ds, path)
    >>> xr.open_zarr(path).v.values.tolist()
    [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]
    """
    path = Path(path)
    dim, chunks = _region_dim(ds)
    # Align every lazy variable's chunks along the region dim so each region is whole chunks.
    ds = ds.chunk({dim: chunks})
    # Only lazy data variables along the region dim are written region by region; everything
    # else (coordinates, grid-mapping and other small variables) is computed now and written
    # with the layout: a dask-backed coordinate would otherwise never be written.
    lazy = [name for name, var in ds.data_vars.items() if dim in var.dims and isinstance(var.data, da.Array)]
    ds = ds.copy()
    for name in list(ds.variables):
        if name not in lazy and isinstance(ds[name].variable.data, da.Array):
            ds[name].variable.load()
    bounds, start = [], 0
    for size in chunks:
        bounds.append((start, start + size))
        start += size
    regions = [(bounds[i][0], bounds[min(i + regions_per_step, len(bounds)) - 1][1])
               for i in range(0, len(bounds), regions_per_step)]
    fingerprint = _fingerprint(ds, dim, regions)
    log_path = path / LOG_NAME
    done: set[int] = set()
    if resume and path.exists():
        if not log_path.exists():
            raise InputError(f"{os.fspath(path)!r} exists but was not written by a resumable xdl write "
                             "(no progress log); remove it or pass mode='w'.")
        log = json.loads(log_path.read_text())
        if log.get("fingerprint") != fingerprint:
            raise InputError(f"{os.fspath(path)!r} holds a different job (variables, shapes or chunks "
                             "changed); pass mode='w' to start over.")
        done = set(log.get("done", []))
    else:
        if path.exists():
            check_writable(path, mode)
            shutil.rmtree(path)
        ds.to_zarr(path, compute=False, mode="w")
        _write_log(log_path, fingerprint, done)
    todo = [i for i in range(len(regions)) if i not in done]
    iterator = todo
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(todo, desc=f"writing {path.name}", unit="region")
    for index in iterator:
        lo, hi = regions[index]
        part = ds[lazy].isel({dim: slice(lo, hi)})
        part = part.drop_vars([c for c in part.coords])  # coordinates were written with the layout
        part.to_zarr(path, region={dim: slice(lo, hi)})
        done.add(index)
        _write_log(log_path, fingerprint, done)
    return path


def _write_log(log_path: Path, fingerprint: str, done: set[int]) -> None:
    temp = log_path.with_suffix(".tmp")
    temp.write_text(json.dumps({"fingerprint": fingerprint, "done": sorted(done)}))
    os.replace(temp, log_path)
