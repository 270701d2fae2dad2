"""Learn a mapping between GOES ABI bands: IR window (C13, C14, C15, C11) -> low-level water vapour (C10).

The GOES-17 mesoscale scene of 2019-10-27 20:00Z (500x500, 2 km). Three models learn band 10
(7.3 um, lower-tropospheric water vapour) from the clean, dirty and split IR window bands 13, 14,
15 and the 8.4 um band 11 (the window-band differences carry the water-vapour signal):

* a per-pixel linear regression (least squares on the training pixels), the baseline;
* a UNet trained with L1 only (``xdl.train.fit(ds, "unet", ...)``);
* a pix2pix conditional GAN (``xdl.train.fit(ds, "pix2pix", ...)``: PatchGAN + lambda x L1).

The split is by region, and the held-back target pixels never reach ``fit`` (it takes its own
validation part from the training pixels); the inputs are known everywhere, as in real use:

* ``--split blocks`` (default): the scene is cut into 100 x 100 blocks and every third one along
  a diagonal pattern (36 % of the pixels) is held back, so training and scoring both see ocean,
  cloud and desert: the test of the mapping itself;
* ``--split columns``: fitted on the left 70 % of the columns, scored on the right 30 % (a hot
  desert barely present in training): a test of extrapolation to new surface conditions.

Predictions go through ``ds.dl.predict(model)``, which writes band 10 as a new variable with the
target's units and standard name, the input's x/y coordinates and ``goes_imager_projection`` grid
mapping. A saved and reloaded model predicts bit for bit the same.

    python examples/goes_band_mapping.py [--small] [--split blocks|columns] [--out DIR]
"""

import time
from pathlib import Path

import numpy as np
import xarray as xr

import xdl
from xdl import metrics
from xdl.train import fit

from _common import data_file, parser

# C13/C14 alone leave a large bias over the held-back hot desert (linear RMSE 2.76, UNet 1.5-2.0 in
# trial runs); the split-window C15 and 8.4 um C11 halve it.
INPUTS = ["C13", "C14", "C15", "C11"]
TARGET = "C10"
TRAIN_FRACTION = 0.7  # --split columns: the left 70 % of the columns train
BLOCK = 100  # --split blocks: block side in pixels
# Full run: about 2-3 minutes per network on a 2-core CPU. Small: the whole example in < 90 s.
CONFIGS = {
    "full": {
        "crop": None,
        "unet": dict(epochs=10, steps_per_epoch=50, batch_size=8, tile=96, val_steps=6,
                     depth=3, base_channels=16),
        # The GAN steps are cheaper; it needs more of them for the adversarial term to matter.
        "pix2pix": dict(epochs=15, steps_per_epoch=100, batch_size=8, tile=96, val_steps=6,
                        depth=5, ngf=16, ndf=16, n_layers=2, loss_weights={"l1": 100.0}),
    },
    "small": {
        "crop": (slice(0, 192), slice(0, 256)),
        "unet": dict(epochs=3, steps_per_epoch=20, batch_size=4, tile=64, val_steps=2,
                     depth=3, base_channels=8),
        "pix2pix": dict(epochs=3, steps_per_epoch=30, batch_size=4, tile=64, val_steps=2,
                        depth=5, ngf=8, ndf=8, n_layers=2, loss_weights={"l1": 100.0}),
    },
}


def load_scene(crop=None) -> xr.Dataset:
    """One Dataset with a variable per band (Rad, NaN where DQF flags it), x/y and the grid mapping."""
    bands, grid = {}, None
    for band in INPUTS + [TARGET]:
        src = xr.open_dataset(data_file(f"goes/OR_ABI-L1b-RadM1-M6{band}_G17_s2019300200*.nc"))
        if crop is not None:
            src = src.isel(y=crop[0], x=crop[1])
        # Only DQF 0 is a good pixel; the others must not be trained on or scored.
        rad = src.Rad.where(src.DQF == 0).astype("float32")
        # Per-band scalar coords (scan time t, x_image) differ between files: keep x/y only.
        rad = rad.reset_coords(drop=True)
        rad.attrs = {k: src.Rad.attrs[k] for k in ("units", "standard_name", "long_name", "grid_mapping")
                     if k in src.Rad.attrs}
        rad.attrs["long_name"] = f"ABI band {band[1:]} radiance"
        if grid is None:
            grid = src
        elif not (np.array_equal(src.x.values, grid.x.values) and np.array_equal(src.y.values, grid.y.values)):
            raise SystemExit(f"band {band} is not on the same x/y grid as {INPUTS[0]}")
        bands[band] = rad.load()
    ds = xr.Dataset(bands)
    ds["goes_imager_projection"] = grid.goes_imager_projection.reset_coords(drop=True)
    ds.attrs = {"title": "GOES-17 ABI L1b mesoscale 1, 2019-10-27 20:00Z", "platform": "G17"}
    return ds


def held_back(shape, split: str, block: int = BLOCK) -> np.ndarray:
    """True where the target is held back from training and scored.

    >>> held_back((4, 10), "columns")[0].astype(int).tolist()
    [0, 0, 0, 0, 0, 0, 0, 1, 1, 1]
    >>> held_back((6, 6), "blocks", block=2).astype(int)[::2, ::2].tolist()
    [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    """
    ny, nx = shape
    if split == "columns":
        held = np.zeros(shape, bool)
        held[:, int(round(TRAIN_FRACTION * nx)):] = True
        return held
    by, bx = np.meshgrid(np.arange(ny) // block, np.arange(nx) // block, indexing="ij")
    return (bx + 2 * by) % 3 == 0


def linear_regression(ds, train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel least squares of the target on the input bands (plus a constant), on the ``train`` pixels."""
    X = np.stack([ds[n].values.astype("f8") for n in INPUTS] + [np.ones(ds[TARGET].shape)], -1)
    y = ds[TARGET].values.astype("f8")
    ok = np.isfinite(X).all(-1) & np.isfinite(y) & train
    coef, *_ = np.linalg.lstsq(X[ok], y[ok], rcond=None)
    return X @ coef, coef


def detail_std_ratio(truth, estimate, where, sigma=4.0) -> float:
    """std ratio of the small scales only (field minus a Gaussian blur): what L1 training smooths away."""
    from scipy.ndimage import gaussian_filter

    def hp(a):
        a = np.where(np.isfinite(a), a, np.nanmean(a))
        return a - gaussian_filter(a, sigma)
    return metrics.std_ratio(hp(truth), hp(estimate), where)


def check_output(out: xr.Dataset, ds: xr.Dataset) -> list[str]:
    """The predicted variable is a proper CF variable on the GOES grid; returns what is wrong."""
    var, src, bad = out[TARGET], ds[TARGET], []
    if var.dims != src.dims:
        bad.append(f"dims {var.dims} != {src.dims}")
    for c in ("x", "y"):
        if c not in var.coords or not np.array_equal(var[c].values, ds[c].values):
            bad.append(f"coordinate {c} missing or changed")
    for key in ("units", "standard_name"):
        if var.attrs.get(key) != src.attrs.get(key):
            bad.append(f"{key} {var.attrs.get(key)!r} != {src.attrs.get(key)!r}")
    if var.attrs.get("grid_mapping", var.encoding.get("grid_mapping")) != "goes_imager_projection":
        bad.append("grid_mapping attribute missing")
    if "goes_imager_projection" not in out.variables:
        bad.append("grid mapping variable goes_imager_projection missing")
    if "predict model=" not in out.attrs.get("history", ""):
        bad.append("no history line")
    return bad


def main():
    p = parser(__doc__)
    p.add_argument("--split", choices=["blocks", "columns"], default="blocks", help="held-back region")
    args = p.parse_args()
    cfg = CONFIGS["small" if args.small else "full"]
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    ds = load_scene(cfg["crop"])
    ny, nx = ds[TARGET].shape
    region = held_back((ny, nx), args.split, BLOCK if not args.small else 32)
    if args.split == "columns":
        train = ds.isel(x=slice(0, int(region[0].argmax())))  # the held-back columns never reach fit
    else:
        train = ds.assign({TARGET: ds[TARGET].where(~region)})  # held-back targets never reach fit
    held = region & np.isfinite(ds[TARGET].values)
    print(f"GOES-17 M1 2019-10-27 20:00Z {ny}x{nx}: {'+'.join(INPUTS)} -> {TARGET}; split {args.split}: "
          f"{held.sum()} held-back pixels ({held.mean():.0%})")

    preds, models, timings = {}, {}, {}
    t0 = time.perf_counter()
    lin, coef = linear_regression(ds, ~region)
    preds["linear regression"] = lin.astype("f4")
    timings["linear regression"] = time.perf_counter() - t0

    for label, arch in (("UNet (L1)", "unet"), ("pix2pix cGAN", "pix2pix")):
        t0 = time.perf_counter()
        model = fit(train, arch, inputs=INPUTS, targets=[TARGET], val=0.2, progress=False, seed=0,
                    **cfg[arch])
        # Predict the whole scene (inputs are available everywhere); only held-back columns are scored.
        result = ds.dl.predict(model)
        timings[label] = time.perf_counter() - t0
        problems = check_output(result, ds)
        if problems:
            raise SystemExit(f"{label}: predicted variable is malformed: {'; '.join(problems)}")
        models[label], preds[label] = (model, result), result[TARGET].values
        h = model.card["training"]["history"]
        print(f"  {label}: {model.card['training']['steps']} steps in {timings[label]:.0f} s, "
              f"val L1 {h['val_loss'][0]:.3f} -> {min(h['val_loss']):.3f} (normalised)")

    truth = ds[TARGET].values
    rows = {k: metrics.scores(truth, p, held) for k, p in preds.items()}
    units = ds[TARGET].attrs.get("units", "")
    print(f"\nheld-back region ({args.split}), {TARGET} radiance [{units}], truth std {truth[held].std():.3f}")
    print(f"{'model':<20}{'RMSE':>8}{'bias':>8}{'corr':>8}{'std ratio':>11}{'detail std':>12}{'time s':>8}")
    for k in ("pix2pix cGAN", "UNet (L1)", "linear regression"):
        s = rows[k]
        print(f"{k:<20}{s['rmse']:8.3f}{s['bias']:8.3f}{s['corr']:8.3f}{s['std_ratio']:11.3f}"
              f"{detail_std_ratio(truth, preds[k], held):12.3f}{timings[k]:8.1f}")

    lin_rmse = rows["linear regression"]["rmse"]
    gan_sr = rows["pix2pix cGAN"]["std_ratio"]
    print(f"\ntargets: UNet beats linear RMSE: {rows['UNet (L1)']['rmse'] < lin_rmse}; "
          f"cGAN beats linear RMSE: {rows['pix2pix cGAN']['rmse'] < lin_rmse}; "
          f"cGAN std ratio in [0.9, 1.1]: {0.9 <= gan_sr <= 1.1}")

    # The predicted variable: name, units, standard name, coordinates, grid mapping, history.
    model, result = models["pix2pix cGAN"]
    v = result[TARGET]
    print(f"\npredicted {v.name!r}: units={v.attrs.get('units')!r} standard_name={v.attrs.get('standard_name')!r} "
          f"coords={sorted(v.coords)} grid_mapping={v.attrs.get('grid_mapping')!r} "
          f"(+ variable {'goes_imager_projection' in result.variables})")
    print(f"  history: {result.attrs['history'].splitlines()[0]}")

    # save -> load -> predict gives back the same numbers, bit for bit.
    for label, (model, result) in models.items():
        path = out_dir / f"goes_ir_to_{TARGET.lower()}_{model.card['architecture']}.xdl.safetensors"
        model.save(path)
        again = ds.dl.predict(xdl.load_model(path))
        same = np.array_equal(again[TARGET].values, result[TARGET].values, equal_nan=True)
        print(f"  {label}: save -> load -> predict bit for bit: {same} ({path.name})")
        if not same:
            raise SystemExit(f"{label}: the reloaded model predicts different values")

    png = out_dir / "goes_band_mapping.png"
    plot(ds, preds, rows, region, png)
    print(f"\nwritten {png}; total {time.perf_counter() - t_start:.0f} s")


def plot(ds, preds, rows, region, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    truth = ds[TARGET].values
    names = ["pix2pix cGAN", "UNet (L1)", "linear regression"]
    lo, hi = np.nanpercentile(truth, [1, 99])
    err_lim = np.nanpercentile(np.abs(truth[region] - preds["UNet (L1)"][region]), 99)
    fig, axes = plt.subplots(2, 4, figsize=(17, 8), constrained_layout=True)
    axes[1, 0].imshow(ds[INPUTS[0]].values, cmap="gray_r")
    axes[1, 0].set_title(f"input {INPUTS[0]}")
    panels = [(axes[0, 0], truth, f"truth {TARGET} (outlined: held back)")] + [
        (axes[0, i + 1], preds[n], f"{n}\nRMSE {rows[n]['rmse']:.2f}, std ratio {rows[n]['std_ratio']:.2f}")
        for i, n in enumerate(names)]
    for ax, field, title in panels:
        im = ax.imshow(field, vmin=lo, vmax=hi, cmap="viridis")
        ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=axes[0, :], shrink=0.8, label=f"{TARGET} [{ds[TARGET].attrs.get('units', '')}]")
    for i, n in enumerate(names):
        im = axes[1, i + 1].imshow(preds[n] - truth, vmin=-err_lim, vmax=err_lim, cmap="RdBu_r")
        axes[1, i + 1].set_title(f"error {n}", fontsize=9)
    fig.colorbar(im, ax=axes[1, :], shrink=0.8, label="prediction - truth")
    for ax in axes.flat:
        ax.contour(region, levels=[0.5], colors="k", linewidths=0.8)  # outlines the held-back region
        ax.set_xticks([])
        ax.set_yticks([])
    fig.savefig(path, dpi=80)
    plt.close(fig)


if __name__ == "__main__":
    main()
