"""The hot loop: batches of tiles through a model that stays resident on its device.

* One copy of each model per process and device, keyed by a content hash, loaded on first use:
  tasks carry a small :class:`ModelPayload` that dask ships once per worker, never the module in
  every task.
* One feeder thread per device runs every model call on it: several dask threads driving one GPU
  (or oversubscribing the CPU's intra-op threads) collapses throughput, and cuDNN autotunes per
  thread (with ``cudnn.benchmark`` on, 16 dask threads made a run 15x slower on an H200). Other
  threads meanwhile read, decode and cut the next tiles.
* On CUDA, host-to-device copies go through pinned memory on a side stream in the calling
  thread, so the copy of one batch overlaps the compute of another; bf16 autocast by default.
* A CUDA out-of-memory error halves the batch and carries on.
* Optionally (the default on CUDA) the resident copy runs through ``torch.compile``; short
  batches are padded to a power of two so it compiles a few shapes per tile size, not one per
  block, and if compiling fails the eager module takes over with a warning.
"""

from __future__ import annotations

import copy
import functools
import pickle
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass

import cloudpickle
import numpy as np
import torch

from .errors import InputError

_LOCKS_GUARD = threading.Lock()
_RESIDENT: dict[tuple[str, str, bool], "ResidentModel"] = {}


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device={str(device)!r} asked for, but CUDA is not available here; use device='cpu' or 'auto'.")
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
    if precision not in table:
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

    def __init__(self, module: torch.nn.Module, key: str):
        self.module = module
        self.key = key
        self._blob = None

    def __getstate__(self):
        # The user's own module within the user's own job (not a file from elsewhere), so pickle
        # is fine here; cloudpickle also carries classes defined in a script or notebook.
        blob = self._blob if self.module is None else cloudpickle.dumps(self.module)
        return {"key": self.key, "blob": blob}

    def __setstate__(self, state):
        type(self).loads += 1
        self.key = state["key"]
        self._blob = state["blob"]
        self.module = None

    def get_module(self) -> torch.nn.Module:
        if self.module is None:
            self.module = pickle.loads(self._blob)
        return self.module


@dataclass
class ResidentModel:
    """A model loaded on one device, with its own adaptive batch size."""

    module: torch.nn.Module
    device: torch.device
    takes_mask: bool
    oom_cap: int | None = None  # largest batch known to fit after an out-of-memory error
    compiled: torch.nn.Module | None = None  # torch.compile'd view of module, when asked for

    @classmethod
    def get(cls, payload: ModelPayload, device: torch.device, takes_mask: bool,
            compiled: bool = False) -> "ResidentModel":
        cache_key = (payload.key, str(device), bool(compiled))
        with _LOCKS_GUARD:
            resident = _RESIDENT.get(cache_key)
            if resident is None:
                # A private copy: the user's module keeps its device and train/eval state.
                module = copy.deepcopy(payload.get_module()).to(device).eval()
                resident = cls(module=module, device=device, takes_mask=takes_mask,
                               compiled=torch.compile(module, dynamic=False) if compiled else None)
                _RESIDENT[cache_key] = resident
        return resident

    def run(self, x: np.ndarray, mask: np.ndarray | None, autocast: torch.dtype | None,
            batch_size: int) -> np.ndarray:
        """Model output for ``x`` (first axis = samples) as float32 numpy, in batches."""
        outputs, start = [], 0
        while start < len(x):
            size = max(min(batch_size, self.oom_cap or batch_size), 1)
            try:
                part = slice(start, start + size)
                n = min(size, len(x) - start)
                # Compiled: pad short batches up to a power of two (at most `size`), so a handful
                # of shapes are compiled, never one per block size, and little compute is wasted.
                pad_to = min(size, 1 << (n - 1).bit_length()) if self.compiled is not None else None
                outputs.append(self._run_batch(x[part], None if mask is None else mask[part], autocast, pad_to))
                start += size
            except Exception as error:  # noqa: BLE001 - only OOM is handled, the rest re-raised
                if not is_out_of_memory(error) or size == 1:
                    raise
                self.oom_cap = max(size // 2, 1)
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
        return np.concatenate(outputs, axis=0)

    def _run_batch(self, x, mask, autocast, pad_to=None) -> np.ndarray:
        cuda = self.device.type == "cuda"
        n = len(x)
        arrays = [x] if mask is None else [x, mask]
        if pad_to is not None and n < pad_to:
            # A compiled model sees one batch shape: pad the last, short batch with zeros (eval-mode
            # samples are independent) instead of compiling again for its size.
            arrays = [np.concatenate([a, np.zeros((pad_to - n,) + a.shape[1:], a.dtype)]) for a in arrays]
        hosts = [torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for a in arrays]
        ready = None
        if cuda:
            # Pinned memory + a side stream, in the calling thread: this copy overlaps the compute
            # of the batch the device's feeder thread is running.
            stream = _copy_stream(self.device)
            with torch.cuda.stream(stream):
                tensors = [h.pin_memory().to(self.device, non_blocking=True) for h in hosts]
            ready = torch.cuda.Event()
            ready.record(stream)
        else:
            tensors = hosts
        out, done = device_feeder(self.device).submit(self._forward, tensors, ready, autocast).result()
        if done is not None:
            done.synchronize()
        return out.numpy()[:n]

    def _forward(self, tensors, ready, autocast):
        """Runs in the device's feeder thread: all model calls on a device come from one thread,
        so cuDNN's autotuning (per thread) happens once and kernels never interleave."""
        cuda = self.device.type == "cuda"
        with torch.inference_mode():
            if cuda:
                compute = torch.cuda.current_stream(self.device)
                compute.wait_event(ready)
                for tensor in tensors:  # allocated on the copy stream, used on this one
                    tensor.record_stream(compute)
            x_dev = tensors[0]
            mask_dev = tensors[1] if len(tensors) > 1 else None
            out = self._call(x_dev, mask_dev, autocast)
            if isinstance(out, (tuple, list)):  # e.g. (image, mask) from a partial-conv net
                out = out[0]
            out = out.float()
            if not cuda:
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
        return call(self.module)


_FEEDERS: dict[str, ThreadPoolExecutor] = {}


def device_feeder(device: torch.device) -> ThreadPoolExecutor:
    """The one thread that drives ``device`` (a queue of model calls), created on first use."""
    key = str(device)
    with _LOCKS_GUARD:
        if key not in _FEEDERS:
            _FEEDERS[key] = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"xdl-feeder-{key}")
        return _FEEDERS[key]


_COPY_STREAMS: dict[str, "torch.cuda.Stream"] = {}


def _copy_stream(device: torch.device):
    key = str(device)
    with _LOCKS_GUARD:
        if key not in _COPY_STREAMS:
            _COPY_STREAMS[key] = torch.cuda.Stream(device=device)
        return _COPY_STREAMS[key]


def clear_cache() -> None:
    """Forget every resident model of this process (frees device memory)."""
    with _LOCKS_GUARD:
        _RESIDENT.clear()
