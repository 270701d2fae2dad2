"""Train the bundled default gap-filling model, ``xdl/weights/fill-default.safetensors``.

One fill-unet (harmonic fill + learned UNet correction) for many variables: every field is
standardised by its own mean and standard deviation (the engine's "per_sample" normalisation), so
the model learns the shapes of gaps in geophysical fields, not their units. Training data are real fields from ../shared/data:
GOES-17 ABI mesoscale radiances (15 bands), GOES CONUS band 16 scenes, GOES-16 land-surface
temperature (real cloud gaps), ERA-Interim z/u/v, a sea-surface height field, model SST on a
bipolar grid and AVHRR NDVI. Held out for evaluation (never trained on): the GOES-16 CONUS band 7
scene and the MERRA-2 surface pressure (see benchmarks/inpaint_quality.py).

    python scripts/train_default.py prepare fields.npz      # real fields -> one compact file
    python scripts/train_default.py train fields.npz [--minutes 4] [--device cuda]

``prepare`` needs the shared data folder; ``train`` needs only the prepared file (so it can run on
a GPU machine that lacks the data and the netCDF stack).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("XDL_SHARED_DATA", ROOT.parent / "shared" / "data"))
OUT = ROOT / "xdl" / "weights" / "fill-default.safetensors"

# (glob under shared/data, variables, leading-dim selection): the training fields.
SOURCES = [
    ("goes/OR_ABI-L1b-RadM1-M6C*_G17_*.nc", ["Rad"]),
    ("goes/OR_ABI-L1b-RadC-M6C16_G1[67]_*.nc", ["Rad"]),
    ("goes/goes16_OR_ABI-L2-LSTM2-M6_G16_*.nc", ["LST"]),
    ("reanalysis/eraint_uvz.nc", ["z", "u", "v"]),
    ("ocean_land/mss.nc", ["mss"]),
    ("ocean_land/tos_ocean_bipolar_grid.nc", ["tos"]),
    ("land/ndvi_max.nc", ["ndvi_max"]),
]
HELD_OUT = ["goes/OR_ABI-L1b-RadC-M6C07_G16_*.nc", "reanalysis/merra2_M2T1NXSLV_ps.nc4"]
MIN_SIDE = 128  # smallest field side kept (the smallest training window)


def prepare(out_path: str) -> None:
    """Read the training fields, standardise each 2-D field, save them as float16 in one .npz."""
    import xarray as xr

    from xdl.conventions import cf, layout

    fields, names = [], []
    held_out = {p for pattern in HELD_OUT for p in glob.glob(str(SHARED / pattern))}
    for pattern, variables in SOURCES:
        for path in sorted(glob.glob(str(SHARED / pattern))):
            if path in held_out:
                continue
            ds = xr.open_dataset(path)
            for var in variables:
                arr = ds[var]
                valid = cf.cf_valid_mask(arr)
                arr = arr.where(valid).astype("float32")
                y, x = layout.spatial_dims(arr)
                arr = arr.transpose(..., y, x)
                if arr.sizes[y] < MIN_SIDE or arr.sizes[x] < MIN_SIDE:
                    continue
                values = arr.values.reshape((-1, arr.sizes[y], arr.sizes[x]))
                for i, field in enumerate(values):
                    ok = np.isfinite(field)
                    if ok.mean() < 0.1:
                        continue
                    mean, std = field[ok].mean(), field[ok].std()
                    standardised = np.where(ok, (field - mean) / (std if std > 0 else 1.0), np.nan)
                    fields.append(standardised.astype(np.float16))
                    names.append(f"{Path(path).name}:{var}[{i}]")
    np.savez_compressed(out_path, names=np.array(names), **{f"f{i}": f for i, f in enumerate(fields)})
    total = sum(f.size for f in fields)
    print(f"{len(fields)} fields, {total / 1e6:.1f} Mpix -> {out_path} ({os.path.getsize(out_path) / 1e6:.1f} MB)")


PIECE = 512  # fields are cut (or NaN-padded) to pieces of this side so they stack as samples


def load_pieces(path: str, seed: int = 0):
    """The prepared fields as one DataArray (sample, y, x) of PIECE x PIECE pieces, shuffled so the
    validation split (the last samples) mixes sources. Padding is NaN: never data, never loss."""
    import xarray as xr

    pieces, sources = [], []
    with np.load(path) as npz:
        names = [str(n) for n in npz["names"]]
        for i, name in enumerate(names):
            field = npz[f"f{i}"].astype(np.float32)
            for y0 in range(0, field.shape[0], PIECE):
                for x0 in range(0, field.shape[1], PIECE):
                    part = field[y0:y0 + PIECE, x0:x0 + PIECE]
                    if part.shape[0] < MIN_SIDE or part.shape[1] < MIN_SIDE or np.isfinite(part).mean() < 0.1:
                        continue
                    canvas = np.full((PIECE, PIECE), np.nan, np.float32)
                    canvas[:part.shape[0], :part.shape[1]] = part
                    pieces.append(canvas)
                    sources.append(name)
    order = np.random.default_rng(seed).permutation(len(pieces))
    data = np.stack([pieces[i] for i in order])
    return xr.DataArray(data, dims=("sample", "y", "x"), name="field"), names


ARCH = {"name": "fill-unet", "depth": 3, "base_channels": 32, "max_channels": 128, "patch": 4,
        "biharmonic_iterations": 10}


def train(fields_path: str, minutes: float, device: str, batch_size: int, out: Path, seed: int,
          steps_per_epoch: int = 200, tile: int = 256, arch: dict | None = None, lr: float = 1e-3,
          loss_weights: dict | None = None) -> None:
    """Train for about ``minutes`` of wall time: one epoch per fit call, resumed from the
    checkpoint (so the run is the same as one uninterrupted fit of that many epochs)."""
    import tempfile

    import xdl
    from xdl.train import fit

    arch = dict(ARCH if arch is None else arch)
    pieces, names = load_pieces(fields_path, seed)
    print(f"{len(names)} fields -> {pieces.sizes['sample']} pieces of {PIECE}x{PIECE}")
    run_dir = Path(tempfile.mkdtemp(prefix="xdl_default_"))
    t0 = time.perf_counter()
    epochs, model = 0, None
    while True:
        epochs += 1
        # The fields are already standardised exactly as the engine's per_sample rule does, so
        # the model trains without further normalisation and its card then says per_sample.
        model = fit(pieces, arch["name"], variables=["field"], masks="mixed", epochs=epochs,
                    steps_per_epoch=steps_per_epoch, batch_size=batch_size, tile=tile, val=0.1,
                    val_steps=20, normalization="none", device=device, progress=False, seed=seed, lr=lr,
                    loss_weights={"tv": 0.0, **(loss_weights or {})}, checkpoint_dir=run_dir, resume=epochs > 1,
                    **{k: v for k, v in arch.items() if k != "name"})
        elapsed = time.perf_counter() - t0
        history = model.card.get("training", {}).get("history", {})
        print(f"epoch {epochs}: {elapsed:.0f} s, val loss {history.get('val_loss', ['?'])[-1]}", flush=True)
        if elapsed / epochs * (epochs + 1) > minutes * 60:
            break
    seconds = time.perf_counter() - t0
    card = model.card
    card["normalization"] = {"kind": "per_sample"}
    card["inputs"], card["outputs"] = [], []
    card["units"], card["output_units"], card["standard_names"] = {}, {}, {}
    card["name"] = "fill-default"
    first_guess = ("harmonic interpolation of the gaps" if not arch.get("biharmonic_iterations") else
                   "harmonic interpolation of the gaps, refined towards a biharmonic fill,")
    card["description"] = (f"xdl's default gap filler: {first_guess} corrected by a UNet "
                           f"(fill-unet: {arch.get('depth')} levels, {arch.get('base_channels')}-"
                           f"{arch.get('max_channels')} channels on {arch.get('patch')}x{arch.get('patch')} "
                           "pixel patches) trained on standardised real geophysical fields (GOES ABI radiances "
                           "and LST, ERA-Interim, sea-surface height, SST, NDVI) with mixed irregular, "
                           "scan-line, block and cloud gaps. Works on any single variable; fit your own for "
                           "best skill.")
    card["training"] = {**card.get("training", {}), "script": "scripts/train_default.py",
                        "command": "python " + " ".join(sys.argv),
                        "fields": names, "held_out": HELD_OUT, "wall_seconds": round(seconds, 1),
                        "piece": PIECE}
    final = xdl.Model(model.module, card)
    out.parent.mkdir(parents=True, exist_ok=True)
    final.save(out)
    print(json.dumps({"saved": str(out), "bytes": out.stat().st_size, "seconds": round(seconds, 1),
                      "epochs": epochs, "metrics": card.get("metrics")}, default=str))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("out")
    t = sub.add_parser("train")
    t.add_argument("fields")
    t.add_argument("--minutes", type=float, default=10.0, help="wall-time budget")
    t.add_argument("--steps-per-epoch", type=int, default=200)
    t.add_argument("--batch-size", type=int, default=16)
    t.add_argument("--device", default="auto")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--tile", type=int, default=256, help="training window side")
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--hole-weight", type=float, help="weight of the L1 loss on the hidden pixels "
                   "(default: fit's, xdl.train.GAP_WEIGHTS)")
    t.add_argument("--hole-mse-weight", type=float, help="weight of the squared error on them (default: fit's)")
    for key, value in ARCH.items():
        if key != "name":
            t.add_argument(f"--{key.replace('_', '-')}", type=type(value), default=value, help="fill-unet option")
    t.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if args.command == "prepare":
        prepare(args.out)
    else:
        given = {"hole": args.hole_weight, "hole_mse": args.hole_mse_weight}
        train(args.fields, args.minutes, args.device, args.batch_size, args.out, args.seed, args.steps_per_epoch,
              tile=args.tile, lr=args.lr, loss_weights={k: v for k, v in given.items() if v is not None},
              arch={"name": ARCH["name"], **{k: getattr(args, k) for k in ARCH if k != "name"}})


if __name__ == "__main__":
    sys.exit(main())
