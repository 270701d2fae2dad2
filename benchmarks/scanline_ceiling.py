"""How far below biharmonic inpainting can any filler get on scan-line gaps of the held-out scenes?

An upper bound on skill from local context: for bands of ``t`` missing rows (t = 1, 2, 4, 8, one
band every 20 rows), predict the middle row of each band from a window of ``rows`` valid rows
above and below it and ``2 * cols + 1`` columns, with two predictors *fitted on the same scene*
(the west 60% of the columns; scored on the east 40%):

* the best linear filter (least squares: the optimal stationary linear interpolator, i.e. what
  kriging with the scene's own covariance would do);
* a small MLP on the same window, standardised by the window's mean and spread (a nonlinear,
  edge-aware predictor).

Both are compared with biharmonic and linear inpainting of the same bands (RMSE on the same
pixels). A default model that never saw the scene cannot beat predictors fitted on it, so their
ratio to the best baseline bounds what the default model can reach on thin gaps.

    python benchmarks/scanline_ceiling.py [--rows 4] [--cols 6] [--steps 2500]
"""

from __future__ import annotations

import argparse
import glob
import os
import time
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from numpy.lib.stride_tricks import sliding_window_view

from xdl import baselines

DATA = Path(os.environ.get("XDL_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
TRAIN_SHARE = 0.6
EVERY = 20  # rows between band starts


def scenes() -> dict[str, np.ndarray]:
    goes = xr.open_dataset(sorted(glob.glob(str(DATA / "goes" / "OR_ABI-L1b-RadC-M6C07_G16_*.nc")))[0])
    merra = xr.open_dataset(DATA / "reanalysis" / "merra2_M2T1NXSLV_ps.nc4")
    return {"GOES-16 CONUS C07 Rad": goes["Rad"].values.astype("f8"),
            "MERRA-2 PS (first time step)": merra["PS"].values[0].astype("f8")}


def windows(field, thick, rows, cols):
    """Context windows (n, 2 * rows * (2 * cols + 1)), targets (n,) and columns (n,) for the middle
    row of bands of ``thick`` rows starting every EVERY rows."""
    ny, nx = field.shape
    starts = np.arange(max(rows, EVERY), ny - thick - rows, EVERY)
    feats, target, column = [], [], []
    for s in starts:
        context = np.concatenate([field[s - rows:s], field[s + thick:s + thick + rows]])
        win = sliding_window_view(context, (2 * rows, 2 * cols + 1))[0]
        feats.append(win.reshape(len(win), -1))
        target.append(field[s + thick // 2, cols:nx - cols])
        column.append(np.arange(cols, nx - cols))
    x, y, col = np.concatenate(feats), np.concatenate(target), np.concatenate(column)
    ok = np.isfinite(x).all(axis=1) & np.isfinite(y)
    return x[ok], y[ok], col[ok], starts


def baseline_rmse(field, thick, starts, rows, cols):
    """Biharmonic and linear inpainting RMSE on the middle rows of the bands, east side only."""
    finite = np.isfinite(field)
    valid = finite.copy()
    for s in starts:
        valid[s:s + thick] = False
    scored = np.zeros_like(finite)
    scored[starts + thick // 2, int(field.shape[1] * TRAIN_SHARE):field.shape[1] - cols] = True
    scored &= finite
    out = {}
    for name in ("biharmonic", "linear"):
        filled = baselines.get(name)(field, valid, domain=finite)
        out[name] = float(np.sqrt(np.mean((filled[scored] - field[scored]) ** 2)))
    return out


def fit_mlp(x, y, weight, steps, seed=0):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], 256), torch.nn.GELU(),
                              torch.nn.Linear(256, 256), torch.nn.GELU(), torch.nn.Linear(256, 1))
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    xt, yt, wt = (torch.tensor(a, dtype=torch.float32) for a in (x, y, weight))
    for _ in range(steps):
        i = torch.randint(0, len(xt), (1024,))
        loss = (wt[i] * (net(xt[i])[:, 0] - yt[i]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net


def ceiling(field, thick, rows, cols, steps):
    x, y, col, starts = windows(field, thick, rows, cols)
    train = col < field.shape[1] * TRAIN_SHARE
    test = ~train
    mean = x.mean(axis=1, keepdims=True)
    spread = x.std(axis=1, keepdims=True) + 1e-6 * np.abs(x).mean()
    # Least-squares linear filter on the window minus its mean (so it is exact for constants).
    w, *_ = np.linalg.lstsq(x[train] - mean[train], y[train] - mean[train, 0], rcond=None)
    linear_filter = (x[test] - mean[test]) @ w + mean[test, 0]
    # MLP on standardised windows; the loss weighted by spread**2 so it minimises the RMSE in the
    # field's own units, like the filter.
    xn, yn = (x - mean) / spread, (y - mean[:, 0]) / spread[:, 0]
    weight = spread[train, 0] ** 2 / np.mean(spread[train, 0] ** 2)
    net = fit_mlp(xn[train], yn[train], weight, steps)
    with torch.no_grad():
        mlp = net(torch.tensor(xn[test], dtype=torch.float32))[:, 0].numpy() * spread[test, 0] + mean[test, 0]
    rmse = {"filter": float(np.sqrt(np.mean((linear_filter - y[test]) ** 2))),
            "mlp": float(np.sqrt(np.mean((mlp - y[test]) ** 2)))}
    return {**rmse, **baseline_rmse(field, thick, starts, rows, cols)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=4, help="valid rows used above and below the band")
    parser.add_argument("--cols", type=int, default=6, help="columns used each side of the pixel")
    parser.add_argument("--steps", type=int, default=2500, help="MLP training steps")
    args = parser.parse_args()
    print(f"window: {args.rows} rows above and below, {2 * args.cols + 1} columns; fitted on the west "
          f"{TRAIN_SHARE:.0%} of the scene, scored on the east {1 - TRAIN_SHARE:.0%}")
    print("| scene | band rows | biharmonic | linear | best linear filter | MLP | filter / best baseline | MLP / best baseline | seconds |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, field in scenes().items():
        for thick in (1, 2, 4, 8):
            t0 = time.perf_counter()
            r = ceiling(field, thick, args.rows, args.cols, args.steps)
            best = min(r["biharmonic"], r["linear"])
            print(f"| {label} | {thick} | {r['biharmonic']:.4g} | {r['linear']:.4g} | {r['filter']:.4g} | "
                  f"{r['mlp']:.4g} | {r['filter'] / best:.2f} | {r['mlp'] / best:.2f} | {time.perf_counter() - t0:.0f} |",
                  flush=True)


if __name__ == "__main__":
    main()
