"""xdl's CPU torch work runs in one thread, the CPU feeder: torch's OpenMP backend starts a thread
team per calling thread, and once the process holds more of libgomp's threads than it has cores,
every team stops spin-waiting between ops (the kriged context fill ran 25-35% slower in the
feeder after one torch call from the main thread or a dask thread)."""

import os
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
import torch
import xarray as xr

import xdl
from xdl.engine.feeding import on_cpu_feeder


def test_on_cpu_feeder_runs_in_the_feeder_and_nests():
    outer = on_cpu_feeder(lambda: (threading.current_thread().name,
                                   on_cpu_feeder(lambda: threading.current_thread().name)))
    assert outer[0].startswith("xdl-feeder-cpu") and outer[1] == outer[0]


class _Slow(torch.nn.Module):
    """Not near-free (a near-free model runs in the calling thread by design): records its threads."""

    in_channels = out_channels = 1
    size_multiple, halo, mode = 1, 0, "spatial"

    def __init__(self):
        super().__init__()
        self.threads = set()

    def forward(self, x):
        self.threads.add(threading.current_thread().name)
        time.sleep(0.02)
        return x * 2


def test_spec_probes_and_model_calls_run_in_the_feeder():
    model = _Slow()
    da = xr.DataArray(np.ones((2, 40, 40), "f4"), dims=("t", "y", "x")).chunk({"t": 1})
    out = da.dl.predict(model, compile=False).compute(scheduler="threads")
    assert float(out.max()) == 2.0
    assert model.threads and all(name.startswith("xdl-feeder-cpu") for name in model.threads), model.threads


def test_load_model_builds_in_the_feeder(tmp_path, monkeypatch):
    path = tmp_path / "m.xdl.safetensors"
    xdl.zoo.create("unet", in_channels=1, depth=2, base_channels=4).save(path)
    seen = []
    real = torch.nn.Module.load_state_dict

    def spy(self, *args, **kwargs):
        seen.append(threading.current_thread().name)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "load_state_dict", spy)
    assert xdl.load_model(path).architecture == "unet"
    assert seen and all(name.startswith("xdl-feeder-cpu") for name in seen), seen


SCRIPT = textwrap.dedent("""
    import os, threading, numpy as np, xarray as xr, torch, xdl
    import scipy.ndimage, scipy.sparse.linalg, scipy.spatial, scipy.special  # start their BLAS threads first
    def native():  # OS threads that are not Python threads: OpenMP workers (and BLAS's)
        return len(os.listdir("/proc/self/task")) - len(threading.enumerate())
    before = native()
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:256, 0:256]
    a = np.sin(x / 9.0) + np.cos(y / 7.0) + 0.1 * rng.standard_normal((256, 256))
    gappy = np.where(rng.random((256, 256)) < 0.05, np.nan, a)
    ds = xr.Dataset({"t": (("y", "x"), gappy.astype("f4")), "c": (("y", "x"), (2 * a + 1).astype("f4"))})
    model = xdl.pretrained.load(xdl.pretrained.default_for(context=["c"]))
    ds.chunk({"y": 128}).dl.inpaint(model, variables=["t"], context=["c"]).compute(scheduler="threads")
    ds.chunk({"y": 128}).dl.inpaint(variables=["t"]).compute(scheduler="threads")
    print(native() - before, torch.get_num_threads())
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts threads in /proc/self/task")
def test_an_inpaint_starts_one_openmp_team():
    """In a fresh process: loading the bundled models and two inpaints (context, single-field, dask
    threads) add at most one team's worker threads."""
    # A fresh environment's thread counts (dask's nanny leaves OMP/MKL_NUM_THREADS=1 behind it).
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300,
                          env={**env, "PYTHONWARNINGS": "ignore"})
    assert done.returncode == 0, done.stderr[-2000:]
    added, threads = map(int, done.stdout.split()[-2:])
    if threads < 2:
        pytest.skip("torch runs one intra-op thread here: no OpenMP teams to count")
    assert added <= threads - 1, f"{added} native threads added; one team of {threads} adds {threads - 1}"

