"""Where xdl's CPU torch work runs, and how long OpenMP threads wait between ops. Torch's OpenMP
backend starts a thread team per calling thread, kept for the thread's life. Loading, copying and
probing models run in threads that end with the work (never queued behind a running model: a
caller may hold a lock the model waits for), dask threads check blocks with numpy, and model calls
run in the feeder. One more team, held on purpose, keeps libgomp's waits short: with the feeder's
team alone it spins long, which made fills 1.5-12x slower when another process shared the cores
(benchmarks/RESULTS.md, session 32). A model that declares one CPU thread a call (fill-context)
runs its calls in the dask threads instead, each with one OpenMP thread (no team), several at once."""

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
from xdl.engine.feeding import in_passing_thread


def test_in_passing_thread_returns_raises_and_ends():
    seen = []
    assert in_passing_thread(lambda a, b=0: seen.append(threading.current_thread()) or a + b, 2, b=3) == 5
    assert not seen[0].is_alive() and seen[0] is not threading.current_thread()
    with pytest.raises(KeyError, match="gone"):
        in_passing_thread(lambda: {}["gone"])


_CALLS = []  # (thread name, input width) of every _Slow call: the engine runs a private copy


class _Slow(torch.nn.Module):
    """Not near-free (a near-free model runs in the calling thread by design): records its threads."""

    in_channels = out_channels = 1
    size_multiple, halo, mode = 1, 0, "spatial"

    def forward(self, x):
        _CALLS.append((threading.current_thread().name, x.shape[-1]))
        time.sleep(0.02)
        return x * 2


def test_model_calls_run_in_the_feeder_and_probes_in_passing_threads():
    _CALLS.clear()
    da = xr.DataArray(np.ones((2, 40, 40), "f4"), dims=("t", "y", "x")).chunk({"t": 1})
    out = da.dl.predict(_Slow(), compile=False).compute(scheduler="threads")
    assert float(out.max()) == 2.0
    blocks = {name for name, width in _CALLS if width == 40}
    probes = {name for name, width in _CALLS if width != 40}
    assert blocks and all(name.startswith("xdl-feeder-cpu") for name in blocks), _CALLS
    assert probes == {"xdl-torch-setup"}, _CALLS


def test_load_model_builds_in_a_passing_thread(tmp_path, monkeypatch):
    path = tmp_path / "m.xdl.safetensors"
    xdl.zoo.create("unet", in_channels=1, depth=2, base_channels=4).save(path)
    seen = []
    real = torch.nn.Module.load_state_dict

    def spy(self, *args, **kwargs):
        seen.append(threading.current_thread().name)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "load_state_dict", spy)
    assert xdl.load_model(path).architecture == "unet"
    assert seen == ["xdl-torch-setup"], seen


def _run(script: str, timeout=120, policy=None):
    # A fresh environment's thread counts (dask's nanny leaves OMP/MKL_NUM_THREADS=1 behind it).
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS") and k != "OMP_WAIT_POLICY"}
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                          timeout=timeout, env={**env, "PYTHONWARNINGS": "ignore"})


TEAMS = """
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
    ds.chunk({"y": 128}).dl.inpaint(xdl.pretrained.load("fill-default"), variables=["t"]).compute(scheduler="threads")
    holder = any(t.name == "xdl-openmp-short-waits" for t in threading.enumerate())
    print(native() - before, torch.get_num_threads(), int(holder))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts threads in /proc/self/task")
@pytest.mark.parametrize("policy", [None, "PASSIVE"])
def test_two_inpaints_leave_the_feeders_team_and_the_one_that_keeps_waits_short(policy):
    """In a fresh process, after loading the bundled models and two inpaints (context,
    single-field, dask threads): the feeder's team and, unless the user set OMP_WAIT_POLICY,
    the one held to keep libgomp's waits short; no team in the main or dask threads."""
    done = _run(TEAMS, policy=policy)
    assert done.returncode == 0, done.stderr[-2000:]
    added, threads, holder = map(int, done.stdout.split()[-3:])
    if threads < 2:
        pytest.skip("torch runs one intra-op thread here: no OpenMP teams to count")
    teams = 1 if policy else 2
    assert holder == (policy is None)
    assert added <= teams * (threads - 1), f"{added} native threads added; {teams} teams of {threads} add {teams * (threads - 1)}"


LOAD_IN_FORWARD = """
    import threading, numpy as np, xarray as xr, torch, xdl
    path = str(xdl.pretrained.path("fill-default"))
    class M(torch.nn.Module):
        in_channels = out_channels = 1
        def forward(self, x):  # loads a model from a helper thread and waits for it
            t = threading.Thread(target=xdl.load_model, args=(path,)); t.start(); t.join()
            return x * 2
    out = xr.DataArray(np.ones((64, 64), "f4"), dims=("y", "x")).dl.predict(M(), tile=64, halo=0)
    print("OK", float(out.sum()))
"""

LOCK_ORDER = """
    import builtins, threading, time, numpy as np, xarray as xr, torch, xdl
    path = str(xdl.pretrained.path("fill-default"))
    # Reached through a module at call time: the model is pickled by value, and a lock cannot be.
    builtins.app_lock, builtins.started = threading.Lock(), threading.Event()
    class M(torch.nn.Module):
        in_channels = out_channels = 1
        def forward(self, x):  # takes an application lock that another thread holds while loading
            import builtins
            builtins.started.set(); time.sleep(0.3)
            with builtins.app_lock:
                return x * 2
    def other():
        builtins.started.wait()
        with builtins.app_lock:
            xdl.load_model(path)
    th = threading.Thread(target=other); th.start()
    out = xr.DataArray(np.ones((64, 64), "f4"), dims=("y", "x")).dl.predict(M(), tile=64, halo=0)
    th.join()
    print("OK", float(out.sum()))
"""


@pytest.mark.parametrize("script", [LOAD_IN_FORWARD, LOCK_ORDER], ids=["load-in-forward", "lock-order"])
def test_loading_never_waits_for_the_running_model(script):
    """Two deadlocks of a first version that loaded and probed models in the feeder thread."""
    done = _run(script, timeout=90)
    assert done.returncode == 0 and "OK 8192.0" in done.stdout, done.stderr[-2000:]


def test_single_threaded_sets_only_the_calling_threads_count_and_restores_it():
    from xdl.engine.feeding import can_run_single_threaded, single_threaded

    if not can_run_single_threaded():
        pytest.skip("torch's OpenMP runtime not found here: single-threaded calls go through the feeder")
    if torch.get_num_threads() < 2:
        pytest.skip("torch runs one intra-op thread here")
    counts = {}

    def worker():
        counts["before"] = torch.get_num_threads()
        counts["inside"] = single_threaded(torch.get_num_threads)
        counts["after"] = torch.get_num_threads()
        seen = []  # a thread started meanwhile takes torch's count, not the caller's 1
        single_threaded(lambda: (t := threading.Thread(target=lambda: seen.append(torch.get_num_threads())),
                                 t.start(), t.join()))
        counts["new thread"] = seen[0]

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    n = torch.get_num_threads()
    assert counts == {"before": n, "inside": 1, "after": n, "new thread": n}


_ALONGSIDE = []  # (thread name, torch threads, start, end) of every _SmallOps call on 40-wide blocks


class _SmallOps(torch.nn.Module):
    """Declares single-threaded CPU calls, as fill-context does: records where and how it ran."""

    in_channels = out_channels = 1
    size_multiple, halo, mode, cpu_threads = 1, 0, "spatial", 1

    def forward(self, x):
        start = time.perf_counter()
        time.sleep(0.15)
        if x.shape[-1] == 40:
            _ALONGSIDE.append((threading.current_thread().name, torch.get_num_threads(), start, time.perf_counter()))
        return x * 2


def _overlapping(calls) -> bool:
    return any(a[2] < b[3] and b[2] < a[3] for i, a in enumerate(calls) for b in calls[i + 1:])


def test_a_model_that_declares_one_cpu_thread_runs_blocks_at_once_in_dask_threads():
    from xdl.engine.feeding import can_run_single_threaded

    if not can_run_single_threaded():
        pytest.skip("torch's OpenMP runtime not found here: single-threaded calls go through the feeder")
    da = xr.DataArray(np.ones((4, 40, 40), "f4"), dims=("t", "y", "x")).chunk({"t": 1})
    _ALONGSIDE.clear()
    out = da.dl.predict(_SmallOps(), compile=False).compute(scheduler="threads", num_workers=2)
    assert float(out.min()) == float(out.max()) == 2.0
    assert len(_ALONGSIDE) == 4 and all(threads == 1 for _, threads, _, _ in _ALONGSIDE), _ALONGSIDE
    assert not any(name.startswith("xdl-feeder") for name, *_ in _ALONGSIDE), _ALONGSIDE
    assert _overlapping(_ALONGSIDE), "two dask threads should run blocks at the same time"
    # Asked for more threads per call, it runs as any model does: one call at a time, in the feeder.
    _ALONGSIDE.clear()
    da.dl.predict(_SmallOps(), compile=False, threads=2).compute(scheduler="threads", num_workers=2)
    assert all(name.startswith("xdl-feeder") for name, *_ in _ALONGSIDE) and not _overlapping(_ALONGSIDE)


def test_cpu_threads_is_checked():
    from xdl.engine.spec import engine_spec
    from xdl.errors import ModelError

    class Bad(_SmallOps):
        cpu_threads = 0

    with pytest.raises(ModelError, match="cpu_threads=0"):
        engine_spec(Bad())
    with pytest.raises(xdl.errors.InputError, match="cpu_threads"):
        xdl.Model(_SmallOps(), card={"mode": "spatial", "in_channels": 1, "out_channels": 1, "cpu_threads": "1"})


def test_the_bundled_context_fill_is_the_same_under_every_scheduler():
    """fill-context runs its tiles one thread each, several at once: the same bits as one at a time."""
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:96, 0:200]
    a = np.sin(x / 9.0) + np.cos(y / 7.0) + 0.1 * rng.standard_normal(x.shape)
    ds = xr.Dataset({"t": (("y", "x"), np.where(rng.random(x.shape) < 0.1, np.nan, a).astype("f4")),
                     "c": (("y", "x"), (2 * a + 1).astype("f4"))}).chunk({"x": 50})
    runs = [ds.dl.inpaint(variables=["t"], context=["c"], uncertainty=True, tile=64).compute(scheduler=s)
            for s in ("threads", "synchronous")]
    for name in ("t", "t_sigma"):
        np.testing.assert_array_equal(runs[0][name].values, runs[1][name].values)


def test_a_run_with_its_own_thread_count_leaves_later_threads_theirs():
    """The feeder takes a run's count as its own only: torch.set_num_threads there gave every thread
    that started torch later the run's count (probe: after inpaint(threads=1), new threads ran 1)."""
    def in_new_thread():
        seen = []
        thread = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
        thread.start()
        thread.join()
        return seen[0]

    before = in_new_thread()
    other = 1 if before > 1 else 2
    da = xr.DataArray(np.ones((2, 40, 40), "f4"), dims=("t", "y", "x")).chunk({"t": 1})
    out = da.dl.predict(_Slow(), compile=False, threads=other).compute(scheduler="threads")
    assert float(out.max()) == 2.0
    assert in_new_thread() == before and torch.get_num_threads() == before
