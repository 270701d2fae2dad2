"""Gap-filling skill of the bundled default model on scenes it never trained on.

Held-out scenes (see scripts/train_default.py): the GOES-16 CONUS band-7 radiances of 2020-01-04
03:16Z (1500 x 2500, with an off-earth wedge that must stay empty) and the MERRA-2 surface
pressure (2 x 361 x 576, global). For each scene and each gap type (scan lines, blocks, clouds),
``evaluate`` hides 10% of the valid pixels and scores, on those pixels only: the default model,
linear interpolation and biharmonic inpainting (scikit-image), plus a model fine-tuned on the
scene's own valid data (self-supervised, on this CPU). Also times the default model against
biharmonic inpainting on the whole CONUS scene.

    python benchmarks/inpaint_quality.py [--quick] [--finetune-steps 300] [--model PATH]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import xarray as xr

import xdl
from xdl import baselines, masks
from xdl.train import fit

DATA = Path(os.environ.get("XDL_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
GAPS = ["scanlines", "blocks", "clouds"]
SPEED_REPEATS = 7


def scenes(quick: bool):
    goes = xr.open_dataset(sorted(DATA.glob("goes/OR_ABI-L1b-RadC-M6C07_G16_*.nc"))[0])
    goes = goes[["Rad", "goes_imager_projection"]]
    merra = xr.open_dataset(DATA / "reanalysis" / "merra2_M2T1NXSLV_ps.nc4")[["PS"]]
    if quick:
        goes = goes.isel(y=slice(0, 512), x=slice(0, 768))
        merra = merra.isel(time=slice(0, 1))
    return {"GOES-16 CONUS C07 Rad": (goes.load(), "Rad"), "MERRA-2 PS": (merra.load(), "PS")}


def table(report: xr.Dataset, label: str) -> str:
    lines = [f"### {label}", "", "| gaps | method | RMSE | MAE | corr | std ratio | seconds |",
             "|---|---|---|---|---|---|---|"]
    for g in report.gaps.values:
        best_baseline = min(float(report.rmse.sel({"gaps": g, "method": m}).squeeze())
                            for m in report.method.values if m in ("linear", "biharmonic"))
        for m in report.method.values:
            r = report.sel({"gaps": g, "method": m}).squeeze()
            ratio = float(r.rmse) / best_baseline
            lines.append(f"| {g} | {m} | {float(r.rmse):.4g} ({ratio:.2f}x best baseline) | {float(r.mae):.4g} | "
                         f"{float(r.corr):.4f} | {float(r.std_ratio):.3f} | {float(r.seconds):.2f} |")
    return "\n".join(lines)


def finetune(ds, var, steps, default):
    """The default model fine-tuned on the scene's own valid pixels (mixed synthetic gaps)."""
    spe = max(steps // 3, 1)
    tuned = fit(ds[[var]], default, variables=[var], masks="mixed", epochs=3, steps_per_epoch=spe,
                batch_size=8, tile=128, val=0.15, val_steps=5, lr=2e-4, progress=False, seed=1)
    # Trained per_sample on this variable; keep the engine-facing card of the default model.
    card = {**tuned.card, "inputs": [], "outputs": []}
    return xdl.Model(tuned.module, card)


def speed(ds, var, model, repeats=SPEED_REPEATS):
    """Whole-scene fill time, default model vs biharmonic, 3% scan-line + block gaps: the median
    of ``repeats`` runs each, the two taking turns so that load from elsewhere on the machine hits
    both alike (the model's first run in a process also loads it: timed apart)."""
    arr = ds[var]
    shape = arr.shape[-2:]
    rng = np.random.default_rng(5)
    keep = masks.scanlines(shape, 0.02, rng) & masks.blocks(shape, 0.01, rng)
    gappy = ds.assign({var: arr.where(keep)})
    values = arr.values.astype("f8")

    def timed(fn):
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    def fill_model():
        gappy.dl.inpaint(model, variables=[var]).compute()

    def fill_biharmonic():
        baselines.fill_biharmonic(values, keep & np.isfinite(values), domain=np.isfinite(values))

    first = timed(fill_model)
    pairs = [(timed(fill_model), timed(fill_biharmonic)) for _ in range(repeats)]
    t_model, t_bih = (float(np.median(times)) for times in zip(*pairs))
    return t_model, t_bih, 1 - keep.mean(), first


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--finetune-steps", type=int, default=300)
    parser.add_argument("--model", help="a model file to score instead of the bundled default")
    parser.add_argument("--speed-only", action="store_true", help="only the whole-scene timing")
    args = parser.parse_args()
    model = xdl.load_model(args.model) if args.model else xdl.pretrained.load()
    print(f"# xdl {xdl.__version__}; model: {model.card.get('description', '')[:100]}...")
    for label, (ds, var) in ({} if args.speed_only else scenes(args.quick)).items():
        report = ds.dl.evaluate(model, variables=[var], gaps=GAPS, fraction=0.1, seed=0)
        print(table(report, f"{label}: default model"))
        if args.finetune_steps:
            t0 = time.perf_counter()
            tuned = finetune(ds, var, args.finetune_steps, model)
            t_fit = time.perf_counter() - t0
            tuned_report = ds.dl.evaluate(tuned, variables=[var], gaps=GAPS, fraction=0.1, seed=0,
                                          baselines=())
            print()
            print(table(xr.concat([tuned_report, report.drop_sel({"method": "model"})], "method"),
                        f"{label}: default model fine-tuned on the scene ({args.finetune_steps} steps, {t_fit:.0f} s CPU)"))
        print()
    goes, var = scenes(args.quick)["GOES-16 CONUS C07 Rad"]
    t_model, t_bih, share, first = speed(goes, var, model)
    print(f"Whole CONUS scene {goes[var].shape}, {share:.1%} gaps, median of {SPEED_REPEATS} runs each: default model "
          f"{t_model:.2f} s (first run in the process {first:.2f} s), biharmonic {t_bih:.2f} s "
          f"(model / biharmonic = {t_model / t_bih:.2f})")


if __name__ == "__main__":
    main()
