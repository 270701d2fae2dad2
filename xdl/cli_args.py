"""The ``xdl`` command line's arguments: one function per command adding its options, the
shared groups (input/output, engine, writing) and the examples shown by ``--help``.

>>> parse_chunks("y=512,x=512")
{'y': 512, 'x': 512}
"""
from __future__ import annotations

import argparse
import sys

__all__ = ["parse_chunks", "EPILOGS", "inpaint_args", "predict_args", "train_args", "evaluate_args", "demo_args", "context_args"]


def parse_chunks(text: str):
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
        if out[name.strip()] < 1:  # y=-5 was blamed on the file, y=0 ignored (probe)
            raise argparse.ArgumentTypeError(f"bad chunk size {size!r} in {text!r}: give a size of at least 1 "
                                             "(-1 or auto: the whole dim), e.g. y=512,x=512")
    return out


EPILOGS = {
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


def io_args(sp, output=True) -> None:
    sp.add_argument("input", metavar="IN", help="netCDF file, zarr store, or a quoted glob of files")
    if output:
        sp.add_argument("output", metavar="OUT", help="output: *.zarr or *.nc")
    sp.add_argument("--chunks", type=parse_chunks, default="file", metavar="SPEC",
                    help="dask chunks: dim=size pairs (y=512,x=512), 'auto', 'none' (in memory) or 'file' (default: the file's own)")


def engine_args(sp) -> None:
    sp.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:1")
    sp.add_argument("--tile", type=int, default=None, help="largest tile side in pixels (default: by device)")
    sp.add_argument("--compile", choices=["auto", "yes", "no"], default="auto",
                    help="torch.compile the model: auto (on CUDA), yes, no")


def writing_args(sp) -> None:
    sp.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    sp.add_argument("--resume", action="store_true",
                    help="finish an interrupted write to a zarr OUT: regions already written are kept")
    sp.add_argument("--progress", action=argparse.BooleanOptionalAction, default=sys.stderr.isatty(),
                    help="show a progress bar (default: when stderr is a terminal)")


def context_args(s, time_window) -> None:
    """--context and --time-window (issue #15); ``time_window``: the default (None: from --config)."""
    s.add_argument("--context", action="append", metavar="V", default=None,
                   help="variables the model sees beside each filled one, inputs only (repeat or comma-separate)")
    s.add_argument("--time-window", type=int, default=time_window, metavar="K",
                   help="also give the model each variable at the K time steps before and after"
                        + (f" (default {time_window})" if time_window is not None else ""))


def inpaint_args(s) -> None:
    io_args(s)
    s.add_argument("--var", action="append", metavar="V", help="variable to fill (repeat or comma-separate; default: every float field)")
    s.add_argument("--model", default=None, help="model file, bundled name (default: the bundled default model)")
    s.add_argument("--mask", default=None, metavar="EXPR", help='valid-data rule, e.g. "DQF == 0" (default: CF _FillValue/valid_range)')
    s.add_argument("--domain", default="auto", metavar="EXPR", help='where gaps may be filled: "auto", "none", or e.g. "land == 0"')
    s.add_argument("--domain-file", default=None, metavar="FILE",
                   help='take --domain\'s variables from this file, e.g. --domain-file mask.nc --domain "land == 0"')
    context_args(s, 0)
    s.add_argument("--uncertainty", action="store_true",
                   help="add <var>_sigma, the standard error of each fill (needs a model with a sigma output)")
    engine_args(s)
    writing_args(s)


def predict_args(s) -> None:
    io_args(s)
    s.add_argument("--model", required=True, help="model file (.safetensors) or bundled name")
    s.add_argument("--inputs", action="append", metavar="V", help="input variables, in the model's channel order")
    s.add_argument("--outputs", action="append", metavar="V", help="names for the output variables")
    engine_args(s)
    writing_args(s)


def train_args(s) -> None:
    io_args(s, output=False)
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
    s.add_argument("--masks", default=None, metavar="KIND", help="training gaps: irregular, scanlines, blocks, clouds, mixed, observed")
    context_args(s, None)
    s.add_argument("--checkpoint-dir", default=None, metavar="DIR")
    s.add_argument("--resume", action="store_true", default=None, help="continue from the last checkpoint")
    s.add_argument("--device", default=None)
    s.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="show a progress bar (default: when stderr is a terminal)")
    s.add_argument("--overwrite", action="store_true", help="replace --out if it exists")


def evaluate_args(s) -> None:
    io_args(s, output=False)
    s.add_argument("--var", action="append", metavar="V", help="variables to score (default: every float field)")
    s.add_argument("--model", default=None, help="model file or bundled name (default: the bundled default)")
    s.add_argument("--gaps", default="scanlines", help="comma-separated gap kinds: scanlines, blocks, clouds, irregular")
    s.add_argument("--fraction", type=float, default=0.1, help="share of the valid pixels to hide, below 1 (default 0.1)")
    s.add_argument("--baselines", default=None,
                   help="comma-separated: linear, nearest, biharmonic, and with context regression, local_regression "
                        "('' for none; default linear,biharmonic and, with context, both regressions)")
    s.add_argument("--mask", default=None, metavar="EXPR", help='valid-data rule, e.g. "DQF == 0"')
    context_args(s, 0)
    s.add_argument("--domain", default="auto", metavar="EXPR", help='"auto", "none", or e.g. "land == 0"')
    s.add_argument("--domain-file", default=None, metavar="FILE", help="take --domain's variables from this file")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--plot", default=None, metavar="PNG",
                   help="figure of truth, gaps, fills and errors (middle sample); with several variables or "
                        "gap kinds, one file each: PNG's stem + _<var>_<gaps>.png (the paths are printed)")
    s.add_argument("--out", default=None, metavar="METRICS", help="write the metrics to .nc or .csv")
    s.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    engine_args(s)


def demo_args(s) -> None:
    s.add_argument("--out", default="xdl_demo_out", metavar="DIR", help="output folder (default xdl_demo_out)")
    s.add_argument("--size", type=int, default=256, help="field side in pixels (default 256)")
    s.add_argument("--model", default=None, help="model file or bundled name (default: the bundled default)")
    s.add_argument("--seed", type=int, default=0)
