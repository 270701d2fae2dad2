"""The pipeline's own cost: xdl's predict with a near-free model against the naive paths.

From one run, on the same array and the same threads (dask's threaded scheduler):
- ``predict().compute()`` with a near-free model (``x * 2``, a module with ``in_channels = 1``),
- the naive ``xr.apply_ufunc(dask="parallelized")`` torch closure users write today,
- a plain dask elementwise ``x * 2``,
and their ratios; then ``inpaint()`` with the default model against the model alone on the same
tiles (the harmonic-plus-UNet forward on each tile, called directly).

    python benchmarks/pipeline_overhead.py [--shape 64 512 512] [--chunk 4] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import xarray as xr

import xdl


class Times2(torch.nn.Module):
    """A near-free model: the pipeline, not the model, sets the pace."""

    in_channels = out_channels = 1
    size_multiple, halo, mode = 1, 0, "spatial"

    def forward(self, x):
        return x * 2


def best_of(fn, repeats: int) -> float:
    fn()  # warm-up: model residency, graph caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=int, nargs=3, default=(64, 512, 512))
    parser.add_argument("--chunk", type=int, default=4, help="samples per dask chunk")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--inpaint-shape", type=int, nargs=2, default=(1500, 2500))
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    data = rng.standard_normal(tuple(args.shape)).astype("f4")
    arr = xr.DataArray(data, dims=("time", "y", "x"), name="v").chunk({"time": args.chunk})
    pixels = data.size
    net = Times2().eval()

    def xdl_predict():
        arr.dl.predict(net).compute()

    def naive():
        def closure(block):
            with torch.inference_mode():
                return net(torch.from_numpy(np.ascontiguousarray(block))[:, None])[:, 0].numpy()

        xr.apply_ufunc(closure, arr, dask="parallelized", output_dtypes=[np.float32]).compute()

    def elementwise():
        (arr * 2).compute()

    rates = {name: pixels / best_of(fn, args.repeats) / 1e6
             for name, fn in (("xdl predict", xdl_predict), ("naive apply_ufunc", naive),
                              ("dask elementwise", elementwise))}
    print(f"# xdl {xdl.__version__}, torch {torch.__version__}, {torch.get_num_threads()} torch threads; "
          f"array {tuple(args.shape)} float32 in chunks of {args.chunk}, best of {args.repeats}")
    print("| path | Mpix/s |\n|---|---|")
    for name, rate in rates.items():
        print(f"| {name} | {rate:.0f} |")
    print(f"\nxdl / naive = {rates['xdl predict'] / rates['naive apply_ufunc']:.2f}; "
          f"xdl / elementwise = {rates['xdl predict'] / rates['dask elementwise']:.2f}")

    # inpaint with the default model vs the model alone on the same tiles
    ny, nx = args.inpaint_shape
    y = np.linspace(0, 1, ny)[:, None]
    x = np.linspace(0, 1, nx)[None, :]
    field = (280 + 5 * np.sin(6 * x) * np.cos(4 * y) + 0.1 * rng.standard_normal((ny, nx))).astype("f4")
    field[::23] = np.nan  # scan lines
    scene = xr.DataArray(field, dims=("y", "x"), name="t")
    model = xdl.pretrained.load()
    t_inpaint = best_of(lambda: scene.dl.inpaint(model), args.repeats)
    spec = xdl.engine.spec.engine_spec(model)
    run = xdl.engine.options.RunOptions.build(spec, "auto", "auto", None, None, None)
    plans = [xdl.engine.tiling.AxisPlan.build(n, halo=spec.halo, tile=run.tile, size_multiple=spec.size_multiple)
             for n in (ny, nx)]
    padded = np.take(np.take(np.nan_to_num(field), plans[0].padded_index(), 0), plans[1].padded_index(), 1)
    valid = np.take(np.take(np.isfinite(field), plans[0].padded_index(), 0), plans[1].padded_index(), 1)
    tiles, _ = xdl.engine.tiling.cut_tiles(padded[None, None], plans)
    masks, _ = xdl.engine.tiling.cut_tiles(valid[None, None].astype("f4"), plans)
    module = model.module.eval()

    def model_alone():
        with torch.inference_mode():
            context = torch.autocast("cpu", dtype=run.autocast) if run.autocast is not None else torch.autocast("cpu", enabled=False)
            with context:
                for t, m in zip(tiles, masks):
                    module(torch.from_numpy(np.ascontiguousarray(t[None])), torch.from_numpy(np.ascontiguousarray(m[None])))

    t_model = best_of(model_alone, args.repeats)
    print(f"\ninpaint {ny} x {nx} (scan-line gaps, default model, {len(tiles)} tiles of "
          f"{plans[0].tile_size} x {plans[1].tile_size}): inpaint {t_inpaint:.2f} s, model alone on the same "
          f"tiles {t_model:.2f} s (inpaint / model = {t_inpaint / t_model:.2f})")


if __name__ == "__main__":
    main()
