"""The same gap filling on a dask.distributed cluster.

Here a LocalCluster of 2 worker processes; on a Pangeo-style cluster only the first lines change:

    from dask_gateway import Gateway                 # or dask_jobqueue.SLURMCluster(...)
    cluster = Gateway().new_cluster(); cluster.scale(8)
    # GPUs: from dask_cuda import LocalCUDACluster; cluster = LocalCUDACluster()  (one worker per GPU)
    client = Client(cluster)

The model's weights travel once per worker and stay resident there. The result equals the
threaded scheduler's bit for bit: dask's nanny starts workers with one torch thread, so xdl runs
each model call with the caller's thread count (``threads=``) and one tile per call on CPUs,
since oneDNN's convolutions round differently with other thread counts and batch sizes.

    python examples/dask_cluster.py [--small] [--model M.safetensors]
"""

import logging
from pathlib import Path

import dask
import numpy as np
import xarray as xr
from distributed import Client, LocalCluster

import xdl  # noqa: F401 (registers the .dl accessor)
from xdl import masks

from _common import data_file, parser


def main():
    args = parser(__doc__).parse_args()
    ds = xr.open_dataset(data_file("reanalysis/uwnd_200hPa_monthly_mean.nc"), chunks={"time": 3})
    if args.small:
        ds = ds.isel(time=slice(0, 6))
    ds = ds[["uwnd"]]
    hidden = ~masks.scanlines(ds.uwnd.shape, 0.1, np.random.default_rng(2))
    gappy = ds.assign(uwnd=ds.uwnd.where(~hidden))
    out = Path(args.out)
    out.mkdir(exist_ok=True)
    threaded = gappy.dl.inpaint(args.model).compute(scheduler="threads")
    # distributed's workers set MALLOC_TRIM_THRESHOLD_, which makes every large temporary a fresh
    # mmap (fill-context ran 3x slower in a worker); a high mmap threshold restores the speed.
    # (A dotted key would replace the whole setting, OMP_NUM_THREADS=1 and all: merge into it.)
    environ = {**dask.config.get("distributed.nanny.pre-spawn-environ"), "MALLOC_MMAP_THRESHOLD_": 2 ** 25}
    with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}), \
            LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, Client(cluster) as client:
        print(f"cluster: {len(client.scheduler_info()['workers'])} workers")
        gappy.dl.inpaint(args.model).to_zarr(out / "uwnd_filled.zarr", mode="w")
        loads = client.run(lambda: __import__("xdl.engine.runner", fromlist=["x"]).ModelPayload.loads)
        # Closing: the nanny kills a worker whose interpreter takes more than 4 s to exit (torch's
        # teardown on a busy 2-core machine took 4.1-4.2 s in 5 of 9 runs) and logs "Worker process
        # still alive"; the result is written by then, so that one message is noise here.
        logging.getLogger("distributed.nanny").setLevel(logging.ERROR)
    on_cluster = xr.open_zarr(out / "uwnd_filled.zarr")
    a, b = on_cluster.uwnd.values, threaded.uwnd.values
    valid = np.isfinite(gappy.uwnd.values)
    same_valid = np.array_equal(a[valid], b[valid])
    same_nans = np.array_equal(np.isnan(a), np.isnan(b))
    diff = float(np.nanmax(np.abs(a - b)))
    scale = float(np.nanstd(b))
    same = np.array_equal(a, b, equal_nan=True)
    print(f"  weights received per worker: {sorted(loads.values())}")
    print(f"  valid values identical: {same_valid}; NaNs in the same places: {same_nans}")
    print(f"  largest fill difference cluster vs threaded: {diff:.3g} (field std {scale:.3g})")
    print(f"  bit for bit: {same}")
    assert same_valid and same_nans and same


if __name__ == "__main__":
    main()
