"""Host-side plumbing of the runner: the one feeder thread and the lock per device, single-threaded
CPU calls in the caller's thread, the CUDA copy stream, and numpy blocks as the float32 tensors a
model takes."""

from __future__ import annotations

import ctypes
import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

_GUARD = threading.Lock()


def host_tensors(x: np.ndarray, mask: np.ndarray | None, pad_to: int | None, copy: bool = False) -> list[torch.Tensor]:
    """``x`` (and ``mask``) as float32 CPU tensors (no copy where they are already, unless ``copy``),
    padded with zero samples up to ``pad_to``: a compiled model sees one batch shape, not a new one
    to compile."""
    arrays = [x] if mask is None else [x, mask]
    n = len(x)
    if pad_to is not None and n < pad_to:
        arrays = [np.concatenate([a, np.zeros((pad_to - n,) + a.shape[1:], a.dtype)]) for a in arrays]
    if copy:
        return [torch.from_numpy(np.array(a, dtype=np.float32, order="C")) for a in arrays]
    return [torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for a in arrays]


_FEEDERS: dict[str, ThreadPoolExecutor] = {}


def device_feeder(device: torch.device) -> ThreadPoolExecutor:
    """The one thread that drives ``device`` (a queue of model calls), created on first use."""
    key = str(device)
    with _GUARD:
        if key not in _FEEDERS:
            if torch.device(device).type == "cpu":
                _short_openmp_waits()
            _FEEDERS[key] = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"xdl-feeder-{key}")
        return _FEEDERS[key]


_OPENMP_HOLDER: list[threading.Thread] = []


def _short_openmp_waits() -> None:
    """Keep GNU OpenMP's waits between parallel regions short, on purpose: a thread that ran one
    parallel op and then waits for ever keeps a second team, and with more OpenMP threads than
    cores libgomp spins only briefly before it sleeps. With the feeder's team alone it spins long:
    on the idle 2-core machine a context fill ran 25-35% faster, but with another busy process on
    the cores a descheduled thread makes every region wait its turn: a CONUS context fill took 2.1 s
    against 1.4 s, an uncertainty=True fill 6.9 s against 0.8 s, and two context fills at once 16.6 s
    each against 1.4 s (benchmarks/RESULTS.md, session 32). ``OMP_WAIT_POLICY`` set by the user is
    theirs to choose: then nothing is held."""
    if _OPENMP_HOLDER or os.environ.get("OMP_WAIT_POLICY") or torch.get_num_threads() < 2:
        return
    ready = threading.Event()

    def hold():
        torch.ones(1 << 20).add_(1.0)  # one parallel op: this thread's team
        ready.set()
        threading.Event().wait()

    thread = threading.Thread(target=hold, name="xdl-openmp-short-waits", daemon=True)
    thread.start()
    ready.wait()
    _OPENMP_HOLDER.append(thread)


def in_passing_thread(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` in a new thread that ends with the call (its result or error returned).

    Torch's CPU ops run on an OpenMP thread team per calling thread, kept for the thread's life: the
    torch work xdl does outside the feeder (loading, copying and probing models) runs in a thread
    whose team ends with it, so the caller's and dask's threads are left with none (how long
    OpenMP threads wait between ops is then xdl's choice alone, see :func:`_short_openmp_waits`).
    Not in the feeder itself: a caller may hold a lock that the model running there waits for, or
    run in that model's forward (both deadlocked a first version)."""
    outcome = {}

    def call():
        try:
            outcome["value"] = fn(*args, **kwargs)
        except BaseException as error:  # noqa: BLE001 - handed to the caller as it is
            outcome["error"] = error

    thread = threading.Thread(target=call, name="xdl-torch-setup", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


@functools.lru_cache(maxsize=1)
def _openmp_runtime():
    """The OpenMP runtime torch loaded (GNU libgomp, LLVM libomp or Intel libiomp5), as a ctypes
    library, or None where it cannot be found (no ``/proc``, another runtime). Only OpenMP's
    per-thread count is set through it, not MKL's (``torch.set_num_threads`` sets both): MKL is
    statically linked into torch, and results did not change with it (linear layers, the
    fill-context tiles: MKL's count 1 or 2, the same bits)."""
    torch.get_num_threads()  # torch's OpenMP runtime is loaded and initialised by now
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "/" in line}
    except OSError:
        return None
    for path in sorted(paths):
        if os.path.basename(path).startswith(("libgomp", "libomp", "libiomp5")):
            try:
                runtime = ctypes.CDLL(path)  # the library already loaded: the same handle, not a copy
                runtime.omp_get_max_threads.restype = ctypes.c_int
                runtime.omp_set_num_threads.argtypes = [ctypes.c_int]
                return runtime
            except (OSError, AttributeError):
                continue
    return None


def can_run_single_threaded() -> bool:
    """Whether :func:`single_threaded` can run a call here (the OpenMP runtime was found)."""
    return _openmp_runtime() is not None


def set_own_threads(count: int) -> None:
    """This thread's torch CPU thread count, and only this thread's (through the OpenMP runtime);
    ``torch.set_num_threads`` where the runtime is not found, which also sets the count that
    threads starting torch later take."""
    runtime = _openmp_runtime()
    if runtime is None:
        torch.set_num_threads(int(count))
        return
    torch.get_num_threads()  # torch sets a thread's count on its first op: before ours, not over it
    runtime.omp_set_num_threads(int(count))


def single_threaded(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` in the calling thread with one OpenMP thread, the thread's own setting
    restored after. Only this thread's setting changes: ``torch.set_num_threads`` would also set the
    count every thread that starts torch later takes. One thread runs no OpenMP team, so calls in
    several threads at once share no barriers (see :func:`_short_openmp_waits` for what barriers
    cost on a busy machine). Needs :func:`can_run_single_threaded`."""
    before = torch.get_num_threads()  # this thread's count (torch's, set on its first op)
    set_own_threads(1)
    try:
        return fn(*args, **kwargs)
    finally:
        set_own_threads(before)


_DEVICE_LOCKS: dict[str, threading.Lock] = {}


def device_lock(device: torch.device) -> threading.Lock:
    """The lock held around every CPU model call on ``device``, wherever it runs."""
    with _GUARD:
        return _DEVICE_LOCKS.setdefault(str(device), threading.Lock())


_COPY_STREAMS: dict[str, "torch.cuda.Stream"] = {}


def copy_stream(device: torch.device):
    """The side stream of ``device`` that host-to-device copies run on."""
    with _GUARD:
        if str(device) not in _COPY_STREAMS:
            _COPY_STREAMS[str(device)] = torch.cuda.Stream(device=device)
        return _COPY_STREAMS[str(device)]
