"""The safetensors container of an xdl model file, read without unpickling anything.

Every check happens before anything large is read or allocated: a regular file (no FIFO or
device), not a pickle or zip, a bounded JSON header, a tensor table whose byte ranges tile the
data section exactly, finite float weights. :func:`card_from_header` takes the card out of a
checked header (its fields checked by :func:`xdl.modelcard.check_card`).
"""

from __future__ import annotations

import json
import math
import os
import stat
import struct
import sys
from contextlib import contextmanager

import numpy as np
import torch

from .errors import InputError, ModelFileError
from .modelcard import check_card, short

__all__ = ["FORMAT_VERSION", "MAX_HEADER", "DTYPES", "fail", "open_regular", "read_header", "read_header_from",
           "card_from_header", "read_tensors", "check_finite"]

FORMAT_VERSION = "1"
# The JSON header (tensor table + card). safetensors allows 100 MB; parsing that much JSON can take
# gigabytes (8 MiB of "[{},{},...]" parses into ~190 MB of Python objects), and a card is kilobytes.
MAX_HEADER = 8 * 2 ** 20
# safetensors dtype -> (torch dtype, bytes per element); those this torch has.
DTYPES = {k: (getattr(torch, t), b) for k, t, b in (
    ("F64", "float64", 8), ("F32", "float32", 4), ("F16", "float16", 2), ("BF16", "bfloat16", 2),
    ("I64", "int64", 8), ("I32", "int32", 4), ("I16", "int16", 2), ("I8", "int8", 1), ("U8", "uint8", 1),
    ("BOOL", "bool", 1), ("U16", "uint16", 2), ("U32", "uint32", 4), ("U64", "uint64", 8),
    ("F8_E4M3", "float8_e4m3fn", 1), ("F8_E5M2", "float8_e5m2", 1)) if hasattr(torch, t)}


def fail(path, msg, exc=ModelFileError):
    """The error (ModelFileError by default) for ``path``, its message prefixed with the path."""
    return exc(f"{path}: {msg}")


def _pickle_message(path, kind):
    return fail(path, (
        f"this is a {kind}, not an xdl model file. xdl never unpickles files: unpickling runs "
        "arbitrary code. If you trust the file, load it yourself in your own code, then convert it once:\n"
        "    module = ...  # build the network, then module.load_state_dict(torch.load(path, weights_only=True))\n"
        "    xdl.Model(module, card={'inputs': [...], 'outputs': [...]}).save('model.xdl.safetensors')"))


_NOT_REGULAR = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
                (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def open_regular(path):
    """Open ``path`` for reading if it is a regular file; anything else (a FIFO would block the
    open or the read forever, a device never ends) is refused before it is opened."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise fail(path, "no such model file") from None
    except (OSError, ValueError) as e:
        raise fail(path, f"cannot read the model file: {e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise fail(path, "is a directory, not a model file")
    if not stat.S_ISREG(st.st_mode):
        kind = next((k for test, k in _NOT_REGULAR if test(st.st_mode)), "not a regular file")
        raise fail(path, f"is {kind}, not a regular file; xdl reads models only from regular files "
                          "(copy it into a file first)")
    try:
        # O_NONBLOCK: should the path be swapped for a FIFO after the check, open does not block.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as e:
        raise fail(path, f"cannot open the model file: {e.strerror or e}") from None
    f = os.fdopen(fd, "rb")
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        f.close()
        raise fail(path, "is not a regular file; xdl reads models only from regular files")
    return f, st.st_size


def _loads(path, raw, what):
    try:
        return json.loads(raw)
    except RecursionError:
        raise fail(path, f"{what} is nested too deeply to be an xdl model file") from None
    except (UnicodeDecodeError, ValueError) as e:
        raise fail(path, f"{what} is not valid JSON ({e})") from None


def _check_table(path, header, data_len):
    """The tensor table: dtypes, shapes and byte ranges, which must tile the data section exactly
    (as safetensors requires): no overlap, no gap, no byte beyond the file."""
    spans = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        bad = fail(path, f"malformed safetensors header entry for tensor {name!r}: {str(info)[:200]}")
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise bad
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(dtype, str) or dtype not in DTYPES:
            raise fail(path, f"tensor {name!r} has dtype {short(dtype, 40)}, which is not a safetensors "
                              f"dtype this xdl reads ({', '.join(DTYPES)})")
        if not isinstance(shape, list) or not all(_whole(d) and d >= 0 for d in shape) \
                or not isinstance(offsets, list) or len(offsets) != 2 or not all(_whole(o) for o in offsets):
            raise bad
        start, end = offsets
        if not 0 <= start <= end or end > data_len:
            raise fail(path, f"truncated: tensor {name!r} needs bytes {start}..{end} of the data section "
                              f"but the file holds only {data_len} data bytes")
        nbytes = math.prod(shape) * DTYPES[dtype][1]
        if end - start != nbytes:
            raise fail(path, f"tensor {name!r} of shape {shape} and dtype {dtype} needs {nbytes} bytes but its "
                              f"data_offsets give {end - start}")
        spans.append((start, end, name))
    pos, prev = 0, None
    for start, end, name in sorted(spans):
        if start != pos:
            what = f"overlaps tensor {prev!r}" if start < pos else f"leaves bytes {pos}..{start} unused"
            raise fail(path, f"corrupt tensor table: tensor {name!r} (bytes {start}..{end}) {what}")
        pos, prev = end, name
    if pos != data_len:
        raise fail(path, f"corrupt or not an xdl model file: {data_len - pos} bytes after its last tensor")


def _whole(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def read_header_from(f, path, size) -> tuple[dict, int]:
    """:func:`read_header` on the already opened file ``f`` of ``size`` bytes: ``(header, header length)``."""
    head = f.read(9)
    if head[:4] == b"PK\x03\x04":
        raise _pickle_message(path, "zip archive (torch.save output or similar)")
    looks_safetensors = len(head) == 9 and head[8:9] == b"{"
    if head[:1] == b"\x80" and not looks_safetensors:
        raise _pickle_message(path, "Python pickle (legacy torch.save or pickle.dump output)")
    if size < 8:
        raise fail(path, f"truncated or not a model file: {size} bytes, a safetensors file has at "
                          "least an 8-byte header length")
    (n,) = struct.unpack("<Q", head[:8])
    if n > size - 8:
        raise fail(path, f"truncated or not a safetensors file: header length {n} bytes is beyond "
                          f"the file size ({size} bytes)")
    if n > MAX_HEADER:
        raise fail(path, f"header of {n} bytes is larger than the {MAX_HEADER} bytes xdl reads: not an "
                          "xdl model file, or one with an oversized card")
    f.seek(8)
    raw = f.read(n)
    if len(raw) != n:
        raise fail(path, f"truncated: the file ended inside its {n}-byte header")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise fail(path, f"not a safetensors file: its header is not valid JSON ({e})") from None
    header = _loads(path, text, "not a safetensors file: its header")
    if not isinstance(header, dict):
        raise fail(path, "not a safetensors file: its header is not a JSON object")
    meta = header.get("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise fail(path, "malformed safetensors header: '__metadata__' must be an object of strings, got "
                          f"{type(meta).__name__} {str(meta)[:80]}")
    _check_table(path, header, size - 8 - n)
    return header, n


def read_header(path) -> tuple[dict, int]:
    """Parse and check a safetensors header without reading tensor data or unpickling anything.

    Returns ``(header_dict, file_size)``; raises :class:`ModelFileError` naming ``path`` on any
    problem: not a regular file, a pickle, a header that is too big, too deep or malformed, tensor
    entries with unknown dtypes or byte ranges that overlap, leave gaps or run beyond the file.
    """
    path = os.fspath(path)
    f, size = open_regular(path)
    with f, read_errors(path):
        header, _ = read_header_from(f, path, size)
    return header, size


@contextmanager
def read_errors(path):
    """An OSError while reading ``path`` (EIO from a failing disk, /proc/self/mem) as a
    :class:`ModelFileError` naming the file (it came through as "[Errno 5] Input/output error")."""
    try:
        yield
    except OSError as e:
        raise fail(path, f"cannot read the model file: {e.strerror or e}") from None


def card_from_header(path, header) -> dict:
    """The xdl card in a checked header (:func:`read_header`), its fields' types and ranges
    checked (:func:`check_card`); :class:`ModelFileError` naming ``path`` and the key if not."""
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict) or "xdl_card" not in meta:
        raise fail(path, "a safetensors file without an xdl card (no 'xdl_card' metadata). If these are "
                          "weights of a known network, build it, load them with safetensors.torch.load_file "
                          "+ load_state_dict, and save with xdl.Model(module, card).save(path)")
    fmt = meta.get("xdl_format", FORMAT_VERSION)
    if fmt != FORMAT_VERSION:
        raise fail(path, f"xdl file format {str(fmt)[:40]!r} is not supported by this xdl (reads "
                          f"{FORMAT_VERSION!r}); upgrade xdl")
    if not isinstance(meta["xdl_card"], str):
        raise fail(path, f"its 'xdl_card' metadata must be a JSON text, got {type(meta['xdl_card']).__name__}")
    card = _loads(path, meta["xdl_card"], "its xdl card")
    if not isinstance(card, dict):
        raise fail(path, "its xdl card is not a JSON object")
    try:
        check_card(card)
    except InputError as e:
        raise fail(path, f"invalid card: {e}") from None
    return card


def read_tensors(f, path, header, n) -> dict[str, torch.Tensor]:
    """The tensors, read from the already opened file (no second open of the path). Float tensors
    must be finite: a NaN or infinite weight would turn every output it touches into NaN."""
    out = {}
    if sys.byteorder != "little":  # safetensors stores little-endian; let it swap the bytes
        from safetensors.torch import load_file
        out = load_file(path, device="cpu")
    for name, info in header.items():
        if name == "__metadata__" or name in out:
            if name in out:
                check_finite(path, name, out[name])
            continue
        start, end = info["data_offsets"]
        dtype = DTYPES[info["dtype"]][0]
        buf = bytearray(end - start)
        f.seek(8 + n + start)
        if f.readinto(buf) != len(buf):
            raise fail(path, f"truncated: the file ended inside tensor {name!r}")
        t = torch.frombuffer(buf, dtype=dtype) if buf else torch.empty(0, dtype=dtype)
        out[name] = check_finite(path, name, t.reshape(info["shape"]))
    return out


def check_finite(path, name, t):
    """``t`` if it holds no NaN or inf, else a :func:`fail` naming the tensor."""
    if t.is_floating_point():
        # numpy's isfinite: ~1 ms for the bundled model's 1.3M weights; torch's took 100-400 ms.
        a = (t if t.dtype in (torch.float16, torch.float32, torch.float64) else t.float()).numpy()
        finite = np.isfinite(a)
        if not finite.all():
            bad = finite.size - int(np.count_nonzero(finite))
            raise fail(path, f"tensor {name!r} holds {bad} NaN or infinite value(s) of {t.numel()}: "
                              "the weights are corrupt (or training diverged); retrain or restore the file")
    return t
