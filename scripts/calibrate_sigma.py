"""Distance-to-data calibration of the bundled context model's sigma (issue #16).

A sigma head trained on 128-256 px windows (as ``fill-context``'s was before session 22, when the
bundled file lost its learned weights) gives sigmas far too small inside the large blocks and
clouds of a full-size scene. This script runs the model (through xdl's own
``inpaint``) on FULL-SIZE scenes of its training data only (never the held-out benchmark scenes:
GOES-16 CONUS C07/C16, MERRA-2 PS, ERA-40 TCW), hides gaps of the benchmark's kinds and sizes
(``xdl.hiding``: scan lines, blocks, clouds, 10% of the valid pixels, several seeds) over each whole
scene, and scores the hidden pixels in the right fifth of each field (the columns training never
saw: scripts/train_default.py keeps them for validation). From their errors, their sigmas before
any distance scaling (the card's ``scale``, or its ``scale_by_input`` for the case's input kind)
and their distance to the nearest valid pixel it fits, in turns, per-distance factors shared by
all cases (``xdl.training.calibration.distance_scales``) and one factor per input kind (single
field, other variables, time steps), and writes them into the card's ``uncertainty``
(``distance_bins`` / ``distance_scales`` / ``scale_by_input``, applied by ``inpaint``: see
``xdl.uncertainty``). Prints the per-case and gap-kind coverage before and after.

    python scripts/calibrate_sigma.py                       # print the card entry only
    python scripts/calibrate_sigma.py --model xdl/weights/fill-context.safetensors \\
        --out xdl/weights/fill-context.safetensors          # write it (weights unchanged)

About 3-6 minutes on 2 CPU cores (``--seeds 3``).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import xarray as xr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import xdl  # noqa: E402
from xdl import hiding, metrics, uncertainty  # noqa: E402
from xdl.conventions import cf, domains  # noqa: E402
from xdl.conventions.validity import valid_mask  # noqa: E402
from xdl.training.calibration import DISTANCE_EDGES, best_scale, distance_scales  # noqa: E402

SHARED = Path(os.environ.get("XDL_SHARED_DATA", ROOT.parent / "shared" / "data"))
MODEL = ROOT / "xdl" / "weights" / "fill-context.safetensors"
GAPS = ("scanlines", "blocks", "clouds")
VAL_SHARE = 0.2          # the right fifth of every field, as in scripts/train_default.py
PER_DRAW = 20_000        # hidden pixels of one (scene, gap kind, seed) in the fit: small scenes count too


def _open(path, variables, **sel):
    ds = xr.open_dataset(path)[variables]
    return ds.isel({k: v for k, v in sel.items() if k in ds.dims}).squeeze(drop=True).load()


def _goes_m1(bands):
    """GOES-17 M1 bands on their own (2 km) grid, as one Dataset."""
    out = {}
    for band in bands:
        path = sorted(glob.glob(str(SHARED / f"goes/OR_ABI-L1b-RadM1-M6{band}_G17_*.nc")))[0]
        out[band] = xr.open_dataset(path).Rad.reset_coords(drop=True).load()
    return xr.Dataset(out)


def cases():
    """(label, dataset, target, context variables, time_window): full-size training scenes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        conus = xr.open_dataset(sorted(glob.glob(str(SHARED / "goes/OR_ABI-L1b-RadC-M6C16_G17_*.nc")))[0])
        conus = conus[["Rad", "goes_imager_projection"]].load()
        m1 = _goes_m1(["C07", "C16", "C13", "C11"])
        eraint = _open(SHARED / "reanalysis/eraint_uvz.nc", ["u", "v", "z"], level=1)
        era5 = _open(SHARED / "reanalysis/era5_1995-07-14T12.nc", ["t2m", "d2m", "sp"])
        mss = _open(SHARED / "ocean_land/mss.nc", ["mss"])
        hgt = _open(SHARED / "reanalysis/hgt500_djf.nc", ["z"])
        sst = _open(SHARED / "ocean_land/sst_ndjfm_anom.nc", ["sst"])
        uwnd = _open(SHARED / "reanalysis/uwnd_200hPa_monthly_mean.nc", ["uwnd"])
    return [("GOES-17 CONUS C16", conus, "Rad", [], 0),
            ("GOES-17 M1 C07 | C16", m1, "C07", ["C16"], 0),
            ("GOES-17 M1 C13 | C11", m1, "C13", ["C11"], 0),
            ("ERA-Interim u | v", eraint, "u", ["v"], 0),
            ("ERA5 t2m | d2m", era5, "t2m", ["d2m"], 0),
            ("ERA5 sp", era5, "sp", [], 0),
            ("mss", mss, "mss", [], 0),
            ("hgt500, time_window=1", hgt, "z", [], 1),
            ("SST anomaly, time_window=1", sst, "sst", [], 1),
            ("200 hPa u monthly, time_window=1", uwnd, "uwnd", [], 1)]


def without_distance(model):
    """The model with its card's distance calibration removed: sigma before distance scaling."""
    card = dict(model.card)
    card["uncertainty"] = {k: v for k, v in card["uncertainty"].items() if not k.startswith("distance_")}
    return xdl.Model(model.module, card)


def run_case(model, ds, target, context, window, seeds):
    """Per gap kind: (err, sigma, distance, in the right fifth) of every hidden pixel, over ``seeds``."""
    arr = ds[target]
    valid = np.asarray(valid_mask(arr, None).values, bool)
    truth = np.where(valid, arr.values, np.nan).astype(arr.dtype)
    dom = domains.auto_domain(ds, arr, valid=valid_mask(arr, None))
    dom_np = None if dom is None else np.asarray(dom.broadcast_like(arr).transpose(*arr.dims).values, bool)
    eligible = valid if dom_np is None else valid & dom_np
    right = np.zeros(arr.shape, bool)
    right[..., int(round(arr.shape[-1] * (1 - VAL_SHARE))):] = True
    out = {}
    for ig, gap in enumerate(GAPS):
        parts = []
        for seed in seeds:
            hidden = hiding.hide(gap, arr.shape, 0.1, (int(seed), 0, ig), arr, None, eligible)
            keep = valid & ~hidden
            kw = dict(uncertainty=True, domain=dom, time_window=window)
            if context:  # as evaluate does: the target's hidden pixels NaN, its validity attributes dropped
                attrs = {k: v for k, v in arr.attrs.items() if k not in cf.VALIDITY_ATTRS}
                gappy = ds.assign({target: xr.DataArray(np.where(keep, truth, np.nan), dims=arr.dims,
                                                        coords=arr.coords, attrs=attrs)})
                res = gappy.dl.inpaint(model, variables=[target], context=context, **kw)
            else:
                res = arr.copy(data=truth).dl.inpaint(model, mask=arr.copy(data=keep), **kw)
            fill = res[target].transpose(*arr.dims).values.astype(np.float64)
            sigma = res[uncertainty.sigma_name(target)].transpose(*arr.dims).values.astype(np.float64)
            dist = uncertainty.gap_distance(keep, DISTANCE_EDGES[-1])
            ok = hidden & np.isfinite(fill) & np.isfinite(sigma) & (sigma > 0)
            parts.append((fill[ok] - truth[ok], sigma[ok], dist[ok].astype(np.float64), right[ok]))
        out[gap] = [np.concatenate(p) for p in zip(*parts)]
    return out


def scores(err, sigma):
    s = metrics.uncertainty_scores(np.zeros_like(err), err, sigma)
    s["rmse"] = float(np.sqrt(np.mean(err * err)))
    return s


def table(rows, fit, by_kind):
    """Before / after per case and gap kind (right-fifth pixels)."""
    lines = ["| case | gaps | pixels | within 1 sigma | within 2 sigma | RMS(sigma)/RMSE | CRPS / CRPS const |",
             "|---|---|---|---|---|---|---|"]
    for label, gap, kind, (err, sigma, dist) in rows:
        before = scores(err, sigma)
        factor = by_kind[kind] * uncertainty.distance_factor(dist, fit["distance_bins"], fit["distance_scales"])
        after = scores(err, sigma * factor)
        cell = lambda k, f: f"{f.format(before[k])} -> {f.format(after[k])}"  # noqa: E731
        lines.append(f"| {label} | {gap} | {err.size} | {cell('coverage1', '{:.1%}')} | "
                     f"{cell('coverage2', '{:.1%}')} | "
                     f"{cell('spread_skill', '{:.2f}')} | {before['crps'] / before['crps_const']:.3f} -> "
                     f"{after['crps'] / after['crps_const']:.3f} |")
    return "\n".join(lines)


def collect(model, seeds, only=None):
    rows, fit_z, fit_d, fit_k = [], [], [], []
    rng = np.random.default_rng(0)
    for label, ds, target, context, window in cases():
        if only and not any(o in label for o in only):
            continue
        t0 = time.perf_counter()
        kind = uncertainty.input_kind(context, window)
        for gap, (err, sigma, dist, right) in run_case(model, ds, target, context, window, seeds).items():
            err, sigma, dist = err[right], sigma[right], dist[right]
            rows.append((label, gap, kind, (err, sigma, dist)))
            take = rng.permutation(err.size)[:PER_DRAW * len(seeds)]  # each case about alike in the fit
            fit_z.append(err[take] / sigma[take])
            fit_d.append(dist[take])
            fit_k.append(np.full(take.size, kind))
        print(f"# {label}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return rows, np.concatenate(fit_z), np.concatenate(fit_d), np.concatenate(fit_k)


def kind_fit(z, kinds):
    """One factor per input kind, no distance factors (a sigma that already grows with distance
    to data, as a kriged one does)."""
    return {k: float(best_scale(z[kinds == k])) for k in np.unique(kinds)}


def joint_fit(z, d, kinds, rounds=4):
    """Factors by distance shared by every input kind, and one factor per kind on top of the card's
    ``scale_by_input``: within a scene the best factor grows with distance alike, while its level
    differs with what the model is given. Fitted in turns (distance factors on z / kind factor,
    kind factors on z / distance factor)."""
    by_kind = {k: 1.0 for k in np.unique(kinds)}
    fit = None
    for _ in range(rounds):
        level = np.array([by_kind[k] for k in kinds])
        fit = distance_scales(z / level, d)
        f = uncertainty.distance_factor(d, fit["distance_bins"], fit["distance_scales"])
        by_kind = {k: float(best_scale(z[kinds == k] / f[kinds == k])) for k in by_kind}
    return fit, by_kind


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(MODEL), help="the model file to calibrate (default: fill-context)")
    parser.add_argument("--out", help="write the model with the calibrated card here (may be --model itself)")
    parser.add_argument("--seeds", type=int, default=3, help="gap draws per scene and kind (default 3)")
    parser.add_argument("--only", nargs="*", help="cases whose label contains one of these (a quick look)")
    parser.add_argument("--no-distance", action="store_true",
                        help="one factor per input kind only (for a sigma that already grows with distance)")
    args = parser.parse_args(argv)
    model = xdl.load_model(args.model)
    if not (model.card.get("uncertainty") or {}).get("kind"):
        raise SystemExit(f"{args.model}: its card has no 'uncertainty': the model gives no sigma")
    base = without_distance(model)
    rows, z, d, kinds = collect(base, list(range(args.seeds)), args.only)
    overall = best_scale(z)
    entry = dict(base.card["uncertainty"])
    scales = {k: float(uncertainty.sigma_scale(base, k)) for k in uncertainty.INPUT_KINDS}
    if args.no_distance:
        by_kind = kind_fit(z, kinds)
        fit = {"distance_bins": [0.0], "distance_scales": [1.0]}  # a factor of 1 everywhere, for the table
        note = (f"scripts/calibrate_sigma.py --no-distance: {z.size} hidden pixels in the right fifth of full-size "
                f"training scenes ({len({r[0] for r in rows})} cases x {', '.join(GAPS)} at 10% x {args.seeds} "
                f"seeds; at most {PER_DRAW} pixels a draw); one factor per input kind on scale_by_input "
                f"({', '.join(f'{k} {v:.3f}' for k, v in by_kind.items())}); one factor for all would be {overall:.3f}")
        entry["scale_by_input"] = {k: round(scales[k] * by_kind.get(k, 1.0), 4) for k in uncertainty.INPUT_KINDS}
        entry["calibration"] = note
    else:
        fit, by_kind = joint_fit(z, d, kinds)
        entry["scale_by_input"] = {k: round(scales[k] * by_kind.get(k, 1.0), 4) for k in uncertainty.INPUT_KINDS}
        entry = {**entry, "distance_bins": fit["distance_bins"],
                 "distance_scales": [round(s, 4) for s in fit["distance_scales"]],
                 "distance_calibration": (
                     f"scripts/calibrate_sigma.py: {z.size} hidden pixels in the right fifth of full-size training "
                     f"scenes ({len({r[0] for r in rows})} cases x {', '.join(GAPS)} at 10% x {args.seeds} seeds; "
                     f"at most {PER_DRAW} pixels a draw); factors on top of 'scale' by distance (pixels) to the "
                     f"nearest valid pixel, per bin {fit['n_pixels']} pixels, fitted in turns with one factor per "
                     f"input kind on scale_by_input ({', '.join(f'{k} {v:.3f}' for k, v in by_kind.items())}); one "
                     f"factor for all would be {overall:.3f}")}
        fit["distance_scales"] = entry["distance_scales"]
    print(table(rows, fit, by_kind))
    print(json.dumps({"uncertainty": entry}, indent=1))
    if args.out:
        xdl.Model(model.module, {**model.card, "uncertainty": entry}).save(args.out)
        print(f"# wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
