"""``xdl.Model``: a torch module plus a JSON card, saved as one ``.safetensors`` file (never a pickle).

Example:
    >>> import tempfile, os, torch, xdl
    >>> m = xdl.zoo.create("mlp", in_channels=2, hidden=(8,), card={"inputs": ["t", "q"], "outputs": ["rain"]})
    >>> path = os.path.join(tempfile.mkdtemp(), "rain.xdl.safetensors")
    >>> m.save(path)
    >>> m2 = xdl.load_model(path)
    >>> m2.inputs, m2.mode, m2.content_hash() == m.content_hash()
    (['t', 'q'], 'pointwise', True)

The file's container checks live in :mod:`xdl.modelformat` and the card's schema in
:mod:`xdl.modelcard`; their public names are importable from here too.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os

import torch

from .errors import InputError, ModelFileError, UnknownModelError
from .modelcard import CARD_KEYS, CARD_LIMITS, CONTEXT_ANY, check_card, module_mode, short, sigma_name  # noqa: F401 (CARD_LIMITS: re-exported)
from .modelformat import (FORMAT_VERSION, MAX_HEADER, card_from_header, check_finite, fail, open_regular, read_errors,
                          read_header, read_header_from, read_tensors)  # noqa: F401 (read_header: re-exported)
from .io.files import readable_like_a_new_file, replace_atomically
from .engine.feeding import in_passing_thread
from .models import registry
from .models.context import unwrapped

__all__ = ["Model", "load_model", "read_header", "card_from_header", "check_card", "build_module",
           "FORMAT_VERSION", "CARD_KEYS", "CARD_LIMITS"]


class UnknownArchitectureError(ModelFileError, UnknownModelError):
    """A model file names an architecture this xdl does not know (both a file and a name error)."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""


def _output_channels(outputs: list, sigma: bool) -> int:
    """The channels a model with these ``outputs`` returns: one each, and with a sigma one more
    each, unless ``outputs`` names them already (``["u", "u_sigma"]``): a sigma model returns its
    means, then their sigmas (``["rain"]`` made a 1-channel card for a 2-channel model: probe)."""
    n = len(outputs)
    named = n % 2 == 0 and [sigma_name(str(o)) for o in outputs[:n // 2]] == [str(o) for o in outputs[n // 2:]]
    return 2 * n if sigma and not named else n


def _version():
    from .version import __version__
    return __version__


def _jsonable(obj, what):
    try:
        return json.loads(json.dumps(obj))
    except (TypeError, ValueError, RecursionError) as e:
        raise InputError(f"{what} must be JSON-serialisable (plain dicts, lists, str, numbers): {e}") from None


def _check_card_fits_module(card: dict, module) -> None:
    """InputError where the card promises what the module cannot do: a sigma output (the card's
    ``uncertainty``) from a module that declares none or returns an odd number of channels (a
    means-then-sigmas output is even), more halo than the module declares, context fields for a
    module that declares it takes none. A file with such a card loaded and failed at its first
    fill, in the CLI with a traceback (probe)."""
    inner = unwrapped(module)  # the model inside a context wrapper, as with_context reads it
    kind = type(inner).__name__
    if card.get("uncertainty"):
        out_channels = card.get("out_channels")
        if getattr(module, "sigma", None) is False or (isinstance(out_channels, int) and out_channels % 2):
            raise InputError(f"the card's 'uncertainty' says the model gives a sigma per output, but its {kind} "
                             f"module has no sigma output ({out_channels} output channel(s)); drop 'uncertainty' "
                             "from the card, or fit a model with a sigma head.")
    own, claimed = getattr(inner, "halo", None), card.get("halo")
    if isinstance(own, int) and not isinstance(own, bool) and isinstance(claimed, int) and claimed > own:
        raise InputError(f"the card's halo {claimed} is more than its {kind} module declares ({own}): tiles would "
                         "be that much larger for nothing; give the card the module's halo or less.")
    if card.get("context") and not getattr(inner, "takes_context", False):
        raise InputError(f"the card's 'context' says the model takes context fields, but its {kind} module takes "
                         "none; drop 'context' from the card.")


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
    def _fill_card(module, card):  # the card of Model(module, card): every default filled in, checked
        arch = registry.name_of(module)
        g = lambda a, d=None: getattr(module, a, d)  # noqa: E731
        defaults = {
            "architecture": arch,
            "config": _jsonable(g("config", {}) if arch else {}, "config"),
            # None = unknown for a plain module: the engine then guesses or probes it.
            "mode": module_mode(module),
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
        if g("sigma", False):
            defaults["uncertainty"] = {"kind": "gaussian", "scale": 1.0, "calibration": "none (untrained)"}
        if g("takes_context", False):
            defaults["context"] = dict(CONTEXT_ANY)
        out = {k: card[k] if k in card else defaults[k] for k in CARD_KEYS}
        out.update({k: defaults[k] for k in ("uncertainty", "context") if k in defaults and k not in card})
        out.update({k: v for k, v in card.items() if k not in out})  # keep extra keys users add
        if out["in_channels"] is None and out["inputs"]:
            out["in_channels"] = len(out["inputs"])
        if out["out_channels"] is None and out["outputs"]:
            out["out_channels"] = _output_channels(out["outputs"], bool(out.get("uncertainty")))
        check_card(out)
        _check_card_fits_module(out, module)
        norm = out["normalization"] or {}
        out["normalization"] = {"kind": norm.get("kind", "none"), "mean": norm.get("mean", {}),
                                "std": norm.get("std", {}), **norm}
        if arch is not None:
            # The engine trusts the card: for a zoo module it must describe the module itself.
            for key in ("mode", "in_channels", "out_channels", "takes_mask"):
                if out[key] is not None and out[key] != g(key):
                    raise InputError(f"card {key!r} is {short(out[key])} but the {arch!r} module's is "
                                     f"{short(g(key))}")
            if out["size_multiple"] is not None and out["size_multiple"] % int(g("size_multiple")):
                raise InputError(f"card 'size_multiple' {out['size_multiple']} is not a multiple of the "
                                 f"{arch!r} module's {g('size_multiple')}")
        for key, n in (("inputs", out["in_channels"]), ("outputs", out["out_channels"])):
            # A sigma model (card "uncertainty") lists its n variables for its 2n channels (means, then sigmas).
            sigmas = key == "outputs" and out.get("uncertainty") is not None and n is not None and 2 * len(out[key]) == n
            if out[key] and n is not None and len(out[key]) != n and not sigmas:
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
        """sha256 hex of the card (sorted-key JSON) and the module's tensors and settings
        (:func:`~xdl.models.registry.state_digest`). Equal hashes mean equal computations; used
        as a cache key."""
        h = hashlib.sha256()
        h.update(json.dumps(self._card, sort_keys=True).encode())
        h.update(registry.state_digest(self.module).encode())
        return h.hexdigest()

    def save(self, path) -> None:
        """Write weights + card to one ``.safetensors`` file (suggested suffix ``.xdl.safetensors``).

        The file is written next to ``path`` and renamed into place, so a crash leaves no half file.
        """
        from safetensors.torch import save_file

        path = os.fspath(path)
        meta = {"xdl_card": json.dumps(self._card, sort_keys=True), "xdl_format": FORMAT_VERSION}
        # Refuse what load_model would refuse (a header over MAX_HEADER) before writing anything;
        # ~100 bytes per tensor table entry.
        size = len(json.dumps(meta)) + 100 * len(self.module.state_dict())
        if size > MAX_HEADER:
            raise InputError(f"the card is too large to save: its header would be ~{size} bytes, xdl reads at "
                             f"most {MAX_HEADER}; trim the card's 'training' or 'metrics' entries")
        with replace_atomically(path) as tmp:
            # clone: safetensors refuses tensors that share storage (tied weights, views).
            save_file({k: v.clone() for k, v in self._tensors().items()}, tmp, metadata=meta)
            readable_like_a_new_file(tmp)

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
        raise fail(path, "the weights do not match the card's architecture and config:\n  " + "\n  ".join(lines))


def _shorten(text, limit=2000):
    return text if len(text) <= limit else text[:limit] + " ..."


def _build(path, arch, config):
    """``(class, module on the meta device)`` for the card's ``arch`` and ``config``: the
    constructors check their options' ranges first, and a meta module holds no memory, so its
    tensors can be compared with the file's before anything is allocated."""
    try:
        cls = registry.get(arch)
    except UnknownModelError:
        raise fail(path, f"unknown model architecture {arch!r} in its card; this xdl knows: "
                          f"{', '.join(registry.names())}", UnknownArchitectureError) from None
    try:
        with torch.device("meta"):
            meta = cls(**config)
    except Exception as e:  # noqa: BLE001 - whatever a hostile config makes the constructor raise
        raise fail(path, f"cannot build {arch!r} from the card's config: {e} (config: "
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
        >>> import tempfile, xdl
        >>> path = os.path.join(tempfile.mkdtemp(), "sst.xdl.safetensors")
        >>> xdl.zoo.create("unet", in_channels=1, depth=2, base_channels=4).save(path)
        >>> xdl.load_model(path, device="cpu").architecture  # device="cuda": straight onto the GPU
        'unet'
    """
    # In a thread that ends with the load: building and filling a module runs torch ops that would
    # leave an OpenMP team in the caller's thread (see engine.feeding.in_passing_thread).
    return in_passing_thread(_load_model, os.fspath(path), device, module)


def _load_model(path, device, module) -> Model:
    f, size = open_regular(path)
    with f, read_errors(path):
        header, n = read_header_from(f, path, size)
        card = card_from_header(path, header)
        arch = card.get("architecture")
        if module is None:
            if arch is None:
                raise fail(path, "holds weights of a plain (non-zoo) module; build it yourself and pass it: "
                                  "xdl.load_model(path, module=MyNet(...))")
            config = card.get("config") or {}
            if not isinstance(config, dict):
                raise fail(path, f"invalid card: card 'config' must be a JSON object, got {short(config)}")
            cls, meta = _build(path, arch, config)
            _check_tensors(path, header, meta.state_dict())
            try:  # the card must describe this module (channels, mode, mask), also before allocating
                Model._fill_card(meta, card)
            except InputError as e:
                raise fail(path, f"invalid card: {e}") from None
        elif not isinstance(module, torch.nn.Module):
            raise InputError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        else:
            _check_tensors(path, header, module.state_dict())
        tensors = read_tensors(f, path, header, n)
    if arch is not None and module is None:
        # Shapes match the file's, so this allocates about what the file holds.
        module = cls(**config)
    try:
        module.load_state_dict(tensors, strict=True)
    except Exception as e:  # a dtype torch cannot copy into the parameter, as a file error
        raise fail(path, f"cannot load the weights: {e}") from None
    loaded = module.state_dict()
    for name, t in tensors.items():
        if t.dtype != loaded[name].dtype:  # cast on loading: a float64 weight of 1e300 is inf in float32
            check_finite(path, name, loaded[name])
    try:
        model = Model(module, card)
    except InputError as e:
        raise fail(path, f"invalid card: {e}") from None
    return model.to(device).eval()
