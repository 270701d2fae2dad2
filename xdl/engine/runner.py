"""The hot loop: batches of tiles through a model that stays resident on its device.

* One copy of each model per process and device, keyed by a content hash, loaded on first use:
  tasks carry a small :class:`ModelPayload` that dask ships once per worker, never the module in
  every task.
* One feeder thread per device runs every model call on it: several dask threads driving one GPU
  (or oversubscribing the CPU's intra-op threads) collapses throughput, and cuDNN autotunes per
  thread (with ``cudnn.benchmark`` on, 16 dask threads made a run 15x slower on an H200). Other
  threads meanwhile read, decode and cut the next tiles. On the CPU a block's batches make one
  trip to the feeder; a near-free uncompiled model (last block under ``INLINE_SECONDS``) runs in
  the calling thread if it has the run's torch thread count (a trip is two thread wake-ups).
  Either way a per-device lock keeps one model call at a time on the device. The exception: a
  model that declares single-threaded CPU calls (``cpu_threads`` 1, a model of many small ops)
  runs them in the dask threads, each with one OpenMP thread, several at once.
* Such a near-free model, given a block without a mask, runs it as one batch where that was
  checked on the first block of its shape to give the batches' bytes (both ways; the batches'
  result is the one returned): no batch outputs copied into the block. A model whose samples
  interact, or that fails on a batch, keeps its batches. It also gets a block before the block
  is known complete (:meth:`ResidentModel.run_complete`): input and output are then checked in
  one pass, and a block with gaps goes back to be masked.
* On CUDA, host-to-device copies go through pinned memory on a side stream in the calling
  thread, so the copy of one batch overlaps the compute of another; bf16 autocast by default.
* A CUDA out-of-memory error halves the batch and carries on.
* Optionally (the default on CUDA) the resident copy runs through ``torch.compile``; short
  batches are padded to a power of two so it compiles a few shapes per tile size, not one per
  block, and if compiling fails the eager module takes over with a warning.
"""

from __future__ import annotations

import collections
import copy
import functools
import pickle
import threading
import time
import warnings
import weakref
from contextlib import nullcontext
from dataclasses import dataclass, field

import cloudpickle
import numpy as np
import torch

from ..errors import InputError, ModelError
from ..models.registry import settings, state_digest
from .checks import all_finite, finite_or_nan, jointly_finite, same_bits
from .feeding import (can_run_single_threaded, copy_stream, device_feeder, device_lock, host_tensors,
                      in_passing_thread, set_own_threads, single_threaded)

_LOCKS_GUARD = threading.Lock()
INLINE_SECONDS = 0.01  # a CPU model faster than this a block runs in the calling thread
ONE_BATCH_VALUES = 2 ** 22  # the largest block (values) a near-free CPU model may run as one batch
ONE_BATCH_CHECKS = 16  # block shapes checked per resident model (each check is one more model call)
# Resident copies by (model hash, device, compiled), the most recently used last; beyond
# MAX_RESIDENT the least recently used is let go once it has been idle IDLE_SECONDS (a sweep over
# checkpoints kept every one, on the GPU too, for the life of the process; probe). Never sooner:
# one graph over more models than that would copy them again block after block (399 copies of 10
# models; review). A call already running keeps its own reference.
MAX_RESIDENT = 8
IDLE_SECONDS = 60.0
_RESIDENT: "collections.OrderedDict[tuple[str, str, bool], ResidentModel]" = collections.OrderedDict()


class WroteInput(ModelError):
    """A model wrote into an input tensor that xdl handed over without a copy."""


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """The torch device for ``device`` ("auto", "cpu", "cuda", "cuda:1", or a ``torch.device``);
    an :class:`InputError` for anything xdl cannot compute on here."""
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, (str, torch.device)):
        raise InputError(f"device={device!r}: give 'auto', 'cpu', 'cuda' or 'cuda:N' (a string or torch.device).")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise InputError(f"device={str(device)!r} is not a device name; use 'auto', 'cpu', 'cuda' or 'cuda:N'.") from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise InputError(f"device={str(device)!r}: xdl runs models on 'cpu' or 'cuda' devices, not {dev.type!r}; "
                         "use device='auto', 'cpu' or 'cuda'.")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device={str(device)!r} asked for, but CUDA is not available here; use device='cpu' or 'auto'.")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"device={str(device)!r}: this machine has {torch.cuda.device_count()} CUDA device(s) "
                             f"(cuda:0 to cuda:{torch.cuda.device_count() - 1}).")
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise InputError(f"device={str(device)!r} asked for, but MPS is not available here; use device='cpu' or 'auto'.")
    return dev


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bf16 instructions (AVX512-BF16 or AMX). With them bf16 autocast ran a
    fill-unet 1.5x faster than fp32 here; without them bf16 is emulated, usually slower than fp32.
    Linux only; False where unknown."""
    try:
        with open("/proc/cpuinfo") as info:
            flags = next((line for line in info if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device, cpu_bf16: bool = False) -> torch.dtype | None:
    """The autocast dtype, or None for plain fp32.

    ``"auto"``: bf16 on CUDA; on the CPU only for a model that declares it keeps its accuracy in
    bf16 (``cpu_bf16``) and a CPU with native bf16 instructions, else fp32.
    """
    if precision == "auto":
        if device.type == "cuda" or (cpu_bf16 and device.type == "cpu" and cpu_has_native_bf16()):
            return torch.bfloat16
        return None
    table = {"fp32": None, "float32": None, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
             "fp16": torch.float16, "float16": torch.float16}
    if not isinstance(precision, str) or precision not in table:
        raise InputError(f"precision={precision!r}: use 'auto', 'fp32', 'bf16' or 'fp16'.")
    return table[precision]


def is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


class ModelPayload:
    """What a dask task holds to reach the model: a content hash plus the means to rebuild it.

    Pickling it (once per worker under dask.distributed) sends the weights; unpickling increments
    :attr:`loads`, which the tests read to prove the weights travel once per worker.
    """

    loads = 0  # per process: how many payloads were unpickled here

    def __init__(self, module: torch.nn.Module, key: str, label: str | None = None):
        self.module = module
        self.key = key
        self.label = label or type(module).__name__  # named in errors about the model
        self._blob = None
        # The module's weights and settings now, when the graph is built: the graph computes with
        # them wherever and whenever it runs. Read from the live module at the first task, weights
        # changed in between (fine-tuning in place) went into the resident cache under the old
        # key, and every later fill with the old ones (the bundled model's too) ran the new (probe).
        self._digest = state_digest(module)
        self._snapshot = _snapshot(module, self._digest)

    def __getstate__(self):
        # The user's own module within the user's own job (not a file from elsewhere), so pickle
        # is fine here; cloudpickle also carries classes defined in a script or notebook.
        blob = self._blob if self.module is None else cloudpickle.dumps(self.get_module())
        return {"key": self.key, "blob": blob, "label": self.label}

    def __setstate__(self, state):
        type(self).loads += 1
        self.key = state["key"]
        self.label = state.get("label") or "model"
        self._blob = state["blob"]
        self.module = None  # no live module here: the one pickled when the graph was sent
        self._unpickled = None

    def get_module(self) -> torch.nn.Module:
        """The module as it was when the payload was made: the live one while unchanged (its own
        object: what its code shares with the caller stays shared), else a copy given back the
        weights and settings it had then."""
        if self.module is None:
            if self._unpickled is None:
                self._unpickled = pickle.loads(self._blob)
            return self._unpickled
        if state_digest(self.module) == self._digest:
            return self.module
        return self._snapshot.restored(self.module)


class _Snapshot:
    """A module's state_dict (on the CPU) and settings (:func:`~xdl.models.registry.settings`), to give a copy of it back."""

    def __init__(self, module: torch.nn.Module):
        # Copied in a passing thread: a copy's torch ops in the caller's would leave it an OpenMP team.
        self.state = in_passing_thread(lambda: {k: v.detach().to("cpu", copy=True) if isinstance(v, torch.Tensor)
                                                else copy.deepcopy(v) for k, v in module.state_dict().items()})
        self.settings = copy.deepcopy(settings(module))

    def restored(self, live: torch.nn.Module) -> torch.nn.Module:
        module = copy.deepcopy(live)
        module.load_state_dict(self.state)
        for (path, name), value in self.settings.items():
            setattr(module.get_submodule(path), name, copy.deepcopy(value))
        return module


# Snapshots by digest, shared by the payloads of equal models while any of them is held: each lazy
# result kept a copy of the weights (5 results of a 100 MB model: +380 MB; review probe).
_SNAPSHOTS: "weakref.WeakValueDictionary[str, _Snapshot]" = weakref.WeakValueDictionary()
_SNAPSHOTS_GUARD = threading.Lock()


def _snapshot(module: torch.nn.Module, digest: str) -> _Snapshot:
    with _SNAPSHOTS_GUARD:
        snap = _SNAPSHOTS.get(digest)
        if snap is None:
            snap = _SNAPSHOTS[digest] = _Snapshot(module)
        return snap


@dataclass
class ResidentModel:
    """A model loaded on one device, with its own adaptive batch size."""

    module: torch.nn.Module
    device: torch.device
    takes_mask: bool
    oom_cap: int | None = None  # largest batch known to fit after an out-of-memory error
    compiled: torch.nn.Module | None = None  # torch.compile'd view of module, when asked for
    label: str = "model"  # the model's name, for errors
    block_seconds: float | None = None  # how long the model took on the last CPU block
    # Per block shape and batch size: whether one batch of the block gave the batches' bytes.
    one_batch: dict = field(default_factory=dict)
    # Whether the model writes into its input tensors (an in-place op on them), seen on its first
    # CPU call, which gets copies: None until then. Then copies for one that does, else none.
    writes_input: bool | None = None
    # The model declares single-threaded CPU calls (``cpu_threads`` 1): run with one thread, they go
    # in the calling (dask) threads, several at once, not one at a time through the feeder.
    calls_at_once: bool = False
    last_used: float = 0.0  # time.monotonic() of the last get(): copies idle this long may be let go

    @classmethod
    def get(cls, payload: ModelPayload, device: torch.device, takes_mask: bool,
            compiled: bool = False, calls_at_once: bool = False) -> "ResidentModel":
        cache_key = (payload.key, str(device), bool(compiled))
        with _LOCKS_GUARD:
            resident = _RESIDENT.get(cache_key)
            now = time.monotonic()
            if resident is not None:
                _RESIDENT.move_to_end(cache_key)
                resident.last_used = now
            else:
                # A private copy: the user's module keeps its device and train/eval state. Made
                # in a thread that ends with it: a copy's torch ops in this (dask) thread would
                # leave an OpenMP team there (see feeding.in_passing_thread).
                module = in_passing_thread(lambda: copy.deepcopy(payload.get_module()).to(device).eval())
                resident = cls(module=module, device=device, takes_mask=takes_mask,
                               compiled=torch.compile(module, dynamic=False) if compiled else None,
                               label=getattr(payload, "label", None) or type(module).__name__,
                               calls_at_once=bool(calls_at_once))
                resident.last_used = now
                _RESIDENT[cache_key] = resident
                while len(_RESIDENT) > MAX_RESIDENT:
                    oldest = next(iter(_RESIDENT.values()))
                    if now - oldest.last_used < IDLE_SECONDS:
                        break
                    _RESIDENT.popitem(last=False)
        return resident

    def run(self, x: np.ndarray, mask: np.ndarray | None, autocast: torch.dtype | None,
            batch_size: int, out_channels: int | None = None, prefill: bool = False,
            threads: int | None = None) -> np.ndarray:
        """Model output for ``x`` (first axis = samples) as float32 numpy, in batches; NaN wherever
        the model gave NaN or inf.

        ``out_channels``: the channel count the model must return (checked, with the spatial
        shape; a :class:`ModelError` otherwise). ``prefill``: for a model that takes no mask,
        replace the pixels where ``mask`` is 0 by :func:`~xdl.models.harmonic.harmonic_fill`'s
        first guess before the call (``nan_policy="fill"``); the model then gets ``x`` only.
        ``threads``: torch intra-op threads for the call (CPU results depend on it; see predict).
        """
        args = (x, mask, autocast, batch_size, out_channels, prefill, threads)
        if self.device.type == "cpu" and self._runs_alongside(threads):
            # A model of many small ops: one thread a call, in this thread, while other dask threads
            # run theirs. A team of threads waits at every op's barrier, the longer the busier the
            # machine (benchmarks/RESULTS.md, session 33).
            return single_threaded(self._cpu_batches, *args, locked=False)
        if self.device.type == "cpu" and self._runs_inline(threads):
            return self._cpu_batches(*args)
        if self.device.type == "cpu":
            return device_feeder(self.device).submit(self._cpu_batches, *args).result()  # one trip a block
        # Batch by batch from the calling thread: on CUDA its host-to-device copies overlap the
        # feeder thread's compute of the previous batch.
        return self._batches(*args, self._run_batch)

    def run_complete(self, x: np.ndarray, autocast: torch.dtype | None, batch_size: int,
                     out_channels: int | None = None, threads: int | None = None) -> np.ndarray | None:
        """:meth:`run` without a mask for a block ``x`` that may hold NaN or inf: the output where every
        value of ``x`` is finite, else None (the caller then masks the gaps and calls :meth:`run`).

        A near-free CPU model is called first and ``x`` checked after, with the output, in one read
        pass while both are in cache: two passes less a block. A block with gaps then costs one more
        near-free call, which decides nothing (batching is checked on complete blocks only). Any
        other model gets the check first."""
        if not (self.device.type == "cpu" and self._runs_inline(threads)):
            return self.run(x, None, autocast, batch_size, out_channels, threads=threads) if all_finite(x) else None
        try:
            out = self._cpu_batches(x, None, autocast, batch_size, out_channels, False, threads, checked=False)
        except WroteInput:
            raise  # the block is no longer what was read: never masked and run again from it
        except Exception:  # noqa: BLE001 - a model may fail on NaN: the checked path says what it does
            if not all_finite(x):
                return None
            raise
        if jointly_finite(x, out):
            return out
        if not all_finite(x):
            return None
        return finite_or_nan(torch.from_numpy(out)).numpy()

    def _runs_alongside(self, threads) -> bool:
        """A model that declares single-threaded calls (:attr:`calls_at_once`), run with one thread,
        where this thread's OpenMP setting can be its own."""
        return self.calls_at_once and threads == 1 and self.compiled is None and can_run_single_threaded()

    def _runs_inline(self, threads) -> bool:
        """A near-free uncompiled model, and a thread with the run's count (only the feeder sets it)."""
        cheap = self.block_seconds is not None and self.block_seconds < INLINE_SECONDS
        return cheap and self.compiled is None and (threads is None or torch.get_num_threads() == threads)

    def _cpu_batches(self, x, mask, autocast, batch_size, *rest, checked: bool = True, locked: bool = True) -> np.ndarray:
        """A CPU block's batches, timed; ``locked``: one model call at a time on the device. A near-free
        model runs a block as one batch where that gave the batches' bytes on the first block of
        its shape (checked then, on a complete block: both ways, the batches' result returned):
        its results stay those of ``batch_size``, without copying batch outputs into the block.
        ``checked=False``: the output's inf left as the model gave it (see :meth:`run_complete`)."""
        key = self._one_batch_key(x, mask, autocast, batch_size, *rest)
        run_batch = self._run_batch_here if checked else functools.partial(self._run_batch_here, checked=False)
        with device_lock(self.device) if locked else nullcontext():
            one = key is not None and self.one_batch.get(key, False)
            start = time.perf_counter()
            out = self._batches(x, mask, autocast, len(x) if one else batch_size, *rest, run_batch)
            self.block_seconds = time.perf_counter() - start
            # NaN in every output both ways would prove nothing (e.g. of a per-batch mean)
            if key is not None and key not in self.one_batch and (checked or all_finite(x)):
                self.one_batch[key] = self._gives_same_bits(out, x, mask, autocast, *rest)
        return out

    def _one_batch_key(self, x, mask, autocast, batch_size, out_channels, prefill, threads):
        """What a check of one batch holds for, or None where one batch is not on offer: a
        compiled or not near-free model, one batch already, a block over ``ONE_BATCH_VALUES``,
        points (their count changes block by block: a check would never be used again), past
        ``ONE_BATCH_CHECKS`` shapes, or a mask (a model's work on gaps can couple its samples by
        their data, not only by the shapes a check covers: the harmonic first guess did)."""
        cheap = self.block_seconds is not None and self.block_seconds < INLINE_SECONDS
        if (not cheap or self.compiled is not None or mask is not None or prefill or batch_size >= len(x)
                or x.size > ONE_BATCH_VALUES or x.ndim < 3):
            return None
        key = x.shape, x.dtype.str, autocast, batch_size, out_channels, threads
        return key if key in self.one_batch or len(self.one_batch) < ONE_BATCH_CHECKS else None

    def _gives_same_bits(self, reference, x, mask, autocast, out_channels, prefill, threads) -> bool:
        """Whether the block as one batch gives ``reference`` (its batches' result) bit for bit; a
        model that fails on a batch, or returns another shape, keeps its batches."""
        try:
            trial = self._run_batch_here(x, mask, autocast, None, prefill, threads)
        except Exception:  # noqa: BLE001 - e.g. a model that takes one sample at a time
            return False
        return same_bits(reference, trial)

    def _batches(self, x, mask, autocast, batch_size, out_channels, prefill, threads, run_batch) -> np.ndarray:
        """``run_batch`` over ``x`` in batches (halved on out-of-memory); each batch's output copied
        into one array as it comes, while in cache (one batch: its output as it is)."""
        result, start = None, 0
        while start < len(x):
            size = max(min(batch_size, self.oom_cap or batch_size), 1)
            try:
                part = slice(start, start + size)
                n = min(size, len(x) - start)
                # Compiled: pad short batches up to a power of two (at most `size`), so a handful
                # of shapes are compiled, never one per block size, and little compute is wasted.
                pad_to = min(size, 1 << (n - 1).bit_length()) if self.compiled is not None else None
                out = run_batch(x[part], None if mask is None else mask[part], autocast, pad_to, prefill, threads)
                self._check_output(out, x[part], out_channels)
                if n == len(x):
                    return out
                if result is None:
                    result = np.empty((len(x),) + out.shape[1:], np.float32)
                result[part] = out
                start += size
            except Exception as error:  # noqa: BLE001 - only OOM is handled, the rest re-raised
                if not is_out_of_memory(error) or size == 1:
                    raise
                self.oom_cap = max(size // 2, 1)
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
        return result

    def _check_output(self, out: np.ndarray, x: np.ndarray, out_channels: int | None) -> None:
        expected = (len(x),) + ((out_channels,) if out_channels is not None else out.shape[1:2]) + x.shape[2:]
        if out.shape != expected:
            raise ModelError(f"model {self.label!r} returned an output of shape {tuple(out.shape)} for an input "
                             f"of shape {tuple(x.shape)}; xdl expects {expected} (batch, {out_channels} channel(s) "
                             "as its card or probe says, the input's spatial size). Fix the model's padding or "
                             "its out_channels.")

    def _run_batch_here(self, x, mask, autocast, pad_to=None, prefill=False, threads=None, checked=True) -> np.ndarray:
        """One CPU batch, in the calling thread (the feeder's, or a dask thread's: see :meth:`run`).
        The batch's arrays are handed over without a copy, so valid input (possibly the user's own
        array) must not be written: torch's version counters tell whether the model did."""
        copied = self.writes_input is not False
        hosts = host_tensors(x, mask, pad_to, copy=copied)
        out, _ = self._forward(hosts, None, autocast, prefill, threads, checked)
        wrote = any(h._version for h in hosts)  # each in-place op on a tensor (or a view) bumps it
        if wrote and not copied:
            raise WroteInput(f"model {self.label!r} wrote into its input tensor (an in-place operation such as "
                             "ReLU(inplace=True) or x[...] = ... on it) on a call after its first, which did not: xdl "
                             "hands inputs over without a copy, so the data this block was read from may have "
                             "changed. Make that operation out-of-place (e.g. x = x.clone() first).")
        if self.writes_input is None:
            self.writes_input = wrote
        return out.numpy()[:len(x)]

    def _run_batch(self, x, mask, autocast, pad_to=None, prefill=False, threads=None) -> np.ndarray:
        cuda = self.device.type == "cuda"
        n = len(x)
        hosts = host_tensors(x, mask, pad_to)
        ready = None
        if cuda:
            # Pinned memory + a side stream, in the calling thread: this copy overlaps the compute
            # of the batch the device's feeder thread is running.
            stream = copy_stream(self.device)
            with torch.cuda.stream(stream):
                tensors = [h.pin_memory().to(self.device, non_blocking=True) for h in hosts]
            ready = torch.cuda.Event()
            ready.record(stream)
        else:
            tensors = hosts
        out, done = device_feeder(self.device).submit(self._forward, tensors, ready, autocast, prefill,
                                                      threads).result()
        if done is not None:
            done.synchronize()
        return out.numpy()[:n]

    def _forward(self, tensors, ready, autocast, prefill=False, threads=None, checked=True):
        """In the device's feeder thread (a near-free CPU model: the caller's, under the device
        lock): CUDA calls all come from one thread, so cuDNN autotunes (per thread) once.
        ``checked``: inf in the output made NaN (else the caller sees to it)."""
        cuda = self.device.type == "cuda"
        if threads is not None and torch.get_num_threads() != threads:
            # The caller's thread count, in every process: oneDNN's CPU kernels split their sums
            # by thread, so a dask worker started with OMP_NUM_THREADS=1 would otherwise round
            # differently from the threaded scheduler (measured: 184 pixels of a GOES fill).
            # The feeder thread's own setting: torch.set_num_threads would also give it to every
            # thread that starts torch later, the user's included (probe).
            set_own_threads(int(threads))
        with torch.inference_mode():
            if cuda:
                compute = torch.cuda.current_stream(self.device)
                compute.wait_event(ready)
                for tensor in tensors:  # allocated on the copy stream, used on this one
                    tensor.record_stream(compute)
            x_dev = tensors[0]
            mask_dev = tensors[1] if len(tensors) > 1 else None
            if prefill and mask_dev is not None:
                x_dev = first_guess(x_dev, mask_dev)
                mask_dev = None
            out = self._call(x_dev, mask_dev, autocast)
            if isinstance(out, (tuple, list)) and out:  # e.g. (image, mask) from a partial-conv net
                out = out[0]
            if not isinstance(out, torch.Tensor):
                raise ModelError(f"model {self.label!r} returned {type(out).__name__}, not a torch.Tensor; "
                                 "its forward must return a tensor (batch, channels, *spatial) "
                                 "(or a tuple whose first item is one).")
            if out.is_complex():
                raise ModelError(f"model {self.label!r} returned a {out.dtype} tensor; xdl needs real numbers.")
            out = out.float()
            if checked:
                out = finite_or_nan(out)  # inf is no value either: NaN says the model failed there
            if not cuda:
                # A model may hand back (a view of) its input, which can be the caller's array.
                if any(out.untyped_storage().data_ptr() == t.untyped_storage().data_ptr() for t in tensors):
                    out = out.clone()
                return out, None
            host = torch.empty(out.shape, dtype=torch.float32, pin_memory=True)
            host.copy_(out, non_blocking=True)
            done = torch.cuda.Event()
            done.record(compute)
            return host, done

    def _call(self, x_dev, mask_dev, autocast):
        def call(module):
            context = torch.autocast(self.device.type, dtype=autocast) if autocast is not None else nullcontext()
            with context:
                return module(x_dev, mask_dev) if self.takes_mask else module(x_dev)

        if self.compiled is not None:
            try:
                return call(self.compiled)
            except Exception as error:  # noqa: BLE001 - OOM goes up to the batch halving; the rest falls back
                if is_out_of_memory(error):
                    raise
                warnings.warn(f"torch.compile failed for this model ({type(error).__name__}: "
                              f"{str(error)[:200]}); running it eagerly. Pass compile=False to skip compiling.",
                              RuntimeWarning, stacklevel=2)
                self.compiled = None
        try:
            return call(self.module)
        except Exception as error:  # noqa: BLE001 - OOM goes up to the batch halving; the rest is the model's
            if is_out_of_memory(error):
                raise
            raise ModelError(f"model {self.label!r} raised {type(error).__name__} on a batch of shape "
                             f"{tuple(x_dev.shape)}: {str(error)[:300]}") from error


def first_guess(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``x`` with its masked-out pixels (``mask`` 0) replaced by a harmonic fill, per sample and
    channel (a volume ``(N, C, T, H, W)`` is filled slice by slice): what ``nan_policy="fill"``
    feeds a model that takes no mask. Valid pixels are returned as given."""
    from ..models.harmonic import harmonic_fill

    if x.ndim < 4:  # pointwise: no neighbours to fill from (the engine never asks)
        return x
    shape = x.shape
    planes = x.reshape(shape[0], -1, shape[-2], shape[-1])
    filled = harmonic_fill(planes, mask.reshape(planes.shape))
    return filled.reshape(shape).to(x.dtype)


def clear_cache() -> None:
    """Forget every resident model of this process (frees device memory)."""
    with _LOCKS_GUARD:
        _RESIDENT.clear()
