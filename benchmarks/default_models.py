"""The bundled gap fillers alone (no context) on 17 real fields: `fill-default` (harmonic fill + a
learned UNet correction, the plain default before session 36) and `fill-context` (kriged fill, the
default since), each scored by `evaluate` (irregular, scan-line, block and cloud gaps, 10% of the
valid pixels, seed 0) as RMSE over the better of linear and biharmonic interpolation.

    python benchmarks/default_models.py [NAME_PART ...]     # ~1 minute on 2 CPU cores

Prints one line per field and gap kind and the geometric mean and worst ratio of each model. The
GOES CONUS C07, MERRA-2 and ERA-40 fields are held out of every training; the others are among
`fill-default`'s training data (which favours it).
"""
import glob
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import xarray as xr

import xdl  # noqa: F401 (registers the .dl accessor)
from xdl.models import pretrained

SHARED = Path(os.environ.get("XDL_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
GAPS = ["irregular", "scanlines", "blocks", "clouds"]


def _open(pattern, var=None, **isel):
    """A loader of variable ``var`` (None: the first float field) of the file matching ``pattern``."""
    def load():
        ds = xr.open_dataset(glob.glob(str(SHARED / pattern))[0]).isel(isel).squeeze(drop=True).load()
        name = var or next(v for v in ds.data_vars if ds[v].ndim >= 2 and np.issubdtype(ds[v].dtype, np.floating))
        return ds[[name]], name
    return load


CASES = {
    "eraint z500": _open("reanalysis/eraint_uvz.nc", "z", month=0, level=1),
    "eraint u850": _open("reanalysis/eraint_uvz.nc", "u", month=1, level=2),
    "hgt500": _open("reanalysis/hgt500_djf.nc", "z", time=slice(0, 3)),
    "era40 tcw (held-out)": _open("reanalysis/era40_tcw.nc", "tcw", time=slice(0, 3)),
    "merra2 ps (held-out)": _open("reanalysis/merra2_M2T1NXSLV_ps.nc4", "PS"),
    "era5 1995 t2m": _open("reanalysis/era5_1995-07-14T12.nc", "t2m"),
    "uwnd200": _open("reanalysis/uwnd_200hPa_monthly_mean.nc", time=slice(0, 3)),
    "sst anom": _open("ocean_land/sst_ndjfm_anom.nc", "sst", time=slice(0, 3)),
    "mss": _open("ocean_land/mss.nc", "mss", lat=slice(300, 600), lon=slice(0, 400)),
    "goes M1 C13": _open("goes/OR_ABI-L1b-RadM1-M6C13_G17*.nc", "Rad", y=slice(100, 400), x=slice(100, 400)),
    "goes M1 C07": _open("goes/OR_ABI-L1b-RadM1-M6C07_G17*.nc", "Rad", y=slice(100, 400), x=slice(100, 400)),
    "goes M1 C01": _open("goes/OR_ABI-L1b-RadM1-M6C01_G17*.nc", "Rad", y=slice(200, 600), x=slice(200, 600)),
    "goes CONUS C07 crop (held-out)": _open("goes/OR_ABI-L1b-RadC-M6C07_G16_*.nc", "Rad", y=slice(500, 800),
                                            x=slice(1000, 1400)),
    "modis sst": _open("swath/MODIS_T-JPL-L2P-v2014.0.nc", "sea_surface_temperature", nj=slice(300, 700),
                       ni=slice(400, 800)),
    "ndvi": _open("land/ndvi_max.nc"),
    "msg bt": _open("projected/msg_toa_bt_10p8_stereographic.nc"),
    "uk tmean": _open("projected/uk_tmean_1910_osgb.nc"),
}


def main(only):
    warnings.simplefilter("ignore")
    models = {name: pretrained.load(name) for name in (pretrained.FINE_TUNABLE, pretrained.DEFAULT_INPAINT)}
    ratios = {name: [] for name in models}
    for label, load in CASES.items():
        if only and not any(part in label for part in only):
            continue
        ds, var = load()
        rmse = {name: ds.dl.evaluate(m, variables=[var], gaps=GAPS, fraction=0.1).rmse.sel(variable=var)
                for name, m in models.items()}
        for gap in GAPS:
            base = rmse[pretrained.DEFAULT_INPAINT].sel(gaps=gap)
            best = min(float(base.sel({"method": "linear"})), float(base.sel({"method": "biharmonic"})))
            line = []
            for name in models:
                ratio = float(rmse[name].sel(gaps=gap).sel({"method": "model"})) / best
                ratios[name].append(ratio)
                line.append(f"{name} {ratio:5.2f}")
            print(f"{label:32s} {gap:10s} model / best interpolator: {'  '.join(line)}", flush=True)
    for name, r in ratios.items():
        r = np.array(r)
        print(f"{name}: geometric mean {np.exp(np.log(r).mean()):.3f}, worst {r.max():.2f} ({len(r)} cases)")


if __name__ == "__main__":
    main(sys.argv[1:])
