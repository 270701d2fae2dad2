"""Context cases on scenes the bundled default trains and is tuned on: the check that a change helps
beyond the held-out benchmark (benchmarks/inpaint_quality.py), which must not be tuned on.

Seven cases, each with scan lines, blocks and clouds (10% of the valid pixels hidden, ``evaluate``)
and ``--seeds`` gap draws (default 3): GOES-17 M1 C07 with C16 and C13 with C11 as context
(500 x 500), ERA-Interim u200-ish (month 0, level 1) with v, ERA5 regional t2m with d2m, and with
``time_window=1`` the Pacific SST anomalies, the 500 hPa height winters and the monthly 200 hPa
zonal wind. One line per case and gap kind: the model's RMSE and the best of linear, biharmonic,
regression and local regression (means over the draws), their ratio, and the model's sigma
coverage within 1 and 2 sigma, RMS(sigma)/RMSE and CRPS against a constant sigma. About a minute
on 2 CPU cores.

    python benchmarks/training_scenes.py [--model PATH] [--seeds N] [--only TEXT] > after.log
    python benchmarks/training_scenes.py --compare before.log after.log

``--compare`` prints, per line, the model's RMSE after / before, the sigma numbers before and
after, whether each met all four sigma targets (63-73%, 91-98%, 0.8-1.25, CRPS below the
constant's), and the geometric mean and worst of the RMSE ratios.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import warnings
from pathlib import Path

import numpy as np
import xarray as xr

import xdl

DATA = Path(os.environ.get("XDL_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
GAPS = ["scanlines", "blocks", "clouds"]
BASELINES = ("linear", "biharmonic", "regression", "local_regression")


def _goes_m1(*bands) -> xr.Dataset:
    return xr.Dataset({b: xr.open_dataset(sorted(glob.glob(str(DATA / f"goes/OR_ABI-L1b-RadM1-M6{b}_G17_*.nc")))[0])
                       .Rad.reset_coords(drop=True) for b in bands})


def cases():
    """(label, dataset, target, context variables, time_window) of every case."""
    yield "GOES-17 M1 C07|C16", _goes_m1("C07", "C16"), "C07", ["C16"], 0
    yield "GOES-17 M1 C13|C11", _goes_m1("C13", "C11"), "C13", ["C11"], 0
    eraint = xr.open_dataset(DATA / "reanalysis/eraint_uvz.nc")[["u", "v"]].isel(month=0, level=1)
    yield "ERA-Interim u|v", eraint, "u", ["v"], 0
    era5 = xr.open_dataset(DATA / "reanalysis/era5_1995-07-14T12.nc")[["t2m", "d2m"]].squeeze(drop=True)
    yield "ERA5 t2m|d2m", era5, "t2m", ["d2m"], 0
    yield "SST anomaly tw1", xr.open_dataset(DATA / "ocean_land/sst_ndjfm_anom.nc")[["sst"]], "sst", [], 1
    yield "hgt500 tw1", xr.open_dataset(DATA / "reanalysis/hgt500_djf.nc")[["z"]], "z", [], 1
    yield "u200 monthly tw1", xr.open_dataset(DATA / "reanalysis/uwnd_200hPa_monthly_mean.nc")[["uwnd"]], "uwnd", [], 1


def run(model, seeds: int, only: str | None) -> None:
    for label, ds, var, context, window in cases():
        if only and only not in label:
            continue
        ds = ds.load()
        rows = {}
        for seed in range(seeds):
            report = ds.dl.evaluate(model, variables=[var], context=context or None, time_window=window, gaps=GAPS,
                                    fraction=0.1, seed=seed, baselines=BASELINES)
            for g in report.gaps.values:
                r = report.sel({"gaps": g})
                rmse = {str(m): float(r.rmse.sel({"method": m}).squeeze()) for m in r.method.values}
                best = min(v for m, v in rmse.items() if m != "model")
                s = r.sel({"method": "model"}).squeeze()
                rows.setdefault(str(g), []).append((rmse["model"], best, float(s.coverage1), float(s.coverage2),
                                                    float(s.spread_skill), float(s.crps), float(s.crps_const)))
        for g, values in rows.items():
            m = np.mean(values, axis=0)
            print(f"{label} | {g} | model {m[0]:.5g} best {m[1]:.5g} ratio {m[0] / m[1]:.3f} | cov1 {m[2]:.3f} "
                  f"cov2 {m[3]:.3f} ss {m[4]:.2f} crps {m[5]:.4g} const {m[6]:.4g}", flush=True)


def _read(path) -> dict:
    out = {}
    for line in open(path):
        if "| model " not in line:
            continue
        parts = line.strip().split(" | ")
        out[f"{parts[0]} | {parts[1]}"] = {k: float(v) for k, v in
                                            re.findall(r"([a-z0-9]+) ([-\d.e+]+)", " ".join(parts[2:]))}
    return out


def _meets(r: dict) -> bool:
    return (0.63 <= r["cov1"] <= 0.73 and 0.91 <= r["cov2"] <= 0.98 and 0.8 <= r["ss"] <= 1.25
            and r["crps"] < r["const"])


def compare(before_path, after_path) -> None:
    before, after = _read(before_path), _read(after_path)
    ratios, met = [], [0, 0]
    for key, a in before.items():
        if key not in after:
            continue
        b = after[key]
        ratios.append(b["model"] / a["model"])
        met[0] += _meets(a)
        met[1] += _meets(b)
        print(f"{key:40s} after/before {ratios[-1]:.3f}  vs best {a['ratio']:.3f} -> {b['ratio']:.3f}  "
              f"cov1 {a['cov1']:.2f} -> {b['cov1']:.2f}  cov2 {a['cov2']:.2f} -> {b['cov2']:.2f}  "
              f"ss {a['ss']:.2f} -> {b['ss']:.2f}  sigma targets {int(_meets(a))}{int(_meets(b))}")
    if ratios:
        print(f"RMSE after / before: geometric mean {np.exp(np.mean(np.log(ratios))):.4f}, worst {max(ratios):.3f}, "
              f"best {min(ratios):.3f} ({len(ratios)} lines); all sigma targets met: {met[0]} -> {met[1]}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(Path(xdl.__file__).parent / "weights" / "fill-context.safetensors"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--only", help="only the cases whose label contains this text")
    parser.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"), help="compare two logs of this script")
    args = parser.parse_args()
    if args.compare:
        compare(*args.compare)
        return
    warnings.filterwarnings("ignore")
    run(xdl.load_model(args.model), args.seeds, args.only)


if __name__ == "__main__":
    main()
