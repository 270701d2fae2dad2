"""Fill gaps in a global reanalysis field over the ocean only, wrapping at the dateline.

ERA-40 total column water (global 2.5 degrees, longitude 0..357.5: xdl detects the periodic
longitude and wraps tiles across the dateline) gets cloud-like gaps; the domain is the ocean from
a basin mask regridded to the same grid, so gaps over land stay NaN and are flagged
"outside_fill_domain".

    python examples/reanalysis_gap_fill.py [--small] [--model M.safetensors]
"""

from pathlib import Path

import numpy as np
import xarray as xr

import xdl
from xdl import masks, metrics

from _common import data_file, parser


def main():
    args = parser(__doc__).parse_args()
    ds = xr.open_dataset(data_file("reanalysis/era40_tcw.nc"), chunks={"time": 4})
    if args.small:
        ds = ds.isel(time=slice(0, 4))
    basin = xr.open_dataset(data_file("ocean_land/basin_mask.nc")).basin.isel(Z=0)
    ocean = basin.interp(Y=ds.latitude, X=ds.longitude, method="nearest", kwargs={"fill_value": None}).notnull()
    ocean = ocean.drop_vars(["Y", "X", "Z"], errors="ignore")
    truth = ds.tcw.values
    hidden = ~masks.clouds(truth.shape, 0.2, np.random.default_rng(1))
    gappy = ds.assign(tcw=ds.tcw.where(~hidden))
    assert xdl.conventions.layout.is_periodic_longitude(gappy.tcw, "longitude")
    filled = gappy.dl.inpaint(args.model, domain=ocean)
    out = Path(args.out)
    out.mkdir(exist_ok=True)
    filled.to_zarr(out / "tcw_filled.zarr", mode="w")
    result = filled.tcw.values
    sea = ocean.values[None] & hidden
    land = ~ocean.values[None] & hidden
    assert np.isnan(result[land]).all(), "a gap over land was filled"
    assert np.isfinite(result[sea]).all(), "a gap over the ocean was left"
    scores = metrics.scores(truth, result, sea)
    print(f"ERA-40 tcw {truth.shape}: {hidden.mean():.0%} hidden; ocean gaps filled, land gaps left NaN")
    print(f"  RMSE over hidden ocean pixels {scores['rmse']:.2f} kg m-2 (field std {np.nanstd(truth):.2f}), "
          f"correlation {scores['corr']:.3f}")
    print(f"  dateline columns filled: {np.isfinite(result[:, :, [0, -1]][sea[:, :, [0, -1]]]).all()}")


if __name__ == "__main__":
    main()
