"""Forward throughput of each zoo model (model only: data already on the device), in Mpix/s.

Spatial models run on ``batch x size x size`` tiles, the MLP on ``points`` points (one "pixel" per
point). On CPU: fp32 eval under ``torch.inference_mode``. On CUDA also: TF32, bf16 autocast,
bf16 + channels_last, and bf16 + channels_last + ``torch.compile``.

    python benchmarks/models.py                      # default configs, CPU (and CUDA if present)
    python benchmarks/models.py --models pconv-unet --batch 32 --size 256 --seconds 5
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import time

import torch

import xdl
from xdl.models.registry import count_parameters


def _inputs(model, args, device, channels_last):
    if model.mode == "pointwise":
        x = torch.randn(args.points, model.in_channels, device=device)
        return (x,), args.points
    x = torch.randn(args.batch, model.in_channels, args.size, args.size, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    if model.takes_mask:
        mask = (torch.rand_like(x) > 0.3).to(x.dtype)
        return (x * mask, mask), x.shape[0] * args.size * args.size
    return (x,), x.shape[0] * args.size * args.size


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(module, inputs, pixels, device, seconds, autocast=None):
    """Mpix/s of ``module(*inputs)``: warm up twice, then repeat for about ``seconds``."""
    ctx = (torch.autocast(device.type, dtype=autocast) if autocast is not None
           else contextlib.nullcontext())
    with torch.inference_mode(), ctx:
        for _ in range(2):  # first calls: allocator, cuDNN autotuning, compilation
            module(*inputs)
        _sync(device)
        n, t0 = 0, time.perf_counter()
        while True:
            module(*inputs)
            n += 1
            _sync(device)
            elapsed = time.perf_counter() - t0
            if elapsed >= seconds:
                break
    return n * pixels / elapsed / 1e6


def _size(n):
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k"


def variants(device):
    yield "fp32", dict()
    if device.type == "cuda":
        yield "tf32", dict(tf32=True)
        yield "bf16 autocast", dict(autocast=torch.bfloat16)
        yield "bf16 + channels_last", dict(autocast=torch.bfloat16, channels_last=True)
        yield "bf16 + channels_last + compile", dict(autocast=torch.bfloat16, channels_last=True, compile=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="*", default=xdl.zoo.list())
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--points", type=int, default=1_000_000)
    p.add_argument("--seconds", type=float, default=3.0, help="timed seconds per measurement")
    p.add_argument("--devices", nargs="*", default=None, help="default: cpu, and cuda when present")
    args = p.parse_args(argv)

    devices = args.devices or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    print(f"xdl {xdl.__version__}, torch {torch.__version__}, python {platform.python_version()}, "
          f"{torch.get_num_threads()} CPU threads"
          + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""))
    print(f"spatial: batch {args.batch} x {args.size}x{args.size}; pointwise: {args.points} points")
    print(f"{'model':<11} {'params':>8} {'device':<6} {'variant':<32} {'Mpix/s':>9}")
    for name in args.models:
        for dev in map(torch.device, devices):
            torch.manual_seed(0)
            model = xdl.zoo.create(name, in_channels=1, out_channels=1).to(dev).eval()
            # pix2pix: only the generator runs at inference
            n_params = count_parameters(getattr(model.module, "generator", model.module))
            for label, opt in variants(dev):
                if dev.type != "cuda" and opt:
                    continue
                if model.mode == "pointwise" and opt.get("channels_last"):
                    continue
                torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = bool(opt.get("tf32"))
                module = model.module
                if opt.get("channels_last"):
                    module = module.to(memory_format=torch.channels_last)
                if opt.get("compile"):
                    module = torch.compile(module)
                inputs, pixels = _inputs(model, args, dev, opt.get("channels_last", False))
                try:
                    rate = f"{measure(module, inputs, pixels, dev, args.seconds, opt.get('autocast')):9.2f}"
                except Exception as e:  # one failing variant (e.g. no compiler) should not end the run
                    rate = f"failed: {type(e).__name__}: {str(e).splitlines()[0][:60]}"
                print(f"{name:<11} {_size(n_params):>8} {dev.type:<6} {label:<32} {rate:>9}", flush=True)
            model.module.to(memory_format=torch.contiguous_format)


if __name__ == "__main__":
    main()
