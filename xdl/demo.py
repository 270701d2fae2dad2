"""``xdl demo``: gap filling from start to finish in a few seconds, on a generated field.

A smooth, realistic field (a sea-surface-temperature-like sum of Gaussian-filtered noise at a few
scales plus a north-south gradient) loses about 15 % of its pixels to scan lines, blocks and
clouds; the model fills them, linear interpolation does too, and both are scored on the hidden
pixels. Outputs: ``filled.zarr`` (the filled field and its CF flag variable) and ``demo.png``
(truth / gappy / filled / error).

>>> import tempfile, xdl
>>> from xdl.demo import run
>>> model = xdl.zoo.create("pconv-unet", in_channels=1, depth=2, base_channels=4,
...                        card={"normalization": {"kind": "per_sample"}})
>>> result = run(tempfile.mkdtemp(), size=64, model=model, verbose=False)
>>> result["filled"].endswith("filled.zarr"), 0.1 < result["hidden_share"] < 0.2
(True, True)
"""

from __future__ import annotations

import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import xarray as xr
from scipy import ndimage

from . import baselines, masks, metrics
from .errors import InputError

__all__ = ["run", "synthetic_field", "demo_gaps"]


def synthetic_field(size: int = 256, seed: int = 0) -> xr.DataArray:
    """A smooth SST-like field (K) of shape ``(size, size)`` with coords ``y``/``x`` in km.

    >>> f = synthetic_field(32)
    >>> f.dims, f.attrs["units"], bool(270 < float(f.mean()) < 300)
    (('y', 'x'), 'K', True)
    """
    rng = np.random.default_rng(seed)
    field = np.zeros((size, size))
    # Large eddies dominate, smaller ones add texture: weights fall with scale like a red spectrum.
    for sigma, weight in ((size / 8, 1.0), (size / 24, 0.4), (size / 64, 0.15)):
        noise = ndimage.gaussian_filter(rng.standard_normal((size, size)), max(sigma, 1.0), mode="wrap")
        field += weight * noise / (noise.std() or 1.0)
    y = np.linspace(0.0, 1.0, size)[:, None]
    field = 288.0 + 6.0 * (0.5 - y) + 1.2 * field  # warmer to the south (top row = north)
    coords = {"y": ("y", np.arange(size) * 4.0, {"units": "km", "axis": "Y", "long_name": "northing"}),
              "x": ("x", np.arange(size) * 4.0, {"units": "km", "axis": "X", "long_name": "easting"})}
    return xr.DataArray(field.astype(np.float32), dims=("y", "x"), coords=coords, name="sst",
                        attrs={"units": "K", "long_name": "synthetic sea surface temperature"})


def demo_gaps(shape, seed: int = 0) -> np.ndarray:
    """True where pixels stay valid: scan lines + blocks + clouds, about 15 % hidden in all.

    >>> m = demo_gaps((64, 64)); m.dtype, bool(0.1 < 1 - m.mean() < 0.2)
    (dtype('bool'), True)
    """
    rng = np.random.default_rng(seed)
    keep = masks.make("scanlines", shape, 0.05, rng)
    keep &= masks.make("blocks", shape, 0.05, rng)
    keep &= masks.make("clouds", shape, 0.055, rng)  # a little more: the kinds overlap
    return keep


DEMO_TITLE = "xdl demo: synthetic SST with scan-line, block and cloud gaps"


def _refuse_others(out: Path, zarr_path: Path, png: Path) -> None:
    """The demo replaces its own earlier outputs only: a file at ``out``, a zarr store as ``out``,
    or a ``filled.zarr`` / ``demo.png`` there that no demo wrote is refused (a user's store of that
    name was deleted; probe)."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: is a file; give a folder for the demo's outputs.")
    if any((out / name).exists() for name in ("zarr.json", ".zgroup", ".zattrs")):
        raise InputError(f"--out {out}: is a zarr store; give another folder for the demo's outputs.")
    ours = False
    if zarr_path.is_symlink():  # replacing it would delete through the link, or fail in rmtree
        raise InputError(f"{zarr_path}: is a link; give another --out.")
    if zarr_path.exists():
        try:
            with xr.open_zarr(zarr_path) as earlier:
                ours = earlier.attrs.get("title") == DEMO_TITLE
        except Exception:  # noqa: BLE001 - not a readable store: not the demo's
            ours = False
        if not ours:
            raise InputError(f"{zarr_path}: exists and is not an earlier demo's output; give another --out.")
    if png.exists() and not ours:
        raise InputError(f"{png}: exists beside no earlier demo output; give another --out.")


def run(out_dir="xdl_demo_out", size: int = 256, model=None, seed: int = 0, verbose: bool = True) -> dict:
    """Hide ~15 % of a generated field, fill it with ``model`` and with linear interpolation.

    Writes ``out_dir/filled.zarr`` and ``out_dir/demo.png`` (replacing earlier demo outputs), prints
    a summary (unless ``verbose=False``) and returns it as a dict: ``rmse_model``, ``rmse_linear``
    (K, on the hidden pixels), ``seconds_model``, ``seconds_linear``, ``seconds_total``,
    ``hidden_share``, ``n_hidden``, ``model``, ``filled`` and ``plot`` (paths).

    ``model=None`` uses the bundled default model (an :class:`~xdl.errors.InputError` says so
    when none is bundled); a path, bundled name or ``xdl.Model`` works too.
    """
    from .inpaint import inpaint
    from .models import pretrained
    from .models.resolve import model_label, resolve_model

    t0 = time.perf_counter()
    size = int(size)
    if size < 16:
        raise InputError(f"size={size}: the demo field needs at least 16 x 16 pixels.")
    model = resolve_model(model, default=pretrained.DEFAULT_INPAINT, hint=(
        "the demo needs it: pass a model, `xdl demo --model my.xdl.safetensors` or xdl.demo.run(model=...) "
        "(e.g. trained with `xdl train IN --model fill-unet ...`)."))
    seed = masks.check_seed(seed)
    out = Path(out_dir)
    zarr_path, png = out / "filled.zarr", out / "demo.png"
    _refuse_others(out, zarr_path, png)

    truth = synthetic_field(size, seed)
    keep = demo_gaps(truth.shape, seed)
    hidden = ~keep
    gappy = truth.where(keep)
    ds = xr.Dataset({"sst": gappy}, attrs={"title": DEMO_TITLE})

    start = time.perf_counter()
    # A synthetic field has no land or space: every gap is fillable. (domain="auto" would leave
    # wide gaps at the scene's edge NaN, as it does for the sea around a country on a bare grid.)
    filled = inpaint(ds, model, domain=None)
    seconds_model = time.perf_counter() - start
    start = time.perf_counter()
    linear = baselines.fill_linear(gappy.values, keep)
    seconds_linear = time.perf_counter() - start

    s_model = metrics.scores(truth.values, filled.sst.values, hidden)
    s_linear = metrics.scores(truth.values, linear, hidden)
    out.mkdir(parents=True, exist_ok=True)  # only now: a run refused above leaves no folder
    if zarr_path.exists():
        shutil.rmtree(zarr_path)
    with warnings.catch_warnings():  # zarr 3 notes that consolidated metadata is not in its spec yet
        warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
        filled.to_zarr(zarr_path, mode="w", consolidated=True)
    _plot(png, truth.values, gappy.values, filled.sst.values, linear, hidden,
          s_model["rmse"], s_linear["rmse"], model_label(model))

    result = {
        "model": model_label(model),
        "rmse_model": s_model["rmse"], "rmse_linear": s_linear["rmse"],
        "seconds_model": seconds_model, "seconds_linear": seconds_linear,
        "hidden_share": float(hidden.mean()), "n_hidden": int(hidden.sum()),
        "filled": str(zarr_path), "plot": str(png),
        "seconds_total": time.perf_counter() - t0,
    }
    if verbose:
        print(f"xdl demo: {size}x{size} synthetic SST, {result['hidden_share']:.1%} hidden "
              f"(scan lines, blocks, clouds)")
        print(f"  model {result['model']:<20} RMSE {result['rmse_model']:.4f} K   {seconds_model:.2f} s")
        print(f"  linear interpolation       RMSE {result['rmse_linear']:.4f} K   {seconds_linear:.2f} s")
        print(f"  wrote {zarr_path} and {png}  ({result['seconds_total']:.1f} s in all)")
    return result


def _plot(path, truth, gappy, filled, linear, hidden, rmse_model, rmse_linear, label):
    from matplotlib.figure import Figure  # no pyplot: headless and free of global state

    from .plotting import draw_panels

    lo, hi = np.percentile(truth, [1, 99])
    err = np.where(hidden, filled - truth, np.nan)
    err_lin = np.where(hidden, linear - truth, np.nan)
    emax = float(np.nanmax(np.abs(np.concatenate([err[hidden], err_lin[hidden]])))) if hidden.any() else 1.0
    fig = Figure(figsize=(16, 4.2), layout="constrained")
    axes = fig.subplots(1, 4)
    panels = [(truth, "truth", "viridis", lo, hi), (gappy, f"with gaps ({hidden.mean():.0%} hidden)", "viridis", lo, hi),
              (filled, f"filled by {label}", "viridis", lo, hi),
              (err, f"error: model {rmse_model:.3f} K, linear {rmse_linear:.3f} K", "RdBu_r", -emax, emax)]
    # synthetic_field's y (northing) ascends: row 0 is the south edge, drawn at the bottom.
    draw_panels(fig, [(ax, *panel) for ax, panel in zip(axes, panels)], origin="lower", fontsize=10, label="K")
    fig.savefig(path, dpi=80)
