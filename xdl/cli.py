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
zoo architectures (untrained; `xdl train` trains the spatial ones):
...
0
"""
from __future__ import annotations

import argparse
import functools
import os
import signal
import sys
import threading
import time
import warnings

from .errors import InputError, XdlError, XdlWarning
from .io.expr import domain_argument, mask_expression
from .io.files import refuse_existing, refuse_overlap
from .io.open import open_input, read_config
from .io.write import check_output, keep_coordinate_metadata, write_output
from .io.zarr import job_record
from .cli_args import EPILOGS, demo_args, evaluate_args, inpaint_args, predict_args, train_args

__all__ = ["main"]


# ----------------------------------------------------------------------------- arguments

def _check_vars(ds, names, path, what="--var", empty_ok=False):
    """Every name in ``names`` is a data variable of ``ds``; an option given but naming none (``--var
    ' , '`` filled nothing and exited 0: probe) is refused unless ``empty_ok`` (``--context ""``: none)."""
    if names is not None and not names and not empty_ok:
        raise InputError(f"{what} names no variable; give names (e.g. {what} sst) or leave it out.")
    for n in names or ():
        if n not in ds.data_vars:
            raise InputError(f"{path}: no variable {n!r} ({what}); it has: {', '.join(map(str, ds.data_vars))}.")


def _split(values):
    """``["a,b", "c"]`` -> ``["a", "b", "c"]``: lists given either way."""
    if not values:
        return None
    return [v.strip() for item in values for v in item.split(",") if v.strip()]  # "a, b" is a and b


# ----------------------------------------------------------------------------- commands

def _sources(a) -> list:
    """Every path the command reads: IN (a glob expanded later), --domain-file and a --model file."""
    model = getattr(a, "model", None)
    return [a.input, getattr(a, "domain_file", None),
            model if model is not None and os.path.exists(model) else None]


def _cmd_inpaint(a) -> int:
    from .inpaint import inpaint
    from .models.pretrained import default_for
    from .models.resolve import resolve_model

    check_output(a.output, a.overwrite or a.resume, _sources(a))
    # Names as split (--context "" from an empty shell variable is no context: the plain default).
    # The model is loaded once: the job hashes what runs.
    context = _split(a.context)
    model = resolve_model(a.model, default=default_for(context, a.time_window, a.uncertainty))
    ds = open_input(a.input, a.chunks)
    variables = _split(a.var)
    _check_vars(ds, variables, a.input)
    mask = None if a.mask is None else _keeping_some(mask_expression(a.mask, ds, "--mask"), a.mask)
    _check_vars(ds, context, a.input, "--context", empty_ok=True)
    result = inpaint(ds, model, variables=variables, mask=mask, domain=domain_argument(a.domain, ds, a.domain_file),
                     device=a.device, tile=a.tile, compile=_compile(a.compile), progress=False,
                     context=context, time_window=a.time_window, uncertainty=a.uncertainty)
    return _write(a, result, ds, model)


def _compile(choice: str):
    return {"auto": "auto", "yes": True, "no": False}[choice]


def _write(a, result, ds, model) -> int:
    """Write inpaint's or predict's result to OUT (coordinates as in IN) and say how long it took."""
    from .models.resolve import model_key

    keep_coordinate_metadata(result, ds)
    start = time.perf_counter()
    # Name lists as the command reads them: --var a,b and --var a --var b are one job.
    options = {**vars(a), **{k: _split(getattr(a, k)) for k in _NAME_LISTS if hasattr(a, k)}}
    write_output(result, a.output, overwrite=a.overwrite, progress=a.progress, resume=a.resume,
                 job=job_record(options, model_key(model)))
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


_NAME_LISTS = ("var", "inputs", "targets", "outputs", "context")  # options that take names, repeated or comma-separated

_TRAIN_FLAGS = {  # CLI attribute -> fit() keyword
    "var": "variables", "inputs": "inputs", "targets": "targets", "epochs": "epochs",
    "steps": "steps_per_epoch", "batch_size": "batch_size", "tile": "tile", "masks": "masks",
    "checkpoint_dir": "checkpoint_dir", "resume": "resume", "device": "device", "progress": "progress",
    "context": "context", "time_window": "time_window",
}


def _cmd_train(a) -> int:
    import inspect

    try:
        from .train import fit
    except ImportError as e:
        raise InputError(f"training is not available in this xdl installation ({e}).") from None
    kwargs = read_config(a.config) if a.config else {}
    for attr in _NAME_LISTS:  # one name may be a string, as fit() takes it
        key = _TRAIN_FLAGS.get(attr)
        if isinstance(kwargs.get(key), str):
            kwargs[key] = [kwargs[key]]
    for attr, key in _TRAIN_FLAGS.items():  # flags given on the command line win over the file
        value = getattr(a, attr)
        if value is not None:
            kwargs[key] = _split(value) if attr in _NAME_LISTS else value
    # A bar only on a terminal, as inpaint's (it filled log files line by line; probe).
    kwargs.setdefault("progress", sys.stderr.isatty())
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
    _check_file_output(a.out, "--out")
    if not a.overwrite:
        refuse_existing(a.out, "pass --overwrite to replace it")
    checkpoints = kwargs.get("checkpoint_dir")
    if checkpoints is not None and os.path.exists(checkpoints) and not os.path.isdir(checkpoints):
        raise InputError(f"--checkpoint-dir {checkpoints}: is a file; give a folder (made if missing).")
    if os.path.exists(model):
        from .modelfile import load_model

        model = load_model(model)
    ds = open_input(a.input, a.chunks)
    for attr in ("var", "inputs", "targets", "context"):
        _check_vars(ds, kwargs.get(_TRAIN_FLAGS[attr]), a.input, f"--{attr}", empty_ok=attr == "context")
    start = time.perf_counter()
    trained = fit(ds, model, **kwargs)
    trained.save(a.out)
    _say(f"xdl train: saved {a.out} after {time.perf_counter() - start:.1f} s")
    return 0


def _cmd_evaluate(a) -> int:
    from .evaluate import evaluate
    from .plotting import figure_path
    from .report import format_report, save_report

    if a.out:
        if not a.out.lower().endswith((".nc", ".csv")):
            raise InputError(f"{a.out}: --out must end in .nc (netCDF) or .csv.")
        refuse_overlap(a.out, _sources(a))
        _check_file_output(a.out, "--out")  # before the evaluation, not after it (probe)
        if not a.overwrite:
            refuse_existing(a.out, "pass --overwrite to replace it")
    if a.plot:  # the same checks as --out: never inside an input, never over a file without --overwrite
        refuse_overlap(a.plot, _sources(a))
        written = os.fspath(figure_path(a.plot))  # "fig" writes fig.png: that is the file to check
        refuse_overlap(written, _sources(a))
        if not a.overwrite:
            for existing in _plot_files(written):
                refuse_existing(existing, "pass --overwrite to replace it")
    ds = open_input(a.input, a.chunks)
    variables = _split(a.var)
    _check_vars(ds, variables, a.input)
    mask = None if a.mask is None else _keeping_some(mask_expression(a.mask, ds, "--mask"), a.mask)
    gaps = _split([a.gaps])
    if not gaps:
        raise InputError("--gaps is empty; give gap kinds such as scanlines,blocks,clouds.")
    context = _split(a.context)
    _check_vars(ds, context, a.input, "--context", empty_ok=True)
    # Only when given: the same call as before for the single-field case.
    with_context = {"context": context, "time_window": a.time_window} if context or a.time_window else {}
    report = evaluate(ds, a.model, variables=variables, gaps=gaps if len(gaps) > 1 else gaps[0],
                      fraction=a.fraction, baselines=None if a.baselines is None else (_split([a.baselines]) or ()), mask=mask,
                      domain=domain_argument(a.domain, ds, a.domain_file), seed=a.seed, plot=a.plot, device=a.device, tile=a.tile,
                      compile=_compile(a.compile), **with_context)
    print(format_report(report))
    if a.out:
        save_report(report, a.out)
        _say(f"xdl evaluate: wrote {a.out}")
    for p in report.attrs.get("plots", []):
        _say(f"xdl evaluate: wrote {p}")
    return 0


def _plot_files(plot: str) -> list[str]:
    """The files ``--plot`` may write that exist already: the figure path itself
    (:func:`~xdl.plotting.figure_path`) and, for several variables or gap kinds,
    ``<stem>_<variable>_<gaps><suffix>`` beside it (xdl.evaluate)."""
    import glob

    stem, suffix = os.path.splitext(plot)
    return [plot] + sorted(glob.glob(glob.escape(stem) + "_*" + suffix))


def _cmd_zoo(a) -> int:
    from .models import pretrained, registry, zoo

    print("zoo architectures (untrained; `xdl train` trains the spatial ones):")
    for name, desc in zoo.describe().items():
        # fit trains spatial models; a pointwise one is trained with torch and run with predict (probe).
        pointwise = getattr(registry.get(name), "mode", None) == "pointwise"
        print(f"  {name:<14} {desc}{' (pointwise: not trained by `xdl train`)' if pointwise else ''}")
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


def _keeping_some(mask, expression: str):
    """``mask``, refused when it keeps no pixel: every value would be a gap with nothing to fill
    from (an all-NaN output, exit 0, no word; probe). One read of the variables it names."""
    if not bool(mask.any()):
        raise InputError(f"--mask {expression!r} is true nowhere, so no value would be kept: check the rule "
                         "(it says which pixels are valid, e.g. \"DQF == 0\").")
    return mask


def _check_file_output(path: str, option: str) -> None:
    """A file OUT must be a file name in a folder that exists: a folder there, or a missing
    folder, failed only after the work with the OS's words (probe)."""
    if os.path.isdir(path):
        raise InputError(f"{option} {path}: is a folder; give a file name.")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise InputError(f"{option} {path}: the folder {folder} does not exist; create it first.")


def _say(text: str) -> None:
    print(text, file=sys.stderr)


# ----------------------------------------------------------------------------- parser

# name: (help, the function adding its arguments, the function running it)
_COMMANDS = {
    "inpaint": ("Fill the gaps of variables (by default with the bundled fill-context); valid values stay identical.",
                inpaint_args, _cmd_inpaint),
    "predict": ("Run a model over a dataset (learned mappings between variables).", predict_args, _cmd_predict),
    "train": ("Train a zoo architecture (or fine-tune a saved model) and save it.", train_args, _cmd_train),
    "evaluate": ("Hide valid data with realistic gaps, fill them, and score the model against baselines.",
                 evaluate_args, _cmd_evaluate),
    "zoo": ("List the zoo architectures and the bundled models.", None, _cmd_zoo),
    "demo": ("Fill synthetic gaps in a generated field and compare with linear interpolation.", demo_args, _cmd_demo),
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
        s = sub.add_parser(name, help=help_, description=help_, epilog=EPILOGS[name], formatter_class=fmt)
        if add_args is not None:
            add_args(s)
        s.set_defaults(func=run)
    return p


class _Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``timeout``, batch schedulers) taken as Ctrl-C: the same clean-up (a
    netCDF OUT's temporary file was left behind: probe), exit status 143."""


def _terminate(signum, frame):
    raise _Terminated


def _on_sigterm(handler):
    """Install ``handler`` for SIGTERM where Python allows (the main thread); the one it replaces."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, handler)


def main(argv=None) -> int:
    """Run the ``xdl`` command line; returns the exit status (0 ok, 1 bad input, 2 usage).

    >>> main(["inpaint", "/no/such/file.nc", "out.zarr"])
    1
    """
    parser = _parser()
    args = parser.parse_args(argv)  # exits 2 on usage errors, 0 on --help
    previous = _on_sigterm(_terminate)
    formatwarning = warnings.formatwarning
    if not os.environ.get("XDL_DEBUG"):
        warnings.formatwarning = functools.partial(_one_line_warning, args.command)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt as e:
        from .io.zarr import quiet_zarr_exit

        quiet_zarr_exit()
        terminated = isinstance(e, _Terminated)
        print(f"xdl {args.command}: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
        return 143 if terminated else 130
    except (XdlError, OSError, ValueError, KeyError, MemoryError, RuntimeError) as e:
        # One line, no traceback (XDL_DEBUG=1 shows it for bug reports): bad input, a model's error
        # (xdl's ModelError is a RuntimeError too: it was shown as a traceback; probe), and out of
        # memory with what to do (numpy's MemoryError, torch's "can't allocate memory" and "CUDA out
        # of memory", also inside a ModelError). Other RuntimeErrors are bugs: their traceback is shown.
        if os.environ.get("XDL_DEBUG"):
            raise
        if isinstance(e, MemoryError) or any(t in str(e) for t in ("allocate memory", "out of memory")):
            print(f"xdl {args.command}: error: out of memory ({str(e).strip()[:200] or type(e).__name__}); give smaller "
                  "--chunks or --tile, or run on a machine with more memory (a zarr OUT keeps its finished regions: "
                  "--resume).", file=sys.stderr)
            return 1
        if isinstance(e, RuntimeError) and not isinstance(e, XdlError):
            raise
        msg = str(e).strip().replace("\n", " ") or type(e).__name__
        print(f"xdl {args.command}: error: {msg}", file=sys.stderr)
        return 1
    finally:
        warnings.formatwarning = formatwarning
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _one_line_warning(command, message, category, filename, lineno, line=None) -> str:
    """A warning as the CLI prints it: one line naming the command, like its errors (Python's
    format showed xdl's or dask's file, line and source line: traceback noise to a user; probe)."""
    kind = "warning" if issubclass(category, XdlWarning) else f"warning ({category.__name__})"
    return f"xdl {command}: {kind}: {' '.join(str(message).split())}\n"


if __name__ == "__main__":  # python -m xdl.cli
    sys.exit(main())
