"""The pipeline's own cost: xdl's predict with a near-free model against the naive paths.

From one run, on the same array and the same threads (dask's threaded scheduler):
- ``predict().compute()`` with a near-free model (``x * 2``, a module with ``in_channels = 1``),
- the naive ``xr.apply_ufunc(dask="parallelized")`` torch closure users write today,
- a plain dask elementwise ``x * 2``,
and their ratios; then ``inpaint()`` with the bundled ``fill-default`` (a UNet; the plain default
until session 36) against that model alone on the same tiles (its harmonic-plus-UNet forward on
each tile, called directly).

The three paths run in turns, round after round, and the ratios are given for each path's best
round and for its median round: on a machine shared with other work, load then falls on all
three alike instead of on whichever ran last (on this 2-core VM one path's best round varies by
about 10% from run to run, its median less).
``--device cuda`` runs the model of both torch paths there (each block copied over and back).

    python benchmarks/pipeline_overhead.py [--shape 64 512 512] [--chunk 4] [--repeats 25] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
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


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def best_of(fn, repeats: int) -> float:
    fn()  # warm-up: model residency, graph caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def in_turns(paths: dict, repeats: int) -> dict:
    """Seconds of every run of each path; the paths take turns, ``repeats`` rounds, after a warm-up."""
    for fn in paths.values():
        fn()  # warm-up: model residency, graph caches, CUDA context
    seconds = {name: [] for name in paths}
    for _ in range(repeats):
        for name, fn in paths.items():
            start = time.perf_counter()
            fn()
            seconds[name].append(time.perf_counter() - start)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=int, nargs=3, default=(64, 512, 512))
    parser.add_argument("--chunk", type=int, default=4, help="samples per dask chunk")
    parser.add_argument("--repeats", type=int, default=25)
    parser.add_argument("--device", default="cpu", help="where both torch paths run the model")
    parser.add_argument("--inpaint-shape", type=int, nargs=2, default=(1500, 2500))
    parser.add_argument("--skip-inpaint", action="store_true")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    data = rng.standard_normal(tuple(args.shape)).astype("f4")
    arr = xr.DataArray(data, dims=("time", "y", "x"), name="v").chunk({"time": args.chunk})
    pixels = data.size
    net = Times2().eval()
    on_device = Times2().eval().to(args.device)

    def xdl_predict():
        arr.dl.predict(net, device=args.device).compute()
        sync(args.device)

    def naive():
        def closure(block):
            with torch.inference_mode():
                x = torch.from_numpy(np.ascontiguousarray(block))[:, None].to(args.device)
                return on_device(x)[:, 0].cpu().numpy()

        xr.apply_ufunc(closure, arr, dask="parallelized", output_dtypes=[np.float32]).compute()
        sync(args.device)

    def elementwise():
        (arr * 2).compute()

    runs = in_turns({"xdl predict": xdl_predict, "naive apply_ufunc": naive, "dask elementwise": elementwise},
                    args.repeats)
    best = {name: pixels / min(s) / 1e6 for name, s in runs.items()}
    typical = {name: pixels / float(np.median(s)) / 1e6 for name, s in runs.items()}
    print(f"# xdl {xdl.__version__}, torch {torch.__version__}, {torch.get_num_threads()} torch threads, "
          f"device {args.device}; array {tuple(args.shape)} float32 in chunks of {args.chunk}, "
          f"{args.repeats} rounds in turns; load average {os.getloadavg()[0]:.2f}")
    print("| path | Mpix/s, best round | Mpix/s, median round |\n|---|---|---|")
    for name in runs:
        print(f"| {name} | {best[name]:.0f} | {typical[name]:.0f} |")
    for label, rates in (("best rounds", best), ("median rounds", typical)):
        print(f"\n{label}: xdl / naive = {rates['xdl predict'] / rates['naive apply_ufunc']:.2f} (target >= 1.0); "
              f"xdl / elementwise = {rates['xdl predict'] / rates['dask elementwise']:.2f} (target >= 0.5)")
    if args.skip_inpaint:
        return

    # inpaint with fill-default vs the model alone on the same tiles
    ny, nx = args.inpaint_shape
    y = np.linspace(0, 1, ny)[:, None]
    x = np.linspace(0, 1, nx)[None, :]
    field = (280 + 5 * np.sin(6 * x) * np.cos(4 * y) + 0.1 * rng.standard_normal((ny, nx))).astype("f4")
    field[::23] = np.nan  # scan lines
    scene = xr.DataArray(field, dims=("y", "x"), name="t")
    model = xdl.pretrained.load(xdl.pretrained.FINE_TUNABLE)  # a UNet: the engine's overhead around one model call
    t_inpaint = best_of(lambda: scene.dl.inpaint(model, device=args.device), min(args.repeats, 5))
    spec = xdl.engine.spec.engine_spec(model)
    run = xdl.engine.options.RunOptions.build(spec, args.device, "auto", None, None, None)
    plans = [xdl.engine.tiling.AxisPlan.build(n, halo=spec.halo, tile=run.tile, size_multiple=spec.size_multiple)
             for n in (ny, nx)]
    padded = np.take(np.take(np.nan_to_num(field), plans[0].padded_index(), 0), plans[1].padded_index(), 1)
    valid = np.take(np.take(np.isfinite(field), plans[0].padded_index(), 0), plans[1].padded_index(), 1)
    tiles, _ = xdl.engine.tiling.cut_tiles(padded[None, None], plans)
    masks, _ = xdl.engine.tiling.cut_tiles(valid[None, None].astype("f4"), plans)
    module = model.module.eval().to(args.device)
    kind = torch.device(args.device).type

    def model_alone():
        with torch.inference_mode():
            context = torch.autocast(kind, dtype=run.autocast) if run.autocast is not None else torch.autocast(kind, enabled=False)
            with context:
                for t, m in zip(tiles, masks):
                    module(torch.from_numpy(np.ascontiguousarray(t[None])).to(args.device),
                           torch.from_numpy(np.ascontiguousarray(m[None])).to(args.device))
        sync(args.device)

    t_model = best_of(model_alone, min(args.repeats, 5))
    print(f"\ninpaint {ny} x {nx} (scan-line gaps, fill-default, {len(tiles)} tiles of "
          f"{plans[0].tile_size} x {plans[1].tile_size}): inpaint {t_inpaint:.2f} s, model alone on the same "
          f"tiles {t_model:.2f} s (inpaint / model = {t_inpaint / t_model:.2f})")


if __name__ == "__main__":
    main()
