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
import os
import struct

import torch

from .errors import InputError, ModelFileError, UnknownModelError
from .models import registry

__all__ = ["Model", "load_model", "FORMAT_VERSION", "CARD_KEYS"]

FORMAT_VERSION = "1"
_MAX_HEADER = 100_000_000  # safetensors' own limit on the JSON header

# Card keys in a stable, documented order (see Model).
CARD_KEYS = ("architecture", "config", "mode", "in_channels", "out_channels", "size_multiple", "halo",
             "takes_mask", "fills_gaps", "inputs", "outputs", "units", "output_units", "standard_names",
             "normalization", "training", "metrics", "description", "xdl_version")


class UnknownArchitectureError(ModelFileError, UnknownModelError):
    """A model file names an architecture this xdl does not know (both a file and a name error)."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""


def _version():
    from . import __version__
    return __version__


def _jsonable(obj, what):
    try:
        return json.loads(json.dumps(obj))
    except (TypeError, ValueError) as e:
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
        norm = out["normalization"] or {}
        out["normalization"] = {"kind": norm.get("kind", "none"), "mean": norm.get("mean", {}),
                                "std": norm.get("std", {}), **norm}
        if out["normalization"]["kind"] not in ("none", "global", "per_sample"):
            raise InputError(f"normalization kind must be 'none', 'global' or 'per_sample', "
                             f"got {out['normalization']['kind']!r}")
        if out["mode"] not in (None, "spatial", "pointwise", "volume"):
            raise InputError(f"mode must be 'spatial', 'pointwise' or 'volume', got {out['mode']!r}")
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


def read_header(path) -> tuple[dict, int]:
    """Parse and check a safetensors header without reading tensor data or unpickling anything.

    Returns ``(header_dict, file_size)``; raises :class:`ModelFileError` naming ``path`` on any problem.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise _fail(path, "no such model file")
    if os.path.isdir(path):
        raise _fail(path, "is a directory, not a model file")
    size = os.path.getsize(path)
    with open(path, "rb") as f:
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
            raise _fail(path, f"not a safetensors file: header length {n} exceeds {_MAX_HEADER} bytes")
        f.seek(8)
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise _fail(path, f"not a safetensors file: its header is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise _fail(path, "not a safetensors file: its header is not a JSON object")
    data_len = size - 8 - n
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            start, end = info["data_offsets"]
            shape = [int(s) for s in info["shape"]]
            str(info["dtype"])
        except (TypeError, KeyError, ValueError):
            raise _fail(path, f"malformed safetensors header entry for tensor {name!r}: {info!r}") from None
        if not 0 <= start <= end or end > data_len:
            raise _fail(path, f"truncated: tensor {name!r} needs bytes {start}..{end} of the data section "
                              f"but the file holds only {data_len} data bytes")
    return header, size


def _card_from_header(path, header) -> dict:
    meta = header.get("__metadata__") or {}
    if "xdl_card" not in meta:
        raise _fail(path, "a safetensors file without an xdl card (no 'xdl_card' metadata). If these are "
                          "weights of a known network, build it, load them with safetensors.torch.load_file "
                          "+ load_state_dict, and save with xdl.Model(module, card).save(path)")
    fmt = meta.get("xdl_format", FORMAT_VERSION)
    if fmt != FORMAT_VERSION:
        raise _fail(path, f"xdl file format {fmt!r} is not supported by this xdl (reads {FORMAT_VERSION!r}); "
                          "upgrade xdl")
    try:
        card = json.loads(meta["xdl_card"])
    except ValueError as e:
        raise _fail(path, f"its xdl card is not valid JSON ({e})") from None
    if not isinstance(card, dict):
        raise _fail(path, "its xdl card is not a JSON object")
    return card


def _check_tensors(path, header, expected: dict[str, torch.Tensor]):
    stored = {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}
    want = {k: tuple(v.shape) for k, v in expected.items()}
    missing = sorted(set(want) - set(stored))
    extra = sorted(set(stored) - set(want))
    bad = sorted(k for k in set(want) & set(stored) if want[k] != stored[k])
    if missing or extra or bad:
        lines = []
        if missing:
            lines.append("missing tensors: " + ", ".join(f"{k} {list(want[k])}" for k in missing))
        if extra:
            lines.append("unexpected tensors: " + ", ".join(f"{k} {list(stored[k])}" for k in extra))
        if bad:
            lines.append("misshaped tensors: " + ", ".join(
                f"{k} is {list(stored[k])}, expected {list(want[k])}" for k in bad))
        raise _fail(path, "the weights do not match the card's architecture and config:\n  " + "\n  ".join(lines))


def load_model(path, device="cpu", module: torch.nn.Module | None = None) -> Model:
    """Load an xdl model file (``Model.save`` output) into an :class:`xdl.Model` in eval mode.

    Nothing is unpickled: torch.save / pickle files are refused with a conversion hint. The module
    is rebuilt from the zoo registry with the card's ``config``; pass ``module`` to load weights of a
    plain (non-zoo) network into an instance you built yourself.

    Example:
        >>> import xdl  # doctest: +SKIP
        >>> m = xdl.load_model("sst.xdl.safetensors", device="cuda")  # doctest: +SKIP
    """
    from safetensors.torch import load_file

    path = os.fspath(path)
    header, _ = read_header(path)
    card = _card_from_header(path, header)
    arch = card.get("architecture")
    if module is None:
        if arch is None:
            raise _fail(path, "holds weights of a plain (non-zoo) module; build it yourself and pass it: "
                              "xdl.load_model(path, module=MyNet(...))")
        try:
            cls = registry.get(arch)
        except UnknownModelError:
            raise _fail(path, f"unknown model architecture {arch!r} in its card; this xdl knows: "
                              f"{', '.join(registry.names())}", UnknownArchitectureError) from None
        config = card.get("config") or {}
        if not isinstance(config, dict):
            raise _fail(path, f"card 'config' must be a JSON object, got {config!r}")
        try:
            module = cls(**config)
        except (TypeError, ValueError) as e:
            raise _fail(path, f"cannot build {arch!r} from the card's config {config}: {e}") from None
    elif not isinstance(module, torch.nn.Module):
        raise InputError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    _check_tensors(path, header, module.state_dict())
    try:
        tensors = load_file(path, device="cpu")
        module.load_state_dict(tensors, strict=True)
    except Exception as e:  # safetensors' own checks (dtype, corrupt data) as a file error
        raise _fail(path, f"cannot load the weights: {e}") from None
    try:
        model = Model(module, card)
    except InputError as e:
        raise _fail(path, f"invalid card: {e}") from None
    return model.to(device).eval()
