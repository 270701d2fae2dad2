"""Repair dropouts in GOES-17's long-wave IR bands from the bands that survive.

GOES-17's loop heat pipe could not keep the ABI detectors cold at some times of year: the
long-wave IR bands were lost first, while shorter-wave bands of the same scan survived. Here the
complete 2019-10-27 20:00Z mesoscale scene (2 km, 500 x 500) gets scan-line and block dropouts in
the long-wave IR bands C13-C16 only; ``evaluate`` repairs each of them from the surviving bands
C07-C11 of the same scan (``context=``) and scores the fill on the hidden pixels against linear
and biharmonic interpolation and the regressions of the band on the same context (one fit for
the scene; one per 25-pixel block on the pixels within 60 pixels).

A model that takes no context (e.g. ``--model fill-default``) is scored on the band
alone, beside the same baselines on the same hidden pixels: the gap patterns depend only on the
seed, the band and the gap kind.

    python examples/goes_band_repair.py [--small] [--model M.safetensors]
"""

import time

import xarray as xr

import xdl
from xdl.models.resolve import resolve_model

from _common import data_file, parser

TARGETS = ["C13", "C14", "C15", "C16"]   # long-wave IR window / CO2: lost
CONTEXT = ["C07", "C08", "C09", "C10", "C11"]  # shortwave window, water vapour, 8.4 um: survive
GAPS = ["scanlines", "blocks"]


def scene(small: bool) -> xr.Dataset:
    """The 2-km bands of one scan as one Dataset on the GOES fixed grid (same x/y in every file)."""
    bands = {}
    for band in CONTEXT + TARGETS:
        ds = xr.open_dataset(data_file(f"goes/OR_ABI-L1b-RadM1-M6{band}_G17_*.nc"))
        bands[band] = ds.Rad.reset_coords(drop=True).rename(band)  # scan times differ per band
    out = xr.Dataset(bands)
    out["goes_imager_projection"] = ds.goes_imager_projection
    if small:
        out = out.isel(y=slice(100, 260), x=slice(150, 310))
    return out.load()


def takes_context(model) -> bool:
    return bool(model.card.get("context")) or bool(getattr(model.module, "takes_context", False))


def score(ds, model, targets):
    common = dict(variables=targets, gaps=GAPS, fraction=0.1, seed=0)
    if takes_context(model):
        return ds.dl.evaluate(model, context=CONTEXT, **common), True
    alone = ds.dl.evaluate(model, baselines=(), **common)
    bar = ds.dl.evaluate(False, context=CONTEXT, **common)
    return xr.concat([alone, bar], "method"), False


def main():
    args = parser(__doc__).parse_args()
    ds = scene(args.small)
    # A file or a bundled name; by default the bundled default, as inpaint(context=...) takes.
    model = resolve_model(args.model, default=xdl.pretrained.default_for(context=CONTEXT))
    targets = TARGETS[:2] if args.small else TARGETS
    t0 = time.perf_counter()
    report, with_context = score(ds, model, targets)
    methods = [str(m) for m in report.method.values]
    units = ds[targets[0]].attrs.get("units", "")
    print(f"GOES-17 M1 2019-10-27 20:00Z, {ds.sizes['y']} x {ds.sizes['x']} (2 km): dropouts in "
          f"{','.join(targets)}, repaired from {','.join(CONTEXT)}")
    print(f"model: {report.attrs['model']} ({'with' if with_context else 'WITHOUT'} the context bands"
          f"{'' if with_context else ': it takes none'}); RMSE on the hidden pixels [{units}]")
    print(f"{'band':<5}{'gaps':<11}" + "".join(f"{m:>17}" for m in methods) + f"{'model/best':>12}")
    for v in targets:
        for g in GAPS:
            rmse = [float(report.rmse.sel({"variable": v, "gaps": g, "method": m})) for m in methods]
            best = min(r for m, r in zip(methods, rmse) if m != "model")
            ratio = rmse[methods.index("model")] / best
            print(f"{v:<5}{g:<11}" + "".join(f"{r:>17.4f}" for r in rmse) + f"{ratio:>12.2f}")
    print(f"({float(report.hidden_share.mean()):.1%} of the valid pixels hidden per case; "
          f"{time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
