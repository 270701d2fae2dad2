"""``xdl.Model``: a torch module plus a JSON card, saved as one ``.safetensors`` file (never a pickle).

Example:
    >>> import tempfile, os, torch, xdl
    >>> m = xdl.zoo.create("mlp", in_channels=2, hidden=(8,), card={"inputs": ["t", "q"], "outputs": ["rain"]})
    >>> path = os.path.join(tempfile.mkdtemp(), "rain.xdl.safetensors")
    >>> m.save(path)
    >>> m2 = xdl.load_model(path)
    >>> m2.inputs, m2.mode, m2.content_hash() == m.content_hash()
    (['t', 'q'], 'pointwise', True)
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import numbers
import os
import stat
import struct
import sys

import numpy as np
import torch

from .errors import InputError, ModelFileError, UnknownModelError
from .models import registry

__all__ = ["Model", "load_model", "read_header", "card_from_header", "check_card", "build_module",
           "FORMAT_VERSION", "CARD_KEYS", "CARD_LIMITS"]

FORMAT_VERSION = "1"
# The JSON header (tensor table + card). safetensors allows 100 MB; parsing that much JSON can take
# gigabytes (8 MiB of "[{},{},...]" parses into ~190 MB of Python objects), and a card is kilobytes.
_MAX_HEADER = 8 * 2 ** 20
_MAX_DEPTH = 32  # nesting of the card's JSON: deeper would only exhaust recursion (deepcopy)
# safetensors dtype -> (torch dtype, bytes per element); those this torch has.
_DTYPES = {k: (getattr(torch, t), b) for k, t, b in (
    ("F64", "float64", 8), ("F32", "float32", 4), ("F16", "float16", 2), ("BF16", "bfloat16", 2),
    ("I64", "int64", 8), ("I32", "int32", 4), ("I16", "int16", 2), ("I8", "int8", 1), ("U8", "uint8", 1),
    ("BOOL", "bool", 1), ("U16", "uint16", 2), ("U32", "uint32", 4), ("U64", "uint64", 8),
    ("F8_E4M3", "float8_e4m3fn", 1), ("F8_E5M2", "float8_e5m2", 1)) if hasattr(torch, t)}

# Card keys in a stable, documented order (see Model).
CARD_KEYS = ("architecture", "config", "mode", "in_channels", "out_channels", "size_multiple", "halo",
             "takes_mask", "fills_gaps", "inputs", "outputs", "units", "output_units", "standard_names",
             "normalization", "training", "metrics", "description", "xdl_version")


# Ranges of the card's numbers: each bounds what the engine allocates or loops over for a tile
# (a halo of 10**12 asked for 14.6 TiB), far above what the zoo's models use (halo <= 512).
CARD_LIMITS = {"in_channels": (1, registry.MAX_IO_CHANNELS), "out_channels": (1, registry.MAX_IO_CHANNELS),
               "size_multiple": (1, 4096), "halo": (0, 4096), "min_tile": (0, 8192)}
_MODES = (None, "spatial", "pointwise", "volume")
_NORM_KINDS = ("none", "global", "per_sample")
_FLOAT32_MAX = 3.4e38


def _short(v, n=80):
    r = repr(v)
    return r if len(r) <= n else r[:n] + "..."


def check_card(card: dict) -> None:
    """Check the types and ranges of a card's fields (those present); :class:`InputError` naming
    the key otherwise. Numbers: :data:`CARD_LIMITS`; ``inputs``/``outputs`` lists of names;
    ``units``/``output_units``/``standard_names`` ``{name: text}``; ``normalization`` a dict with a
    known ``kind`` and finite ``mean``/``std`` (std > 0); nesting at most 32 deep.

    >>> check_card({"halo": 10 ** 12})
    Traceback (most recent call last):
    ...
    xdl.errors.InputError: card 'halo' must be a whole number in [0, 4096], got 1000000000000
    """
    if not isinstance(card, dict):
        raise InputError(f"card must be a JSON object (dict), got {type(card).__name__}")
    if _json_depth(card) > _MAX_DEPTH:
        raise InputError(f"card is nested more than {_MAX_DEPTH} levels deep")

    def fail(key, want, v):
        raise InputError(f"card {key!r} must be {want}, got {_short(v)}")

    for key, (lo, hi) in CARD_LIMITS.items():
        if card.get(key) is not None:
            try:
                registry.check_int(f"card {key!r}", card[key], lo, hi)
            except ValueError as e:
                raise InputError(str(e)) from None
    for key in ("architecture", "xdl_version", "description"):
        if card.get(key) is not None and not isinstance(card[key], str):
            fail(key, "a string", card[key])
    for key in ("config", "training", "metrics"):
        if card.get(key) is not None and not isinstance(card[key], dict):
            fail(key, "a JSON object", card[key])
    for key in ("takes_mask", "fills_gaps", "cpu_bf16"):
        if card.get(key) is not None and not isinstance(card[key], bool):
            fail(key, "true or false", card[key])
    if card.get("mode") not in _MODES:
        raise InputError(f"mode must be 'spatial', 'pointwise' or 'volume', got {_short(card['mode'])}")
    for key in ("inputs", "outputs"):
        v = card.get(key)
        if v is not None and (not isinstance(v, list) or len(v) > registry.MAX_IO_CHANNELS
                              or not all(isinstance(x, str) for x in v)):
            fail(key, f"a list of at most {registry.MAX_IO_CHANNELS} variable names", v)
    for key in ("units", "output_units", "standard_names"):
        v = card.get(key)
        if v is not None and (not isinstance(v, dict) or not all(isinstance(x, str) for x in v.values())):
            fail(key, "an object {variable: text}", v)
    norm = card.get("normalization")
    if norm is not None:
        if not isinstance(norm, dict):
            fail("normalization", "an object like {'kind': 'global', 'mean': {var: x}, 'std': {var: x}}", norm)
        if norm.get("kind", "none") not in _NORM_KINDS:
            raise InputError(f"normalization kind must be 'none', 'global' or 'per_sample', "
                             f"got {_short(norm.get('kind'))}")
        for stat_key in ("mean", "std"):
            v = norm.get(stat_key)
            if v is None:
                continue
            ok = isinstance(v, dict) and all(
                isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)
                and abs(x) < _FLOAT32_MAX and (stat_key == "mean" or x > 0) for x in v.values())
            if not ok:
                fail(f"normalization {stat_key}", "an object {variable: finite number}"
                     + (" with every std > 0" if stat_key == "std" else ""), v)


class UnknownArchitectureError(ModelFileError, UnknownModelError):
    """A model file names an architecture this xdl does not know (both a file and a name error)."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""


def _version():
    from .version import __version__
    return __version__


def _jsonable(obj, what):
    try:
        return json.loads(json.dumps(obj))
    except (TypeError, ValueError, RecursionError) as e:
        raise InputError(f"{what} must be JSON-serialisable (plain dicts, lists, str, numbers): {e}") from None


class Model:
    """A torch module with its card: what it computes, on which variables, and how to run it.

    ``card`` is a plain JSON-able dict; keys missing from it are filled from the module's attributes
    (``mode``, ``in_channels``, ``size_multiple``, ``halo``, ...) or with empty defaults; for a plain
    module without such attributes they stay None and the engine probes them. Keys:
    ``architecture`` (zoo name, None for a plain module), ``config`` (kwargs that rebuild it),
    ``mode``, ``in_channels``, ``out_channels``, ``size_multiple``, ``halo``, ``takes_mask``,
    ``fills_gaps``, ``inputs``/``outputs`` (variable names), ``units``/``output_units``,
    ``standard_names``, ``normalization`` (``{"kind": "none"|"global"|"per_sample", "mean": {var: x},
    "std": {var: x}}``), ``training``, ``metrics``, ``description``, ``xdl_version``.

    Example:
        >>> from xdl.models.mlp import MLP
        >>> m = Model(MLP(3, 1, hidden=(4,)), card={"inputs": ["t", "p", "q"], "outputs": ["rain"]})
        >>> m.architecture, m.mode, m.in_channels, m.outputs, m.num_parameters
        ('mlp', 'pointwise', 3, ['rain'], 21)
    """

    def __init__(self, module, card: dict | None = None):
        if isinstance(module, Model):
            card = {**module.card, **(card or {})}
            module = module.module
        if not isinstance(module, torch.nn.Module):
            raise InputError(f"xdl.Model needs a torch.nn.Module, got {type(module).__name__}")
        if card is not None and not isinstance(card, dict):
            raise InputError(f"card must be a dict, got {type(card).__name__}")
        self.module = module
        self._card = self._fill_card(module, _jsonable(dict(card or {}), "card"))

    @staticmethod
    def _fill_card(module, card):
        arch = registry.name_of(module)
        g = lambda a, d=None: getattr(module, a, d)  # noqa: E731
        defaults = {
            "architecture": arch,
            "config": _jsonable(g("config", {}) if arch else {}, "config"),
            # None = unknown for a plain module: the engine then guesses or probes it.
            "mode": g("mode"),
            "in_channels": g("in_channels"),
            "out_channels": g("out_channels"),
            "size_multiple": None if g("size_multiple") is None else int(g("size_multiple")),
            "halo": None if g("halo") is None else int(g("halo")),
            "takes_mask": bool(g("takes_mask", False)),
            "fills_gaps": bool(g("fills_gaps", False)),
            "inputs": [], "outputs": [], "units": {}, "output_units": {}, "standard_names": {},
            "normalization": {"kind": "none", "mean": {}, "std": {}},
            "training": {}, "metrics": {}, "description": "",
            "xdl_version": _version(),
        }
        out = {k: card[k] if k in card else defaults[k] for k in CARD_KEYS}
        out.update({k: v for k, v in card.items() if k not in out})  # keep extra keys users add
        if out["in_channels"] is None and out["inputs"]:
            out["in_channels"] = len(out["inputs"])
        if out["out_channels"] is None and out["outputs"]:
            out["out_channels"] = len(out["outputs"])
        check_card(out)
        norm = out["normalization"] or {}
        out["normalization"] = {"kind": norm.get("kind", "none"), "mean": norm.get("mean", {}),
                                "std": norm.get("std", {}), **norm}
        if arch is not None:
            # The engine trusts the card: for a zoo module it must describe the module itself.
            for key in ("mode", "in_channels", "out_channels", "takes_mask"):
                if out[key] is not None and out[key] != g(key):
                    raise InputError(f"card {key!r} is {_short(out[key])} but the {arch!r} module's is "
                                     f"{_short(g(key))}")
            if out["size_multiple"] is not None and out["size_multiple"] % int(g("size_multiple")):
                raise InputError(f"card 'size_multiple' {out['size_multiple']} is not a multiple of the "
                                 f"{arch!r} module's {g('size_multiple')}")
        for key, n in (("inputs", out["in_channels"]), ("outputs", out["out_channels"])):
            if out[key] and n is not None and len(out[key]) != n:
                raise InputError(f"card lists {len(out[key])} {key} {out[key]} but the model has {n} channels")
        return out

    # ---------------------------------------------------------------- card access
    @property
    def card(self) -> dict:
        """A deep copy of the card (edit it and build a new Model to change it)."""
        return copy.deepcopy(self._card)

    def _get(key):  # noqa: N805 - property factory
        return property(lambda self: copy.deepcopy(self._card.get(key)), doc=f"The card's ``{key}``.")

    architecture = _get("architecture")
    config = _get("config")
    mode = _get("mode")
    in_channels = _get("in_channels")
    out_channels = _get("out_channels")
    size_multiple = _get("size_multiple")
    halo = _get("halo")
    takes_mask = _get("takes_mask")
    fills_gaps = _get("fills_gaps")
    inputs = _get("inputs")
    outputs = _get("outputs")
    units = _get("units")
    output_units = _get("output_units")
    standard_names = _get("standard_names")
    normalization = _get("normalization")
    training = _get("training")
    metrics = _get("metrics")
    description = _get("description")
    xdl_version = _get("xdl_version")
    del _get

    # ---------------------------------------------------------------- module access
    def __call__(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def to(self, *args, **kwargs) -> "Model":
        """Move the module (``.to(device)`` / dtype); returns self."""
        self.module.to(*args, **kwargs)
        return self

    def eval(self) -> "Model":
        self.module.eval()
        return self

    def train(self, mode: bool = True) -> "Model":
        self.module.train(mode)
        return self

    def parameters(self):
        return self.module.parameters()

    def state_dict(self):
        return self.module.state_dict()

    @property
    def device(self) -> torch.device:
        for t in self.module.state_dict().values():
            return t.device
        return torch.device("cpu")

    @property
    def num_parameters(self) -> int:
        return registry.count_parameters(self.module)

    def _tensors(self) -> dict[str, torch.Tensor]:
        # Buffers included (BatchNorm running statistics): they are part of what the model computes.
        return {k: v.detach().cpu().contiguous() for k, v in self.module.state_dict().items()}

    def content_hash(self) -> str:
        """sha256 hex of the card (sorted-key JSON) and every tensor (name, dtype, shape, bytes)
        in sorted name order. Equal hashes mean equal computations; used as a cache key."""
        h = hashlib.sha256()
        h.update(json.dumps(self._card, sort_keys=True).encode())
        for name, t in sorted(self._tensors().items()):
            h.update(f"\0{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        return h.hexdigest()

    def save(self, path) -> None:
        """Write weights + card to one ``.safetensors`` file (suggested suffix ``.xdl.safetensors``).

        The file is written next to ``path`` and renamed into place, so a crash leaves no half file.
        """
        from safetensors.torch import save_file

        path = os.fspath(path)
        meta = {"xdl_card": json.dumps(self._card, sort_keys=True), "xdl_format": FORMAT_VERSION}
        # Refuse what load_model would refuse (a header over _MAX_HEADER) before writing anything;
        # ~100 bytes per tensor table entry.
        size = len(json.dumps(meta)) + 100 * len(self.module.state_dict())
        if size > _MAX_HEADER:
            raise InputError(f"the card is too large to save: its header would be ~{size} bytes, xdl reads at "
                             f"most {_MAX_HEADER}; trim the card's 'training' or 'metrics' entries")
        tmp = f"{path}.tmp-{os.getpid()}"
        try:
            # clone: safetensors refuses tensors that share storage (tied weights, views).
            save_file({k: v.clone() for k, v in self._tensors().items()}, tmp, metadata=meta)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)

    def __repr__(self):
        c = self._card
        name = c["architecture"] or type(self.module).__name__
        n = self.num_parameters
        size = f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else str(n)
        io = ""
        if c["inputs"] or c["outputs"]:
            io = f", inputs={c['inputs']}, outputs={c['outputs']}"
        return (f"xdl.Model({name!r}, mode={c['mode']!r}, channels={c['in_channels']}->{c['out_channels']}, "
                f"size_multiple={c['size_multiple']}, halo={c['halo']}, params={size}{io})")


# -------------------------------------------------------------------- loading

def _fail(path, msg, exc=ModelFileError):
    return exc(f"{path}: {msg}")


def _pickle_message(path, kind):
    return _fail(path, (
        f"this is a {kind}, not an xdl model file. xdl never unpickles files: unpickling runs "
        "arbitrary code. If you trust the file, load it yourself in your own code, then convert it once:\n"
        "    module = ...  # build the network, then module.load_state_dict(torch.load(path, weights_only=True))\n"
        "    xdl.Model(module, card={'inputs': [...], 'outputs': [...]}).save('model.xdl.safetensors')"))


_NOT_REGULAR = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
                (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def _open_regular(path):
    """Open ``path`` for reading if it is a regular file; anything else (a FIFO would block the
    open or the read forever, a device never ends) is refused before it is opened."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise _fail(path, "no such model file") from None
    except (OSError, ValueError) as e:
        raise _fail(path, f"cannot read the model file: {e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise _fail(path, "is a directory, not a model file")
    if not stat.S_ISREG(st.st_mode):
        kind = next((k for test, k in _NOT_REGULAR if test(st.st_mode)), "not a regular file")
        raise _fail(path, f"is {kind}, not a regular file; xdl reads models only from regular files "
                          "(copy it into a file first)")
    try:
        # O_NONBLOCK: should the path be swapped for a FIFO after the check, open does not block.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as e:
        raise _fail(path, f"cannot open the model file: {e.strerror or e}") from None
    f = os.fdopen(fd, "rb")
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        f.close()
        raise _fail(path, "is not a regular file; xdl reads models only from regular files")
    return f, st.st_size


def _json_depth(obj) -> int:
    """Nesting depth of a parsed JSON value (iterative: a deep value must not recurse)."""
    depth, level = 0, [obj]
    while level:
        depth += 1
        if depth > _MAX_DEPTH:
            return depth
        nxt = []
        for o in level:
            if isinstance(o, dict):
                nxt.extend(o.values())
            elif isinstance(o, list):
                nxt.extend(o)
        level = [o for o in nxt if isinstance(o, (dict, list))]
    return depth - 1 if depth else 0


def _loads(path, raw, what):
    try:
        return json.loads(raw)
    except RecursionError:
        raise _fail(path, f"{what} is nested too deeply to be an xdl model file") from None
    except (UnicodeDecodeError, ValueError) as e:
        raise _fail(path, f"{what} is not valid JSON ({e})") from None


def _check_table(path, header, data_len):
    """The tensor table: dtypes, shapes and byte ranges, which must tile the data section exactly
    (as safetensors requires): no overlap, no gap, no byte beyond the file."""
    spans = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        bad = _fail(path, f"malformed safetensors header entry for tensor {name!r}: {str(info)[:200]}")
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise bad
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(dtype, str) or dtype not in _DTYPES:
            raise _fail(path, f"tensor {name!r} has dtype {_short(dtype, 40)}, which is not a safetensors "
                              f"dtype this xdl reads ({', '.join(_DTYPES)})")
        if not isinstance(shape, list) or not all(_whole(d) and d >= 0 for d in shape) \
                or not isinstance(offsets, list) or len(offsets) != 2 or not all(_whole(o) for o in offsets):
            raise bad
        start, end = offsets
        if not 0 <= start <= end or end > data_len:
            raise _fail(path, f"truncated: tensor {name!r} needs bytes {start}..{end} of the data section "
                              f"but the file holds only {data_len} data bytes")
        nbytes = math.prod(shape) * _DTYPES[dtype][1]
        if end - start != nbytes:
            raise _fail(path, f"tensor {name!r} of shape {shape} and dtype {dtype} needs {nbytes} bytes but its "
                              f"data_offsets give {end - start}")
        spans.append((start, end, name))
    pos, prev = 0, None
    for start, end, name in sorted(spans):
        if start != pos:
            what = f"overlaps tensor {prev!r}" if start < pos else f"leaves bytes {pos}..{start} unused"
            raise _fail(path, f"corrupt tensor table: tensor {name!r} (bytes {start}..{end}) {what}")
        pos, prev = end, name
    if pos != data_len:
        raise _fail(path, f"corrupt or not an xdl model file: {data_len - pos} bytes after its last tensor")


def _whole(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _read_header(f, path, size) -> tuple[dict, int]:
    head = f.read(9)
    if head[:4] == b"PK\x03\x04":
        raise _pickle_message(path, "zip archive (torch.save output or similar)")
    looks_safetensors = len(head) == 9 and head[8:9] == b"{"
    if head[:1] == b"\x80" and not looks_safetensors:
        raise _pickle_message(path, "Python pickle (legacy torch.save or pickle.dump output)")
    if size < 8:
        raise _fail(path, f"truncated or not a model file: {size} bytes, a safetensors file has at "
                          "least an 8-byte header length")
    (n,) = struct.unpack("<Q", head[:8])
    if n > size - 8:
        raise _fail(path, f"truncated or not a safetensors file: header length {n} bytes is beyond "
                          f"the file size ({size} bytes)")
    if n > _MAX_HEADER:
        raise _fail(path, f"header of {n} bytes is larger than the {_MAX_HEADER} bytes xdl reads: not an "
                          "xdl model file, or one with an oversized card")
    f.seek(8)
    raw = f.read(n)
    if len(raw) != n:
        raise _fail(path, f"truncated: the file ended inside its {n}-byte header")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _fail(path, f"not a safetensors file: its header is not valid JSON ({e})") from None
    header = _loads(path, text, "not a safetensors file: its header")
    if not isinstance(header, dict):
        raise _fail(path, "not a safetensors file: its header is not a JSON object")
    meta = header.get("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise _fail(path, "malformed safetensors header: '__metadata__' must be an object of strings, got "
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
    f, size = _open_regular(path)
    with f:
        header, _ = _read_header(f, path, size)
    return header, size


def card_from_header(path, header) -> dict:
    """The xdl card in a checked header (:func:`read_header`), its fields' types and ranges
    checked (:func:`check_card`); :class:`ModelFileError` naming ``path`` and the key if not."""
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict) or "xdl_card" not in meta:
        raise _fail(path, "a safetensors file without an xdl card (no 'xdl_card' metadata). If these are "
                          "weights of a known network, build it, load them with safetensors.torch.load_file "
                          "+ load_state_dict, and save with xdl.Model(module, card).save(path)")
    fmt = meta.get("xdl_format", FORMAT_VERSION)
    if fmt != FORMAT_VERSION:
        raise _fail(path, f"xdl file format {str(fmt)[:40]!r} is not supported by this xdl (reads "
                          f"{FORMAT_VERSION!r}); upgrade xdl")
    if not isinstance(meta["xdl_card"], str):
        raise _fail(path, f"its 'xdl_card' metadata must be a JSON text, got {type(meta['xdl_card']).__name__}")
    card = _loads(path, meta["xdl_card"], "its xdl card")
    if not isinstance(card, dict):
        raise _fail(path, "its xdl card is not a JSON object")
    try:
        check_card(card)
    except InputError as e:
        raise _fail(path, f"invalid card: {e}") from None
    return card


_card_from_header = card_from_header  # the old private name


def _check_tensors(path, header, expected: dict[str, torch.Tensor]):
    stored = {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}
    want = {k: tuple(v.shape) for k, v in expected.items()}
    missing = sorted(set(want) - set(stored))
    extra = sorted(set(stored) - set(want))
    bad = sorted(k for k in set(want) & set(stored) if want[k] != stored[k])
    if missing or extra or bad:
        lines = []
        n_want, n_stored = sum(map(math.prod, want.values())), sum(map(math.prod, stored.values()))
        if n_want != n_stored:
            lines.append(f"the card's config implies {n_want} values, the file holds {n_stored}")
        if missing:
            lines.append("missing tensors: " + _shorten(", ".join(f"{k} {list(want[k])}" for k in missing)))
        if extra:
            lines.append("unexpected tensors: " + _shorten(", ".join(f"{k} {list(stored[k])}" for k in extra)))
        if bad:
            lines.append("misshaped tensors: " + _shorten(", ".join(
                f"{k} is {list(stored[k])}, expected {list(want[k])}" for k in bad)))
        raise _fail(path, "the weights do not match the card's architecture and config:\n  " + "\n  ".join(lines))


def _shorten(text, limit=2000):
    return text if len(text) <= limit else text[:limit] + " ..."


def _read_tensors(f, path, header, n) -> dict[str, torch.Tensor]:
    """The tensors, read from the already opened file (no second open of the path). Float tensors
    must be finite: a NaN or infinite weight would turn every output it touches into NaN."""
    out = {}
    if sys.byteorder != "little":  # safetensors stores little-endian; let it swap the bytes
        from safetensors.torch import load_file
        out = load_file(path, device="cpu")
    for name, info in header.items():
        if name == "__metadata__" or name in out:
            if name in out:
                _check_finite(path, name, out[name])
            continue
        start, end = info["data_offsets"]
        dtype = _DTYPES[info["dtype"]][0]
        buf = bytearray(end - start)
        f.seek(8 + n + start)
        if f.readinto(buf) != len(buf):
            raise _fail(path, f"truncated: the file ended inside tensor {name!r}")
        t = torch.frombuffer(buf, dtype=dtype) if buf else torch.empty(0, dtype=dtype)
        out[name] = _check_finite(path, name, t.reshape(info["shape"]))
    return out


def _check_finite(path, name, t):
    if t.is_floating_point():
        # numpy's isfinite: ~1 ms for the bundled model's 1.3M weights; torch's took 100-400 ms.
        a = (t if t.dtype in (torch.float16, torch.float32, torch.float64) else t.float()).numpy()
        finite = np.isfinite(a)
        if not finite.all():
            bad = finite.size - int(np.count_nonzero(finite))
            raise _fail(path, f"tensor {name!r} holds {bad} NaN or infinite value(s) of {t.numel()}: "
                              "the weights are corrupt (or training diverged); retrain or restore the file")
    return t


def _build(path, arch, config):
    """``(class, module on the meta device)`` for the card's ``arch`` and ``config``: the
    constructors check their options' ranges first, and a meta module holds no memory, so its
    tensors can be compared with the file's before anything is allocated."""
    try:
        cls = registry.get(arch)
    except UnknownModelError:
        raise _fail(path, f"unknown model architecture {arch!r} in its card; this xdl knows: "
                          f"{', '.join(registry.names())}", UnknownArchitectureError) from None
    try:
        with torch.device("meta"):
            meta = cls(**config)
    except Exception as e:  # noqa: BLE001 - whatever a hostile config makes the constructor raise
        raise _fail(path, f"cannot build {arch!r} from the card's config: {e} (config: "
                          f"{_shorten(str(config), 300)})") from None
    return cls, meta


def build_module(name: str, config: dict, what: str = "") -> torch.nn.Module:
    """``registry.get(name)(**config)`` for a config from a user or a file: option ranges are checked
    before anything is allocated, then the module is built on the meta device and its parameter
    count checked against :data:`~xdl.models.registry.MAX_PARAMETERS`, and only then for real.

    Raises :class:`InputError` (naming ``what`` and the option) or :class:`UnknownModelError`."""
    cls = registry.get(name)
    where = f"{what}: " if what else ""
    try:
        with torch.device("meta"):
            meta = cls(**config)
    except (TypeError, ValueError, OverflowError) as e:
        raise InputError(f"{where}{e} (cannot build {name!r} from {_shorten(str(config), 300)})") from None
    n = registry.count_parameters(meta)
    if n > registry.MAX_PARAMETERS:
        raise InputError(f"{where}{name!r} with {_shorten(str(config), 300)} would have {n:,} parameters "
                         f"({n * 4 / 2 ** 30:.1f} GiB in float32), more than xdl's limit of "
                         f"{registry.MAX_PARAMETERS:,}; lower depth or the channel counts")
    return cls(**config)


def load_model(path, device="cpu", module: torch.nn.Module | None = None) -> Model:
    """Load an xdl model file (``Model.save`` output) into an :class:`xdl.Model` in eval mode.

    Nothing is unpickled: torch.save / pickle files are refused with a conversion hint. The module
    is rebuilt from the zoo registry with the card's ``config``; pass ``module`` to load weights of a
    plain (non-zoo) network into an instance you built yourself.

    Nothing large is allocated before the file is known to match: the card's values are checked
    against their ranges (:func:`check_card`, and each architecture's options), the module is
    first built on the meta device, and its tensors' names and shapes must equal the file's
    (whose sizes the file's own size bounds) before it is built for real and the weights read.
    Weights that are NaN or infinite are refused.

    Example:
        >>> import xdl  # doctest: +SKIP
        >>> m = xdl.load_model("sst.xdl.safetensors", device="cuda")  # doctest: +SKIP
    """
    path = os.fspath(path)
    f, size = _open_regular(path)
    with f:
        header, n = _read_header(f, path, size)
        card = card_from_header(path, header)
        arch = card.get("architecture")
        if module is None:
            if arch is None:
                raise _fail(path, "holds weights of a plain (non-zoo) module; build it yourself and pass it: "
                                  "xdl.load_model(path, module=MyNet(...))")
            config = card.get("config") or {}
            if not isinstance(config, dict):
                raise _fail(path, f"invalid card: card 'config' must be a JSON object, got {_short(config)}")
            cls, meta = _build(path, arch, config)
            _check_tensors(path, header, meta.state_dict())
            try:  # the card must describe this module (channels, mode, mask), also before allocating
                Model._fill_card(meta, card)
            except InputError as e:
                raise _fail(path, f"invalid card: {e}") from None
        elif not isinstance(module, torch.nn.Module):
            raise InputError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        else:
            _check_tensors(path, header, module.state_dict())
        tensors = _read_tensors(f, path, header, n)
    if arch is not None and module is None:
        # Shapes match the file's, so this allocates about what the file holds.
        module = cls(**config)
    try:
        module.load_state_dict(tensors, strict=True)
    except Exception as e:  # a dtype torch cannot copy into the parameter, as a file error
        raise _fail(path, f"cannot load the weights: {e}") from None
    try:
        model = Model(module, card)
    except InputError as e:
        raise _fail(path, f"invalid card: {e}") from None
    return model.to(device).eval()
