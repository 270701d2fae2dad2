"""The ``xdl`` command line: gap filling, inference, training and evaluation on netCDF/zarr files.

::

    xdl inpaint IN OUT [--var V ...] [--model M] [--mask EXPR] [--domain EXPR|auto|none] ...
    xdl predict IN OUT --model M [--inputs ...] [--outputs ...] ...
    xdl train IN --model NAME_OR_PATH --out MODEL.safetensors [--config cfg.json] ...
    xdl evaluate IN [--var ...] [--model M] [--gaps scanlines,blocks,clouds] [--out metrics.csv]
    xdl zoo
    xdl demo [--out DIR] [--size N]

IN is a netCDF file (.nc, .nc4, .h5), a zarr store (a directory or ``*.zarr``) or a glob pattern
of several files (opened with ``xr.open_mfdataset(..., combine="by_coords")``); data are read
lazily and OUT is written chunk by chunk. Exit status: 0 success, 1 bad input (one line on
stderr, no traceback; set ``XDL_DEBUG=1`` for one), 2 usage error.

>>> main(["zoo"])  # doctest: +ELLIPSIS
zoo architectures (untrained; train with `xdl train`):
...
0
"""

from __future__ import annotations

import argparse
import ast
import glob
import json
import operator
import os
import shutil
import sys
import time
import warnings
from pathlib import Path

from .errors import InputError, OutputExistsError, XdlError

__all__ = ["main", "mask_expression", "open_input", "write_output"]

NETCDF_SUFFIXES = (".nc", ".nc4", ".h5", ".hdf5", ".netcdf", ".cdf")
_GLOB_CHARS = set("*?[")


# ----------------------------------------------------------------------------- safe expressions

_COMPARE = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
            ast.Gt: operator.gt, ast.GtE: operator.ge}
# Bounds that no real quality rule comes near; beyond them Python's own parser and the recursive
# walk below would fail with RecursionError/MemoryError instead of a message.
_MAX_EXPR_CHARS = 10_000
_MAX_EXPR_NODES = 5_000
_MAX_EXPR_DEPTH = 100
_ALLOWED_TEXT = ("dataset variable names, numbers, comparisons (== != < <= > >=), & (and), | (or), "
                 "~ (not) and parentheses, e.g. \"DQF == 0\" or \"(DQF == 0) & (Rad > 0)\"")


def mask_expression(expr: str, ds, what: str = "--mask"):
    """Evaluate a small boolean expression over ``ds``'s variables, safely (no ``eval``).

    The expression is parsed with :mod:`ast` and walked node by node; only variable names,
    numbers, comparisons, ``& | ~`` and parentheses are allowed, so nothing in it can run code.

    >>> import numpy as np, xarray as xr
    >>> ds = xr.Dataset({"DQF": ("x", np.array([0, 1, 0])), "Rad": ("x", np.array([1.0, 2.0, -1.0]))})
    >>> mask_expression("(DQF == 0) & (Rad > 0)", ds).values.tolist()
    [True, False, False]
    >>> mask_expression("__import__('os')", ds)
    Traceback (most recent call last):
    ...
    xdl.errors.InputError: --mask "__import__('os')": a function call is not allowed; use dataset variable names, ...
    """
    import numpy as np
    import xarray as xr

    def fail(why):
        shown = expr if not isinstance(expr, str) or len(expr) <= 120 else f"{expr[:100]}... ({len(expr):,} characters)"
        return InputError(f"{what} {json.dumps(shown)}: {why}; use {_ALLOWED_TEXT}.")

    if not isinstance(expr, str):
        raise fail("must be a text")
    if len(expr) > _MAX_EXPR_CHARS:
        raise fail(f"is {len(expr):,} characters long, more than the {_MAX_EXPR_CHARS:,} allowed; "
                   "write a shorter rule (e.g. DQF < 2 instead of many == terms)")
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError as e:
        raise fail(f"not a valid expression ({e.msg})") from None
    except (RecursionError, MemoryError):
        raise fail(f"is nested too deeply (more than {_MAX_EXPR_DEPTH} levels)") from None
    nodes, stack = 0, [(tree, 1)]
    while stack:  # iteratively: the tree may be deeper than Python's recursion limit
        node, depth = stack.pop()
        nodes += 1
        if depth > _MAX_EXPR_DEPTH or nodes > _MAX_EXPR_NODES:
            raise fail(f"is nested too deeply or too long (at most {_MAX_EXPR_DEPTH} levels of operators "
                       f"and {_MAX_EXPR_NODES:,} terms); write a shorter rule")
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))

    def is_bool(v):
        return getattr(v, "dtype", None) == bool or isinstance(v, (bool, np.bool_))

    def walk(node):
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Name):
            if node.id not in ds.variables:
                raise fail(f"{node.id!r} is not a variable of the dataset (it has: "
                           f"{', '.join(map(str, ds.variables))})")
            return ds[node.id]
        if isinstance(node, ast.Constant):
            if isinstance(node.value, (int, float)):  # bool is an int too: True/False are fine
                return node.value
            raise fail(f"the constant {node.value!r} is not a number")
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
            return -walk(node.operand)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Invert):
            value = walk(node.operand)
            if not is_bool(value):
                raise fail("~ applies to a condition; write ~(DQF == 0)")
            return ~value
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.BitAnd, ast.BitOr)):
            left, right = walk(node.left), walk(node.right)
            if not (is_bool(left) and is_bool(right)):
                # Python binds & tighter than ==: "A == 0 & B > 0" means "A == (0 & B) > 0".
                raise fail("& and | combine conditions; put each comparison in parentheses: (A == 0) & (B > 0)")
            return left & right if isinstance(node.op, ast.BitAnd) else left | right
        if isinstance(node, ast.Compare):
            if not all(type(op) in _COMPARE for op in node.ops):
                raise fail("only == != < <= > >= compare values (no 'in' or 'is')")
            result, left = None, walk(node.left)
            for op, comp in zip(node.ops, node.comparators):
                right = walk(comp)
                part = _COMPARE[type(op)](left, right)
                result = part if result is None else result & part
                left = right
            return result
        kinds = {ast.Call: "a function call", ast.Attribute: "attribute access", ast.Subscript: "indexing",
                 ast.BoolOp: "'and'/'or' (use & and | with parentheses)", ast.Lambda: "a lambda",
                 ast.BinOp: "arithmetic"}
        why = next((v for k, v in kinds.items() if isinstance(node, k)), f"{type(node).__name__} syntax")
        raise fail(f"{why} is not allowed")

    value = walk(tree)
    if not isinstance(value, xr.DataArray) or value.dtype != bool:
        raise fail("the expression must be a condition on variables, such as DQF == 0")
    return value


# ----------------------------------------------------------------------------- files

def _parse_chunks(text: str):
    """``"y=512,x=512"`` -> ``{"y": 512, "x": 512}``; ``"auto"``; ``"none"`` -> None (no dask);
    ``"file"`` -> the file's own chunks (the default)."""
    text = text.strip()
    if text in ("auto", "none", "file", ""):
        return {"auto": "auto", "none": None, "file": "file", "": "file"}[text]
    out = {}
    for part in text.split(","):
        name, sep, size = part.partition("=")
        if not sep or not name.strip():
            raise argparse.ArgumentTypeError(f"bad chunks {text!r}: write dim=size pairs, e.g. y=512,x=512")
        size = size.strip()
        if size in ("auto", "-1"):
            out[name.strip()] = "auto" if size == "auto" else -1
            continue
        try:
            out[name.strip()] = int(size)
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad chunk size {size!r} in {text!r}: give an integer, "
                                             "e.g. y=512,x=512") from None
    return out


def _is_zarr(path: str) -> bool:
    p = path.rstrip("/")
    return p.endswith(".zarr") or (os.path.isdir(p) and any(
        os.path.exists(os.path.join(p, f)) for f in ("zarr.json", ".zgroup", ".zattrs", ".zmetadata")))


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
    import xarray as xr

    chunks = {} if isinstance(chunks, str) and chunks == "file" else chunks
    if _GLOB_CHARS & set(path) and not os.path.exists(path):
        files = sorted(glob.glob(path))
        if not files:
            raise InputError(f"{path}: no file matches this pattern; check the path and quote the pattern "
                             "so that the shell does not expand it.")
        if len(files) == 1:
            path = files[0]
        else:
            try:
                # Variables without the concatenated dim (grid mapping, land mask) are taken from the
                # first file rather than compared across hundreds of files.
                for f in files:
                    if _is_zarr(f):
                        _refuse_incomplete(f)
                return xr.open_mfdataset(files, combine="by_coords", chunks=chunks, data_vars="minimal",
                                         coords="minimal", compat="override", join="outer",
                                         engine="zarr" if all(map(_is_zarr, files)) else None)
            except (ValueError, OSError) as e:
                raise InputError(f"{path}: cannot combine its {len(files)} files by their coordinates ({e}); "
                                 "give files that tile or follow each other along a coordinate.") from None
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file or directory.")
    if _is_zarr(path):
        _refuse_incomplete(path)
    kwargs = {"engine": "zarr"} if _is_zarr(path) else {}
    # Times that numpy cannot hold (or units nobody can parse) must not stop a gap fill that never
    # looks at them: try cftime, then keep every time variable as stored (raw numbers + units).
    attempts = [{}, {"decode_times": xr.coders.CFDatetimeCoder(use_cftime=True)}, {"decode_times": False}]
    for i, extra in enumerate(attempts):
        try:
            with warnings.catch_warnings():  # stores without consolidated metadata are fine
                warnings.filterwarnings("ignore", message="Failed to open Zarr store with consolidated",
                                        category=RuntimeWarning)
                ds = xr.open_dataset(path, chunks=chunks, **kwargs, **extra)
        except (ValueError, OSError) as e:
            if i + 1 < len(attempts) and "decode time" in str(e):
                continue
            raise InputError(f"{path}: cannot open it as netCDF or zarr ({e}).") from None
        if extra.get("decode_times") is False:
            warnings.warn(f"{path}: its times cannot be decoded; they pass through as stored (numbers "
                          "with their units).", UserWarning, stacklevel=2)
        return ds


def _refuse_incomplete(path: str) -> None:
    from .io import describe_incomplete, store_status

    if store_status(path) == "incomplete":
        raise InputError(f"{path}: is {describe_incomplete(path)}, so some of its values were never "
                         "written; finish it first (rerun the command that wrote it with --resume).")


def _output_kind(path: str) -> str:
    p = path.rstrip("/")
    if p.lower().endswith(NETCDF_SUFFIXES):
        return "netcdf"
    if p.endswith(".zarr") or (os.path.isdir(p) and _is_zarr(p)):
        return "zarr"
    raise InputError(f"{path}: unknown output format; end the name in .zarr (zarr store) or "
                     f"{', '.join(NETCDF_SUFFIXES)} (netCDF).")


def _input_paths(path) -> list[str]:
    """The files or stores an input argument names: a glob expanded, each as a real path."""
    if path is None:
        return []
    path = os.fspath(path)
    if _GLOB_CHARS & set(path) and not os.path.exists(path):
        return [os.path.realpath(p) for p in sorted(glob.glob(path))]
    return [os.path.realpath(path)]


def _overlaps(a: str, b: str) -> bool:
    """True when real paths ``a`` and ``b`` are the same or one lies inside the other."""
    return a == b or a.startswith(b.rstrip(os.sep) + os.sep) or b.startswith(a.rstrip(os.sep) + os.sep)


def _refuse_overlap(path: str, real: str, inputs) -> None:
    for given in inputs:
        for source in _input_paths(given):
            if _overlaps(real, source):
                how = ("is" if real == source else "contains" if source.startswith(real + os.sep)
                       else "lies inside")
                raise InputError(f"{path}: the output {how} an input ({source}); writing it would destroy "
                                 "data being read. Write to a path outside every input.")


def _check_output(path: str, overwrite: bool, inputs=()) -> str:
    """The output kind; refuses an output that is, contains or lies inside any input (overwriting
    or writing it would destroy data being read), and an existing output without --overwrite."""
    kind = _output_kind(path)
    real = os.path.realpath(path.rstrip("/") or path)
    _refuse_overlap(path, real, inputs)
    if os.path.lexists(path) and not overwrite:
        from .io import describe_incomplete, store_status

        if kind == "zarr" and store_status(path) == "incomplete":
            raise OutputExistsError(f"{path}: already exists and is {describe_incomplete(path)}; run the "
                                    "same command with --resume to finish it, or --overwrite to start over.")
        raise OutputExistsError(f"{path}: already exists; pass --overwrite to replace it, or choose another path.")
    return kind


def _identity(path: str) -> dict:
    """What identifies an input's content cheaply: a file's path, size and modification time; a
    zarr store's hash of its metadata files plus the count, total size and newest time of its files."""
    import hashlib

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


_NOT_IN_JOB = ("output", "overwrite", "resume", "progress", "func")


def _job(a, model=None) -> dict:
    """What determines an output's values, for the resumable writer to compare on --resume: every
    parsed option (the flag names as keys), the inputs' identities and the model's content hash."""
    job = {}
    for key, value in sorted(vars(a).items()):
        if key in _NOT_IN_JOB:
            continue
        flag = "IN" if key == "input" else "command" if key == "command" else f"--{key.replace('_', '-')}"
        job[flag] = value
        if key in ("input", "domain_file") and value is not None:
            job[f"{flag} files"] = [_identity(p) for p in _input_paths(value)]
    if model is not None:
        from .predict import model_key

        job["model content sha256"] = model_key(model)
    return job


def _resolve_cli_model(name, default_inpaint: bool):
    """The model object the command runs (loaded once, so its hash is of what actually runs)."""
    from .predict import resolve_model

    if name is None and default_inpaint:
        from .inpaint import _default_model

        return _default_model()
    return resolve_model(name)


_CHUNK_KEYS = ("chunks", "preferred_chunks", "chunksizes", "shards")


def _ready_to_write(ds):
    """Drop chunk encodings of the source format and make dask chunks regular (zarr needs it)."""
    import dask.array as da

    ds = ds.copy()
    for name, var in list(ds.variables.items()):
        for key in _CHUNK_KEYS:
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
    so ``resume=True`` finishes an interrupted write of the same ``job`` (see :func:`_job`).
    netCDF: to a temporary sibling renamed into place at the end, so a failure never leaves a
    half-written OUT (nor destroys an existing one). A failed write (disk full, HDF error) raises
    :class:`xdl.io.OutputWriteError` naming OUT and the cause.
    """
    from .io import STATUS_ATTR, OutputWriteError

    kind = _check_output(path, overwrite or resume)
    original, ds = ds, _ready_to_write(ds)
    if kind == "netcdf":  # compression, chunk sizes, CF-clean coordinates and bounds
        from .conventions.cf import netcdf_ready

        ds = netcdf_ready(ds, original)
    ds.attrs.pop(STATUS_ATTR, None)  # an input's status says nothing about this output
    if resume and kind != "zarr":
        raise InputError(f"{path}: --resume needs a zarr output (netCDF files are written whole).")
    try:
        if kind == "zarr" and any(hasattr(v.data, "dask") for v in ds.data_vars.values()):
            from .io import to_zarr_resumable

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
        hint = (" Free space or choose another place, then rerun with --resume (the regions written "
                "are kept)." if kind == "zarr" and os.path.exists(path) else " Nothing was left at OUT.")
        raise OutputWriteError(f"{path}: writing failed ({type(e).__name__}: {e}).{hint}") from e


def _write_whole(ds, path, kind, progress) -> None:
    target = Path(path.rstrip("/"))
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    _remove(tmp)
    try:
        if kind == "zarr":
            with warnings.catch_warnings():
                # Consolidated metadata lets readers open the store in one read; zarr 3 warns that it
                # is not in the v3 spec yet, which is noise to a CLI user.
                warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
                job = ds.to_zarr(tmp, mode="w", compute=False, consolidated=True)
        else:
            job = ds.to_netcdf(tmp, compute=False)
        if progress:
            from .progress import progress_bar

            with progress_bar(f"writing {target.name}"):
                job.compute()
        else:
            job.compute()
        if os.path.lexists(target):
            _remove(target)
        os.replace(tmp, target)
    finally:
        _remove(tmp)


def _keep_coordinate_metadata(result, source):
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
    return result


def _remove(path) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


def _check_vars(ds, names, path, what="--var"):
    for n in names or ():
        if n not in ds.data_vars:
            raise InputError(f"{path}: no variable {n!r} ({what}); it has: {', '.join(map(str, ds.data_vars))}.")


def _split(values):
    """``["a,b", "c"]`` -> ``["a", "b", "c"]``: lists given either way."""
    if not values:
        return None
    return [v for item in values for v in item.split(",") if v]


def _domain(text, ds, domain_file=None):
    """--domain: "auto", "none", or a rule over IN's variables; with --domain-file, over that
    file's variables (e.g. a land mask kept apart), matched to IN's grid by coordinate labels."""
    if domain_file is not None:
        if text is None or text in ("auto", "none"):
            raise InputError(f"--domain-file {domain_file}: give --domain a rule over its variables, "
                             "e.g. --domain-file mask.nc --domain 'land == 0'.")
        return mask_expression(text, open_input(domain_file, None), f"--domain (over {domain_file})")
    if text is None or text == "auto":
        return "auto"
    if text == "none":
        return None
    return mask_expression(text, ds, "--domain")


# ----------------------------------------------------------------------------- commands

def _sources(a) -> list:
    """Every path the command reads: IN (a glob expanded later), --domain-file and a --model file."""
    model = getattr(a, "model", None)
    return [a.input, getattr(a, "domain_file", None),
            model if model is not None and os.path.exists(model) else None]


def _cmd_inpaint(a) -> int:
    from .inpaint import inpaint

    _check_output(a.output, a.overwrite or a.resume, _sources(a))
    model = _resolve_cli_model(a.model, default_inpaint=True)
    ds = open_input(a.input, a.chunks)
    variables = _split(a.var)
    _check_vars(ds, variables, a.input)
    mask = None if a.mask is None else mask_expression(a.mask, ds, "--mask")
    result = inpaint(ds, model, variables=variables, mask=mask, domain=_domain(a.domain, ds, getattr(a, "domain_file", None)),
                     device=a.device, tile=a.tile, compile=_compile(a.compile), progress=False)
    _keep_coordinate_metadata(result, ds)
    start = time.perf_counter()
    write_output(result, a.output, overwrite=a.overwrite, progress=a.progress, resume=a.resume,
                 job=_job(a, model))
    _say(f"xdl inpaint: wrote {a.output} in {time.perf_counter() - start:.1f} s")
    return 0


def _compile(choice: str):
    return {"auto": "auto", "yes": True, "no": False}[choice]


def _cmd_predict(a) -> int:
    from .predict import predict

    _check_output(a.output, a.overwrite or a.resume, _sources(a))
    model = _resolve_cli_model(a.model, default_inpaint=False)
    ds = open_input(a.input, a.chunks)
    inputs = _split(a.inputs)
    _check_vars(ds, inputs, a.input, "--inputs")
    result = predict(ds, model, inputs=inputs, outputs=_split(a.outputs), device=a.device, tile=a.tile,
                     compile=_compile(a.compile))
    _keep_coordinate_metadata(result, ds)
    start = time.perf_counter()
    write_output(result, a.output, overwrite=a.overwrite, progress=a.progress, resume=a.resume,
                 job=_job(a, model))
    _say(f"xdl predict: wrote {a.output} in {time.perf_counter() - start:.1f} s")
    return 0


_TRAIN_FLAGS = {  # CLI attribute -> fit() keyword
    "var": "variables", "inputs": "inputs", "targets": "targets", "epochs": "epochs",
    "steps": "steps_per_epoch", "batch_size": "batch_size", "tile": "tile", "masks": "masks",
    "checkpoint_dir": "checkpoint_dir", "resume": "resume", "device": "device", "progress": "progress",
}


def _cmd_train(a) -> int:
    import inspect

    try:
        from .train import fit
    except ImportError as e:
        raise InputError(f"training is not available in this xdl installation ({e}).") from None
    kwargs = {}
    if a.config:
        if not os.path.exists(a.config):
            raise InputError(f"{a.config}: no such config file.")
        try:
            with open(a.config) as f:
                kwargs = json.load(f)
        except ValueError as e:
            raise InputError(f"{a.config}: not valid JSON ({e}).") from None
        if not isinstance(kwargs, dict):
            raise InputError(f"{a.config}: must hold a JSON object of fit() keyword arguments, "
                             'e.g. {"epochs": 10, "masks": "clouds"}.')
    for attr, key in _TRAIN_FLAGS.items():  # flags given on the command line win over the file
        value = getattr(a, attr)
        if value is not None:
            kwargs[key] = _split(value) if attr in ("var", "inputs", "targets") else value
    model = a.model or kwargs.pop("model", None)
    kwargs.pop("model", None)
    if not model:
        raise InputError("--model is required: a zoo name (see `xdl zoo`) or a saved model to fine-tune.")
    params = inspect.signature(fit).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(kwargs) - set(params))
        if unknown:
            raise InputError(f"{a.config or 'command line'}: fit() takes no option(s) {', '.join(unknown)}; "
                             f"it takes: {', '.join(p for p in params if p not in ('obj', 'model'))}.")
    _refuse_overlap(a.out, os.path.realpath(a.out), [a.input, a.config, model if os.path.exists(model) else None])
    if os.path.lexists(a.out) and not a.overwrite:
        raise OutputExistsError(f"{a.out}: already exists; pass --overwrite to replace it.")
    if os.path.exists(model):
        from .modelfile import load_model

        model = load_model(model)
    ds = open_input(a.input, a.chunks)
    for attr in ("var", "inputs", "targets"):
        _check_vars(ds, kwargs.get(_TRAIN_FLAGS[attr]), a.input, f"--{attr}")
    start = time.perf_counter()
    trained = fit(ds, model, **kwargs)
    trained.save(a.out)
    _say(f"xdl train: saved {a.out} after {time.perf_counter() - start:.1f} s")
    return 0


def _cmd_evaluate(a) -> int:
    from .evaluate import METRICS, evaluate

    if a.out:
        if not a.out.lower().endswith((".nc", ".csv")):
            raise InputError(f"{a.out}: --out must end in .nc (netCDF) or .csv.")
        _refuse_overlap(a.out, os.path.realpath(a.out), _sources(a))
        if os.path.lexists(a.out) and not a.overwrite:
            raise OutputExistsError(f"{a.out}: already exists; pass --overwrite to replace it.")
    ds = open_input(a.input, a.chunks)
    variables = _split(a.var)
    _check_vars(ds, variables, a.input)
    mask = None if a.mask is None else mask_expression(a.mask, ds, "--mask")
    gaps = _split([a.gaps])
    if not gaps:
        raise InputError("--gaps is empty; give gap kinds such as scanlines,blocks,clouds.")
    report = evaluate(ds, a.model, variables=variables, gaps=gaps if len(gaps) > 1 else gaps[0],
                      fraction=a.fraction, baselines=_split([a.baselines]) or (), mask=mask,
                      domain=_domain(a.domain, ds, getattr(a, "domain_file", None)), seed=a.seed, plot=a.plot, device=a.device, tile=a.tile,
                      compile=_compile(a.compile))
    print(format_report(report))
    if a.out:
        if a.out.lower().endswith(".csv"):
            report[list(METRICS)].to_dataframe().to_csv(a.out)
        else:
            report.to_netcdf(a.out)
        _say(f"xdl evaluate: wrote {a.out}")
    for p in report.attrs.get("plots", []):
        _say(f"xdl evaluate: wrote {p}")
    return 0


def format_report(report) -> str:
    """A plain-text table of an :func:`xdl.evaluate.evaluate` report, one block per variable/gaps."""
    lines = [f"model: {report.attrs.get('model')}   seed: {report.attrs.get('seed')}   "
             f"fraction: {report.attrs.get('fraction')}   (scores on hidden valid pixels only)"]
    head = f"  {'method':<12}{'rmse':>11}{'mae':>11}{'bias':>11}{'corr':>8}{'std_ratio':>10}{'n':>10}{'seconds':>9}"
    for v in report["variable"].values:
        units = str(report["units"].sel(variable=v).item()) if "units" in report.coords else ""
        for g in report["gaps"].values:
            share = float(report["hidden_share"].sel(variable=v, gaps=g)) if "hidden_share" in report.coords else float("nan")
            lines.append("")
            lines.append(f"{v}{f' [{units}]' if units else ''}  gaps={g}  hidden={share:.1%}")
            lines.append(head)
            sub = report.sel(variable=v, gaps=g)
            for m in report["method"].values:
                r = sub.sel({"method": m})
                lines.append(f"  {str(m):<12}{float(r.rmse):>11.4g}{float(r.mae):>11.4g}{float(r.bias):>11.3g}"
                             f"{float(r.corr):>8.3f}{float(r.std_ratio):>10.3f}{int(r.n):>10d}{float(r.seconds):>9.3f}")
    return "\n".join(lines)


def _cmd_zoo(a) -> int:
    from .models import pretrained, zoo

    print("zoo architectures (untrained; train with `xdl train`):")
    for name, desc in zoo.describe().items():
        print(f"  {name:<14} {desc}")
    bundled = pretrained.names()
    print("bundled models (use with --model NAME):")
    if not bundled:
        print("  (none bundled with this installation)")
    for name in bundled:
        try:
            from .modelfile import card_from_header, read_header

            card = card_from_header(pretrained.path(name), read_header(pretrained.path(name))[0])
            desc = card.get("description") or card.get("architecture") or ""
        except XdlError as e:
            desc = f"(unreadable: {e})"
        print(f"  {name:<14} {desc.splitlines()[0] if desc else ''}")
    return 0


def _cmd_demo(a) -> int:
    from .demo import run

    run(out_dir=a.out, size=a.size, model=a.model, seed=a.seed)
    return 0


def _say(text: str) -> None:
    print(text, file=sys.stderr)


# ----------------------------------------------------------------------------- parser

_EPILOGS = {
    "inpaint": "example:\n  xdl inpaint goes.nc goes_filled.zarr --var Rad --mask \"DQF == 0\" --chunks y=512,x=512",
    "predict": "example:\n  xdl predict goes.nc wv.zarr --model c13_to_c08.xdl.safetensors --inputs Rad --outputs C08",
    "train": ("example:\n  xdl train 'era5_*.nc' --model fill-unet --var t2m --masks clouds --epochs 20 "
              "--out t2m.xdl.safetensors\n  xdl train era5.zarr --config fit.json --model fill-unet "
              "--out t2m.xdl.safetensors --epochs 5\n"
              "--config: a JSON object of xdl.train.fit keyword arguments; flags override it."),
    "evaluate": "example:\n  xdl evaluate sst.nc --var sst --gaps scanlines,blocks,clouds --fraction 0.1 --plot sst.png --out sst_metrics.csv",
    "zoo": "example:\n  xdl zoo",
    "demo": "example:\n  xdl demo --out xdl_demo_out --size 256",
}


def _parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser(prog="xdl", formatter_class=fmt,
                                description="Deep-learning models on xarray/Dask/Zarr Earth-science data.",
                                epilog="example:\n  xdl demo\n  xdl inpaint in.nc out.zarr --var sst\n"
                                       "run `xdl COMMAND --help` for each command's options.")
    from .version import __version__

    p.add_argument("--version", action="version", version=f"xdl {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def cmd(name, help_):
        return sub.add_parser(name, help=help_, description=help_, epilog=_EPILOGS[name], formatter_class=fmt)

    def io(sp, output=True):
        sp.add_argument("input", metavar="IN", help="netCDF file, zarr store, or a quoted glob of files")
        if output:
            sp.add_argument("output", metavar="OUT", help="output: *.zarr or *.nc")
        sp.add_argument("--chunks", type=_parse_chunks, default="file", metavar="SPEC",
                        help="dask chunks: dim=size pairs (y=512,x=512), 'auto', 'none' (in memory) or 'file' (default: the file's own)")

    def engine(sp):
        sp.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:1")
        sp.add_argument("--tile", type=int, default=None, help="largest tile side in pixels (default: by device)")
        sp.add_argument("--compile", choices=["auto", "yes", "no"], default="auto",
                        help="torch.compile the model: auto (on CUDA), yes, no")

    def writing(sp):
        sp.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
        sp.add_argument("--resume", action="store_true",
                        help="finish an interrupted write to a zarr OUT: regions already written are kept")
        sp.add_argument("--progress", action=argparse.BooleanOptionalAction, default=sys.stderr.isatty(),
                        help="show a progress bar (default: when stderr is a terminal)")

    s = cmd("inpaint", "Fill the gaps of variables with a learned gap filler; valid values stay identical.")
    io(s)
    s.add_argument("--var", action="append", metavar="V", help="variable to fill (repeat or comma-separate; default: every float field)")
    s.add_argument("--model", default=None, help="model file, bundled name (default: the bundled default model)")
    s.add_argument("--mask", default=None, metavar="EXPR", help='valid-data rule, e.g. "DQF == 0" (default: CF _FillValue/valid_range)')
    s.add_argument("--domain", default="auto", metavar="EXPR", help='where gaps may be filled: "auto", "none", or e.g. "land == 0"')
    s.add_argument("--domain-file", default=None, metavar="FILE",
                   help='take --domain\'s variables from this file, e.g. --domain-file mask.nc --domain "land == 0"')
    engine(s)
    writing(s)
    s.set_defaults(func=_cmd_inpaint)

    s = cmd("predict", "Run a model over a dataset (learned mappings between variables).")
    io(s)
    s.add_argument("--model", required=True, help="model file (.safetensors) or bundled name")
    s.add_argument("--inputs", action="append", metavar="V", help="input variables, in the model's channel order")
    s.add_argument("--outputs", action="append", metavar="V", help="names for the output variables")
    engine(s)
    writing(s)
    s.set_defaults(func=_cmd_predict)

    s = cmd("train", "Train a zoo architecture (or fine-tune a saved model) and save it.")
    io(s, output=False)
    s.add_argument("--model", default=None, metavar="NAME_OR_PATH", help="zoo name (see `xdl zoo`) or a saved model")
    s.add_argument("--out", required=True, metavar="MODEL.safetensors", help="where to save the trained model")
    s.add_argument("--config", default=None, metavar="CFG.json", help="JSON object of fit() keyword arguments")
    s.add_argument("--var", action="append", default=None, help="variables to learn to fill")
    s.add_argument("--inputs", action="append", default=None, help="input variables (mappings)")
    s.add_argument("--targets", action="append", default=None, help="target variables (mappings)")
    s.add_argument("--epochs", type=int, default=None)
    s.add_argument("--steps", type=int, default=None, help="steps per epoch")
    s.add_argument("--batch-size", type=int, default=None)
    s.add_argument("--tile", type=int, default=None, help="training tile side in pixels")
    s.add_argument("--masks", default=None, metavar="KIND", help="training gaps: irregular, scanlines, blocks, clouds, observed")
    s.add_argument("--checkpoint-dir", default=None, metavar="DIR")
    s.add_argument("--resume", action="store_true", default=None, help="continue from the last checkpoint")
    s.add_argument("--device", default=None)
    s.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    s.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    s.set_defaults(func=_cmd_train)

    s = cmd("evaluate", "Hide valid data with realistic gaps, fill them, and score the model against baselines.")
    io(s, output=False)
    s.add_argument("--var", action="append", metavar="V", help="variables to score (default: every float field)")
    s.add_argument("--model", default=None, help="model file or bundled name (default: the bundled default)")
    s.add_argument("--gaps", default="scanlines", help="comma-separated gap kinds: scanlines, blocks, clouds, irregular")
    s.add_argument("--fraction", type=float, default=0.1, help="share of the valid pixels to hide (default 0.1)")
    s.add_argument("--baselines", default="linear,biharmonic", help="comma-separated: linear, nearest, biharmonic ('' for none)")
    s.add_argument("--mask", default=None, metavar="EXPR", help='valid-data rule, e.g. "DQF == 0"')
    s.add_argument("--domain", default="auto", metavar="EXPR", help='"auto", "none", or e.g. "land == 0"')
    s.add_argument("--domain-file", default=None, metavar="FILE", help="take --domain's variables from this file")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--plot", default=None, metavar="PNG",
                   help="figure of truth, gaps, fills and errors (first sample); with several variables or "
                        "gap kinds, one file each: PNG's stem + _<var>_<gaps>.png (the paths are printed)")
    s.add_argument("--out", default=None, metavar="METRICS", help="write the metrics to .nc or .csv")
    s.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    engine(s)
    s.set_defaults(func=_cmd_evaluate)

    s = cmd("zoo", "List the zoo architectures and the bundled models.")
    s.set_defaults(func=_cmd_zoo)

    s = cmd("demo", "Fill synthetic gaps in a generated field and compare with linear interpolation.")
    s.add_argument("--out", default="xdl_demo_out", metavar="DIR", help="output folder (default xdl_demo_out)")
    s.add_argument("--size", type=int, default=256, help="field side in pixels (default 256)")
    s.add_argument("--model", default=None, help="model file or bundled name (default: the bundled default)")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=_cmd_demo)
    return p


def _zarr_cleanup_quietly() -> None:
    from zarr.core import sync

    try:
        sync.cleanup_resources()
    except RuntimeError:  # "Cannot close a running event loop": the process is exiting anyway
        pass


def _quiet_zarr_exit() -> None:
    """After Ctrl-C mid-write, zarr's IO loop may still be busy when its exit hook closes it, which
    prints a "Cannot close a running event loop" traceback; swap the hook for one that does not."""
    sync = sys.modules.get("zarr.core.sync")
    if sync is not None and hasattr(sync, "cleanup_resources"):
        import atexit

        atexit.unregister(sync.cleanup_resources)
        atexit.unregister(_zarr_cleanup_quietly)
        atexit.register(_zarr_cleanup_quietly)


def main(argv=None) -> int:
    """Run the ``xdl`` command line; returns the exit status (0 ok, 1 bad input, 2 usage).

    >>> main(["inpaint", "/no/such/file.nc", "out.zarr"])
    1
    """
    parser = _parser()
    args = parser.parse_args(argv)  # exits 2 on usage errors, 0 on --help
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        _quiet_zarr_exit()
        print(f"xdl {args.command}: interrupted", file=sys.stderr)
        return 130
    except (XdlError, OSError, ValueError, KeyError) as e:
        # Bad input: one line, no traceback (XDL_DEBUG=1 shows it for bug reports).
        if os.environ.get("XDL_DEBUG"):
            raise
        msg = str(e).strip().replace("\n", " ") or type(e).__name__
        print(f"xdl {args.command}: error: {msg}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # python -m xdl.cli
    sys.exit(main())
