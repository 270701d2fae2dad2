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
import os
import sys
import time

from .errors import InputError, XdlError
from .io.expr import domain_argument, mask_expression
from .io.files import refuse_existing, refuse_overlap
from .io.open import open_input, read_config
from .io.write import check_output, keep_coordinate_metadata, write_output
from .io.zarr import job_record

__all__ = ["main"]


# ----------------------------------------------------------------------------- arguments

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


def _check_vars(ds, names, path, what="--var"):
    for n in names or ():
        if n not in ds.data_vars:
            raise InputError(f"{path}: no variable {n!r} ({what}); it has: {', '.join(map(str, ds.data_vars))}.")


def _split(values):
    """``["a,b", "c"]`` -> ``["a", "b", "c"]``: lists given either way."""
    if not values:
        return None
    return [v for item in values for v in item.split(",") if v]


# ----------------------------------------------------------------------------- commands

def _sources(a) -> list:
    """Every path the command reads: IN (a glob expanded later), --domain-file and a --model file."""
    model = getattr(a, "model", None)
    return [a.input, getattr(a, "domain_file", None),
            model if model is not None and os.path.exists(model) else None]


def _cmd_inpaint(a) -> int:
    from .inpaint import inpaint
    from .models.pretrained import DEFAULT_INPAINT
    from .models.resolve import resolve_model

    check_output(a.output, a.overwrite or a.resume, _sources(a))
    model = resolve_model(a.model, default=DEFAULT_INPAINT)  # loaded once: the job hashes what runs
    ds = open_input(a.input, a.chunks)
    variables = _split(a.var)
    _check_vars(ds, variables, a.input)
    mask = None if a.mask is None else mask_expression(a.mask, ds, "--mask")
    result = inpaint(ds, model, variables=variables, mask=mask, domain=domain_argument(a.domain, ds, a.domain_file),
                     device=a.device, tile=a.tile, compile=_compile(a.compile), progress=False)
    return _write(a, result, ds, model)


def _compile(choice: str):
    return {"auto": "auto", "yes": True, "no": False}[choice]


def _write(a, result, ds, model) -> int:
    """Write inpaint's or predict's result to OUT (coordinates as in IN) and say how long it took."""
    from .models.resolve import model_key

    keep_coordinate_metadata(result, ds)
    start = time.perf_counter()
    write_output(result, a.output, overwrite=a.overwrite, progress=a.progress, resume=a.resume,
                 job=job_record(vars(a), model_key(model)))
    _say(f"xdl {a.command}: wrote {a.output} in {time.perf_counter() - start:.1f} s")
    return 0


def _cmd_predict(a) -> int:
    from .models.resolve import resolve_model
    from .predict import predict

    check_output(a.output, a.overwrite or a.resume, _sources(a))
    model = resolve_model(a.model)
    ds = open_input(a.input, a.chunks)
    inputs = _split(a.inputs)
    _check_vars(ds, inputs, a.input, "--inputs")
    result = predict(ds, model, inputs=inputs, outputs=_split(a.outputs), device=a.device, tile=a.tile,
                     compile=_compile(a.compile))
    return _write(a, result, ds, model)


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
    kwargs = read_config(a.config) if a.config else {}
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
    refuse_overlap(a.out, [a.input, a.config, model if os.path.exists(model) else None])
    if not a.overwrite:
        refuse_existing(a.out, "pass --overwrite to replace it")
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
    from .evaluate import evaluate
    from .report import format_report, save_report

    if a.out:
        if not a.out.lower().endswith((".nc", ".csv")):
            raise InputError(f"{a.out}: --out must end in .nc (netCDF) or .csv.")
        refuse_overlap(a.out, _sources(a))
        if not a.overwrite:
            refuse_existing(a.out, "pass --overwrite to replace it")
    ds = open_input(a.input, a.chunks)
    variables = _split(a.var)
    _check_vars(ds, variables, a.input)
    mask = None if a.mask is None else mask_expression(a.mask, ds, "--mask")
    gaps = _split([a.gaps])
    if not gaps:
        raise InputError("--gaps is empty; give gap kinds such as scanlines,blocks,clouds.")
    report = evaluate(ds, a.model, variables=variables, gaps=gaps if len(gaps) > 1 else gaps[0],
                      fraction=a.fraction, baselines=_split([a.baselines]) or (), mask=mask,
                      domain=domain_argument(a.domain, ds, a.domain_file), seed=a.seed, plot=a.plot, device=a.device, tile=a.tile,
                      compile=_compile(a.compile))
    print(format_report(report))
    if a.out:
        save_report(report, a.out)
        _say(f"xdl evaluate: wrote {a.out}")
    for p in report.attrs.get("plots", []):
        _say(f"xdl evaluate: wrote {p}")
    return 0


def _cmd_zoo(a) -> int:
    from .models import pretrained, zoo

    print("zoo architectures (untrained; train with `xdl train`):")
    for name, desc in zoo.describe().items():
        print(f"  {name:<14} {desc}")
    bundled = pretrained.describe()
    print("bundled models (use with --model NAME):")
    if not bundled:
        print("  (none bundled with this installation)")
    for name, desc in bundled.items():
        print(f"  {name:<14} {desc}")
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


def _io_args(sp, output=True) -> None:
    sp.add_argument("input", metavar="IN", help="netCDF file, zarr store, or a quoted glob of files")
    if output:
        sp.add_argument("output", metavar="OUT", help="output: *.zarr or *.nc")
    sp.add_argument("--chunks", type=_parse_chunks, default="file", metavar="SPEC",
                    help="dask chunks: dim=size pairs (y=512,x=512), 'auto', 'none' (in memory) or 'file' (default: the file's own)")


def _engine_args(sp) -> None:
    sp.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:1")
    sp.add_argument("--tile", type=int, default=None, help="largest tile side in pixels (default: by device)")
    sp.add_argument("--compile", choices=["auto", "yes", "no"], default="auto",
                    help="torch.compile the model: auto (on CUDA), yes, no")


def _writing_args(sp) -> None:
    sp.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    sp.add_argument("--resume", action="store_true",
                    help="finish an interrupted write to a zarr OUT: regions already written are kept")
    sp.add_argument("--progress", action=argparse.BooleanOptionalAction, default=sys.stderr.isatty(),
                    help="show a progress bar (default: when stderr is a terminal)")


def _inpaint_args(s) -> None:
    _io_args(s)
    s.add_argument("--var", action="append", metavar="V", help="variable to fill (repeat or comma-separate; default: every float field)")
    s.add_argument("--model", default=None, help="model file, bundled name (default: the bundled default model)")
    s.add_argument("--mask", default=None, metavar="EXPR", help='valid-data rule, e.g. "DQF == 0" (default: CF _FillValue/valid_range)')
    s.add_argument("--domain", default="auto", metavar="EXPR", help='where gaps may be filled: "auto", "none", or e.g. "land == 0"')
    s.add_argument("--domain-file", default=None, metavar="FILE",
                   help='take --domain\'s variables from this file, e.g. --domain-file mask.nc --domain "land == 0"')
    _engine_args(s)
    _writing_args(s)


def _predict_args(s) -> None:
    _io_args(s)
    s.add_argument("--model", required=True, help="model file (.safetensors) or bundled name")
    s.add_argument("--inputs", action="append", metavar="V", help="input variables, in the model's channel order")
    s.add_argument("--outputs", action="append", metavar="V", help="names for the output variables")
    _engine_args(s)
    _writing_args(s)


def _train_args(s) -> None:
    _io_args(s, output=False)
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


def _evaluate_args(s) -> None:
    _io_args(s, output=False)
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
    _engine_args(s)


def _demo_args(s) -> None:
    s.add_argument("--out", default="xdl_demo_out", metavar="DIR", help="output folder (default xdl_demo_out)")
    s.add_argument("--size", type=int, default=256, help="field side in pixels (default 256)")
    s.add_argument("--model", default=None, help="model file or bundled name (default: the bundled default)")
    s.add_argument("--seed", type=int, default=0)


# name: (help, the function adding its arguments, the function running it)
_COMMANDS = {
    "inpaint": ("Fill the gaps of variables with a learned gap filler; valid values stay identical.",
                _inpaint_args, _cmd_inpaint),
    "predict": ("Run a model over a dataset (learned mappings between variables).", _predict_args, _cmd_predict),
    "train": ("Train a zoo architecture (or fine-tune a saved model) and save it.", _train_args, _cmd_train),
    "evaluate": ("Hide valid data with realistic gaps, fill them, and score the model against baselines.",
                 _evaluate_args, _cmd_evaluate),
    "zoo": ("List the zoo architectures and the bundled models.", None, _cmd_zoo),
    "demo": ("Fill synthetic gaps in a generated field and compare with linear interpolation.", _demo_args, _cmd_demo),
}


def _parser() -> argparse.ArgumentParser:
    from .version import __version__

    fmt = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser(prog="xdl", formatter_class=fmt,
                                description="Deep-learning models on xarray/Dask/Zarr Earth-science data.",
                                epilog="example:\n  xdl demo\n  xdl inpaint in.nc out.zarr --var sst\n"
                                       "run `xdl COMMAND --help` for each command's options.")
    p.add_argument("--version", action="version", version=f"xdl {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (help_, add_args, run) in _COMMANDS.items():
        s = sub.add_parser(name, help=help_, description=help_, epilog=_EPILOGS[name], formatter_class=fmt)
        if add_args is not None:
            add_args(s)
        s.set_defaults(func=run)
    return p


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
        from .io.zarr import quiet_zarr_exit

        quiet_zarr_exit()
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
