"""CPU throughput and out-of-core memory of ``predict``, from one run.

Part 1 (in memory): a 5.1M-parameter zoo UNet over a (32, 512, 512) float32 array chunked by 4
images, three ways, all on the same threads:
  * model-only: the same tiles xdl runs (512 + 2 x 32 halo), already as tensors, batch by batch;
  * xdl: ``da.dl.predict(model).compute()``;
  * naive: ``xr.apply_ufunc(dask="parallelized")`` with a torch closure, as users write today.
Throughput is output megapixels per second; ratios are printed.

Part 2 (out of core): ``predict(...).to_zarr()`` over uncompressed zarr stores of 1 GB and 4 GB
(float32) with a small 3-layer CNN, each in a fresh process; prints peak RSS and checks the output
against a direct model call on a few images.

    python benchmarks/predict_cpu.py            # both parts
    python benchmarks/predict_cpu.py --quick    # small sizes, to check the script works
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import xarray as xr

import xdl
from xdl.engine import tiling
from xdl.engine.options import DEFAULT_TILE

HERE = Path(__file__).resolve().parent
DATA = HERE / "_data"


def mpix(n_pixels, seconds):
    return n_pixels / seconds / 1e6


def in_memory(n, size, chunk):
    model = xdl.zoo.create("unet", in_channels=1, out_channels=1, base_channels=32, depth=4)
    module = model.module.eval()
    rng = np.random.default_rng(0)
    data = rng.standard_normal((n, size, size)).astype(np.float32)
    arr = xr.DataArray(data, dims=("time", "y", "x"), name="v").chunk({"time": chunk})
    pixels = n * size * size
    print(f"model: zoo unet, {model.num_parameters / 1e6:.1f}M parameters; data {data.shape} float32, "
          f"chunks of {chunk}; torch threads {torch.get_num_threads()}")

    # The tiles xdl runs: same plan as the engine's (one tile per image here: core + halo both sides).
    halo = model.card["halo"]
    plan = tiling.AxisPlan.build(size, halo=halo, tile=DEFAULT_TILE, size_multiple=model.card["size_multiple"])
    tile = plan.tile_size
    batch = max(1, 2 ** 18 // (tile * tile))  # the engine's CPU batch budget
    tiles = torch.from_numpy(rng.standard_normal((n, 1, tile, tile)).astype(np.float32))
    raw = torch.from_numpy(data[:, None])

    def run_model(tensor):
        with torch.inference_mode():
            for start in range(0, len(tensor), batch):
                module(tensor[start:start + batch])

    run_model(tiles[:batch])  # warm-up
    t0 = time.perf_counter()
    run_model(tiles)
    t_model = time.perf_counter() - t0
    t0 = time.perf_counter()
    run_model(raw)
    t_raw = time.perf_counter() - t0

    arr.dl.predict(model).isel(time=slice(0, chunk)).compute()  # warm-up: probes, resident copy
    t0 = time.perf_counter()
    out = arr.dl.predict(model).compute()
    t_xdl = time.perf_counter() - t0

    def closure(block):
        with torch.inference_mode():
            return module(torch.from_numpy(np.ascontiguousarray(block[:, None])))[:, 0].numpy()

    t0 = time.perf_counter()
    naive = xr.apply_ufunc(closure, arr, input_core_dims=[["y", "x"]], output_core_dims=[["y", "x"]],
                           dask="parallelized", output_dtypes=[np.float32]).compute()
    t_naive = time.perf_counter() - t0
    inner = (slice(None), slice(64, -64), slice(64, -64))
    diff = float(np.abs(out.values[inner] - naive.values[inner]).max())

    rows = {
        "model-only, xdl's tiles as tensors": t_model,
        "model-only, raw 512x512 images": t_raw,
        "xdl predict().compute()": t_xdl,
        "naive apply_ufunc (threads)": t_naive,
    }
    for name, seconds in rows.items():
        print(f"  {name:40s} {seconds:7.2f} s  {mpix(pixels, seconds):6.2f} Mpix/s")
    print(f"  tile {tile}x{tile} for {size}x{size} images (halo {halo}), batch {batch}")
    print(f"  xdl / model-only (same tiles): {t_model / t_xdl:.2f}   (target >= 0.75)")
    print(f"  xdl / model-only (raw images): {t_raw / t_xdl:.2f}")
    print(f"  xdl / naive:                   {t_naive / t_xdl:.2f}   (target >= 1.0)")
    print(f"  max |xdl - naive| away from image borders: {diff:.2e}")


# ------------------------------------------------------------------------------------------------
# Out of core

def small_cnn():
    """A small CNN, so that the out-of-core run measures streaming and memory, not FLOPs."""
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Conv2d(8, 1, 3, padding=1)).eval()


def make_store(path: Path, gigabytes: float, size: int):
    import dask.array as da

    n = int(round(gigabytes * 2 ** 30 / (size * size * 4)))
    if path.exists():
        existing = xr.open_zarr(path)
        if existing.sizes.get("time") == n:
            return n
        shutil.rmtree(path)
    data = da.random.default_rng(1).standard_normal((n, size, size), chunks=(8, size, size), dtype=np.float32)
    ds = xr.Dataset({"v": (("time", "y", "x"), data)}, coords={"y": np.arange(size), "x": np.arange(size)})
    ds.to_zarr(path, encoding={"v": {"compressors": None}}, zarr_format=3)
    return n


def peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM, not ru_maxrss: Linux copies ru_maxrss from the
    parent at fork, so a child of a big process would report the parent's peak."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ooc_child(gigabytes: float, size: int):
    """Runs in its own process: predict -> to_zarr, then report peak RSS and a correctness check."""
    src = DATA / f"src_{gigabytes:g}gb.zarr"
    dst = DATA / f"out_{gigabytes:g}gb.zarr"
    if dst.exists():
        shutil.rmtree(dst)
    module = small_cnn()
    ds = xr.open_zarr(src)
    t0 = time.perf_counter()
    ds.dl.predict(module).to_zarr(dst, zarr_format=3)
    seconds = time.perf_counter() - t0
    peak_mb = peak_rss_mb()
    # Correctness: a few images against a direct whole-image call, away from the borders.
    out = xr.open_zarr(dst)["v"]
    n = ds.sizes["time"]
    worst = 0.0
    for i in (0, n // 2, n - 1):
        image = ds["v"].isel(time=i).values
        with torch.inference_mode():
            ref = module(torch.from_numpy(image[None, None]))[0, 0].numpy()
        worst = max(worst, float(np.abs(out.isel(time=i).values - ref)[64:-64, 64:-64].max()))
    print(json.dumps({"gb": gigabytes, "images": n, "seconds": seconds, "peak_rss_mb": peak_mb,
                      "mpix_s": mpix(n * size * size, seconds), "max_abs_err": worst}))
    shutil.rmtree(dst)


def out_of_core(sizes_gb, size):
    DATA.mkdir(exist_ok=True)
    results = []
    for gb in sizes_gb:
        make_store(DATA / f"src_{gb:g}gb.zarr", gb, size)
        proc = subprocess.run([sys.executable, __file__, "--ooc-child", str(gb), "--size", str(size)],
                              capture_output=True, text=True, check=True)
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        r = results[-1]
        print(f"  {r['gb']:g} GB ({r['images']} x {size}x{size}): {r['seconds']:.1f} s, "
              f"{r['mpix_s']:.1f} Mpix/s, peak RSS {r['peak_rss_mb']:.0f} MB, max |err| {r['max_abs_err']:.1e}")
    if len(results) >= 2:
        ratio = results[-1]["peak_rss_mb"] / results[0]["peak_rss_mb"]
        print(f"  peak RSS {results[-1]['gb']:g} GB / {results[0]['gb']:g} GB: {ratio:.2f}   (target <= 1.25; "
              f"and <= 1500 MB: {max(r['peak_rss_mb'] for r in results):.0f} MB)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, to check the script")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--skip-ooc", action="store_true")
    parser.add_argument("--skip-memory", action="store_true", help="skip the in-memory comparison")
    parser.add_argument("--ooc-child", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ooc_child is not None:
        return ooc_child(args.ooc_child, args.size)
    print(f"# xdl {xdl.__version__}, torch {torch.__version__}, {os.cpu_count()} CPUs")
    if not args.skip_memory:
        print("## In memory")
        in_memory(8 if args.quick else 32, args.size, 4)
    if not args.skip_ooc:
        print("## Out of core (predict -> to_zarr)")
        out_of_core([0.05, 0.2] if args.quick else [1, 4], args.size)


if __name__ == "__main__":
    main()
