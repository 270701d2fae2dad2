"""The same gap filling on a dask.distributed cluster.

Here a LocalCluster of 2 worker processes; on a Pangeo-style cluster only the first lines change:

    from dask_gateway import Gateway                 # or dask_jobqueue.SLURMCluster(...)
    cluster = Gateway().new_cluster(); cluster.scale(8)
    # GPUs: from dask_cuda import LocalCUDACluster; cluster = LocalCUDACluster()  (one worker per GPU)
    client = Client(cluster)

The model's weights travel once per worker and stay resident there; the result is the same as
with the threaded scheduler, bit for bit.

    python examples/dask_cluster.py [--small] [--model M.safetensors]
"""

from pathlib import Path

import numpy as np
import xarray as xr
from distributed import Client, LocalCluster

import xdl
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
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, Client(cluster) as client:
        print(f"cluster: {len(client.scheduler_info()['workers'])} workers")
        gappy.dl.inpaint(args.model).to_zarr(out / "uwnd_filled.zarr", mode="w")
        loads = client.run(lambda: __import__("xdl.runner", fromlist=["x"]).ModelPayload.loads)
    on_cluster = xr.open_zarr(out / "uwnd_filled.zarr")
    same = np.array_equal(on_cluster.uwnd.values, threaded.uwnd.values, equal_nan=True)
    print(f"  weights received per worker: {sorted(loads.values())}")
    print(f"  cluster result == threaded result, bit for bit: {same}")
    assert same


if __name__ == "__main__":
    main()
